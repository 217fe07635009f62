//! The guard that keeps `reproq torture` on this machine. It judges where a connection
//! would really go, after every fallback a DSN without a host goes through
//! (`PGHOSTADDR`, `PGHOST`, then the default socket directory), and checks again once
//! connected, from the server's own view of the address it answered on. Local means a
//! Unix socket directory, `localhost`, a loopback address, or a name whose addresses
//! are all loopback.

use std::net::IpAddr;

use sqlx::PgPool;

use super::UsageError;
use crate::config::Dsn;

/// Refuses `dsn` unless every host it would connect to is local.
///
/// # Errors
/// [`UsageError`] naming the host and where it came from.
pub async fn require_local(dsn: &Dsn) -> Result<(), UsageError> {
    let options = dsn
        .connect_options()
        .map_err(|e| UsageError(e.to_string()))?;
    if options.get_socket().is_some() {
        return Ok(());
    }
    let port = options.get_port();
    // The driver's options name the first host; a multi-host DSN's others come from
    // its own list.
    let listed = dsn.hosts().iter().map(String::as_str);
    for host in std::iter::once(options.get_host()).chain(listed) {
        if !is_local(host, port).await {
            return Err(UsageError(format!(
                "torture only targets loopback databases, not {host:?} ({})",
                origin(dsn)
            )));
        }
    }
    Ok(())
}

/// Refuses a server that answered on a non-loopback address (checked once connected).
///
/// # Errors
/// [`UsageError`] for a remote server; the query's error when it fails.
pub async fn require_local_server(pool: &PgPool) -> anyhow::Result<()> {
    match crate::queue::torture::server_address(pool).await? {
        None => Ok(()),
        Some(address) if is_loopback_literal(&address) => Ok(()),
        Some(address) => Err(UsageError(format!(
            "torture only targets loopback databases; the server answered on {address}"
        ))
        .into()),
    }
}

/// Where the host came from, for the refusal message.
fn origin(dsn: &Dsn) -> &'static str {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if dsn.host().is_some() {
        "from the DSN"
    } else if set("PGHOSTADDR") {
        "the DSN has no host; from PGHOSTADDR"
    } else if set("PGHOST") {
        "the DSN has no host; from PGHOST"
    } else {
        "the default host"
    }
}

async fn is_local(host: &str, port: u16) -> bool {
    if host.starts_with('/') || host.starts_with('@') || is_loopback_literal(host) {
        return true;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if host.parse::<IpAddr>().is_ok() || host.is_empty() {
        return false;
    }
    // A name: local only when every address it resolves to is loopback.
    match tokio::net::lookup_host((host, port)).await {
        Ok(addresses) => {
            let addresses: Vec<_> = addresses.collect();
            !addresses.is_empty() && addresses.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

fn is_loopback_literal(host: &str) -> bool {
    host.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_local_hosts() {
        for host in [
            "localhost",
            "127.0.0.1",
            "127.3.2.1",
            "::1",
            "[::1]",
            "/var/run/postgresql",
            "@abstract",
        ] {
            assert!(is_local(host, 5432).await, "{host:?}");
        }
        for host in ["10.0.0.5", "192.168.1.2", "", "no-such-host.invalid"] {
            assert!(!is_local(host, 5432).await, "{host:?}");
        }
    }

    #[tokio::test]
    async fn the_dsn_host_is_judged_after_its_fallbacks() {
        let local: Dsn = "postgres://u@127.0.0.1/x".parse().unwrap();
        assert!(require_local(&local).await.is_ok());
        let socket: Dsn = "host=/tmp dbname=x".parse().unwrap();
        assert!(require_local(&socket).await.is_ok());
        let remote: Dsn = "postgres://u@192.0.2.1/x".parse().unwrap();
        let error = require_local(&remote).await.unwrap_err();
        assert!(error.0.contains("192.0.2.1"), "{error}");
    }
}

//! Who may call the HTTP server (spec §9.3), in this order: the CIDR allow-list, then
//! a bearer token (constant-time compare) or a TUI JWT signed with it. Failures are
//! rate-limited per remote host. Proxy headers are ignored: only the TCP peer counts.

use std::net::{IpAddr, SocketAddr};

use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderMap};
use ipnet::IpNet;
use subtle::ConstantTimeEq;

use super::HttpError;
use super::jwt;
use super::limiter::Limiter;
use crate::config::metrics::{MetricsConfig, Secret};

/// Parsed `--metrics-allow-cidrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// Parses the items; `Ok(None)` when there are none.
    ///
    /// # Errors
    /// An item that is neither `localhost`, a CIDR prefix nor an IP address.
    pub fn parse(items: &[String]) -> Result<Option<AllowList>, HttpError> {
        let mut nets = Vec::new();
        for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
            if item.eq_ignore_ascii_case("localhost") {
                nets.push(IpNet::from(IpAddr::from([127, 0, 0, 1])));
                nets.push(IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)));
            } else if item.contains('/') {
                let net = item
                    .parse::<IpNet>()
                    .map_err(|_| HttpError::AllowPrefix(item.to_owned()))?;
                nets.push(net.trunc());
            } else {
                let ip = strip_zone(item)
                    .parse::<IpAddr>()
                    .map_err(|_| HttpError::AllowAddress(item.to_owned()))?;
                nets.push(IpNet::from(ip));
            }
        }
        Ok((!nets.is_empty()).then_some(AllowList(nets)))
    }

    /// Whether `ip` is inside a prefix of its own family.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A v4 client of a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

fn strip_zone(host: &str) -> &str {
    host.split('%').next().unwrap_or(host)
}

/// A refused request: its status and plain-text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 401, 403 or 429.
    pub status: StatusCode,
    /// `unauthorized`, `forbidden` or `rate limited`.
    pub body: &'static str,
}

/// The access rules of one server.
#[derive(Debug)]
pub struct Access {
    allow: Option<AllowList>,
    token: Option<Secret>,
    allow_no_exp: bool,
    limiter: Limiter,
}

impl Access {
    /// Rules from the validated settings.
    ///
    /// # Errors
    /// A bad allow-list item.
    pub fn from_config(config: &MetricsConfig) -> Result<Self, HttpError> {
        Ok(Access {
            allow: AllowList::parse(&config.allow_cidrs)?,
            token: config.auth_token.clone(),
            allow_no_exp: config.auth_allow_no_exp,
            limiter: Limiter::new(
                config.auth_limit,
                config.auth_window,
                config.auth_max_entries,
            ),
        })
    }

    /// Whether anything restricts access (a token or an allow-list).
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.token.is_none()
    }

    /// Checks one request from `peer`; logs and rate-limits refusals.
    ///
    /// # Errors
    /// The refusal to send.
    pub fn check(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        method: &str,
        path: &str,
    ) -> Result<(), Refusal> {
        let host = peer.ip().to_canonical().to_string();
        if let Some(allow) = &self.allow {
            if !allow.contains(peer.ip()) {
                let limited = !self.limiter.allow(&host);
                tracing::warn!(path, method, remote_addr = %peer, remote_host = %host,
                    reason = "allowlist", rate_limited = limited, "Denied request");
                return Err(refusal(limited, StatusCode::FORBIDDEN, "forbidden"));
            }
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        if let Some(presented) = bearer(headers) {
            let secret = token.expose();
            if bool::from(presented.as_bytes().ct_eq(secret.as_bytes()))
                || jwt::is_valid(presented, secret, self.allow_no_exp)
            {
                return Ok(());
            }
        }
        let limited = !self.limiter.allow(&host);
        tracing::warn!(path, method, remote_addr = %peer, remote_host = %host,
            rate_limited = limited, "Unauthorized request");
        Err(refusal(limited, StatusCode::UNAUTHORIZED, "unauthorized"))
    }
}

fn refusal(limited: bool, status: StatusCode, body: &'static str) -> Refusal {
    if limited {
        Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: "rate limited",
        }
    } else {
        Refusal { status, body }
    }
}

/// The token of an `Authorization: Bearer <token>` header (prefix case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let prefix = value.get(..7)?;
    prefix
        .eq_ignore_ascii_case("bearer ")
        .then(|| value[7..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Result<Option<AllowList>, HttpError> {
        AllowList::parse(&items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn allow_list_syntax() {
        assert_eq!(list(&["", " "]).unwrap(), None);
        let allow = list(&["localhost", "10.0.0.0/8", " 192.168.1.5 ", "fe80::1%eth0"])
            .unwrap()
            .unwrap();
        for ip in [
            "127.0.0.1",
            "::1",
            "10.2.3.4",
            "192.168.1.5",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(allow.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.2", "192.168.1.6", "::2", "11.0.0.1"] {
            assert!(!allow.contains(ip.parse().unwrap()), "{ip}");
        }
        assert_eq!(
            list(&["10.0.0.0/33"]).unwrap_err().to_string(),
            r#"invalid metrics allowlist prefix "10.0.0.0/33""#
        );
        assert_eq!(
            list(&["nope"]).unwrap_err().to_string(),
            r#"invalid metrics allowlist address "nope""#
        );
    }

    #[test]
    fn bearer_prefix_is_case_insensitive_and_trimmed() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "BeArEr   tok ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("tok"));
        headers.insert(AUTHORIZATION, "Basic tok".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}

//! Postgres DSNs in every form reproq-django hands us (spec/django-contract.md §1.6):
//! `postgres://` and `postgresql://` URLs, unescaped passwords containing `@`, an empty
//! host or port (`postgres://u:p@:/db`), query parameters such as `sslmode`, and libpq
//! `key=value` strings. Missing parts fall back to the libpq `PG*` variables and
//! `.pgpass`, as libpq does. The password never reaches `Debug` or `Display`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// A DSN that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DSN: {0}")]
pub struct DsnError(String);

/// Connection parameters we forward to the driver; anything else is dropped with a warning.
const KNOWN_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
];

/// Parameters libpq accepts that the driver has no use for; ignored silently.
const IGNORED_PARAMS: &[&str] = &["connect_timeout", "target_session_attrs", "gssencmode"];

/// A parsed DSN. `Display` and `Debug` show it with the password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    user: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
    params: Vec<(String, String)>,
}

impl Dsn {
    /// Connection options for the driver: the DSN's parts over the `PG*` environment,
    /// with `.pgpass` consulted last when no password was given.
    ///
    /// # Errors
    /// A parameter value the driver rejects (an unknown `sslmode`, say).
    pub fn connect_options(&self) -> Result<PgConnectOptions, DsnError> {
        // Everything travels as query parameters so that an empty host stays "not
        // given" (the URL host slot cannot be empty when credentials are present).
        let mut url = String::from("postgres://localhost/?");
        let mut push = |key: &str, value: &str| {
            url.push_str(key);
            url.push('=');
            url.push_str(&percent_encode(value));
            url.push('&');
        };
        let host = match &self.host {
            Some(host) => host.clone(),
            None => std::env::var("PGHOSTADDR")
                .or_else(|_| std::env::var("PGHOST"))
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| default_host(self.effective_port())),
        };
        push("host", &host);
        push("port", &self.effective_port().to_string());
        if let Some(user) = &self.user {
            push("user", user);
        }
        if let Some(password) = &self.password {
            push("password", password);
        }
        if let Some(dbname) = &self.dbname {
            push("dbname", dbname);
        }
        for (key, value) in &self.params {
            push(key, value);
        }
        PgConnectOptions::from_str(&url).map_err(|err| DsnError(err.to_string()))
    }

    fn effective_port(&self) -> u16 {
        self.port
            .or_else(|| std::env::var("PGPORT").ok()?.parse().ok())
            .unwrap_or(5432)
    }

    /// The host as written in the DSN, if any (used to refuse non-loopback load tests).
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), DsnError> {
        match key {
            "user" => self.user = non_empty(value),
            "password" => self.password = Some(value),
            "host" | "hostaddr" => self.host = non_empty(value),
            "port" if value.is_empty() => self.port = None,
            "port" => {
                self.port = Some(
                    value
                        .parse()
                        .map_err(|_| DsnError(format!("invalid port {value:?}")))?,
                );
            }
            "dbname" => self.dbname = non_empty(value),
            key if KNOWN_PARAMS.contains(&key) => self.params.push((key.into(), value)),
            key if IGNORED_PARAMS.contains(&key) => {}
            key => tracing::warn!(parameter = key, "ignoring unknown DSN parameter"),
        }
        Ok(())
    }

    fn parse_url(input: &str, rest: &str) -> Result<Self, DsnError> {
        let mut dsn = Dsn::empty();
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(slash) => (&before_query[..slash], &before_query[slash + 1..]),
            None => (before_query, ""),
        };
        // Userinfo ends at the *last* `@`, as Go's URL parser does, so an unescaped
        // `@` in a password works.
        let host_port = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                dsn.user = non_empty(percent_decode(user)?);
                dsn.password = password.map(percent_decode).transpose()?;
                &authority[at + 1..]
            }
            None => authority,
        };
        let (host, port) = split_host_port(host_port).ok_or_else(|| {
            DsnError(format!(
                "cannot parse host and port in {}",
                redact_url(input)
            ))
        })?;
        dsn.host = non_empty(percent_decode(host)?);
        if !port.is_empty() {
            dsn.set("port", port.to_owned())?;
        }
        dsn.dbname = non_empty(percent_decode(path)?);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            dsn.set(&percent_decode(key)?, percent_decode(value)?)?;
        }
        Ok(dsn)
    }

    fn parse_key_value(input: &str) -> Result<Self, DsnError> {
        let mut dsn = Dsn::empty();
        let mut chars = input.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_none() {
                break;
            }
            let key: String =
                std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next() != Some('=') {
                return Err(DsnError(format!(
                    "missing \"=\" after {key:?} in connection string"
                )));
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                loop {
                    match chars.next() {
                        Some('\\') => value.extend(chars.next()),
                        Some('\'') => break,
                        Some(c) => value.push(c),
                        None => {
                            return Err(DsnError(
                                "unterminated quoted value in connection string".into(),
                            ));
                        }
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if c == '\\' {
                        value.extend(chars.next());
                    } else {
                        value.push(c);
                    }
                }
            }
            dsn.set(&key, value)?;
        }
        Ok(dsn)
    }

    fn empty() -> Self {
        Dsn {
            user: None,
            password: None,
            host: None,
            port: None,
            dbname: None,
            params: Vec::new(),
        }
    }
}

impl FromStr for Dsn {
    type Err = DsnError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(DsnError("empty".into()));
        }
        for scheme in ["postgres://", "postgresql://"] {
            if let Some(rest) = trimmed.strip_prefix(scheme) {
                return Dsn::parse_url(trimmed, rest);
            }
        }
        if trimmed.contains("://") {
            return Err(DsnError(
                "scheme must be postgres:// or postgresql://".into(),
            ));
        }
        if trimmed.contains('=') {
            return Dsn::parse_key_value(trimmed);
        }
        Err(DsnError(
            "expected a postgres:// URL or key=value pairs".into(),
        ))
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}")?;
            if self.password.is_some() {
                write!(f, ":[REDACTED]")?;
            }
            write!(f, "@")?;
        }
        write!(f, "{}", self.host.as_deref().unwrap_or(""))?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "/{}", self.dbname.as_deref().unwrap_or(""))?;
        let mut separator = '?';
        for (key, value) in &self.params {
            let shown = if key == "password" {
                "[REDACTED]"
            } else {
                value
            };
            write!(f, "{separator}{key}={shown}")?;
            separator = '&';
        }
        Ok(())
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({self})")
    }
}

/// Splits `host:port`, `[v6]:port`, `host`, `:port` or ``.
fn split_host_port(input: &str) -> Option<(&str, &str)> {
    if let Some(rest) = input.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => "",
            None => return None,
        };
        return Some((&rest[..end], port));
    }
    Some(input.rsplit_once(':').unwrap_or((input, "")))
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn percent_decode(input: &str) -> Result<String, DsnError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| DsnError("percent-encoded text is not UTF-8".into()))
}

fn percent_encode(input: &str) -> String {
    input
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Removes the password from a URL for error messages.
fn redact_url(input: &str) -> String {
    input
        .parse::<Dsn>()
        .map(|d| d.to_string())
        .unwrap_or_else(|_| "<DSN>".into())
}

/// libpq's default when no host is given: the first local socket directory, else localhost.
fn default_host(port: u16) -> String {
    let socket = format!(".s.PGSQL.{port}");
    ["/var/run/postgresql", "/private/tmp", "/tmp"]
        .into_iter()
        .find(|dir| Path::new(dir).join(&socket).exists())
        .unwrap_or("localhost")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Dsn {
        input.parse().unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    #[test]
    fn url_with_every_part() {
        let dsn = parse("postgres://user:pass@db.example:6543/reproq?sslmode=disable");
        assert_eq!(dsn.user.as_deref(), Some("user"));
        assert_eq!(dsn.password.as_deref(), Some("pass"));
        assert_eq!(dsn.host.as_deref(), Some("db.example"));
        assert_eq!(dsn.port, Some(6543));
        assert_eq!(dsn.dbname.as_deref(), Some("reproq"));
        assert_eq!(
            dsn.params,
            vec![("sslmode".to_owned(), "disable".to_owned())]
        );
        let options = dsn.connect_options().unwrap();
        assert_eq!(options.get_host(), "db.example");
        assert_eq!(options.get_port(), 6543);
        assert_eq!(options.get_username(), "user");
        assert_eq!(options.get_database(), Some("reproq"));
    }

    #[test]
    fn password_with_at_signs_ends_at_last_at() {
        let dsn = parse("postgresql://app:p@ss@w0rd@localhost:5432/mydb");
        assert_eq!(dsn.user.as_deref(), Some("app"));
        assert_eq!(dsn.password.as_deref(), Some("p@ss@w0rd"));
        assert_eq!(dsn.host.as_deref(), Some("localhost"));
    }

    #[test]
    fn empty_host_and_port_mean_defaults() {
        let dsn = parse("postgres://app:secret@:/mydb");
        assert_eq!(dsn.host, None);
        assert_eq!(dsn.port, None);
        assert_eq!(dsn.dbname.as_deref(), Some("mydb"));
        let options = dsn.connect_options().unwrap();
        assert_eq!(options.get_database(), Some("mydb"));
        assert_eq!(options.get_username(), "app");
    }

    #[test]
    fn percent_escapes_are_decoded() {
        let dsn = parse("postgres://us%40er:p%2Fw@[::1]:5433/d%20b");
        assert_eq!(dsn.user.as_deref(), Some("us@er"));
        assert_eq!(dsn.password.as_deref(), Some("p/w"));
        assert_eq!(dsn.host.as_deref(), Some("::1"));
        assert_eq!(dsn.port, Some(5433));
        assert_eq!(dsn.dbname.as_deref(), Some("d b"));
    }

    #[test]
    fn sslmodes_are_accepted() {
        for mode in ["disable", "prefer", "require"] {
            let dsn = parse(&format!("postgres://u@h/db?sslmode={mode}"));
            assert!(dsn.connect_options().is_ok(), "{mode}");
        }
        let bad = parse("postgres://u@h/db?sslmode=bogus");
        assert!(bad.connect_options().is_err());
    }

    #[test]
    fn key_value_form() {
        let dsn = parse("host=db port=5444 user=app password='two words' dbname=x sslmode=require");
        assert_eq!(dsn.host.as_deref(), Some("db"));
        assert_eq!(dsn.port, Some(5444));
        assert_eq!(dsn.password.as_deref(), Some("two words"));
        let dsn = parse(r"user=app password='a \'quoted\' pw' dbname = x");
        assert_eq!(dsn.password.as_deref(), Some("a 'quoted' pw"));
        assert_eq!(dsn.dbname.as_deref(), Some("x"));
    }

    #[test]
    fn errors_are_clear() {
        for bad in [
            "",
            "mysql://u@h/db",
            "just words",
            "postgres://u@h:notaport/db",
            "host='open",
        ] {
            assert!(bad.parse::<Dsn>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_never_displayed() {
        let dsn = parse("postgres://user:hunter2@host/db?password=hunter3");
        for shown in [dsn.to_string(), format!("{dsn:?}")] {
            assert!(!shown.contains("hunter"), "{shown}");
            assert!(shown.contains("[REDACTED]"), "{shown}");
        }
    }
}

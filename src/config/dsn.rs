//! Postgres DSNs in every form reproq-django hands us (spec/django-contract.md §1.6):
//! `postgres://` and `postgresql://` URLs, unescaped passwords containing `@`, an empty
//! host or port (`postgres://u:p@:/db`), query parameters such as `sslmode`, and libpq
//! `key=value` strings. Missing parts fall back to the libpq `PG*` variables and
//! `.pgpass`, as libpq does. The password never reaches `Debug` or `Display`.
//!
//! Multi-host DSNs are read as libpq and pgx read them: `postgres://u@h1:5432,h2/db`
//! (a host without a port takes the default) and `host=h1,h2 port=5432,5433` (one port
//! for every host, or one per host), `hostaddr` lists (which then replace the host
//! names for connecting), `connect_timeout` (seconds, per attempt, at least 2 as in
//! libpq) and `target_session_attrs`. pgx's `default_query_exec_mode` and
//! `statement_cache_capacity` choose whether named prepared statements may be used
//! (see `db::pooler`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

pub use super::dsn_modes::{QueryExecMode, TargetSessionAttrs};

/// A DSN that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DSN: {0}")]
pub struct DsnError(String);

impl DsnError {
    /// An error with this message.
    pub fn from_message(message: &str) -> Self {
        DsnError(message.to_owned())
    }
}

/// Connection parameters we forward to the driver; anything else is dropped with a warning.
const KNOWN_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
];

/// Parameters we read ourselves: kept for `Display`, never forwarded to the driver.
const OUR_PARAMS: &[&str] = &[
    "connect_timeout",
    "target_session_attrs",
    "default_query_exec_mode",
    "statement_cache_capacity",
];

/// Parameters libpq or pgx accept that we have no use for; ignored silently.
const IGNORED_PARAMS: &[&str] = &["gssencmode", "description_cache_capacity"];

/// Default per-attempt connect timeout when the DSN names none (libpq waits forever;
/// a worker walking a host list cannot).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One server of a DSN's host list, resolved: where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name, IP address or Unix socket directory.
    pub host: String,
    /// Port (also names the Unix socket).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed DSN. `Display` and `Debug` show it with the password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    user: Option<String>,
    password: Option<String>,
    /// Host names as written (empty: not given).
    hosts: Vec<String>,
    /// `hostaddr` values as written (empty: not given).
    hostaddrs: Vec<String>,
    /// Ports as written, `None` for an empty entry (empty: not given).
    ports: Vec<Option<u16>>,
    dbname: Option<String>,
    params: Vec<(String, String)>,
    connect_timeout: Option<Duration>,
    target_session_attrs: Option<TargetSessionAttrs>,
    exec_mode: QueryExecMode,
    statement_cache_capacity: Option<usize>,
}

impl Dsn {
    /// Connection options for the driver to reach the first host: the DSN's parts
    /// over the `PG*` environment, with `.pgpass` consulted last when no password was
    /// given.
    ///
    /// # Errors
    /// A parameter value the driver rejects (an unknown `sslmode`, say), or a host
    /// list that does not add up.
    pub fn connect_options(&self) -> Result<PgConnectOptions, DsnError> {
        let endpoints = self.endpoints()?;
        let first = endpoints
            .first()
            .ok_or_else(|| DsnError("no host to connect to".into()))?;
        self.connect_options_for(first)
    }

    /// Connection options for the driver to reach `endpoint` (one of
    /// [`Dsn::endpoints`]).
    ///
    /// # Errors
    /// A parameter value the driver rejects.
    pub fn connect_options_for(&self, endpoint: &Endpoint) -> Result<PgConnectOptions, DsnError> {
        // Everything travels as query parameters so that an empty host stays "not
        // given" (the URL host slot cannot be empty when credentials are present).
        let mut url = String::from("postgres://localhost/?");
        let mut push = |key: &str, value: &str| {
            url.push_str(key);
            url.push('=');
            url.push_str(&percent_encode(value));
            url.push('&');
        };
        push("host", &endpoint.host);
        push("port", &endpoint.port.to_string());
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
            if !OUR_PARAMS.contains(&key.as_str()) {
                push(key, value);
            }
        }
        PgConnectOptions::from_str(&url).map_err(|err| DsnError(err.to_string()))
    }

    /// Every server to try, in order: the DSN's hosts (or `hostaddr`s) with their
    /// ports, else `PGHOSTADDR`/`PGHOST` and `PGPORT`, else libpq's default.
    ///
    /// # Errors
    /// A port count that matches neither one nor the host count, or an empty entry in
    /// a list of several hosts (either may come from the environment).
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, DsnError> {
        let env_list = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        };
        let hosts: Vec<String> = if !self.hostaddrs.is_empty() {
            self.hostaddrs.clone()
        } else if !self.hosts.is_empty() {
            self.hosts.clone()
        } else {
            env_list("PGHOSTADDR")
                .or_else(|| env_list("PGHOST"))
                .unwrap_or_default()
        };
        check_list("host", &hosts)?;
        let ports: Vec<Option<u16>> = if self.ports.is_empty() {
            match env_list("PGPORT") {
                Some(list) => list
                    .iter()
                    .map(|p| parse_port(p))
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            }
        } else {
            self.ports.clone()
        };
        let host_count = hosts.len().max(1);
        if ports.len() > 1 && ports.len() != host_count {
            return Err(DsnError(format!(
                "{} ports for {host_count} host(s): give one port for all hosts or one per host",
                ports.len()
            )));
        }
        let port_at = |i: usize| {
            let given = if ports.len() == 1 {
                ports[0]
            } else {
                ports.get(i).copied().flatten()
            };
            given.unwrap_or(5432)
        };
        if hosts.is_empty() {
            let port = port_at(0);
            return Ok(vec![Endpoint {
                host: default_host(port),
                port,
            }]);
        }
        Ok(hosts
            .into_iter()
            .enumerate()
            .map(|(i, host)| Endpoint {
                host,
                port: port_at(i),
            })
            .collect())
    }

    /// The first host as written in the DSN, if any.
    pub fn host(&self) -> Option<&str> {
        self.hostaddrs
            .first()
            .or_else(|| self.hosts.first())
            .map(String::as_str)
    }

    /// Every host as written in the DSN (`hostaddr`s when given), for checks such as
    /// "loopback only".
    pub fn hosts(&self) -> &[String] {
        if self.hostaddrs.is_empty() {
            &self.hosts
        } else {
            &self.hostaddrs
        }
    }

    /// How long one connection attempt to one host may take: `connect_timeout` (or
    /// `PGCONNECT_TIMEOUT`), at least 2 s as in libpq, else
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
            .or_else(|| {
                let seconds: i64 = std::env::var("PGCONNECT_TIMEOUT")
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                connect_timeout_from_seconds(seconds)
            })
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// Which servers are acceptable (`target_session_attrs`, else
    /// `PGTARGETSESSIONATTRS`, else any).
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs
            .or_else(|| std::env::var("PGTARGETSESSIONATTRS").ok()?.parse().ok())
            .unwrap_or_default()
    }

    /// pgx's `default_query_exec_mode` as written (default `cache_statement`).
    pub fn exec_mode(&self) -> QueryExecMode {
        self.exec_mode
    }

    /// True when the DSN asks for no named prepared statements on server connections:
    /// an exec mode other than `cache_statement`, or `statement_cache_capacity=0`. This
    /// is the "behind a transaction-mode pooler" mode (see `db::pooler`).
    pub fn transaction_pooling(&self) -> bool {
        self.exec_mode != QueryExecMode::CacheStatement || self.statement_cache_capacity == Some(0)
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), DsnError> {
        match key {
            "host" => self.hosts = split_hosts("host", &value)?,
            "hostaddr" => self.hostaddrs = split_hosts("hostaddr", &value)?,
            "port" if value.is_empty() => self.ports = Vec::new(),
            "port" => {
                self.ports = value.split(',').map(parse_port).collect::<Result<_, _>>()?;
            }
            "dbname" => self.dbname = non_empty(value),
            "user" => self.user = non_empty(value),
            "password" => self.password = Some(value),
            "connect_timeout" => {
                let seconds: i64 = value.trim().parse().map_err(|_| {
                    DsnError(format!(
                        "invalid connect_timeout {value:?} (expected whole seconds)"
                    ))
                })?;
                self.connect_timeout = connect_timeout_from_seconds(seconds);
                self.remember(key, value);
            }
            "target_session_attrs" => {
                self.target_session_attrs = Some(value.parse().map_err(DsnError)?);
                self.remember(key, value);
            }
            "default_query_exec_mode" => {
                self.exec_mode = value.parse().map_err(DsnError)?;
                self.remember(key, value);
            }
            "statement_cache_capacity" => {
                self.statement_cache_capacity = Some(value.trim().parse().map_err(|_| {
                    DsnError(format!(
                        "invalid statement_cache_capacity {value:?} (expected a count)"
                    ))
                })?);
                self.remember(key, value);
            }
            key if KNOWN_PARAMS.contains(&key) => self.params.push((key.into(), value)),
            key if IGNORED_PARAMS.contains(&key) => {}
            key => tracing::warn!(parameter = key, "ignoring unknown DSN parameter"),
        }
        Ok(())
    }

    /// Keeps one of [`OUR_PARAMS`] for `Display`, replacing an earlier value.
    fn remember(&mut self, key: &str, value: String) {
        self.params.retain(|(k, _)| k != key);
        self.params.push((key.to_owned(), value));
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
        let host_ports = match authority.rfind('@') {
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
        let entries: Vec<&str> = host_ports.split(',').collect();
        for entry in &entries {
            let (host, port) = split_host_port(entry).ok_or_else(|| {
                DsnError(format!(
                    "cannot parse host and port in {}",
                    redact_url(input)
                ))
            })?;
            let host = percent_decode(host)?;
            if host.is_empty() && entries.len() > 1 {
                return Err(DsnError(
                    "empty host in the host list (write every host of h1:port,h2:port)".into(),
                ));
            }
            if !host.is_empty() {
                dsn.hosts.push(host);
            }
            dsn.ports.push(if port.is_empty() {
                None
            } else {
                Some(parse_port(port)?.ok_or_else(|| DsnError("empty port".into()))?)
            });
        }
        if dsn.ports.iter().all(Option::is_none) {
            dsn.ports.clear();
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

    /// Checks what only the whole DSN can tell: the host and port lists agree.
    fn validated(self) -> Result<Self, DsnError> {
        if !self.hosts.is_empty()
            && !self.hostaddrs.is_empty()
            && self.hosts.len() != self.hostaddrs.len()
        {
            return Err(DsnError(format!(
                "{} hostaddr values for {} hosts",
                self.hostaddrs.len(),
                self.hosts.len()
            )));
        }
        let host_count = self.hosts().len().max(1);
        if self.ports.len() > 1 && self.ports.len() != host_count {
            return Err(DsnError(format!(
                "{} ports for {host_count} host(s): give one port for all hosts or one per host",
                self.ports.len()
            )));
        }
        Ok(self)
    }

    fn empty() -> Self {
        Dsn {
            user: None,
            password: None,
            hosts: Vec::new(),
            hostaddrs: Vec::new(),
            ports: Vec::new(),
            dbname: None,
            params: Vec::new(),
            connect_timeout: None,
            target_session_attrs: None,
            exec_mode: QueryExecMode::CacheStatement,
            statement_cache_capacity: None,
        }
    }
}

/// libpq: zero or less waits forever (here: the default), 1 counts as 2.
fn connect_timeout_from_seconds(seconds: i64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds.max(2).unsigned_abs()))
}

/// Splits a `host`/`hostaddr` value on commas; an empty entry in a list is an error.
fn split_hosts(key: &str, value: &str) -> Result<Vec<String>, DsnError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = value.split(',').map(str::to_owned).collect();
    check_list(key, &list)?;
    Ok(list)
}

fn check_list(key: &str, list: &[String]) -> Result<(), DsnError> {
    if list.len() > 1 && list.iter().any(String::is_empty) {
        return Err(DsnError(format!(
            "empty entry in the {key} list {:?}",
            list.join(",")
        )));
    }
    Ok(())
}

/// One port of a list; empty means "the default".
fn parse_port(value: &str) -> Result<Option<u16>, DsnError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| DsnError(format!("invalid port {value:?}")))
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
                return Dsn::parse_url(trimmed, rest)?.validated();
            }
        }
        if trimmed.contains("://") {
            return Err(DsnError(
                "scheme must be postgres:// or postgresql://".into(),
            ));
        }
        if trimmed.contains('=') {
            return Dsn::parse_key_value(trimmed)?.validated();
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
        let hosts = self.hosts();
        let port_at = |i: usize| match self.ports.len() {
            1 => self.ports[0],
            _ => self.ports.get(i).copied().flatten(),
        };
        if hosts.is_empty() {
            if let Some(port) = port_at(0) {
                write!(f, ":{port}")?;
            }
        }
        for (i, host) in hosts.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            if host.contains(':') {
                write!(f, "[{host}]")?;
            } else {
                write!(f, "{host}")?;
            }
            if let Some(port) = port_at(i) {
                write!(f, ":{port}")?;
            }
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
        assert_eq!(dsn.hosts, vec!["db.example".to_owned()]);
        assert_eq!(dsn.ports, vec![Some(6543)]);
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
        assert_eq!(dsn.host(), Some("localhost"));
    }

    #[test]
    fn empty_host_and_port_mean_defaults() {
        let dsn = parse("postgres://app:secret@:/mydb");
        assert!(dsn.hosts.is_empty());
        assert!(dsn.ports.is_empty());
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
        assert_eq!(dsn.host(), Some("::1"));
        assert_eq!(dsn.ports, vec![Some(5433)]);
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
        assert_eq!(dsn.host(), Some("db"));
        assert_eq!(dsn.ports, vec![Some(5444)]);
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

    fn endpoints(input: &str) -> Vec<String> {
        parse(input)
            .endpoints()
            .unwrap()
            .iter()
            .map(Endpoint::to_string)
            .collect()
    }

    #[test]
    fn url_host_lists_take_the_default_port_where_none_is_given() {
        let dsn =
            parse("postgres://app:pw@db1:5432,db2:5433,db3/app?target_session_attrs=read-write");
        assert_eq!(
            dsn.endpoints().unwrap(),
            vec![
                Endpoint {
                    host: "db1".into(),
                    port: 5432
                },
                Endpoint {
                    host: "db2".into(),
                    port: 5433
                },
                Endpoint {
                    host: "db3".into(),
                    port: 5432
                },
            ]
        );
        assert_eq!(dsn.target_session_attrs(), TargetSessionAttrs::ReadWrite);
        let second = dsn
            .connect_options_for(&dsn.endpoints().unwrap()[1])
            .unwrap();
        assert_eq!(second.get_host(), "db2");
        assert_eq!(second.get_port(), 5433);
        assert_eq!(second.get_database(), Some("app"));
        assert_eq!(
            dsn.to_string(),
            "postgres://app:[REDACTED]@db1:5432,db2:5433,db3/app?target_session_attrs=read-write"
        );
        assert_eq!(
            endpoints("postgres://u@[::1]:5433,[::2]/db"),
            ["[::1]:5433", "[::2]:5432"]
        );
    }

    #[test]
    fn key_value_host_lists_with_one_port_or_one_per_host() {
        assert_eq!(
            endpoints("host=db1,db2 port=5432,5433 dbname=app"),
            ["db1:5432", "db2:5433"]
        );
        assert_eq!(
            endpoints("host=db1,db2 port=6000"),
            ["db1:6000", "db2:6000"]
        );
        assert_eq!(
            endpoints("host=db1,db2 port=6000,"),
            ["db1:6000", "db2:5432"]
        );
        let dsn = parse("host=a,b hostaddr=127.0.0.1,127.0.0.2 port=5432 connect_timeout=3");
        assert_eq!(dsn.endpoints().unwrap()[1].host, "127.0.0.2");
        assert_eq!(dsn.connect_timeout(), Duration::from_secs(3));
    }

    #[test]
    fn bad_host_lists_name_the_problem() {
        for (bad, expected) in [
            ("host=db1,db2 port=1,2,3", "3 ports for 2 host(s)"),
            ("postgres://u@db1,db2/x?port=1,2,3", "3 ports for 2 host(s)"),
            ("host=db1,,db3", "empty entry in the host list"),
            (
                "postgres://u@db1:5432,:5433/x",
                "empty host in the host list",
            ),
            (
                "host=a,b hostaddr=127.0.0.1",
                "1 hostaddr values for 2 hosts",
            ),
            ("host=a port=1,5432", "2 ports for 1 host(s)"),
            (
                "host=a target_session_attrs=master",
                "invalid target_session_attrs",
            ),
            ("host=a connect_timeout=soon", "invalid connect_timeout"),
            (
                "host=a default_query_exec_mode=fast",
                "invalid default_query_exec_mode",
            ),
        ] {
            let error = bad.parse::<Dsn>().unwrap_err().to_string();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }

    #[test]
    fn single_host_forms_still_work() {
        let dsn = parse("postgres://u@/db?host=/var/run/postgresql&port=5433&application_name=x");
        assert_eq!(
            endpoints("postgres://u@/db?host=/tmp/sock&port=5433"),
            ["/tmp/sock:5433"]
        );
        let options = dsn.connect_options().unwrap();
        assert_eq!(options.get_port(), 5433);
        assert_eq!(options.get_application_name(), Some("x"));
        assert_eq!(dsn.target_session_attrs(), TargetSessionAttrs::Any);
        assert!(!dsn.transaction_pooling());
    }

    #[test]
    fn pgx_exec_modes_select_transaction_pooling() {
        for (query, pooled) in [
            ("", false),
            ("?default_query_exec_mode=cache_statement", false),
            ("?default_query_exec_mode=exec", true),
            ("?default_query_exec_mode=simple_protocol", true),
            ("?default_query_exec_mode=describe_exec", true),
            ("?default_query_exec_mode=cache_describe", true),
            ("?statement_cache_capacity=0", true),
            ("?statement_cache_capacity=64", false),
        ] {
            let dsn = parse(&format!("postgres://u@h/db{query}"));
            assert_eq!(dsn.transaction_pooling(), pooled, "{query}");
            // Our parameters never reach the driver (sqlx would reject them).
            assert!(dsn.connect_options().is_ok(), "{query}");
        }
    }
}

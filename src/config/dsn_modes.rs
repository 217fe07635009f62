//! The typed DSN parameters that change how reproq connects rather than what the
//! driver sends: libpq's `target_session_attrs` and pgx's `default_query_exec_mode`.

use std::fmt;
use std::str::FromStr;

/// libpq's `target_session_attrs`: which server of a multi-host DSN is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetSessionAttrs {
    /// Any server that answers (the default).
    #[default]
    Any,
    /// `SHOW transaction_read_only` is `off`.
    ReadWrite,
    /// `SHOW transaction_read_only` is `on`.
    ReadOnly,
    /// `pg_is_in_recovery()` is false.
    Primary,
    /// `pg_is_in_recovery()` is true.
    Standby,
    /// A standby if any host is one, else any server (libpq's second pass).
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Whether a server with these properties is acceptable. `PreferStandby` accepts
    /// standbys only: its second pass is [`TargetSessionAttrs::Any`].
    pub fn accepts(self, read_only: bool, in_recovery: bool) -> bool {
        match self {
            TargetSessionAttrs::Any => true,
            TargetSessionAttrs::ReadWrite => !read_only,
            TargetSessionAttrs::ReadOnly => read_only,
            TargetSessionAttrs::Primary => !in_recovery,
            TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby => in_recovery,
        }
    }
}

impl FromStr for TargetSessionAttrs {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(match value {
            "" | "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" => TargetSessionAttrs::Primary,
            "standby" => TargetSessionAttrs::Standby,
            "prefer-standby" => TargetSessionAttrs::PreferStandby,
            other => {
                return Err(format!(
                    "invalid target_session_attrs {other:?} (expected any, read-write, \
                     read-only, primary, standby or prefer-standby)"
                ));
            }
        })
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
            TargetSessionAttrs::Primary => "primary",
            TargetSessionAttrs::Standby => "standby",
            TargetSessionAttrs::PreferStandby => "prefer-standby",
        })
    }
}

/// pgx's `default_query_exec_mode`. Only `cache_statement` keeps named prepared
/// statements on the server connection; every other mode is safe behind a
/// transaction-mode pooler such as PgBouncer, and reproq treats them alike (see
/// `db::pooler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryExecMode {
    /// Named statements prepared once per connection and cached (the default).
    #[default]
    CacheStatement,
    /// pgx: unnamed statements, descriptions cached.
    CacheDescribe,
    /// pgx: unnamed statements, described on every run.
    DescribeExec,
    /// pgx: unnamed statements, parameter types from the arguments.
    Exec,
    /// pgx: the simple protocol, arguments interpolated by the client.
    SimpleProtocol,
}

impl FromStr for QueryExecMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(match value {
            "" | "cache_statement" => QueryExecMode::CacheStatement,
            "cache_describe" => QueryExecMode::CacheDescribe,
            "describe_exec" => QueryExecMode::DescribeExec,
            "exec" => QueryExecMode::Exec,
            "simple_protocol" => QueryExecMode::SimpleProtocol,
            other => {
                return Err(format!(
                    "invalid default_query_exec_mode {other:?} (expected cache_statement, \
                     cache_describe, describe_exec, exec or simple_protocol)"
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libpq_value_parses_and_prints_back() {
        for value in [
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ] {
            let attrs: TargetSessionAttrs = value.parse().unwrap();
            assert_eq!(attrs.to_string(), value);
        }
        assert!("readwrite".parse::<TargetSessionAttrs>().is_err());
    }

    #[test]
    fn acceptance_follows_libpq() {
        use TargetSessionAttrs::*;
        // (read_only, in_recovery): a primary, a standby, a read-only primary.
        let primary = (false, false);
        let standby = (true, true);
        let read_only_primary = (true, false);
        let check = |attrs: TargetSessionAttrs, (ro, rec): (bool, bool)| attrs.accepts(ro, rec);
        assert!(check(ReadWrite, primary) && !check(ReadWrite, standby));
        assert!(!check(ReadWrite, read_only_primary) && check(Primary, read_only_primary));
        assert!(check(ReadOnly, standby) && check(ReadOnly, read_only_primary));
        assert!(check(Standby, standby) && !check(Standby, read_only_primary));
        assert!(check(PreferStandby, standby) && !check(PreferStandby, primary));
        assert!(check(Any, primary) && check(Any, standby));
    }

    #[test]
    fn exec_modes_parse() {
        assert_eq!("exec".parse(), Ok(QueryExecMode::Exec));
        assert_eq!("simple_protocol".parse(), Ok(QueryExecMode::SimpleProtocol));
        assert!("prepare".parse::<QueryExecMode>().is_err());
    }
}

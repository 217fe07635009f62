//! Resolving a table of settings layer by layer (default < file < env < flag), each
//! value remembered with its source; problems are collected, never fatal on the spot.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;

use super::file::{FileError, Section};
use super::layers::{Layers, from_file};
use super::table::{Fallback, Kind, Resolved, Spec, Value};
use super::{DSN_REQUIRED, Dsn, duration, split_list, values};

/// Resolves every row of `table` from `section` and the flags, in table order.
pub fn table(layers: &mut Layers<'_>, table: &[Spec], section: Option<Section<'_>>) -> Resolved {
    let mut resolved = Resolved::default();
    for spec in table {
        let value = row(layers, spec, section);
        resolved.insert(spec.key, value);
    }
    resolved
}

fn row(layers: &mut Layers<'_>, spec: &Spec, section: Option<Section<'_>>) -> Value {
    let flag = spec
        .flag
        .and_then(|id| flag_value(layers.matches(), id, spec.kind));
    let file = from_file(section, |s| file_value(s, spec));
    let value = layers.pick(spec.key, spec.flag, flag, file, default_value(spec));
    if spec.secret && value != Value::Text(String::new()) {
        layers.redact_last();
    }
    value
}

fn default_value(spec: &Spec) -> Value {
    match spec.default {
        Fallback::Computed(compute) => Value::Text(compute()),
        // Every default parses (checked by a unit test of `table`).
        Fallback::Is(text) => spec
            .kind
            .parse(text)
            .unwrap_or_else(|_| Value::Text(text.to_owned())),
    }
}

/// The flag's (or its env variable's) value, as clap parsed it; empty means not given.
fn flag_value(matches: &ArgMatches, id: &str, kind: Kind) -> Option<Value> {
    fn one<T: Clone + Send + Sync + 'static>(matches: &ArgMatches, id: &str) -> Option<T> {
        matches.try_get_one::<T>(id).ok().flatten().cloned()
    }
    let text = |t: String| (!t.is_empty()).then_some(Value::Text(t));
    match kind {
        Kind::Text => one::<String>(matches, id).and_then(text),
        Kind::TrimmedText => one::<String>(matches, id).and_then(|t| text(t.trim().to_owned())),
        Kind::Path => one::<PathBuf>(matches, id).and_then(|p| text(p.display().to_string())),
        Kind::List => one::<String>(matches, id)
            .map(|t| split_list(&t))
            .filter(|l| !l.is_empty())
            .map(Value::List),
        Kind::Int(_) => one::<i64>(matches, id).map(Value::Int),
        Kind::Duration(_) => one::<Duration>(matches, id).map(Value::Duration),
        Kind::DurationText(_) => {
            one::<Duration>(matches, id).map(|d| Value::Text(duration::format(d)))
        }
        Kind::Float => one::<f64>(matches, id).map(Value::Float),
        Kind::Bool => one::<bool>(matches, id).map(Value::Bool),
        Kind::Bytes => one::<u64>(matches, id).map(Value::Bytes),
    }
}

/// The file's value; empty strings and lists are unset.
fn file_value(section: &Section<'_>, spec: &Spec) -> Result<Option<Value>, FileError> {
    let key = spec.file_key();
    Ok(match spec.kind {
        Kind::Text | Kind::TrimmedText | Kind::Path | Kind::DurationText(_) => {
            section.string(key)?.map(Value::Text)
        }
        Kind::List => section.list(key)?.map(Value::List),
        Kind::Int(_) => section.int(key)?.map(Value::Int),
        Kind::Duration(_) => section.duration(key)?.map(Value::Duration),
        Kind::Float => section.float(key)?.map(Value::Float),
        Kind::Bool => section.boolean(key)?.map(Value::Bool),
        Kind::Bytes => match section.string(key) {
            Ok(Some(text)) => Some(Value::Bytes(
                values::byte_size(&text).map_err(|e| section.error(key, &e))?,
            )),
            Ok(None) => None,
            Err(_) => section
                .int(key)?
                .and_then(|n| u64::try_from(n).ok())
                .map(Value::Bytes),
        },
    })
}

/// DSN precedence: top-level `dsn` < `<table>.dsn` < `DATABASE_URL` < `--dsn`.
pub fn dsn(
    layers: &mut Layers<'_>,
    flag: Option<String>,
    top: Option<Section<'_>>,
    table: Option<Section<'_>>,
    table_name: &str,
) -> Option<Dsn> {
    let key = "dsn";
    let file_value = match from_file(table, |s| s.string("dsn")) {
        Ok(Some(value)) => Ok(Some(value)),
        Ok(None) => from_file(top, |s| s.string("dsn")),
        Err(error) => Err(error),
    };
    let text = layers.pick(
        key,
        Some("dsn"),
        flag.filter(|s| !s.is_empty()),
        file_value,
        String::new(),
    );
    if text.is_empty() {
        layers.problems.push(DSN_REQUIRED.into());
        return None;
    }
    match text.parse::<Dsn>() {
        Ok(dsn) => {
            layers.show(key, dsn.to_string());
            Some(dsn)
        }
        Err(error) => {
            layers.show(key, "[unparsable]".into());
            layers.problem(key, format!("{error} (for {table_name})"));
            None
        }
    }
}

//! A `tracing` layer that writes each event as one line, JSON or text.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::redact::is_redacted_key;

const REDACTED: &str = "[REDACTED]";

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the Go worker's format).
    Json,
    /// `time LEVEL msg key=value …` for people at a terminal.
    Text,
}

/// Writes events through `writer` in `format`, with span fields and redaction.
pub struct LogLayer<W> {
    format: LogFormat,
    writer: W,
}

impl<W> LogLayer<W> {
    /// A layer writing to `writer`.
    pub fn new(format: LogFormat, writer: W) -> Self {
        LogLayer { format, writer }
    }
}

/// Ordered fields of a span or event, already redacted.
#[derive(Default, Clone)]
struct Fields {
    message: Option<String>,
    values: Vec<(String, Value)>,
}

impl Fields {
    fn set(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
            return;
        }
        let value = if is_redacted_key(name) {
            Value::String(REDACTED.into())
        } else {
            value
        };
        match self.values.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name.to_owned(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, Value::String(value.to_string()));
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

impl<S, W> Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<Fields>() {
                    fields.values.extend(span_fields.values.iter().cloned());
                }
            }
        }
        event.record(&mut fields);
        let time = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let level = level_name(event.metadata().level());
        let message = fields.message.unwrap_or_default();
        let mut line = match self.format {
            LogFormat::Json => {
                let mut object = Map::new();
                object.insert("time".into(), Value::String(time));
                object.insert("level".into(), Value::String(level.into()));
                object.insert("msg".into(), Value::String(message));
                for (key, value) in fields.values {
                    object.insert(key, value);
                }
                Value::Object(object).to_string()
            }
            LogFormat::Text => {
                let mut text = format!("{time} {level:<5} {message}");
                for (key, value) in fields.values {
                    match value {
                        Value::String(s) => {
                            let _ = write!(text, " {key}={s:?}");
                        }
                        other => {
                            let _ = write!(text, " {key}={other}");
                        }
                    }
                }
                text
            }
        };
        line.push('\n');
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(format: LogFormat, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(LogLayer::new(format, buffer.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_spec_keys_and_span_fields() {
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("task", worker_id = "w-1", result_id = 42_i64);
            let _guard = span.enter();
            tracing::warn!(
                task_path = "app.tasks.x",
                count = 3_u64,
                "Task rejected by validator"
            );
        });
        let line: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["msg"], "Task rejected by validator");
        assert_eq!(line["worker_id"], "w-1");
        assert_eq!(line["result_id"], 42);
        assert_eq!(line["task_path"], "app.tasks.x");
        assert_eq!(line["count"], 3);
        assert!(line["time"].as_str().unwrap().contains('T'));
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(&keys[..3], ["time", "level", "msg"]);
    }

    #[test]
    fn secrets_never_reach_a_line() {
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("conn", password = "hunter2");
            let _guard = span.enter();
            tracing::info!(
                auth_token = "tok-123",
                spec_json = "{\"a\":1}",
                Authorization = "Bearer x",
                "connecting"
            );
        });
        for secret in ["hunter2", "tok-123", "{\\\"a\\\":1}", "Bearer x"] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
        let text = capture(LogFormat::Text, || {
            tracing::error!(db_password = "hunter2", "oops")
        });
        assert!(
            !text.contains("hunter2") && text.contains("ERROR oops"),
            "{text}"
        );
    }
}

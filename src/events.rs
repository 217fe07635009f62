//! Task events for `/events` (spec §9.5): the [`Event`] JSON shape and the
//! [`EventBus`] that fans them out. Publishing never blocks: a subscriber that falls
//! behind loses events (tokio `broadcast`), the worker never waits for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for replay to a new subscriber.
pub const HISTORY: usize = 200;
/// Events a subscriber may fall behind before it starts losing them.
pub const SUBSCRIBER_BUFFER: usize = 50;

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Normal progress.
    Info,
    /// Something the operator may want to look at.
    Warn,
    /// A failure.
    Error,
}

/// One event, serialised with the keys in the order reproq-tui expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Worker clock, RFC 3339 with nanoseconds (trailing zeros trimmed).
    pub ts: String,
    /// Severity.
    pub level: Level,
    /// `task_started`, `task_success`, ….
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Human-readable message.
    pub msg: &'static str,
    /// Queue of the task.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub queue: String,
    /// `result_id` of the task.
    #[serde(skip_serializing_if = "is_zero")]
    pub task_id: i64,
    /// This worker's id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub worker_id: String,
    /// Extra string fields, sorted by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl Event {
    /// An event stamped with the worker's clock now.
    pub fn new(level: Level, kind: &'static str, msg: &'static str) -> Self {
        Event {
            ts: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            level,
            kind,
            msg,
            queue: String::new(),
            task_id: 0,
            worker_id: String::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// Compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event holds only strings and integers")
    }
}

/// Which events a subscriber wants (all set fields must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exact queue.
    pub queue: Option<String>,
    /// Exact worker id.
    pub worker_id: Option<String>,
    /// Exact task id.
    pub task_id: Option<i64>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.queue.as_ref().is_none_or(|q| *q == event.queue)
            && self
                .worker_id
                .as_ref()
                .is_none_or(|w| *w == event.worker_id)
            && self.task_id.is_none_or(|t| t == event.task_id)
    }
}

/// Fans events out to subscribers and keeps the most recent ones for replay.
#[derive(Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    // The lock is held while publishing and while subscribing, so a subscriber's
    // history and live stream neither overlap nor leave a gap.
    history: Mutex<VecDeque<Arc<Event>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        EventBus {
            sender: broadcast::channel(SUBSCRIBER_BUFFER).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publishes `event` without waiting for anyone.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    /// The recent events, oldest first, and a receiver for everything after them.
    pub fn subscribe(&self) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (history.iter().cloned().collect(), self.sender.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_in_order_and_empty_ones_are_omitted() {
        let mut event = Event::new(Level::Warn, "task_retry", "task failed; retrying");
        event.ts = "2025-01-01T12:00:00.1Z".into();
        assert_eq!(
            event.to_json(),
            r#"{"ts":"2025-01-01T12:00:00.1Z","level":"warn","type":"task_retry","msg":"task failed; retrying"}"#
        );
        event.queue = "default".into();
        event.task_id = 42;
        event.worker_id = "w".into();
        event.metadata.insert("z".into(), "1".into());
        event.metadata.insert("a".into(), "2".into());
        assert_eq!(
            event.to_json(),
            r#"{"ts":"2025-01-01T12:00:00.1Z","level":"warn","type":"task_retry","msg":"task failed; retrying","queue":"default","task_id":42,"worker_id":"w","metadata":{"a":"2","z":"1"}}"#
        );
    }

    #[test]
    fn history_is_bounded_and_replayed_oldest_first() {
        let bus = EventBus::new();
        for id in 1..=(HISTORY as i64 + 5) {
            let mut event = Event::new(Level::Info, "task_started", "task started");
            event.task_id = id;
            bus.publish(event);
        }
        let (history, _rx) = bus.subscribe();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history[0].task_id, 6);
    }

    #[test]
    fn filters_must_all_match() {
        let mut event = Event::new(Level::Info, "task_started", "task started");
        event.queue = "high".into();
        event.task_id = 7;
        let filter = Filter {
            queue: Some("high".into()),
            task_id: Some(7),
            ..Filter::default()
        };
        assert!(filter.matches(&event));
        event.task_id = 8;
        assert!(!filter.matches(&event));
    }
}

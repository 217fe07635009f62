//! `/events`: Server-Sent Events (spec §9.5). The recent history first, then live
//! events, filtered by `queue`, `worker_id` and `task_id`; a `: ping` comment every
//! 15 s ([`HttpState::events_ping`]). No write timeout: a stream lasts until the client leaves or the server stops.
//! A slow client loses events; the worker never waits for it.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Frame, SizeHint};
use hyper::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Body, HttpState, text};
use crate::events::{EventBus, Filter};

/// Interval of the keep-alive comment (the Go worker's).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Frames buffered between the forwarding task and the socket.
const FRAME_BUFFER: usize = 16;

/// Opens one stream.
pub fn handle<B>(
    state: &HttpState,
    request: &Request<B>,
    stop: &CancellationToken,
) -> Response<Body> {
    let Some(bus) = &state.events else {
        return text(StatusCode::NOT_FOUND, "events not configured");
    };
    let Ok(filter) = parse_filter(request.uri().query().unwrap_or("")) else {
        return text(StatusCode::BAD_REQUEST, "invalid task_id");
    };
    let body = if request.method() == Method::HEAD {
        Empty::new().boxed()
    } else {
        stream(bus, filter, state.events_ping, stop.clone())
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    response
}

fn stream(bus: &EventBus, filter: Filter, every: Duration, stop: CancellationToken) -> Body {
    let (history, mut live) = bus.subscribe();
    let (frames, receiver) = mpsc::channel::<Bytes>(FRAME_BUFFER);
    tokio::spawn(async move {
        for event in history.iter().filter(|e| filter.matches(e)) {
            if frames.send(data(&event.to_json())).await.is_err() {
                return;
            }
        }
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let frame = tokio::select! {
                received = live.recv() => match received {
                    Ok(event) if filter.matches(&event) => data(&event.to_json()),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ping.tick() => Bytes::from_static(b": ping\n\n"),
                () = frames.closed() => return,
                () = stop.cancelled() => return,
            };
            if frames.send(frame).await.is_err() {
                return;
            }
        }
    });
    SseBody { receiver }.boxed()
}

fn data(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// Frames from the forwarding task; ends when it does.
struct SseBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Reads the filters; `Err` when `task_id` is not a signed 64-bit integer.
///
/// The query is `application/x-www-form-urlencoded` (`+` is a space, `%XX` escapes, a
/// malformed escape kept as written, invalid UTF-8 replaced), decoded by the
/// `form_urlencoded` crate that `url` and hyper's ecosystem already use.
pub fn parse_filter(query: &str) -> Result<Filter, std::num::ParseIntError> {
    let mut filter = Filter::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match key.as_ref() {
            "queue" => filter.queue = Some(value.to_owned()),
            "worker_id" => filter.worker_id = Some(value.to_owned()),
            "task_id" => filter.task_id = Some(value.parse()?),
            _ => {}
        }
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_trimmed_decoded_and_checked() {
        let filter = parse_filter("queue=high%20prio&worker_id=+w1+&task_id=%2042&x=1").unwrap();
        assert_eq!(filter.queue.as_deref(), Some("high prio"));
        assert_eq!(filter.worker_id.as_deref(), Some("w1"));
        assert_eq!(filter.task_id, Some(42));
        assert_eq!(parse_filter("task_id=&queue=").unwrap(), Filter::default());
        assert!(parse_filter("task_id=abc").is_err());
        assert!(parse_filter("task_id=99999999999999999999").is_err());
        let kept = parse_filter("queue=100%&worker_id=%zz%2").unwrap();
        assert_eq!(kept.queue.as_deref(), Some("100%"));
        assert_eq!(kept.worker_id.as_deref(), Some("%zz%2"));
        let encoded_key = parse_filter("qu%65ue=a+b%2Bc&task_id=-7").unwrap();
        assert_eq!(encoded_key.queue.as_deref(), Some("a b+c"));
        assert_eq!(encoded_key.task_id, Some(-7));
    }
}

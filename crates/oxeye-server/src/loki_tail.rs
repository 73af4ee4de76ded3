//! `GET /loki/api/v1/tail` over WebSocket: Loki's live tail.
//!
//! Parameters as Loki's: `query` (a log query), `delay_for` (seconds, 0 to 5, default 0: how far behind
//! now the tail reads, so late entries still make it), `limit` (entries per message, default 100) and
//! `start` (default one hour ago). Once upgraded, the server polls the store every second and sends each
//! batch of new entries as a text message shaped as Loki's:
//! `{"streams": [{"stream": {labels}, "values": [["<ns>", "<line>"], ...]}], "dropped_entries": null}`.
//! Entries older than what was already sent are not sent (the cursor only moves forward); when a batch fills
//! `limit`, the next poll starts at the newest timestamp sent and leaves out the entries already sent at it,
//! so entries sharing that timestamp beyond the limit come in the next message instead of being lost; such a
//! full batch is followed by the next read at once, not after the poll interval, so the tail keeps up with
//! streams busier than `limit` entries a second. The history from `start` is sent whole at the client's
//! pace. Once live (past the moment the tail connected), a tail that still falls more than
//! [`MAX_LIVE_LAG_NS`] behind skips to the present and lists what it skipped in `dropped_entries` (at most
//! [`MAX_DROPPED_ENTRIES`] per message, each `{"timestamp": "<ns>", "labels": {...}}`), as Loki's tailer
//! does for a client that cannot keep up; otherwise `dropped_entries` is null. A close frame or a dropped
//! connection ends the tail. Invalid parameters are refused with 400 before the upgrade.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use oxeye_logql::syntax::{Expr, parse_expr};
use oxeye_logql::{Direction, Engine, QueryResult};
use oxeye_model::Labels;
use serde_json::{Value as Json, json};

use crate::ServerState;
use crate::params::Params;

/// How often the tail polls the store.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Loki's bound on `delay_for`, seconds.
const MAX_DELAY_FOR_SECONDS: i64 = 5;
/// How far a live tail may fall behind the present (less `delay_for`) before it drops entries, nanoseconds.
pub(crate) const MAX_LIVE_LAG_NS: i64 = 10_000_000_000;
/// The most dropped entries one message lists, as Loki's `maxDroppedEntriesPerTailResponse`.
pub(crate) const MAX_DROPPED_ENTRIES: usize = 1000;

/// What a tail reads, validated before the upgrade.
#[derive(Debug, Clone)]
pub(crate) struct TailRequest {
    pub(crate) query: String,
    pub(crate) delay_ns: i64,
    pub(crate) limit: usize,
    pub(crate) start_ns: i64,
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n"))
        .into_response()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
}

/// Reads and checks the tail parameters.
///
/// # Errors
/// A message for a missing or non-log `query`, a `delay_for` outside 0..=5, or an unparsable number.
pub(crate) fn tail_request(params: &Params, now_ns: i64) -> Result<TailRequest, String> {
    let query = params.get("query").ok_or("query parameter is required")?.to_string();
    match parse_expr(&query).map_err(|error| error.to_string())? {
        Expr::Log(_) => {}
        Expr::Metric(_) => return Err("tail only supports log queries".into()),
    }
    let delay_seconds: i64 = match params.get("delay_for") {
        None => 0,
        Some(text) => text.parse().map_err(|_| format!("invalid parameter \"delay_for\": {text:?}"))?,
    };
    if !(0..=MAX_DELAY_FOR_SECONDS).contains(&delay_seconds) {
        return Err(format!("delay_for can't be greater than {MAX_DELAY_FOR_SECONDS}"));
    }
    let limit: usize = match params.get("limit") {
        None => 100,
        Some(text) => text.parse().map_err(|_| format!("invalid parameter \"limit\": {text:?}"))?,
    };
    let start_ns = match params.get("start") {
        None => now_ns - 3_600 * 1_000_000_000,
        Some(text) => text.parse::<i64>().map_err(|_| format!("invalid parameter \"start\": {text:?}"))?,
    };
    Ok(TailRequest { query, delay_ns: delay_seconds * 1_000_000_000, limit, start_ns })
}

fn labels_json(labels: &Labels) -> Json {
    Json::Object(labels.iter().map(|label| (label.name.clone(), Json::String(label.value.clone()))).collect())
}

/// One tail message in Loki's shape, or `None` when there is nothing new; and the newest timestamp sent.
pub(crate) fn tail_message(result: &QueryResult) -> Option<(Json, i64)> {
    let QueryResult::Streams(streams) = result else { return None };
    let newest_ns = streams.iter().flat_map(|stream| stream.entries.iter().map(|(time, _)| *time)).max()?;
    let streams: Vec<Json> = streams
        .iter()
        .map(|stream| {
            json!({"stream": labels_json(&stream.labels),
                "values": stream.entries.iter().map(|(time, line)| json!([time.to_string(), line])).collect::<Vec<_>>()})
        })
        .collect();
    Some((json!({"streams": streams, "dropped_entries": null}), newest_ns))
}

/// Where a tail has got to: the start of the next read (inclusive) and the entries already sent at exactly
/// that timestamp, as `(labels, line)`.
#[derive(Debug)]
pub(crate) struct TailCursor {
    from_ns: i64,
    sent_at_from: HashSet<(Labels, String)>,
    /// The last read filled its limit: more entries may be waiting.
    pending: bool,
    /// Where the live part of the tail starts: entries before it are history, sent whole.
    live_from_ns: i64,
}

impl TailCursor {
    /// A cursor from `start_ns`, for a tail connected when the window ended at `live_from_ns`.
    pub(crate) fn new(start_ns: i64, live_from_ns: i64) -> TailCursor {
        TailCursor { from_ns: start_ns, sent_at_from: HashSet::new(), pending: false, live_from_ns }
    }

    /// True when the last read filled its limit, so the next one should follow at once.
    pub(crate) fn pending(&self) -> bool {
        self.pending
    }

    /// True when the live tail has more waiting and lags the window end `end_ns` by over
    /// [`MAX_LIVE_LAG_NS`]: the next read is then [`TailCursor::skip`].
    pub(crate) fn is_behind(&self, end_ns: i64) -> bool {
        self.pending && self.from_ns >= self.live_from_ns && end_ns.saturating_sub(self.from_ns) > MAX_LIVE_LAG_NS
    }

    /// Takes a read of the skipped window `[from_ns, end_ns)` (at most [`MAX_DROPPED_ENTRIES`] entries beyond
    /// those already sent at `from_ns`), moves the cursor to `end_ns` and returns the message listing the
    /// entries dropped, in Loki's shape.
    pub(crate) fn skip(&mut self, result: &QueryResult, end_ns: i64) -> Json {
        let mut dropped = Vec::new();
        if let QueryResult::Streams(streams) = result {
            for stream in streams {
                let labels = labels_json(&stream.labels);
                for (timestamp_ns, line) in &stream.entries {
                    let sent = *timestamp_ns == self.from_ns
                        && self.sent_at_from.contains(&(stream.labels.clone(), line.clone()));
                    if !sent {
                        dropped.push((*timestamp_ns, labels.clone()));
                    }
                }
            }
        }
        dropped.sort_by_key(|(timestamp_ns, _)| *timestamp_ns);
        dropped.truncate(MAX_DROPPED_ENTRIES);
        self.from_ns = end_ns;
        self.sent_at_from.clear();
        self.pending = false;
        let dropped: Vec<Json> = dropped
            .into_iter()
            .map(|(timestamp_ns, labels)| json!({"timestamp": timestamp_ns.to_string(), "labels": labels}))
            .collect();
        json!({"streams": [], "dropped_entries": dropped})
    }

    /// The next read: `[from_ns, end]` with room for `limit` entries beyond those already sent at `from_ns`.
    pub(crate) fn read(&self, limit: usize) -> (i64, usize) {
        (self.from_ns, if limit == 0 { 0 } else { limit + self.sent_at_from.len() })
    }

    /// Takes a read of `[from_ns, end_ns)` made with `read_limit`: leaves out entries already sent, moves the
    /// cursor, and returns what to send (`None` when nothing is new).
    pub(crate) fn advance(&mut self, mut result: QueryResult, read_limit: usize, end_ns: i64) -> Option<Json> {
        let QueryResult::Streams(streams) = &mut result else { return None };
        let read_count: usize = streams.iter().map(|stream| stream.entries.len()).sum();
        let from_ns = self.from_ns;
        for stream in streams.iter_mut() {
            let labels = stream.labels.clone();
            stream.entries.retain(|(timestamp_ns, line)| {
                *timestamp_ns != from_ns || !self.sent_at_from.contains(&(labels.clone(), line.clone()))
            });
        }
        streams.retain(|stream| !stream.entries.is_empty());
        let full = read_limit > 0 && read_count >= read_limit;
        self.pending = full;
        let message = tail_message(&result);
        match (&message, full) {
            (Some((_, newest_ns)), true) => {
                // More may follow at the newest instant: read from it again, leaving out what was sent there.
                if *newest_ns != self.from_ns {
                    self.sent_at_from.clear();
                    self.from_ns = *newest_ns;
                }
                if let QueryResult::Streams(streams) = &result {
                    for stream in streams {
                        for (timestamp_ns, line) in &stream.entries {
                            if *timestamp_ns == self.from_ns {
                                self.sent_at_from.insert((stream.labels.clone(), line.clone()));
                            }
                        }
                    }
                }
            }
            _ => {
                // Everything up to the window end was read.
                self.from_ns = end_ns;
                self.sent_at_from.clear();
            }
        }
        message.map(|(message, _)| message)
    }
}

/// `GET /loki/api/v1/tail`.
pub(crate) async fn tail(State(state): State<Arc<ServerState>>, upgrade: WebSocketUpgrade, params: Params) -> Response {
    let request = match tail_request(&params, now_ns()) {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    upgrade.on_upgrade(move |socket| run_tail(state, socket, request))
}

/// Reads `[from_ns, end_ns)` of the tail's query, oldest first, at most `limit` entries, on a blocking
/// thread; `Err` carries the message to send before closing, `None` inside it when the tail just ends.
async fn read_window(
    state: &ServerState,
    query: &str,
    from_ns: i64,
    end_ns: i64,
    limit: usize,
) -> Result<QueryResult, Option<String>> {
    let Some(storage) = state.log_storage().cloned() else { return Err(None) };
    let query = query.to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        Engine::default().query_range(storage.as_ref(), &query, from_ns, end_ns, 1, limit, Direction::Forward)
    })
    .await;
    match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) => Err(Some(error.to_string())),
        Err(_) => Err(None),
    }
}

async fn run_tail(state: Arc<ServerState>, mut socket: WebSocket, request: TailRequest) {
    let mut cursor = TailCursor::new(request.start_ns, now_ns() - request.delay_ns);
    loop {
        let end_ns = now_ns() - request.delay_ns;
        let (from_ns, limit) = cursor.read(request.limit);
        if end_ns > from_ns {
            let behind = cursor.is_behind(end_ns);
            let read_limit = if behind { MAX_DROPPED_ENTRIES + limit } else { limit };
            let result = match read_window(&state, &request.query, from_ns, end_ns, read_limit).await {
                Ok(result) => result,
                Err(message) => {
                    if let Some(message) = message {
                        let _ = socket.send(Message::Text(message.into())).await;
                    }
                    break;
                }
            };
            let message =
                if behind { Some(cursor.skip(&result, end_ns)) } else { cursor.advance(result, limit, end_ns) };
            if let Some(message) = message
                && socket.send(Message::Text(message.to_string().into())).await.is_err()
            {
                break;
            }
        }
        // After a full batch the next read follows at once; a close frame is still noticed between reads.
        let wait = if cursor.pending() { Duration::ZERO } else { POLL_INTERVAL };
        tokio::select! {
            biased;
            received = socket.recv() => match received {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};

    fn params(query: &str) -> Params {
        let uri: Uri = format!("/loki/api/v1/tail?{query}").parse().unwrap();
        Params::from_parts(&Method::GET, &uri, &HeaderMap::new(), &Bytes::new())
    }

    #[test]
    fn tail_parameters_are_checked_before_the_upgrade() {
        let request = tail_request(&params("query=%7Bjob%3D%22a%22%7D&delay_for=2&limit=5&start=10"), 100).unwrap();
        assert_eq!((request.delay_ns, request.limit, request.start_ns), (2_000_000_000, 5, 10));
        let defaults = tail_request(&params("query=%7Bjob%3D%22a%22%7D"), 3_600_000_000_001).unwrap();
        assert_eq!((defaults.delay_ns, defaults.limit, defaults.start_ns), (0, 100, 1));
        assert!(tail_request(&params(""), 0).unwrap_err().contains("query parameter is required"));
        assert!(tail_request(&params("query=%7Bjob%3D%22a%22%7D&delay_for=6"), 0).unwrap_err().contains("delay_for"));
        let metric = tail_request(&params("query=count_over_time(%7Bjob%3D%22a%22%7D%5B1m%5D)"), 0).unwrap_err();
        assert!(metric.contains("log queries"));
        assert!(tail_request(&params("query=%7Bjob%3D"), 0).unwrap_err().starts_with("parse error at line 1"));
    }

    #[test]
    fn messages_have_lokis_shape() {
        let result = QueryResult::Streams(vec![oxeye_logql::StreamResult {
            labels: Labels::from_pairs([("job", "a")]),
            entries: vec![(5, "x".into()), (7, "y".into())],
        }]);
        let (message, newest_ns) = tail_message(&result).unwrap();
        assert_eq!(newest_ns, 7);
        assert_eq!(
            message,
            json!({"streams": [{"stream": {"job": "a"}, "values": [["5", "x"], ["7", "y"]]}], "dropped_entries": null})
        );
        assert!(tail_message(&QueryResult::Streams(Vec::new())).is_none());
    }

    fn streams(entries: &[(i64, &str)]) -> QueryResult {
        QueryResult::Streams(vec![oxeye_logql::StreamResult {
            labels: Labels::from_pairs([("job", "a")]),
            entries: entries.iter().map(|(timestamp_ns, line)| (*timestamp_ns, line.to_string())).collect(),
        }])
    }

    fn sent_lines(message: &Json) -> Vec<String> {
        message["streams"][0]["values"].as_array().unwrap().iter().map(|value| value[1].to_string()).collect()
    }

    #[test]
    fn entries_sharing_the_newest_timestamp_beyond_the_limit_are_not_lost() {
        // Four entries at 7 ns and one at 9 ns, limit 2: the store returns the oldest first.
        let stored = [(7, "a"), (7, "b"), (7, "c"), (7, "d"), (9, "e")];
        let read = |from_ns: i64, limit: usize| {
            let selected: Vec<(i64, &str)> =
                stored.iter().copied().filter(|(timestamp_ns, _)| *timestamp_ns >= from_ns).take(limit).collect();
            streams(&selected)
        };
        let mut cursor = TailCursor::new(0, 0);
        let mut received = Vec::new();
        for _ in 0..6 {
            let (from_ns, limit) = cursor.read(2);
            if let Some(message) = cursor.advance(read(from_ns, limit), limit, 100) {
                received.extend(sent_lines(&message));
            }
        }
        assert_eq!(received, ["\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\""]);
        assert_eq!(cursor.read(2), (100, 2));
    }

    /// A stream with an entry every second for a minute, read with `limit` entries a message.
    fn one_a_second(from_ns: i64, end_ns: i64, limit: usize) -> QueryResult {
        let lines: Vec<String> = (0..60).map(|second| format!("line {second}")).collect();
        let selected: Vec<(i64, &str)> = (0..60i64)
            .map(|second| (second * 1_000_000_000, lines[second as usize].as_str()))
            .filter(|(timestamp_ns, _)| *timestamp_ns >= from_ns && *timestamp_ns < end_ns)
            .take(limit)
            .collect();
        streams(&selected)
    }

    #[test]
    fn history_is_sent_whole_and_a_live_tail_too_far_behind_drops_in_lokis_shape() {
        let end_ns = 60_000_000_000;
        // History: the tail connected at the end, so however far behind, nothing is dropped.
        let mut history = TailCursor::new(0, end_ns);
        let mut received = 0;
        while history.read(5).0 < end_ns {
            let (from_ns, limit) = history.read(5);
            assert!(!history.is_behind(end_ns));
            if let Some(message) = history.advance(one_a_second(from_ns, end_ns, limit), limit, end_ns) {
                received += sent_lines(&message).len();
                assert!(history.pending() || history.read(5).0 == end_ns);
            }
        }
        assert_eq!(received, 60);
        // Live from the first entry: after one full message, 55 s behind, the rest is skipped and listed.
        let mut live = TailCursor::new(0, 0);
        let (from_ns, limit) = live.read(5);
        let first = live.advance(one_a_second(from_ns, end_ns, limit), limit, end_ns).unwrap();
        assert_eq!(sent_lines(&first).len(), 5);
        assert!(live.pending() && live.is_behind(end_ns));
        let (from_ns, _) = live.read(5);
        let message = live.skip(&one_a_second(from_ns, end_ns, MAX_DROPPED_ENTRIES + 5), end_ns);
        let dropped = message["dropped_entries"].as_array().unwrap();
        assert_eq!(dropped.len(), 55, "the entry at 4 s was sent, 5 s to 59 s were not");
        assert_eq!(dropped[0], json!({"timestamp": "5000000000", "labels": {"job": "a"}}));
        assert_eq!(message["streams"], json!([]));
        assert_eq!(live.read(5), (end_ns, 5));
        assert!(!live.pending() && !live.is_behind(end_ns + MAX_LIVE_LAG_NS));
        // Within the lag bound a live tail is not behind.
        let mut close = TailCursor::new(50_000_000_000, 0);
        let (from_ns, limit) = close.read(5);
        close.advance(one_a_second(from_ns, end_ns, limit), limit, end_ns);
        assert!(close.pending() && !close.is_behind(end_ns));
    }
}

//! Correlation between traces and logs: the log entries of a trace, and the traces of a request id.
//!
//! - `GET /api/traces/{trace_id}/logs`: the log entries that carry the trace id, in Loki's `streams` result
//!   shape. An entry matches when a structured metadata entry named `trace_id`, `traceid`, `traceID` or
//!   `otelTraceID` holds the id (hex, any case; what OTLP log ingest stores), or when its line contains the id
//!   in lowercase or uppercase hex (a structlog JSON `"trace_id": "…"` field, a logfmt `trace_id=…` pair).
//!   The LogQL equivalent over all streams is `{service_name=~".+"} | trace_id="<id>"` for structured
//!   metadata and `{service_name=~".+"} |= "<id>"` for lines. Parameters: `start`/`end` (Unix seconds or RFC
//!   3339; by default the trace's span time range widened by one minute each side when the trace is stored,
//!   else the last hour) and `limit` (entries, default 1000, at most 10000; the newest are kept).
//!   Response: `{"status":"success","data":{"resultType":"streams","result":[{"stream":{labels},"values":
//!   [["<unix ns>","<line>",{"structuredMetadata":{…}}]]}],"traceID":"<hex>","start":"<ns>","end":"<ns>"}}`;
//!   the third element of a value is present only when the entry has structured metadata. Errors: 400 for a
//!   bad trace id or parameter, 503 until the log store is ready.
//! - `GET /api/correlate/request/{request_id}`: the traces with a span or resource attribute `request_id`
//!   equal to the id (the seeds' Django middleware sets it on the request span and in every log line), newest
//!   first. Parameters: `attribute` (default `request_id`), `start`/`end` (default the last 24 hours) and
//!   `limit` (default 20). Response: `{"requestID":"…","attribute":"request_id","traces":[{"traceID":"<hex>",
//!   "rootServiceName":"…","rootTraceName":"…","startTimeUnixNano":"<ns>","durationMs":<ms>}]}` (root fields
//!   `<root span not yet received>` while the root is missing, as Tempo's search says). The same lookup through
//!   Tempo's search API is `GET /api/search?tags=request_id=<id>` or `q={ span.request_id = "<id>" }`. Errors:
//!   400 for a bad parameter, 503 until the trace store is ready.
//!
//! Errors use the Prometheus envelope (`{"status":"error","errorType":…,"error":…}`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use oxeye_model::logs::{LogEntryRef, LogReader, LogSelection, LogVisitor, ScanOrder};
use oxeye_model::traces::{AttributeValue, Trace, TraceScanHints, find_attribute, id_to_hex, trace_id_from_hex};
use oxeye_model::{Labels, MatchOp, Matcher};
use serde_json::{Value, json};

use crate::ServerState;
use crate::error::ApiError;
use crate::params::{Params, now_ms, parse_time_ms};

/// Structured metadata names that carry a trace id (OTLP log ingest, Loki conventions).
const TRACE_ID_METADATA_NAMES: [&str; 4] = ["trace_id", "traceid", "traceID", "otelTraceID"];
const DEFAULT_LOG_LIMIT: usize = 1_000;
const MAX_LOG_LIMIT: usize = 10_000;
const DEFAULT_TRACE_LIMIT: usize = 20;
const TRACE_MARGIN_MS: i64 = 60_000;
const DEFAULT_LOG_WINDOW_MS: i64 = 3_600_000;
const DEFAULT_TRACE_WINDOW_MS: i64 = 24 * 3_600_000;
const ROOT_NOT_RECEIVED: &str = "<root span not yet received>";

/// The correlation routes.
pub fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/api/traces/{trace_id}/logs", get(trace_logs))
        .route("/api/correlate/request/{request_id}", get(request_traces))
}

fn query_params(uri: &Uri) -> Params {
    Params::from_parts(&Method::GET, uri, &HeaderMap::new(), &Bytes::new())
}

fn optional_time_ms(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|text| parse_time_ms(text).map_err(|reason| ApiError::invalid_parameter(name, reason)))
        .transpose()
}

fn limit(params: &Params, default: usize, maximum: usize) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(value) if value > 0 => Ok(value.min(maximum)),
            _ => Err(ApiError::invalid_parameter("limit", format!("{text:?} is not a positive integer"))),
        },
    }
}

async fn trace_logs(State(state): State<Arc<ServerState>>, Path(trace_id): Path<String>, uri: Uri) -> Response {
    match trace_logs_body(state, trace_id, query_params(&uri)).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn trace_logs_body(state: Arc<ServerState>, trace_id_text: String, params: Params) -> Result<Value, ApiError> {
    let trace_id = trace_id_from_hex(&trace_id_text).ok_or_else(|| {
        ApiError::bad_data(format!("invalid trace id {trace_id_text:?}: expected up to 32 hex digits"))
    })?;
    let log_reader: Arc<dyn oxeye_model::logs::LogStorage> =
        state.log_storage().cloned().ok_or_else(|| ApiError::unavailable("log store is starting up"))?;
    let limit = limit(&params, DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT)?;
    let start_ms = optional_time_ms(&params, "start")?;
    let end_ms = optional_time_ms(&params, "end")?;
    let trace_reader = state.trace_reader().cloned();
    let hex = id_to_hex(&trace_id);
    tokio::task::spawn_blocking(move || {
        let (start_ms, end_ms) = match (start_ms, end_ms) {
            (Some(start_ms), Some(end_ms)) => (start_ms, end_ms),
            _ => {
                let trace = match &trace_reader {
                    Some(reader) => reader.trace_by_id(&trace_id, None)?,
                    None => None,
                };
                let (default_start_ms, default_end_ms) = match trace.as_ref().and_then(trace_range_ms) {
                    Some((first_ms, last_ms)) => (first_ms - TRACE_MARGIN_MS, last_ms + TRACE_MARGIN_MS),
                    None => {
                        let now = now_ms();
                        (now - DEFAULT_LOG_WINDOW_MS, now)
                    }
                };
                (start_ms.unwrap_or(default_start_ms), end_ms.unwrap_or(default_end_ms))
            }
        };
        if end_ms < start_ms {
            return Err(ApiError::bad_data("invalid parameters: end is before start"));
        }
        let start_ns = start_ms.saturating_mul(1_000_000);
        // `end` is inclusive for the caller; the selection's end is exclusive.
        let end_ns = end_ms.saturating_mul(1_000_000).saturating_add(1);
        let streams = trace_log_entries(log_reader.as_ref(), &hex, start_ns, end_ns, limit)?;
        Ok(json!({
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": streams,
                "traceID": hex,
                "start": start_ns.to_string(),
                "end": end_ns.to_string(),
            }
        }))
    })
    .await
    .map_err(|error| ApiError::internal(format!("trace logs task failed: {error}")))?
}

/// The earliest span start and latest span end of `trace`, in milliseconds.
fn trace_range_ms(trace: &Trace) -> Option<(i64, i64)> {
    let first = trace.spans().map(|(_, span)| span.start_time_unix_nano).min()?;
    let last = trace.spans().map(|(_, span)| span.end_time_unix_nano).max()?;
    let to_ms = |nanos: u64| i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX);
    Some((to_ms(first), to_ms(last)))
}

/// Label names whose `=~".+"` matchers together select every stream in `streams`, most common first (usually
/// one: `service_name`), since a selection needs a matcher that does not match the empty string.
fn covering_label_names(streams: &[Labels]) -> Vec<String> {
    let mut uncovered: Vec<&Labels> = streams.iter().collect();
    let mut names = Vec::new();
    while !uncovered.is_empty() {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for labels in &uncovered {
            for label in labels.iter() {
                *counts.entry(label.name.as_str()).or_default() += 1;
            }
        }
        let Some((best, _)) = counts.into_iter().max_by_key(|(name, count)| (*count, std::cmp::Reverse(*name))) else {
            break;
        };
        let best = best.to_string();
        uncovered.retain(|labels| labels.get(&best).is_none());
        names.push(best);
    }
    names
}

/// One stream's matching entries: timestamp in nanoseconds, line, structured metadata as name/value pairs.
type StreamEntries = Vec<(i64, String, Vec<(String, String)>)>;

struct TraceIdVisitor<'a> {
    lowercase_hex: &'a str,
    uppercase_hex: String,
    /// Streams read under an earlier covering matcher.
    done: &'a HashSet<Labels>,
    seen: HashSet<Labels>,
    entries: BTreeMap<Labels, StreamEntries>,
}

impl TraceIdVisitor<'_> {
    fn matches(&self, entry: &LogEntryRef<'_>) -> bool {
        let in_metadata = entry.structured_metadata.iter().any(|metadata| {
            TRACE_ID_METADATA_NAMES.contains(&metadata.name)
                && trace_id_from_hex(metadata.value).is_some_and(|id| id_to_hex(&id) == self.lowercase_hex)
        });
        in_metadata || entry.line.contains(self.lowercase_hex) || entry.line.contains(self.uppercase_hex.as_str())
    }
}

impl LogVisitor for TraceIdVisitor<'_> {
    fn wants_batch(&mut self, stream: &Labels, _min_ns: i64, _max_ns: i64) -> bool {
        !self.done.contains(stream)
    }

    fn entry(&mut self, stream: &Labels, entry: LogEntryRef<'_>) {
        if !self.seen.contains(stream) {
            self.seen.insert(stream.clone());
        }
        if !self.matches(&entry) {
            return;
        }
        let metadata =
            entry.structured_metadata.iter().map(|label| (label.name.to_string(), label.value.to_string())).collect();
        self.entries.entry(stream.clone()).or_default().push((entry.timestamp_ns, entry.line.to_string(), metadata));
    }
}

/// The entries in `[start_ns, end_ns)` carrying `lowercase_hex`, as Loki `streams` results, newest `limit`.
fn trace_log_entries(
    reader: &dyn LogReader,
    lowercase_hex: &str,
    start_ns: i64,
    end_ns: i64,
    limit: usize,
) -> Result<Vec<Value>, ApiError> {
    let streams = reader.series(start_ns, end_ns, &[])?;
    let mut done: HashSet<Labels> = HashSet::new();
    let mut found: BTreeMap<Labels, StreamEntries> = BTreeMap::new();
    for name in covering_label_names(&streams) {
        let matcher = Matcher::new(MatchOp::Regex, &name, ".+")
            .map_err(|error| ApiError::internal(format!("covering matcher for {name}: {error}")))?;
        let selection = LogSelection { start_ns, end_ns, matchers: vec![matcher], line_contains: Vec::new() };
        let mut visitor = TraceIdVisitor {
            lowercase_hex,
            uppercase_hex: lowercase_hex.to_ascii_uppercase(),
            done: &done,
            seen: HashSet::new(),
            entries: BTreeMap::new(),
        };
        reader.scan(&selection, ScanOrder::Forward, &mut visitor)?;
        let TraceIdVisitor { seen, entries, .. } = visitor;
        found.extend(entries);
        done.extend(seen);
    }
    // Keep the newest `limit` entries overall.
    let mut timestamps: Vec<i64> = found.values().flatten().map(|(timestamp_ns, _, _)| *timestamp_ns).collect();
    let cutoff = if timestamps.len() > limit {
        timestamps.sort_unstable_by(|a, b| b.cmp(a));
        timestamps.get(limit - 1).copied()
    } else {
        None
    };
    let mut kept = 0usize;
    let mut result = Vec::new();
    for (labels, mut entries) in found {
        entries.sort_by_key(|(timestamp_ns, _, _)| std::cmp::Reverse(*timestamp_ns));
        let values: Vec<Value> = entries
            .into_iter()
            .filter(|(timestamp_ns, _, _)| cutoff.is_none_or(|cutoff| *timestamp_ns >= cutoff))
            .take_while(|_| {
                kept += 1;
                kept <= limit
            })
            .map(|(timestamp_ns, line, metadata)| {
                if metadata.is_empty() {
                    json!([timestamp_ns.to_string(), line])
                } else {
                    let metadata: serde_json::Map<String, Value> =
                        metadata.into_iter().map(|(name, value)| (name, Value::String(value))).collect();
                    json!([timestamp_ns.to_string(), line, {"structuredMetadata": metadata}])
                }
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        let stream: serde_json::Map<String, Value> =
            labels.iter().map(|label| (label.name.clone(), Value::String(label.value.clone()))).collect();
        result.push(json!({"stream": stream, "values": values}));
    }
    Ok(result)
}

async fn request_traces(State(state): State<Arc<ServerState>>, Path(request_id): Path<String>, uri: Uri) -> Response {
    match request_traces_body(state, request_id, query_params(&uri)).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn request_traces_body(state: Arc<ServerState>, request_id: String, params: Params) -> Result<Value, ApiError> {
    let reader = state.trace_reader().cloned().ok_or_else(|| ApiError::unavailable("trace store is starting up"))?;
    let attribute = params.get("attribute").unwrap_or("request_id").to_string();
    let limit = limit(&params, DEFAULT_TRACE_LIMIT, MAX_LOG_LIMIT)?;
    let now = now_ms();
    let end_ms = optional_time_ms(&params, "end")?.unwrap_or(now);
    let start_ms = optional_time_ms(&params, "start")?.unwrap_or(end_ms - DEFAULT_TRACE_WINDOW_MS);
    if end_ms < start_ms {
        return Err(ApiError::bad_data("invalid parameters: end is before start"));
    }
    let to_ns = |milliseconds: i64| u64::try_from(milliseconds.max(0)).unwrap_or(0).saturating_mul(1_000_000);
    let (start_ns, end_ns) = (to_ns(start_ms), to_ns(end_ms).saturating_add(1));
    let hints = TraceScanHints {
        string_attributes: vec![(attribute.clone(), request_id.clone())],
        ..TraceScanHints::default()
    };
    let wanted = request_id.clone();
    let attribute_name = attribute.clone();
    let traces = tokio::task::spawn_blocking(move || {
        let mut traces = Vec::new();
        reader.scan_traces(start_ns, end_ns, &hints, &mut |trace| {
            if trace_has_attribute(trace, &attribute_name, &wanted) {
                traces.push(trace_summary(trace));
            }
            traces.len() < limit
        })?;
        Ok::<_, ApiError>(traces)
    })
    .await
    .map_err(|error| ApiError::internal(format!("request lookup task failed: {error}")))??;
    Ok(json!({"requestID": request_id, "attribute": attribute, "traces": traces}))
}

fn trace_has_attribute(trace: &Trace, key: &str, value: &str) -> bool {
    let is_value = |found: Option<&AttributeValue>| found.and_then(AttributeValue::as_str) == Some(value);
    trace.spans().any(|(resource, span)| {
        is_value(find_attribute(&span.attributes, key)) || is_value(find_attribute(&resource.attributes, key))
    })
}

fn trace_summary(trace: &Trace) -> Value {
    let start_ns = trace.spans().map(|(_, span)| span.start_time_unix_nano).min().unwrap_or(0);
    let (root_service, root_name) = match trace.root() {
        Some((resource, span)) => (resource.service_name().unwrap_or(ROOT_NOT_RECEIVED).to_string(), span.name.clone()),
        None => (ROOT_NOT_RECEIVED.to_string(), String::new()),
    };
    json!({
        "traceID": id_to_hex(&trace.trace_id),
        "rootServiceName": root_service,
        "rootTraceName": root_name,
        "startTimeUnixNano": start_ns.to_string(),
        "durationMs": trace.duration_nanos() / 1_000_000,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn covering_names_select_every_stream_with_few_matchers() {
        let streams = vec![
            Labels::from_pairs([("service_name", "boxoffice"), ("level", "info")]),
            Labels::from_pairs([("service_name", "celery")]),
            Labels::from_pairs([("job", "nginx")]),
        ];
        assert_eq!(covering_label_names(&streams), vec!["service_name".to_string(), "job".to_string()]);
        assert!(covering_label_names(&[]).is_empty());
    }
}

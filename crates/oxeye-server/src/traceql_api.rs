//! The Tempo API's search half: `/api/search` (TraceQL `q=` or legacy `tags=`), tag names and values (v1 and
//! v2), and TraceQL metrics (`/api/metrics/query_range`, `/api/metrics/query`). Trace by id lives in
//! `tempo_api.rs`.
//!
//! Source: <https://grafana.com/docs/tempo/latest/api_docs/> and Tempo's `pkg/tempopb/tempo.proto`, shapes
//! in `protocols.md` §4:
//! - `/api/search?q=|tags=&minDuration=&maxDuration=&limit=20&start=&end=&spss=3` →
//!   `{"traces":[{"traceID","rootServiceName","rootTraceName","startTimeUnixNano","durationMs","spanSet",
//!   "spanSets":[{"spans":[{"spanID","name","startTimeUnixNano","durationNanos","attributes"}],"matched"}]}],
//!   "metrics":{..}}`, newest first. `start`/`end` are Unix seconds (default: the last 24 hours); durations
//!   are Go durations (`1.5s`); 64-bit integers are decimal strings as in Tempo's protobuf JSON.
//! - `/api/search/tags?scope=` → `{"tagNames":[..]}`; `/api/v2/search/tags?scope=&q=` →
//!   `{"scopes":[{"name","tags"}]}`; `/api/search/tag/<tag>/values` → `{"tagValues":["a"]}`;
//!   `/api/v2/search/tag/<tag>/values?q=` → `{"tagValues":[{"type","value"}]}`. An unparsable `q` lists
//!   unfiltered, as Tempo does.
//! - `/api/metrics/query_range?q=&start=&end=&step=` → `{"series":[{"labels","promLabels","samples":
//!   [{"timestampMs","value"}]}]}`; `/api/metrics/query` → `{"series":[{"labels","promLabels","value"}]}`.
//! - Errors are plain text: invalid TraceQL or parameters 400 (with the query's line and column), store
//!   failures by kind, 503 until the trace store is attached.
//!
//! Queries run on blocking threads: evaluation is CPU work that must not hold the async executor.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxeye_model::traces::{Attribute, AttributeValue, SpanKind, TraceReader, id_to_hex};
use oxeye_traceql::TraceQlError;
use oxeye_traceql::eval::FieldValue;
use oxeye_traceql::metrics::{MetricsRange, MetricsSeries, SeriesLabel, query_instant, query_range};
use oxeye_traceql::search::{
    STATUS_VALUES, SearchQuery, SearchRequest, SearchResponse, TagRequest, TagScope, parse_go_duration_nanos,
    parse_logfmt_tags, search, tag_field, tag_names, tag_values,
};
use oxeye_traceql::syntax::ast::{FieldExpr, Intrinsic};
use serde_json::{Value, json};

use crate::ServerState;
use crate::error::write_status;
use crate::params::{Params, now_ms, parse_time_ms};

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/api/search", get(search_handler))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{tag}/values", get(tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tag_values_v2))
        .route("/api/metrics/query_range", get(metrics_query_range))
        .route("/api/metrics/query", get(metrics_query_instant))
}

/// Tempo's default search limit.
const DEFAULT_LIMIT: usize = 20;
/// Tempo's default spans per spanset.
const DEFAULT_SPANS_PER_SPANSET: usize = 3;
/// The window searched when `start`/`end` are absent.
const DEFAULT_WINDOW_NANOS: u64 = 24 * 3600 * 1_000_000_000;
/// The most traces read to list tag names or values.
const TAG_SCAN_MAX_TRACES: usize = 5_000;
/// The most tag values listed.
const TAG_MAX_VALUES: usize = 1_000;
/// Samples per series when `step` is absent.
const DEFAULT_POINTS: u64 = 100;
/// The most samples per series a range query may ask for.
const MAX_POINTS: u64 = 11_000;

/// An error of this API family: status and a plain-text body.
struct SearchError {
    status: StatusCode,
    message: String,
}

impl SearchError {
    fn bad_request(message: impl Into<String>) -> Self {
        SearchError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    fn unavailable() -> Self {
        SearchError { status: StatusCode::SERVICE_UNAVAILABLE, message: "trace store is starting up".into() }
    }
}

impl From<TraceQlError> for SearchError {
    fn from(error: TraceQlError) -> Self {
        let message = match &error {
            TraceQlError::Parse { .. } => format!("invalid TraceQL query: {error}"),
            _ => error.to_string(),
        };
        SearchError { status: write_status(error.kind()), message }
    }
}

impl IntoResponse for SearchError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", self.message))
            .into_response()
    }
}

fn json_response(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn reader(state: &ServerState) -> Result<Arc<dyn TraceReader>, SearchError> {
    state.trace_reader().cloned().ok_or_else(SearchError::unavailable)
}

/// Runs CPU-bound query work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| SearchError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("query failed: {error}"),
    })?
}

/// A timestamp parameter as Tempo takes it: Unix seconds (integer or decimal), nanoseconds when the
/// integer is too large to be seconds, or RFC 3339. Returns nanoseconds.
fn time_nanos(params: &Params, name: &str) -> Result<Option<u64>, SearchError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    if let Ok(integer) = text.parse::<u64>()
        && integer > 100_000_000_000_000
    {
        return Ok(Some(integer));
    }
    let milliseconds =
        parse_time_ms(text).map_err(|reason| SearchError::bad_request(format!("invalid {name}: {reason}")))?;
    Ok(Some(u64::try_from(milliseconds).unwrap_or(0).saturating_mul(1_000_000)))
}

/// The `[start, end)` window in nanoseconds: the parameters, or the last 24 hours. `end` is exclusive, so one
/// nanosecond is added to cover spans starting exactly at `end`'s second.
fn window(params: &Params) -> Result<(u64, u64), SearchError> {
    let now_nanos = u64::try_from(now_ms()).unwrap_or(0).saturating_mul(1_000_000);
    let end = time_nanos(params, "end")?.unwrap_or(now_nanos);
    let start = time_nanos(params, "start")?.unwrap_or_else(|| end.saturating_sub(DEFAULT_WINDOW_NANOS));
    // Tempo's `end` is in whole seconds and inclusive of that second.
    let end_exclusive = if params.get("end").is_some() { end.saturating_add(1_000_000_000) } else { end };
    if start >= end_exclusive {
        return Err(SearchError::bad_request("invalid start: start must be before end"));
    }
    Ok((start, end_exclusive))
}

fn duration_param(params: &Params, name: &str) -> Result<Option<u64>, SearchError> {
    match params.get(name) {
        None => Ok(None),
        Some(text) => parse_go_duration_nanos(text)
            .map(Some)
            .ok_or_else(|| SearchError::bad_request(format!("invalid {name}: cannot parse {text:?} as a duration"))),
    }
}

fn count_param(params: &Params, name: &str, default: usize) -> Result<usize, SearchError> {
    match params.get(name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(0) => Ok(default),
            Ok(value) => Ok(value),
            Err(_) => Err(SearchError::bad_request(format!("invalid {name}: {text:?} is not a positive integer"))),
        },
    }
}

/// An attribute value in OTLP/JSON form, as Tempo writes span attributes.
fn attribute_value_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::String(text) => json!({ "stringValue": text }),
        AttributeValue::Bool(value) => json!({ "boolValue": value }),
        AttributeValue::Int(value) => json!({ "intValue": value.to_string() }),
        AttributeValue::Double(value) => json!({ "doubleValue": value }),
        AttributeValue::Array(values) => {
            json!({ "arrayValue": { "values": values.iter().map(attribute_value_json).collect::<Vec<_>>() } })
        }
        AttributeValue::Map(entries) => {
            json!({ "kvlistValue": { "values": entries.iter().map(attribute_json).collect::<Vec<_>>() } })
        }
        AttributeValue::Bytes(bytes) => json!({ "bytesValue": id_to_hex(bytes) }),
    }
}

fn attribute_json(attribute: &Attribute) -> Value {
    json!({ "key": attribute.key, "value": attribute_value_json(&attribute.value) })
}

fn search_json(response: &SearchResponse) -> Value {
    let traces: Vec<Value> = response
        .traces
        .iter()
        .map(|trace| {
            let spansets: Vec<Value> = trace
                .spansets
                .iter()
                .map(|set| {
                    let spans: Vec<Value> = set
                        .spans
                        .iter()
                        .map(|span| {
                            json!({
                                "spanID": id_to_hex(&span.span_id),
                                "name": span.name,
                                "startTimeUnixNano": span.start_unix_nano.to_string(),
                                "durationNanos": span.duration_nanos.to_string(),
                                "attributes": span.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    let mut spanset = json!({ "spans": spans, "matched": set.matched });
                    if !set.attributes.is_empty() {
                        spanset["attributes"] = Value::Array(set.attributes.iter().map(attribute_json).collect());
                    }
                    spanset
                })
                .collect();
            let mut entry = json!({
                "traceID": id_to_hex(&trace.trace_id),
                "rootServiceName": trace.root_service_name,
                "rootTraceName": trace.root_trace_name,
                "startTimeUnixNano": trace.start_unix_nano.to_string(),
                "durationMs": trace.duration_nanos / 1_000_000,
            });
            if let Some(first) = spansets.first() {
                entry["spanSet"] = first.clone();
            }
            entry["spanSets"] = Value::Array(spansets);
            entry
        })
        .collect();
    json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": response.metrics.inspected_traces,
            "inspectedSpans": response.metrics.inspected_spans.to_string(),
            "inspectedBytes": "0",
            "totalBlocks": 0,
            "completedJobs": 1,
            "totalJobs": 1,
        },
    })
}

async fn search_handler(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    match run_search(&state, &params).await {
        Ok(body) => json_response(body),
        Err(error) => error.into_response(),
    }
}

async fn run_search(state: &ServerState, params: &Params) -> Result<Value, SearchError> {
    let query = match (params.get("q"), params.get("tags")) {
        (Some(text), _) => SearchQuery::TraceQl(Box::new(oxeye_traceql::parse(text)?)),
        (None, Some(tags)) => SearchQuery::Tags(parse_logfmt_tags(tags)?),
        (None, None) => SearchQuery::Tags(Vec::new()),
    };
    let (start_unix_nano, end_unix_nano) = window(params)?;
    let request = SearchRequest {
        query,
        start_unix_nano,
        end_unix_nano,
        min_duration_nanos: duration_param(params, "minDuration")?,
        max_duration_nanos: duration_param(params, "maxDuration")?,
        limit: count_param(params, "limit", DEFAULT_LIMIT)?,
        spans_per_spanset: count_param(params, "spss", DEFAULT_SPANS_PER_SPANSET)?,
    };
    let reader = reader(state)?;
    let response = blocking(move || Ok(search(reader.as_ref(), &request)?)).await?;
    Ok(search_json(&response))
}

fn tag_request(params: &Params) -> Result<TagRequest, SearchError> {
    let (start_unix_nano, end_unix_nano) = window(params)?;
    // An unparsable `q` lists unfiltered, as Tempo does.
    let filter = params.get("q").and_then(|text| oxeye_traceql::parse_spanset(text).ok());
    Ok(TagRequest {
        start_unix_nano,
        end_unix_nano,
        filter,
        max_traces: TAG_SCAN_MAX_TRACES,
        max_values: TAG_MAX_VALUES,
    })
}

fn requested_scopes(params: &Params) -> Result<Option<TagScope>, SearchError> {
    match params.get("scope") {
        None | Some("all") => Ok(None),
        Some(name) => TagScope::from_name(name)
            .map(Some)
            .ok_or_else(|| SearchError::bad_request(format!("invalid scope: {name:?}"))),
    }
}

async fn tags_v1(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let scope = requested_scopes(&params)?;
        if scope == Some(TagScope::Intrinsic) {
            return Ok(json!({ "tagNames": Intrinsic::ALL_NAMES }));
        }
        let request = tag_request(&params)?;
        let reader = reader(&state)?;
        let scopes: Vec<TagScope> = scope.map_or_else(|| vec![TagScope::Span, TagScope::Resource], |scope| vec![scope]);
        let names = blocking(move || Ok(tag_names(reader.as_ref(), &request, &scopes)?)).await?;
        let merged: BTreeSet<String> = names.scopes.into_iter().flat_map(|(_, names)| names).collect();
        Ok::<_, SearchError>(json!({ "tagNames": merged }))
    }
    .await;
    match result {
        Ok(body) => json_response(body),
        Err(error) => error.into_response(),
    }
}

async fn tags_v2(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let scope = requested_scopes(&params)?;
        let mut scopes_json = Vec::new();
        if scope != Some(TagScope::Intrinsic) {
            let request = tag_request(&params)?;
            let reader = reader(&state)?;
            let wanted: Vec<TagScope> = scope.map_or_else(Vec::new, |scope| vec![scope]);
            let names = blocking(move || Ok(tag_names(reader.as_ref(), &request, &wanted)?)).await?;
            for (scope_name, tags) in names.scopes {
                // Event, link and instrumentation scopes are listed only when they hold something.
                let always = matches!(scope_name, TagScope::Resource | TagScope::Span);
                if always || !tags.is_empty() || scope.is_some() {
                    scopes_json.push(json!({ "name": scope_name.name(), "tags": tags }));
                }
            }
        }
        if scope.is_none() || scope == Some(TagScope::Intrinsic) {
            scopes_json.push(json!({ "name": "intrinsic", "tags": Intrinsic::ALL_NAMES }));
        }
        Ok::<_, SearchError>(json!({ "scopes": scopes_json }))
    }
    .await;
    match result {
        Ok(body) => json_response(body),
        Err(error) => error.into_response(),
    }
}

/// Values of `tag`: for `status` and `kind` every keyword (Tempo lists them all); else the values seen.
async fn collect_tag_values(state: &ServerState, params: &Params, tag: &str) -> Result<Vec<FieldValue>, SearchError> {
    let field = tag_field(tag);
    match field {
        FieldExpr::Intrinsic(Intrinsic::Status) => {
            return Ok(STATUS_VALUES.iter().map(|status| FieldValue::Status(*status)).collect());
        }
        FieldExpr::Intrinsic(Intrinsic::Kind) => {
            let kinds = [
                SpanKind::Unspecified,
                SpanKind::Internal,
                SpanKind::Server,
                SpanKind::Client,
                SpanKind::Producer,
                SpanKind::Consumer,
            ];
            return Ok(kinds.iter().map(|kind| FieldValue::Kind(*kind)).collect());
        }
        _ => {}
    }
    let request = tag_request(params)?;
    let reader = reader(state)?;
    blocking(move || Ok(tag_values(reader.as_ref(), &request, &field)?)).await
}

async fn tag_values_v1(State(state): State<Arc<ServerState>>, Path(tag): Path<String>, params: Params) -> Response {
    match collect_tag_values(&state, &params, &tag).await {
        Ok(values) => {
            let texts: Vec<String> = values.iter().map(FieldValue::text).collect();
            json_response(json!({ "tagValues": texts }))
        }
        Err(error) => error.into_response(),
    }
}

async fn tag_values_v2(State(state): State<Arc<ServerState>>, Path(tag): Path<String>, params: Params) -> Response {
    match collect_tag_values(&state, &params, &tag).await {
        Ok(values) => {
            let typed: Vec<Value> =
                values.iter().map(|value| json!({ "type": value.type_name(), "value": value.text() })).collect();
            json_response(json!({ "tagValues": typed, "metrics": { "inspectedBytes": "0" } }))
        }
        Err(error) => error.into_response(),
    }
}

fn label_value_json(value: &FieldValue) -> Value {
    match value {
        FieldValue::Float(number) => json!({ "doubleValue": number }),
        FieldValue::Int(number) => json!({ "intValue": number.to_string() }),
        FieldValue::Bool(flag) => json!({ "boolValue": flag }),
        other => json!({ "stringValue": other.text() }),
    }
}

fn labels_json(labels: &[SeriesLabel]) -> Value {
    Value::Array(
        labels.iter().map(|label| json!({ "key": label.name, "value": label_value_json(&label.value) })).collect(),
    )
}

fn metrics_query(params: &Params) -> Result<oxeye_traceql::syntax::ast::Query, SearchError> {
    let text = params.get("q").or_else(|| params.get("query")).ok_or_else(|| SearchError::bad_request("missing q"))?;
    let query = oxeye_traceql::parse(text)?;
    if !query.is_metrics() {
        return Err(SearchError::bad_request(
            "invalid TraceQL query: a metrics query ends in a function such as | rate()",
        ));
    }
    Ok(query)
}

async fn metrics_query_range(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let query = metrics_query(&params)?;
        let (start_unix_nano, end_unix_nano) = window(&params)?;
        let step_nanos = match duration_param(&params, "step")? {
            Some(step) if step > 0 => step,
            Some(_) => return Err(SearchError::bad_request("invalid step: must be positive")),
            None => MetricsRange::default_step_nanos(start_unix_nano, end_unix_nano, DEFAULT_POINTS),
        };
        if (end_unix_nano - start_unix_nano) / step_nanos > MAX_POINTS {
            return Err(SearchError::bad_request(format!(
                "invalid step: more than {MAX_POINTS} points per series; use a larger step"
            )));
        }
        let reader = reader(&state)?;
        let range = MetricsRange { start_unix_nano, end_unix_nano, step_nanos };
        let series = blocking(move || Ok(query_range(reader.as_ref(), &query, range)?)).await?;
        let series_json: Vec<Value> = series
            .iter()
            .map(|one: &MetricsSeries| {
                let samples: Vec<Value> = one
                    .samples
                    .iter()
                    .map(|(timestamp_ms, value)| json!({ "timestampMs": timestamp_ms.to_string(), "value": value }))
                    .collect();
                json!({ "labels": labels_json(&one.labels), "promLabels": one.prom_labels(), "samples": samples })
            })
            .collect();
        Ok::<_, SearchError>(json!({ "series": series_json, "metrics": { "completedJobs": 1, "totalJobs": 1 } }))
    }
    .await;
    match result {
        Ok(body) => json_response(body),
        Err(error) => error.into_response(),
    }
}

async fn metrics_query_instant(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let query = metrics_query(&params)?;
        let (start_unix_nano, end_unix_nano) = window(&params)?;
        let reader = reader(&state)?;
        let series =
            blocking(move || Ok(query_instant(reader.as_ref(), &query, start_unix_nano, end_unix_nano)?)).await?;
        let series_json: Vec<Value> = series
            .iter()
            .map(|(labels, value)| {
                let prom_labels = MetricsSeries { labels: labels.clone(), samples: Vec::new() }.prom_labels();
                json!({ "labels": labels_json(labels), "promLabels": prom_labels, "value": value })
            })
            .collect();
        Ok::<_, SearchError>(json!({ "series": series_json, "metrics": { "completedJobs": 1, "totalJobs": 1 } }))
    }
    .await;
    match result {
        Ok(body) => json_response(body),
        Err(error) => error.into_response(),
    }
}

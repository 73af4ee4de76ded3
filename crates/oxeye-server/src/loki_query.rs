//! The query half of the Loki API: `query`, `query_range`, `labels`, `label/<name>/values`, `series`,
//! `index/stats`, `index/volume[_range]`, `detected_labels`, `detected_fields`, `patterns`, `tail`
//! (WebSocket), `status/buildinfo` and `format_query`. The push half is in `loki_api.rs`.
//!
//! Source: <https://grafana.com/docs/loki/latest/reference/loki-http-api/>. Timestamps in parameters are
//! integers of nanoseconds, floats of seconds, or RFC 3339; in responses, log entries carry nanosecond
//! strings and samples float seconds. Errors are plain text bodies with 400 (bad data), 429, 500 or 503,
//! as Loki answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxeye_logql::{Direction, Engine, QueryError, QueryResult, SampleSeries};
use oxeye_model::logs::LogStorage;
use oxeye_model::storage::ErrorKind;
use oxeye_model::{Labels, Matcher};
use serde_json::{Value as Json, json};

use crate::ServerState;
use crate::error::write_status;
use crate::params::Params;

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/loki/api/v1/query", get(query).post(query))
        .route("/loki/api/v1/query_range", get(query_range).post(query_range))
        .route("/loki/api/v1/labels", get(labels).post(labels))
        .route("/loki/api/v1/label", get(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values).post(label_values))
        .route("/loki/api/v1/series", get(series).post(series))
        .route("/loki/api/v1/index/stats", get(index_stats).post(index_stats))
        .route("/loki/api/v1/index/volume", get(volume).post(volume))
        .route("/loki/api/v1/index/volume_range", get(volume_range).post(volume_range))
        .route("/loki/api/v1/detected_labels", get(detected_labels))
        .route("/loki/api/v1/detected_fields", get(detected_fields))
        .route("/loki/api/v1/patterns", get(patterns).post(patterns))
        .route("/loki/api/v1/tail", get(crate::loki_tail::tail))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route("/loki/api/v1/format_query", get(format_query).post(format_query))
}

/// A Loki API error: status and plain-text body.
struct LokiError {
    status: StatusCode,
    message: String,
}

impl LokiError {
    fn bad_request(message: impl Into<String>) -> Self {
        LokiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    fn from_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        LokiError { status: write_status(kind), message: message.into() }
    }
}

impl From<QueryError> for LokiError {
    fn from(error: QueryError) -> Self {
        LokiError::from_kind(error.kind(), error.to_string())
    }
}

impl From<oxeye_model::storage::StorageError> for LokiError {
    fn from(error: oxeye_model::storage::StorageError) -> Self {
        LokiError::from_kind(error.kind(), error.to_string())
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", self.message))
            .into_response()
    }
}

fn respond(result: Result<Json, LokiError>) -> Response {
    match result {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response(),
        Err(error) => error.into_response(),
    }
}

fn log_storage(state: &ServerState) -> Result<Arc<dyn LogStorage>, LokiError> {
    state.log_storage().cloned().ok_or_else(|| LokiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "log storage is starting up (WAL replay in progress)".into(),
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LokiError> + Send + 'static,
) -> Result<T, LokiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|error| {
        Err(LokiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: format!("query task failed: {error}") })
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
}

/// Parses a Loki timestamp: integer nanoseconds, float seconds, or RFC 3339.
fn parse_time_ns(text: &str) -> Option<i64> {
    if let Ok(nanoseconds) = text.parse::<i64>() {
        return Some(nanoseconds);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some((seconds * 1e9) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text).ok().and_then(|time| time.timestamp_nanos_opt())
}

fn time_param(params: &Params, name: &str, default_ns: i64) -> Result<i64, LokiError> {
    match params.get(name) {
        None => Ok(default_ns),
        Some(text) => parse_time_ns(text).ok_or_else(|| {
            LokiError::bad_request(format!("invalid parameter {name:?}: cannot parse {text:?} to a valid timestamp"))
        }),
    }
}

/// Parses a duration parameter (`5m` or float seconds) into nanoseconds.
fn duration_param_ns(params: &Params, name: &str) -> Result<Option<i64>, LokiError> {
    let Some(text) = params.get(name) else { return Ok(None) };
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok(Some((seconds * 1e9) as i64));
    }
    oxeye_logql::syntax::parser::parse_duration_text_ms(text)
        .map(|milliseconds| Some(milliseconds.saturating_mul(1_000_000)))
        .ok_or_else(|| {
            LokiError::bad_request(format!("invalid parameter {name:?}: cannot parse {text:?} to a valid duration"))
        })
}

/// `start`/`end`/`since` as Loki reads them: end defaults to now, start to end - since (default 1h).
fn window(params: &Params) -> Result<(i64, i64), LokiError> {
    let end_ns = time_param(params, "end", now_ns())?;
    let since_ns = duration_param_ns(params, "since")?.unwrap_or(3_600 * 1_000_000_000);
    let start_ns = time_param(params, "start", end_ns - since_ns)?;
    if end_ns < start_ns {
        return Err(LokiError::bad_request("end timestamp must not be before or equal to start time"));
    }
    Ok((start_ns, end_ns))
}

fn labels_json(labels: &Labels) -> Json {
    Json::Object(labels.iter().map(|label| (label.name.clone(), Json::String(label.value.clone()))).collect())
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{value}")
    }
}

fn seconds_json(timestamp_ns: i64) -> Json {
    let milliseconds = timestamp_ns.div_euclid(1_000_000);
    if milliseconds % 1000 == 0 { Json::from(milliseconds / 1000) } else { Json::from(milliseconds as f64 / 1000.0) }
}

fn stats_json() -> Json {
    json!({"summary": {"bytesProcessedPerSecond": 0, "linesProcessedPerSecond": 0, "totalBytesProcessed": 0,
        "totalLinesProcessed": 0, "execTime": 0, "queueTime": 0, "subqueries": 0, "totalEntriesReturned": 0}})
}

fn result_json(result: QueryResult) -> Json {
    let series_json = |series: &SampleSeries| {
        json!({"metric": labels_json(&series.labels),
            "values": series.points.iter().map(|(time, value)| json!([seconds_json(*time), format_value(*value)])).collect::<Vec<_>>()})
    };
    let data = match result {
        QueryResult::Streams(streams) => json!({"resultType": "streams", "result": streams.iter().map(|stream| json!({
            "stream": labels_json(&stream.labels),
            "values": stream.entries.iter().map(|(time, line)| json!([time.to_string(), line])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(), "stats": stats_json()}),
        QueryResult::Matrix(series) => {
            json!({"resultType": "matrix", "result": series.iter().map(series_json).collect::<Vec<_>>(), "stats": stats_json()})
        }
        QueryResult::Vector(series) => json!({"resultType": "vector", "result": series.iter().filter_map(|series| {
            series.points.first().map(|(time, value)| json!({"metric": labels_json(&series.labels), "value": [seconds_json(*time), format_value(*value)]}))
        }).collect::<Vec<_>>(), "stats": stats_json()}),
        QueryResult::Scalar(points) => {
            let (time, value) = points.first().copied().unwrap_or((0, 0.0));
            json!({"resultType": "scalar", "result": [seconds_json(time), format_value(value)], "stats": stats_json()})
        }
    };
    json!({"status": "success", "data": data})
}

fn direction(params: &Params) -> Result<Direction, LokiError> {
    match params.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(Direction::Backward),
        Some("forward") => Ok(Direction::Forward),
        Some(other) => Err(LokiError::bad_request(format!("invalid direction {other:?}"))),
    }
}

fn limit(params: &Params) -> Result<usize, LokiError> {
    match params.get("limit") {
        None => Ok(100),
        Some(text) => text.parse::<usize>().map_err(|_| {
            LokiError::bad_request(format!("invalid parameter \"limit\": cannot parse {text:?} to an integer"))
        }),
    }
}

fn required_query(params: &Params) -> Result<String, LokiError> {
    params.get("query").map(str::to_string).ok_or_else(|| LokiError::bad_request("query parameter is required"))
}

async fn query(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let query = required_query(&params)?;
        let time_ns = time_param(&params, "time", now_ns())?;
        let direction = direction(&params)?;
        let limit = limit(&params)?;
        blocking(move || {
            let engine = Engine::default();
            let reader: &dyn oxeye_model::logs::LogReader = storage.as_ref();
            match engine.query_instant(reader, &query, time_ns) {
                // Loki answers log queries on /query with the streams up to `time`, over the last hour.
                Err(QueryError::Invalid(message)) if message.starts_with("log queries") => {
                    let result = engine.query_range(
                        reader,
                        &query,
                        time_ns - 3_600_000_000_000,
                        time_ns,
                        1,
                        limit,
                        direction,
                    )?;
                    Ok(result_json(result))
                }
                other => Ok(result_json(other?)),
            }
        })
        .await
    }
    .await;
    respond(result)
}

async fn query_range(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let query = required_query(&params)?;
        let (start_ns, end_ns) = window(&params)?;
        let step_ns = match duration_param_ns(&params, "step")? {
            Some(step) => step,
            // Loki's default: (end - start) / 250 rounded up to a second, at least 1 s.
            None => (((end_ns - start_ns) as f64 / 250.0 / 1e9).ceil().max(1.0) * 1e9) as i64,
        };
        let direction = direction(&params)?;
        let limit = limit(&params)?;
        blocking(move || {
            let result =
                Engine::default().query_range(storage.as_ref(), &query, start_ns, end_ns, step_ns, limit, direction)?;
            Ok(result_json(result))
        })
        .await
    }
    .await;
    respond(result)
}

fn selector_matchers(params: &Params, name: &str) -> Result<Vec<Matcher>, LokiError> {
    match params.get(name) {
        None => Ok(Vec::new()),
        Some(text) => Ok(oxeye_logql::engine::parse_selector(text)?),
    }
}

async fn labels(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let matchers = selector_matchers(&params, "query")?;
        blocking(move || {
            Ok(json!({"status": "success", "data": storage.label_names(start_ns, end_ns + 1, &matchers)?}))
        })
        .await
    }
    .await;
    respond(result)
}

async fn label_values(State(state): State<Arc<ServerState>>, Path(name): Path<String>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let matchers = selector_matchers(&params, "query")?;
        blocking(move || {
            Ok(json!({"status": "success", "data": storage.label_values(start_ns, end_ns + 1, &name, &matchers)?}))
        })
        .await
    }
    .await;
    respond(result)
}

async fn series(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let mut selectors = params.all("match[]");
        selectors.extend(params.all("match"));
        let mut matcher_sets = Vec::new();
        for selector in selectors.into_iter().filter(|selector| !selector.is_empty()) {
            matcher_sets.push(oxeye_logql::engine::parse_selector(selector)?);
        }
        if matcher_sets.is_empty() {
            matcher_sets.push(Vec::new());
        }
        blocking(move || {
            let mut found: BTreeSet<Labels> = BTreeSet::new();
            for matchers in &matcher_sets {
                found.extend(storage.series(start_ns, end_ns + 1, matchers)?);
            }
            Ok(json!({"status": "success", "data": found.iter().map(labels_json).collect::<Vec<_>>()}))
        })
        .await
    }
    .await;
    respond(result)
}

async fn index_stats(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let matchers = selector_matchers(&params, "query")?;
        blocking(move || {
            let stats = storage.index_stats(start_ns, end_ns + 1, &matchers)?;
            Ok(json!({"streams": stats.streams, "chunks": stats.chunks, "entries": stats.entries, "bytes": stats.bytes}))
        })
        .await
    }
    .await;
    respond(result)
}

/// What Loki's volume endpoints sum bytes by (`aggregateBy`, `pkg/storage/stores/index/seriesvolume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VolumeAggregation {
    /// `series` (the default): per label set, reduced to `targetLabels`, else to the labels the selector
    /// names, else (`{}`) the whole stream labels.
    Series,
    /// `labels`: per label name (each of `targetLabels`, else every name of the stream), reported as
    /// `{<name>=""}`.
    Labels,
}

/// One group of a volume answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum VolumeGroup {
    /// A label set ([`VolumeAggregation::Series`]).
    Series(Labels),
    /// A label name ([`VolumeAggregation::Labels`]).
    Label(String),
}

impl VolumeGroup {
    /// The name Loki sorts groups by: the label set in selector form, or the label name.
    fn name(&self) -> String {
        match self {
            VolumeGroup::Series(labels) => labels.to_string(),
            VolumeGroup::Label(name) => name.clone(),
        }
    }

    /// The group's `metric` as Loki prints it: the labels, or `{"<name>": ""}`.
    fn metric_json(&self) -> Json {
        match self {
            VolumeGroup::Series(labels) => labels_json(labels),
            VolumeGroup::Label(name) => json!({ name: "" }),
        }
    }
}

/// A volume request's inputs.
struct VolumeRequest {
    matchers: Vec<Matcher>,
    target_labels: Vec<String>,
    /// The most groups kept per bucket, largest first (Loki's default 100).
    limit: usize,
    aggregation: VolumeAggregation,
}

/// Loki's default number of volume groups (`seriesvolume.DefaultLimit`).
const DEFAULT_VOLUME_LIMIT: usize = 100;

fn volume_request(params: &Params) -> Result<VolumeRequest, LokiError> {
    let query = params.get("query").unwrap_or("{}");
    // Loki's match-any selector `{}` reads every stream.
    let mut matchers = if query.trim() == "{}" { Vec::new() } else { oxeye_logql::engine::parse_selector(query)? };
    let target_labels: Vec<String> = params
        .get("targetLabels")
        .map(|text| text.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    // As Loki's `PrepareLabelsAndMatchers`: every target label must be present on the streams counted.
    for target in &target_labels {
        if !matchers.iter().any(|matcher| matcher.name == *target) {
            let present = Matcher::new(oxeye_model::MatchOp::Regex, target.clone(), ".+")
                .map_err(|error| LokiError::bad_request(error.to_string()))?;
            matchers.push(present);
        }
    }
    let limit = match params.get("limit") {
        None => DEFAULT_VOLUME_LIMIT,
        Some(text) => text
            .parse()
            .map_err(|_| LokiError::bad_request(format!("invalid parameter \"limit\": cannot parse {text:?}")))?,
    };
    let aggregation = match params.get("aggregateBy") {
        None | Some("" | "series") => VolumeAggregation::Series,
        Some("labels") => VolumeAggregation::Labels,
        Some(other) => {
            return Err(LokiError::bad_request(format!(
                "invalid aggregateBy {other:?}: must be \"series\" or \"labels\""
            )));
        }
    };
    Ok(VolumeRequest { matchers, target_labels, limit, aggregation })
}

/// The volumes of one request, one pass over the store's chunk sizes: for each bucket (inclusive ends
/// `bucket_ends_ns`), the groups with bytes, largest first (ties by name), cut to the limit, as Loki's
/// `seriesvolume.MapToVolumeResponse` orders each split.
fn bucketed_volumes(
    storage: &dyn LogStorage,
    request: &VolumeRequest,
    start_ns: i64,
    end_ns: i64,
    bucket_ends_ns: &[i64],
) -> Result<Vec<Vec<(VolumeGroup, u64)>>, LokiError> {
    let streams = storage.volume(start_ns, end_ns, &request.matchers, bucket_ends_ns)?;
    let named: Vec<String> = if request.target_labels.is_empty() {
        request.matchers.iter().map(|matcher| matcher.name.clone()).collect()
    } else {
        request.target_labels.clone()
    };
    let mut buckets: Vec<BTreeMap<VolumeGroup, u64>> = vec![BTreeMap::new(); bucket_ends_ns.len()];
    for (labels, bytes_per_bucket) in &streams {
        let groups: Vec<VolumeGroup> = match request.aggregation {
            VolumeAggregation::Series if named.is_empty() => vec![VolumeGroup::Series(labels.clone())],
            VolumeAggregation::Series => vec![VolumeGroup::Series(Labels::from_pairs(
                labels
                    .iter()
                    .filter(|label| named.contains(&label.name))
                    .map(|label| (label.name.clone(), label.value.clone())),
            ))],
            VolumeAggregation::Labels => labels
                .iter()
                .filter(|label| request.target_labels.is_empty() || request.target_labels.contains(&label.name))
                .map(|label| VolumeGroup::Label(label.name.clone()))
                .collect(),
        };
        for (bucket, bytes) in buckets.iter_mut().zip(bytes_per_bucket) {
            if *bytes == 0 {
                continue;
            }
            for group in &groups {
                *bucket.entry(group.clone()).or_default() += bytes;
            }
        }
    }
    Ok(buckets
        .into_iter()
        .map(|bucket| {
            let mut sorted: Vec<(VolumeGroup, u64)> = bucket.into_iter().collect();
            sorted.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.name().cmp(&right.0.name())));
            sorted.truncate(request.limit);
            sorted
        })
        .collect())
}

async fn volume(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let request = volume_request(&params)?;
        blocking(move || {
            let buckets = bucketed_volumes(storage.as_ref(), &request, start_ns, end_ns + 1, &[end_ns])?;
            let result: Vec<Json> = buckets
                .into_iter()
                .flatten()
                .map(|(group, bytes)| {
                    json!({"metric": group.metric_json(), "value": [seconds_json(end_ns), bytes.to_string()]})
                })
                .collect();
            Ok(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
        })
        .await
    }
    .await;
    respond(result)
}

/// The inclusive ends of the buckets `index/volume_range` splits `[start_ns, end_ns]` into, as Loki's
/// `util.ForInterval` with inclusive ends: aligned to multiples of the step, each ending one millisecond
/// before the next multiple, the first starting at `start_ns` and the last ending at `end_ns`.
fn volume_bucket_ends(start_ns: i64, end_ns: i64, step_ns: i64) -> Vec<i64> {
    let mut ends = Vec::new();
    let mut bucket_start_ns = start_ns - start_ns.rem_euclid(step_ns);
    while bucket_start_ns < end_ns {
        let next_ns = bucket_start_ns.saturating_add(step_ns);
        ends.push(if next_ns >= end_ns { end_ns } else { next_ns - 1_000_000 });
        bucket_start_ns = next_ns;
    }
    if ends.is_empty() {
        ends.push(end_ns);
    }
    ends
}

/// Most buckets one `index/volume_range` request may ask for, as query_range's steps.
const MAX_VOLUME_BUCKETS: i64 = 11_000;

async fn volume_range(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let request = volume_request(&params)?;
        let step_ns = duration_param_ns(&params, "step")?
            .unwrap_or((((end_ns - start_ns) as f64 / 250.0 / 1e9).ceil().max(1.0) * 1e9) as i64);
        if step_ns <= 0 {
            return Err(LokiError::bad_request(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if (end_ns - start_ns) / step_ns >= MAX_VOLUME_BUCKETS {
            return Err(LokiError::bad_request(format!(
                "exceeded maximum resolution of {MAX_VOLUME_BUCKETS} points per timeseries. Try decreasing the query resolution (?step=XX)"
            )));
        }
        blocking(move || {
            let ends = volume_bucket_ends(start_ns, end_ns, step_ns);
            let buckets = bucketed_volumes(storage.as_ref(), &request, start_ns, end_ns + 1, &ends)?;
            let mut series: BTreeMap<VolumeGroup, Vec<(i64, u64)>> = BTreeMap::new();
            for (bucket_end_ns, groups) in ends.iter().zip(buckets) {
                for (group, bytes) in groups {
                    series.entry(group).or_default().push((*bucket_end_ns, bytes));
                }
            }
            // Loki's `toPrometheusData`: largest first sample first, ties by name; a vector when no group
            // has more than one sample.
            let mut sorted: Vec<(VolumeGroup, Vec<(i64, u64)>)> = series.into_iter().collect();
            sorted.sort_by(|left, right| {
                let first = |samples: &[(i64, u64)]| samples.first().map_or(0, |(_, bytes)| *bytes);
                first(&right.1).cmp(&first(&left.1)).then_with(|| left.0.name().cmp(&right.0.name()))
            });
            let matrix = sorted.iter().any(|(_, samples)| samples.len() > 1);
            let result: Vec<Json> = sorted
                .iter()
                .map(|(group, samples)| {
                    let metric = group.metric_json();
                    let points: Vec<Json> =
                        samples.iter().map(|(time_ns, bytes)| json!([seconds_json(*time_ns), bytes.to_string()])).collect();
                    match (matrix, points.first()) {
                        (false, Some(point)) => json!({"metric": metric, "value": point}),
                        _ => json!({"metric": metric, "values": points}),
                    }
                })
                .collect();
            let result_type = if matrix { "matrix" } else { "vector" };
            Ok(json!({"status": "success", "data": {"resultType": result_type, "result": result}}))
        })
        .await
    }
    .await;
    respond(result)
}

/// Labels `detected_labels` lists whenever they have values (`staticLabels` in Loki's `pkg/querier/querier.go`).
const STATIC_DETECTED_LABELS: [&str; 4] = ["cluster", "namespace", "instance", "pod"];

/// Loki's `shouldRejectLabel`: true when a label has no values or only ids (numbers or UUIDs), which
/// `detected_labels` leaves out as nothing a user would filter by; `0` and `1` alone count as booleans.
fn holds_only_ids(values: &BTreeSet<String>) -> bool {
    if values.len() <= 2 && !values.is_empty() && values.iter().all(|value| value == "0" || value == "1") {
        return false;
    }
    values.iter().all(|value| value.parse::<f64>().is_ok() || is_uuid(value))
}

/// True for the UUID forms Go's `uuid.Parse` accepts: 32 hex digits, or 8-4-4-4-12 with dashes, bare, in
/// braces or after `urn:uuid:`.
fn is_uuid(text: &str) -> bool {
    let bare = if text.len() == 45 && text.get(..9).is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:uuid:")) {
        &text[9..]
    } else if text.len() == 38 && text.starts_with('{') && text.ends_with('}') {
        &text[1..37]
    } else {
        text
    };
    match bare.len() {
        32 => bare.bytes().all(|byte| byte.is_ascii_hexdigit()),
        36 => bare.bytes().enumerate().all(|(index, byte)| {
            if matches!(index, 8 | 13 | 18 | 23) { byte == b'-' } else { byte.is_ascii_hexdigit() }
        }),
        _ => false,
    }
}

async fn detected_labels(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let matchers = selector_matchers(&params, "query")?;
        blocking(move || {
            let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for labels in storage.series(start_ns, end_ns + 1, &matchers)? {
                for label in &labels {
                    values.entry(label.name.clone()).or_default().insert(label.value.clone());
                }
            }
            let detected: Vec<Json> = values
                .iter()
                .filter(|(name, values)| {
                    (STATIC_DETECTED_LABELS.contains(&name.as_str()) && !values.is_empty()) || !holds_only_ids(values)
                })
                .map(|(name, values)| json!({"label": name, "cardinality": values.len()}))
                .collect();
            Ok(json!({"detectedLabels": detected}))
        })
        .await
    }
    .await;
    respond(result)
}

/// The `type` Loki's `detected_fields` reports for a value (`determineType` in
/// `pkg/querier/queryrange/detected_fields.go`): the first of int, float, boolean, duration, bytes that
/// parses, else string.
fn detected_field_type(value: &str) -> &'static str {
    use oxeye_logql::{pipeline::convert, syntax::NumberKind};
    let is_go_bool =
        matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False");
    if value.parse::<i64>().is_ok() {
        "int"
    } else if value.parse::<f64>().is_ok() {
        "float"
    } else if is_go_bool {
        "boolean"
    } else if convert(value, NumberKind::Duration).is_some() {
        "duration"
    } else if value.starts_with(|character: char| character.is_ascii_digit())
        && convert(value, NumberKind::Bytes).is_some()
    {
        "bytes"
    } else {
        "string"
    }
}

/// One detected field: its type (from the first value seen), the parsers that found it (none for
/// structured metadata) and its distinct values.
struct DetectedField {
    kind: &'static str,
    parsers: BTreeSet<&'static str>,
    values: BTreeSet<String>,
}

/// `/loki/api/v1/detected_fields`: the structured metadata and the fields `| json` or `| logfmt` find in the
/// newest `line_limit` entries of the query, at most `field_limit` (or `limit`) fields, as Loki answers:
/// `{"fields": [{"label", "type", "cardinality", "parsers"}], "limit": <field limit>}` with `parsers` null for
/// structured metadata.
async fn detected_fields(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let (start_ns, end_ns) = window(&params)?;
        let query = required_query(&params)?;
        let count_param = |name: &str| -> Result<Option<usize>, LokiError> {
            params
                .get(name)
                .map(|text| text.parse().map_err(|_| LokiError::bad_request(format!("invalid {name} {text:?}"))))
                .transpose()
        };
        let line_limit = count_param("line_limit")?.unwrap_or(1000);
        let field_limit = count_param("field_limit")?.or(count_param("limit")?).unwrap_or(1000);
        let matchers = match oxeye_logql::syntax::parse_expr(&query) {
            Ok(oxeye_logql::syntax::Expr::Log(log)) => log.matchers,
            Ok(_) => return Err(LokiError::bad_request("detected_fields needs a log query")),
            Err(error) => return Err(LokiError::bad_request(error.to_string())),
        };
        blocking(move || {
            let result = Engine::default().query_range(
                storage.as_ref(),
                &query,
                start_ns,
                end_ns,
                1,
                line_limit,
                Direction::Backward,
            )?;
            let QueryResult::Streams(streams) = result else {
                return Err(LokiError::bad_request("detected_fields needs a log query"));
            };
            // A result's labels are its stream's labels plus the entry's structured metadata: the stream is
            // the largest stored label set they contain.
            let stored = storage.series(start_ns, end_ns + 1, &matchers)?;
            let mut fields: BTreeMap<String, DetectedField> = BTreeMap::new();
            let mut record = |name: String, value: String, parser: Option<&'static str>| {
                if !fields.contains_key(&name) && fields.len() >= field_limit {
                    return;
                }
                let field = fields.entry(name).or_insert_with(|| DetectedField {
                    kind: detected_field_type(&value),
                    parsers: BTreeSet::new(),
                    values: BTreeSet::new(),
                });
                field.parsers.extend(parser);
                field.values.insert(value);
            };
            for stream in &streams {
                let stream_labels = stored
                    .iter()
                    .filter(|labels| {
                        labels.iter().all(|label| stream.labels.get(&label.name) == Some(label.value.as_str()))
                    })
                    .max_by_key(|labels| labels.len());
                for label in &stream.labels {
                    if stream_labels.is_none_or(|labels| labels.get(&label.name).is_none()) {
                        record(label.name.clone(), label.value.clone(), None);
                    }
                }
                for (_, line) in &stream.entries {
                    let Some((parser, pairs)) = oxeye_logql::pipeline::detect_line_fields(line) else { continue };
                    for (name, value) in pairs {
                        let name = if stream_labels.is_some_and(|labels| labels.get(&name).is_some()) {
                            format!("{name}_extracted")
                        } else {
                            name
                        };
                        record(name, value, Some(parser));
                    }
                }
            }
            let detected: Vec<Json> = fields
                .iter()
                .map(|(name, field)| {
                    let parsers = if field.parsers.is_empty() { Json::Null } else { json!(field.parsers) };
                    json!({"label": name, "type": field.kind, "cardinality": field.values.len(), "parsers": parsers})
                })
                .collect();
            Ok(json!({"fields": detected, "limit": field_limit}))
        })
        .await
    }
    .await;
    respond(result)
}

/// Lines read at most by one patterns request.
const PATTERN_LINE_LIMIT: usize = 100_000;

/// `/loki/api/v1/patterns`: Drain-style templates of the selected lines ([`oxeye_logql::patterns`]) with
/// per-step counts, as Loki answers: `{"status": "success", "data": [{"pattern": "...", "level": "...",
/// "samples": [[<unix seconds>, <count>], ...]}]}`. Reads the newest 100 000 lines of the window.
async fn patterns(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let result = async {
        let storage = log_storage(&state)?;
        let query = required_query(&params)?;
        let (start_ns, end_ns) = window(&params)?;
        let step_ns = duration_param_ns(&params, "step")?
            .unwrap_or((((end_ns - start_ns) as f64 / 250.0 / 1e9).ceil().max(10.0) * 1e9) as i64)
            .max(1_000_000_000);
        blocking(move || {
            let result = Engine::default().query_range(
                storage.as_ref(),
                &query,
                start_ns,
                end_ns,
                1,
                PATTERN_LINE_LIMIT,
                Direction::Backward,
            )?;
            let QueryResult::Streams(streams) = result else {
                return Err(LokiError::bad_request("patterns needs a log query"));
            };
            // One detector per detected level, so a pattern carries the level of its lines.
            let mut detectors: BTreeMap<String, oxeye_logql::patterns::PatternDetector> = BTreeMap::new();
            for stream in &streams {
                let level = stream
                    .labels
                    .get("detected_level")
                    .or_else(|| stream.labels.get("level"))
                    .unwrap_or("unknown")
                    .to_string();
                let detector =
                    detectors.entry(level).or_insert_with(|| oxeye_logql::patterns::PatternDetector::new(step_ns));
                for (timestamp_ns, line) in &stream.entries {
                    detector.add(*timestamp_ns, line);
                }
            }
            let mut found: Vec<(u64, Json)> = Vec::new();
            for (level, detector) in detectors {
                for pattern in detector.patterns() {
                    let samples: Vec<Json> = pattern
                        .samples
                        .iter()
                        .map(|(bucket_ns, count)| json!([bucket_ns.div_euclid(1_000_000_000), count]))
                        .collect();
                    found
                        .push((pattern.total, json!({"pattern": pattern.pattern, "level": level, "samples": samples})));
                }
            }
            found.sort_by_key(|(total, _)| std::cmp::Reverse(*total));
            Ok(json!({"status": "success", "data": found.into_iter().map(|(_, pattern)| pattern).collect::<Vec<_>>()}))
        })
        .await
    }
    .await;
    respond(result)
}

async fn buildinfo(State(state): State<Arc<ServerState>>) -> Response {
    respond(Ok(json!({"version": state.options.version, "revision": "", "branch": "", "buildUser": "",
        "buildDate": "", "goVersion": ""})))
}

async fn format_query(params: Params) -> Response {
    let result = (|| {
        let query = required_query(&params)?;
        let expr =
            oxeye_logql::syntax::parse_expr(&query).map_err(|error| LokiError::bad_request(error.to_string()))?;
        Ok(json!({"status": "success", "data": expr.to_string()}))
    })();
    respond(result)
}

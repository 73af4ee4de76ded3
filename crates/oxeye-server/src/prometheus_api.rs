//! The Prometheus HTTP API (`/api/v1/*`), with Prometheus' envelopes, parameter handling and error types.
//!
//! Source: <https://prometheus.io/docs/prometheus/latest/querying/api/>. Every endpoint accepts GET with a
//! query string and POST with a form body, as Grafana sends.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxeye_model::duration::format_duration_ms;
use oxeye_model::storage::{MetricsStorage, StorageError};
use oxeye_model::{Labels, MatchOp, Matcher, is_valid_label_name};
use oxeye_promql::promql_parser;
use serde_json::{Value as Json, json};

use crate::params::{MAX_TIME_MS, MIN_TIME_MS, Params, now_ms};
use crate::query_json::render_query_result;
use crate::{ApiError, ServerState};

/// Prometheus refuses range queries with more points per series than this.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(label_names).post(label_names))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/query_exemplars", get(query_exemplars).post(query_exemplars))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/parse_query", get(parse_query).post(parse_query))
        .route("/api/v1/status/runtimeinfo", get(runtime_info))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
}

fn success(data: Json, warnings: &[String]) -> Response {
    let mut body = json!({ "status": "success", "data": data });
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Runs CPU-bound query work off the async executor. On the multi-threaded runtime of `oxeye serve` it runs
/// in place on the current worker (`block_in_place` hands that worker's other tasks to another thread), so a
/// small query does not pay two thread wake-ups, which cost milliseconds on a busy machine; elsewhere (the
/// single-threaded test runtime) it goes to the blocking pool.
async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        return Ok(tokio::task::block_in_place(work));
    }
    tokio::task::spawn_blocking(work).await.map_err(|error| ApiError::internal(format!("query task failed: {error}")))
}

/// Maps an engine error; like Prometheus, a query that does not parse is reported as an invalid `query`
/// parameter (`invalid parameter "query": 1:5: parse error: ...`).
fn query_error(error: oxeye_promql::QueryError) -> ApiError {
    if matches!(error, oxeye_promql::QueryError::Parse { .. }) {
        return ApiError::invalid_parameter("query", error);
    }
    ApiError { error_type: error.prometheus_error_type(), message: error.to_string() }
}

async fn query(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    respond(instant_query(state, params).await)
}

async fn instant_query(state: Arc<ServerState>, params: Params) -> Result<Response, ApiError> {
    let query_text = params.get("query").unwrap_or("").to_string();
    let time_ms = params.time_ms("time", now_ms())?;
    let stats_mode = StatsMode::of(&params);
    let storage = state.storage()?.clone();
    let started = Instant::now();
    let worker_state = state.clone();
    let (result, stats, queued) = run_blocking(move || {
        let queued = started.elapsed();
        let engine = &worker_state.engine;
        let answer = match stats_mode {
            StatsMode::None => {
                engine.instant_query(storage.as_ref(), &query_text, time_ms).map(|result| (result, None))
            }
            _ => engine
                .instant_query_with_stats(storage.as_ref(), &query_text, time_ms)
                .map(|(result, stats)| (result, Some(stats))),
        };
        answer.map(|(result, stats)| (result, stats, queued))
    })
    .await?
    .map_err(query_error)?;
    state.metrics.query_duration.observe(&["instant"], started.elapsed().as_secs_f64());
    Ok(json_response(render_with_optional_stats(&result, stats.as_ref(), stats_mode, queued, started.elapsed())))
}

/// What the `stats` parameter asks for: nothing (absent or empty), the totals, or with `stats=all`
/// also the samples per step, as Prometheus 2.42.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatsMode {
    None,
    Totals,
    PerStep,
}

impl StatsMode {
    fn of(params: &Params) -> StatsMode {
        match params.get("stats") {
            None | Some("") => StatsMode::None,
            Some("all") => StatsMode::PerStep,
            Some(_) => StatsMode::Totals,
        }
    }
}

fn render_with_optional_stats(
    result: &oxeye_promql::QueryResult,
    stats: Option<&oxeye_promql::QueryStats>,
    mode: StatsMode,
    queued: std::time::Duration,
    total: std::time::Duration,
) -> String {
    match stats {
        Some(stats) if mode != StatsMode::None => {
            crate::query_stats::render_query_result_with_stats(result, stats, mode == StatsMode::PerStep, queued, total)
        }
        _ => render_query_result(result),
    }
}

fn json_response(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn query_range(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    respond(range_query(state, params).await)
}

async fn range_query(state: Arc<ServerState>, params: Params) -> Result<Response, ApiError> {
    let start_ms = required_time(&params, "start")?;
    let end_ms = required_time(&params, "end")?;
    if end_ms < start_ms {
        return Err(ApiError::invalid_parameter("end", "end timestamp must not be before start time"));
    }
    let step_ms = params
        .duration_ms("step")?
        .ok_or_else(|| ApiError::invalid_parameter("step", "cannot parse \"\" to a valid duration"))?;
    if step_ms <= 0 {
        return Err(ApiError::invalid_parameter(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end_ms - start_ms) / step_ms > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let query_text = params.get("query").unwrap_or("").to_string();
    let stats_mode = StatsMode::of(&params);
    let storage = state.storage()?.clone();
    let started = Instant::now();
    let worker_state = state.clone();
    let (result, stats, queued) = run_blocking(move || {
        let queued = started.elapsed();
        let engine = &worker_state.engine;
        let answer = match stats_mode {
            StatsMode::None => engine
                .range_query(storage.as_ref(), &query_text, start_ms, end_ms, step_ms)
                .map(|result| (result, None)),
            _ => engine
                .range_query_with_stats(storage.as_ref(), &query_text, start_ms, end_ms, step_ms)
                .map(|(result, stats)| (result, Some(stats))),
        };
        answer.map(|(result, stats)| (result, stats, queued))
    })
    .await?
    .map_err(query_error)?;
    state.metrics.query_duration.observe(&["range"], started.elapsed().as_secs_f64());
    Ok(json_response(render_with_optional_stats(&result, stats.as_ref(), stats_mode, queued, started.elapsed())))
}

fn required_time(params: &Params, name: &str) -> Result<i64, ApiError> {
    match params.get(name) {
        Some(_) => params.time_ms(name, 0),
        None => Err(ApiError::invalid_parameter(name, "cannot parse \"\" to a valid timestamp")),
    }
}

/// Parses one `match[]` selector (`up`, `{job="x"}`, `http_requests_total{code=~"5.."}`) into matchers.
///
/// # Errors
/// `bad_data` with the parser's position, or when the selector is not a plain vector selector or
/// matches the empty label set.
fn parse_match_selector(text: &str) -> Result<Vec<Matcher>, ApiError> {
    let expression =
        promql_parser::parser::parse(text).map_err(|error| ApiError::invalid_parameter("match[]", error))?;
    let promql_parser::parser::Expr::VectorSelector(selector) = expression else {
        return Err(ApiError::invalid_parameter("match[]", format!("{text:?} is not a series selector")));
    };
    let matchers = selector_matchers(&selector)?;
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(ApiError::bad_data("match[] must contain at least one non-empty matcher"));
    }
    Ok(matchers)
}

/// The matchers of a parsed vector selector, the metric name included.
fn selector_matchers(selector: &promql_parser::parser::VectorSelector) -> Result<Vec<Matcher>, ApiError> {
    let mut matchers = Vec::new();
    if let Some(name) = &selector.name {
        matchers.push(Matcher::equal(oxeye_model::METRIC_NAME_LABEL, name.clone()));
    }
    for matcher in &selector.matchers.matchers {
        let op = match &matcher.op {
            promql_parser::label::MatchOp::Equal => MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => MatchOp::Regex,
            promql_parser::label::MatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        let converted = Matcher::new(op, matcher.name.clone(), matcher.value.clone())
            .map_err(|error| ApiError::bad_data(error.to_string()))?;
        matchers.push(converted);
    }
    Ok(matchers)
}

fn match_sets(params: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    params.all("match[]").into_iter().map(parse_match_selector).collect()
}

fn time_window(params: &Params) -> Result<(i64, i64), ApiError> {
    let start_ms = params.time_ms("start", MIN_TIME_MS)?;
    let end_ms = params.time_ms("end", MAX_TIME_MS)?;
    if end_ms < start_ms {
        return Err(ApiError::invalid_parameter("end", "end timestamp must not be before start time"));
    }
    Ok((start_ms, end_ms))
}

fn labels_json(labels: &Labels) -> Json {
    let mut object = serde_json::Map::with_capacity(labels.len());
    for label in labels {
        object.insert(label.name.clone(), Json::String(label.value.clone()));
    }
    Json::Object(object)
}

async fn series(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    respond(
        async {
            let sets = match_sets(&params)?;
            if sets.is_empty() {
                return Err(ApiError::bad_data("no match[] parameter provided"));
            }
            let (start_ms, end_ms) = time_window(&params)?;
            let limit = params.limit("limit")?;
            let storage = state.storage()?.clone();
            let mut found: Vec<Labels> = run_blocking(move || -> Result<Vec<Labels>, ApiError> {
                let mut all = Vec::new();
                for matchers in &sets {
                    all.extend(storage.series(start_ms, end_ms, matchers)?);
                }
                Ok(all)
            })
            .await??;
            found.sort();
            found.dedup();
            let warnings = truncate_to_limit(&mut found, limit);
            Ok(success(Json::Array(found.iter().map(labels_json).collect()), &warnings))
        }
        .await,
    )
}

async fn label_names(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    respond(
        string_lookup(state, &params, |storage, start_ms, end_ms, matchers| {
            storage.label_names(start_ms, end_ms, matchers)
        })
        .await,
    )
}

async fn label_values(State(state): State<Arc<ServerState>>, Path(name): Path<String>, params: Params) -> Response {
    if !is_valid_label_name(&name) {
        return ApiError::bad_data(format!("invalid label name: {name:?}")).into_response();
    }
    respond(
        string_lookup(state, &params, move |storage, start_ms, end_ms, matchers| {
            storage.label_values(start_ms, end_ms, &name, matchers)
        })
        .await,
    )
}

/// Runs a label-name or label-value lookup for every `match[]` set (or once without matchers), merges
/// the sorted results and applies `limit`.
async fn string_lookup(
    state: Arc<ServerState>,
    params: &Params,
    lookup: impl Fn(&dyn MetricsStorage, i64, i64, &[Matcher]) -> Result<Vec<String>, StorageError> + Send + 'static,
) -> Result<Response, ApiError> {
    let mut sets = match_sets(params)?;
    let (start_ms, end_ms) = time_window(params)?;
    let limit = params.limit("limit")?;
    let storage = state.storage()?.clone();
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let mut values = run_blocking(move || -> Result<Vec<String>, StorageError> {
        let mut all = Vec::new();
        for matchers in &sets {
            all.extend(lookup(storage.as_ref(), start_ms, end_ms, matchers)?);
        }
        Ok(all)
    })
    .await??;
    values.sort();
    values.dedup();
    let warnings = truncate_to_limit(&mut values, limit);
    Ok(success(json!(values), &warnings))
}

/// Truncates a result to `limit` and returns Prometheus' warning when it did.
fn truncate_to_limit<T>(values: &mut Vec<T>, limit: Option<usize>) -> Vec<String> {
    match limit {
        Some(limit) if values.len() > limit => {
            values.truncate(limit);
            vec!["results truncated due to limit".to_string()]
        }
        _ => Vec::new(),
    }
}

async fn metadata(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    respond(
        async {
            let limit = params.limit("limit")?;
            let metric = params.get("metric").map(str::to_string);
            let storage = state.storage()?.clone();
            let families = storage.metadata(metric.as_deref(), limit);
            let mut object = serde_json::Map::new();
            for (family, metadata) in families {
                object.insert(
                    family,
                    json!([{ "type": metadata.metric_type.as_str(), "help": metadata.help, "unit": metadata.unit }]),
                );
            }
            Ok(success(Json::Object(object), &[]))
        }
        .await,
    )
}

async fn targets(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    let wanted_state = params.get("state").unwrap_or("any").to_ascii_lowercase();
    let snapshot = state.scrape_manager().map(|manager| manager.targets()).unwrap_or_default();
    let active: Vec<Json> = snapshot.active_targets.iter().map(target_json).collect();
    let dropped: Vec<Json> = snapshot
        .dropped_targets
        .iter()
        .map(|target| json!({ "discoveredLabels": labels_json(&target.discovered_labels) }))
        .collect();
    let data = match wanted_state.as_str() {
        "active" => json!({ "activeTargets": active, "droppedTargets": [] }),
        "dropped" => json!({ "activeTargets": [], "droppedTargets": dropped }),
        _ => json!({ "activeTargets": active, "droppedTargets": dropped }),
    };
    success(data, &[])
}

fn target_json(target: &oxeye_scrape::TargetStatus) -> Json {
    json!({
        "discoveredLabels": labels_json(&target.discovered_labels),
        "labels": labels_json(&target.labels),
        "scrapePool": target.scrape_pool,
        "scrapeUrl": target.scrape_url,
        "globalUrl": target.global_url,
        "lastError": target.last_error,
        "lastScrape": rfc3339(target.last_scrape_timestamp_ms),
        "lastScrapeDuration": target.last_scrape_duration_seconds,
        "health": target.health.as_str(),
        "scrapeInterval": format_duration_ms(target.scrape_interval_ms),
        "scrapeTimeout": format_duration_ms(target.scrape_timeout_ms),
    })
}

/// RFC 3339 with nanoseconds and the local offset as Prometheus prints `lastScrape`; Go's zero time before
/// the first scrape.
fn rfc3339(timestamp_ms: Option<i64>) -> String {
    match timestamp_ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

async fn buildinfo(State(state): State<Arc<ServerState>>) -> Response {
    // No `features` map: Grafana would take a non-empty one for Mimir and call ruler APIs.
    success(
        json!({
            "version": state.options.version,
            "revision": option_env!("OXEYE_GIT_REVISION").unwrap_or("unknown"),
            "branch": "main",
            "buildUser": "oxeye",
            "buildDate": option_env!("OXEYE_BUILD_DATE").unwrap_or("unknown"),
            "goVersion": "none (oxeye is written in Rust)",
        }),
        &[],
    )
}

async fn rules() -> Response {
    // Rule evaluation is a separate capability; until it lands no rule groups are configured.
    success(json!({ "groups": [] }), &[])
}

async fn alerts() -> Response {
    success(json!({ "alerts": [] }), &[])
}

/// Every vector selector of an expression (inside functions, aggregations, subqueries, binary operands),
/// as matcher sets, for `/api/v1/query_exemplars`.
fn selectors(expression: &promql_parser::parser::Expr, sets: &mut Vec<Vec<Matcher>>) -> Result<(), ApiError> {
    use promql_parser::parser::Expr;
    match expression {
        Expr::VectorSelector(selector) => sets.push(selector_matchers(selector)?),
        Expr::MatrixSelector(matrix) => sets.push(selector_matchers(&matrix.vs)?),
        Expr::Aggregate(aggregate) => {
            selectors(&aggregate.expr, sets)?;
            if let Some(parameter) = &aggregate.param {
                selectors(parameter, sets)?;
            }
        }
        Expr::Unary(unary) => selectors(&unary.expr, sets)?,
        Expr::Binary(binary) => {
            selectors(&binary.lhs, sets)?;
            selectors(&binary.rhs, sets)?;
        }
        Expr::Paren(paren) => selectors(&paren.expr, sets)?,
        Expr::Subquery(subquery) => selectors(&subquery.expr, sets)?,
        Expr::Call(call) => {
            for argument in &call.args.args {
                selectors(argument, sets)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

/// `/api/v1/query_exemplars?query=&start=&end=`: exemplars of every series the query's selectors match.
async fn query_exemplars(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    respond(
        async {
            let query_text = params.get("query").unwrap_or("");
            let expression = promql_parser::parser::parse(query_text)
                .map_err(|error| ApiError::invalid_parameter("query", error))?;
            let start_ms = params.time_ms("start", MIN_TIME_MS)?;
            let end_ms = params.time_ms("end", MAX_TIME_MS)?;
            if end_ms < start_ms {
                return Err(ApiError::invalid_parameter("end", "end timestamp must not be before start time"));
            }
            let mut sets = Vec::new();
            selectors(&expression, &mut sets)?;
            let storage = state.storage()?.clone();
            let found = run_blocking(move || storage.exemplars(start_ms, end_ms, &sets)).await??;
            let data: Vec<Json> = found
                .iter()
                .map(|series| {
                    let exemplars: Vec<Json> = series
                        .exemplars
                        .iter()
                        .map(|exemplar| {
                            json!({
                                "labels": labels_json(&exemplar.labels),
                                "value": oxeye_promql::format_float(exemplar.value),
                                "timestamp": exemplar.timestamp_ms as f64 / 1000.0,
                            })
                        })
                        .collect();
                    json!({ "seriesLabels": labels_json(&series.series_labels), "exemplars": exemplars })
                })
                .collect();
            Ok(success(Json::Array(data), &[]))
        }
        .await,
    )
}

/// `/api/v1/format_query?query=`: the query pretty-printed, as Prometheus' `expr.Pretty`.
async fn format_query(params: Params) -> Response {
    match promql_parser::parser::parse(params.get("query").unwrap_or("")) {
        Ok(expression) => success(Json::String(expression.prettify()), &[]),
        Err(error) => ApiError::invalid_parameter("query", error).into_response(),
    }
}

/// `/api/v1/parse_query?query=`: the syntax tree as JSON, in the node shape of Prometheus' `translateAST`
/// (`aggregation`, `binaryExpr`, `vectorSelector`...), as promql-parser serializes it.
async fn parse_query(params: Params) -> Response {
    match promql_parser::parser::parse(params.get("query").unwrap_or("")) {
        Ok(expression) => match serde_json::to_value(&expression) {
            Ok(tree) => success(tree, &[]),
            Err(error) => ApiError::internal(format!("cannot serialize the syntax tree: {error}")).into_response(),
        },
        Err(error) => ApiError::invalid_parameter("query", error).into_response(),
    }
}

/// `/api/v1/status/runtimeinfo`, with Prometheus' keys; Go-only fields report oxeye's nearest equivalent.
async fn runtime_info(State(state): State<Arc<ServerState>>) -> Response {
    let start_time =
        chrono::DateTime::<chrono::Utc>::from(state.started_at).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:").and_then(|count| count.trim().parse::<u64>().ok()))
        })
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(1);
    success(
        json!({
            "startTime": start_time,
            "CWD": std::env::current_dir().map(|path| path.display().to_string()).unwrap_or_default(),
            "reloadConfigSuccess": true,
            "lastConfigTime": start_time,
            "corruptionCount": 0,
            "goroutineCount": threads,
            "GOMAXPROCS": cores,
            "GOMEMLIMIT": 0,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": state.options.storage_retention,
        }),
        &[],
    )
}

/// `/api/v1/status/flags`: the effective settings, keyed by Prometheus' flag names where one exists.
async fn flags(State(state): State<Arc<ServerState>>) -> Response {
    let flags: serde_json::Map<String, Json> =
        state.options.flags.iter().map(|(name, value)| (name.clone(), Json::String(value.clone()))).collect();
    success(Json::Object(flags), &[])
}

/// `/api/v1/status/config`: the effective configuration as YAML.
async fn config(State(state): State<Arc<ServerState>>) -> Response {
    success(json!({ "yaml": state.options.config_yaml }), &[])
}

/// `/api/v1/status/tsdb`: head statistics and the top-10 cardinality lists, with Prometheus' keys.
async fn tsdb_status(State(state): State<Arc<ServerState>>, params: Params) -> Response {
    respond(
        async {
            let limit = params.limit("limit")?.unwrap_or(10);
            let storage = state.storage()?.clone();
            let all_series = run_blocking(move || {
                storage.series(
                    MIN_TIME_MS,
                    MAX_TIME_MS,
                    &[Matcher::new(MatchOp::Regex, "__name__", ".+").map_err(|error| StorageError::InvalidLabels {
                        series: String::new(),
                        reason: error.to_string(),
                    })?],
                )
            })
            .await??;
            let mut by_metric: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
            let mut values_by_name: std::collections::HashMap<&str, std::collections::HashSet<&str>> =
                std::collections::HashMap::new();
            let mut bytes_by_name: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
            let mut by_pair: std::collections::HashMap<(&str, &str), u64> = std::collections::HashMap::new();
            for labels in &all_series {
                *by_metric.entry(labels.metric_name().unwrap_or("")).or_default() += 1;
                for label in labels {
                    if values_by_name.entry(&label.name).or_default().insert(&label.value) {
                        *bytes_by_name.entry(&label.name).or_default() += label.value.len() as u64;
                    }
                    *by_pair.entry((&label.name, &label.value)).or_default() += 1;
                }
            }
            fn top(mut entries: Vec<(String, u64)>, limit: usize) -> Json {
                entries.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.cmp(&right.0)));
                entries.truncate(limit);
                Json::Array(entries.into_iter().map(|(name, value)| json!({ "name": name, "value": value })).collect())
            }
            let label_pairs: usize = values_by_name.values().map(std::collections::HashSet::len).sum();
            Ok(success(
                json!({
                    "headStats": { "numSeries": all_series.len(), "numLabelPairs": label_pairs },
                    "seriesCountByMetricName":
                        top(by_metric.into_iter().map(|(name, count)| (name.to_string(), count)).collect(), limit),
                    "labelValueCountByLabelName": top(
                        values_by_name.iter().map(|(name, values)| (name.to_string(), values.len() as u64)).collect(),
                        limit,
                    ),
                    "memoryInBytesByLabelName":
                        top(bytes_by_name.into_iter().map(|(name, bytes)| (name.to_string(), bytes)).collect(), limit),
                    "seriesCountByLabelValuePair": top(
                        by_pair.into_iter().map(|((name, value), count)| (format!("{name}={value}"), count)).collect(),
                        limit,
                    ),
                }),
                &[],
            ))
        }
        .await,
    )
}

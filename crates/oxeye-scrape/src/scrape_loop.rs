//! One scrape target's loop: wait for the next tick, fetch, parse, relabel, append, report, and keep
//! the previous scrape's series to write staleness markers.
//!
//! The HTTP fetch runs on the async runtime; parsing, appending and the blocking `commit()` run on a
//! blocking thread so a large body or a slow fsync never holds an executor thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oxeye_model::storage::{Appender, MetricsStorage, StorageError};
use oxeye_model::{Labels, LabelsBuilder, METRIC_NAME_LABEL, MetricMetadata, MetricType, STALE_NAN, Sample};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::ScrapeError;
use crate::exposition::{ExpositionFormat, ScrapedSample, parse};
use crate::relabel::{RelabelRule, relabel};
use crate::stats::StatsCounters;
use crate::target::{ScrapeTarget, TargetHealth};

/// OpenMetrics' limit on an exemplar's label characters; longer exemplars are dropped.
const EXEMPLAR_MAX_LABEL_CHARACTERS: usize = 128;

/// How a job authenticates its scrapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Authentication {
    None,
    Basic { username: String, password: Option<String>, password_file: Option<String> },
    Header { scheme: String, credentials: Option<String>, credentials_file: Option<String> },
}

/// Settings shared by every target of one scrape config.
#[derive(Debug)]
pub(crate) struct JobSettings {
    pub job_name: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    /// 0 means no limit, for this and the three label limits.
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub body_size_limit_bytes: Option<u64>,
    pub accept_header: String,
    pub fallback_format: ExpositionFormat,
    pub enable_compression: bool,
    pub metric_relabel_rules: Vec<RelabelRule>,
    pub authentication: Authentication,
}

/// Mutable status of a target, read by `targets()`.
#[derive(Debug, Clone)]
pub(crate) struct TargetState {
    pub health: TargetHealth,
    pub last_error: String,
    pub last_scrape_timestamp_ms: Option<i64>,
    pub last_scrape_duration_seconds: f64,
}

impl Default for TargetState {
    fn default() -> Self {
        TargetState {
            health: TargetHealth::Unknown,
            last_error: String::new(),
            last_scrape_timestamp_ms: None,
            last_scrape_duration_seconds: 0.0,
        }
    }
}

/// A target as the manager and its loop share it.
#[derive(Debug)]
pub(crate) struct TargetShared {
    pub target: ScrapeTarget,
    pub scrape_pool: String,
    pub global_url: String,
    pub state: Mutex<TargetState>,
}

/// Everything a target's loop needs.
pub(crate) struct LoopContext {
    pub storage: Arc<dyn MetricsStorage>,
    pub client: reqwest::Client,
    pub job: Arc<JobSettings>,
    pub target: Arc<TargetShared>,
    pub stats: Arc<StatsCounters>,
    pub start_offset: Duration,
}

/// What the manager tells a running loop through its watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoopCommand {
    /// Keep scraping (the initial value).
    Run,
    /// Stop and write stale markers for everything the last scrape wrote (target removed, shutdown).
    Stop,
    /// Stop without stale markers and return the memory to the loop replacing this one (the job's config
    /// changed but the target stays), as Prometheus does on reload.
    HandOver,
}

/// A scraped series as resolved when first seen: the labels it is stored under (target labels
/// attached, metric relabelling applied), so later scrapes skip that work.
#[derive(Debug)]
struct CachedSeries {
    /// The final labels and their [`Labels::stable_hash`]; `None` when metric relabelling drops it.
    resolved: Option<(Arc<Labels>, u64)>,
    /// The family type it was resolved under (it decides `le`/`quantile` normalisation).
    metric_type: MetricType,
    /// The scrape (by [`LoopMemory::scrape_count`]) that last contained it.
    last_seen_scrape: u64,
}

/// Series written by one scrape, by label hash: labels and whether they are tracked for staleness
/// (no explicit timestamp, or `track_timestamps_staleness`).
type SeriesSet = HashMap<u64, (Arc<Labels>, bool)>;

/// What a loop remembers between scrapes; handed to the next loop of the same target on reload.
#[derive(Debug, Default)]
pub(crate) struct LoopMemory {
    /// Resolved series by their text as written ([`ScrapedSample::series_text`]).
    series_cache: HashMap<String, CachedSeries>,
    /// Scrapes run so far; marks cache entries as seen.
    scrape_count: u64,
    /// Series of the previous scrape.
    previous_series: SeriesSet,
    /// Metadata last sent to the storage, per family, so unchanged metadata is not rewritten.
    metadata: HashMap<String, MetricMetadata>,
    /// The newest timestamp this loop wrote, so later markers never go backwards.
    last_timestamp_ms: Option<i64>,
}

/// A fetched body and its `Content-Type`.
struct FetchedBody {
    body: Vec<u8>,
    content_type: Option<String>,
}

/// Per-scrape numbers for the report series.
#[derive(Debug, Default, Clone, Copy)]
struct ScrapeCounts {
    samples_scraped: u64,
    samples_post_metric_relabeling: u64,
    series_added: u64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0)
}

/// Runs the target's loop until a command arrives (or the sender is dropped, which counts as
/// [`LoopCommand::Stop`]). On `Stop` it writes stale markers for everything the last scrape wrote; on
/// `HandOver` it returns its memory instead. `predecessor` is the loop this one replaces: its memory is
/// awaited first, so staleness tracking continues across a reload.
pub(crate) async fn run(
    context: Arc<LoopContext>,
    mut stop: watch::Receiver<LoopCommand>,
    predecessor: Option<JoinHandle<LoopMemory>>,
) -> LoopMemory {
    let mut memory = match predecessor {
        Some(handle) => {
            let mut inherited = handle.await.unwrap_or_default();
            // The cache holds labels resolved under the old job settings (target labels, relabel
            // rules); only the staleness state carries over.
            inherited.series_cache.clear();
            inherited
        }
        None => LoopMemory::default(),
    };
    let interval = Duration::from_millis(context.target.target.interval_ms.unsigned_abs().max(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + context.start_offset, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let timestamp_ms = match memory.last_timestamp_ms {
            Some(last) => now_ms().max(last + 1),
            None => now_ms(),
        };
        let fetched = tokio::select! {
            biased;
            _ = stop.changed() => break,
            fetched = fetch(&context) => fetched,
        };
        let duration = started.elapsed();
        let blocking_context = Arc::clone(&context);
        let joined = tokio::task::spawn_blocking(move || {
            let outcome = append_scrape(&blocking_context, fetched, timestamp_ms, duration, &mut memory);
            (memory, outcome)
        })
        .await;
        let outcome = match joined {
            Ok((returned_memory, outcome)) => {
                memory = returned_memory;
                outcome
            }
            Err(join_error) => {
                memory = LoopMemory { last_timestamp_ms: Some(timestamp_ms), ..LoopMemory::default() };
                Err(ScrapeError::Client { reason: format!("scrape task failed: {join_error}") })
            }
        };
        StatsCounters::add(&context.stats.scrapes_total, 1);
        let mut state = context.target.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last_scrape_timestamp_ms = Some(timestamp_ms);
        state.last_scrape_duration_seconds = duration.as_secs_f64();
        match outcome {
            Ok(()) => {
                state.health = TargetHealth::Up;
                state.last_error.clear();
            }
            Err(error) => {
                StatsCounters::add(&context.stats.scrapes_failed_total, 1);
                tracing::debug!(job = %context.job.job_name, url = %context.target.target.scrape_url, %error, "scrape failed");
                state.health = TargetHealth::Down;
                state.last_error = error.to_string();
            }
        }
    }
    if *stop.borrow() == LoopCommand::HandOver {
        return memory;
    }
    if memory.previous_series.is_empty() && memory.last_timestamp_ms.is_none() {
        return LoopMemory::default();
    }
    let blocking_context = Arc::clone(&context);
    let joined = tokio::task::spawn_blocking(move || end_of_run_staleness(&blocking_context, &memory)).await;
    if let Err(join_error) = joined {
        tracing::warn!(job = %context.job.job_name, %join_error, "writing end-of-run stale markers failed");
    }
    LoopMemory::default()
}

async fn fetch(context: &LoopContext) -> Result<FetchedBody, ScrapeError> {
    let timeout_ms = context.target.target.timeout_ms;
    let timeout = Duration::from_millis(timeout_ms.unsigned_abs());
    match tokio::time::timeout(timeout, fetch_without_timeout(context, timeout)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ScrapeError::Timeout { timeout_ms }),
    }
}

fn read_secret_file(path: &str) -> Result<String, ScrapeError> {
    std::fs::read_to_string(path)
        .map(|contents| contents.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|error| ScrapeError::CredentialsFile { path: path.to_string(), reason: error.to_string() })
}

async fn fetch_without_timeout(context: &LoopContext, timeout: Duration) -> Result<FetchedBody, ScrapeError> {
    let timeout_seconds = timeout.as_secs_f64();
    let mut request = context
        .client
        .get(context.target.target.scrape_url.clone())
        .header(reqwest::header::ACCEPT, context.job.accept_header.as_str())
        .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{timeout_seconds}"))
        .timeout(timeout);
    if !context.job.enable_compression {
        // reqwest asks for gzip unless the request names an encoding itself.
        request = request.header(reqwest::header::ACCEPT_ENCODING, "identity");
    }
    match &context.job.authentication {
        Authentication::None => {}
        Authentication::Basic { username, password, password_file } => {
            let password = match password_file {
                Some(path) => Some(read_secret_file(path)?),
                None => password.clone(),
            };
            request = request.basic_auth(username, password);
        }
        Authentication::Header { scheme, credentials, credentials_file } => {
            let credentials = match credentials_file {
                Some(path) => read_secret_file(path)?,
                None => credentials.clone().unwrap_or_default(),
            };
            request = request.header(reqwest::header::AUTHORIZATION, format!("{scheme} {credentials}"));
        }
    }
    let mut response = request.send().await.map_err(http_error)?;
    let status = response.status();
    if !status.is_success() {
        let status_text = match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        return Err(ScrapeError::HttpStatus { status: status_text });
    }
    let content_type =
        response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_string);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http_error)? {
        body.extend_from_slice(&chunk);
        if let Some(limit_bytes) = context.job.body_size_limit_bytes
            && body.len() as u64 > limit_bytes
        {
            return Err(ScrapeError::BodyTooLarge { limit_bytes });
        }
    }
    Ok(FetchedBody { body, content_type })
}

fn http_error(error: reqwest::Error) -> ScrapeError {
    // reqwest's Display omits the cause (e.g. "connection refused"); walk the chain.
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    ScrapeError::Http { reason }
}

/// What appending one scrape body produced.
#[derive(Default)]
struct ScrapeAccumulator {
    current_series: SeriesSet,
    counts: ScrapeCounts,
    metadata_changes: Vec<(String, MetricMetadata)>,
}

/// Appends one scrape (or its failure) and commits. Returns the scrape's error, if any.
fn append_scrape(
    context: &LoopContext,
    fetched: Result<FetchedBody, ScrapeError>,
    timestamp_ms: i64,
    duration: Duration,
    memory: &mut LoopMemory,
) -> Result<(), ScrapeError> {
    let storage = &*context.storage;
    memory.scrape_count += 1;
    let mut accumulator = ScrapeAccumulator::default();
    let body_result = fetched.and_then(|fetched| {
        let mut appender = storage.appender();
        match append_body(context, &mut *appender, &fetched, timestamp_ms, memory, &mut accumulator) {
            Ok(()) => Ok(appender),
            Err(error) => {
                appender.rollback();
                Err(error)
            }
        }
    });
    let (mut appender, scrape_error) = match body_result {
        Ok(appender) => (appender, None),
        Err(error) => {
            // Nothing of a failed scrape is kept: only stale markers for what the previous one wrote.
            accumulator = ScrapeAccumulator::default();
            (storage.appender(), Some(error))
        }
    };
    let counts = accumulator.counts;
    let mut stale_markers = 0u64;
    for (hash, (series, tracks_staleness)) in &memory.previous_series {
        if *tracks_staleness && !accumulator.current_series.contains_key(hash) {
            let marker = Sample { timestamp_ms, value: STALE_NAN };
            if appender.append(series, marker).is_ok() {
                stale_markers += 1;
            }
        }
    }
    let up = if scrape_error.is_none() { 1.0 } else { 0.0 };
    let report = [
        ("up", up),
        ("scrape_duration_seconds", duration.as_secs_f64()),
        ("scrape_samples_scraped", counts.samples_scraped as f64),
        ("scrape_samples_post_metric_relabeling", counts.samples_post_metric_relabeling as f64),
        ("scrape_series_added", counts.series_added as f64),
    ];
    for (name, value) in report {
        let labels = report_labels(&context.target.target.labels, name);
        if let Err(error) = appender.append(&labels, Sample { timestamp_ms, value }) {
            count_rejection(context, &error);
        }
    }
    let committed = appender.commit();
    memory.previous_series = accumulator.current_series;
    memory.last_timestamp_ms = Some(timestamp_ms);
    let summary = committed.map_err(ScrapeError::Storage)?;
    StatsCounters::add(&context.stats.samples_appended_total, summary.samples);
    StatsCounters::add(&context.stats.exemplars_appended_total, summary.exemplars);
    StatsCounters::add(&context.stats.stale_markers_total, stale_markers);
    StatsCounters::add(&context.stats.samples_scraped_total, counts.samples_scraped);
    memory.metadata.extend(accumulator.metadata_changes);
    if scrape_error.is_none() {
        // Forget series the target no longer exposes, so the cache follows the target's churn.
        let scrape_count = memory.scrape_count;
        memory.series_cache.retain(|_, cached| cached.last_seen_scrape == scrape_count);
    }
    match scrape_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Parses the body and appends its samples, exemplars and changed metadata.
fn append_body(
    context: &LoopContext,
    appender: &mut dyn Appender,
    fetched: &FetchedBody,
    timestamp_ms: i64,
    memory: &mut LoopMemory,
    accumulator: &mut ScrapeAccumulator,
) -> Result<(), ScrapeError> {
    let format = ExpositionFormat::from_content_type_or(fetched.content_type.as_deref(), context.job.fallback_format);
    let exposition = parse(&fetched.body, format)?;
    let job = &context.job;
    let scrape_count = memory.scrape_count;
    let counts = &mut accumulator.counts;
    for sample in &exposition.samples {
        counts.samples_scraped += 1;
        let Some((labels, labels_hash)) = resolve_series(context, &mut memory.series_cache, sample, scrape_count)?
        else {
            continue;
        };
        counts.samples_post_metric_relabeling += 1;
        let explicit_timestamp = if job.honor_timestamps { sample.timestamp_ms } else { None };
        let sample_timestamp_ms = explicit_timestamp.unwrap_or(timestamp_ms);
        match appender.append(&labels, Sample { timestamp_ms: sample_timestamp_ms, value: sample.value }) {
            Ok(()) => {}
            Err(error @ (StorageError::Unavailable(_) | StorageError::Io(_))) => {
                return Err(ScrapeError::Storage(error));
            }
            Err(error) => {
                count_rejection(context, &error);
                continue;
            }
        }
        if let Some(exemplar) = &sample.exemplar {
            let is_within_limit = exemplar.label_set_characters() <= EXEMPLAR_MAX_LABEL_CHARACTERS;
            let appended =
                is_within_limit && appender.append_exemplar(&labels, exemplar.to_exemplar(sample_timestamp_ms)).is_ok();
            if !appended {
                StatsCounters::add(&context.stats.exemplars_dropped_total, 1);
            }
        }
        if !memory.previous_series.contains_key(&labels_hash) && !accumulator.current_series.contains_key(&labels_hash)
        {
            counts.series_added += 1;
        }
        let tracks_staleness = explicit_timestamp.is_none() || job.track_timestamps_staleness;
        accumulator.current_series.insert(labels_hash, (labels, tracks_staleness));
    }
    if job.sample_limit > 0 && counts.samples_post_metric_relabeling > job.sample_limit {
        return Err(ScrapeError::SampleLimitExceeded {
            samples: counts.samples_post_metric_relabeling,
            limit: job.sample_limit,
        });
    }
    for family in &exposition.families {
        if memory.metadata.get(&family.name) != Some(&family.metadata) {
            appender.update_metadata(&family.name, family.metadata.clone());
            accumulator.metadata_changes.push((family.name.clone(), family.metadata.clone()));
        }
    }
    Ok(())
}

/// The stored labels of `sample` and their hash, from the cache or resolved (target labels, metric
/// relabelling, limits) and cached; `None` when metric relabelling drops the series.
fn resolve_series(
    context: &LoopContext,
    cache: &mut HashMap<String, CachedSeries>,
    sample: &ScrapedSample<'_>,
    scrape_count: u64,
) -> Result<Option<(Arc<Labels>, u64)>, ScrapeError> {
    if let Some(cached) = cache.get_mut(sample.series_text)
        && cached.metric_type == sample.metric_type
    {
        cached.last_seen_scrape = scrape_count;
        return Ok(cached.resolved.clone());
    }
    let job = &context.job;
    let resolved = match series_labels(sample, &context.target.target.labels, job) {
        None => None,
        Some(labels) => {
            if labels.metric_name().is_none() {
                return Err(ScrapeError::InvalidSample {
                    line_number: sample.line_number,
                    reason: "metric name missing after metric_relabel_configs".to_string(),
                });
            }
            check_label_limits(job, &labels, sample.line_number)?;
            let labels_hash = labels.stable_hash();
            Some((Arc::new(labels), labels_hash))
        }
    };
    cache.insert(
        sample.series_text.to_string(),
        CachedSeries { resolved: resolved.clone(), metric_type: sample.metric_type, last_seen_scrape: scrape_count },
    );
    Ok(resolved)
}

/// `label_limit`, `label_name_length_limit` and `label_value_length_limit`, with Prometheus' wording.
fn check_label_limits(job: &JobSettings, labels: &Labels, line_number: usize) -> Result<(), ScrapeError> {
    let metric_name: String = labels.metric_name().unwrap_or("").chars().take(50).collect();
    let invalid = |reason: String| ScrapeError::InvalidSample { line_number, reason };
    if job.label_limit > 0 && labels.len() as u64 > job.label_limit {
        return Err(invalid(format!(
            "label_limit exceeded (metric: {metric_name}, number of labels: {}, limit: {})",
            labels.len(),
            job.label_limit
        )));
    }
    if job.label_name_length_limit == 0 && job.label_value_length_limit == 0 {
        return Ok(());
    }
    for label in labels {
        if job.label_name_length_limit > 0 && label.name.len() as u64 > job.label_name_length_limit {
            return Err(invalid(format!(
                "label_name_length_limit exceeded (metric: {metric_name}, label name: {}, length: {}, limit: {})",
                label.name.chars().take(50).collect::<String>(),
                label.name.len(),
                job.label_name_length_limit
            )));
        }
        if job.label_value_length_limit > 0 && label.value.len() as u64 > job.label_value_length_limit {
            return Err(invalid(format!(
                "label_value_length_limit exceeded (metric: {metric_name}, label name: {}, value: {:?}, length: {}, limit: {})",
                label.name.chars().take(50).collect::<String>(),
                label.value.chars().take(50).collect::<String>(),
                label.value.len(),
                job.label_value_length_limit
            )));
        }
    }
    Ok(())
}

fn count_rejection(context: &LoopContext, error: &StorageError) {
    let counter = match error {
        StorageError::OutOfOrderSample { .. } => &context.stats.samples_out_of_order_total,
        StorageError::OutOfBounds { .. } => &context.stats.samples_out_of_bounds_total,
        StorageError::DuplicateSampleForTimestamp { .. } => &context.stats.samples_duplicate_timestamp_total,
        _ => &context.stats.samples_rejected_total,
    };
    StatsCounters::add(counter, 1);
}

/// The scraped sample's labels with the target labels attached (honouring `honor_labels`), then
/// `metric_relabel_configs`; `None` when relabelling dropped it.
fn series_labels(sample: &ScrapedSample<'_>, target_labels: &Labels, job: &JobSettings) -> Option<Labels> {
    let mut builder = LabelsBuilder::new();
    builder.set(METRIC_NAME_LABEL, sample.metric_name.as_ref());
    for (name, value) in &sample.labels {
        builder.set(name.as_ref(), value.as_ref());
    }
    attach_target_labels(&mut builder, target_labels, job.honor_labels);
    let labels = builder.build();
    if job.metric_relabel_rules.is_empty() {
        return Some(labels);
    }
    relabel(&labels, &job.metric_relabel_rules)
}

/// Prometheus' `mutateSampleLabels`: with `honor_labels` scraped values win; otherwise target labels
/// win and clashing scraped labels are kept as `exported_<name>` (prefixed again while taken).
fn attach_target_labels(builder: &mut LabelsBuilder, target_labels: &Labels, honor_labels: bool) {
    if honor_labels {
        for label in target_labels {
            if builder.get(&label.name).is_none() {
                builder.set(label.name.as_str(), label.value.as_str());
            }
        }
        return;
    }
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for label in target_labels {
        if let Some(existing) = builder.get(&label.name) {
            conflicts.push((label.name.clone(), existing.to_string()));
        }
        builder.set(label.name.as_str(), label.value.as_str());
    }
    conflicts.sort_by_key(|(name, _)| name.len());
    for (name, value) in conflicts {
        let mut exported_name = format!("exported_{name}");
        while builder.get(&exported_name).is_some() {
            exported_name = format!("exported_{exported_name}");
        }
        builder.set(exported_name, value);
    }
}

fn report_labels(target_labels: &Labels, metric_name: &str) -> Labels {
    let mut builder = target_labels.to_builder();
    builder.set(METRIC_NAME_LABEL, metric_name);
    builder.build()
}

/// Stale markers for every series of the last scrape and for the report series, when the target is
/// removed or the manager stops.
fn end_of_run_staleness(context: &LoopContext, memory: &LoopMemory) {
    let timestamp_ms = match memory.last_timestamp_ms {
        Some(last) => now_ms().max(last + 1),
        None => now_ms(),
    };
    let mut appender = context.storage.appender();
    let marker = Sample { timestamp_ms, value: STALE_NAN };
    let mut written = 0u64;
    let scraped = memory
        .previous_series
        .values()
        .filter(|(_, tracks_staleness)| *tracks_staleness)
        .map(|(series, _)| Labels::clone(series));
    let report = [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ]
    .into_iter()
    .map(|name| report_labels(&context.target.target.labels, name));
    for series in scraped.chain(report) {
        if appender.append(&series, marker).is_ok() {
            written += 1;
        }
    }
    match appender.commit() {
        Ok(summary) => {
            StatsCounters::add(&context.stats.samples_appended_total, summary.samples);
            StatsCounters::add(&context.stats.stale_markers_total, written);
        }
        Err(error) => tracing::warn!(job = %context.job.job_name, %error, "committing end-of-run stale markers failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicting_labels_become_exported_unless_honored() {
        let target_labels = Labels::from_pairs([("job", "django"), ("instance", "django:8000")]);
        let mut builder = LabelsBuilder::new();
        builder.set("__name__", "m").set("job", "scraped-job").set("exported_job", "older");
        attach_target_labels(&mut builder, &target_labels, false);
        let labels = builder.build();
        assert_eq!(labels.get("job"), Some("django"));
        assert_eq!(labels.get("exported_job"), Some("older"));
        assert_eq!(labels.get("exported_exported_job"), Some("scraped-job"));
        assert_eq!(labels.get("instance"), Some("django:8000"));

        let mut honored = LabelsBuilder::new();
        honored.set("__name__", "m").set("job", "scraped-job");
        attach_target_labels(&mut honored, &target_labels, true);
        let labels = honored.build();
        assert_eq!(labels.get("job"), Some("scraped-job"));
        assert_eq!(labels.get("instance"), Some("django:8000"));
        assert_eq!(labels.get("exported_job"), None);
    }
}

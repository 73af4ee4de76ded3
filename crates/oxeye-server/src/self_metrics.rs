//! oxeye's own metrics on `/metrics`, in the Prometheus text format 0.0.4, which oxeye scrapes into its
//! own storage by default.
//!
//! Families: `oxeye_build_info`, `process_*` (CPU seconds, resident memory bytes, start time),
//! `oxeye_ingest_requests_total{protocol,code}`, `oxeye_ingest_samples_total{protocol}`,
//! `oxeye_ingest_rejected_samples_total{protocol,reason}`, `oxeye_query_duration_seconds{kind}` (histogram),
//! plus what the storage adds (head series, WAL fsync latency...) and the scraper's counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::ServerState;

/// Upper bounds, in seconds, of the latency histograms' buckets.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A counter family keyed by its label values, for low-rate events (one increment per request).
#[derive(Debug, Default)]
pub struct CounterVec {
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterVec {
    /// Adds `amount` to the series with these label values (in the family's label-name order).
    pub fn add(&self, label_values: &[&str], amount: u64) {
        if let Ok(mut values) = self.values.lock() {
            let key: Vec<String> = label_values.iter().map(|value| (*value).to_string()).collect();
            *values.entry(key).or_insert(0) += amount;
        }
    }

    fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        self.values
            .lock()
            .map(|values| values.iter().map(|(key, value)| (key.clone(), *value)).collect())
            .unwrap_or_default()
    }
}

/// A histogram family keyed by label values, with [`LATENCY_BUCKETS_SECONDS`].
#[derive(Debug, Default)]
pub struct HistogramVec {
    values: Mutex<BTreeMap<Vec<String>, HistogramSnapshot>>,
}

/// Cumulative bucket counts, sum and count of one histogram series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, cumulative count)` in ascending bound order, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations, in seconds.
    pub sum: f64,
    /// Number of observations (the `+Inf` bucket).
    pub count: u64,
}

impl HistogramVec {
    /// Records one observation in seconds.
    pub fn observe(&self, label_values: &[&str], seconds: f64) {
        if let Ok(mut values) = self.values.lock() {
            let key: Vec<String> = label_values.iter().map(|value| (*value).to_string()).collect();
            let histogram = values.entry(key).or_insert_with(|| HistogramSnapshot {
                buckets: LATENCY_BUCKETS_SECONDS.iter().map(|bound| (*bound, 0)).collect(),
                sum: 0.0,
                count: 0,
            });
            for (bound, count) in &mut histogram.buckets {
                if seconds <= *bound {
                    *count += 1;
                }
            }
            histogram.sum += seconds;
            histogram.count += 1;
        }
    }

    fn snapshot(&self) -> Vec<(Vec<String>, HistogramSnapshot)> {
        self.values
            .lock()
            .map(|values| values.iter().map(|(key, value)| (key.clone(), value.clone())).collect())
            .unwrap_or_default()
    }
}

/// The server's own counters and histograms.
#[derive(Debug, Default)]
pub struct SelfMetrics {
    /// Write requests by `protocol` (`remote_write`, `otlp_http`, `otlp_grpc`) and status `code`.
    pub ingest_requests: CounterVec,
    /// Samples stored by `protocol`.
    pub ingest_samples: CounterVec,
    /// Samples refused by `protocol` and `reason` (`out_of_order`, `out_of_bounds`, `duplicate`, `invalid`).
    pub ingest_rejected_samples: CounterVec,
    /// Query latency by `kind` (`instant`, `range`).
    pub query_duration: HistogramVec,
}

/// Writes families in the text format 0.0.4, each with its `# HELP` and `# TYPE` lines.
#[derive(Debug, Default)]
pub struct MetricsWriter {
    out: String,
}

impl MetricsWriter {
    /// Starts a family.
    pub fn family(&mut self, name: &str, help: &str, metric_type: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {metric_type}");
    }

    /// Writes one sample line; `labels` are `(name, value)` pairs, values escaped here.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label_name, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let escaped = label_value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{label_name}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", oxeye_promql::format_float(value));
    }

    /// Writes a whole single-series family.
    pub fn single(&mut self, name: &str, help: &str, metric_type: &str, value: f64) {
        self.family(name, help, metric_type);
        self.sample(name, &[], value);
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of one histogram series (after [`Self::family`]).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &HistogramSnapshot) {
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        let bounds: Vec<String> =
            histogram.buckets.iter().map(|(bound, _)| oxeye_promql::format_float(*bound)).collect();
        for ((_, count), bound) in histogram.buckets.iter().zip(&bounds) {
            with_le.push(("le", bound));
            self.sample(&format!("{name}_bucket"), &with_le, *count as f64);
            with_le.pop();
        }
        with_le.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with_le, histogram.count as f64);
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
    }

    fn counter_vec(&mut self, name: &str, help: &str, label_names: &[&str], counter: &CounterVec) {
        self.family(name, help, "counter");
        for (values, count) in counter.snapshot() {
            let labels: Vec<(&str, &str)> =
                label_names.iter().copied().zip(values.iter().map(String::as_str)).collect();
            self.sample(name, &labels, count as f64);
        }
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Process CPU seconds and resident bytes from `/proc/self` (Linux); zeros elsewhere.
fn process_usage() -> (f64, f64) {
    let ticks_per_second = 100.0;
    let page_size = 4096.0;
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let after_name = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks_per_second)
        })
        .unwrap_or(0.0);
    let resident_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * page_size)
        .unwrap_or(0.0);
    (cpu_seconds, resident_bytes)
}

/// Renders every family of the server.
pub fn render(state: &ServerState) -> String {
    let mut writer = MetricsWriter::default();
    writer.family("oxeye_build_info", "oxeye's version; always 1.", "gauge");
    writer.sample("oxeye_build_info", &[("version", &state.options.version)], 1.0);
    let (cpu_seconds, resident_bytes) = process_usage();
    writer.single(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        "counter",
        cpu_seconds,
    );
    writer.single("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", resident_bytes);
    let start_seconds =
        state.started_at.duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs_f64()).unwrap_or(0.0);
    writer.single(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "gauge",
        start_seconds,
    );
    writer.single(
        "oxeye_ready",
        "1 once the storage has replayed its WAL and serves queries.",
        "gauge",
        if state.is_ready() { 1.0 } else { 0.0 },
    );
    let metrics = &state.metrics;
    writer.counter_vec(
        "oxeye_ingest_requests_total",
        "Write requests by protocol and HTTP status code.",
        &["protocol", "code"],
        &metrics.ingest_requests,
    );
    writer.counter_vec(
        "oxeye_ingest_samples_total",
        "Samples stored, by protocol.",
        &["protocol"],
        &metrics.ingest_samples,
    );
    writer.counter_vec(
        "oxeye_ingest_rejected_samples_total",
        "Samples refused, by protocol and reason.",
        &["protocol", "reason"],
        &metrics.ingest_rejected_samples,
    );
    writer.family("oxeye_query_duration_seconds", "PromQL query latency in seconds, by kind.", "histogram");
    for (values, histogram) in metrics.query_duration.snapshot() {
        let kind = values.first().map(String::as_str).unwrap_or("");
        writer.histogram("oxeye_query_duration_seconds", &[("kind", kind)], &histogram);
    }
    if let Some(storage_metrics) = state.storage_metrics.get() {
        storage_metrics(&mut writer);
    }
    for source in state.extra_metrics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter() {
        source(&mut writer);
    }
    crate::loki_api::write_redaction_metrics(&mut writer, state);
    if let Some(manager) = state.scrape_manager() {
        let stats = manager.stats();
        writer.single("oxeye_scrapes_total", "Scrapes attempted.", "counter", stats.scrapes_total as f64);
        writer.single(
            "oxeye_scrapes_failed_total",
            "Scrapes that failed.",
            "counter",
            stats.scrapes_failed_total as f64,
        );
        writer.single("oxeye_scrape_samples_total", "Samples scraped.", "counter", stats.samples_scraped_total as f64);
        writer.single(
            "oxeye_scrape_samples_appended_total",
            "Scraped samples stored.",
            "counter",
            stats.samples_appended_total as f64,
        );
        writer.single(
            "oxeye_scrape_samples_out_of_order_total",
            "Scraped samples skipped as out of order.",
            "counter",
            stats.samples_out_of_order_total as f64,
        );
    }
    writer.finish()
}

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new().route("/metrics", get(metrics_handler))
}

async fn metrics_handler(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&state))
}

//! The PromQL query benchmark: the same Django-fleet history loaded into oxeye and Prometheus, then ten
//! dashboard queries timed against each, instant and as 1h and 24h ranges at 15 s and 60 s steps.
//!
//! ```text
//! oxeye-bench generate --series 10000 --rounds 5760 --out bench-out/query/workload.bin   # 24 h at 15 s
//! taskset -c 1 oxeye-bench query run --server oxeye --binary target/release/oxeye --server-cpus 0 \
//!     --workload bench-out/query/workload.bin --work-dir bench-out/query/oxeye --out bench-out/query/oxeye.json
//! oxeye-bench query report bench-out/query/oxeye.json bench-out/query/prometheus.json
//! # or load both from the same text files first, then query each with --reuse-data:
//! oxeye-bench query load --workload bench-out/query/workload.bin --out bench-out/query/load.json \
//!     --server oxeye=target/release/oxeye=bench-out/query/oxeye=19190 \
//!     --server prometheus=/usr/bin/prometheus=bench-out/query/prometheus=19191
//! ```
//!
//! `run` loads the workload into a fresh data directory (block duration 2 h, both servers) by backfilling:
//! the samples written as OpenMetrics text, one file per aligned 2 h range, each turned into a block by
//! `oxeye tsdb create-blocks-from openmetrics` or `promtool tsdb create-blocks-from openmetrics` (see
//! [`crate::openmetrics`]). `load` does the same for several servers from the same text files, each file
//! deleted once all have loaded it, and `run --reuse-data` then queries each. Either way both servers hold
//! the same samples in the same state, 2 h blocks on disk and an empty head, and no load step holds the
//! workload in memory. Then it starts the server on that data. Then, for
//! each query and each shape, it sends one untimed warm-up request and `--runs` timed ones, one at a time,
//! and records:
//! - the wall time of each request, from sending to the last byte of the answer (the median is reported);
//! - the server's peak resident memory during that query's requests: before the first of them the
//!   process' high-water mark is reset by writing `5` to `/proc/<pid>/clear_refs`, and `VmHWM` is read
//!   after the last one;
//! - the number of series and the sum of all returned values, so two servers' answers can be compared.
//!
//! Queries are evaluated at the end of the workload (`end` = the last round's time rounded up to the step):
//! instant at that time, ranges over the hour or the 24 hours before it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::openmetrics::{self, BackfillReport, BackfillTarget};
use crate::procfs::{self, Memory};
use crate::send::SendReport;
use crate::server::{ServerKind, ServerSpec};
use crate::workload::{self, WorkloadHeader};

/// Block duration both servers run with: Prometheus' default minimum block duration, 2 hours.
const QUERY_BENCH_BLOCK_DURATION_MS: i64 = 2 * 3600 * 1000;

/// The dashboard queries, named for the table: what the seeds' Grafana dashboards and alert rules ask.
pub const DASHBOARD_QUERIES: &[(&str, &str)] = &[
    ("rate by view", "sum by (view) (rate(django_http_requests_total_by_view_transport_method_total[5m]))"),
    ("rate by status", "sum by (status) (rate(django_http_responses_total_by_status_view_method_total[5m]))"),
    (
        "error ratio",
        "sum by (job) (rate(django_http_responses_total_by_status_view_method_total{status=~\"5..\"}[5m])) / sum by (job) (rate(django_http_responses_total_by_status_view_method_total[5m]))",
    ),
    (
        "p50 by view",
        "histogram_quantile(0.5, sum by (view, le) (rate(django_http_requests_latency_seconds_by_view_method_bucket[5m])))",
    ),
    (
        "p95 by view",
        "histogram_quantile(0.95, sum by (view, le) (rate(django_http_requests_latency_seconds_by_view_method_bucket[5m])))",
    ),
    (
        "p99 by view",
        "histogram_quantile(0.99, sum by (view, le) (rate(django_http_requests_latency_seconds_by_view_method_bucket[5m])))",
    ),
    (
        "topk endpoints",
        "topk(10, sum by (view, method) (rate(django_http_responses_total_by_status_view_method_total[5m])))",
    ),
    ("increase 24h", "sum by (job, method) (increase(django_http_requests_total_by_method_total[24h]))"),
    (
        "subquery max 1h",
        "max_over_time(sum by (job) (rate(django_http_responses_total_by_status_view_method_total[5m]))[1h:1m])",
    ),
    (
        "group_left join",
        "sum by (instance, job) (rate(process_cpu_seconds_total[5m])) * on (instance, job) group_left (version) python_info",
    ),
];

/// The query shapes: instant, or a range of `range_ms` at `step_ms`.
pub const SHAPES: &[(&str, i64, i64)] = &[
    ("instant", 0, 0),
    ("1h/15s", 3_600_000, 15_000),
    ("1h/60s", 3_600_000, 60_000),
    ("24h/15s", 86_400_000, 15_000),
    ("24h/60s", 86_400_000, 60_000),
];

/// `oxeye-bench query ...`.
#[derive(Debug, clap::Subcommand)]
pub enum QueryCommand {
    /// Loads the workload into one server, restarts it and times every dashboard query.
    Run(Box<RunArgs>),
    /// Backfills several servers' data directories from the same OpenMetrics text files (one per 2 h
    /// range, deleted once every server has loaded it), for `query run --reuse-data`.
    Load(LoadArgs),
    /// Prints the side-by-side table of two or more `query run` results.
    Report {
        /// Result files; the first is the one the ratio columns divide (oxeye), the second the peer.
        files: Vec<PathBuf>,
    },
}

/// Options of `query run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Which server (oxeye or prometheus).
    #[arg(long, value_enum)]
    server: ServerKind,
    /// The server's executable.
    #[arg(long)]
    binary: PathBuf,
    /// `taskset -c` list for the server, e.g. 0.
    #[arg(long)]
    server_cpus: Option<String>,
    /// Loopback port for the server.
    #[arg(long, default_value_t = 19_190)]
    port: u16,
    /// The workload file.
    #[arg(long)]
    workload: PathBuf,
    /// Directory for the server's data, config and log.
    #[arg(long)]
    work_dir: PathBuf,
    /// Concurrent connections while loading.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Timed runs per query and shape (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Keep the data directory of an earlier run and skip the load.
    #[arg(long)]
    reuse_data: bool,
    /// Only the queries whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Only the shapes (see [`SHAPES`]: `instant`, `1h/15s`, `24h/60s`, ...) whose name contains this.
    #[arg(long)]
    only_shape: Option<String>,
    /// Where to write the JSON result.
    #[arg(long)]
    out: PathBuf,
    /// Column name in the table (default: the server's name).
    #[arg(long)]
    label: Option<String>,
    /// Extra environment for the server, KEY=VALUE; repeatable.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Extra command-line argument for the server, e.g. `--query.max-samples=1000000000` for Prometheus;
    /// repeatable. Recorded in the result.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// `promtool` for the Prometheus backfill (default: `promtool` beside `--binary`, else from `PATH`).
    #[arg(long)]
    promtool: Option<PathBuf>,
}

/// Options of `query load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The workload file.
    #[arg(long)]
    workload: PathBuf,
    /// A server to load, `KIND=BINARY=WORK_DIR=PORT`, e.g. `oxeye=target/release/oxeye=bench-out/query/oxeye-100000-1=19190`;
    /// repeatable. The work directory and port are what `query run` gets for that server.
    #[arg(long = "server", value_name = "KIND=BINARY=WORK_DIR=PORT", required = true)]
    servers: Vec<String>,
    /// `promtool` for Prometheus (default: `promtool` beside its binary, else from `PATH`).
    #[arg(long)]
    promtool: Option<PathBuf>,
    /// Directory for the text files (default: the first server's work directory).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
    /// Where to write the JSON [`BackfillReport`].
    #[arg(long)]
    out: PathBuf,
}

/// One query in one shape on one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryMeasurement {
    /// The query's name in [`DASHBOARD_QUERIES`].
    pub name: String,
    /// The PromQL text.
    pub query: String,
    /// The shape's name in [`SHAPES`].
    pub shape: String,
    /// Wall milliseconds of each timed run.
    pub runs_ms: Vec<f64>,
    /// Median of `runs_ms`; NaN (written as JSON `null`) when every run failed.
    #[serde(deserialize_with = "nan_when_null")]
    pub median_ms: f64,
    /// The server's `VmHWM` after the warm-up and timed runs, its high-water mark reset before them, bytes.
    pub peak_rss_bytes: u64,
    /// Series in the answer.
    pub series: usize,
    /// Points (samples) in the answer.
    pub points: usize,
    /// Sum of all finite values in the answer, to compare servers' answers.
    pub value_sum: f64,
    /// The first error, when a request failed.
    pub error: Option<String>,
}

/// Reads a float that `serde_json` wrote as `null` because it was NaN.
fn nan_when_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// What `query run` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryRunResult {
    /// Column name.
    pub label: String,
    /// Which server.
    pub server: ServerKind,
    /// First line of `--version`.
    pub version: String,
    /// `/proc/loadavg` (1, 5, 15 minutes) before the load and before the queries.
    pub load_average: Vec<String>,
    /// Series, rounds and samples of the workload.
    pub workload: String,
    /// Extra command-line arguments the server ran with (`--server-arg`).
    #[serde(default)]
    pub server_args: Vec<String>,
    /// The load over remote_write (results of earlier versions, which loaded oxeye that way).
    #[serde(default)]
    pub ingest: Option<SendReport>,
    /// The load by backfill (absent with `--reuse-data`; see `query load`).
    #[serde(default)]
    pub backfill: Option<BackfillReport>,
    /// Memory after the restart, before the first query.
    pub memory_before_queries: Memory,
    /// The evaluation end time, milliseconds.
    pub end_ms: i64,
    /// Every query and shape.
    pub queries: Vec<QueryMeasurement>,
    /// Memory after the last query (its `peak_rss_bytes` is the last query's peak).
    pub memory_after_queries: Memory,
}

/// Runs a `query` subcommand.
///
/// # Errors
/// When a server cannot be run, the workload cannot be read, or a result file cannot be written or read.
pub fn main(command: QueryCommand) -> anyhow::Result<()> {
    match command {
        QueryCommand::Run(args) => {
            let out = args.out.clone();
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(run(*args))?;
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
            print!("{}", table(std::slice::from_ref(&result)));
            Ok(())
        }
        QueryCommand::Load(args) => {
            let report = load(&args)?;
            if let Some(parent) = args.out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
            Ok(())
        }
        QueryCommand::Report { files } => {
            let mut results = Vec::new();
            for file in files {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                results.push(
                    serde_json::from_str::<QueryRunResult>(&text)
                        .with_context(|| format!("parsing {}", file.display()))?,
                );
            }
            print!("{}", table(&results));
            Ok(())
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn version_of(binary: &std::path::Path) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .map(|output| {
            let text = if output.stdout.is_empty() { output.stderr } else { output.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

async fn run(args: RunArgs) -> anyhow::Result<QueryRunResult> {
    if args.server == ServerKind::VictoriaMetrics {
        bail!("the query benchmark runs oxeye and prometheus");
    }
    let mut env = Vec::new();
    for pair in &args.server_env {
        let Some((key, value)) = pair.split_once('=') else { bail!("--server-env {pair}: expected KEY=VALUE") };
        env.push((key.to_string(), value.to_string()));
    }
    let header = workload::read_header(&args.workload)?;
    let spec = ServerSpec {
        kind: args.server,
        binary: args.binary.clone(),
        cpu_list: args.server_cpus.clone(),
        port: args.port,
        work_dir: std::path::absolute(&args.work_dir)?,
        block_duration_ms: QUERY_BENCH_BLOCK_DURATION_MS,
        env,
        args: args.server_args.clone(),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(600))
        .build()
        .context("building the HTTP client")?;
    let probe_client =
        reqwest::Client::builder().pool_max_idle_per_host(0).build().context("building the probe client")?;
    let start_timeout = Duration::from_secs(1800);
    let name = args.server.name();
    let mut load_averages = vec![load_average()];

    let mut backfill = None;
    if !args.reuse_data {
        spec.prepare()?;
        let target = backfill_target(&spec, args.promtool.as_deref())?;
        let report = run_backfill(&args.workload, &header, std::slice::from_ref(&target), &spec.work_dir)?;
        backfill = Some(report);
    }

    let server = spec.start(&probe_client, start_timeout).await?;
    load_averages.push(load_average());
    let memory_before_queries = procfs::memory(server.pid)?;
    let end_ms = evaluation_end_ms(&header);
    let mut queries = Vec::new();
    for (query_name, query) in DASHBOARD_QUERIES {
        if args.only.as_deref().is_some_and(|only| !query_name.contains(only)) {
            continue;
        }
        for (shape, range_ms, step_ms) in SHAPES {
            if args.only_shape.as_deref().is_some_and(|only| !shape.contains(only)) {
                continue;
            }
            let measurement =
                measure(&client, &spec, server.pid, query_name, query, shape, *range_ms, *step_ms, end_ms, args.runs)
                    .await;
            eprintln!(
                "[{name}] {query_name:16} {shape:8} median {:9.1} ms  peak RSS {:7.1} MiB  {} series{}",
                measurement.median_ms,
                measurement.peak_rss_bytes as f64 / 1048576.0,
                measurement.series,
                measurement.error.as_deref().map(|error| format!("  ERROR {error}")).unwrap_or_default()
            );
            queries.push(measurement);
        }
    }
    let memory_after_queries = procfs::memory(server.pid)?;
    server.stop_gracefully(Duration::from_secs(600)).await?;
    Ok(QueryRunResult {
        label: args.label.clone().unwrap_or_else(|| name.to_string()),
        server: args.server,
        version: version_of(&args.binary),
        load_average: load_averages,
        workload: format!(
            "{} series x {} rounds at {} s = {} samples",
            header.active_series,
            header.rounds,
            header.scrape_interval_ms / 1000,
            header.total_samples
        ),
        server_args: args.server_args.clone(),
        ingest: None,
        backfill,
        memory_before_queries,
        end_ms,
        queries,
        memory_after_queries,
    })
}

/// `query load`: prepares every server's work directory and backfills them all from the same text files.
fn load(args: &LoadArgs) -> anyhow::Result<BackfillReport> {
    let header = workload::read_header(&args.workload)?;
    let mut targets = Vec::new();
    let mut scratch = args.scratch_dir.clone();
    for server in &args.servers {
        let parts: Vec<&str> = server.splitn(4, '=').collect();
        let [kind, binary, work_dir, port] = parts[..] else {
            bail!("--server {server}: expected KIND=BINARY=WORK_DIR=PORT");
        };
        let kind = <ServerKind as clap::ValueEnum>::from_str(kind, true)
            .map_err(|error| anyhow::anyhow!("--server {server}: {error}"))?;
        let spec = ServerSpec {
            kind,
            binary: PathBuf::from(binary),
            cpu_list: None,
            port: port.parse().with_context(|| format!("--server {server}: port"))?,
            work_dir: std::path::absolute(work_dir)?,
            block_duration_ms: QUERY_BENCH_BLOCK_DURATION_MS,
            env: Vec::new(),
            args: Vec::new(),
        };
        spec.prepare()?;
        targets.push(backfill_target(&spec, args.promtool.as_deref())?);
        scratch.get_or_insert_with(|| spec.work_dir.clone());
    }
    let scratch = scratch.context("no --server given")?;
    run_backfill(&args.workload, &header, &targets, &scratch)
}

/// What loads `spec`'s data directory: `promtool` for Prometheus, the server binary itself for oxeye.
fn backfill_target(spec: &ServerSpec, promtool: Option<&std::path::Path>) -> anyhow::Result<BackfillTarget> {
    let tool = match spec.kind {
        ServerKind::Prometheus => promtool.map_or_else(|| promtool_beside(&spec.binary), std::path::Path::to_path_buf),
        ServerKind::Oxeye => spec.binary.clone(),
        ServerKind::VictoriaMetrics => bail!("the query benchmark runs oxeye and prometheus"),
    };
    Ok(BackfillTarget { kind: spec.kind, tool, data_dir: spec.data_dir() })
}

/// Backfills `targets` from the workload, logging what it did.
fn run_backfill(
    workload_path: &std::path::Path,
    header: &WorkloadHeader,
    targets: &[BackfillTarget],
    scratch_dir: &std::path::Path,
) -> anyhow::Result<BackfillReport> {
    let names: Vec<&str> = targets.iter().map(|target| target.kind.name()).collect();
    eprintln!(
        "[load] backfilling {} samples into {} (load average {})",
        header.total_samples,
        names.join(", "),
        load_average()
    );
    let report = openmetrics::backfill(workload_path, targets, scratch_dir)?;
    eprintln!(
        "[load] backfilled: {} files, {:.0} MiB of text, {:.1} s writing, promtool {:.1} s ({:.1} CPU-s), \
         oxeye {:.1} s ({:.1} CPU-s, peak RSS {:.0} MiB), {:.1} s in all",
        report.files,
        report.text_bytes as f64 / 1048576.0,
        report.write_seconds,
        report.promtool_seconds,
        report.promtool_cpu_seconds,
        report.oxeye_seconds,
        report.oxeye_cpu_seconds,
        report.oxeye_peak_rss_bytes as f64 / 1048576.0,
        report.total_seconds
    );
    Ok(report)
}

/// `promtool` in the directory of `prometheus` (Debian installs both in /usr/bin), else `promtool` from `PATH`.
fn promtool_beside(prometheus: &std::path::Path) -> PathBuf {
    let beside = prometheus.with_file_name("promtool");
    if crate::server::is_executable(&beside) { beside } else { PathBuf::from("promtool") }
}

/// The time the queries end at: just after the last round (every target's offset is below one interval),
/// rounded up to a whole minute so 15 s and 60 s grids share it.
fn evaluation_end_ms(header: &WorkloadHeader) -> i64 {
    let last_round_ms = header.start_ms + i64::from(header.rounds.saturating_sub(1)) * header.scrape_interval_ms;
    let after = last_round_ms + header.scrape_interval_ms;
    after.div_euclid(60_000) * 60_000 + if after % 60_000 == 0 { 0 } else { 60_000 }
}

/// Resets the high-water mark of `pid`'s resident memory (`VmHWM`) to its current size.
fn reset_peak_rss(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("writing /proc/{pid}/clear_refs"))
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &reqwest::Client,
    spec: &ServerSpec,
    pid: u32,
    name: &str,
    query: &str,
    shape: &str,
    range_ms: i64,
    step_ms: i64,
    end_ms: i64,
    runs: usize,
) -> QueryMeasurement {
    let mut measurement = QueryMeasurement {
        name: name.to_string(),
        query: query.to_string(),
        shape: shape.to_string(),
        runs_ms: Vec::new(),
        median_ms: f64::NAN,
        peak_rss_bytes: 0,
        series: 0,
        points: 0,
        value_sum: 0.0,
        error: None,
    };
    if let Err(error) = reset_peak_rss(pid) {
        measurement.error = Some(format!("{error:#}"));
    }
    let seconds = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let (url, form) = if range_ms == 0 {
        (format!("{}/api/v1/query", spec.base_url()), vec![("query", query.to_string()), ("time", seconds(end_ms))])
    } else {
        (
            format!("{}/api/v1/query_range", spec.base_url()),
            vec![
                ("query", query.to_string()),
                ("start", seconds(end_ms - range_ms)),
                ("end", seconds(end_ms)),
                ("step", seconds(step_ms)),
            ],
        )
    };
    let form_body =
        form.iter().map(|(key, value)| format!("{key}={}", url_encode(value))).collect::<Vec<_>>().join("&");
    for run in 0..=runs {
        let started = Instant::now();
        let answer = async {
            let response = client
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form_body.clone())
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            anyhow::Ok((status, body))
        }
        .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok((status, body)) if status.is_success() => {
                if run == 0 {
                    match summarize(&body) {
                        Ok((series, points, sum)) => {
                            measurement.series = series;
                            measurement.points = points;
                            measurement.value_sum = sum;
                        }
                        Err(error) => measurement.error = Some(format!("{error:#}")),
                    }
                } else {
                    measurement.runs_ms.push(elapsed_ms);
                }
            }
            Ok((status, body)) => {
                let text = String::from_utf8_lossy(&body);
                measurement.error = Some(format!("HTTP {status}: {}", text.chars().take(300).collect::<String>()));
                break;
            }
            Err(error) => {
                measurement.error = Some(format!("{error:#}"));
                break;
            }
        }
    }
    measurement.median_ms = median(&measurement.runs_ms);
    measurement.peak_rss_bytes = procfs::memory(pid).map(|memory| memory.peak_rss_bytes).unwrap_or(0);
    measurement
}

/// Percent-encodes a form value (`application/x-www-form-urlencoded`).
fn url_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 }
}

/// Series, points and the sum of finite values of a Prometheus API query answer.
fn summarize(body: &[u8]) -> anyhow::Result<(usize, usize, f64)> {
    let json: serde_json::Value = serde_json::from_slice(body).context("answer is not JSON")?;
    let data = &json["data"];
    let parse = |value: &serde_json::Value| value.as_str().and_then(|text| text.parse::<f64>().ok());
    let mut points = 0;
    let mut sum = 0.0;
    let mut add = |value: Option<f64>| {
        points += 1;
        if let Some(value) = value.filter(|value| value.is_finite()) {
            sum += value;
        }
    };
    let result = data["result"].as_array().context("answer has no data.result array")?;
    for series in result {
        if let Some(values) = series["values"].as_array() {
            for pair in values {
                add(parse(&pair[1]));
            }
        } else {
            add(parse(&series["value"][1]));
        }
    }
    Ok((result.len(), points, sum))
}

/// The side-by-side table: per query and shape, each result's median and peak RSS, and the first
/// result's ratio to the second.
pub fn table(results: &[QueryRunResult]) -> String {
    let mut output = String::new();
    let labels: Vec<&str> = results.iter().map(|result| result.label.as_str()).collect();
    for result in results {
        let args =
            if result.server_args.is_empty() { String::new() } else { format!(" {}", result.server_args.join(" ")) };
        output.push_str(&format!(
            "- {}: {}{args}; {}; load average {}; RSS before queries {:.0} MiB\n",
            result.label,
            result.version,
            result.workload,
            result.load_average.join(" / "),
            result.memory_before_queries.rss_bytes as f64 / 1048576.0
        ));
    }
    output.push('\n');
    output.push_str("| query | shape |");
    for label in &labels {
        output.push_str(&format!(" {label} ms |"));
    }
    if results.len() >= 2 {
        output.push_str(" latency ratio |");
    }
    for label in &labels {
        output.push_str(&format!(" {label} peak MiB |"));
    }
    if results.len() >= 2 {
        output.push_str(" memory ratio | same answer |");
    }
    output.push('\n');
    let columns = 2 + labels.len() * 2 + if results.len() >= 2 { 3 } else { 0 };
    output.push('|');
    for column in 0..columns {
        output.push_str(if column < 2 { "---|" } else { "---:|" });
    }
    output.push('\n');
    let Some(first) = results.first() else { return output };
    for measurement in &first.queries {
        // Matched by query and shape, so a result that timed only some shapes (`--only-shape`) lines up.
        let row: Vec<Option<&QueryMeasurement>> = results
            .iter()
            .map(|result| {
                result.queries.iter().find(|other| other.name == measurement.name && other.shape == measurement.shape)
            })
            .collect();
        output.push_str(&format!("| {} | {} |", measurement.name, measurement.shape));
        // Ratios and the answer check need both servers' answers: a failed query has none.
        let both_answered = match (row.first(), row.get(1)) {
            (Some(Some(left)), Some(Some(right))) if left.error.is_none() && right.error.is_none() => {
                Some((*left, *right))
            }
            _ => None,
        };
        for cell in &row {
            match cell {
                Some(cell) if cell.error.is_none() => output.push_str(&format!(" {:.1} |", cell.median_ms)),
                Some(_) => output.push_str(" error |"),
                None => output.push_str(" — |"),
            }
        }
        let ratio = |left: f64, right: f64| if right > 0.0 { format!("{:.2}x", left / right) } else { "—".into() };
        if let Some((left, right)) = both_answered {
            output.push_str(&format!(" {} |", ratio(left.median_ms, right.median_ms)));
        } else if results.len() >= 2 {
            output.push_str(" — |");
        }
        for cell in &row {
            match cell {
                Some(cell) => output.push_str(&format!(" {:.0} |", cell.peak_rss_bytes as f64 / 1048576.0)),
                None => output.push_str(" — |"),
            }
        }
        if let Some((left, right)) = both_answered {
            let same = left.series == right.series
                && left.points == right.points
                && (left.value_sum - right.value_sum).abs() <= 1e-6 * left.value_sum.abs().max(1.0);
            output.push_str(&format!(
                " {} | {} |",
                ratio(left.peak_rss_bytes as f64, right.peak_rss_bytes as f64),
                if same { "yes".to_string() } else { format!("no ({}/{} series)", left.series, right.series) }
            ));
        } else if results.len() >= 2 {
            output.push_str(" — | — |");
        }
        output.push('\n');
    }
    output
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_summarized_for_vectors_and_matrices() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2.5"]},{"metric":{"a":"b"},"value":[1,"NaN"]}]}}"#;
        assert_eq!(summarize(vector).unwrap(), (2, 2, 2.5));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"3"]]}]}}"#;
        assert_eq!(summarize(matrix).unwrap(), (1, 2, 4.0));
    }

    #[test]
    fn a_query_that_failed_every_run_reads_back() {
        let failed = QueryMeasurement {
            name: "rate by status".into(),
            query: "sum by (status) (rate(x[5m]))".into(),
            shape: "24h/15s".into(),
            runs_ms: Vec::new(),
            median_ms: f64::NAN,
            peak_rss_bytes: 1,
            series: 0,
            points: 0,
            value_sum: 0.0,
            error: Some("HTTP 422 Unprocessable Entity".into()),
        };
        let text = serde_json::to_string(&failed).unwrap();
        assert!(text.contains(r#""median_ms":null"#), "{text}");
        let read: QueryMeasurement = serde_json::from_str(&text).unwrap();
        assert!(read.median_ms.is_nan());
        assert_eq!(read.error, failed.error);
    }

    #[test]
    fn a_result_with_some_shapes_lines_up_by_query_and_shape() {
        let measurement = |shape: &str, median_ms: f64| QueryMeasurement {
            name: "rate by view".into(),
            query: "sum by (view) (rate(x[5m]))".into(),
            shape: shape.into(),
            runs_ms: vec![median_ms],
            median_ms,
            peak_rss_bytes: 1 << 20,
            series: 3,
            points: 3,
            value_sum: 1.5,
            error: None,
        };
        let result = |label: &str, queries: Vec<QueryMeasurement>| QueryRunResult {
            label: label.into(),
            server: ServerKind::Oxeye,
            version: String::new(),
            load_average: Vec::new(),
            workload: String::new(),
            server_args: Vec::new(),
            ingest: None,
            backfill: None,
            memory_before_queries: Memory::default(),
            end_ms: 0,
            queries,
            memory_after_queries: Memory::default(),
        };
        let all = result("oxeye", vec![measurement("instant", 1.0), measurement("24h/15s", 10.0)]);
        let some = result("prometheus", vec![measurement("24h/15s", 40.0)]);
        let text = table(&[all, some]);
        assert!(text.contains("| rate by view | instant | 1.0 | — | — |"), "{text}");
        assert!(text.contains("| rate by view | 24h/15s | 10.0 | 40.0 | 0.25x |"), "{text}");
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(url_encode("sum by (a) (x{b=~\"5..\"})"), "sum%20by%20%28a%29%20%28x%7Bb%3D~%225..%22%7D%29");
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn evaluation_end_is_a_whole_minute_after_the_last_round() {
        let header: WorkloadHeader = serde_json::from_value(serde_json::json!({
            "seed": 1, "active_series": 1, "targets": 1, "rounds": 4, "scrape_interval_ms": 15000,
            "samples_per_request": 1, "requests_per_round": 1, "start_ms": 600000, "block_duration_ms": 60000,
            "trigger_timestamp_ms": 0, "total_samples": 4, "encoded_bytes": 0, "compressed_bytes": 0,
            "check_series": [], "check_metric_series": 0, "families": {}, "generation_seconds": 0.0
        }))
        .unwrap();
        // Last round at 645 s; every target's sample lands before 660 s.
        assert_eq!(evaluation_end_ms(&header), 660_000);
    }
}

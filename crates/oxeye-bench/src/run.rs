//! One measured run of one server on one workload.
//!
//! Phases, all on the same server process tree and data directory:
//! 1. **empty start**: spawn on an empty data directory, time to ready.
//! 2. **ingest**: send the whole workload; server CPU seconds from `/proc/<pid>/stat` before and after,
//!    resident memory (`VmRSS`, `VmHWM`) after; check one series' sample count and one metric's series
//!    count through `/api/v1/query`.
//! 3. **crash**: `kill -9`, restart, time to ready (WAL replay for oxeye and Prometheus), check again.
//!    VictoriaMetrics has no WAL and loses what it buffered in the last second or so, so it is asked to
//!    flush (`/internal/force_flush`) before the kill.
//! 4. **block cut**: one trigger sample far enough ahead makes oxeye and Prometheus cut the block that
//!    holds the whole workload (both run with block duration = the workload's span); bytes per sample =
//!    bytes of block directories / samples in their `meta.json`. VictoriaMetrics is flushed and its
//!    background merges waited for (data directory size stable for 10 s); bytes per sample = bytes of
//!    its `data/` and `indexdb/` / samples sent.
//! 5. **graceful stop** (SIGTERM) and **full start**: time to stop, time to ready on the full data
//!    directory, check again, stop.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::procfs::{self, BlockInfo, Memory, TreeSize};
use crate::send::{self, SendReport};
use crate::server::{Running, ServerKind, ServerSpec};
use crate::workload::{CHECK_METRIC, PrebuiltRequest, WorkloadHeader, trigger_body};

/// The workload facts a result carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadSummary {
    /// Active series.
    pub active_series: u64,
    /// Scrape targets.
    pub targets: u64,
    /// Rounds (samples per series).
    pub rounds: u32,
    /// Samples sent.
    pub total_samples: u64,
    /// Samples per request.
    pub samples_per_request: u32,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Snappy bytes sent.
    pub compressed_bytes: u64,
    /// Protobuf bytes before snappy.
    pub encoded_bytes: u64,
}

/// Answers of the checking queries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Check {
    /// `count_over_time` of series 0 over the workload (expected: rounds).
    pub series_samples: Option<f64>,
    /// `count(<CHECK_METRIC>)` at the last round (expected: that metric's active series).
    pub metric_series: Option<f64>,
    /// Whether both match.
    pub ok: bool,
    /// Query errors, if any.
    pub error: Option<String>,
}

/// What the block cut (or flush) left on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskReport {
    /// How the bytes were counted.
    pub method: String,
    /// Seconds from the trigger (or flush) until the data was on disk and stable.
    pub wait_seconds: f64,
    /// Server CPU seconds spent in that time.
    pub cpu_seconds: f64,
    /// Blocks found (oxeye, Prometheus).
    pub blocks: Vec<BlockInfo>,
    /// Bytes counted as persisted data (apparent size).
    pub persisted_bytes: u64,
    /// Samples those bytes hold.
    pub persisted_samples: u64,
    /// `persisted_bytes / persisted_samples`.
    pub bytes_per_sample: f64,
    /// Every top-level entry of the data directory after the cut.
    pub data_dir: BTreeMap<String, TreeSize>,
}

/// Everything measured for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Which server.
    pub server: ServerKind,
    /// Column name in tables: the server's name, or what `--label` said (e.g. `oxeye+jemalloc`).
    #[serde(default)]
    pub label: String,
    /// Extra environment the server ran with.
    #[serde(default)]
    pub server_env: Vec<(String, String)>,
    /// `--version` output (first line).
    pub version: String,
    /// The workload.
    pub workload: WorkloadSummary,
    /// Cores the server was pinned to.
    pub server_cpus: Option<String>,
    /// Milliseconds to ready on an empty data directory.
    pub startup_empty_ms: f64,
    /// Memory right after the empty start.
    pub memory_idle: Memory,
    /// The ingest.
    pub ingest: SendReport,
    /// Server CPU seconds during the ingest.
    pub ingest_cpu_seconds: f64,
    /// Samples per server CPU second (= samples/s per fully used core).
    pub samples_per_cpu_second: f64,
    /// Server CPU seconds per million samples.
    pub cpu_seconds_per_million_samples: f64,
    /// Memory after the ingest (`peak_rss_bytes` is the process' high-water mark since start).
    pub memory_after_ingest: Memory,
    /// `memory_after_ingest.rss_bytes / active_series`.
    pub rss_bytes_per_series: f64,
    /// Data directory after the ingest, by top-level entry.
    pub data_dir_after_ingest: BTreeMap<String, TreeSize>,
    /// Queries after the ingest.
    pub check_after_ingest: Check,
    /// What the WAL held beyond its last checkpoint at the `kill -9` (oxeye only): what the restart
    /// replays sample by sample, which explains its ready time.
    #[serde(default)]
    pub wal_at_kill: Option<WalAtKill>,
    /// Milliseconds to ready after `kill -9`.
    pub startup_after_kill_ms: f64,
    /// Memory right after that restart.
    pub memory_after_kill_restart: Memory,
    /// Queries after that restart.
    pub check_after_kill: Check,
    /// Block cut / flush and bytes on disk.
    pub disk: DiskReport,
    /// Memory of the restarted process after the cut (its `peak_rss_bytes` covers replay and cut).
    pub memory_after_cut: Memory,
    /// Milliseconds from SIGTERM to exit.
    pub shutdown_ms: f64,
    /// Data directory after the graceful stop.
    pub data_dir_after_stop: BTreeMap<String, TreeSize>,
    /// Milliseconds to ready on the full data directory after a graceful stop.
    pub startup_full_ms: f64,
    /// Memory right after that start.
    pub memory_after_full_start: Memory,
    /// Queries after that start.
    pub check_after_full_start: Check,
}

/// Runs every phase for `spec` with `requests` from `header`.
///
/// # Errors
/// When the server cannot be started or stopped, or /proc cannot be read.
pub async fn run(
    label: &str,
    spec: &ServerSpec,
    header: &WorkloadHeader,
    requests: &'static [PrebuiltRequest],
    concurrency: usize,
) -> anyhow::Result<RunResult> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")?;
    let probe_client =
        reqwest::Client::builder().pool_max_idle_per_host(0).build().context("building the probe client")?;
    let start_timeout = Duration::from_secs(1800);
    let stop_timeout = Duration::from_secs(600);
    spec.prepare()?;
    let version = version_of(spec);
    let write_url = format!("{}/api/v1/write", spec.base_url());

    eprintln!("[{}] starting on an empty data directory", spec.kind.name());
    let first = spec.start(&probe_client, start_timeout).await?;
    let startup_empty_ms = first.startup_ms;
    let memory_idle = procfs::memory(first.pid)?;

    eprintln!("[{}] ingesting {} samples", spec.kind.name(), header.total_samples);
    let cpu_before = procfs::cpu_seconds(first.pid)?;
    let ingest = send::send_all(&client, &write_url, requests, header.requests_per_round, concurrency).await;
    let cpu_after = procfs::cpu_seconds(first.pid)?;
    let memory_after_ingest = procfs::memory(first.pid)?;
    let ingest_cpu_seconds = cpu_after - cpu_before;
    eprintln!(
        "[{}] ingest: {:.0} samples/s wall, {:.2} CPU-s, {} failed requests{}",
        spec.kind.name(),
        ingest.samples_per_second,
        ingest_cpu_seconds,
        ingest.requests_failed,
        ingest.first_error.as_deref().map(|error| format!(" (first: {error})")).unwrap_or_default()
    );
    // VictoriaMetrics buffers rows in memory for a few seconds before they reach parts on disk (and
    // become searchable); without a WAL, a kill -9 loses them. Wait until they are all in parts.
    if spec.kind == ServerKind::VictoriaMetrics {
        force_flush(&client, spec).await;
        wait_victoria_metrics_persisted(spec, ingest.samples_ok).await;
    }
    let data_dir_after_ingest = procfs::top_level_sizes(&spec.data_dir());
    let check_after_ingest = check(&client, spec, header).await;

    let wal_at_kill = (spec.kind == ServerKind::Oxeye).then(|| WalAtKill::read(&spec.data_dir().join("metrics/wal")));
    eprintln!("[{}] kill -9 and restart", spec.kind.name());
    first.kill_hard()?;
    let second = spec.start(&probe_client, start_timeout).await?;
    let startup_after_kill_ms = second.startup_ms;
    let memory_after_kill_restart = procfs::memory(second.pid)?;
    let check_after_kill = check(&client, spec, header).await;

    eprintln!("[{}] cutting the block", spec.kind.name());
    let disk = cut_and_measure(&client, spec, header, &second).await?;
    let memory_after_cut = procfs::memory(second.pid)?;
    let shutdown_ms = second.stop_gracefully(stop_timeout).await?;
    let data_dir_after_stop = procfs::top_level_sizes(&spec.data_dir());

    eprintln!("[{}] starting on the full data directory", spec.kind.name());
    let third = spec.start(&probe_client, start_timeout).await?;
    let startup_full_ms = third.startup_ms;
    let memory_after_full_start = procfs::memory(third.pid)?;
    let check_after_full_start = check(&client, spec, header).await;
    third.stop_gracefully(stop_timeout).await?;

    let samples = ingest.samples_ok as f64;
    Ok(RunResult {
        server: spec.kind,
        label: label.to_string(),
        server_env: spec.env.clone(),
        version,
        workload: WorkloadSummary {
            active_series: header.active_series,
            targets: header.targets,
            rounds: header.rounds,
            total_samples: header.total_samples,
            samples_per_request: header.samples_per_request,
            concurrency,
            compressed_bytes: header.compressed_bytes,
            encoded_bytes: header.encoded_bytes,
        },
        server_cpus: spec.cpu_list.clone(),
        startup_empty_ms,
        memory_idle,
        samples_per_cpu_second: samples / ingest_cpu_seconds.max(1e-9),
        cpu_seconds_per_million_samples: ingest_cpu_seconds / (samples / 1e6).max(1e-9),
        ingest,
        ingest_cpu_seconds,
        rss_bytes_per_series: memory_after_ingest.rss_bytes as f64 / header.active_series as f64,
        memory_after_ingest,
        data_dir_after_ingest,
        check_after_ingest,
        wal_at_kill,
        startup_after_kill_ms,
        memory_after_kill_restart,
        check_after_kill,
        disk,
        memory_after_cut,
        shutdown_ms,
        data_dir_after_stop,
        startup_full_ms,
        memory_after_full_start,
        check_after_full_start,
    })
}

/// oxeye's metrics WAL directory just before the `kill -9`: the newest checkpoint and the segments
/// after it (segments are named by their 8-digit index, checkpoints `checkpoint.<last segment covered>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WalAtKill {
    /// The last segment the newest complete checkpoint covers; `None` without a checkpoint.
    pub checkpoint_through_segment: Option<u64>,
    /// Bytes of that checkpoint directory.
    pub checkpoint_bytes: u64,
    /// Segments after the checkpoint (all segments without one).
    pub segments_after_checkpoint: u64,
    /// Their bytes.
    pub segment_bytes_after_checkpoint: u64,
}

impl WalAtKill {
    /// Lists `wal_dir`; an unreadable directory or entry counts as empty.
    fn read(wal_dir: &Path) -> Self {
        let mut segments: Vec<(u64, u64)> = Vec::new();
        let mut checkpoints: Vec<(u64, std::path::PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(wal_dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(index) = name.parse::<u64>() {
                segments.push((index, entry.metadata().map(|metadata| metadata.len()).unwrap_or(0)));
            } else if let Some(Ok(through)) = name.strip_prefix("checkpoint.").map(str::parse::<u64>) {
                checkpoints.push((through, entry.path()));
            }
        }
        let newest = checkpoints.into_iter().max_by_key(|(through, _)| *through);
        let checkpoint_bytes = newest.as_ref().map_or(0, |(_, path)| {
            std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.metadata().map(|metadata| metadata.len()).unwrap_or(0))
                .sum()
        });
        let through = newest.map(|(through, _)| through);
        let after: Vec<u64> = segments
            .into_iter()
            .filter(|(index, _)| through.is_none_or(|through| *index > through))
            .map(|(_, bytes)| bytes)
            .collect();
        WalAtKill {
            checkpoint_through_segment: through,
            checkpoint_bytes,
            segments_after_checkpoint: after.len() as u64,
            segment_bytes_after_checkpoint: after.iter().sum(),
        }
    }
}

fn version_of(spec: &ServerSpec) -> String {
    let flag = match spec.kind {
        ServerKind::Oxeye | ServerKind::Prometheus => "--version",
        ServerKind::VictoriaMetrics => "-version",
    };
    std::process::Command::new(&spec.binary)
        .arg(flag)
        .output()
        .ok()
        .map(|output| {
            let text = if output.stdout.is_empty() { output.stderr } else { output.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_string()
        })
        .filter(|version| !version.is_empty())
        .or_else(|| {
            // Debian's VictoriaMetrics build prints an empty version; ask the package database.
            let output = std::process::Command::new("dpkg-query")
                .args(["-W", "-f", "victoria-metrics ${Version}", "victoria-metrics"])
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
        })
        .unwrap_or_default()
}

async fn force_flush(client: &reqwest::Client, spec: &ServerSpec) {
    let url = format!("{}/internal/force_flush", spec.base_url());
    if let Err(error) = client.get(&url).send().await {
        eprintln!("warning: {url}: {error}");
    }
}

/// Waits (at most ten minutes) until VictoriaMetrics' part directories on disk hold `expected_rows` rows.
/// `vm_rows` also counts in-memory parts, which a `kill -9` loses, so the files are counted instead:
/// a part directory's name starts with its row count (`<rows>_<blocks>_<min>_<max>_<id>`).
async fn wait_victoria_metrics_persisted(spec: &ServerSpec, expected_rows: u64) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(600) {
        if victoria_metrics_rows_on_disk(&spec.data_dir()) == expected_rows {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("warning: VictoriaMetrics did not write all {expected_rows} rows to disk within ten minutes");
}

/// Rows in VictoriaMetrics' part directories `data/{small,big}/<month>/<rows>_...`.
fn victoria_metrics_rows_on_disk(data_dir: &Path) -> u64 {
    let mut rows = 0;
    for size_class in ["small", "big"] {
        let Ok(months) = std::fs::read_dir(data_dir.join("data").join(size_class)) else { continue };
        for month in months.flatten() {
            let Ok(parts) = std::fs::read_dir(month.path()) else { continue };
            for part in parts.flatten() {
                let name = part.file_name().to_string_lossy().into_owned();
                if let Some((count, _)) = name.split_once('_')
                    && let Ok(count) = count.parse::<u64>()
                {
                    rows += count;
                }
            }
        }
    }
    rows
}

/// Sends the trigger sample (oxeye, Prometheus) or flushes (VictoriaMetrics), waits until the data is on
/// disk and the directory stops changing, and counts bytes per sample.
async fn cut_and_measure(
    client: &reqwest::Client,
    spec: &ServerSpec,
    header: &WorkloadHeader,
    server: &Running,
) -> anyhow::Result<DiskReport> {
    let cpu_before = procfs::cpu_seconds(server.pid)?;
    let started = Instant::now();
    let data_dir = spec.data_dir();
    let mut report = DiskReport::default();
    if spec.kind.has_blocks() {
        let body: &'static [u8] = Box::leak(trigger_body(header.trigger_timestamp_ms)?.into_boxed_slice());
        let (status, error) = send::post(client, &format!("{}/api/v1/write", spec.base_url()), body).await;
        if let Some(error) = error {
            anyhow::bail!("trigger sample refused ({status}): {error}");
        }
        // oxeye's maintenance loop runs every minute; Prometheus compacts right after the append.
        let deadline = Duration::from_secs(900);
        loop {
            let blocks = procfs::blocks(&data_dir);
            let workload_end_ms = header.start_ms + header.block_duration_ms;
            if blocks.iter().any(|block| block.min_time_ms < workload_end_ms && block.max_time_ms > header.start_ms) {
                break;
            }
            if started.elapsed() > deadline {
                eprintln!("warning: no block covering the workload after {deadline:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_until_stable(&data_dir, Duration::from_secs(5), Duration::from_secs(300), |path| {
            procfs::blocks(path).iter().map(|block| block.size.apparent_bytes).sum()
        })
        .await;
        report.blocks = procfs::blocks(&data_dir);
        report.persisted_bytes = report.blocks.iter().map(|block| block.size.apparent_bytes).sum();
        report.persisted_samples = report.blocks.iter().map(|block| block.samples).sum();
        report.method =
            "bytes of block directories (index, chunks, meta.json, tombstones) / samples in their meta.json".into();
    } else {
        force_flush(client, spec).await;
        let persisted = |path: &Path| -> u64 {
            ["data", "indexdb"].iter().map(|entry| procfs::tree_size(&path.join(entry)).apparent_bytes).sum()
        };
        wait_until_stable(&data_dir, Duration::from_secs(10), Duration::from_secs(600), persisted).await;
        report.persisted_bytes = persisted(&data_dir);
        report.persisted_samples = header.total_samples;
        report.method =
            "bytes of data/ and indexdb/ after /internal/force_flush and merges settled / samples sent".into();
    }
    report.wait_seconds = started.elapsed().as_secs_f64();
    report.cpu_seconds = procfs::cpu_seconds(server.pid)? - cpu_before;
    report.bytes_per_sample = report.persisted_bytes as f64 / (report.persisted_samples as f64).max(1.0);
    report.data_dir = procfs::top_level_sizes(&data_dir);
    Ok(report)
}

/// Polls `measure(dir)` every second until it has not changed for `quiet`, or `limit` passed.
async fn wait_until_stable(dir: &Path, quiet: Duration, limit: Duration, measure: impl Fn(&Path) -> u64) {
    let started = Instant::now();
    let mut last = measure(dir);
    let mut unchanged_since = Instant::now();
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = measure(dir);
        if now != last {
            last = now;
            unchanged_since = Instant::now();
        } else if unchanged_since.elapsed() >= quiet {
            return;
        }
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters kept).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The scalar value of the first element of an instant query's vector result.
async fn instant_query(client: &reqwest::Client, spec: &ServerSpec, query: &str, time_ms: i64) -> anyhow::Result<f64> {
    let url =
        format!("{}/api/v1/query?query={}&time={}", spec.base_url(), percent_encode(query), time_ms as f64 / 1000.0);
    let response = client.get(&url).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        anyhow::bail!("{query}: HTTP {status}: {}", text.chars().take(300).collect::<String>());
    }
    let json: serde_json::Value = serde_json::from_str(&text)?;
    json.pointer("/data/result/0/value/1")
        .and_then(serde_json::Value::as_str)
        .and_then(|value| value.parse::<f64>().ok())
        .with_context(|| format!("{query}: no value in {}", text.chars().take(300).collect::<String>()))
}

/// Checks that series 0 holds every round and that the check metric has all its series.
async fn check(client: &reqwest::Client, spec: &ServerSpec, header: &WorkloadHeader) -> Check {
    let selector = header
        .check_series
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",");
    let end_ms = header.start_ms + header.block_duration_ms;
    let range_seconds = header.block_duration_ms / 1000 + 60;
    let series_query = format!("count_over_time({{{selector}}}[{range_seconds}s])");
    let metric_query = format!("count({CHECK_METRIC})");
    let mut result = Check::default();
    match instant_query(client, spec, &series_query, end_ms).await {
        Ok(value) => result.series_samples = Some(value),
        Err(error) => result.error = Some(error.to_string()),
    }
    match instant_query(client, spec, &metric_query, end_ms - 1).await {
        Ok(value) => result.metric_series = Some(value),
        Err(error) => result.error.get_or_insert(error.to_string()).push_str(""),
    }
    result.ok = result.series_samples == Some(f64::from(header.rounds))
        && result.metric_series == Some(header.check_metric_series as f64);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(percent_encode("count(up{a=\"b c\"})[5m]"), "count%28up%7Ba%3D%22b%20c%22%7D%29%5B5m%5D");
        assert_eq!(percent_encode("a-b_c.d~"), "a-b_c.d~");
    }
}

//! The head benchmark (issue 2, 1M series): fills an `oxeye-tsdb` head in this process with the fleet
//! workload, without HTTP, then measures what a `kill -9` costs.
//!
//! ```text
//! oxeye-bench head --series 1000000 --rounds 120 --dir /tmp/head-1m
//! ```
//!
//! Phases:
//! 1. **Fill.** The fleet's series (see [`crate::fleet`]) get `--rounds` samples 15 s apart, in commits of
//!    `--samples-per-commit` (remote_write's 2,000 per request), round by round, with
//!    [`oxeye_tsdb::Tsdb::run_maintenance`] every `--maintenance-every` rounds as `oxeye serve` runs it every
//!    minute. Reported: CPU seconds, resident memory growth per series over the fleet's own memory
//!    (`VmRSS` after the fill minus `VmRSS` before opening the store) and the WAL's bytes per sample.
//! 2. **Crash.** The store is dropped without [`oxeye_tsdb::Tsdb::close`]: no shutdown checkpoint, only
//!    what commits and maintenance left on disk, as after `kill -9` (every commit was fsynced).
//! 3. **Restart.** A child process (`oxeye-bench head-open`) opens the directory: the time
//!    `Tsdb::open` takes (WAL checkpoint and segment replay), the child's peak resident memory (`VmHWM`)
//!    and its CPU seconds, and a check that every series came back with every sample.
//!
//! The allocator is jemalloc, as in `oxeye serve`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use oxeye_model::storage::{MetricsStorage, Querier};
use oxeye_model::{Labels, Matcher, Sample};
use oxeye_tsdb::{HeadMemory, Tsdb, TsdbOptions};
use serde::Serialize;

use crate::fleet::Fleet;
use crate::procfs;

/// Scrape interval of the fleet, milliseconds.
const INTERVAL_MS: i64 = 15_000;

/// Options of `oxeye-bench head`.
#[derive(Debug, Clone, clap::Args)]
pub struct HeadArgs {
    /// Active series.
    #[arg(long, default_value_t = 1_000_000)]
    pub series: usize,
    /// Samples per series, 15 s apart.
    #[arg(long, default_value_t = 120)]
    pub rounds: u32,
    /// Samples per commit.
    #[arg(long, default_value_t = 2000)]
    pub samples_per_commit: usize,
    /// Run maintenance (block cut, checkpoint, head chunk spill) after every this many rounds; 0 = never.
    #[arg(long, default_value_t = 40)]
    pub maintenance_every: u32,
    /// Data directory (wiped first).
    #[arg(long)]
    pub dir: PathBuf,
    /// Fleet seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a memory trace line to stderr after every this many rounds (`VmRSS` growth and the open
    /// chunks' bytes written and capacity per series); 0 = none. Walking the head costs time, so a traced
    /// fill's CPU is not comparable with an untraced one.
    #[arg(long, default_value_t = 0)]
    pub trace_every: u32,
}

/// Options of `oxeye-bench head-open` (the restart phase, in its own process).
#[derive(Debug, Clone, clap::Args)]
pub struct HeadOpenArgs {
    /// Data directory left by `head`.
    #[arg(long)]
    pub dir: PathBuf,
    /// Series the head must hold.
    #[arg(long)]
    pub series: u64,
    /// Samples the head must hold.
    #[arg(long)]
    pub samples: u64,
    /// Samples per series of the fill (sets the block duration, as in the fill).
    #[arg(long)]
    pub rounds: u32,
}

/// What `head` measured.
#[derive(Debug, Serialize)]
struct FillReport {
    series: usize,
    rounds: u32,
    samples: u64,
    /// Mean bytes of a series' label names and values.
    label_bytes_per_series: f64,
    fill_seconds: f64,
    fill_cpu_seconds: f64,
    samples_per_cpu_second: f64,
    rss_growth_bytes_per_series: f64,
    peak_rss_growth_bytes_per_series: f64,
    head_series_and_chunk_bytes_per_series: f64,
    wal_bytes_per_sample: f64,
    checkpoints: u64,
    /// The head's own estimate of its heap bytes by component, after the fill.
    head_memory: HeadMemory,
}

/// What `head-open` measured.
#[derive(Debug, Serialize, serde::Deserialize)]
struct OpenReport {
    open_seconds: f64,
    open_cpu_seconds: f64,
    wal_replay_records: u64,
    head_series: u64,
    samples_found: u64,
    peak_rss_bytes: u64,
    rss_bytes: u64,
    /// The head's own estimate of its heap bytes by component, once open.
    head_memory: HeadMemory,
}

fn block_duration_ms(rounds: u32) -> i64 {
    i64::from(rounds) * INTERVAL_MS
}

/// Options as `bench/run.sh` starts oxeye: the block duration is the workload's span.
fn options(dir: &Path, rounds: u32) -> TsdbOptions {
    let mut options = TsdbOptions::new(dir);
    options.block_duration_ms = block_duration_ms(rounds);
    options
}

/// `oxeye-bench head`.
///
/// # Errors
/// When the store fails, or the restarted head misses series or samples.
pub fn main(args: &HeadArgs) -> anyhow::Result<()> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("wiping {}", args.dir.display()))?;
    }
    let pid = std::process::id();
    let start_ms = {
        // Aligned to the block duration and ending well before now, as `generate` does.
        let now_ms = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis())?;
        let span_ms = block_duration_ms(args.rounds);
        (now_ms - 2 * span_ms).div_euclid(span_ms) * span_ms
    };
    let mut fleet = Fleet::build(args.series, args.seed, start_ms as f64 / 1000.0);
    let labels: Vec<Labels> = fleet
        .labels
        .iter()
        .map(|pairs| Labels::from_pairs(pairs.iter().map(|(name, value)| (name.as_str(), value.as_str()))))
        .collect();
    // The fleet's own labels stay allocated until the end: memory they freed would be reused by the head
    // and hide its growth.
    let label_bytes: usize =
        labels.iter().flat_map(|labels| labels.iter()).map(|label| label.name.len() + label.value.len()).sum();
    let memory_before = procfs::memory(pid)?;
    let cpu_before = procfs::cpu_seconds(pid)?;
    let started = Instant::now();
    let tsdb = Tsdb::open(options(&args.dir, args.rounds))?;
    for round in 0..args.rounds {
        let round_ms = start_ms + i64::from(round) * INTERVAL_MS;
        let values = fleet.values();
        for start in (0..args.series).step_by(args.samples_per_commit.max(1)) {
            let end = (start + args.samples_per_commit).min(args.series);
            let mut appender = tsdb.appender();
            for index in start..end {
                let offset_ms = fleet.target_offsets_ms[fleet.series_target[index] as usize];
                appender.append(&labels[index], Sample { timestamp_ms: round_ms + offset_ms, value: values[index] })?;
            }
            appender.commit()?;
        }
        fleet.step();
        if args.trace_every > 0 && (round + 1) % args.trace_every == 0 {
            let rss_bytes = procfs::memory(pid)?.rss_bytes;
            let head_memory = tsdb.head_memory();
            let per_series = |bytes: u64| bytes as f64 / args.series as f64;
            eprintln!(
                "round {}: rss growth {:.1} B/series, open chunks {:.1} written in {:.1} capacity B/series",
                round + 1,
                per_series(rss_bytes.saturating_sub(memory_before.rss_bytes)),
                per_series(head_memory.open_chunks_used),
                per_series(head_memory.open_chunks_capacity),
            );
        }
        if args.maintenance_every > 0 && (round + 1) % args.maintenance_every == 0 && round + 1 < args.rounds {
            let report = tsdb.run_maintenance()?;
            eprintln!("round {}: maintenance {report:?}", round + 1);
        }
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    let fill_cpu_seconds = procfs::cpu_seconds(pid)? - cpu_before;
    let memory_after = procfs::memory(pid)?;
    let stats = tsdb.stats();
    let samples = args.series as u64 * u64::from(args.rounds);
    let series = args.series as f64;
    let fill = FillReport {
        series: args.series,
        rounds: args.rounds,
        samples,
        label_bytes_per_series: label_bytes as f64 / series,
        fill_seconds,
        fill_cpu_seconds,
        samples_per_cpu_second: samples as f64 / fill_cpu_seconds,
        rss_growth_bytes_per_series: memory_after.rss_bytes.saturating_sub(memory_before.rss_bytes) as f64 / series,
        peak_rss_growth_bytes_per_series: memory_after.peak_rss_bytes.saturating_sub(memory_before.rss_bytes) as f64
            / series,
        head_series_and_chunk_bytes_per_series: tsdb.head_chunk_bytes() as f64 / series,
        wal_bytes_per_sample: stats.wal_bytes as f64 / samples as f64,
        checkpoints: stats.checkpoints_total,
        head_memory: tsdb.head_memory(),
    };
    println!("{}", serde_json::to_string_pretty(&fill)?);
    // The crash: no close, so no shutdown checkpoint; every commit was already fsynced.
    drop(tsdb);
    drop(labels);
    drop(fleet);

    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("head-open")
        .arg("--dir")
        .arg(&args.dir)
        .arg("--series")
        .arg(args.series.to_string())
        .arg("--samples")
        .arg(samples.to_string())
        .arg("--rounds")
        .arg(args.rounds.to_string())
        .output()
        .context("running head-open")?;
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("head-open failed: {}", output.status);
    }
    let open: OpenReport = serde_json::from_slice(&output.stdout).context("parsing head-open's report")?;
    println!("{}", serde_json::to_string_pretty(&open)?);
    Ok(())
}

/// `oxeye-bench head-open`: the restart after the crash, in a fresh process so its peak memory is its own.
///
/// # Errors
/// When the store fails to open, or misses series or samples.
pub fn open_main(args: &HeadOpenArgs) -> anyhow::Result<()> {
    let pid = std::process::id();
    let cpu_before = procfs::cpu_seconds(pid)?;
    let started = Instant::now();
    let tsdb = Tsdb::open(options(&args.dir, args.rounds))?;
    let open_seconds = started.elapsed().as_secs_f64();
    let open_cpu_seconds = procfs::cpu_seconds(pid)? - cpu_before;
    let memory = procfs::memory(pid)?;
    let stats = tsdb.stats();
    let samples_found = count_samples(&tsdb)?;
    let report = OpenReport {
        open_seconds,
        open_cpu_seconds,
        wal_replay_records: stats.wal_replay_records,
        head_series: stats.head_series,
        samples_found,
        peak_rss_bytes: memory.peak_rss_bytes,
        rss_bytes: memory.rss_bytes,
        head_memory: tsdb.head_memory(),
    };
    println!("{}", serde_json::to_string(&report)?);
    if stats.head_series != args.series || samples_found != args.samples {
        bail!(
            "after the restart the head holds {} series and {samples_found} samples, expected {} and {}",
            stats.head_series,
            args.series,
            args.samples
        );
    }
    Ok(())
}

/// Samples in the store, counted per target (`instance`) so no single query holds every series at once.
fn count_samples(tsdb: &Tsdb) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for instance in tsdb.label_values(i64::MIN, i64::MAX, "instance", &[])? {
        let series = tsdb.select(i64::MIN, i64::MAX, &[Matcher::equal("instance", &instance)])?;
        total += series.iter().map(|series| series.samples.len() as u64).sum::<u64>();
    }
    Ok(total)
}

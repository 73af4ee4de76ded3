//! A quick ingest measurement, not a benchmark suite: appends `SERIES` series × `ROUNDS` samples in
//! remote_write-sized batches from one thread, then measures bytes per sample of cut blocks on a
//! longer, smaller workload.
//!
//! Environment: `OXEYE_INGEST_THREADS` (default 1), `OXEYE_INGEST_MAINTENANCE_EVERY` rounds (default 0 = never).
//!
//! `OXEYE_INGEST_THREADS=4 cargo run --release -p oxeye-tsdb --example ingest -- [series] [rounds] [batch] [keep_dir]`

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use oxeye_model::storage::MetricsStorage;
use oxeye_model::{Labels, Sample};
use oxeye_tsdb::{Tsdb, TsdbOptions};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of /proc/<pid>/stat (utime, stime) are at 11 and 12 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

struct Random(u64);
impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn labels_for(index: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("django_http_requests_total_{}", index % 100)),
        ("instance", format!("web-{}:8000", index % 50)),
        ("job", "django".to_owned()),
        ("method", ["GET", "POST", "PUT", "DELETE"][index % 4].to_owned()),
        ("view", format!("view_{}", index / 200)),
        ("status", ["200", "404", "500"][index % 3].to_owned()),
    ])
}

fn mix(index: usize, step: i64) -> u64 {
    let mut random = Random((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (step as u64).wrapping_add(1));
    random.next();
    random.next()
}

/// Realistic value shapes: constants, integer counters (+0..19 per step), decimal gauges, linear counters.
fn value_for(index: usize, step: i64) -> f64 {
    match index % 4 {
        0 => 1.0,
        1 => (step * 10 + (mix(index, step) % 10) as i64) as f64,
        2 => ((mix(index, step) % 10_000) as f64) / 100.0,
        _ => step as f64 * 3.0,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(1_000_000);
    let rounds: i64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(10);
    let batch: usize = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(2000);
    let temporary = tempfile::tempdir().unwrap();
    // An optional fourth argument keeps the data directory for later inspection.
    let kept: Option<std::path::PathBuf> = args.next().map(Into::into);
    let dir_path = kept.unwrap_or_else(|| temporary.path().to_path_buf());
    let started = Instant::now();
    let tsdb = Tsdb::open(TsdbOptions::new(&dir_path)).unwrap();
    println!("open empty: {:?}", started.elapsed());
    let all_labels: Vec<Labels> = (0..series).map(labels_for).collect();
    let rss_before = rss_bytes();
    let mut random = Random(0x1234_5678);
    let threads: usize = std::env::var("OXEYE_INGEST_THREADS").ok().and_then(|value| value.parse().ok()).unwrap_or(1);
    // Run maintenance (which moves closed head chunks to disk) every this many rounds; 0 = never.
    let maintenance_every: i64 =
        std::env::var("OXEYE_INGEST_MAINTENANCE_EVERY").ok().and_then(|value| value.parse().ok()).unwrap_or(0);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let mut first_round_seconds = 0.0;
    for round in 0..rounds {
        let timestamp_ms = 1_700_000_000_000 + round * 15_000;
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let tsdb = &tsdb;
                let all_labels = &all_labels;
                scope.spawn(move || {
                    for start in (0..series).step_by(batch).skip(thread).step_by(threads) {
                        let mut appender = tsdb.appender();
                        for (index, labels) in all_labels.iter().enumerate().skip(start).take(batch) {
                            let value = value_for(index, round);
                            appender.append(labels, Sample { timestamp_ms, value }).unwrap();
                        }
                        appender.commit().unwrap();
                    }
                });
            }
        });
        if maintenance_every > 0 && (round + 1) % maintenance_every == 0 {
            let before = rss_bytes();
            let report = tsdb.run_maintenance().unwrap();
            println!(
                "round {round}: rss {:.0} -> {:.0} B/series, head series+chunk bytes {:.0} B/series, {report:?}",
                before.saturating_sub(rss_before) as f64 / series as f64,
                rss_bytes().saturating_sub(rss_before) as f64 / series as f64,
                tsdb.head_chunk_bytes() as f64 / series as f64,
            );
        }
        if round == 0 {
            first_round_seconds = started.elapsed().as_secs_f64();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_used = cpu_seconds() - cpu_started;
    let samples = series as f64 * rounds as f64;
    let rss_after = rss_bytes();
    println!(
        "ingest: {series} series x {rounds} samples in batches of {batch} from {threads} threads: {seconds:.2} s, {:.0} samples/s \
         (first round, creating series: {:.0} samples/s; later rounds: {:.0} samples/s)",
        samples / seconds,
        series as f64 / first_round_seconds,
        (samples - series as f64) / (seconds - first_round_seconds)
    );
    let stats = tsdb.stats();
    println!(
        "cpu: {cpu_used:.2} s = {:.0} samples per cpu-second; fsync wait {:.2} s in {} fsyncs",
        samples / cpu_used,
        stats.wal.fsync_seconds_total,
        stats.wal.fsyncs_total
    );
    println!(
        "rss growth {:.0} B/series; head series+chunk bytes {:.0} B/series; wal {:.1} B/sample",
        (rss_after.saturating_sub(rss_before)) as f64 / series as f64,
        tsdb.head_chunk_bytes() as f64 / series as f64,
        stats.wal_bytes as f64 / samples,
    );
    drop(tsdb);
    let started = Instant::now();
    let tsdb = Tsdb::open(TsdbOptions::new(&dir_path)).unwrap();
    println!("reopen after crash (WAL replay): {:?}, {} series", started.elapsed(), tsdb.stats().head_series);
    tsdb.close().unwrap();
    drop(tsdb);
    let started = Instant::now();
    let tsdb = Tsdb::open(TsdbOptions::new(&dir_path)).unwrap();
    println!("reopen after graceful close (checkpoint): {:?}", started.elapsed());
    drop(tsdb);

    // Disk: 10k series at 15 s for 4 h, then cut blocks.
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    let disk_series = 10_000;
    for round in 0..(4 * 240) {
        let timestamp_ms = 1_700_000_000_000 + round * 15_000 + (random.next() % 3) as i64;
        let mut appender = tsdb.appender();
        for (index, labels) in all_labels.iter().take(disk_series).enumerate() {
            let value = value_for(index, round);
            appender.append(labels, Sample { timestamp_ms, value }).unwrap();
        }
        appender.commit().unwrap();
    }
    tsdb.run_maintenance().unwrap();
    let stats = tsdb.stats();
    for (shape, name) in
        ["constant", "counter (+0..19 per sample)", "gauge (random, 2 decimals)", "linear counter"].iter().enumerate()
    {
        let mut random = Random(99);
        let samples: Vec<Sample> = (0..120)
            .map(|round| Sample {
                timestamp_ms: 1_700_000_000_000 + round * 15_000 + (random.next() % 3) as i64,
                value: value_for(shape, round),
            })
            .collect();
        let (encoding, bytes) = oxeye_tsdb::chunkenc::encode_best(&samples);
        println!(
            "chunk of 120 samples, {name}, 0-2 ms jitter: {encoding:?} {:.3} B/sample",
            bytes.len() as f64 / 120.0
        );
    }
    println!(
        "disk: {} blocks, {} samples, {:.3} B/sample (index + chunks + meta); by shape see chunkenc",
        stats.blocks,
        stats.blocks_samples,
        stats.blocks_bytes as f64 / stats.blocks_samples as f64
    );
}

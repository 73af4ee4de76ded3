//! Crash safety: a child process ingests from two threads while a third cuts blocks, checkpoints the
//! WAL and compacts (20 s blocks), and is killed with SIGKILL mid-stream; after a restart every
//! acknowledged sample must be there. Repeated over several kill/restart cycles.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use oxeye_model::storage::{MetricsStorage, Querier};
use oxeye_model::{Labels, Matcher, Sample};
use oxeye_tsdb::{Tsdb, TsdbOptions};

const CHILD_ENV: &str = "OXEYE_TSDB_CRASH_CHILD_DIR";
const SERIES_PER_THREAD: usize = 50;
const THREADS: usize = 2;

fn labels(thread: usize, instance: usize) -> Labels {
    Labels::from_pairs([("__name__", format!("crash_test_{thread}")), ("instance", format!("host-{instance}"))])
}

fn options(dir: &Path) -> TsdbOptions {
    let mut options = TsdbOptions::new(dir);
    // Small segments so kills also land around segment rotation.
    options.wal_segment_size_bytes = 64 * 1024;
    // One round per second of sample time: blocks are cut every ~20 rounds.
    options.block_duration_ms = 20_000;
    // Checkpoints between block cuts too.
    options.wal_checkpoint_min_bytes = 32 * 1024;
    options
}

/// The next round a thread should write: one past the newest timestamp stored for its series.
fn next_round(tsdb: &Tsdb, thread: usize) -> i64 {
    let series =
        tsdb.select(i64::MIN, i64::MAX, &[Matcher::equal("__name__", format!("crash_test_{thread}"))]).unwrap();
    series
        .iter()
        .filter_map(|series| series.samples.last().map(|sample| sample.timestamp_ms / 1000 + 1))
        .max()
        .unwrap_or(0)
}

/// Runs only inside the child process (the environment variable names its data directory): ingests
/// until killed, printing `ack <thread> <round>` after each successful commit.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let tsdb = Tsdb::open(options(Path::new(&dir))).unwrap();
    let maintenance_tsdb = Arc::clone(&tsdb);
    std::thread::spawn(move || {
        for _ in 0.. {
            maintenance_tsdb.run_maintenance().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    // Writers move in step so neither falls out of the head's window behind the other.
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let tsdb = Arc::clone(&tsdb);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                // Runs until the parent kills the process.
                for round in next_round(&tsdb, thread).. {
                    barrier.wait();
                    let mut appender = tsdb.appender();
                    for instance in 0..SERIES_PER_THREAD {
                        let sample = Sample { timestamp_ms: round * 1000, value: round as f64 };
                        appender.append(&labels(thread, instance), sample).unwrap();
                    }
                    appender.commit().unwrap();
                    println!("ack {thread} {round}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn every_acknowledged_sample_survives_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = [-1i64; THREADS];
    for cycle in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child_process", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen_this_cycle = 0;
        let target = 300 + cycle * 37;
        while seen_this_cycle < target {
            let Some(line) = lines.next() else { break };
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                let mut parts = rest.split(' ');
                let thread: usize = parts.next().unwrap().parse().unwrap();
                let round: i64 = parts.next().unwrap().parse().unwrap();
                acknowledged[thread] = acknowledged[thread].max(round);
                seen_this_cycle += 1;
            }
        }
        child.kill().unwrap();
        // Acknowledgements printed before the kill still count.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ack ") {
                let mut parts = rest.split(' ');
                let thread: usize = parts.next().unwrap().parse().unwrap();
                let round: i64 = parts.next().unwrap().parse().unwrap();
                acknowledged[thread] = acknowledged[thread].max(round);
            }
        }
        child.wait().unwrap();
        assert!(seen_this_cycle >= target, "child stopped early in cycle {cycle}");

        let tsdb = Tsdb::open(options(dir.path())).unwrap();
        assert!(cycle == 0 || tsdb.stats().blocks > 0, "blocks were cut before cycle {cycle}");
        for (thread, last_round) in acknowledged.iter().enumerate() {
            let series =
                tsdb.select(i64::MIN, i64::MAX, &[Matcher::equal("__name__", format!("crash_test_{thread}"))]).unwrap();
            assert_eq!(series.len(), SERIES_PER_THREAD, "cycle {cycle}, thread {thread}");
            for one in &series {
                let expected: Vec<Sample> =
                    (0..=*last_round).map(|round| Sample { timestamp_ms: round * 1000, value: round as f64 }).collect();
                let stored = &one.samples[..expected.len().min(one.samples.len())];
                assert_eq!(stored, expected.as_slice(), "cycle {cycle}: {} lost acknowledged samples", one.labels);
                // At most the one unacknowledged in-flight commit may be there beyond the acknowledged ones.
                assert!(one.samples.len() as i64 <= last_round + 2, "cycle {cycle}: {}", one.labels);
            }
        }
        drop(tsdb);
    }
}

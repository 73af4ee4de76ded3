//! Store-level tests: appends, queries, restarts, blocks, retention and concurrency.

use std::path::Path;
use std::sync::Arc;

use oxeye_model::storage::{MetricsStorage, Querier, StorageError};
use oxeye_model::{Exemplar, Labels, MatchOp, Matcher, MetricMetadata, MetricType, STALE_NAN, Sample};

use crate::{Tsdb, TsdbOptions};

const HOUR_MS: i64 = 3_600_000;

fn options(dir: &Path) -> TsdbOptions {
    TsdbOptions::new(dir)
}

fn series_labels(name: &str, instance: usize) -> Labels {
    Labels::from_pairs([("__name__", name.to_owned()), ("instance", format!("host-{instance}"))])
}

fn append_all(tsdb: &Tsdb, labels: &Labels, samples: &[(i64, f64)]) {
    let mut appender = tsdb.appender();
    for (timestamp_ms, value) in samples {
        appender.append(labels, Sample { timestamp_ms: *timestamp_ms, value: *value }).unwrap();
    }
    appender.commit().unwrap();
}

fn assert_same(actual: &[(Labels, Vec<(i64, u64)>)], expected: &[(Labels, Vec<(i64, u64)>)], context: &str) {
    assert_eq!(actual.len(), expected.len(), "series count {context}");
    for ((actual_labels, actual_samples), (expected_labels, expected_samples)) in actual.iter().zip(expected) {
        assert_eq!(actual_labels, expected_labels, "{context}");
        assert_eq!(actual_samples.len(), expected_samples.len(), "sample count of {actual_labels} {context}");
        for (actual_sample, expected_sample) in actual_samples.iter().zip(expected_samples) {
            assert_eq!(actual_sample, expected_sample, "{actual_labels} {context}");
        }
    }
}

/// Every sample of the series named `name`; also checks that `select_each` (whole range and a window across
/// the 4 h mark, where blocks and head meet in several tests) reads exactly what `select` returns.
fn all_samples(tsdb: &Tsdb, name: &str) -> Vec<(Labels, Vec<(i64, u64)>)> {
    let matchers = [Matcher::equal("__name__", name)];
    let as_bits = |series: oxeye_model::storage::Series| {
        (series.labels, series.samples.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect())
    };
    for (mint_ms, maxt_ms) in [(i64::MIN, i64::MAX), (3 * HOUR_MS + 1, 5 * HOUR_MS)] {
        let mut visited = Vec::new();
        tsdb.select_each(mint_ms, maxt_ms, &matchers, &mut |series| {
            visited.push(as_bits(series));
            Ok(())
        })
        .unwrap();
        let selected: Vec<_> = tsdb.select(mint_ms, maxt_ms, &matchers).unwrap().into_iter().map(as_bits).collect();
        assert_same(&visited, &selected, "select_each against select");
    }
    tsdb.select(i64::MIN, i64::MAX, &matchers).unwrap().into_iter().map(as_bits).collect()
}

#[test]
fn committed_samples_are_queryable_in_label_order_with_stale_markers() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    append_all(&tsdb, &series_labels("up", 2), &[(1000, 1.0), (2000, STALE_NAN)]);
    append_all(&tsdb, &series_labels("up", 1), &[(1000, 0.0)]);
    append_all(&tsdb, &series_labels("down", 1), &[(1000, 5.0)]);
    let selected = tsdb.select(1500, 2000, &[Matcher::equal("__name__", "up")]).unwrap();
    assert_eq!(selected.len(), 1);
    assert!(oxeye_model::is_stale_nan(selected[0].samples[0].value));
    let all = tsdb.series(0, 5000, &[Matcher::new(MatchOp::Regex, "__name__", "up|down").unwrap()]).unwrap();
    assert_eq!(all, vec![series_labels("down", 1), series_labels("up", 1), series_labels("up", 2)]);
    assert_eq!(tsdb.label_names(0, 5000, &[]).unwrap(), ["__name__", "instance"]);
    assert_eq!(tsdb.label_values(0, 5000, "__name__", &[]).unwrap(), ["down", "up"]);
    let filtered = tsdb.label_values(0, 5000, "instance", &[Matcher::equal("__name__", "down")]).unwrap();
    assert_eq!(filtered, ["host-1"]);
    assert!(tsdb.select(3000, 4000, &[Matcher::equal("__name__", "up")]).unwrap().is_empty());
    let stats = tsdb.stats();
    assert_eq!(stats.head_series, 3);
    assert_eq!(stats.head_samples_appended_total, 4);
    assert!(stats.wal.fsyncs_total >= 3);
}

#[test]
fn out_of_order_and_duplicate_samples_are_rejected_the_prometheus_way() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    let labels = series_labels("up", 1);
    append_all(&tsdb, &labels, &[(10_000, 1.0)]);
    let mut appender = tsdb.appender();
    let error = appender.append(&labels, Sample { timestamp_ms: 9_000, value: 1.0 }).unwrap_err();
    assert!(matches!(error, StorageError::OutOfOrderSample { newest_timestamp_ms: 10_000, .. }), "{error}");
    let error = appender.append(&labels, Sample { timestamp_ms: 10_000, value: 2.0 }).unwrap_err();
    assert!(matches!(error, StorageError::DuplicateSampleForTimestamp { .. }), "{error}");
    // The same value at the same timestamp is accepted and stored once.
    appender.append(&labels, Sample { timestamp_ms: 10_000, value: 1.0 }).unwrap();
    appender.append(&labels, Sample { timestamp_ms: 11_000, value: 1.0 }).unwrap();
    // Within one batch, order is checked against the batch too.
    let error = appender.append(&labels, Sample { timestamp_ms: 10_500, value: 1.0 }).unwrap_err();
    assert!(matches!(error, StorageError::OutOfOrderSample { newest_timestamp_ms: 11_000, .. }), "{error}");
    appender.rollback();
    assert_eq!(all_samples(&tsdb, "up")[0].1.len(), 1, "rolled back batch stored nothing");

    // Too old for the head window: half a block before the newest sample.
    append_all(&tsdb, &labels, &[(3 * HOUR_MS, 1.0)]);
    let mut appender = tsdb.appender();
    let other = series_labels("up", 2);
    let error = appender.append(&other, Sample { timestamp_ms: HOUR_MS, value: 1.0 }).unwrap_err();
    assert!(matches!(error, StorageError::OutOfBounds { .. }), "{error}");
    let error = appender.append(&Labels::from_pairs([("job", "x")]), Sample { timestamp_ms: 3 * HOUR_MS, value: 1.0 });
    assert!(matches!(error, Err(StorageError::InvalidLabels { .. })));
    let stats = tsdb.stats();
    assert_eq!(stats.out_of_order_samples_total, 2);
    assert_eq!(stats.duplicate_samples_total, 1);
    assert_eq!(stats.out_of_bounds_samples_total, 1);
}

#[test]
fn restart_replays_every_committed_sample_exemplar_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let tsdb = Tsdb::open(options(dir.path())).unwrap();
        for instance in 0..20 {
            let labels = series_labels("requests_total", instance);
            let samples: Vec<(i64, f64)> =
                (0..50).map(|step| (step * 15_000, (instance * 100 + step as usize) as f64)).collect();
            append_all(&tsdb, &labels, &samples);
            expected.push((labels, samples.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>()));
        }
        expected.sort();
        let mut appender = tsdb.appender();
        let exemplar = Exemplar { labels: Labels::from_pairs([("trace_id", "abc")]), value: 3.0, timestamp_ms: 15_000 };
        appender.append_exemplar(&series_labels("requests_total", 0), exemplar).unwrap();
        appender.update_metadata(
            "requests",
            MetricMetadata { metric_type: MetricType::Counter, help: "Requests.".to_owned(), unit: String::new() },
        );
        appender.commit().unwrap();
        // Dropped without close: as after kill -9, only the WAL segments remain.
    }
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    assert_same(&all_samples(&tsdb, "requests_total"), &expected, "after restart");
    let exemplars = tsdb.exemplars(0, 100_000, &[vec![Matcher::equal("__name__", "requests_total")]]).unwrap();
    assert_eq!(exemplars.len(), 1);
    assert_eq!(exemplars[0].exemplars[0].value, 3.0);
    assert_eq!(tsdb.metadata(Some("requests"), None)[0].1.metric_type, MetricType::Counter);
    assert!(tsdb.stats().wal_replay_records > 0);

    // A graceful close checkpoints; the next start reads the checkpoint and sees the same data.
    tsdb.close().unwrap();
    drop(tsdb);
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    assert_same(&all_samples(&tsdb, "requests_total"), &expected, "after restart");
    assert_eq!(tsdb.exemplars(0, 100_000, &[vec![Matcher::equal("__name__", "requests_total")]]).unwrap().len(), 1);
    assert_eq!(tsdb.metadata(None, None).len(), 1);
    // Appends continue after the restored open chunk.
    append_all(&tsdb, &series_labels("requests_total", 0), &[(50 * 15_000, 7.0)]);
    assert_eq!(all_samples(&tsdb, "requests_total")[0].1.len(), 51);
}

#[test]
fn torn_wal_tail_is_cut_and_earlier_commits_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tsdb = Tsdb::open(options(dir.path())).unwrap();
        append_all(&tsdb, &series_labels("up", 1), &[(1000, 1.0)]);
        append_all(&tsdb, &series_labels("up", 1), &[(2000, 2.0)]);
    }
    let wal_dir = dir.path().join("wal");
    let last = oxeye_wal::segment::list_segments(&wal_dir).unwrap().pop().unwrap();
    let path = oxeye_wal::segment::segment_path(&wal_dir, last);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    let samples = &all_samples(&tsdb, "up")[0].1;
    assert_eq!(samples, &vec![(1000, 1f64.to_bits())]);
}

#[test]
fn second_open_of_a_locked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _tsdb = Tsdb::open(options(dir.path())).unwrap();
    let error = Tsdb::open(options(dir.path())).unwrap_err();
    assert!(matches!(error, crate::TsdbError::Locked { .. }), "{error}");
}

/// Appends one sample per minute for `hours` hours to `count` series, committing every 10 minutes.
fn fill_hours(tsdb: &Tsdb, count: usize, from_hour: i64, hours: i64) {
    let step_ms = 60_000;
    let mut timestamp = from_hour * HOUR_MS;
    while timestamp < (from_hour + hours) * HOUR_MS {
        let mut appender = tsdb.appender();
        for _ in 0..10 {
            for instance in 0..count {
                let value = if instance % 2 == 0 { 1.0 } else { (timestamp / step_ms) as f64 };
                appender.append(&series_labels("metric", instance), Sample { timestamp_ms: timestamp, value }).unwrap();
            }
            timestamp += step_ms;
        }
        appender.commit().unwrap();
    }
}

#[test]
fn select_each_streams_one_block_in_label_order_with_projected_labels_and_merges_block_and_head() {
    // More series than one read batch of `Block::for_each_series`, so batches join.
    let series_count = 1_100;
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    fill_hours(&tsdb, series_count, 0, 5);
    let in_head_only = all_samples(&tsdb, "metric");
    tsdb.run_maintenance().unwrap();
    // [1h, 1h 30m] lies in the block [0, 2h) alone; the head starts later.
    let (mint_ms, maxt_ms) = (HOUR_MS, HOUR_MS + HOUR_MS / 2);
    let stats = tsdb.stats();
    assert_eq!(stats.blocks, 1);
    assert!(stats.head_min_time_ms.is_some_and(|head_min_time_ms| head_min_time_ms > maxt_ms), "{stats:?}");
    let expected: Vec<(Labels, Vec<(i64, u64)>)> = in_head_only
        .iter()
        .map(|(labels, samples)| {
            let window = samples.iter().filter(|(timestamp, _)| (mint_ms..=maxt_ms).contains(timestamp));
            (labels.clone(), window.copied().collect())
        })
        .collect();
    assert_eq!(expected.len(), series_count);
    let matchers = [Matcher::equal("__name__", "metric")];
    let as_bits = |series: oxeye_model::storage::Series| -> (Labels, Vec<(i64, u64)>) {
        (series.labels, series.samples.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect())
    };
    let mut visited = Vec::new();
    tsdb.select_each(mint_ms, maxt_ms, &matchers, &mut |series| {
        visited.push(as_bits(series));
        Ok(())
    })
    .unwrap();
    assert_same(&visited, &expected, "select_each over one block");
    let selected: Vec<_> = tsdb.select(mint_ms, maxt_ms, &matchers).unwrap().into_iter().map(as_bits).collect();
    assert_same(&selected, &expected, "select over one block");
    let mut projected = Vec::new();
    tsdb.select_each_projected(mint_ms, maxt_ms, &matchers, &|name| name == "instance", &mut |series| {
        projected.push(as_bits(series));
        Ok(())
    })
    .unwrap();
    let expected_projected: Vec<_> = expected
        .iter()
        .map(|(labels, samples)| (Labels::from_pairs([("instance", labels.get("instance").unwrap())]), samples.clone()))
        .collect();
    assert_same(&projected, &expected_projected, "select_each_projected over one block");
    // A visitor's error stops the reading and comes back as it was.
    let mut visits = 0;
    let stopped = tsdb.select_each(mint_ms, maxt_ms, &matchers, &mut |_| {
        visits += 1;
        Err(StorageError::LimitExceeded("enough".to_owned()))
    });
    assert!(matches!(stopped, Err(StorageError::LimitExceeded(reason)) if reason == "enough"));
    assert_eq!(visits, 1);
    // Across block and head, with series only the head has, between and after the block's in label
    // order, `select_each` merges what `select` does.
    append_all(&tsdb, &series_labels("metric", 10_500), &[(4 * HOUR_MS + 1, 3.0)]);
    append_all(&tsdb, &series_labels("metric", 99_999), &[(4 * HOUR_MS + 1, 4.0)]);
    let (mint_ms, maxt_ms) = (HOUR_MS, 5 * HOUR_MS);
    let mut merged = Vec::new();
    tsdb.select_each(mint_ms, maxt_ms, &matchers, &mut |series| {
        merged.push(as_bits(series));
        Ok(())
    })
    .unwrap();
    let selected: Vec<_> = tsdb.select(mint_ms, maxt_ms, &matchers).unwrap().into_iter().map(as_bits).collect();
    assert_eq!(selected.len(), series_count + 2);
    assert_same(&merged, &selected, "select_each across block and head");
}

#[test]
fn blocks_are_cut_checkpointed_queried_after_reopen_compacted_and_retained() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.retention_ms = 100 * HOUR_MS;
    let before_cut;
    {
        let tsdb = Tsdb::open(opts.clone()).unwrap();
        fill_hours(&tsdb, 5, 0, 7);
        before_cut = all_samples(&tsdb, "metric");
        assert_eq!(before_cut[0].1.len(), 7 * 60);
        let report = tsdb.run_maintenance().unwrap();
        assert_eq!(report.blocks_cut, 2, "{report:?}");
        assert!(report.checkpointed);
        let stats = tsdb.stats();
        assert_eq!(stats.blocks, 2);
        assert_eq!(stats.blocks_samples, 5 * 4 * 60);
        assert_eq!(stats.head_min_time_ms, Some(4 * HOUR_MS));
        assert_same(&all_samples(&tsdb, "metric"), &before_cut, "blocks and head together hold everything");
        // Too old for the head now.
        let mut appender = tsdb.appender();
        let error = appender.append(&series_labels("metric", 0), Sample { timestamp_ms: 3 * HOUR_MS, value: 1.0 });
        assert!(matches!(error, Err(StorageError::OutOfBounds { .. })));
    }
    {
        let tsdb = Tsdb::open(opts.clone()).unwrap();
        assert_eq!(tsdb.stats().blocks, 2);
        assert_same(&all_samples(&tsdb, "metric"), &before_cut, "same data after a crash and reopen");
        // Fill up to hour 14: blocks [4h,6h), [6h,8h), [8h,10h), [10h,12h) are cut; [0,6h) then [6h,12h)
        // windows are complete and merged.
        fill_hours(&tsdb, 5, 7, 7);
        let report = tsdb.run_maintenance().unwrap();
        assert_eq!(report.blocks_cut, 4, "{report:?}");
        assert_eq!(report.blocks_compacted, 2, "{report:?}");
        let stats = tsdb.stats();
        assert_eq!(stats.blocks, 2);
        let samples = all_samples(&tsdb, "metric");
        assert_eq!(samples[0].1.len(), 14 * 60);
        assert_eq!(samples[0].1[..7 * 60], before_cut[0].1[..]);
        let bytes_per_sample = stats.blocks_bytes as f64 / stats.blocks_samples as f64;
        assert!(bytes_per_sample < 1.0, "{bytes_per_sample} bytes per sample on disk");
        tsdb.close().unwrap();
    }
    {
        let mut short = opts.clone();
        short.retention_ms = 4 * HOUR_MS;
        let tsdb = Tsdb::open(short).unwrap();
        assert_eq!(all_samples(&tsdb, "metric")[0].1.len(), 14 * 60);
        let report = tsdb.run_maintenance().unwrap();
        // Only blocks wholly older than 4 h before the newest sample go: [0, 6h) but not [6h, 12h).
        assert_eq!(report.blocks_deleted, 1, "{report:?}");
        let samples = all_samples(&tsdb, "metric");
        assert_eq!(samples[0].1.first().map(|(t, _)| *t), Some(6 * HOUR_MS));
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "wal" && name != "lock" && name != "chunks_head")
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}

#[test]
fn size_retention_deletes_oldest_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.retention_size_bytes = Some(1);
    opts.max_block_duration_ms = Some(2 * HOUR_MS);
    let tsdb = Tsdb::open(opts).unwrap();
    fill_hours(&tsdb, 3, 0, 6);
    let report = tsdb.run_maintenance().unwrap();
    assert_eq!(report.blocks_cut, 2);
    assert_eq!(report.blocks_deleted, 2);
    assert_eq!(tsdb.stats().blocks, 0);
    assert_eq!(tsdb.stats().retention_deleted_blocks_total, 2);
}

#[test]
fn concurrent_appenders_all_land_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tsdb = Tsdb::open(options(dir.path())).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let tsdb = Arc::clone(&tsdb);
                std::thread::spawn(move || {
                    for step in 0..50 {
                        let mut appender = tsdb.appender();
                        for instance in 0..20 {
                            let labels = series_labels(&format!("thread_{thread}"), instance);
                            let sample = Sample { timestamp_ms: step * 1000, value: step as f64 };
                            appender.append(&labels, sample).unwrap();
                        }
                        appender.commit().unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = tsdb.stats();
        assert_eq!(stats.head_samples_appended_total, 4 * 50 * 20);
        assert_eq!(stats.head_series, 80);
    }
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    for thread in 0..4 {
        let series = all_samples(&tsdb, &format!("thread_{thread}"));
        assert_eq!(series.len(), 20);
        assert!(series.iter().all(|(_, samples)| samples.len() == 50));
    }
}

#[test]
fn a_far_future_sample_does_not_make_maintenance_cut_empty_blocks_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    // Otherwise retention, measured from the newest sample, deletes the real data at once.
    opts.retention_ms = 100 * 365 * 24 * HOUR_MS;
    let tsdb = Tsdb::open(opts).unwrap();
    fill_hours(&tsdb, 2, 0, 1);
    // A sample ten years ahead (one bad client clock).
    append_all(&tsdb, &series_labels("metric", 0), &[(10 * 365 * 24 * HOUR_MS, 1.0)]);
    let report = tsdb.run_maintenance().unwrap();
    assert_eq!(report.blocks_cut, 1, "{report:?}");
    assert_eq!(all_samples(&tsdb, "metric")[0].1.len(), 61);
}

#[test]
fn commits_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    let mut appender = tsdb.appender();
    appender.append(&series_labels("up", 1), Sample { timestamp_ms: 1, value: 1.0 }).unwrap();
    tsdb.close().unwrap();
    assert!(matches!(appender.commit(), Err(StorageError::Unavailable(_))));
    assert!(matches!(tsdb.run_maintenance(), Err(crate::TsdbError::Closed)));
    tsdb.close().unwrap();
}

#[test]
fn maintenance_thread_cuts_blocks_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    fill_hours(&tsdb, 2, 0, 4);
    let thread = tsdb.start_maintenance(std::time::Duration::from_millis(1)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tsdb.stats().blocks == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    thread.stop();
    assert_eq!(tsdb.stats().blocks, 1);
    assert_eq!(tsdb.stats().maintenance_failures_total, 0);
}

/// Regression: while a block was being written, the head already hid its range, so queries saw a gap.
#[test]
fn queries_during_block_cuts_see_every_sample_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.block_duration_ms = 20_000;
    let tsdb = Tsdb::open(opts).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let tsdb = Arc::clone(&tsdb);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut round = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < 3000 {
                append_all(&tsdb, &series_labels("moving", 0), &[(round * 1000, round as f64)]);
                round += 1;
            }
        })
    };
    let maintenance = {
        let tsdb = Arc::clone(&tsdb);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tsdb.run_maintenance().unwrap();
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() {
        for series in tsdb.select(i64::MIN, i64::MAX, &[Matcher::equal("__name__", "moving")]).unwrap() {
            let timestamps: Vec<i64> = series.samples.iter().map(|sample| sample.timestamp_ms).collect();
            let expected: Vec<i64> = (0..timestamps.len() as i64).map(|round| round * 1000).collect();
            assert_eq!(timestamps, expected, "gap or duplicate after {checks} checks");
            checks += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    maintenance.join().unwrap();
    assert!(tsdb.stats().blocks > 0);
    assert_eq!(all_samples(&tsdb, "moving")[0].1.len(), 3000);
}

#[test]
fn a_growing_wal_is_checkpointed_between_block_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.wal_checkpoint_min_bytes = 1;
    opts.wal_segment_size_bytes = 4096;
    let tsdb = Tsdb::open(opts.clone()).unwrap();
    // One commit per sample round: record framing and series references make the WAL outgrow the
    // head's chunks (compact sample records alone are only a few bytes per sample).
    for round in 0..720i64 {
        let mut appender = tsdb.appender();
        for instance in 0..5 {
            let value = if instance % 2 == 0 { 1.0 } else { round as f64 * 0.25 };
            appender.append(&series_labels("metric", instance), Sample { timestamp_ms: round * 5_000, value }).unwrap();
        }
        appender.commit().unwrap();
    }
    let wal_before = tsdb.stats().wal_bytes;
    let report = tsdb.run_maintenance().unwrap();
    assert_eq!(report.blocks_cut, 0);
    assert!(report.checkpointed, "{report:?}");
    let wal_after = tsdb.stats().wal_bytes;
    assert!(wal_after < wal_before / 2, "{wal_before} -> {wal_after} bytes");
    let before = all_samples(&tsdb, "metric");
    drop(tsdb);
    let tsdb = Tsdb::open(opts).unwrap();
    assert_same(&all_samples(&tsdb, "metric"), &before, "after a checkpoint without a block cut");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn block_dirs(data_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("meta.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// A crash after a compacted block was written but before its parents were deleted leaves overlapping
/// blocks; the next start deletes the parents instead of serving every sample twice.
#[test]
fn blocks_already_merged_are_removed_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.retention_ms = 100 * HOUR_MS;
    let tsdb = Tsdb::open(opts.clone()).unwrap();
    fill_hours(&tsdb, 3, 0, 7);
    tsdb.run_maintenance().unwrap();
    let parents = block_dirs(dir.path());
    assert_eq!(parents.len(), 2);
    for parent in &parents {
        copy_dir(parent, &backup.path().join(parent.file_name().unwrap()));
    }
    fill_hours(&tsdb, 3, 7, 2);
    let report = tsdb.run_maintenance().unwrap();
    assert_eq!(report.blocks_compacted, 1, "{report:?}");
    let expected = all_samples(&tsdb, "metric");
    drop(tsdb);
    for parent in &parents {
        copy_dir(&backup.path().join(parent.file_name().unwrap()), parent);
    }
    assert_eq!(block_dirs(dir.path()).len(), 3, "parents restored beside the merged block");
    let tsdb = Tsdb::open(opts).unwrap();
    assert_eq!(tsdb.stats().blocks, 1);
    assert_same(&all_samples(&tsdb, "metric"), &expected, "after removing merged parents");
}

#[test]
fn closed_head_chunks_move_to_disk_and_stay_readable_through_cuts_checkpoints_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.retention_ms = 100 * HOUR_MS;
    let tsdb = Tsdb::open(opts.clone()).unwrap();
    // Three hours: the chunk of the first two is closed, the third hour's is open.
    fill_hours(&tsdb, 4, 0, 3);
    let expected = all_samples(&tsdb, "metric");
    let memory_before = tsdb.head_chunk_bytes();
    let report = tsdb.run_maintenance().unwrap();
    assert!(report.head_chunks_moved_to_disk > 0, "{report:?}");
    assert!(tsdb.head_chunk_bytes() < memory_before, "{} -> {}", memory_before, tsdb.head_chunk_bytes());
    assert!(tsdb.stats().head_chunk_files_bytes > 0);
    assert_same(&all_samples(&tsdb, "metric"), &expected, "after moving chunks to disk");
    // A window inside one moved chunk.
    let inside = tsdb.select(30 * 60_000, 31 * 60_000, &[Matcher::equal("__name__", "metric")]).unwrap();
    assert_eq!(inside[0].samples.len(), 2);
    // Cut a block from chunks on disk, checkpoint them, and restart.
    fill_hours(&tsdb, 4, 3, 2);
    let expected = all_samples(&tsdb, "metric");
    let report = tsdb.run_maintenance().unwrap();
    assert_eq!(report.blocks_cut, 1, "{report:?}");
    assert_same(&all_samples(&tsdb, "metric"), &expected, "after a cut from moved chunks");
    tsdb.close().unwrap();
    drop(tsdb);
    let tsdb = Tsdb::open(opts).unwrap();
    assert_same(&all_samples(&tsdb, "metric"), &expected, "after restart");
    tsdb.run_maintenance().unwrap();
    assert_same(&all_samples(&tsdb, "metric"), &expected, "after moving restored chunks");
}

#[test]
fn borrowed_label_appends_find_existing_series_and_create_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    let refs = [
        oxeye_model::LabelRef { name: "__name__", value: "revel_tickets_sold_total" },
        oxeye_model::LabelRef { name: "job", value: "django" },
    ];
    // New series through the borrowed path, then the same series again in later batches.
    for (timestamp_ms, value) in [(1_000, 1.0), (2_000, 2.0)] {
        let mut appender = tsdb.appender();
        appender.append_ref(&refs, Sample { timestamp_ms, value }).unwrap();
        appender.commit().unwrap();
    }
    let mut appender = tsdb.appender();
    let error = appender.append_ref(&refs, Sample { timestamp_ms: 1_500, value: 3.0 }).unwrap_err();
    assert!(
        matches!(&error, StorageError::OutOfOrderSample { series, .. } if series.contains("revel_tickets_sold_total")),
        "{error}"
    );
    appender.rollback();
    let owned = Labels::from_refs(&refs);
    let stored = all_samples(&tsdb, "revel_tickets_sold_total");
    assert_same(&stored, &[(owned, vec![(1_000, 1f64.to_bits()), (2_000, 2f64.to_bits())])], "borrowed appends");
    assert_eq!(tsdb.stats().head_series, 1);
}

/// The raw protobuf `labels` fields of a remote_write 1.0 `TimeSeries` for these (sorted) pairs.
fn protobuf_labels(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (name, value) in pairs {
        let field_length = name.len() + value.len() + 4;
        bytes.extend_from_slice(&[0x0a, field_length as u8, 0x0a, name.len() as u8]);
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&[0x12, value.len() as u8]);
        bytes.extend_from_slice(value.as_bytes());
    }
    bytes
}

#[test]
fn series_cached_by_protobuf_labels_are_appended_by_reference() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    let pairs = [("__name__", "revel_tickets_sold_total"), ("job", "django")];
    let refs: Vec<oxeye_model::LabelRef<'_>> =
        pairs.iter().map(|(name, value)| oxeye_model::LabelRef { name, value }).collect();
    let raw = protobuf_labels(&pairs);
    // Unknown bytes: not found; the series is created by labels and its bytes remembered.
    let mut appender = tsdb.appender();
    assert!(appender.hold_protobuf_labels(&raw).is_none());
    appender.append_ref(&refs, Sample { timestamp_ms: 1_000, value: 1.0 }).unwrap();
    appender.cache_protobuf_labels(&raw, &refs);
    appender.commit().unwrap();
    // Bytes that do not encode these labels (another value) are never cached.
    let other = protobuf_labels(&[("__name__", "revel_tickets_sold_total"), ("job", "celery")]);
    let mut appender = tsdb.appender();
    appender.cache_protobuf_labels(&other, &refs);
    assert!(appender.hold_protobuf_labels(&other).is_none());
    let held = appender.hold_protobuf_labels(&raw).expect("cached");
    appender.append_held(held, Sample { timestamp_ms: 2_000, value: 2.0 }).unwrap();
    let error = appender.append_held(held, Sample { timestamp_ms: 1_500, value: 3.0 }).unwrap_err();
    assert!(
        matches!(&error, StorageError::OutOfOrderSample { series, .. } if series.contains("revel_tickets_sold_total")),
        "{error}"
    );
    appender.commit().unwrap();
    let stored = all_samples(&tsdb, "revel_tickets_sold_total");
    let expected = [(Labels::from_refs(&refs), vec![(1_000, 1f64.to_bits()), (2_000, 2f64.to_bits())])];
    assert_same(&stored, &expected, "appends by reference");
    assert_eq!(tsdb.stats().head_series, 1);
    // Survives a restart of the data (WAL replay) as a normal series; the cache starts empty again.
    tsdb.close().unwrap();
    drop(tsdb);
    let tsdb = Tsdb::open(options(dir.path())).unwrap();
    assert_same(&all_samples(&tsdb, "revel_tickets_sold_total"), &expected, "after restart");
    let mut appender = tsdb.appender();
    assert!(appender.hold_protobuf_labels(&raw).is_none());
    appender.rollback();
}

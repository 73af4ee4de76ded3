//! Metrics over the seed traces: six traces one second apart.

use super::*;
use crate::parse;
use crate::testing::{MemoryTraceStore, seed_traces};

// A multiple of 2 s and 6 s, so steps start at the first trace.
const BASE: u64 = 1_700_000_004_000_000_000;
const SECOND: u64 = 1_000_000_000;

fn run(query: &str, step_seconds: u64) -> Vec<MetricsSeries> {
    let store = MemoryTraceStore::with_traces(seed_traces(BASE));
    let range =
        MetricsRange { start_unix_nano: BASE, end_unix_nano: BASE + 6 * SECOND, step_nanos: step_seconds * SECOND };
    query_range(&store, &parse(query).unwrap(), range).unwrap()
}

fn values(series: &MetricsSeries) -> Vec<f64> {
    series.samples.iter().map(|(_, value)| *value).collect()
}

#[test]
fn rate_and_count_over_time_fill_every_step() {
    let series = run("{ kind = server } | count_over_time()", 2);
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].prom_labels(), r#"{__name__="count_over_time"}"#);
    assert_eq!(values(&series[0]), vec![2.0, 2.0, 1.0]);
    let base_ms = (BASE / 1_000_000) as i64;
    assert_eq!(series[0].samples.iter().map(|(ts, _)| ts - base_ms).collect::<Vec<_>>(), vec![0, 2000, 4000]);
    let rate = run("{ kind = server } | rate()", 2);
    assert_eq!(values(&rate[0]), vec![1.0, 1.0, 0.5]);
}

#[test]
fn by_splits_series_and_labels_them() {
    let series = run("{ } | count_over_time() by (resource.service.name)", 6);
    let labels: Vec<String> = series.iter().map(MetricsSeries::prom_labels).collect();
    assert_eq!(labels, vec![r#"{resource.service.name="boxoffice"}"#, r#"{resource.service.name="boxoffice-worker"}"#]);
    assert_eq!(values(&series[0]), vec![15.0]);
    assert_eq!(values(&series[1]), vec![1.0]);
    let errors = run("{ status = error } | rate() by (name, kind)", 6);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].prom_labels(), r#"{name="POST /tickets/checkout/", kind="server"}"#);
}

#[test]
fn quantiles_in_seconds_with_p_labels() {
    let series = run("{ kind = server } | quantile_over_time(duration, 0, .5, 1)", 6);
    assert_eq!(series.len(), 3);
    assert_eq!(series[1].prom_labels(), r#"{__name__="quantile_over_time", p="0.5"}"#);
    // Server spans: 0.12, 0.3, 2.5, 0.09, 0.08 s.
    assert_eq!(values(&series[0]), vec![0.08]);
    assert_eq!(values(&series[1]), vec![0.12]);
    assert_eq!(values(&series[2]), vec![2.5]);
}

#[test]
fn histogram_buckets_are_powers_of_two() {
    let series = run("{ kind = server } | histogram_over_time(duration)", 6);
    let buckets: Vec<(String, f64)> =
        series.iter().map(|one| (one.labels.last().unwrap().value.text(), values(one).iter().sum())).collect();
    // 80 ms and 90 ms and 120 ms fall under 2^27 ns = 0.134 s; 300 ms under 2^29 ns; 2.5 s under 2^32 ns.
    assert_eq!(
        buckets,
        vec![("0.134217728".to_string(), 3.0), ("0.536870912".to_string(), 1.0), ("4.294967296".to_string(), 1.0)]
    );
}

#[test]
fn min_max_avg_sum_over_time() {
    assert_eq!(values(&run("{ kind = client } | max_over_time(duration)", 6)[0]), vec![2.3]);
    assert_eq!(values(&run("{ kind = client } | min_over_time(duration)", 6)[0]), vec![0.002]);
    assert_eq!(values(&run("{ span.ticket.quantity != nil } | sum_over_time(span.ticket.quantity)", 6)[0]), vec![4.0]);
    let average = values(&run("{ kind = server } | avg_over_time(duration)", 6)[0])[0];
    assert!((average - 0.618).abs() < 1e-9, "{average}");
}

#[test]
fn instant_queries_cover_the_window_exactly() {
    let store = MemoryTraceStore::with_traces(seed_traces(BASE));
    let query = parse("{ kind = server } | count_over_time() by (resource.service.name)").unwrap();
    let result = query_instant(&store, &query, BASE + 500_000_000, BASE + 3 * SECOND).unwrap();
    assert_eq!(result.len(), 1);
    assert_eq!(result[0].1, 2.0);
}

#[test]
fn bad_requests_are_refused() {
    let store = MemoryTraceStore::with_traces(Vec::new());
    let range = MetricsRange { start_unix_nano: BASE, end_unix_nano: BASE + SECOND, step_nanos: 0 };
    assert!(query_range(&store, &parse("{ } | rate()").unwrap(), range).is_err());
    let range = MetricsRange { step_nanos: SECOND, ..range };
    assert!(query_range(&store, &parse("{ }").unwrap(), range).is_err());
    assert!(query_range(&store, &parse("{ } | rate()").unwrap(), range).unwrap().is_empty());
}

#[test]
fn topk_and_bottomk_keep_extreme_series_per_step() {
    let top = run("{ } | count_over_time() by (resource.service.name) | topk(1)", 6);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].prom_labels(), r#"{resource.service.name="boxoffice"}"#);
    let bottom = run("{ } | count_over_time() by (resource.service.name) with(sample=true) | bottomk(1)", 6);
    assert_eq!(bottom.len(), 1);
    assert_eq!(bottom[0].prom_labels(), r#"{resource.service.name="boxoffice-worker"}"#);
}

#[test]
fn root_spans_by_nested_set_parent_as_drilldown_asks() {
    let series = run("{ nestedSetParent < 0 && true } | rate() by (resource.service.name)", 6);
    assert_eq!(series.len(), 1);
    // Five traces have a root; trace 6's root never arrived.
    assert_eq!(values(&series[0]), vec![5.0 / 6.0]);
}

/// Intrinsic-only metrics read span columns from blocks; the same query forced through whole traces (a
/// `select` stage keeps every span but needs the trace) and over an in-memory store must give the same series.
#[test]
fn span_columns_of_blocks_give_the_same_series_as_whole_traces() {
    let dir = tempfile::tempdir().unwrap();
    let store = oxeye_tracestore::TraceStore::open(oxeye_tracestore::TraceStoreOptions::new(dir.path())).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = (now - 600 * SECOND) / SECOND * SECOND;
    let traces: Vec<oxeye_model::traces::Trace> =
        (0..300).map(|number| crate::testing::synthetic_trace(number, start + number * SECOND)).collect();
    let memory = MemoryTraceStore::with_traces(traces.clone());
    use oxeye_model::traces::TraceWriter;
    for (index, trace) in traces.into_iter().enumerate() {
        store.push(trace.resource_spans).unwrap();
        // Two blocks and a head, so both reading paths and the merge of their results are exercised.
        if index == 100 || index == 200 {
            store.cut_block().unwrap();
        }
    }
    let range = MetricsRange {
        start_unix_nano: start + 30 * SECOND,
        end_unix_nano: start + 270 * SECOND,
        step_nanos: 20 * SECOND,
    };
    for (columns_query, traces_query) in [
        ("{ } | rate() by (resource.service.name)", "{ } | select(span.x) | rate() by (resource.service.name)"),
        (
            "{ kind = server } | quantile_over_time(duration, .5, .9, .99)",
            "{ kind = server } | select(span.x) | quantile_over_time(duration, .5, .9, .99)",
        ),
        (
            r#"{ status = error || name =~ "SELECT.*" } | count_over_time() by (name, status)"#,
            r#"{ status = error || name =~ "SELECT.*" } | select(span.x) | count_over_time() by (name, status)"#,
        ),
        (
            "{ duration > 100ms } | histogram_over_time(duration) by (kind)",
            "{ duration > 100ms } | select(span.x) | histogram_over_time(duration) by (kind)",
        ),
    ] {
        let columns = parse(columns_query).unwrap();
        assert!(columns::span_columns_for(&columns).is_some(), "{columns_query}");
        let traces = parse(traces_query).unwrap();
        assert!(columns::span_columns_for(&traces).is_none(), "{traces_query}");
        let from_columns = query_range(store.as_ref(), &columns, range).unwrap();
        assert!(!from_columns.is_empty(), "{columns_query}");
        assert_eq!(from_columns, query_range(store.as_ref(), &traces, range).unwrap(), "{columns_query}");
        assert_eq!(from_columns, query_range(&memory, &columns, range).unwrap(), "{columns_query}");
    }
}

/// A head span whose `service.name` is an integer: the columns path read it as missing while the whole-trace
/// path grouped it under its value.
#[test]
fn a_non_string_service_name_reads_the_same_on_span_columns_as_on_whole_traces() {
    use oxeye_model::traces::{Attribute, AttributeValue, TraceWriter};
    let dir = tempfile::tempdir().unwrap();
    let store = oxeye_tracestore::TraceStore::open(oxeye_tracestore::TraceStoreOptions::new(dir.path())).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = (now - 60 * SECOND) / SECOND * SECOND;
    let mut trace = crate::testing::synthetic_trace(1, start + SECOND);
    for batch in &mut trace.resource_spans {
        batch.resource.attributes.retain(|attribute| attribute.key != "service.name");
        batch.resource.attributes.push(Attribute { key: "service.name".into(), value: AttributeValue::Int(7) });
    }
    store.push(trace.resource_spans).unwrap();
    let range = MetricsRange { start_unix_nano: start, end_unix_nano: start + 10 * SECOND, step_nanos: 10 * SECOND };
    let columns = parse("{ } | count_over_time() by (resource.service.name)").unwrap();
    let traces = parse("{ } | select(span.x) | count_over_time() by (resource.service.name)").unwrap();
    let from_columns = query_range(store.as_ref(), &columns, range).unwrap();
    assert_eq!(from_columns, query_range(store.as_ref(), &traces, range).unwrap());
    assert_eq!(from_columns.len(), 1);
    assert_eq!(from_columns[0].prom_labels(), r#"{resource.service.name="7"}"#);
}

//! `data.stats` of `/api/v1/query` and `/api/v1/query_range` when the request has a `stats` parameter,
//! shaped as Prometheus 2.42 writes it (`util/stats.BuiltinStats`):
//!
//! ```json
//! "stats": {
//!   "timings": {"evalTotalTime": 0.0012, "resultSortTime": 0, "queryPreparationTime": 0.0003,
//!               "innerEvalTime": 0.0009, "execQueueTime": 0, "execTotalTime": 0.0012},
//!   "samples": {"totalQueryableSamplesPerStep": [[1435781451.781, 5]],
//!               "totalQueryableSamples": 5, "peakSamples": 5}
//! }
//! ```
//!
//! Times are seconds; `totalQueryableSamplesPerStep` (a `[unix seconds, samples]` pair per step) only
//! with `stats=all`.

use std::fmt::Write;
use std::time::Duration;

use oxeye_promql::{QueryResult, QueryStats};

use crate::query_json::{render_query_result, write_json_string, write_timestamp};

/// Renders a successful query response with `data.stats`; `per_step` adds
/// `totalQueryableSamplesPerStep` (Prometheus does so for `stats=all`). `exec_total` is the time from
/// receiving the query to the end of evaluation (`execTotalTime`), `exec_queue` the part of it spent
/// waiting for a worker (`execQueueTime`).
pub(crate) fn render_query_result_with_stats(
    result: &QueryResult,
    stats: &QueryStats,
    per_step: bool,
    exec_queue: Duration,
    exec_total: Duration,
) -> String {
    let bare = QueryResult { value: result.value.clone(), warnings: Vec::new(), infos: Vec::new() };
    let mut out = render_query_result(&bare);
    // `{"status":"success","data":{...}}`: reopen the data object to append its `stats`.
    debug_assert!(out.ends_with("}}"));
    out.truncate(out.len().saturating_sub(2));
    out.push_str(",\"stats\":{\"timings\":{");
    let timings = [
        ("evalTotalTime", stats.eval_total),
        ("resultSortTime", stats.result_sort),
        ("queryPreparationTime", stats.query_preparation),
        ("innerEvalTime", stats.inner_eval),
        ("execQueueTime", exec_queue),
        ("execTotalTime", exec_total),
    ];
    for (index, (name, duration)) in timings.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{}", go_json_float(duration.as_secs_f64()));
    }
    out.push_str("},\"samples\":{");
    if per_step && !stats.total_queryable_samples_per_step.is_empty() {
        out.push_str("\"totalQueryableSamplesPerStep\":[");
        for (index, (timestamp_ms, samples)) in stats.total_queryable_samples_per_step.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push('[');
            write_timestamp(&mut out, *timestamp_ms);
            let _ = write!(out, ",{samples}]");
        }
        out.push_str("],");
    }
    let _ = write!(
        out,
        "\"totalQueryableSamples\":{},\"peakSamples\":{}}}}}}}",
        stats.total_queryable_samples, stats.peak_samples
    );
    // The data object is closed; the annotations follow it, then the envelope closes.
    for (key, notes) in [("warnings", &result.warnings), ("infos", &result.infos)] {
        if notes.is_empty() {
            continue;
        }
        let _ = write!(out, ",\"{key}\":[");
        for (index, note) in notes.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_json_string(&mut out, note);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// A float as Go's `encoding/json` writes it: plain decimal digits, exponent form below 1e-6.
fn go_json_float(value: f64) -> String {
    if value != 0.0 && value.abs() < 1e-6 {
        let text = format!("{value:e}");
        if let Some((mantissa, exponent)) = text.split_once('e') {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exponent),
            };
            return format!("{mantissa}e{sign}{digits:0>2}");
        }
        return text;
    }
    format!("{value}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oxeye_promql::Value;

    #[test]
    fn stats_go_inside_data_before_the_annotations() {
        let result = QueryResult {
            value: Value::Scalar { timestamp_ms: 4000, value: 2.0 },
            warnings: vec!["PromQL warning: x".into()],
            infos: Vec::new(),
        };
        let stats = QueryStats {
            eval_total: Duration::from_millis(2),
            query_preparation: Duration::from_millis(1),
            inner_eval: Duration::from_millis(1),
            result_sort: Duration::ZERO,
            total_queryable_samples: 7,
            peak_samples: 3,
            total_queryable_samples_per_step: vec![(4000, 7)],
        };
        let body = render_query_result_with_stats(&result, &stats, true, Duration::ZERO, Duration::from_millis(3));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["data"]["result"], serde_json::json!([4, "2"]));
        assert_eq!(json["data"]["stats"]["timings"]["evalTotalTime"], 0.002);
        assert_eq!(json["data"]["stats"]["timings"]["execTotalTime"], 0.003);
        assert_eq!(json["data"]["stats"]["timings"]["execQueueTime"], 0);
        assert_eq!(json["data"]["stats"]["samples"]["totalQueryableSamples"], 7);
        assert_eq!(json["data"]["stats"]["samples"]["peakSamples"], 3);
        assert_eq!(json["data"]["stats"]["samples"]["totalQueryableSamplesPerStep"], serde_json::json!([[4, 7]]));
        assert_eq!(json["warnings"], serde_json::json!(["PromQL warning: x"]));

        let without_steps =
            render_query_result_with_stats(&result, &stats, false, Duration::ZERO, Duration::from_millis(3));
        let json: serde_json::Value = serde_json::from_str(&without_steps).unwrap();
        assert!(json["data"]["stats"]["samples"].get("totalQueryableSamplesPerStep").is_none());
    }

    #[test]
    fn tiny_durations_use_go_exponents() {
        assert_eq!(go_json_float(5e-7), "5e-07");
        assert_eq!(go_json_float(0.000012), "0.000012");
        assert_eq!(go_json_float(0.0), "0");
    }
}

//! The JSON of `/api/v1/query` and `/api/v1/query_range` results, written by hand for speed and for
//! byte-exact timestamps and values.
//!
//! Shapes (<https://prometheus.io/docs/prometheus/latest/querying/api/#expression-query-result-formats>):
//! vector `[{"metric":{..},"value":[1435781451.781,"1"]}]`, matrix `[{"metric":{..},"values":[[t,"v"],..]}]`,
//! scalar and string `[t,"v"]`. Timestamps are Unix seconds with up to three decimals, values strings.

use std::fmt::Write;

use oxeye_model::Labels;
use oxeye_promql::{QueryResult, Value, format_float};

/// Appends a timestamp in milliseconds as Prometheus' `marshalTimestamp` does: `1435781451.781`, `4`,
/// `1.5`.
pub fn write_timestamp(out: &mut String, timestamp_ms: i64) {
    let seconds = timestamp_ms.div_euclid(1000);
    let milliseconds = timestamp_ms.rem_euclid(1000);
    if timestamp_ms < 0 && milliseconds != 0 {
        // -1.5 s is -1500 ms: print the sign and the absolute value.
        let absolute = timestamp_ms.unsigned_abs();
        let _ = write!(out, "-{}", absolute / 1000);
        write_fraction(out, absolute % 1000);
        return;
    }
    let _ = write!(out, "{seconds}");
    write_fraction(out, milliseconds.unsigned_abs());
}

fn write_fraction(out: &mut String, milliseconds: u64) {
    if milliseconds == 0 {
        return;
    }
    let digits = format!("{milliseconds:03}");
    out.push('.');
    out.push_str(digits.trim_end_matches('0'));
}

/// Appends a JSON string literal.
pub fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            control if (control as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Appends a label set as a JSON object.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_json_string(out, &label.name);
        out.push(':');
        write_json_string(out, &label.value);
    }
    out.push('}');
}

fn write_point(out: &mut String, timestamp_ms: i64, value: &str) {
    out.push('[');
    write_timestamp(out, timestamp_ms);
    out.push_str(",\"");
    out.push_str(value);
    out.push_str("\"]");
}

/// Renders a successful query response: `{"status":"success","data":{"resultType":..,"result":..},
/// "warnings":[..],"infos":[..]}` (the annotation arrays only when non-empty, as Prometheus).
pub fn render_query_result(result: &QueryResult) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":\"");
    out.push_str(result.value.type_name());
    out.push_str("\",\"result\":");
    match &result.value {
        Value::Scalar { timestamp_ms, value } => write_point(&mut out, *timestamp_ms, &format_float(*value)),
        Value::String { timestamp_ms, value } => {
            out.push('[');
            write_timestamp(&mut out, *timestamp_ms);
            out.push(',');
            write_json_string(&mut out, value);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (index, sample) in samples.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &sample.labels);
                out.push_str(",\"value\":");
                write_point(&mut out, sample.timestamp_ms, &format_float(sample.value));
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series_list) => {
            out.push('[');
            for (index, series) in series_list.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &series.labels);
                out.push_str(",\"values\":[");
                for (point_index, sample) in series.samples.iter().enumerate() {
                    if point_index > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, sample.timestamp_ms, &format_float(sample.value));
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
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

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp(milliseconds: i64) -> String {
        let mut out = String::new();
        write_timestamp(&mut out, milliseconds);
        out
    }

    #[test]
    fn timestamps_like_prometheus() {
        assert_eq!(timestamp(4000), "4");
        assert_eq!(timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(timestamp(1500), "1.5");
        assert_eq!(timestamp(10), "0.01");
        assert_eq!(timestamp(-1500), "-1.5");
        assert_eq!(timestamp(-2000), "-2");
    }

    #[test]
    fn grafana_save_and_test_scalar() {
        let result = QueryResult {
            value: Value::Scalar { timestamp_ms: 4000, value: 2.0 },
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        assert_eq!(
            render_query_result(&result),
            r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
        );
    }
}

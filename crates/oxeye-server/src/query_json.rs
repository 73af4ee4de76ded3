//! The JSON of `/api/v1/query` and `/api/v1/query_range` results, written by hand for speed and for
//! byte-exact timestamps and values.
//!
//! Shapes (<https://prometheus.io/docs/prometheus/latest/querying/api/#expression-query-result-formats>):
//! vector `[{"metric":{..},"value":[1435781451.781,"1"]}]`, matrix `[{"metric":{..},"values":[[t,"v"],..]}]`,
//! scalar and string `[t,"v"]`. Timestamps are Unix seconds with up to three decimals, values strings.

use std::fmt::Write;

use oxeye_model::Labels;
use oxeye_promql::{QueryResult, Value, write_float};

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
    // Three digits without their trailing zeros: 500 is ".5", 10 is ".01".
    let digits = [
        b'0' + (milliseconds / 100 % 10) as u8,
        b'0' + (milliseconds / 10 % 10) as u8,
        b'0' + (milliseconds % 10) as u8,
    ];
    let mut length = digits.len();
    while length > 1 && digits[length - 1] == b'0' {
        length -= 1;
    }
    out.push('.');
    for digit in &digits[..length] {
        out.push(char::from(*digit));
    }
}

/// Appends a JSON string literal, escaped as Go's `encoding/json` escapes it (`<`, `>` and `&` too).
/// Every byte that needs escaping is ASCII, so the text between them is copied a run at a time.
pub fn write_json_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut clean_from = 0;
    for (position, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'<' => "\\u003c",
            b'>' => "\\u003e",
            b'&' => "\\u0026",
            control if control < 0x20 => "",
            _ => continue,
        };
        out.push_str(&text[clean_from..position]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        clean_from = position + 1;
    }
    out.push_str(&text[clean_from..]);
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

fn write_point(out: &mut String, timestamp_ms: i64, value: f64) {
    out.push('[');
    write_timestamp(out, timestamp_ms);
    out.push_str(",\"");
    write_float(out, value);
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
        Value::Scalar { timestamp_ms, value } => write_point(&mut out, *timestamp_ms, *value),
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
                write_point(&mut out, sample.timestamp_ms, sample.value);
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
                    write_point(&mut out, sample.timestamp_ms, sample.value);
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
    fn strings_escaped_like_go() {
        let mut out = String::new();
        write_json_string(&mut out, "a\"b\\c\nd<é>&\u{1}\tz");
        assert_eq!(out, r#""a\"b\\c\nd\u003cé\u003e\u0026\u0001\tz""#);
        let mut plain = String::new();
        write_json_string(&mut plain, "django_http_requests_total");
        assert_eq!(plain, "\"django_http_requests_total\"");
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

//! Query results, shaped like Prometheus' `promql.Value` and the `/api/v1/query` JSON result types.

use oxeye_model::{Labels, Sample};

/// One sample of an instant vector: the series' labels, the evaluation timestamp and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// The series' labels (the metric name is dropped by most functions and arithmetic).
    pub labels: Labels,
    /// Evaluation timestamp in milliseconds (not the stored sample's timestamp).
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

/// One series of a range vector: labels and samples oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Samples in ascending timestamp order (milliseconds).
    pub samples: Vec<Sample>,
}

/// The result of a query, as Prometheus' `resultType`s `scalar`, `string`, `vector` and `matrix`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A single number at the evaluation timestamp (milliseconds).
    Scalar {
        /// Evaluation timestamp in milliseconds.
        timestamp_ms: i64,
        /// The value.
        value: f64,
    },
    /// A string literal at the evaluation timestamp (milliseconds).
    String {
        /// Evaluation timestamp in milliseconds.
        timestamp_ms: i64,
        /// The string.
        value: String,
    },
    /// An instant vector (instant queries only).
    Vector(Vec<VectorSample>),
    /// A range vector: the result of every range query (sorted by labels), or of an instant query of a
    /// range selector or subquery.
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// The Prometheus `resultType` name: `scalar`, `string`, `vector` or `matrix`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// What a query returned: the value plus Prometheus' annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The result.
    pub value: Value,
    /// Warnings (Prometheus `warnings`), each starting with `PromQL warning: `.
    pub warnings: Vec<String>,
    /// Informational notices (Prometheus `infos`), each starting with `PromQL info: `.
    pub infos: Vec<String>,
}

/// Formats a float as Prometheus' JSON API does (Go's `strconv.FormatFloat(v, 'f', -1, 64)`): the
/// shortest decimal that round-trips, never in exponent notation, and `NaN`, `+Inf`, `-Inf`.
///
/// ```
/// assert_eq!(oxeye_promql::format_float(1e21), "1000000000000000000000");
/// assert_eq!(oxeye_promql::format_float(0.1), "0.1");
/// assert_eq!(oxeye_promql::format_float(f64::NEG_INFINITY), "-Inf");
/// ```
pub fn format_float(value: f64) -> String {
    let mut text = String::new();
    write_float(&mut text, value);
    text
}

/// Appends `value` to `out` as [`format_float`] formats it, without a `String` of its own: what a
/// response writer calls once per point.
///
/// ```
/// let mut out = String::from("[");
/// oxeye_promql::write_float(&mut out, -0.0);
/// oxeye_promql::write_float(&mut out, f64::INFINITY);
/// assert_eq!(out, "[-0+Inf");
/// ```
pub fn write_float(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Rust's `Display` for f64 prints the shortest round-tripping digits without an exponent (and
        // `-0` for negative zero), which is exactly Go's 'f' format with precision -1.
        let _ = write!(out, "{value}");
    }
}

/// Formats a float as Go's `fmt` verb `%v` does, for error messages that Prometheus writes with it:
/// shortest digits, exponent form (`1e+300`) below 1e-4 or from 1e21 on, and `NaN`, `+Inf`, `-Inf`.
pub(crate) fn go_format_v(value: f64) -> String {
    if !value.is_finite() {
        return format_float(value);
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e21).contains(&magnitude) {
        let text = format!("{value:e}");
        return match text.split_once('e') {
            Some((mantissa, exponent)) => {
                let (sign, digits) = match exponent.strip_prefix('-') {
                    Some(digits) => ('-', digits),
                    None => ('+', exponent),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => text,
        };
    }
    format_float(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_format_v_uses_exponents_for_extremes() {
        assert_eq!(go_format_v(1e300), "1e+300");
        assert_eq!(go_format_v(1.5e-7), "1.5e-07");
        assert_eq!(go_format_v(123.0), "123");
        assert_eq!(go_format_v(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn format_float_matches_go_f_minus_one() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(-2.5), "-2.5");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(123456789012.0), "123456789012");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(0.30000000000000004), "0.30000000000000004");
    }
}

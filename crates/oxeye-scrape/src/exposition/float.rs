//! Float formatting and parsing as the exposition formats and Prometheus 3 need them.

/// Formats `value` the way Prometheus 3 normalises `le` and `quantile` label values
/// (`labels.FormatOpenMetricsFloat`): Go's shortest `'g'` formatting, with `.0` appended when the result
/// has neither a `.` nor an exponent, and `+Inf`, `-Inf`, `NaN` spelled so.
///
/// So `1` and `1.0` both become `"1.0"`, `0.005` stays `"0.005"`, `1e6` becomes `"1e+06"` and
/// `100000` becomes `"100000.0"`.
pub fn format_openmetrics_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() };
    }
    let formatted = format_go_shortest_g(value);
    if formatted.contains(['.', 'e']) { formatted } else { formatted + ".0" }
}

/// Go's `strconv.FormatFloat(value, 'g', -1, 64)` for finite values: the shortest digits that read back
/// to the same float, in exponent form when the decimal exponent is below -4 or at least 6 (Go uses
/// precision 6 for that decision when formatting the shortest representation).
fn format_go_shortest_g(value: f64) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() { "-0".to_string() } else { "0".to_string() };
    }
    // Rust's `{:e}` prints the shortest round-trip digits, e.g. `1.2345e-5`; take digits and exponent
    // from it and lay them out as Go would.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent_text) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let digits: String = mantissa.chars().filter(|character| character.is_ascii_digit()).collect();
    let exponent: i32 = exponent_text.parse().unwrap_or(0);
    let mut output = String::with_capacity(24);
    if value.is_sign_negative() {
        output.push('-');
    }
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        output.push_str(first);
        if !rest.is_empty() {
            output.push('.');
            output.push_str(rest);
        }
        output.push('e');
        output.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            output.push('0');
        }
        output.push_str(&magnitude.to_string());
        return output;
    }
    // Plain notation: the decimal point sits after `exponent + 1` digits.
    let point_position = exponent + 1;
    if point_position <= 0 {
        output.push_str("0.");
        for _ in 0..(-point_position) {
            output.push('0');
        }
        output.push_str(&digits);
        return output;
    }
    let point_index = usize::try_from(point_position).unwrap_or(0);
    if digits.len() <= point_index {
        output.push_str(&digits);
        for _ in digits.len()..point_index {
            output.push('0');
        }
    } else {
        let (integer_part, fraction_part) = digits.split_at(point_index);
        output.push_str(integer_part);
        output.push('.');
        output.push_str(fraction_part);
    }
    output
}

/// Parses a sample or exemplar value as Go's `strconv.ParseFloat` does for the inputs exposition text
/// uses: decimal and exponent notation, `NaN`, `Inf`, `+Inf`, `-Inf`, `Infinity` in any case.
/// `None` when `text` is not a number.
pub fn parse_float(text: &str) -> Option<f64> {
    // `f64::from_str` accepts the same spellings of infinity and NaN (case-insensitive); it rejects
    // Go's hexadecimal floats and digit underscores, which no client library writes.
    if text.is_empty() {
        return None;
    }
    text.parse::<f64>().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_float_matches_go_formatting() {
        let cases = [
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-1.0, "-1.0"),
            (0.005, "0.005"),
            (0.25, "0.25"),
            (2.5, "2.5"),
            (10.0, "10.0"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (-0.5, "-0.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_openmetrics_float(value), expected, "formatting {value}");
        }
    }

    #[test]
    fn parses_go_spellings_of_special_values() {
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("Inf"), Some(f64::INFINITY));
        assert!(parse_float("NaN").is_some_and(f64::is_nan));
        assert!(parse_float("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float("1.70000000025e+09"), Some(1_700_000_000.25));
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("1,5"), None);
        assert_eq!(parse_float("garbage"), None);
    }
}

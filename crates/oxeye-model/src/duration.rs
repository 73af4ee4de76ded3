//! Prometheus duration strings (`15s`, `5m`, `1h30m`, `30d`, `1w`, `500ms`), used by configuration files,
//! HTTP API parameters and rule files.
//!
//! Source: Prometheus `model.ParseDuration` (<https://prometheus.io/docs/prometheus/latest/configuration/configuration/#duration>):
//! units `ms s m h d w y` (a day is 24 h, a week 7 d, a year 365 d), largest first, each at most once.

use std::time::Duration;

/// Why a duration string was rejected; the message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid duration string: {input:?} ({reason})")]
pub struct DurationError {
    /// The string as given.
    pub input: String,
    /// What is wrong, e.g. `unknown unit "x"`.
    pub reason: String,
}

/// Parses a Prometheus duration string into milliseconds. `"0"` is zero.
///
/// # Errors
/// [`DurationError`] for an empty string, a missing or unknown unit, units out of order or repeated, or
/// an overflow of `i64` milliseconds.
pub fn parse_duration_ms(input: &str) -> Result<i64, DurationError> {
    let error = |reason: &str| DurationError { input: input.to_string(), reason: reason.to_string() };
    if input == "0" {
        return Ok(0);
    }
    if input.is_empty() {
        return Err(error("empty"));
    }
    // (unit, milliseconds), largest first: units must appear in this order.
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bytes = input.as_bytes();
    let mut position = 0;
    let mut next_unit_index = 0;
    let mut total_ms: i64 = 0;
    while position < bytes.len() {
        let digits_start = position;
        while position < bytes.len() && bytes[position].is_ascii_digit() {
            position += 1;
        }
        if position == digits_start {
            return Err(error("expected a number"));
        }
        let number: i64 = input[digits_start..position].parse().map_err(|_| error("number too large"))?;
        let unit_start = position;
        while position < bytes.len() && bytes[position].is_ascii_alphabetic() {
            position += 1;
        }
        let unit = &input[unit_start..position];
        if unit.is_empty() {
            return Err(error("missing unit"));
        }
        let Some(offset) = UNITS[next_unit_index..].iter().position(|(name, _)| *name == unit) else {
            return if UNITS.iter().any(|(name, _)| *name == unit) {
                Err(error("units out of order or repeated"))
            } else {
                Err(error(&format!("unknown unit {unit:?}")))
            };
        };
        let unit_ms = UNITS[next_unit_index + offset].1;
        next_unit_index += offset + 1;
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|part| total_ms.checked_add(part))
            .ok_or_else(|| error("too large"))?;
    }
    Ok(total_ms)
}

/// Parses a Prometheus duration string into a [`Duration`]; see [`parse_duration_ms`].
///
/// # Errors
/// As [`parse_duration_ms`].
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let milliseconds = parse_duration_ms(input)?;
    Ok(Duration::from_millis(milliseconds.unsigned_abs()))
}

/// Formats milliseconds the way Prometheus prints durations: `1h30m`, `15s`, `500ms`, `0s`.
pub fn format_duration_ms(milliseconds: i64) -> String {
    if milliseconds == 0 {
        return "0s".to_string();
    }
    let mut remaining = milliseconds.unsigned_abs();
    let mut text = String::new();
    if milliseconds < 0 {
        text.push('-');
    }
    for (unit, unit_ms) in [
        ("y", 31_536_000_000u64),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if remaining >= unit_ms {
            text.push_str(&format!("{}{unit}", remaining / unit_ms));
            remaining %= unit_ms;
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse_duration_ms("15s"), Ok(15_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1m500ms"), Ok(60_500));
        assert_eq!(parse_duration_ms("0"), Ok(0));
    }

    #[test]
    fn rejects_bad_durations_with_reason() {
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("15").unwrap_err().reason.contains("missing unit"));
        assert!(parse_duration_ms("3x").unwrap_err().reason.contains("unknown unit"));
        assert!(parse_duration_ms("1s1h").unwrap_err().reason.contains("order"));
        assert!(parse_duration_ms("-1s").is_err());
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(15_000), "15s");
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(86_400_000), "1d");
    }
}

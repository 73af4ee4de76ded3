//! OTLP→Prometheus name translation with the `UnderscoreEscapingWithSuffixes` strategy (Prometheus 3's
//! default for `/api/v1/otlp/v1/metrics`, and `prometheus/otlptranslator`'s `MetricNamer` /
//! `LabelNamer` / `UnitNamer` with suffixes on and UTF-8 off).
//!
//! - Metric names: split into tokens at every character outside `[a-zA-Z0-9:]` (so runs of separators and
//!   underscores collapse, leading and trailing ones vanish), append the unit words unless already a token
//!   (`ms` → `milliseconds`, `By/s` → `bytes_per_second`, `{request}` → nothing, `1` → nothing), then
//!   `total` for monotonic cumulative sums and `ratio` for gauges with unit `1` (moved to the end if already
//!   present), join with `_` and prefix `_` when the result starts with a digit.
//! - Label names: every character outside `[a-zA-Z0-9_]` becomes `_` (no collapsing); a leading digit gets
//!   `key_`, a single leading underscore gets `key` (`__reserved` names are kept).
//!
//! Sources: <https://github.com/prometheus/otlptranslator> (`metric_namer.go`, `unit_namer.go`,
//! `label_namer.go`), <https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/>.

/// What a metric becomes in Prometheus, which decides its type suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedMetricKind {
    /// An OTLP gauge: `_ratio` when the unit is `1`.
    Gauge,
    /// A monotonic cumulative sum: `_total`.
    MonotonicCounter,
    /// A non-monotonic sum (stored as a gauge, but never `_ratio`).
    NonMonotonicCounter,
    /// A histogram, exponential histogram or summary: no type suffix on the family name.
    Other,
}

/// The OTLP (UCUM) unit → Prometheus word map for the main unit.
fn main_unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The OTLP unit → Prometheus word map for the denominator of `a/b` units (singular).
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn is_metric_name_char(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == ':'
}

/// Replaces characters outside `[a-zA-Z0-9:]` with `_`, collapses runs of `_` and drops a leading `_`.
fn clean_up_unit(unit: &str) -> String {
    let mut cleaned = String::with_capacity(unit.len());
    for character in unit.chars() {
        let mapped = if is_metric_name_char(character) { character } else { '_' };
        if mapped == '_' && (cleaned.is_empty() || cleaned.ends_with('_')) {
            continue;
        }
        cleaned.push(mapped);
    }
    cleaned
}

/// The main and `per_…` unit suffixes of an OTLP unit, before clean-up. Parts inside `{…}` (annotations
/// such as `{request}`) are dropped.
fn unit_suffixes(unit: &str) -> (String, String) {
    let (main_part, per_part) = match unit.split_once('/') {
        Some((main_part, per_part)) => (main_part, Some(per_part)),
        None => (unit, None),
    };
    let main_unit = main_part.trim();
    let main_suffix = if main_unit.is_empty() || main_unit.contains(['{', '}']) {
        String::new()
    } else {
        main_unit_word(main_unit).to_string()
    };
    let per_suffix = match per_part.map(str::trim) {
        Some(per_unit) if !per_unit.is_empty() && !per_unit.contains(['{', '}']) => {
            format!("per_{}", per_unit_word(per_unit))
        }
        _ => String::new(),
    };
    (main_suffix, per_suffix)
}

/// The Prometheus unit word(s) of an OTLP unit, as stored in metadata: `ms` → `milliseconds`,
/// `By/s` → `bytes_per_second`, `1` and `{request}` → empty.
pub fn unit_name(unit: &str) -> String {
    let (main_suffix, per_suffix) = unit_suffixes(unit);
    let main_suffix = clean_up_unit(&main_suffix);
    let per_suffix = clean_up_unit(&per_suffix);
    let joined = match (main_suffix.is_empty(), per_suffix.is_empty()) {
        (false, false) => format!("{main_suffix}_{per_suffix}"),
        (false, true) => main_suffix,
        _ => per_suffix,
    };
    joined.trim_matches('_').to_string()
}

/// The Prometheus metric (family) name of an OTLP metric; `None` when nothing valid is left (e.g. a name
/// made only of separators), in which case Prometheus rejects the metric.
///
/// Examples: `http.server.duration` + `ms` → `http_server_duration_milliseconds`;
/// `boxoffice.checkout.attempts` + `1` as a counter → `boxoffice_checkout_attempts_total`;
/// `system.cpu.utilization` + `1` as a gauge → `system_cpu_utilization_ratio`.
pub fn metric_name(name: &str, unit: &str, kind: NamedMetricKind) -> Option<String> {
    let mut tokens: Vec<&str> =
        name.split(|character| !is_metric_name_char(character)).filter(|token| !token.is_empty()).collect();
    let (main_suffix, per_suffix) = unit_suffixes(unit);
    let mut main_suffix = clean_up_unit(&main_suffix);
    let mut per_suffix = clean_up_unit(&per_suffix);
    if tokens.contains(&main_suffix.as_str()) {
        main_suffix.clear();
    }
    if per_suffix == "per_" {
        per_suffix.clear();
    } else {
        if per_suffix.ends_with('_') {
            per_suffix.pop();
        }
        if tokens.contains(&per_suffix.as_str()) {
            per_suffix.clear();
        }
    }
    if !per_suffix.is_empty() && main_suffix.ends_with('_') {
        main_suffix.pop();
    }
    if !main_suffix.is_empty() {
        tokens.push(&main_suffix);
    }
    if !per_suffix.is_empty() {
        tokens.push(&per_suffix);
    }
    if kind == NamedMetricKind::MonotonicCounter {
        tokens.retain(|token| *token != "total");
        tokens.push("total");
    }
    if unit == "1" && kind == NamedMetricKind::Gauge {
        tokens.retain(|token| *token != "ratio");
        tokens.push("ratio");
    }
    let mut joined = tokens.join("_");
    if joined.starts_with(|character: char| character.is_ascii_digit()) {
        joined.insert(0, '_');
    }
    if joined.is_empty() || (joined != name && joined.chars().all(|character| character == '_')) {
        return None;
    }
    Some(joined)
}

/// The Prometheus label name of an OTLP attribute key; `None` for an empty key or one that becomes only
/// underscores.
///
/// Examples: `http.method` → `http_method`, `0day` → `key_0day`, `_private` → `key_private`,
/// `__reserved` → `__reserved`.
pub fn label_name(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let mut sanitized: String = key
        .chars()
        .map(|character| if character.is_ascii_alphanumeric() || character == '_' { character } else { '_' })
        .collect();
    if sanitized.starts_with(|character: char| character.is_ascii_digit()) {
        sanitized.insert_str(0, "key_");
    } else if sanitized.starts_with('_') && !sanitized.starts_with("__") {
        sanitized.insert_str(0, "key");
    }
    if sanitized != key && sanitized.chars().all(|character| character == '_') {
        return None;
    }
    Some(sanitized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, unit: &str, kind: NamedMetricKind, expected: &str) {
        assert_eq!(metric_name(name, unit, kind).as_deref(), Some(expected), "{name} [{unit}] {kind:?}");
    }

    #[test]
    fn metric_names_follow_the_otlp_translator() {
        use NamedMetricKind::*;
        check("http.server.duration", "ms", Other, "http_server_duration_milliseconds");
        check("http.server.request.duration", "s", Other, "http_server_request_duration_seconds");
        check("boxoffice.checkout.attempts", "1", MonotonicCounter, "boxoffice_checkout_attempts_total");
        check("http.server.active_requests", "{request}", Gauge, "http_server_active_requests");
        check("system.cpu.utilization", "1", Gauge, "system_cpu_utilization_ratio");
        check("requests.total", "1", MonotonicCounter, "requests_total");
        check("ratio.of.things", "1", Gauge, "of_things_ratio");
        check("memory.usage", "By", Gauge, "memory_usage_bytes");
        check("network.io", "By/s", Gauge, "network_io_bytes_per_second");
        check("throughput", "{packets}/s", Gauge, "throughput_per_second");
        check("latency_seconds", "s", Other, "latency_seconds");
        check("foo__bar..baz_", "", Gauge, "foo_bar_baz");
        check("2xx.count", "", MonotonicCounter, "_2xx_count_total");
        check("temperature", "Cel", Gauge, "temperature_celsius");
        check("weird", "foo.bar", Gauge, "weird_foo_bar");
        check("ns:metric", "", Gauge, "ns:metric");
        check("queue.fill", "1", NonMonotonicCounter, "queue_fill");
        check("requests", "1/s", Gauge, "requests_per_second");
        check("requests", "1/s", MonotonicCounter, "requests_per_second_total");
        check("custom_metric", "custom_unit", Gauge, "custom_metric_custom_unit");
        check("custom_metric", "By/{custom}", Gauge, "custom_metric_bytes");
        check("custom_metric", "unit@with#special/chars", Gauge, "custom_metric_unit_with_special_per_chars");
        check(
            "metric__with__multiple__underscores",
            "unit__multiple__underscores",
            Gauge,
            "metric_with_multiple_underscores_unit_multiple_underscores",
        );
        check("response_time_seconds", "s", Gauge, "response_time_seconds");
        check("cpu_usage_ratio", "1", Gauge, "cpu_usage_ratio");
        check("metric@@##$$name", "", Gauge, "metric_name");
        check("uptime", "d", Gauge, "uptime_days");
        assert_eq!(metric_name("...", "", NamedMetricKind::Gauge), None);
        assert_eq!(metric_name("", "", NamedMetricKind::Gauge), None);
    }

    #[test]
    fn units_become_words() {
        assert_eq!(unit_name("ms"), "milliseconds");
        assert_eq!(unit_name("By/s"), "bytes_per_second");
        assert_eq!(unit_name("1"), "");
        assert_eq!(unit_name("{request}"), "");
        assert_eq!(unit_name("TiBy"), "tebibytes");
        assert_eq!(unit_name("%"), "percent");
        assert_eq!(unit_name("1/s"), "per_second");
        assert_eq!(unit_name("unit__multiple__underscores"), "unit_multiple_underscores");
    }

    #[test]
    fn label_names_follow_the_otlp_translator() {
        assert_eq!(label_name("http.method").as_deref(), Some("http_method"));
        assert_eq!(label_name("http.server_name").as_deref(), Some("http_server_name"));
        assert_eq!(label_name("a..b").as_deref(), Some("a__b"));
        assert_eq!(label_name("0day").as_deref(), Some("key_0day"));
        assert_eq!(label_name("_private").as_deref(), Some("key_private"));
        assert_eq!(label_name("__reserved").as_deref(), Some("__reserved"));
        assert_eq!(label_name("café").as_deref(), Some("caf_"));
        assert_eq!(label_name(""), None);
        assert_eq!(label_name("..."), None);
    }
}

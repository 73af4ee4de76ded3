//! Scrape targets: from a scrape config's `static_configs` through `relabel_configs` to the final
//! target labels and scrape URL, and the status `/api/v1/targets` reports.
//!
//! Source: Prometheus `scrape/target.go` (`PopulateLabels`) and `docs/querying/api.md` (targets).

use oxeye_model::duration::{format_duration_ms, parse_duration_ms};
use oxeye_model::{Labels, LabelsBuilder};
use reqwest::Url;

use crate::config::{ScrapeConfig, ScrapeGlobals};
use crate::relabel::{RelabelRule, relabel};

/// The label holding a target's `host:port`.
pub const ADDRESS_LABEL: &str = "__address__";
/// The label holding a target's scheme.
pub const SCHEME_LABEL: &str = "__scheme__";
/// The label holding a target's metrics path.
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
/// The label holding a target's scrape interval (a duration string).
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
/// The label holding a target's scrape timeout (a duration string).
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
/// The prefix of labels that set URL query parameters: `__param_module` sets `module`.
pub const PARAM_LABEL_PREFIX: &str = "__param_";
/// Labels starting with this are removed from the final target labels.
pub const RESERVED_LABEL_PREFIX: &str = "__";

/// A target's health as `/api/v1/targets` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetHealth {
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed; see the status' `last_error`.
    Down,
    /// Not scraped yet.
    Unknown,
}

impl TargetHealth {
    /// `up`, `down` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::Up => "up",
            TargetHealth::Down => "down",
            TargetHealth::Unknown => "unknown",
        }
    }
}

/// Everything `/api/v1/targets` shows for one active target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    /// The labels before `relabel_configs` (`__address__`, `__scheme__`, `job`, static labels…).
    pub discovered_labels: Labels,
    /// The final target labels attached to every scraped series (`job`, `instance`, static labels).
    pub labels: Labels,
    /// The scrape pool, i.e. the `job_name`.
    pub scrape_pool: String,
    /// The URL scraped, e.g. `http://django:8000/metrics`.
    pub scrape_url: String,
    /// The scrape URL with a loopback host replaced by the server's host name when one was given.
    pub global_url: String,
    /// The last scrape's error message, empty when it succeeded or none ran yet.
    pub last_error: String,
    /// When the last scrape started, in milliseconds since the Unix epoch; `None` before the first.
    pub last_scrape_timestamp_ms: Option<i64>,
    /// How long the last scrape took, in seconds.
    pub last_scrape_duration_seconds: f64,
    /// Health after the last scrape.
    pub health: TargetHealth,
    /// The scrape interval in milliseconds (print with `oxeye_model::duration::format_duration_ms`).
    pub scrape_interval_ms: i64,
    /// The scrape timeout in milliseconds.
    pub scrape_timeout_ms: i64,
}

/// A target that `relabel_configs` dropped (or that had no usable address), for `droppedTargets`.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedTargetStatus {
    /// The labels before relabelling.
    pub discovered_labels: Labels,
    /// The scrape pool (`job_name`).
    pub scrape_pool: String,
}

/// Active and dropped targets, as `/api/v1/targets` lists them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetsSnapshot {
    /// Targets being scraped, by scrape pool then labels.
    pub active_targets: Vec<TargetStatus>,
    /// Targets dropped by relabelling.
    pub dropped_targets: Vec<DroppedTargetStatus>,
}

/// A target ready to scrape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScrapeTarget {
    pub discovered_labels: Labels,
    pub labels: Labels,
    pub scrape_url: Url,
    pub interval_ms: i64,
    pub timeout_ms: i64,
}

impl ScrapeTarget {
    /// Identifies the target across reloads: its labels and URL.
    pub fn identity_hash(&self) -> u64 {
        let mut builder = self.labels.to_builder();
        builder.set("__oxeye_scrape_url__", self.scrape_url.as_str());
        builder.build().stable_hash()
    }
}

/// The targets of one scrape config: the active ones and the discovered labels of dropped ones.
pub(crate) fn build_targets(
    config: &ScrapeConfig,
    globals: &ScrapeGlobals,
    relabel_rules: &[RelabelRule],
) -> (Vec<ScrapeTarget>, Vec<Labels>) {
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    for group in &config.static_configs {
        for address in &group.targets {
            let discovered = discovered_labels(config, globals, address, group.labels.iter());
            match populate(config, &discovered, relabel_rules) {
                Ok(Some(target)) => active.push(target),
                Ok(None) => dropped.push(discovered),
                Err(reason) => {
                    tracing::warn!(job = %config.job_name, target = %address, %reason, "dropping invalid scrape target");
                    dropped.push(discovered);
                }
            }
        }
    }
    (active, dropped)
}

fn discovered_labels<'a>(
    config: &ScrapeConfig,
    globals: &ScrapeGlobals,
    address: &str,
    group_labels: impl Iterator<Item = (&'a String, &'a String)>,
) -> Labels {
    let mut builder = LabelsBuilder::new();
    for (name, value) in group_labels {
        builder.set(name.as_str(), value.as_str());
    }
    builder.set(ADDRESS_LABEL, address);
    // Scrape config defaults fill in what the target group did not set, as in Prometheus.
    let mut set_default = |name: &str, value: String| {
        if builder.get(name).is_none() {
            builder.set(name, value);
        }
    };
    set_default("job", config.job_name.clone());
    set_default(SCRAPE_INTERVAL_LABEL, format_duration_ms(config.scrape_interval_ms(globals)));
    set_default(SCRAPE_TIMEOUT_LABEL, format_duration_ms(config.scrape_timeout_ms(globals)));
    set_default(METRICS_PATH_LABEL, config.metrics_path().to_string());
    set_default(SCHEME_LABEL, config.scheme().to_string());
    for (name, values) in &config.params {
        if let Some(first) = values.first() {
            set_default(&format!("{PARAM_LABEL_PREFIX}{name}"), first.clone());
        }
    }
    builder.build()
}

/// Relabels `discovered` and derives the final labels and URL; `Ok(None)` when relabelling dropped it.
fn populate(
    config: &ScrapeConfig,
    discovered: &Labels,
    relabel_rules: &[RelabelRule],
) -> Result<Option<ScrapeTarget>, String> {
    let Some(relabelled) = relabel(discovered, relabel_rules) else {
        return Ok(None);
    };
    let address = relabelled.get(ADDRESS_LABEL).ok_or("no address after relabelling")?.to_string();
    if address.contains('/') {
        return Err(format!("address {address:?} contains a path"));
    }
    let interval_text = relabelled.get(SCRAPE_INTERVAL_LABEL).unwrap_or("");
    let interval_ms = parse_duration_ms(interval_text).map_err(|error| format!("{SCRAPE_INTERVAL_LABEL}: {error}"))?;
    let timeout_text = relabelled.get(SCRAPE_TIMEOUT_LABEL).unwrap_or("");
    let timeout_ms = parse_duration_ms(timeout_text).map_err(|error| format!("{SCRAPE_TIMEOUT_LABEL}: {error}"))?;
    if interval_ms <= 0 || timeout_ms <= 0 {
        return Err("scrape interval and timeout must be greater than zero".to_string());
    }
    if timeout_ms > interval_ms {
        return Err(format!("scrape timeout {timeout_text} is greater than the scrape interval {interval_text}"));
    }
    let scheme = relabelled.get(SCHEME_LABEL).unwrap_or("http");
    let metrics_path = relabelled.get(METRICS_PATH_LABEL).unwrap_or("/metrics");
    let mut scrape_url = Url::parse(&format!("{scheme}://{address}{metrics_path}"))
        .map_err(|error| format!("invalid scrape URL for address {address:?}: {error}"))?;
    // Query parameters: the config's, with the first value of each replaced by a `__param_*` label.
    let mut params = config.params.clone();
    for label in &relabelled {
        if let Some(name) = label.name.strip_prefix(PARAM_LABEL_PREFIX) {
            let values = params.entry(name.to_string()).or_default();
            match values.first_mut() {
                Some(first) => *first = label.value.clone(),
                None => values.push(label.value.clone()),
            }
        }
    }
    if !params.is_empty() {
        let mut query = scrape_url.query_pairs_mut();
        for (name, values) in &params {
            for value in values {
                query.append_pair(name, value);
            }
        }
    }
    let mut final_labels = LabelsBuilder::new();
    for label in &relabelled {
        if !label.name.starts_with(RESERVED_LABEL_PREFIX) {
            final_labels.set(label.name.as_str(), label.value.as_str());
        }
    }
    if final_labels.get("instance").is_none() {
        final_labels.set("instance", address);
    }
    Ok(Some(ScrapeTarget {
        discovered_labels: discovered.clone(),
        labels: final_labels.build(),
        scrape_url,
        interval_ms,
        timeout_ms,
    }))
}

/// The scrape URL with a loopback host replaced by `hostname`, as Prometheus' `globalUrl`.
pub(crate) fn global_url(scrape_url: &Url, hostname: Option<&str>) -> String {
    let Some(hostname) = hostname else {
        return scrape_url.to_string();
    };
    let host = scrape_url.host_str().unwrap_or("");
    let is_loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    if !is_loopback {
        return scrape_url.to_string();
    }
    let mut global = scrape_url.clone();
    match global.set_host(Some(hostname)) {
        Ok(()) => global.to_string(),
        Err(_) => scrape_url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(yaml_json: &str) -> ScrapeConfig {
        serde_json::from_str(yaml_json).unwrap()
    }

    #[test]
    fn static_targets_get_job_instance_and_static_labels() {
        let config = config(
            r#"{"job_name": "django", "static_configs": [{"targets": ["django:8000"], "labels": {"env": "prod"}}]}"#,
        );
        let (active, dropped) = build_targets(&config, &ScrapeGlobals::default(), &config.relabel_rules().unwrap());
        assert!(dropped.is_empty());
        let target = &active[0];
        assert_eq!(
            target.labels,
            Labels::from_pairs([("env", "prod"), ("instance", "django:8000"), ("job", "django")])
        );
        assert_eq!(target.scrape_url.as_str(), "http://django:8000/metrics");
        assert_eq!(target.discovered_labels.get("__address__"), Some("django:8000"));
        assert_eq!(target.discovered_labels.get("__scrape_interval__"), Some("15s"));
        assert_eq!(target.interval_ms, 15_000);
        assert_eq!(target.timeout_ms, 10_000);
    }

    #[test]
    fn relabelling_drops_targets_rewrites_instance_and_sets_params() {
        let config = config(
            r#"{"job_name": "blackbox", "params": {"module": ["http_2xx", "extra"]},
                "static_configs": [{"targets": ["revel.example:443", "skip.me:80"]}],
                "relabel_configs": [
                    {"action": "drop", "source_labels": ["__address__"], "regex": "skip.*"},
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": "127.0.0.1:9115"},
                    {"target_label": "__param_module", "replacement": "tcp"}
                ]}"#,
        );
        let (active, dropped) = build_targets(&config, &ScrapeGlobals::default(), &config.relabel_rules().unwrap());
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].get("__address__"), Some("skip.me:80"));
        let target = &active[0];
        assert_eq!(target.labels.get("instance"), Some("revel.example:443"));
        assert_eq!(
            target.scrape_url.as_str(),
            "http://127.0.0.1:9115/metrics?module=tcp&module=extra&target=revel.example%3A443"
        );
        assert_eq!(
            global_url(&target.scrape_url, Some("oxeye-host")),
            "http://oxeye-host:9115/metrics?module=tcp&module=extra&target=revel.example%3A443"
        );
        assert_eq!(global_url(&target.scrape_url, None), target.scrape_url.as_str());
    }
}

//! Scrape configuration in Prometheus' YAML shape (`scrape_configs` entries), deserializable from any
//! serde format; the binary embeds `Vec<ScrapeConfig>` in its own config file.
//!
//! Source: the `<scrape_config>`, `<static_config>`, `<basic_auth>`, `<authorization>` sections of
//! <https://prometheus.io/docs/prometheus/latest/configuration/configuration/>. Unknown fields are
//! errors. Supported beyond the basics: `honor_timestamps`, `sample_limit`, `authorization`,
//! `bearer_token_file`, `password_file`. Not supported (rejected as unknown): service discovery other
//! than `static_configs`, `tls_config`, `proxy_url`, native-histogram and protocol options.
//!
//! ```
//! use oxeye_scrape::config::{ScrapeConfig, ScrapeGlobals};
//! let config: ScrapeConfig = serde_json::from_str(r#"{
//!     "job_name": "django",
//!     "scrape_interval": "30s",
//!     "static_configs": [{"targets": ["django:8000"], "labels": {"env": "prod"}}]
//! }"#).unwrap();
//! let globals = ScrapeGlobals::default();
//! config.validate(&globals).unwrap();
//! assert_eq!(config.scrape_interval_ms(&globals), 30_000);
//! assert_eq!(config.scrape_timeout_ms(&globals), 10_000);
//! assert_eq!(config.metrics_path(), "/metrics");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use oxeye_model::duration::{format_duration_ms, parse_duration_ms};
use serde::{Deserialize, Deserializer};

use crate::ScrapeError;
use crate::relabel::{RelabelConfig, RelabelRule};

/// The default `scrape_interval` when neither the job nor the globals set one: 15 s. (Prometheus'
/// built-in default is 1 m, but its shipped configuration and every setup oxeye targets use 15 s.)
pub const DEFAULT_SCRAPE_INTERVAL_MS: i64 = 15_000;
/// The default `scrape_timeout`: 10 s, capped at the scrape interval.
pub const DEFAULT_SCRAPE_TIMEOUT_MS: i64 = 10_000;
/// The default `metrics_path`.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";
/// The default `scheme`.
pub const DEFAULT_SCHEME: &str = "http";

/// A Prometheus duration string (`15s`, `1m30s`, `500ms`) read from configuration, held in milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration {
    /// The duration in milliseconds.
    pub milliseconds: i64,
}

impl ConfigDuration {
    /// A duration of `milliseconds`.
    pub fn from_millis(milliseconds: i64) -> ConfigDuration {
        ConfigDuration { milliseconds }
    }
}

impl fmt::Debug for ConfigDuration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&format_duration_ms(self.milliseconds))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&format_duration_ms(self.milliseconds))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl serde::de::Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a Prometheus duration string such as \"15s\" or \"1m30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ConfigDuration, E> {
                parse_duration_ms(text).map(ConfigDuration::from_millis).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<ConfigDuration, E> {
                // Prometheus accepts the bare number 0 and nothing else without a unit.
                if number == 0 {
                    Ok(ConfigDuration::from_millis(0))
                } else {
                    Err(E::custom(format!("duration {number} has no unit, write e.g. \"{number}s\"")))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<ConfigDuration, E> {
                match u64::try_from(number) {
                    Ok(unsigned) => self.visit_u64(unsigned),
                    Err(_) => Err(E::custom(format!("duration {number} is negative"))),
                }
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Scrape defaults from the `global` section, applied to jobs that do not set their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeGlobals {
    /// Default `scrape_interval`; [`DEFAULT_SCRAPE_INTERVAL_MS`] when unset.
    #[serde(default = "default_interval")]
    pub scrape_interval: ConfigDuration,
    /// Default `scrape_timeout`; [`DEFAULT_SCRAPE_TIMEOUT_MS`] when unset. A job's effective timeout is
    /// capped at its interval when the job does not set its own.
    #[serde(default = "default_timeout")]
    pub scrape_timeout: ConfigDuration,
}

fn default_interval() -> ConfigDuration {
    ConfigDuration::from_millis(DEFAULT_SCRAPE_INTERVAL_MS)
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration::from_millis(DEFAULT_SCRAPE_TIMEOUT_MS)
}

impl Default for ScrapeGlobals {
    fn default() -> Self {
        ScrapeGlobals { scrape_interval: default_interval(), scrape_timeout: default_timeout() }
    }
}

/// One `static_configs` entry: target addresses (`host:port`) and labels added to all of them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses, each one scrape target (its `__address__`).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels attached to every target of this group.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// HTTP basic authentication. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password, inline.
    #[serde(default)]
    pub password: Option<String>,
    /// A file whose contents (trailing newline trimmed) are the password, read at each scrape.
    #[serde(default)]
    pub password_file: Option<String>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// The `authorization` header settings: `Authorization: <type> <credentials>`. `Debug` hides the
/// credentials.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme; default `Bearer`.
    #[serde(default, rename = "type")]
    pub auth_type: Option<String>,
    /// The credentials, inline.
    #[serde(default)]
    pub credentials: Option<String>,
    /// A file whose contents (trailing newline trimmed) are the credentials, read at each scrape.
    #[serde(default)]
    pub credentials_file: Option<String>,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Authorization")
            .field("type", &self.auth_type)
            .field("credentials", &self.credentials.as_ref().map(|_| "<secret>"))
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// One `scrape_configs` entry, field names exactly as in Prometheus. Options left unset take the
/// documented defaults through the accessor methods; [`ScrapeConfig::validate`] checks the whole entry.
#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The job name: the `job` label of every target and the scrape pool's name. Required, unique.
    pub job_name: String,
    /// How often to scrape; the global `scrape_interval` when unset.
    #[serde(default)]
    pub scrape_interval: Option<ConfigDuration>,
    /// Per-scrape timeout; the global `scrape_timeout` capped at the interval when unset.
    #[serde(default)]
    pub scrape_timeout: Option<ConfigDuration>,
    /// The HTTP path; default `/metrics`.
    #[serde(default)]
    pub metrics_path: Option<String>,
    /// `http` or `https`; default `http`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// URL query parameters, each name with one or more values.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// Keep scraped labels that clash with target labels (instead of renaming them `exported_*`).
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target exposes; default true. When false, every sample gets the scrape
    /// time.
    #[serde(default)]
    pub honor_timestamps: Option<bool>,
    /// Fail the scrape when more samples than this remain after metric relabelling; 0 means no limit.
    #[serde(default)]
    pub sample_limit: u64,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization: <type> <credentials>` header.
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// A bearer token sent as `Authorization: Bearer <token>` (older Prometheus spelling).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file holding the bearer token, read at each scrape.
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    /// Target groups.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Rules applied to each target's labels before scraping.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped sample's labels before storing.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

impl fmt::Debug for ScrapeConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ScrapeConfig")
            .field("job_name", &self.job_name)
            .field("scrape_interval", &self.scrape_interval)
            .field("scrape_timeout", &self.scrape_timeout)
            .field("metrics_path", &self.metrics_path)
            .field("scheme", &self.scheme)
            .field("params", &self.params)
            .field("honor_labels", &self.honor_labels)
            .field("honor_timestamps", &self.honor_timestamps)
            .field("sample_limit", &self.sample_limit)
            .field("basic_auth", &self.basic_auth)
            .field("authorization", &self.authorization)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<secret>"))
            .field("bearer_token_file", &self.bearer_token_file)
            .field("static_configs", &self.static_configs)
            .field("relabel_configs", &self.relabel_configs)
            .field("metric_relabel_configs", &self.metric_relabel_configs)
            .finish()
    }
}

impl ScrapeConfig {
    /// The effective scrape interval in milliseconds.
    pub fn scrape_interval_ms(&self, globals: &ScrapeGlobals) -> i64 {
        self.scrape_interval.unwrap_or(globals.scrape_interval).milliseconds
    }

    /// The effective scrape timeout in milliseconds: the job's own, else the global one capped at the
    /// interval.
    pub fn scrape_timeout_ms(&self, globals: &ScrapeGlobals) -> i64 {
        match self.scrape_timeout {
            Some(timeout) => timeout.milliseconds,
            None => globals.scrape_timeout.milliseconds.min(self.scrape_interval_ms(globals)),
        }
    }

    /// The effective metrics path.
    pub fn metrics_path(&self) -> &str {
        self.metrics_path.as_deref().unwrap_or(DEFAULT_METRICS_PATH)
    }

    /// The effective scheme.
    pub fn scheme(&self) -> &str {
        self.scheme.as_deref().unwrap_or(DEFAULT_SCHEME)
    }

    /// Whether exposed timestamps are used.
    pub fn honor_timestamps(&self) -> bool {
        self.honor_timestamps.unwrap_or(true)
    }

    fn invalid(&self, field: impl Into<String>, reason: impl Into<String>) -> ScrapeError {
        ScrapeError::InvalidConfig { job: self.job_name.clone(), field: field.into(), reason: reason.into() }
    }

    /// Checks the entry as Prometheus does when loading its configuration.
    ///
    /// # Errors
    /// [`ScrapeError::InvalidConfig`] naming the job and the field: an empty `job_name`; a zero
    /// interval; a zero timeout or one longer than the interval; a `scheme` other than `http`/`https`;
    /// a `metrics_path` not starting with `/`; more than one of `basic_auth`, `authorization`,
    /// `bearer_token`, `bearer_token_file`; both `password` and `password_file`; an empty target or one
    /// containing a path; an invalid relabel rule (`relabel_configs[i].field`).
    pub fn validate(&self, globals: &ScrapeGlobals) -> Result<(), ScrapeError> {
        if self.job_name.is_empty() {
            return Err(self.invalid("job_name", "must not be empty"));
        }
        let interval_ms = self.scrape_interval_ms(globals);
        if interval_ms <= 0 {
            return Err(self.invalid("scrape_interval", "must be greater than zero"));
        }
        let timeout_ms = self.scrape_timeout_ms(globals);
        if timeout_ms <= 0 {
            return Err(self.invalid("scrape_timeout", "must be greater than zero"));
        }
        if timeout_ms > interval_ms {
            return Err(self.invalid(
                "scrape_timeout",
                format!(
                    "scrape timeout {} is greater than the scrape interval {}",
                    format_duration_ms(timeout_ms),
                    format_duration_ms(interval_ms)
                ),
            ));
        }
        if !matches!(self.scheme(), "http" | "https") {
            return Err(self.invalid("scheme", format!("{:?} is not http or https", self.scheme())));
        }
        if !self.metrics_path().starts_with('/') {
            return Err(self.invalid("metrics_path", format!("{:?} must start with '/'", self.metrics_path())));
        }
        let authentication_count = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.bearer_token.is_some(),
            self.bearer_token_file.is_some(),
        ]
        .into_iter()
        .filter(|is_set| *is_set)
        .count();
        if authentication_count > 1 {
            return Err(self.invalid(
                "basic_auth",
                "at most one of basic_auth, authorization, bearer_token and bearer_token_file may be set",
            ));
        }
        if let Some(basic_auth) = &self.basic_auth {
            if basic_auth.password.is_some() && basic_auth.password_file.is_some() {
                return Err(
                    self.invalid("basic_auth.password_file", "at most one of password and password_file may be set")
                );
            }
            if basic_auth.username.is_empty() {
                return Err(self.invalid("basic_auth.username", "must not be empty"));
            }
        }
        if let Some(authorization) = &self.authorization {
            if authorization.credentials.is_some() && authorization.credentials_file.is_some() {
                return Err(self.invalid(
                    "authorization.credentials_file",
                    "at most one of credentials and credentials_file may be set",
                ));
            }
            if authorization.auth_type.as_deref().is_some_and(|auth_type| auth_type.eq_ignore_ascii_case("basic")) {
                return Err(self.invalid("authorization.type", "use basic_auth for basic authentication"));
            }
        }
        for (group_index, group) in self.static_configs.iter().enumerate() {
            for (target_index, target) in group.targets.iter().enumerate() {
                let field = format!("static_configs[{group_index}].targets[{target_index}]");
                if target.is_empty() {
                    return Err(self.invalid(field, "target address must not be empty"));
                }
                if target.contains('/') {
                    return Err(self.invalid(field, format!("{target:?} must be host:port, without scheme or path")));
                }
            }
        }
        self.relabel_rules()?;
        self.metric_relabel_rules()?;
        Ok(())
    }

    /// The compiled `relabel_configs`.
    ///
    /// # Errors
    /// [`ScrapeError::InvalidConfig`] with field `relabel_configs[i].<field>`.
    pub fn relabel_rules(&self) -> Result<Vec<RelabelRule>, ScrapeError> {
        compile_rules(self, "relabel_configs", &self.relabel_configs)
    }

    /// The compiled `metric_relabel_configs`.
    ///
    /// # Errors
    /// [`ScrapeError::InvalidConfig`] with field `metric_relabel_configs[i].<field>`.
    pub fn metric_relabel_rules(&self) -> Result<Vec<RelabelRule>, ScrapeError> {
        compile_rules(self, "metric_relabel_configs", &self.metric_relabel_configs)
    }
}

fn compile_rules(
    config: &ScrapeConfig,
    list_name: &str,
    relabel_configs: &[RelabelConfig],
) -> Result<Vec<RelabelRule>, ScrapeError> {
    relabel_configs
        .iter()
        .enumerate()
        .map(|(index, relabel_config)| {
            RelabelRule::new(relabel_config)
                .map_err(|error| config.invalid(format!("{list_name}[{index}].{}", error.field), error.reason))
        })
        .collect()
}

/// Validates a whole `scrape_configs` list: every entry, and that job names are unique.
///
/// # Errors
/// The first entry's [`ScrapeError::InvalidConfig`], or one naming a repeated `job_name`.
pub fn validate_scrape_configs(configs: &[ScrapeConfig], globals: &ScrapeGlobals) -> Result<(), ScrapeError> {
    let mut seen = std::collections::HashSet::new();
    for config in configs {
        config.validate(globals)?;
        if !seen.insert(config.job_name.as_str()) {
            return Err(config.invalid("job_name", "found multiple scrape configs with this job name"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn from_yaml(yaml: &str) -> ScrapeConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn invalid_field(config: &ScrapeConfig, globals: &ScrapeGlobals) -> (String, String) {
        match config.validate(globals) {
            Err(ScrapeError::InvalidConfig { job, field, .. }) => (job, field),
            other => panic!("expected an invalid config error, got {other:?}"),
        }
    }

    #[test]
    fn full_prometheus_yaml_deserializes() {
        let config = from_yaml(
            r#"
job_name: django
scrape_interval: 30s
scrape_timeout: 5s
metrics_path: /custom/metrics
scheme: https
params:
  module: [http_2xx]
honor_labels: true
honor_timestamps: false
sample_limit: 5000
basic_auth:
  username: prometheus
  password: s3cret
static_configs:
  - targets: ["django:8000", "worker:8001"]
    labels:
      env: prod
relabel_configs:
  - source_labels: [__address__]
    regex: "([^:]+):.*"
    target_label: host
metric_relabel_configs:
  - action: drop
    source_labels: [__name__]
    regex: "go_.*"
"#,
        );
        let globals = ScrapeGlobals::default();
        config.validate(&globals).unwrap();
        assert_eq!(config.scrape_interval_ms(&globals), 30_000);
        assert_eq!(config.scrape_timeout_ms(&globals), 5_000);
        assert_eq!(config.metrics_path(), "/custom/metrics");
        assert_eq!(config.scheme(), "https");
        assert_eq!(config.params["module"], vec!["http_2xx".to_string()]);
        assert!(config.honor_labels);
        assert!(!config.honor_timestamps());
        assert_eq!(config.static_configs[0].targets.len(), 2);
        assert_eq!(config.static_configs[0].labels["env"], "prod");
        assert_eq!(config.relabel_rules().unwrap().len(), 1);
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn defaults_follow_globals_and_cap_the_timeout() {
        let minimal = from_yaml("job_name: revel\nstatic_configs: [{targets: ['revel:8000']}]\n");
        let globals = ScrapeGlobals::default();
        assert_eq!(minimal.scrape_interval_ms(&globals), 15_000);
        assert_eq!(minimal.scrape_timeout_ms(&globals), 10_000);
        assert_eq!(minimal.metrics_path(), "/metrics");
        assert_eq!(minimal.scheme(), "http");
        assert!(minimal.honor_timestamps());
        let fast: ScrapeGlobals = serde_saphyr::from_str("scrape_interval: 5s\n").unwrap();
        assert_eq!(minimal.scrape_interval_ms(&fast), 5_000);
        assert_eq!(minimal.scrape_timeout_ms(&fast), 5_000);
        minimal.validate(&fast).unwrap();
    }

    #[test]
    fn json_works_too() {
        let config: ScrapeConfig =
            serde_json::from_str(r#"{"job_name": "x", "scrape_interval": "1m", "bearer_token": "t"}"#).unwrap();
        assert_eq!(config.scrape_interval_ms(&ScrapeGlobals::default()), 60_000);
        assert!(!format!("{config:?}").contains("\"t\""));
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_rejected() {
        assert!(serde_saphyr::from_str::<ScrapeConfig>("job_name: x\nscrape_intervall: 15s\n").is_err());
        assert!(serde_saphyr::from_str::<ScrapeConfig>("job_name: x\nscrape_interval: 15\n").is_err());
        assert!(serde_saphyr::from_str::<ScrapeConfig>("job_name: x\nscrape_interval: 15 seconds\n").is_err());
        assert!(serde_saphyr::from_str::<ScrapeConfig>("job_name: x\nstatic_configs: [{target: [a]}]\n").is_err());
        assert!(serde_saphyr::from_str::<ScrapeConfig>("job_name: x\nkubernetes_sd_configs: []\n").is_err());
    }

    #[test]
    fn validate_names_the_job_and_field() {
        let globals = ScrapeGlobals::default();
        let cases = [
            ("job_name: ''\n", "job_name"),
            ("job_name: j\nscrape_interval: 10s\nscrape_timeout: 20s\n", "scrape_timeout"),
            ("job_name: j\nscrape_interval: 0s\n", "scrape_interval"),
            ("job_name: j\nscheme: ftp\n", "scheme"),
            ("job_name: j\nmetrics_path: metrics\n", "metrics_path"),
            ("job_name: j\nbearer_token: a\nbasic_auth: {username: u}\n", "basic_auth"),
            ("job_name: j\nstatic_configs: [{targets: ['http://a:1/metrics']}]\n", "static_configs[0].targets[0]"),
            ("job_name: j\nrelabel_configs: [{source_labels: [a], regex: '('}]\n", "relabel_configs[0].regex"),
            (
                "job_name: j\nmetric_relabel_configs: [{action: labeldrop, regex: tmp_.*}, {action: hashmod, target_label: x}]\n",
                "metric_relabel_configs[1].modulus",
            ),
        ];
        for (yaml, expected_field) in cases {
            let (job, field) = invalid_field(&from_yaml(yaml), &globals);
            assert_eq!(field, expected_field, "{yaml}");
            if expected_field != "job_name" {
                assert_eq!(job, "j");
            }
        }
        let duplicate = [from_yaml("job_name: a\n"), from_yaml("job_name: a\n")];
        let error = validate_scrape_configs(&duplicate, &globals).unwrap_err();
        assert!(error.to_string().contains("multiple scrape configs"), "{error}");
    }
}

//! Scrape configuration in Prometheus' YAML shape (`scrape_configs` entries), deserializable from any
//! serde format; the binary embeds `Vec<ScrapeConfig>` in its own config file.
//!
//! Source: the `<scrape_config>`, `<static_config>`, `<basic_auth>`, `<authorization>` sections of
//! <https://prometheus.io/docs/prometheus/latest/configuration/configuration/>. Unknown fields are
//! errors. Supported beyond the basics: `honor_timestamps`, `track_timestamps_staleness`,
//! `sample_limit`, `label_limit`, `label_name_length_limit`, `label_value_length_limit`,
//! `body_size_limit`, `scrape_protocols`, `fallback_scrape_protocol`, `enable_compression`,
//! `follow_redirects`, `authorization`, `bearer_token_file`, `password_file`, and `tls_config` with
//! `ca_file` and `insecure_skip_verify`. Not supported (rejected as unknown fields): service discovery
//! other than `static_configs`, client certificates, `proxy_url`, native-histogram options; the
//! `PrometheusProto` protocol is rejected by `validate()`.
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
use crate::exposition::ExpositionFormat;
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

/// A secret from configuration (a password or token). `Debug` prints `<secret>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<secret>")
    }
}

/// A scrape protocol as named in Prometheus' `scrape_protocols` and `fallback_scrape_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ScrapeProtocol {
    /// `OpenMetricsText1.0.0`.
    #[serde(rename = "OpenMetricsText1.0.0")]
    OpenMetricsText1_0_0,
    /// `OpenMetricsText0.0.1`.
    #[serde(rename = "OpenMetricsText0.0.1")]
    OpenMetricsText0_0_1,
    /// `PrometheusText1.0.0`.
    #[serde(rename = "PrometheusText1.0.0")]
    PrometheusText1_0_0,
    /// `PrometheusText0.0.4`.
    #[serde(rename = "PrometheusText0.0.4")]
    PrometheusText0_0_4,
    /// `PrometheusProto` (delimited protobuf): not supported by oxeye; `validate()` rejects it.
    #[serde(rename = "PrometheusProto")]
    PrometheusProto,
}

impl ScrapeProtocol {
    /// Prometheus 3's default `scrape_protocols`, in order of preference.
    pub const DEFAULT: [ScrapeProtocol; 4] = [
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText1_0_0,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// The configuration spelling, e.g. `OpenMetricsText1.0.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScrapeProtocol::OpenMetricsText1_0_0 => "OpenMetricsText1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "OpenMetricsText0.0.1",
            ScrapeProtocol::PrometheusText1_0_0 => "PrometheusText1.0.0",
            ScrapeProtocol::PrometheusText0_0_4 => "PrometheusText0.0.4",
            ScrapeProtocol::PrometheusProto => "PrometheusProto",
        }
    }

    /// The media type offered in the `Accept` header, with `escaping=allow-utf-8` on the formats that
    /// carry UTF-8 names.
    fn accept_media_type(self) -> &'static str {
        match self {
            ScrapeProtocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0;escaping=allow-utf-8",
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            ScrapeProtocol::PrometheusProto => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
        }
    }

    /// The parser for this protocol; `None` for `PrometheusProto`.
    pub fn exposition_format(self) -> Option<ExpositionFormat> {
        match self {
            ScrapeProtocol::OpenMetricsText1_0_0 | ScrapeProtocol::OpenMetricsText0_0_1 => {
                Some(ExpositionFormat::OpenMetrics100)
            }
            ScrapeProtocol::PrometheusText1_0_0 => Some(ExpositionFormat::PrometheusText100),
            ScrapeProtocol::PrometheusText0_0_4 => Some(ExpositionFormat::PrometheusText004),
            ScrapeProtocol::PrometheusProto => None,
        }
    }
}

/// The `Accept` header for `protocols` in order of preference, as Prometheus builds it: weights
/// `q=0.<n+1>` down to `q=0.2`, then `*/*` with the lowest weight. For [`ScrapeProtocol::DEFAULT`] this
/// is [`crate::exposition::ACCEPT_HEADER`].
pub fn accept_header(protocols: &[ScrapeProtocol]) -> String {
    let mut weight = protocols.len() + 1;
    let mut parts = Vec::with_capacity(protocols.len() + 1);
    for protocol in protocols {
        parts.push(format!("{};q=0.{weight}", protocol.accept_media_type()));
        weight = weight.saturating_sub(1);
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

/// A size from configuration such as `10MB` or `512KiB`, in bytes. As in Prometheus (`Base2Bytes`),
/// `KB`/`KiB`, `MB`/`MiB`… are all powers of 1024; a bare `0` is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize {
    /// The size in bytes.
    pub bytes: u64,
}

impl ByteSize {
    /// Parses `10MB`, `1.5GiB`, `512B`, `0`.
    ///
    /// # Errors
    /// A message quoting the input when the number or unit is invalid or the size overflows `u64`.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        if trimmed == "0" {
            return Ok(ByteSize { bytes: 0 });
        }
        let unit_start = trimmed.find(|character: char| character.is_ascii_alphabetic()).unwrap_or(trimmed.len());
        let (number_text, unit) = trimmed.split_at(unit_start);
        let number: f64 =
            number_text.parse().ok().filter(|number: &f64| number.is_finite() && *number >= 0.0).ok_or_else(|| {
                format!("invalid size {text:?}: expected a number followed by B, KB, MB, GB, TB or PB")
            })?;
        let exponent = match unit {
            "B" => 0,
            "KB" | "KiB" => 1,
            "MB" | "MiB" => 2,
            "GB" | "GiB" => 3,
            "TB" | "TiB" => 4,
            "PB" | "PiB" => 5,
            _ => return Err(format!("invalid size {text:?}: unknown unit {unit:?}")),
        };
        let bytes = number * 1024f64.powi(exponent);
        if bytes >= u64::MAX as f64 {
            return Err(format!("size {text:?} is too large"));
        }
        Ok(ByteSize { bytes: bytes.round() as u64 })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ByteSizeVisitor;
        impl serde::de::Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a size such as \"10MB\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                ByteSize::parse(text).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<ByteSize, E> {
                if number == 0 {
                    Ok(ByteSize { bytes: 0 })
                } else {
                    Err(E::custom(format!("size {number} has no unit, write e.g. \"{number}MB\"")))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<ByteSize, E> {
                match u64::try_from(number) {
                    Ok(unsigned) => self.visit_u64(unsigned),
                    Err(_) => Err(E::custom(format!("size {number} is negative"))),
                }
            }
        }
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

/// The supported part of Prometheus' `<tls_config>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of CA certificates trusted in addition to the platform's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Accept any server certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password, inline.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file whose contents (trailing newline trimmed) are the password, read at each scrape.
    #[serde(default)]
    pub password_file: Option<String>,
}

/// The `authorization` header settings: `Authorization: <type> <credentials>`. `Debug` hides the
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme; default `Bearer`.
    #[serde(default, rename = "type")]
    pub auth_type: Option<String>,
    /// The credentials, inline.
    #[serde(default)]
    pub credentials: Option<Secret>,
    /// A file whose contents (trailing newline trimmed) are the credentials, read at each scrape.
    #[serde(default)]
    pub credentials_file: Option<String>,
}

/// One `scrape_configs` entry, field names exactly as in Prometheus. Options left unset take the
/// documented defaults through the accessor methods; [`ScrapeConfig::validate`] checks the whole entry.
/// `Debug` hides secrets.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
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
    /// Also write stale markers for vanished series that carried explicit timestamps; default false.
    #[serde(default)]
    pub track_timestamps_staleness: bool,
    /// Fail the scrape when more samples than this remain after metric relabelling; 0 means no limit.
    #[serde(default)]
    pub sample_limit: u64,
    /// Fail the scrape when a series has more labels than this (metric name and target labels
    /// included); 0 means no limit.
    #[serde(default)]
    pub label_limit: u64,
    /// Fail the scrape when a label name is longer than this many bytes; 0 means no limit.
    #[serde(default)]
    pub label_name_length_limit: u64,
    /// Fail the scrape when a label value is longer than this many bytes; 0 means no limit.
    #[serde(default)]
    pub label_value_length_limit: u64,
    /// Fail the scrape when the (uncompressed) body is larger; unset or `0` means the manager's default.
    #[serde(default)]
    pub body_size_limit: Option<ByteSize>,
    /// The protocols offered in the `Accept` header, in order of preference; default
    /// [`ScrapeProtocol::DEFAULT`].
    #[serde(default)]
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    /// The parser for a response with a missing or unknown `Content-Type`; default
    /// `PrometheusText0.0.4` (where Prometheus 3 fails the scrape unless this is set).
    #[serde(default)]
    pub fallback_scrape_protocol: Option<ScrapeProtocol>,
    /// Ask for gzip-compressed bodies; default true.
    #[serde(default)]
    pub enable_compression: Option<bool>,
    /// Follow HTTP redirects; default true.
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// TLS settings for `https` targets.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization: <type> <credentials>` header.
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// A bearer token sent as `Authorization: Bearer <token>` (older Prometheus spelling).
    #[serde(default)]
    pub bearer_token: Option<Secret>,
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

    /// The protocols offered, in order of preference.
    pub fn scrape_protocols(&self) -> &[ScrapeProtocol] {
        self.scrape_protocols.as_deref().unwrap_or(&ScrapeProtocol::DEFAULT)
    }

    /// The `Accept` header sent with each scrape.
    pub fn accept_header(&self) -> String {
        accept_header(self.scrape_protocols())
    }

    /// The parser for a missing or unknown `Content-Type`.
    pub fn fallback_format(&self) -> ExpositionFormat {
        self.fallback_scrape_protocol
            .and_then(ScrapeProtocol::exposition_format)
            .unwrap_or(ExpositionFormat::PrometheusText004)
    }

    /// Whether gzip is requested.
    pub fn enable_compression(&self) -> bool {
        self.enable_compression.unwrap_or(true)
    }

    /// Whether redirects are followed.
    pub fn follow_redirects(&self) -> bool {
        self.follow_redirects.unwrap_or(true)
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
        if let Some(protocols) = &self.scrape_protocols {
            if protocols.is_empty() {
                return Err(self.invalid("scrape_protocols", "must list at least one protocol"));
            }
            for (index, protocol) in protocols.iter().enumerate() {
                if protocols.get(..index).is_some_and(|earlier| earlier.contains(protocol)) {
                    return Err(self.invalid("scrape_protocols", format!("{} is listed twice", protocol.as_str())));
                }
                if protocol.exposition_format().is_none() {
                    return Err(self.invalid("scrape_protocols", format!("{} is not supported", protocol.as_str())));
                }
            }
        }
        if let Some(fallback) = self.fallback_scrape_protocol
            && fallback.exposition_format().is_none()
        {
            return Err(self.invalid("fallback_scrape_protocol", format!("{} is not supported", fallback.as_str())));
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
track_timestamps_staleness: true
sample_limit: 5000
label_limit: 30
label_name_length_limit: 200
label_value_length_limit: 1000
body_size_limit: 10MB
scrape_protocols: [PrometheusText1.0.0, PrometheusText0.0.4]
fallback_scrape_protocol: PrometheusText1.0.0
enable_compression: false
follow_redirects: false
tls_config:
  ca_file: /etc/ssl/custom-ca.pem
  insecure_skip_verify: false
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
        assert_eq!(config.basic_auth.as_ref().unwrap().password.as_ref().unwrap().expose(), "s3cret");
        assert!(config.track_timestamps_staleness);
        assert_eq!(
            (config.label_limit, config.label_name_length_limit, config.label_value_length_limit),
            (30, 200, 1000)
        );
        assert_eq!(config.body_size_limit, Some(ByteSize { bytes: 10 * 1024 * 1024 }));
        assert_eq!(
            config.accept_header(),
            "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
        );
        assert_eq!(config.fallback_format(), ExpositionFormat::PrometheusText100);
        assert!(!config.enable_compression());
        assert!(!config.follow_redirects());
        assert_eq!(config.tls_config.as_ref().unwrap().ca_file.as_deref(), Some("/etc/ssl/custom-ca.pem"));
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
        assert_eq!(minimal.accept_header(), crate::exposition::ACCEPT_HEADER);
        assert_eq!(minimal.fallback_format(), ExpositionFormat::PrometheusText004);
        assert!(minimal.enable_compression());
        assert!(minimal.follow_redirects());
        let fast: ScrapeGlobals = serde_saphyr::from_str("scrape_interval: 5s\n").unwrap();
        assert_eq!(minimal.scrape_interval_ms(&fast), 5_000);
        assert_eq!(minimal.scrape_timeout_ms(&fast), 5_000);
        minimal.validate(&fast).unwrap();
    }

    #[test]
    fn byte_sizes_are_base_2() {
        assert_eq!(ByteSize::parse("0"), Ok(ByteSize { bytes: 0 }));
        assert_eq!(ByteSize::parse("512B"), Ok(ByteSize { bytes: 512 }));
        assert_eq!(ByteSize::parse("1KB"), Ok(ByteSize { bytes: 1024 }));
        assert_eq!(ByteSize::parse("1.5KiB"), Ok(ByteSize { bytes: 1536 }));
        assert_eq!(ByteSize::parse("2GB"), Ok(ByteSize { bytes: 2 << 30 }));
        assert!(ByteSize::parse("10").is_err());
        assert!(ByteSize::parse("10 parsecs").is_err());
        assert!(ByteSize::parse("-1MB").is_err());
        assert!(serde_saphyr::from_str::<ScrapeConfig>("job_name: x\nbody_size_limit: 10XB\n").is_err());
        assert!(serde_saphyr::from_str::<ScrapeConfig>("job_name: x\nscrape_protocols: [Gopher]\n").is_err());
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
            ("job_name: j\nscrape_protocols: [PrometheusProto]\n", "scrape_protocols"),
            ("job_name: j\nscrape_protocols: []\n", "scrape_protocols"),
            ("job_name: j\nscrape_protocols: [PrometheusText0.0.4, PrometheusText0.0.4]\n", "scrape_protocols"),
            ("job_name: j\nfallback_scrape_protocol: PrometheusProto\n", "fallback_scrape_protocol"),
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

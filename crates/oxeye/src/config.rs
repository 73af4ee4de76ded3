//! The configuration file: read into [`ConfigFile`] (human units as strings, unknown fields rejected),
//! overridden from `OXEYE_*` environment variables, then validated into typed [`ServeSettings`].
//!
//! The commented example `config.example.yaml` is the reference: `oxeye config example` prints it and a
//! test checks that it parses to exactly [`ConfigFile::default`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use oxeye_model::duration::parse_duration_ms;
use serde::{Deserialize, Serialize};

/// The commented example configuration, every field at its default.
pub const EXAMPLE: &str = include_str!("../config.example.yaml");

/// The prefix of environment variables that override configuration fields.
pub const ENV_PREFIX: &str = "OXEYE_";

/// Why a configuration could not be loaded. Messages name the file and line, the environment variable,
/// or the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse into the configuration shape (the message carries line and column).
    #[error("config file {path}: {message}")]
    Parse {
        /// The path as given.
        path: String,
        /// serde-saphyr's message with line, column and a snippet.
        message: String,
    },
    /// An `OXEYE_*` variable names no field or holds a value of the wrong shape.
    #[error("environment variable {variable}: {message}")]
    Environment {
        /// The variable's name.
        variable: String,
        /// What is wrong.
        message: String,
    },
    /// A field holds a value that parses but is not acceptable.
    #[error("config field {field}: {message}")]
    Invalid {
        /// The field's path, e.g. `storage.retention`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The file's shape. Human units stay strings here; [`ConfigFile::validate`] converts them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// The file format's version; only 1 exists.
    pub version: u32,
    /// Listeners and request limits.
    pub server: ServerSection,
    /// Data directory and retention.
    pub storage: StorageSection,
    /// PromQL engine limits.
    pub query: QuerySection,
    /// oxeye's own log output.
    pub logging: LoggingSection,
    /// Scraping oxeye's own `/metrics`.
    pub self_scrape: SelfScrapeSection,
    /// Defaults for every scrape config.
    pub global: GlobalSection,
    /// Logs: the log store's limits, PII redaction and tailed files.
    pub logs: crate::config_logs::LogsSection,
    /// Traces: the trace store, tail sampling and span metrics.
    pub traces: crate::config_traces_pipeline::TracesSection,
    /// Prometheus scrape configs, passed to the scraper.
    pub scrape_configs: Vec<serde_json::Value>,
}

/// `server:`: listeners and request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// `host:port` of the listener for every API.
    pub listen: String,
    /// `host:port` for OTLP/HTTP, or empty to turn it off.
    pub otlp_http_listen: String,
    /// `host:port` for OTLP/gRPC, or empty to turn it off.
    pub otlp_grpc_listen: String,
    /// The largest decoded request body, e.g. `64MiB`.
    pub max_request_body_size: String,
}

/// `storage:`: where data lives and how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// The data directory.
    pub data_dir: String,
    /// Time retention, a Prometheus duration.
    pub retention: String,
    /// Size retention, e.g. `10GiB`; `0` disables it.
    pub retention_size: String,
    /// The time range of a block cut from the head.
    pub block_duration: String,
    /// How often the metrics store cuts blocks, compacts and applies retention, a Prometheus duration.
    pub maintenance_interval: String,
}

/// `query:`: PromQL limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySection {
    /// How far back an instant selector looks.
    pub lookback_delta: String,
    /// The longest a query may run.
    pub timeout: String,
    /// The most samples a query may hold at once.
    pub max_samples: u64,
}

/// `logging:`: oxeye's own logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// A level or a tracing-subscriber filter directive.
    pub level: String,
    /// `json` or `text`.
    pub format: String,
}

/// `self_scrape:`: scraping oxeye's own `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfScrapeSection {
    /// Whether oxeye scrapes itself under job `oxeye`.
    pub enabled: bool,
    /// How often.
    pub scrape_interval: String,
}

/// `global:`: Prometheus' global scrape defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalSection {
    /// Default scrape interval.
    pub scrape_interval: String,
    /// Default scrape timeout.
    pub scrape_timeout: String,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            version: 1,
            server: ServerSection::default(),
            storage: StorageSection::default(),
            query: QuerySection::default(),
            logging: LoggingSection::default(),
            self_scrape: SelfScrapeSection::default(),
            global: GlobalSection::default(),
            logs: crate::config_logs::LogsSection::default(),
            traces: crate::config_traces_pipeline::TracesSection::default(),
            scrape_configs: Vec::new(),
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:9090".into(),
            otlp_http_listen: "127.0.0.1:4318".into(),
            otlp_grpc_listen: "127.0.0.1:4317".into(),
            max_request_body_size: "64MiB".into(),
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            data_dir: "./oxeye-data".into(),
            retention: "30d".into(),
            retention_size: "0".into(),
            block_duration: "2h".into(),
            maintenance_interval: "1m".into(),
        }
    }
}

impl Default for QuerySection {
    fn default() -> Self {
        QuerySection { lookback_delta: "5m".into(), timeout: "2m".into(), max_samples: 50_000_000 }
    }
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection { level: "info".into(), format: "json".into() }
    }
}

impl Default for SelfScrapeSection {
    fn default() -> Self {
        SelfScrapeSection { enabled: true, scrape_interval: "15s".into() }
    }
}

impl Default for GlobalSection {
    fn default() -> Self {
        GlobalSection { scrape_interval: "15s".into(), scrape_timeout: "10s".into() }
    }
}

/// The validated settings `oxeye serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// The listener for every API.
    pub listen: SocketAddr,
    /// The OTLP/HTTP listener, if on.
    pub otlp_http_listen: Option<SocketAddr>,
    /// The OTLP/gRPC listener, if on.
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// The largest decoded request body, in bytes.
    pub max_request_body_bytes: u64,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Time retention, in milliseconds.
    pub retention_ms: i64,
    /// Size retention in bytes, if any.
    pub retention_size_bytes: Option<u64>,
    /// Block range, in milliseconds.
    pub block_duration_ms: i64,
    /// Period of the metrics store's maintenance (block cut, compaction, retention).
    pub maintenance_interval: Duration,
    /// Lookback delta, in milliseconds.
    pub lookback_delta_ms: i64,
    /// Query timeout.
    pub query_timeout: Duration,
    /// Query sample limit.
    pub max_samples: u64,
    /// Log filter directive.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Self-scrape interval, if on, in milliseconds.
    pub self_scrape_interval_ms: Option<i64>,
    /// Global scrape interval, in milliseconds.
    pub global_scrape_interval_ms: i64,
    /// Global scrape timeout, in milliseconds.
    pub global_scrape_timeout_ms: i64,
    /// The scrape configs as given, for the scraper to deserialize and validate.
    pub scrape_configs: Vec<serde_json::Value>,
    /// The validated `logs:` section.
    pub logs: crate::config_logs::LogsSettings,
    /// The validated `traces.sampling` and `traces.span_metrics` sections.
    pub trace_pipeline: oxeye_pipeline::traces::TracePipelineOptions,
    /// The validated `traces.storage` section.
    pub trace_storage: crate::config_traces::TraceStorageSettings,
}

/// oxeye's own log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl ConfigFile {
    /// Parses YAML text; `origin` names the source in errors (a path, or `<example>`).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with line and column.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        serde_saphyr::from_str::<ConfigFile>(text)
            .map_err(|error| ConfigError::Parse { path: origin.to_string(), message: error.to_string() })
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Applies `OXEYE_*` overrides from `variables` (name, value): `OXEYE_STORAGE__RETENTION=7d` sets
    /// `storage.retention`. Values are read as YAML scalars or flow collections. Variables whose first
    /// part names no top-level field (`OXEYE_BIN`) are not ours and are ignored.
    ///
    /// # Errors
    /// [`ConfigError::Environment`] naming the variable when it names no field or its value has the wrong
    /// shape.
    pub fn apply_environment(self, variables: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut overrides: Vec<(String, String)> =
            variables.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
        if overrides.is_empty() {
            return Ok(self);
        }
        overrides.sort();
        let mut tree = serde_json::to_value(&self).map_err(|error| ConfigError::Environment {
            variable: ENV_PREFIX.to_string(),
            message: error.to_string(),
        })?;
        for (variable, raw_value) in &overrides {
            let environment_error = |message: String| ConfigError::Environment { variable: variable.clone(), message };
            let path: Vec<String> =
                variable[ENV_PREFIX.len()..].split("__").map(|part| part.to_ascii_lowercase()).collect();
            // Variables that name no top-level field belong to someone else (e.g. OXEYE_BIN in a test
            // harness); a typo below a known section is still an error.
            if tree.get(&path[0]).is_none() {
                continue;
            }
            let mut node = &mut tree;
            for (depth, key) in path.iter().enumerate() {
                let object = node
                    .as_object_mut()
                    .ok_or_else(|| environment_error(format!("{} is not a section", path[..depth].join("."))))?;
                node = object
                    .get_mut(key)
                    .ok_or_else(|| environment_error(format!("no config field {}", path[..=depth].join("."))))?;
            }
            let value: serde_json::Value = serde_saphyr::from_str(raw_value)
                .map_err(|error| environment_error(format!("value {raw_value:?} is not valid YAML: {error}")))?;
            // YAML reads `30d` as a string and `1` as a number: keep strings where the field is a string.
            *node = match (&*node, value) {
                (serde_json::Value::String(_), serde_json::Value::Number(number)) => {
                    serde_json::Value::String(number.to_string())
                }
                (serde_json::Value::String(_), serde_json::Value::Bool(flag)) => {
                    serde_json::Value::String(flag.to_string())
                }
                (_, other) => other,
            };
        }
        serde_json::from_value(tree).map_err(|error| ConfigError::Environment {
            variable: overrides.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", "),
            message: error.to_string(),
        })
    }

    /// Checks every field and converts human units.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<ServeSettings, ConfigError> {
        if self.version != 1 {
            return Err(invalid("version", format!("unsupported version {}, expected 1", self.version)));
        }
        let listen = parse_address("server.listen", &self.server.listen)?;
        let otlp_http_listen = parse_optional_address("server.otlp_http_listen", &self.server.otlp_http_listen)?;
        let otlp_grpc_listen = parse_optional_address("server.otlp_grpc_listen", &self.server.otlp_grpc_listen)?;
        let max_request_body_bytes =
            parse_byte_size("server.max_request_body_size", &self.server.max_request_body_size)?;
        if max_request_body_bytes == 0 {
            return Err(invalid("server.max_request_body_size", "must be greater than 0".into()));
        }
        if self.storage.data_dir.is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty".into()));
        }
        let retention_ms = parse_positive_duration("storage.retention", &self.storage.retention)?;
        let retention_size = parse_byte_size("storage.retention_size", &self.storage.retention_size)?;
        let block_duration_ms = parse_positive_duration("storage.block_duration", &self.storage.block_duration)?;
        if block_duration_ms > retention_ms {
            return Err(invalid("storage.block_duration", "must not exceed storage.retention".into()));
        }
        let maintenance_interval_ms =
            parse_positive_duration("storage.maintenance_interval", &self.storage.maintenance_interval)?;
        let lookback_delta_ms = parse_positive_duration("query.lookback_delta", &self.query.lookback_delta)?;
        let query_timeout_ms = parse_positive_duration("query.timeout", &self.query.timeout)?;
        if self.query.max_samples == 0 {
            return Err(invalid("query.max_samples", "must be greater than 0".into()));
        }
        let log_format = match self.logging.format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(invalid("logging.format", format!("{other:?} is not json or text"))),
        };
        if self.logging.level.trim().is_empty() {
            return Err(invalid("logging.level", "must not be empty".into()));
        }
        let self_scrape_interval_ms =
            parse_positive_duration("self_scrape.scrape_interval", &self.self_scrape.scrape_interval)?;
        let global_scrape_interval_ms =
            parse_positive_duration("global.scrape_interval", &self.global.scrape_interval)?;
        let global_scrape_timeout_ms = parse_positive_duration("global.scrape_timeout", &self.global.scrape_timeout)?;
        Ok(ServeSettings {
            listen,
            otlp_http_listen,
            otlp_grpc_listen,
            max_request_body_bytes,
            data_dir: PathBuf::from(&self.storage.data_dir),
            retention_ms,
            retention_size_bytes: (retention_size > 0).then_some(retention_size),
            block_duration_ms,
            maintenance_interval: Duration::from_millis(maintenance_interval_ms.unsigned_abs()),
            lookback_delta_ms,
            query_timeout: Duration::from_millis(query_timeout_ms.unsigned_abs()),
            max_samples: self.query.max_samples,
            log_level: self.logging.level.clone(),
            log_format,
            self_scrape_interval_ms: self.self_scrape.enabled.then_some(self_scrape_interval_ms),
            global_scrape_interval_ms,
            global_scrape_timeout_ms,
            scrape_configs: self.scrape_configs.clone(),
            logs: self.logs.validate()?,
            trace_pipeline: self.traces.pipeline_options()?,
            trace_storage: self.traces.storage.validate()?,
        })
    }
}

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::Invalid { field: field.to_string(), message }
}

fn parse_address(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| invalid(field, format!("{text:?} is not a host:port socket address")))
}

fn parse_optional_address(field: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.is_empty() { Ok(None) } else { parse_address(field, text).map(Some) }
}

fn parse_positive_duration(field: &str, text: &str) -> Result<i64, ConfigError> {
    let milliseconds = parse_duration_ms(text).map_err(|error| invalid(field, error.to_string()))?;
    if milliseconds <= 0 {
        return Err(invalid(field, format!("{text:?} must be greater than 0")));
    }
    Ok(milliseconds)
}

/// Parses a human byte size: `0`, `512B`, `64MiB`, `10GB`; KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB
/// powers of 1000.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `field` for anything else.
pub fn parse_byte_size(field: &str, text: &str) -> Result<u64, ConfigError> {
    let trimmed = text.trim();
    let split_at = trimmed.find(|character: char| !character.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split_at);
    let bad = || invalid(field, format!("{text:?} is not a size such as 512MiB or 10GB"));
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    number.checked_mul(multiplier).ok_or_else(bad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_exactly_the_defaults() {
        let parsed = ConfigFile::parse(EXAMPLE, "<example>").unwrap();
        assert_eq!(parsed, ConfigFile::default());
        let settings = parsed.validate().unwrap();
        assert_eq!(settings.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(settings.retention_ms, 30 * 86_400_000);
        assert_eq!(settings.max_request_body_bytes, 64 << 20);
        assert_eq!(settings.retention_size_bytes, None);
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(ConfigFile::parse("{}", "x").unwrap(), ConfigFile::default());
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let error = ConfigFile::parse("storage:\n  retention: 30d\n  retension_size: 1GB\n", "oxeye.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("oxeye.yaml") && error.contains("line 3") && error.contains("retension_size"),
            "{error}"
        );
    }

    #[test]
    fn bad_units_name_the_field() {
        let mut config = ConfigFile::default();
        config.storage.retention = "30 days".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("storage.retention"), "{error}");
        let mut config = ConfigFile::default();
        config.server.max_request_body_size = "64 parsecs".into();
        assert!(config.validate().unwrap_err().to_string().contains("server.max_request_body_size"));
    }

    #[test]
    fn environment_overrides_fields_and_names_unknown_variables() {
        let config = ConfigFile::default()
            .apply_environment([
                ("OXEYE_STORAGE__RETENTION".to_string(), "7d".to_string()),
                ("OXEYE_QUERY__MAX_SAMPLES".to_string(), "1000".to_string()),
                ("OXEYE_SELF_SCRAPE__ENABLED".to_string(), "false".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ])
            .unwrap();
        assert_eq!(config.storage.retention, "7d");
        assert_eq!(config.query.max_samples, 1000);
        assert!(!config.self_scrape.enabled);
        let error = ConfigFile::default()
            .apply_environment([("OXEYE_STORAGE__RETENTON".to_string(), "7d".to_string())])
            .unwrap_err()
            .to_string();
        assert!(error.contains("OXEYE_STORAGE__RETENTON") && error.contains("storage.retenton"), "{error}");
        let unrelated = ConfigFile::default().apply_environment([("OXEYE_BIN".to_string(), "/x".to_string())]);
        assert_eq!(unrelated.unwrap(), ConfigFile::default());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("f", "512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_byte_size("f", "10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_byte_size("f", "0").unwrap(), 0);
        assert!(parse_byte_size("f", "10 XB").is_err());
    }
}

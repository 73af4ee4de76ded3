//! The `traces.storage:` section of the configuration file: the trace store's retention, head cut and block
//! page size. Read into [`TraceStorageSection`] (human units as strings, unknown fields rejected), validated
//! into [`TraceStorageSettings`], which builds the store's [`TraceStoreOptions`].

use std::path::Path;
use std::time::Duration;

use oxeye_tracestore::{
    DEFAULT_MAX_HEAD_AGE, DEFAULT_MAX_HEAD_SPANS, DEFAULT_PAGE_BYTES, DEFAULT_RETENTION,
    DEFAULT_WAL_SEGMENT_SIZE_BYTES, TraceStoreOptions,
};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, parse_byte_size};

/// `traces.storage:`: the trace store under `storage.data_dir/traces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceStorageSection {
    /// How long spans are kept, a Prometheus duration: older spans are refused on push and blocks whose
    /// newest span is older are deleted.
    pub retention: String,
    /// The head is cut into a block once it holds this many spans.
    pub max_head_spans: u64,
    /// ... or once its first span arrived this long ago, a Prometheus duration.
    pub max_head_age: String,
    /// Uncompressed size of a block page, e.g. `80KiB`: larger compresses better, smaller makes by-id
    /// reads cheaper. Between 1KiB and 64MiB.
    pub page_size: String,
    /// Size of a WAL segment file, e.g. `64MiB`; at least 1MiB.
    pub wal_segment_size: String,
}

impl Default for TraceStorageSection {
    fn default() -> Self {
        TraceStorageSection {
            retention: "30d".into(),
            max_head_spans: DEFAULT_MAX_HEAD_SPANS,
            max_head_age: "5m".into(),
            page_size: "80KiB".into(),
            wal_segment_size: "64MiB".into(),
        }
    }
}

/// The validated `traces.storage:` settings; [`TraceStorageSettings::store_options`] places them in a
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStorageSettings {
    /// Retention.
    pub retention: Duration,
    /// Head size at which a block is cut, in spans.
    pub max_head_spans: u64,
    /// Head age at which a block is cut.
    pub max_head_age: Duration,
    /// Block page size, in uncompressed bytes.
    pub page_bytes: usize,
    /// WAL segment size, in bytes.
    pub wal_segment_size_bytes: u64,
}

impl Default for TraceStorageSettings {
    fn default() -> Self {
        TraceStorageSettings {
            retention: DEFAULT_RETENTION,
            max_head_spans: DEFAULT_MAX_HEAD_SPANS,
            max_head_age: DEFAULT_MAX_HEAD_AGE,
            page_bytes: DEFAULT_PAGE_BYTES,
            wal_segment_size_bytes: DEFAULT_WAL_SEGMENT_SIZE_BYTES,
        }
    }
}

impl TraceStorageSettings {
    /// The store's options with its files in `dir`.
    pub fn store_options(&self, dir: &Path) -> TraceStoreOptions {
        TraceStoreOptions {
            retention: self.retention,
            max_head_spans: self.max_head_spans,
            max_head_age: self.max_head_age,
            page_bytes: self.page_bytes,
            wal_segment_size_bytes: self.wal_segment_size_bytes,
            ..TraceStoreOptions::new(dir)
        }
    }
}

fn positive_duration(field: &str, text: &str) -> Result<Duration, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { field: field.to_string(), message };
    let milliseconds = oxeye_model::duration::parse_duration_ms(text).map_err(|error| invalid(error.to_string()))?;
    if milliseconds <= 0 {
        return Err(invalid(format!("{text:?} must be greater than 0")));
    }
    Ok(Duration::from_millis(milliseconds.unsigned_abs()))
}

impl TraceStorageSection {
    /// Checks every field and converts human units; the ranges are the store's own
    /// ([`TraceStoreOptions::validate`]).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field (`traces.storage.retention`, ...).
    pub fn validate(&self) -> Result<TraceStorageSettings, ConfigError> {
        let page_bytes = parse_byte_size("traces.storage.page_size", &self.page_size)?;
        let settings = TraceStorageSettings {
            retention: positive_duration("traces.storage.retention", &self.retention)?,
            max_head_spans: self.max_head_spans,
            max_head_age: positive_duration("traces.storage.max_head_age", &self.max_head_age)?,
            page_bytes: usize::try_from(page_bytes).unwrap_or(usize::MAX),
            wal_segment_size_bytes: parse_byte_size("traces.storage.wal_segment_size", &self.wal_segment_size)?,
        };
        settings.store_options(Path::new("")).validate().map_err(|error| {
            let field = match &error {
                oxeye_tracestore::TraceStoreError::InvalidOption { field, .. } => match *field {
                    "page_bytes" => "page_size",
                    "wal_segment_size_bytes" => "wal_segment_size",
                    other => other,
                },
                _ => "",
            };
            let message = match error {
                oxeye_tracestore::TraceStoreError::InvalidOption { reason, .. } => reason,
                other => other.to_string(),
            };
            ConfigError::Invalid { field: format!("traces.storage.{field}"), message }
        })?;
        Ok(settings)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    #[test]
    fn defaults_are_the_stores_defaults_with_30_days_of_retention() {
        let settings = TraceStorageSection::default().validate().unwrap();
        assert_eq!(settings, TraceStorageSettings::default());
        assert_eq!(settings.retention, Duration::from_secs(30 * 86_400));
        let options = settings.store_options(Path::new("/data/traces"));
        assert_eq!(options.dir, Path::new("/data/traces"));
        assert_eq!(options.retention, DEFAULT_RETENTION);
    }

    #[test]
    fn a_storage_section_parses_and_validates() {
        let yaml = "traces:\n  storage:\n    retention: 7d\n    max_head_spans: 5000\n    max_head_age: 1m\n    \
                    page_size: 64KiB\n    wal_segment_size: 16MiB\n";
        let settings = ConfigFile::parse(yaml, "t.yaml").unwrap().validate().unwrap().trace_storage;
        assert_eq!(settings.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(settings.max_head_spans, 5000);
        assert_eq!(settings.max_head_age, Duration::from_secs(60));
        assert_eq!(settings.page_bytes, 64 << 10);
        assert_eq!(settings.wal_segment_size_bytes, 16 << 20);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = ConfigFile::parse("traces:\n  storage:\n    retention_days: 7\n", "t.yaml").unwrap_err();
        assert!(error.to_string().contains("retention_days"), "{error}");
    }

    #[test]
    fn bad_fields_are_named() {
        let error = |section: TraceStorageSection| section.validate().unwrap_err().to_string();
        let message = error(TraceStorageSection { retention: "0s".into(), ..TraceStorageSection::default() });
        assert!(message.contains("traces.storage.retention"), "{message}");
        let message = error(TraceStorageSection { max_head_age: "soon".into(), ..TraceStorageSection::default() });
        assert!(message.contains("traces.storage.max_head_age"), "{message}");
        let message = error(TraceStorageSection { max_head_spans: 0, ..TraceStorageSection::default() });
        assert!(message.contains("traces.storage.max_head_spans"), "{message}");
        let message = error(TraceStorageSection { page_size: "512B".into(), ..TraceStorageSection::default() });
        assert!(message.contains("traces.storage.page_size") && message.contains("1 KiB"), "{message}");
        let message = error(TraceStorageSection { wal_segment_size: "1KiB".into(), ..TraceStorageSection::default() });
        assert!(message.contains("traces.storage.wal_segment_size"), "{message}");
    }
}

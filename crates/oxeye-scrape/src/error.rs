//! The crate's one error type.

use oxeye_model::storage::{ErrorKind, StorageError};

/// Everything that can go wrong while configuring or running scrapes.
///
/// A failed scrape reports one of these as the target's `lastError` on `/api/v1/targets`; its
/// message is written for that audience (lowercase, no trailing period).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScrapeError {
    /// The scraped body is not valid exposition text. `line_number` is 1-based.
    #[error("line {line_number}: {reason}")]
    Parse {
        /// The 1-based line of the body where parsing stopped.
        line_number: usize,
        /// What is wrong there, quoting the offending text.
        reason: String,
    },
    /// A scrape config is invalid; `field` is the YAML field name as in Prometheus.
    #[error("scrape config for job {job:?}: {field}: {reason}")]
    InvalidConfig {
        /// The `job_name` of the offending scrape config (empty when the name itself is missing).
        job: String,
        /// The offending field, e.g. `scrape_timeout` or `relabel_configs[1].regex`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target answered with a non-2xx status (Prometheus' wording).
    #[error("server returned HTTP status {status}")]
    HttpStatus {
        /// The status line, e.g. `500 Internal Server Error`.
        status: String,
    },
    /// The request could not be sent or its body not read (connection refused, TLS, decoding).
    #[error("http request failed: {reason}")]
    Http {
        /// The client's description of the failure.
        reason: String,
    },
    /// The scrape took longer than `scrape_timeout`.
    #[error("scrape timed out after {timeout_ms} ms")]
    Timeout {
        /// The configured timeout, in milliseconds.
        timeout_ms: i64,
    },
    /// The body was larger than the configured limit.
    #[error("response body exceeds the limit of {limit_bytes} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// A scraped sample is unusable after relabelling (e.g. `metric_relabel_configs` removed its name);
    /// Prometheus fails the whole scrape for it.
    #[error("line {line_number}: {reason}")]
    InvalidSample {
        /// The 1-based line of the body the sample came from.
        line_number: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// More samples than `sample_limit` remained after metric relabelling.
    #[error("sample limit exceeded: {samples} samples, the limit is {limit}")]
    SampleLimitExceeded {
        /// Samples after metric relabelling.
        samples: u64,
        /// The configured `sample_limit`.
        limit: u64,
    },
    /// A `password_file`, `credentials_file` or `bearer_token_file` could not be read.
    #[error("reading {path}: {reason}")]
    CredentialsFile {
        /// The file as configured.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The scrape manager was created outside a Tokio runtime.
    #[error("the scrape manager must be created inside a tokio runtime")]
    NoRuntime,
    /// The storage refused the whole scrape (I/O failure, shutting down).
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The HTTP client could not be built (TLS setup).
    #[error("building the http client: {reason}")]
    Client {
        /// The client builder's description of the failure.
        reason: String,
    },
}

impl ScrapeError {
    /// The error's category; only the server maps it to an HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ScrapeError::Parse { .. }
            | ScrapeError::InvalidConfig { .. }
            | ScrapeError::InvalidSample { .. }
            | ScrapeError::SampleLimitExceeded { .. } => ErrorKind::BadData,
            ScrapeError::HttpStatus { .. }
            | ScrapeError::Http { .. }
            | ScrapeError::Timeout { .. }
            | ScrapeError::BodyTooLarge { .. } => ErrorKind::Unavailable,
            ScrapeError::Storage(storage_error) => storage_error.kind(),
            ScrapeError::CredentialsFile { .. } => ErrorKind::Unavailable,
            ScrapeError::Client { .. } | ScrapeError::NoRuntime => ErrorKind::Internal,
        }
    }
}

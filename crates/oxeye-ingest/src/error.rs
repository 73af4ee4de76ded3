//! The crate's one error type.

use oxeye_model::storage::ErrorKind;

/// Why a request body could not be decoded. Messages are lowercase and name the position or field, e.g.
/// `protobuf: invalid wire type 2 for field timeseries[3].samples[0].value (expected 1)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// The snappy block is corrupt or truncated.
    #[error("snappy: {reason}")]
    Snappy {
        /// What the snappy decoder found, with the byte position when it knows it.
        reason: String,
    },
    /// The gzip stream is corrupt or truncated.
    #[error("gzip: {reason}")]
    Gzip {
        /// What the gzip decoder found.
        reason: String,
    },
    /// The decoded body is larger than the configured cap (HTTP 413).
    #[error("decoded body exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit_bytes: usize,
    },
    /// The `Content-Encoding` is not one we decode.
    #[error("unsupported content encoding {encoding:?}")]
    UnsupportedEncoding {
        /// The header value.
        encoding: String,
    },
    /// The protobuf bytes are malformed at `field` (a path such as `timeseries[3].samples`).
    #[error("protobuf: {reason} for field {field}")]
    Protobuf {
        /// The path of the field being read.
        field: String,
        /// What is wrong, e.g. `invalid wire type 2 (expected 1)` or `truncated varint at byte 17`.
        reason: String,
    },
    /// A string field holds invalid UTF-8.
    #[error("protobuf: invalid UTF-8 in field {field}")]
    InvalidUtf8 {
        /// The path of the string field.
        field: String,
    },
    /// A remote_write 2.0 reference points outside the symbols table.
    #[error("{field}: symbol reference {reference} is out of range (the table has {symbols} symbols)")]
    SymbolOutOfRange {
        /// The path of the reference.
        field: String,
        /// The reference.
        reference: u32,
        /// The table's length.
        symbols: usize,
    },
    /// A remote_write 2.0 `labels_refs` list has an odd length.
    #[error("{field}: odd number of label references ({count})")]
    OddLabelReferences {
        /// The path of the list.
        field: String,
        /// Its length.
        count: usize,
    },
    /// One series' labels are not acceptable; the series is skipped, the rest of the request is valid.
    #[error("timeseries[{index}]: {problem}")]
    InvalidSeries {
        /// The series' position in the request.
        index: usize,
        /// What is wrong with its labels.
        problem: SeriesProblem,
    },
    /// The JSON body is malformed or has a wrong type at `field` (a path such as
    /// `resourceMetrics[0].scopeMetrics[1].metrics[2].sum.dataPoints[0].asInt`).
    #[error("json: {reason} at {field}")]
    Json {
        /// The path of the value, or `$` for the document.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A tailed log file or the tail positions file could not be read or written.
    #[error("tailing {path}: {operation}: {reason}")]
    Tail {
        /// The file (or glob).
        path: String,
        /// What failed, e.g. `read`, `fsync`, `parse glob`.
        operation: &'static str,
        /// The OS or parser message.
        reason: String,
    },
}

/// What is wrong with one series' label set, by Prometheus 3's remote_write rules (`labels.IsValid` with
/// UTF-8 validation and `HasDuplicateLabelNames`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesProblem {
    /// No `__name__` label.
    #[error("missing metric name (label __name__)")]
    MissingMetricName,
    /// `__name__` is present but empty.
    #[error("empty metric name")]
    EmptyMetricName,
    /// A label has an empty name.
    #[error("empty label name")]
    EmptyLabelName,
    /// A label name occurs twice.
    #[error("duplicate label name {0:?}")]
    DuplicateLabelName(String),
    /// A label name or value is not valid UTF-8.
    #[error("invalid UTF-8 in label {position} {part}")]
    InvalidUtf8 {
        /// The label's position in the series.
        position: usize,
        /// `name` or `value`.
        part: &'static str,
    },
}

impl IngestError {
    /// The error's category: [`ErrorKind::Limit`] for [`IngestError::TooLarge`], [`ErrorKind::BadData`]
    /// for everything else (malformed input), except [`IngestError::Tail`]: [`ErrorKind::Internal`] (local I/O).
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::TooLarge { .. } => ErrorKind::Limit,
            IngestError::Tail { .. } => ErrorKind::Internal,
            IngestError::Snappy { .. }
            | IngestError::Gzip { .. }
            | IngestError::UnsupportedEncoding { .. }
            | IngestError::Protobuf { .. }
            | IngestError::InvalidUtf8 { .. }
            | IngestError::SymbolOutOfRange { .. }
            | IngestError::OddLabelReferences { .. }
            | IngestError::InvalidSeries { .. }
            | IngestError::Json { .. } => ErrorKind::BadData,
        }
    }
}

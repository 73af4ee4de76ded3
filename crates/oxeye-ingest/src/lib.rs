//! Pure decoders from wire bytes to `oxeye-model` values: no I/O, no HTTP.
//!
//! In reading order:
//! - [`compression`]: undoing `Content-Encoding` (snappy block, gzip) with a cap on the decoded size.
//! - [`remote_write`]: Prometheus remote_write 1.0 and 2.0 bodies into borrowed series
//!   ([`remote_write::WriteRequestView`]) validated as Prometheus 3 validates them.
//! - [`otlp_metrics`]: OTLP `ExportMetricsServiceRequest` from protobuf or OTLP/JSON, translated into
//!   Prometheus series by the OTLP→Prometheus naming rules, with counts of rejected data points for the
//!   OTLP partial-success response.
//! - [`otlp`]: OTLP/HTTP bodies of traces, metrics and logs (protobuf or JSON) into `oxeye-proto` messages.
//! - [`otlp_json`]: the OTLP/JSON decoder behind it (hex ids, integer enums, 64-bit integers as strings
//!   or numbers, lowerCamelCase keys, unknown fields ignored).
//! - [`otlp_traces`]: OTLP spans into the `oxeye_model::traces` span model, spans with invalid ids refused
//!   one by one (OTLP partial success).
//! - [`prometheus_names`]: the OTLP→Prometheus metric and label name translation.
//! - [`tail`]: tailing JSON-lines or plain-text log files (globs, rotation by rename and truncation,
//!   positions kept across restarts) into log streams; the only module here that reads files.
//!
//! Every failure is an [`IngestError`] whose [`IngestError::kind`] tells the server which status to send.
//!
//! ```
//! use oxeye_ingest::remote_write::decode_write_request;
//! use oxeye_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
//! use prost::Message;
//! let body = WriteRequest {
//!     timeseries: vec![TimeSeries {
//!         labels: vec![
//!             Label { name: "__name__".into(), value: "up".into() },
//!             Label { name: "job".into(), value: "node".into() },
//!         ],
//!         samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
//!         ..Default::default()
//!     }],
//!     metadata: vec![],
//! }
//! .encode_to_vec();
//! let view = decode_write_request(&body).unwrap();
//! let series = view.series().next().unwrap();
//! assert_eq!(series.to_labels().to_string(), r#"up{job="node"}"#);
//! assert_eq!(series.samples()[0].timestamp_ms, 1_700_000_000_000);
//! ```

pub mod compression;
mod error;
pub mod loki_push;
pub mod otlp;
pub mod otlp_json;
pub mod otlp_logs;
pub mod otlp_metrics;
pub mod otlp_traces;
pub mod prometheus_names;
mod protowire;
pub mod remote_write;
pub mod tail;

pub use error::{IngestError, SeriesProblem};
pub use remote_write::FamilyMetadata;

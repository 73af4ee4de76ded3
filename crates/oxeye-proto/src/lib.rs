//! Protobuf message types for the wire formats oxeye speaks, written by hand from the field numbers of the
//! upstream `.proto` files and derived with `prost` (no build script, no `protoc`).
//!
//! In reading order:
//! - [`otlp`]: OpenTelemetry Protocol messages (`opentelemetry.proto.*`): [`otlp::common`] values and
//!   attributes, [`otlp::resource`], [`otlp::metrics`], [`otlp::trace`], [`otlp::logs`], and the
//!   [`otlp::collector`] `Export*ServiceRequest`/`Response` pairs with their partial success.
//! - [`google_rpc`]: `google.rpc.Status`, the body of an OTLP failure response.
//! - [`prometheus`]: remote_write 1.0 (`prometheus.WriteRequest`, from Prometheus' `prompb/types.proto`,
//!   `prompb/remote.proto`).
//! - [`prometheus_v2`]: remote_write 2.0 (`io.prometheus.write.v2.Request`, with its symbols table).
//! - [`tempo`]: `tempopb.Trace` and `TraceByIDResponse`, the protobuf bodies of Tempo's trace-by-id API.
//!
//! These are wire types only: decoding into oxeye's own model (`oxeye-model`) and every validation live in
//! `oxeye-ingest`. Field names follow the `.proto` files (snake case), so the upstream documentation applies.
//! Timestamps keep their wire units: OTLP uses **nanoseconds** since the Unix epoch (`*_unix_nano`),
//! remote_write **milliseconds**.
//!
//! ```
//! use oxeye_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
//! use prost::Message;
//! let request = WriteRequest {
//!     timeseries: vec![TimeSeries {
//!         labels: vec![Label { name: "__name__".into(), value: "up".into() }],
//!         samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
//!         ..Default::default()
//!     }],
//!     metadata: vec![],
//! };
//! let bytes = request.encode_to_vec();
//! assert_eq!(WriteRequest::decode(bytes.as_slice()).unwrap(), request);
//! ```

pub mod google_rpc;
pub mod loki;
pub mod otlp;
pub mod prometheus;
pub mod prometheus_v2;
pub mod tempo;

pub use prost;

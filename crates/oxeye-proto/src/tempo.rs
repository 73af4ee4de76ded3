//! `tempopb` (Grafana Tempo, `pkg/tempopb/tempo.proto`, Apache-2.0): the messages of the trace-by-id API
//! when a client asks for `Accept: application/protobuf`.
//!
//! `tempopb.Trace` (`repeated ResourceSpans resourceSpans = 1`) is wire-identical to OTLP `TracesData`, so
//! [`Trace`] is that type.

use crate::otlp::trace::TracesData;

/// `tempopb.Trace`: the spans of one trace by resource (`resourceSpans = 1`).
pub type Trace = TracesData;

/// `tempopb.TraceByIDResponse`, the body of `GET /api/v2/traces/<id>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    /// `trace = 1`.
    #[prost(message, optional, tag = "1")]
    pub trace: Option<Trace>,
    /// `metrics = 2`.
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<TraceByIdMetrics>,
    /// `status = 3`: [`PartialStatus`] (0 complete, 1 partial).
    #[prost(enumeration = "PartialStatus", tag = "3")]
    pub status: i32,
    /// `message = 4`: why the trace is partial, empty otherwise.
    #[prost(string, tag = "4")]
    pub message: String,
}

/// `tempopb.TraceByIDMetrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdMetrics {
    /// `inspectedBytes = 1`: bytes read to answer.
    #[prost(uint64, tag = "1")]
    pub inspected_bytes: u64,
}

/// `tempopb.PartialStatus`: whether the returned trace is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PartialStatus {
    /// `COMPLETE = 0`.
    Complete = 0,
    /// `PARTIAL = 1`: the trace was cut (e.g. a size limit).
    Partial = 1,
}

//! `opentelemetry.proto.logs.v1`: log records grouped by resource and scope.
//!
//! Times are `fixed64` **nanoseconds** since the Unix epoch.

use super::common::{AnyValue, InstrumentationScope, KeyValue};
use super::resource::Resource;

/// Logs as stored in files (`LogsData`), the same shape as the export request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogsData {
    /// `resource_logs = 1`.
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// The log records of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    /// `resource = 1`.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// `scope_logs = 2`.
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The log records of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    /// `scope = 1`.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// `log_records = 2`.
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One log record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    /// `time_unix_nano = 1` (fixed64, ns); 0 when unknown (then use `observed_time_unix_nano`).
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// `observed_time_unix_nano = 11` (fixed64, ns): when the collector or SDK saw the record.
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    /// `severity_number = 2`, a [`SeverityNumber`] (9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL).
    #[prost(enumeration = "SeverityNumber", tag = "2")]
    pub severity_number: i32,
    /// `severity_text = 3`, e.g. `INFO`.
    #[prost(string, tag = "3")]
    pub severity_text: String,
    /// `body = 5`: a string, or a map (kvlist) for structured events.
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    /// `attributes = 6`.
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    /// `dropped_attributes_count = 7`.
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    /// `flags = 8` (fixed32): W3C trace flags in the low byte.
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    /// `trace_id = 9`: 16 bytes, or empty.
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    /// `span_id = 10`: 8 bytes, or empty.
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    /// `event_name = 12`.
    #[prost(string, tag = "12")]
    pub event_name: String,
}

/// The severity of a log record, `SEVERITY_NUMBER_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SeverityNumber {
    /// `SEVERITY_NUMBER_UNSPECIFIED = 0`.
    Unspecified = 0,
    /// `SEVERITY_NUMBER_TRACE = 1`.
    Trace = 1,
    /// `SEVERITY_NUMBER_TRACE2 = 2`.
    Trace2 = 2,
    /// `SEVERITY_NUMBER_TRACE3 = 3`.
    Trace3 = 3,
    /// `SEVERITY_NUMBER_TRACE4 = 4`.
    Trace4 = 4,
    /// `SEVERITY_NUMBER_DEBUG = 5`.
    Debug = 5,
    /// `SEVERITY_NUMBER_DEBUG2 = 6`.
    Debug2 = 6,
    /// `SEVERITY_NUMBER_DEBUG3 = 7`.
    Debug3 = 7,
    /// `SEVERITY_NUMBER_DEBUG4 = 8`.
    Debug4 = 8,
    /// `SEVERITY_NUMBER_INFO = 9`.
    Info = 9,
    /// `SEVERITY_NUMBER_INFO2 = 10`.
    Info2 = 10,
    /// `SEVERITY_NUMBER_INFO3 = 11`.
    Info3 = 11,
    /// `SEVERITY_NUMBER_INFO4 = 12`.
    Info4 = 12,
    /// `SEVERITY_NUMBER_WARN = 13`.
    Warn = 13,
    /// `SEVERITY_NUMBER_WARN2 = 14`.
    Warn2 = 14,
    /// `SEVERITY_NUMBER_WARN3 = 15`.
    Warn3 = 15,
    /// `SEVERITY_NUMBER_WARN4 = 16`.
    Warn4 = 16,
    /// `SEVERITY_NUMBER_ERROR = 17`.
    Error = 17,
    /// `SEVERITY_NUMBER_ERROR2 = 18`.
    Error2 = 18,
    /// `SEVERITY_NUMBER_ERROR3 = 19`.
    Error3 = 19,
    /// `SEVERITY_NUMBER_ERROR4 = 20`.
    Error4 = 20,
    /// `SEVERITY_NUMBER_FATAL = 21`.
    Fatal = 21,
    /// `SEVERITY_NUMBER_FATAL2 = 22`.
    Fatal2 = 22,
    /// `SEVERITY_NUMBER_FATAL3 = 23`.
    Fatal3 = 23,
    /// `SEVERITY_NUMBER_FATAL4 = 24`.
    Fatal4 = 24,
}

//! `opentelemetry.proto.trace.v1`: spans grouped by resource and scope.
//!
//! Times are `fixed64` **nanoseconds** since the Unix epoch. Trace ids are 16 bytes, span ids 8 bytes.

use super::common::{InstrumentationScope, KeyValue};
use super::resource::Resource;

/// Spans as stored in files (`TracesData`), the same shape as the export request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TracesData {
    /// `resource_spans = 1`.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// The spans of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// `resource = 1`.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// `scope_spans = 2`.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// `scope = 1`.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// `spans = 2`.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One span: an operation with a start and an end inside a trace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// `trace_id = 1`: 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// `span_id = 2`: 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// `trace_state = 3`: W3C `tracestate`.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// `parent_span_id = 4`: 8 bytes, empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// `flags = 16` (fixed32): W3C trace flags in the low byte, plus the "parent is remote" bits 8-9.
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    /// `name = 5`, e.g. `ticket.checkout` or `GET /api/tickets`.
    #[prost(string, tag = "5")]
    pub name: String,
    /// `kind = 6`, a [`span::SpanKind`].
    #[prost(enumeration = "span::SpanKind", tag = "6")]
    pub kind: i32,
    /// `start_time_unix_nano = 7` (fixed64, ns).
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// `end_time_unix_nano = 8` (fixed64, ns).
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// `attributes = 9`.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// `dropped_attributes_count = 10`.
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    /// `events = 11`.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<span::Event>,
    /// `dropped_events_count = 12`.
    #[prost(uint32, tag = "12")]
    pub dropped_events_count: u32,
    /// `links = 13`.
    #[prost(message, repeated, tag = "13")]
    pub links: Vec<span::Link>,
    /// `dropped_links_count = 14`.
    #[prost(uint32, tag = "14")]
    pub dropped_links_count: u32,
    /// `status = 15`.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// Nested types of [`Span`].
pub mod span {
    use super::KeyValue;

    /// The role of a span in its trace.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum SpanKind {
        /// `SPAN_KIND_UNSPECIFIED = 0`.
        Unspecified = 0,
        /// `SPAN_KIND_INTERNAL = 1`.
        Internal = 1,
        /// `SPAN_KIND_SERVER = 2`.
        Server = 2,
        /// `SPAN_KIND_CLIENT = 3`.
        Client = 3,
        /// `SPAN_KIND_PRODUCER = 4`.
        Producer = 4,
        /// `SPAN_KIND_CONSUMER = 5`.
        Consumer = 5,
    }

    /// A time-stamped event during a span, e.g. an exception.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// `time_unix_nano = 1` (fixed64, ns).
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        /// `name = 2`, e.g. `exception`.
        #[prost(string, tag = "2")]
        pub name: String,
        /// `attributes = 3`.
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
        /// `dropped_attributes_count = 4`.
        #[prost(uint32, tag = "4")]
        pub dropped_attributes_count: u32,
    }

    /// A pointer from this span to another span, possibly in another trace.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Link {
        /// `trace_id = 1`: 16 bytes.
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        /// `span_id = 2`: 8 bytes.
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        /// `trace_state = 3`.
        #[prost(string, tag = "3")]
        pub trace_state: String,
        /// `attributes = 4`.
        #[prost(message, repeated, tag = "4")]
        pub attributes: Vec<KeyValue>,
        /// `dropped_attributes_count = 5`.
        #[prost(uint32, tag = "5")]
        pub dropped_attributes_count: u32,
        /// `flags = 6` (fixed32), as [`super::Span::flags`].
        #[prost(fixed32, tag = "6")]
        pub flags: u32,
    }
}

/// A span's status (field 1 is reserved upstream).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// `message = 2`: a developer-facing description, set with an error.
    #[prost(string, tag = "2")]
    pub message: String,
    /// `code = 3`, a [`status::StatusCode`].
    #[prost(enumeration = "status::StatusCode", tag = "3")]
    pub code: i32,
}

/// Nested types of [`Status`].
pub mod status {
    /// A span status code.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum StatusCode {
        /// `STATUS_CODE_UNSET = 0`.
        Unset = 0,
        /// `STATUS_CODE_OK = 1`.
        Ok = 1,
        /// `STATUS_CODE_ERROR = 2`.
        Error = 2,
    }
}

//! `google.rpc.Status` and `google.protobuf.Any`: the error body of a failed OTLP/HTTP request and the
//! payload of gRPC rich errors.
//!
//! Source: `google/rpc/status.proto`, `google/protobuf/any.proto` (googleapis, protobuf).

/// An error: a gRPC status code, a developer-facing message and optional typed details.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// `code = 1`: a `google.rpc.Code` value (3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, 14 UNAVAILABLE, …).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// `message = 2`.
    #[prost(string, tag = "2")]
    pub message: String,
    /// `details = 3`, e.g. a `google.rpc.RetryInfo`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`: a serialized message with its type URL.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// `type_url = 1`, e.g. `type.googleapis.com/google.rpc.RetryInfo`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// `value = 2`: the serialized message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: how long a client should wait before retrying.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    /// `retry_delay = 1`.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<Duration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Duration {
    /// `seconds = 1`.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `nanos = 2`, in `[0, 999_999_999]` for positive durations.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

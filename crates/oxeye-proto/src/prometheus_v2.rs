//! Prometheus remote_write 2.0, package `io.prometheus.write.v2` (Prometheus
//! `prompb/io/prometheus/write/v2/types.proto`).
//!
//! Sent snappy block-compressed with `Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request`
//! and `X-Prometheus-Remote-Write-Version: 2.0.0`. Strings are interned in [`Request::symbols`] (whose first
//! entry is the empty string) and referenced by index. Timestamps are **milliseconds**.
//!
//! Source: <https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/>.

/// The body of a remote_write 2.0 request (fields 1 to 3 are reserved).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// `symbols = 4`: the string table; `symbols[0]` is `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// `timeseries = 5`.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `labels_refs = 1`: `(name, value)` index pairs into the symbols, sorted by name.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// `samples = 2`, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// `histograms = 3`.
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    /// `exemplars = 4`.
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    /// `metadata = 5`.
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// `created_timestamp = 6` (int64, ms; 0 = unset). Earlier drafts of the spec; newer senders use
    /// [`Sample::start_timestamp`].
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// An exemplar.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// `labels_refs = 1`: `(name, value)` index pairs into the symbols.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// `value = 2`.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// `timestamp = 3` (int64, ms; 0 = unset).
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// One float sample.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// `value = 1`.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// `timestamp = 2` (int64, ms).
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
    /// `start_timestamp = 3` (int64, ms; 0 = unset): when a counter started counting.
    #[prost(int64, tag = "3")]
    pub start_timestamp: i64,
}

/// The metadata of a series.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Metadata {
    /// `type = 1`, a [`metadata::MetricType`].
    #[prost(enumeration = "metadata::MetricType", tag = "1")]
    pub r#type: i32,
    /// `help_ref = 3`: index into the symbols.
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// `unit_ref = 4`: index into the symbols.
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// Nested types of [`Metadata`].
pub mod metadata {
    /// A metric type, `METRIC_TYPE_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// `METRIC_TYPE_UNSPECIFIED = 0`.
        Unspecified = 0,
        /// `METRIC_TYPE_COUNTER = 1`.
        Counter = 1,
        /// `METRIC_TYPE_GAUGE = 2`.
        Gauge = 2,
        /// `METRIC_TYPE_HISTOGRAM = 3`.
        Histogram = 3,
        /// `METRIC_TYPE_GAUGEHISTOGRAM = 4`.
        Gaugehistogram = 4,
        /// `METRIC_TYPE_SUMMARY = 5`.
        Summary = 5,
        /// `METRIC_TYPE_INFO = 6`.
        Info = 6,
        /// `METRIC_TYPE_STATESET = 7`.
        Stateset = 7,
    }
}

/// A native histogram sample; the fields of remote_write 1.0's histogram plus `start_timestamp = 17`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Oneof `count`: `count_int = 1` or `count_float = 2`.
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    /// `sum = 3`.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// `schema = 4` (sint32).
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// `zero_threshold = 5`.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Oneof `zero_count`: `zero_count_int = 6` or `zero_count_float = 7`.
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    /// `negative_spans = 8`.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// `negative_deltas = 9` (sint64).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// `negative_counts = 10`.
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// `positive_spans = 11`.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// `positive_deltas = 12` (sint64).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// `positive_counts = 13`.
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// `reset_hint = 14`, a [`histogram::ResetHint`].
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// `timestamp = 15` (int64, ms).
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// `custom_values = 16`.
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
    /// `start_timestamp = 17` (int64, ms; 0 = unset).
    #[prost(int64, tag = "17")]
    pub start_timestamp: i64,
}

/// Nested types of [`Histogram`].
pub mod histogram {
    /// The oneof `count`.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Count {
        /// `count_int = 1`.
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        /// `count_float = 2`.
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    /// The oneof `zero_count`.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum ZeroCount {
        /// `zero_count_int = 6`.
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        /// `zero_count_float = 7`.
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }

    /// `RESET_HINT_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        /// `RESET_HINT_UNSPECIFIED = 0`.
        Unspecified = 0,
        /// `RESET_HINT_YES = 1`.
        Yes = 1,
        /// `RESET_HINT_NO = 2`.
        No = 2,
        /// `RESET_HINT_GAUGE = 3`.
        Gauge = 3,
    }
}

/// A run of consecutive buckets.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// `offset = 1` (sint32).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// `length = 2` (uint32).
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

//! Prometheus remote_write 1.0, package `prometheus` (Prometheus `prompb/types.proto`, `prompb/remote.proto`).
//!
//! Sent as a snappy **block**-compressed body with `Content-Type: application/x-protobuf` and
//! `X-Prometheus-Remote-Write-Version: 0.1.0`. Timestamps are **milliseconds** since the Unix epoch.
//!
//! Source: <https://prometheus.io/docs/specs/prw/remote_write_spec/>.

/// The body of a remote_write 1.0 request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// `timeseries = 1`.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// `metadata = 3` (field 2 is reserved for Cortex).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// Metadata of one metric family.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// `type = 1`, a [`metric_metadata::MetricType`].
    #[prost(enumeration = "metric_metadata::MetricType", tag = "1")]
    pub r#type: i32,
    /// `metric_family_name = 2`.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// `help = 4`.
    #[prost(string, tag = "4")]
    pub help: String,
    /// `unit = 5`.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Nested types of [`MetricMetadata`].
pub mod metric_metadata {
    /// A metric family's type.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// `UNKNOWN = 0`.
        Unknown = 0,
        /// `COUNTER = 1`.
        Counter = 1,
        /// `GAUGE = 2`.
        Gauge = 2,
        /// `HISTOGRAM = 3`.
        Histogram = 3,
        /// `GAUGEHISTOGRAM = 4`.
        Gaugehistogram = 4,
        /// `SUMMARY = 5`.
        Summary = 5,
        /// `INFO = 6`.
        Info = 6,
        /// `STATESET = 7`.
        Stateset = 7,
    }
}

/// One float sample.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// `value = 1` (double).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// `timestamp = 2` (int64, ms).
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// An exemplar attached to a series.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// `labels = 1`, e.g. `trace_id`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// `value = 2` (double).
    #[prost(double, tag = "2")]
    pub value: f64,
    /// `timestamp = 3` (int64, ms).
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// A native histogram sample, integer or float.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Oneof `count`: `count_int = 1` (uint64) or `count_float = 2` (double).
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    /// `sum = 3`.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// `schema = 4` (sint32): -4..=8 exponential, -53 custom buckets.
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
    /// `negative_deltas = 9` (sint64): integer histograms, delta to the previous bucket.
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// `negative_counts = 10` (double): float histograms, absolute counts.
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// `positive_spans = 11`.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// `positive_deltas = 12` (sint64).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// `positive_counts = 13` (double).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// `reset_hint = 14`, a [`histogram::ResetHint`].
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// `timestamp = 15` (int64, ms).
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// `custom_values = 16`: upper bounds for schema -53.
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
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

    /// Whether a counter reset happened before this histogram.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        /// `UNKNOWN = 0`.
        Unknown = 0,
        /// `YES = 1`.
        Yes = 1,
        /// `NO = 2`.
        No = 2,
        /// `GAUGE = 3`.
        Gauge = 3,
    }
}

/// A run of consecutive buckets: `offset` is the gap to the previous span (or the first index).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// `offset = 1` (sint32).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// `length = 2` (uint32).
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// One series: its labels and samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `labels = 1`: senders sort them by name and include `__name__`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// `samples = 2`, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// `exemplars = 3`.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// `histograms = 4`.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// One label.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// `name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}

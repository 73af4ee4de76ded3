//! `opentelemetry.proto.metrics.v1`: metrics grouped by resource and scope, and their data points.
//!
//! Times are `fixed64` **nanoseconds** since the Unix epoch; `start_time_unix_nano` is the start of the
//! cumulative (or delta) interval, `time_unix_nano` the observation time.

use super::common::{InstrumentationScope, KeyValue};
use super::resource::Resource;

/// The flag bit of `flags` on a data point meaning "no recorded value": the series ended (a staleness
/// marker in Prometheus terms). `DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`.
pub const DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK: u32 = 1;

/// Metrics as stored in files (`MetricsData`), the same shape as the export request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricsData {
    /// `resource_metrics = 1`.
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

/// The metrics of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceMetrics {
    /// `resource = 1`.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// `scope_metrics = 2`.
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The metrics of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeMetrics {
    /// `scope = 1`.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// `metrics = 2`.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One metric: name, description, unit and its data points of one kind.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// `name = 1`, e.g. `http.server.duration`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `description = 2`.
    #[prost(string, tag = "2")]
    pub description: String,
    /// `unit = 3`, UCUM, e.g. `ms`, `By`, `1`, `{request}`.
    #[prost(string, tag = "3")]
    pub unit: String,
    /// The data points, oneof `data` (fields 5, 7, 9, 10, 11).
    #[prost(oneof = "metric::Data", tags = "5, 7, 9, 10, 11")]
    pub data: Option<metric::Data>,
    /// `metadata = 12`: additional metadata attributes.
    #[prost(message, repeated, tag = "12")]
    pub metadata: Vec<KeyValue>,
}

/// The oneof of [`Metric`].
pub mod metric {
    /// The kind of a metric with its data points.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        /// `gauge = 5`.
        #[prost(message, tag = "5")]
        Gauge(super::Gauge),
        /// `sum = 7`.
        #[prost(message, tag = "7")]
        Sum(super::Sum),
        /// `histogram = 9`.
        #[prost(message, tag = "9")]
        Histogram(super::Histogram),
        /// `exponential_histogram = 10`.
        #[prost(message, tag = "10")]
        ExponentialHistogram(super::ExponentialHistogram),
        /// `summary = 11`.
        #[prost(message, tag = "11")]
        Summary(super::Summary),
    }
}

/// Whether data points report the change since the last report or the total since a start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AggregationTemporality {
    /// `AGGREGATION_TEMPORALITY_UNSPECIFIED = 0`.
    Unspecified = 0,
    /// `AGGREGATION_TEMPORALITY_DELTA = 1`.
    Delta = 1,
    /// `AGGREGATION_TEMPORALITY_CUMULATIVE = 2`.
    Cumulative = 2,
}

/// A gauge: the last observed values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    /// `data_points = 1`.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

/// A sum, monotonic (a counter) or not.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sum {
    /// `data_points = 1`.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    /// `aggregation_temporality = 2`, an [`AggregationTemporality`].
    #[prost(enumeration = "AggregationTemporality", tag = "2")]
    pub aggregation_temporality: i32,
    /// `is_monotonic = 3`.
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

/// A histogram with explicit bucket bounds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// `data_points = 1`.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<HistogramDataPoint>,
    /// `aggregation_temporality = 2`, an [`AggregationTemporality`].
    #[prost(enumeration = "AggregationTemporality", tag = "2")]
    pub aggregation_temporality: i32,
}

/// A base-2 exponential histogram.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogram {
    /// `data_points = 1`.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<ExponentialHistogramDataPoint>,
    /// `aggregation_temporality = 2`, an [`AggregationTemporality`].
    #[prost(enumeration = "AggregationTemporality", tag = "2")]
    pub aggregation_temporality: i32,
}

/// A summary (quantiles, sum, count), kept for compatibility with Prometheus and OpenMetrics.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// `data_points = 1`.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<SummaryDataPoint>,
}

/// One value of a gauge or sum.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NumberDataPoint {
    /// `attributes = 7`.
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// `start_time_unix_nano = 2` (fixed64, ns).
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// `time_unix_nano = 3` (fixed64, ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// The value, oneof `value`: `as_double = 4` or `as_int = 6`.
    #[prost(oneof = "number_data_point::Value", tags = "4, 6")]
    pub value: Option<number_data_point::Value>,
    /// `exemplars = 5`.
    #[prost(message, repeated, tag = "5")]
    pub exemplars: Vec<Exemplar>,
    /// `flags = 8`; see [`DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`].
    #[prost(uint32, tag = "8")]
    pub flags: u32,
}

/// The oneof of [`NumberDataPoint`].
pub mod number_data_point {
    /// A number value.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `as_double = 4`.
        #[prost(double, tag = "4")]
        AsDouble(f64),
        /// `as_int = 6` (sfixed64).
        #[prost(sfixed64, tag = "6")]
        AsInt(i64),
    }
}

/// One histogram with explicit bounds: `bucket_counts` has `explicit_bounds.len() + 1` entries, bucket `i`
/// counting values in `(bounds[i-1], bounds[i]]` (not cumulative).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramDataPoint {
    /// `attributes = 9`.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// `start_time_unix_nano = 2` (fixed64, ns).
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// `time_unix_nano = 3` (fixed64, ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// `count = 4` (fixed64).
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    /// `sum = 5`, optional.
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    /// `bucket_counts = 6` (repeated fixed64, packed).
    #[prost(fixed64, repeated, tag = "6")]
    pub bucket_counts: Vec<u64>,
    /// `explicit_bounds = 7` (repeated double, packed), ascending.
    #[prost(double, repeated, tag = "7")]
    pub explicit_bounds: Vec<f64>,
    /// `exemplars = 8`.
    #[prost(message, repeated, tag = "8")]
    pub exemplars: Vec<Exemplar>,
    /// `flags = 10`; see [`DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`].
    #[prost(uint32, tag = "10")]
    pub flags: u32,
    /// `min = 11`, optional.
    #[prost(double, optional, tag = "11")]
    pub min: Option<f64>,
    /// `max = 12`, optional.
    #[prost(double, optional, tag = "12")]
    pub max: Option<f64>,
}

/// One exponential histogram: bucket index `i` at `scale` covers `(base^i, base^(i+1)]` with
/// `base = 2^(2^-scale)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogramDataPoint {
    /// `attributes = 1`.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// `start_time_unix_nano = 2` (fixed64, ns).
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// `time_unix_nano = 3` (fixed64, ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// `count = 4` (fixed64).
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    /// `sum = 5`, optional.
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    /// `scale = 6` (sint32).
    #[prost(sint32, tag = "6")]
    pub scale: i32,
    /// `zero_count = 7` (fixed64).
    #[prost(fixed64, tag = "7")]
    pub zero_count: u64,
    /// `positive = 8`.
    #[prost(message, optional, tag = "8")]
    pub positive: Option<exponential_histogram_data_point::Buckets>,
    /// `negative = 9`.
    #[prost(message, optional, tag = "9")]
    pub negative: Option<exponential_histogram_data_point::Buckets>,
    /// `flags = 10`; see [`DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`].
    #[prost(uint32, tag = "10")]
    pub flags: u32,
    /// `exemplars = 11`.
    #[prost(message, repeated, tag = "11")]
    pub exemplars: Vec<Exemplar>,
    /// `min = 12`, optional.
    #[prost(double, optional, tag = "12")]
    pub min: Option<f64>,
    /// `max = 13`, optional.
    #[prost(double, optional, tag = "13")]
    pub max: Option<f64>,
    /// `zero_threshold = 14`: the zero bucket covers `[-zero_threshold, zero_threshold]`.
    #[prost(double, tag = "14")]
    pub zero_threshold: f64,
}

/// Nested messages of [`ExponentialHistogramDataPoint`].
pub mod exponential_histogram_data_point {
    /// A contiguous run of bucket counts starting at bucket index `offset`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Buckets {
        /// `offset = 1` (sint32): the index of the first bucket.
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        /// `bucket_counts = 2` (repeated uint64, packed).
        #[prost(uint64, repeated, tag = "2")]
        pub bucket_counts: Vec<u64>,
    }
}

/// One summary: count, sum and quantile values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryDataPoint {
    /// `attributes = 7`.
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// `start_time_unix_nano = 2` (fixed64, ns).
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// `time_unix_nano = 3` (fixed64, ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// `count = 4` (fixed64).
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    /// `sum = 5`.
    #[prost(double, tag = "5")]
    pub sum: f64,
    /// `quantile_values = 6`.
    #[prost(message, repeated, tag = "6")]
    pub quantile_values: Vec<summary_data_point::ValueAtQuantile>,
    /// `flags = 8`; see [`DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`].
    #[prost(uint32, tag = "8")]
    pub flags: u32,
}

/// Nested messages of [`SummaryDataPoint`].
pub mod summary_data_point {
    /// The value at one quantile.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct ValueAtQuantile {
        /// `quantile = 1`, in `[0, 1]`.
        #[prost(double, tag = "1")]
        pub quantile: f64,
        /// `value = 2`.
        #[prost(double, tag = "2")]
        pub value: f64,
    }
}

/// A sampled measurement attached to a data point, typically with the trace context it was taken in.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// `filtered_attributes = 7`: attributes not already on the data point.
    #[prost(message, repeated, tag = "7")]
    pub filtered_attributes: Vec<KeyValue>,
    /// `time_unix_nano = 2` (fixed64, ns).
    #[prost(fixed64, tag = "2")]
    pub time_unix_nano: u64,
    /// The value, oneof `value`: `as_double = 3` or `as_int = 6`.
    #[prost(oneof = "exemplar::Value", tags = "3, 6")]
    pub value: Option<exemplar::Value>,
    /// `span_id = 4`: 8 bytes, or empty.
    #[prost(bytes = "vec", tag = "4")]
    pub span_id: Vec<u8>,
    /// `trace_id = 5`: 16 bytes, or empty.
    #[prost(bytes = "vec", tag = "5")]
    pub trace_id: Vec<u8>,
}

/// The oneof of [`Exemplar`].
pub mod exemplar {
    /// An exemplar value.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `as_double = 3`.
        #[prost(double, tag = "3")]
        AsDouble(f64),
        /// `as_int = 6` (sfixed64).
        #[prost(sfixed64, tag = "6")]
        AsInt(i64),
    }
}

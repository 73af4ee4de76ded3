//! OTLP/JSON request bodies into the `oxeye-proto` messages, by the OTLP/HTTP JSON encoding rules.
//!
//! Rules (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>): keys are lowerCamelCase (the
//! proto field names in snake case are accepted too); trace and span ids are **hex** strings, not base64;
//! enums are integers (their proto names are accepted too); 64-bit integers arrive as decimal strings
//! and must also be accepted as numbers; `bytesValue` is base64; doubles may be `"NaN"`, `"Infinity"`,
//! `"-Infinity"`; unknown fields are ignored; `null` is the same as absent.
//!
//! A hand-written decoder over `serde_json::Value`, because generated serde support gets these rules
//! wrong (opentelemetry-rust #3527, #3328).

use crate::IngestError;
use oxeye_proto::otlp::collector::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};
use oxeye_proto::otlp::common::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value};
use oxeye_proto::otlp::logs::{LogRecord, ResourceLogs, ScopeLogs};
use oxeye_proto::otlp::metrics::{
    self, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exponential_histogram_data_point,
    summary_data_point,
};
use oxeye_proto::otlp::resource::Resource;
use oxeye_proto::otlp::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON path built on the stack and formatted only when an error needs it.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => formatter.write_str("$"),
            Path::Key(Path::Root, key) => formatter.write_str(key),
            Path::Key(parent, key) => write!(formatter, "{parent}.{key}"),
            Path::Index(parent, index) => write!(formatter, "{parent}[{index}]"),
        }
    }
}

fn error(path: &Path<'_>, reason: impl Into<String>) -> IngestError {
    IngestError::Json { field: path.to_string(), reason: reason.into() }
}

type Object = Map<String, Value>;

fn as_object<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v Object, IngestError> {
    value.as_object().ok_or_else(|| error(path, format!("expected an object, found {}", kind_of(value))))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value under the lowerCamelCase key or the snake_case key; `null` counts as absent.
fn get<'v>(object: &'v Object, camel: &'static str, snake: &'static str) -> Option<(&'v Value, &'static str)> {
    [camel, snake]
        .into_iter()
        .find_map(|key| object.get(key).filter(|value| !value.is_null()).map(|value| (value, key)))
}

fn array<T>(
    object: &Object,
    camel: &'static str,
    snake: &'static str,
    path: &Path<'_>,
    mut element: impl FnMut(&Value, &Path<'_>) -> Result<T, IngestError>,
) -> Result<Vec<T>, IngestError> {
    let Some((value, key)) = get(object, camel, snake) else { return Ok(Vec::new()) };
    let field_path = Path::Key(path, key);
    let items =
        value.as_array().ok_or_else(|| error(&field_path, format!("expected an array, found {}", kind_of(value))))?;
    items.iter().enumerate().map(|(index, item)| element(item, &Path::Index(&field_path, index))).collect()
}

fn object_field<T>(
    object: &Object,
    camel: &'static str,
    snake: &'static str,
    path: &Path<'_>,
    decode: impl FnOnce(&Object, &Path<'_>) -> Result<T, IngestError>,
) -> Result<Option<T>, IngestError> {
    let Some((value, key)) = get(object, camel, snake) else { return Ok(None) };
    let field_path = Path::Key(path, key);
    decode(as_object(value, &field_path)?, &field_path).map(Some)
}

fn string(object: &Object, camel: &'static str, snake: &'static str, path: &Path<'_>) -> Result<String, IngestError> {
    match get(object, camel, snake) {
        None => Ok(String::new()),
        Some((Value::String(text), _)) => Ok(text.clone()),
        Some((other, key)) => Err(error(&Path::Key(path, key), format!("expected a string, found {}", kind_of(other)))),
    }
}

fn boolean(object: &Object, camel: &'static str, snake: &'static str, path: &Path<'_>) -> Result<bool, IngestError> {
    match get(object, camel, snake) {
        None => Ok(false),
        Some((Value::Bool(flag), _)) => Ok(*flag),
        Some((other, key)) => {
            Err(error(&Path::Key(path, key), format!("expected a boolean, found {}", kind_of(other))))
        }
    }
}

/// A 64-bit integer from a decimal string or a JSON number (integral).
fn integer_value(value: &Value, path: &Path<'_>) -> Result<i128, IngestError> {
    match value {
        Value::String(text) => {
            text.trim().parse::<i128>().map_err(|_| error(path, format!("expected an integer, found {text:?}")))
        }
        Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                Ok(i128::from(unsigned))
            } else if let Some(signed) = number.as_i64() {
                Ok(i128::from(signed))
            } else {
                match number.as_f64() {
                    Some(float) if float.fract() == 0.0 && float.abs() < 1.9e19 => Ok(float as i128),
                    _ => Err(error(path, format!("expected an integer, found {number}"))),
                }
            }
        }
        other => Err(error(path, format!("expected an integer, found {}", kind_of(other)))),
    }
}

fn integer_in<T: TryFrom<i128>>(value: &Value, path: &Path<'_>, type_name: &str) -> Result<T, IngestError> {
    let wide = integer_value(value, path)?;
    T::try_from(wide).map_err(|_| error(path, format!("{wide} is out of range for {type_name}")))
}

fn unsigned64(object: &Object, camel: &'static str, snake: &'static str, path: &Path<'_>) -> Result<u64, IngestError> {
    match get(object, camel, snake) {
        None => Ok(0),
        Some((value, key)) => integer_in(value, &Path::Key(path, key), "uint64"),
    }
}

fn unsigned32(object: &Object, camel: &'static str, snake: &'static str, path: &Path<'_>) -> Result<u32, IngestError> {
    match get(object, camel, snake) {
        None => Ok(0),
        Some((value, key)) => integer_in(value, &Path::Key(path, key), "uint32"),
    }
}

fn double_value(value: &Value, path: &Path<'_>) -> Result<f64, IngestError> {
    match value {
        Value::Number(number) => {
            number.as_f64().ok_or_else(|| error(path, format!("expected a number, found {number}")))
        }
        Value::String(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => {
                other.trim().parse::<f64>().map_err(|_| error(path, format!("expected a number, found {other:?}")))
            }
        },
        other => Err(error(path, format!("expected a number, found {}", kind_of(other)))),
    }
}

fn optional_double(
    object: &Object,
    camel: &'static str,
    snake: &'static str,
    path: &Path<'_>,
) -> Result<Option<f64>, IngestError> {
    match get(object, camel, snake) {
        None => Ok(None),
        Some((value, key)) => double_value(value, &Path::Key(path, key)).map(Some),
    }
}

/// An enum as an integer (or, leniently, its proto name from `names`).
fn enumeration(
    object: &Object,
    camel: &'static str,
    snake: &'static str,
    path: &Path<'_>,
    names: &[(&str, i32)],
) -> Result<i32, IngestError> {
    let Some((value, key)) = get(object, camel, snake) else { return Ok(0) };
    let field_path = Path::Key(path, key);
    if let Value::String(text) = value
        && let Some((_, number)) = names.iter().find(|(name, _)| name == text)
    {
        return Ok(*number);
    }
    integer_in(value, &field_path, "an enum")
}

/// A trace or span id as hex (`""` is empty), checked for its length in bytes.
fn hex_id(
    object: &Object,
    camel: &'static str,
    snake: &'static str,
    path: &Path<'_>,
    length: usize,
) -> Result<Vec<u8>, IngestError> {
    let Some((value, key)) = get(object, camel, snake) else { return Ok(Vec::new()) };
    let field_path = Path::Key(path, key);
    let Value::String(text) = value else {
        return Err(error(&field_path, format!("expected a hex string, found {}", kind_of(value))));
    };
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.len() != length * 2 {
        return Err(error(&field_path, format!("expected {} hex digits, found {}", length * 2, text.len())));
    }
    decode_hex(text).ok_or_else(|| error(&field_path, format!("invalid hex {text:?}")))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |byte: u8| -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect()
}

/// Standard or URL-safe base64, padding optional (the proto3 JSON mapping of `bytes`).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let sextet = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let trimmed = text.trim_end_matches('=');
    let mut output = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.as_bytes().chunks(4) {
        let mut accumulator: u32 = 0;
        for byte in chunk {
            accumulator = accumulator << 6 | sextet(*byte)?;
        }
        match chunk.len() {
            4 => output.extend_from_slice(&[(accumulator >> 16) as u8, (accumulator >> 8) as u8, accumulator as u8]),
            3 => output.extend_from_slice(&[(accumulator >> 10) as u8, (accumulator >> 2) as u8]),
            2 => output.push((accumulator >> 4) as u8),
            _ => return None,
        }
    }
    Some(output)
}

fn parse_document(body: &[u8]) -> Result<Value, IngestError> {
    serde_json::from_slice(body).map_err(|parse_error| IngestError::Json {
        field: "$".into(),
        reason: format!("invalid JSON at line {} column {}: {parse_error}", parse_error.line(), parse_error.column()),
    })
}

fn any_value(value: &Value, path: &Path<'_>) -> Result<AnyValue, IngestError> {
    let object = as_object(value, path)?;
    use any_value::Value as Kind;
    let kind = if let Some((text, key)) = get(object, "stringValue", "string_value") {
        match text {
            Value::String(text) => Some(Kind::StringValue(text.clone())),
            other => {
                return Err(error(&Path::Key(path, key), format!("expected a string, found {}", kind_of(other))));
            }
        }
    } else if get(object, "boolValue", "bool_value").is_some() {
        Some(Kind::BoolValue(boolean(object, "boolValue", "bool_value", path)?))
    } else if let Some((number, key)) = get(object, "intValue", "int_value") {
        Some(Kind::IntValue(integer_in(number, &Path::Key(path, key), "int64")?))
    } else if let Some((number, key)) = get(object, "doubleValue", "double_value") {
        Some(Kind::DoubleValue(double_value(number, &Path::Key(path, key))?))
    } else if let Some(values) = object_field(object, "arrayValue", "array_value", path, |inner, inner_path| {
        array(inner, "values", "values", inner_path, any_value)
    })? {
        Some(Kind::ArrayValue(ArrayValue { values }))
    } else if let Some(values) = object_field(object, "kvlistValue", "kvlist_value", path, |inner, inner_path| {
        array(inner, "values", "values", inner_path, key_value)
    })? {
        Some(Kind::KvlistValue(KeyValueList { values }))
    } else if let Some((encoded, key)) = get(object, "bytesValue", "bytes_value") {
        let field_path = Path::Key(path, key);
        let Value::String(encoded) = encoded else {
            return Err(error(&field_path, format!("expected a base64 string, found {}", kind_of(encoded))));
        };
        Some(Kind::BytesValue(decode_base64(encoded).ok_or_else(|| error(&field_path, "invalid base64"))?))
    } else {
        None
    };
    Ok(AnyValue { value: kind })
}

fn key_value(value: &Value, path: &Path<'_>) -> Result<KeyValue, IngestError> {
    let object = as_object(value, path)?;
    Ok(KeyValue {
        key: string(object, "key", "key", path)?,
        value: match get(object, "value", "value") {
            Some((inner, key)) => Some(any_value(inner, &Path::Key(path, key))?),
            None => None,
        },
    })
}

fn attributes(object: &Object, path: &Path<'_>) -> Result<Vec<KeyValue>, IngestError> {
    array(object, "attributes", "attributes", path, key_value)
}

fn resource(object: &Object, path: &Path<'_>) -> Result<Option<Resource>, IngestError> {
    object_field(object, "resource", "resource", path, |inner, inner_path| {
        Ok(Resource {
            attributes: attributes(inner, inner_path)?,
            dropped_attributes_count: unsigned32(
                inner,
                "droppedAttributesCount",
                "dropped_attributes_count",
                inner_path,
            )?,
        })
    })
}

fn scope(object: &Object, path: &Path<'_>) -> Result<Option<InstrumentationScope>, IngestError> {
    object_field(object, "scope", "scope", path, |inner, inner_path| {
        Ok(InstrumentationScope {
            name: string(inner, "name", "name", inner_path)?,
            version: string(inner, "version", "version", inner_path)?,
            attributes: attributes(inner, inner_path)?,
            dropped_attributes_count: unsigned32(
                inner,
                "droppedAttributesCount",
                "dropped_attributes_count",
                inner_path,
            )?,
        })
    })
}

const TEMPORALITY_NAMES: &[(&str, i32)] = &[
    ("AGGREGATION_TEMPORALITY_UNSPECIFIED", 0),
    ("AGGREGATION_TEMPORALITY_DELTA", 1),
    ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
];

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
///
/// # Errors
/// [`IngestError::Json`] naming the path (e.g. `resourceMetrics[0].scopeMetrics[0].metrics[1].sum.dataPoints[0].asInt`)
/// and the problem for invalid JSON or a value of the wrong type.
pub fn decode_metrics_request_json(body: &[u8]) -> Result<ExportMetricsServiceRequest, IngestError> {
    let document = parse_document(body)?;
    let root = as_object(&document, &Path::Root)?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: array(root, "resourceMetrics", "resource_metrics", &Path::Root, resource_metrics)?,
    })
}

fn resource_metrics(value: &Value, path: &Path<'_>) -> Result<ResourceMetrics, IngestError> {
    let object = as_object(value, path)?;
    Ok(ResourceMetrics {
        resource: resource(object, path)?,
        scope_metrics: array(object, "scopeMetrics", "scope_metrics", path, |item, item_path| {
            let inner = as_object(item, item_path)?;
            Ok(ScopeMetrics {
                scope: scope(inner, item_path)?,
                metrics: array(inner, "metrics", "metrics", item_path, metric)?,
                schema_url: string(inner, "schemaUrl", "schema_url", item_path)?,
            })
        })?,
        schema_url: string(object, "schemaUrl", "schema_url", path)?,
    })
}

fn metric(value: &Value, path: &Path<'_>) -> Result<Metric, IngestError> {
    let object = as_object(value, path)?;
    use metrics::metric::Data;
    let data = if let Some(gauge) = object_field(object, "gauge", "gauge", path, |inner, inner_path| {
        Ok(Gauge { data_points: array(inner, "dataPoints", "data_points", inner_path, number_data_point)? })
    })? {
        Some(Data::Gauge(gauge))
    } else if let Some(sum) = object_field(object, "sum", "sum", path, |inner, inner_path| {
        Ok(Sum {
            data_points: array(inner, "dataPoints", "data_points", inner_path, number_data_point)?,
            aggregation_temporality: enumeration(
                inner,
                "aggregationTemporality",
                "aggregation_temporality",
                inner_path,
                TEMPORALITY_NAMES,
            )?,
            is_monotonic: boolean(inner, "isMonotonic", "is_monotonic", inner_path)?,
        })
    })? {
        Some(Data::Sum(sum))
    } else if let Some(histogram) = object_field(object, "histogram", "histogram", path, |inner, inner_path| {
        Ok(Histogram {
            data_points: array(inner, "dataPoints", "data_points", inner_path, histogram_data_point)?,
            aggregation_temporality: enumeration(
                inner,
                "aggregationTemporality",
                "aggregation_temporality",
                inner_path,
                TEMPORALITY_NAMES,
            )?,
        })
    })? {
        Some(Data::Histogram(histogram))
    } else if let Some(histogram) =
        object_field(object, "exponentialHistogram", "exponential_histogram", path, |inner, inner_path| {
            Ok(ExponentialHistogram {
                data_points: array(inner, "dataPoints", "data_points", inner_path, exponential_data_point)?,
                aggregation_temporality: enumeration(
                    inner,
                    "aggregationTemporality",
                    "aggregation_temporality",
                    inner_path,
                    TEMPORALITY_NAMES,
                )?,
            })
        })?
    {
        Some(Data::ExponentialHistogram(histogram))
    } else {
        object_field(object, "summary", "summary", path, |inner, inner_path| {
            Ok(Summary { data_points: array(inner, "dataPoints", "data_points", inner_path, summary_data_point)? })
        })?
        .map(Data::Summary)
    };
    Ok(Metric {
        name: string(object, "name", "name", path)?,
        description: string(object, "description", "description", path)?,
        unit: string(object, "unit", "unit", path)?,
        data,
        metadata: array(object, "metadata", "metadata", path, key_value)?,
    })
}

fn exemplar(value: &Value, path: &Path<'_>) -> Result<metrics::Exemplar, IngestError> {
    let object = as_object(value, path)?;
    use metrics::exemplar::Value as ExemplarValue;
    let value = if let Some((number, key)) = get(object, "asDouble", "as_double") {
        Some(ExemplarValue::AsDouble(double_value(number, &Path::Key(path, key))?))
    } else if let Some((number, key)) = get(object, "asInt", "as_int") {
        Some(ExemplarValue::AsInt(integer_in(number, &Path::Key(path, key), "int64")?))
    } else {
        None
    };
    Ok(metrics::Exemplar {
        filtered_attributes: array(object, "filteredAttributes", "filtered_attributes", path, key_value)?,
        time_unix_nano: unsigned64(object, "timeUnixNano", "time_unix_nano", path)?,
        value,
        span_id: hex_id(object, "spanId", "span_id", path, 8)?,
        trace_id: hex_id(object, "traceId", "trace_id", path, 16)?,
    })
}

fn number_data_point(value: &Value, path: &Path<'_>) -> Result<NumberDataPoint, IngestError> {
    let object = as_object(value, path)?;
    use metrics::number_data_point::Value as NumberValue;
    let value = if let Some((number, key)) = get(object, "asDouble", "as_double") {
        Some(NumberValue::AsDouble(double_value(number, &Path::Key(path, key))?))
    } else if let Some((number, key)) = get(object, "asInt", "as_int") {
        Some(NumberValue::AsInt(integer_in(number, &Path::Key(path, key), "int64")?))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes: attributes(object, path)?,
        start_time_unix_nano: unsigned64(object, "startTimeUnixNano", "start_time_unix_nano", path)?,
        time_unix_nano: unsigned64(object, "timeUnixNano", "time_unix_nano", path)?,
        value,
        exemplars: array(object, "exemplars", "exemplars", path, exemplar)?,
        flags: unsigned32(object, "flags", "flags", path)?,
    })
}

fn histogram_data_point(value: &Value, path: &Path<'_>) -> Result<HistogramDataPoint, IngestError> {
    let object = as_object(value, path)?;
    Ok(HistogramDataPoint {
        attributes: attributes(object, path)?,
        start_time_unix_nano: unsigned64(object, "startTimeUnixNano", "start_time_unix_nano", path)?,
        time_unix_nano: unsigned64(object, "timeUnixNano", "time_unix_nano", path)?,
        count: unsigned64(object, "count", "count", path)?,
        sum: optional_double(object, "sum", "sum", path)?,
        bucket_counts: array(object, "bucketCounts", "bucket_counts", path, |item, item_path| {
            integer_in(item, item_path, "uint64")
        })?,
        explicit_bounds: array(object, "explicitBounds", "explicit_bounds", path, double_value)?,
        exemplars: array(object, "exemplars", "exemplars", path, exemplar)?,
        flags: unsigned32(object, "flags", "flags", path)?,
        min: optional_double(object, "min", "min", path)?,
        max: optional_double(object, "max", "max", path)?,
    })
}

fn buckets(
    object: &Object,
    camel: &'static str,
    path: &Path<'_>,
) -> Result<Option<exponential_histogram_data_point::Buckets>, IngestError> {
    object_field(object, camel, camel, path, |inner, inner_path| {
        Ok(exponential_histogram_data_point::Buckets {
            offset: match get(inner, "offset", "offset") {
                Some((number, key)) => integer_in(number, &Path::Key(inner_path, key), "int32")?,
                None => 0,
            },
            bucket_counts: array(inner, "bucketCounts", "bucket_counts", inner_path, |item, item_path| {
                integer_in(item, item_path, "uint64")
            })?,
        })
    })
}

fn exponential_data_point(value: &Value, path: &Path<'_>) -> Result<ExponentialHistogramDataPoint, IngestError> {
    let object = as_object(value, path)?;
    Ok(ExponentialHistogramDataPoint {
        attributes: attributes(object, path)?,
        start_time_unix_nano: unsigned64(object, "startTimeUnixNano", "start_time_unix_nano", path)?,
        time_unix_nano: unsigned64(object, "timeUnixNano", "time_unix_nano", path)?,
        count: unsigned64(object, "count", "count", path)?,
        sum: optional_double(object, "sum", "sum", path)?,
        scale: match get(object, "scale", "scale") {
            Some((number, key)) => integer_in(number, &Path::Key(path, key), "int32")?,
            None => 0,
        },
        zero_count: unsigned64(object, "zeroCount", "zero_count", path)?,
        positive: buckets(object, "positive", path)?,
        negative: buckets(object, "negative", path)?,
        flags: unsigned32(object, "flags", "flags", path)?,
        exemplars: array(object, "exemplars", "exemplars", path, exemplar)?,
        min: optional_double(object, "min", "min", path)?,
        max: optional_double(object, "max", "max", path)?,
        zero_threshold: optional_double(object, "zeroThreshold", "zero_threshold", path)?.unwrap_or(0.0),
    })
}

fn summary_data_point(value: &Value, path: &Path<'_>) -> Result<SummaryDataPoint, IngestError> {
    let object = as_object(value, path)?;
    Ok(SummaryDataPoint {
        attributes: attributes(object, path)?,
        start_time_unix_nano: unsigned64(object, "startTimeUnixNano", "start_time_unix_nano", path)?,
        time_unix_nano: unsigned64(object, "timeUnixNano", "time_unix_nano", path)?,
        count: unsigned64(object, "count", "count", path)?,
        sum: optional_double(object, "sum", "sum", path)?.unwrap_or(0.0),
        quantile_values: array(object, "quantileValues", "quantile_values", path, |item, item_path| {
            let inner = as_object(item, item_path)?;
            Ok(summary_data_point::ValueAtQuantile {
                quantile: optional_double(inner, "quantile", "quantile", item_path)?.unwrap_or(0.0),
                value: optional_double(inner, "value", "value", item_path)?.unwrap_or(0.0),
            })
        })?,
        flags: unsigned32(object, "flags", "flags", path)?,
    })
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
///
/// # Errors
/// [`IngestError::Json`] naming the path and the problem.
pub fn decode_trace_request_json(body: &[u8]) -> Result<ExportTraceServiceRequest, IngestError> {
    let document = parse_document(body)?;
    let root = as_object(&document, &Path::Root)?;
    Ok(ExportTraceServiceRequest {
        resource_spans: array(root, "resourceSpans", "resource_spans", &Path::Root, |item, path| {
            let object = as_object(item, path)?;
            Ok(ResourceSpans {
                resource: resource(object, path)?,
                scope_spans: array(object, "scopeSpans", "scope_spans", path, |scope_item, scope_path| {
                    let inner = as_object(scope_item, scope_path)?;
                    Ok(ScopeSpans {
                        scope: scope(inner, scope_path)?,
                        spans: array(inner, "spans", "spans", scope_path, span_value)?,
                        schema_url: string(inner, "schemaUrl", "schema_url", scope_path)?,
                    })
                })?,
                schema_url: string(object, "schemaUrl", "schema_url", path)?,
            })
        })?,
    })
}

const SPAN_KIND_NAMES: &[(&str, i32)] = &[
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];

const STATUS_CODE_NAMES: &[(&str, i32)] = &[("STATUS_CODE_UNSET", 0), ("STATUS_CODE_OK", 1), ("STATUS_CODE_ERROR", 2)];

fn span_value(value: &Value, path: &Path<'_>) -> Result<Span, IngestError> {
    let object = as_object(value, path)?;
    Ok(Span {
        trace_id: hex_id(object, "traceId", "trace_id", path, 16)?,
        span_id: hex_id(object, "spanId", "span_id", path, 8)?,
        trace_state: string(object, "traceState", "trace_state", path)?,
        parent_span_id: hex_id(object, "parentSpanId", "parent_span_id", path, 8)?,
        flags: unsigned32(object, "flags", "flags", path)?,
        name: string(object, "name", "name", path)?,
        kind: enumeration(object, "kind", "kind", path, SPAN_KIND_NAMES)?,
        start_time_unix_nano: unsigned64(object, "startTimeUnixNano", "start_time_unix_nano", path)?,
        end_time_unix_nano: unsigned64(object, "endTimeUnixNano", "end_time_unix_nano", path)?,
        attributes: attributes(object, path)?,
        dropped_attributes_count: unsigned32(object, "droppedAttributesCount", "dropped_attributes_count", path)?,
        events: array(object, "events", "events", path, |item, item_path| {
            let inner = as_object(item, item_path)?;
            Ok(span::Event {
                time_unix_nano: unsigned64(inner, "timeUnixNano", "time_unix_nano", item_path)?,
                name: string(inner, "name", "name", item_path)?,
                attributes: attributes(inner, item_path)?,
                dropped_attributes_count: unsigned32(
                    inner,
                    "droppedAttributesCount",
                    "dropped_attributes_count",
                    item_path,
                )?,
            })
        })?,
        dropped_events_count: unsigned32(object, "droppedEventsCount", "dropped_events_count", path)?,
        links: array(object, "links", "links", path, |item, item_path| {
            let inner = as_object(item, item_path)?;
            Ok(span::Link {
                trace_id: hex_id(inner, "traceId", "trace_id", item_path, 16)?,
                span_id: hex_id(inner, "spanId", "span_id", item_path, 8)?,
                trace_state: string(inner, "traceState", "trace_state", item_path)?,
                attributes: attributes(inner, item_path)?,
                dropped_attributes_count: unsigned32(
                    inner,
                    "droppedAttributesCount",
                    "dropped_attributes_count",
                    item_path,
                )?,
                flags: unsigned32(inner, "flags", "flags", item_path)?,
            })
        })?,
        dropped_links_count: unsigned32(object, "droppedLinksCount", "dropped_links_count", path)?,
        status: object_field(object, "status", "status", path, |inner, inner_path| {
            Ok(Status {
                message: string(inner, "message", "message", inner_path)?,
                code: enumeration(inner, "code", "code", inner_path, STATUS_CODE_NAMES)?,
            })
        })?,
    })
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`.
///
/// # Errors
/// [`IngestError::Json`] naming the path and the problem.
pub fn decode_logs_request_json(body: &[u8]) -> Result<ExportLogsServiceRequest, IngestError> {
    let document = parse_document(body)?;
    let root = as_object(&document, &Path::Root)?;
    Ok(ExportLogsServiceRequest {
        resource_logs: array(root, "resourceLogs", "resource_logs", &Path::Root, |item, path| {
            let object = as_object(item, path)?;
            Ok(ResourceLogs {
                resource: resource(object, path)?,
                scope_logs: array(object, "scopeLogs", "scope_logs", path, |scope_item, scope_path| {
                    let inner = as_object(scope_item, scope_path)?;
                    Ok(ScopeLogs {
                        scope: scope(inner, scope_path)?,
                        log_records: array(inner, "logRecords", "log_records", scope_path, log_record)?,
                        schema_url: string(inner, "schemaUrl", "schema_url", scope_path)?,
                    })
                })?,
                schema_url: string(object, "schemaUrl", "schema_url", path)?,
            })
        })?,
    })
}

fn log_record(value: &Value, path: &Path<'_>) -> Result<LogRecord, IngestError> {
    let object = as_object(value, path)?;
    Ok(LogRecord {
        time_unix_nano: unsigned64(object, "timeUnixNano", "time_unix_nano", path)?,
        observed_time_unix_nano: unsigned64(object, "observedTimeUnixNano", "observed_time_unix_nano", path)?,
        severity_number: severity_number(object, path)?,
        severity_text: string(object, "severityText", "severity_text", path)?,
        body: match get(object, "body", "body") {
            Some((inner, key)) => Some(any_value(inner, &Path::Key(path, key))?),
            None => None,
        },
        attributes: attributes(object, path)?,
        dropped_attributes_count: unsigned32(object, "droppedAttributesCount", "dropped_attributes_count", path)?,
        flags: unsigned32(object, "flags", "flags", path)?,
        trace_id: hex_id(object, "traceId", "trace_id", path, 16)?,
        span_id: hex_id(object, "spanId", "span_id", path, 8)?,
        event_name: string(object, "eventName", "event_name", path)?,
    })
}

/// `severityNumber` as an integer, or leniently as `SEVERITY_NUMBER_<NAME>` (e.g. `SEVERITY_NUMBER_WARN2`).
fn severity_number(object: &Object, path: &Path<'_>) -> Result<i32, IngestError> {
    if let Some((Value::String(text), _)) = get(object, "severityNumber", "severity_number")
        && let Some(name) = text.strip_prefix("SEVERITY_NUMBER_")
    {
        {
            const BASES: &[(&str, i32)] = &[
                ("UNSPECIFIED", 0),
                ("TRACE", 1),
                ("DEBUG", 5),
                ("INFO", 9),
                ("WARN", 13),
                ("ERROR", 17),
                ("FATAL", 21),
            ];
            let (word, level) = match name.char_indices().find(|(_, character)| character.is_ascii_digit()) {
                Some((index, _)) => (&name[..index], name[index..].parse::<i32>().unwrap_or(1)),
                None => (name, 1),
            };
            if let Some((_, base)) = BASES.iter().find(|(base_name, _)| *base_name == word) {
                return Ok(if *base == 0 { 0 } else { base + (level - 1).clamp(0, 3) });
            }
        }
    }
    enumeration(object, "severityNumber", "severity_number", path, &[])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oxeye_proto::otlp::metrics::metric::Data;

    /// Shaped like opentelemetry-proto's `examples/metrics.json`.
    pub(crate) const METRICS_EXAMPLE: &str = r#"{
      "resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeMetrics": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "metrics": [
            {"name": "my.counter", "unit": "1", "description": "I am a Counter",
             "sum": {"aggregationTemporality": 1, "isMonotonic": true,
                     "dataPoints": [{"asDouble": 5, "startTimeUnixNano": "1544712660300000000",
                                     "timeUnixNano": "1544712660300000000",
                                     "attributes": [{"key": "my.counter.attr", "value": {"stringValue": "some value"}}]}]}},
            {"name": "my.gauge", "unit": "1", "description": "I am a Gauge",
             "gauge": {"dataPoints": [{"asDouble": 10, "timeUnixNano": 1544712660300000000,
                                       "attributes": [{"key": "my.gauge.attr", "value": {"stringValue": "some value"}}]}]}},
            {"name": "my.histogram", "unit": "1", "description": "I am a Histogram",
             "histogram": {"aggregationTemporality": 1, "dataPoints": [{
               "startTimeUnixNano": "1544712660300000000", "timeUnixNano": "1544712660300000000",
               "count": 2, "sum": 2, "bucketCounts": [1, 1], "explicitBounds": [1], "min": 0, "max": 2,
               "attributes": [{"key": "my.histogram.attr", "value": {"stringValue": "some value"}}]}]}},
            {"name": "my.exponential.histogram", "unit": "1", "description": "I am an Exponential Histogram",
             "exponentialHistogram": {"aggregationTemporality": 1, "dataPoints": [{
               "startTimeUnixNano": "1544712660300000000", "timeUnixNano": "1544712660300000000",
               "count": 3, "sum": 10, "scale": 0, "zeroCount": 1,
               "positive": {"offset": 1, "bucketCounts": [0, 2]}, "min": 0, "max": 5, "zeroThreshold": 0,
               "attributes": [{"key": "my.exponential.histogram.attr", "value": {"stringValue": "some value"}}]}]}}
          ]
        }]
      }]
    }"#;

    #[test]
    fn decodes_the_metrics_example() {
        let request = decode_metrics_request_json(METRICS_EXAMPLE.as_bytes()).expect("decodes");
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 4);
        let Some(Data::Sum(sum)) = &metrics[0].data else { panic!("sum") };
        assert_eq!(sum.aggregation_temporality, 1);
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points[0].start_time_unix_nano, 1_544_712_660_300_000_000);
        let Some(Data::Gauge(gauge)) = &metrics[1].data else { panic!("gauge") };
        assert_eq!(gauge.data_points[0].time_unix_nano, 1_544_712_660_300_000_000, "numbers accepted for int64");
        let Some(Data::Histogram(histogram)) = &metrics[2].data else { panic!("histogram") };
        assert_eq!(histogram.data_points[0].bucket_counts, [1, 1]);
        assert_eq!(histogram.data_points[0].explicit_bounds, [1.0]);
        assert_eq!(histogram.data_points[0].min, Some(0.0));
        let Some(Data::ExponentialHistogram(exponential)) = &metrics[3].data else { panic!("exponential") };
        let positive = exponential.data_points[0].positive.as_ref().expect("positive buckets");
        assert_eq!((positive.offset, positive.bucket_counts.as_slice()), (1, &[0u64, 2][..]));
        let scope = request.resource_metrics[0].scope_metrics[0].scope.as_ref().expect("scope");
        assert_eq!(scope.version, "1.0.0");
    }

    #[test]
    fn ids_are_hex_and_unknown_fields_ignored() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"",
            "name":"ticket.checkout","kind":2,"startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000,"futureField":{"x":1},
            "status":{"code":"STATUS_CODE_ERROR","message":"boom"},
            "events":[{"timeUnixNano":"1544712660500000000","name":"exception"}]}]}]}]}"#;
        let request = decode_trace_request_json(body).expect("decodes");
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[0], 0x5b);
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id, [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, 2);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.status.as_ref().map(|status| status.code), Some(2));
        assert_eq!(span.events[0].name, "exception");
    }

    #[test]
    fn log_bodies_and_bytes() {
        let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
            "timeUnixNano":"1544712660300000000","severityNumber":10,"severityText":"Information",
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "body":{"kvlistValue":{"values":[{"key":"event","value":{"stringValue":"login_attempt"}},
                                             {"key":"raw","value":{"bytesValue":"aGVsbG8="}}]}}},
            {"severityNumber":"SEVERITY_NUMBER_WARN2","body":{"stringValue":"plain"}}]}]}]}"#;
        let request = decode_logs_request_json(body).expect("decodes");
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records[0].severity_number, 10);
        assert_eq!(records[1].severity_number, 14);
        let Some(any_value::Value::KvlistValue(list)) = records[0].body.as_ref().and_then(|body| body.value.clone())
        else {
            panic!("kvlist body")
        };
        assert_eq!(
            list.values[1].value.as_ref().and_then(|value| value.value.clone()),
            Some(any_value::Value::BytesValue(b"hello".to_vec()))
        );
    }

    #[test]
    fn errors_name_the_path() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a","sum":{"dataPoints":[{"asInt":"x"}]}}]}]}]}"#;
        let error = decode_metrics_request_json(body).expect_err("bad int");
        assert_eq!(
            error.to_string(),
            "json: expected an integer, found \"x\" at resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].asInt"
        );
        let error = decode_trace_request_json(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#)
            .expect_err("bad id");
        assert_eq!(
            error.to_string(),
            "json: expected 32 hex digits, found 2 at resourceSpans[0].scopeSpans[0].spans[0].traceId"
        );
        let error = decode_metrics_request_json(b"{\"resourceMetrics\": [").expect_err("truncated");
        assert!(error.to_string().starts_with("json: invalid JSON at line 1"), "{error}");
        assert_eq!(
            decode_metrics_request_json(b"[]").expect_err("array").to_string(),
            "json: expected an object, found an array at $"
        );
    }

    #[test]
    fn base64_decoding() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("Ce/6zSjDQS2+7zKZfrAbyQ==").map(|bytes| bytes.len()), Some(16));
        assert_eq!(decode_base64("a"), None);
        assert_eq!(decode_base64("a*b="), None);
    }

    proptest::proptest! {
        #[test]
        fn json_decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_metrics_request_json(&bytes);
            let _ = decode_trace_request_json(&bytes);
            let _ = decode_logs_request_json(&bytes);
        }
    }
}

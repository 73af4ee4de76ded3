//! Building remote_write 1.0 request bodies fast.
//!
//! A body is a snappy-compressed (raw block format, no framing) protobuf `prometheus.WriteRequest`
//! (remote_write 1.0 spec, `types.proto`/`remote.proto`). Each `TimeSeries` carries one sample, as a
//! Prometheus remote-write shard sends them. Because the label part of a `TimeSeries` never changes,
//! it is encoded once per series ([`encode_labels`]) and copied; only the sample is encoded per scrape.
//! The tests check the bytes against `oxeye_proto::prometheus` (prost) so the shortcut cannot drift
//! from the schema.

/// Protobuf tag of `WriteRequest.timeseries` (field 1, length-delimited).
const TAG_WRITE_REQUEST_TIMESERIES: u8 = 0x0A;
/// Protobuf tag of `TimeSeries.labels` (field 1, length-delimited).
const TAG_TIMESERIES_LABELS: u8 = 0x0A;
/// Protobuf tag of `TimeSeries.samples` (field 2, length-delimited).
const TAG_TIMESERIES_SAMPLES: u8 = 0x12;
/// Protobuf tag of `Label.name` (field 1, length-delimited).
const TAG_LABEL_NAME: u8 = 0x0A;
/// Protobuf tag of `Label.value` (field 2, length-delimited).
const TAG_LABEL_VALUE: u8 = 0x12;
/// Protobuf tag of `Sample.value` (field 1, 64-bit).
const TAG_SAMPLE_VALUE: u8 = 0x09;
/// Protobuf tag of `Sample.timestamp` (field 2, varint).
const TAG_SAMPLE_TIMESTAMP: u8 = 0x10;

fn put_varint(buffer: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buffer.push((value as u8) | 0x80);
        value >>= 7;
    }
    buffer.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the encoded `repeated Label labels = 1` entries of a `TimeSeries` for `pairs`.
pub fn encode_labels(buffer: &mut Vec<u8>, pairs: &[(String, String)]) {
    for (name, value) in pairs {
        let label_len =
            1 + varint_len(name.len() as u64) + name.len() + 1 + varint_len(value.len() as u64) + value.len();
        buffer.push(TAG_TIMESERIES_LABELS);
        put_varint(buffer, label_len as u64);
        buffer.push(TAG_LABEL_NAME);
        put_varint(buffer, name.len() as u64);
        buffer.extend_from_slice(name.as_bytes());
        buffer.push(TAG_LABEL_VALUE);
        put_varint(buffer, value.len() as u64);
        buffer.extend_from_slice(value.as_bytes());
    }
}

/// Appends one `WriteRequest.timeseries` entry: pre-encoded labels plus one sample (`value`, timestamp in
/// milliseconds).
pub fn encode_timeseries(buffer: &mut Vec<u8>, encoded_labels: &[u8], value: f64, timestamp_ms: i64) {
    let sample_len = 1 + 8 + 1 + varint_len(timestamp_ms as u64);
    let series_len = encoded_labels.len() + 1 + varint_len(sample_len as u64) + sample_len;
    buffer.push(TAG_WRITE_REQUEST_TIMESERIES);
    put_varint(buffer, series_len as u64);
    buffer.extend_from_slice(encoded_labels);
    buffer.push(TAG_TIMESERIES_SAMPLES);
    put_varint(buffer, sample_len as u64);
    buffer.push(TAG_SAMPLE_VALUE);
    buffer.extend_from_slice(&value.to_le_bytes());
    buffer.push(TAG_SAMPLE_TIMESTAMP);
    put_varint(buffer, timestamp_ms as u64);
}

/// Snappy-compresses (raw block format) an encoded `WriteRequest`.
///
/// # Errors
/// When the input is too large for snappy (over about 4 GiB).
pub fn compress(encoded: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries.iter().map(|(name, value)| ((*name).to_string(), (*value).to_string())).collect()
    }

    #[test]
    fn hand_encoding_decodes_to_the_same_write_request() {
        let long_value = "x".repeat(300);
        let series = [
            (pairs(&[("__name__", "up"), ("instance", "10.0.0.1:8000"), ("job", "revel-web")]), 1.0, 1_700_000_000_000),
            (pairs(&[("__name__", "a_bucket"), ("le", "+Inf"), ("pod", &long_value)]), 12_345.678, 1_700_000_015_123),
            (pairs(&[("__name__", "zero")]), 0.0, 0),
            (pairs(&[("__name__", "negative_time")]), -2.5, -1),
        ];
        let mut body = Vec::new();
        let mut expected = WriteRequest::default();
        for (labels, value, timestamp_ms) in &series {
            let mut encoded_labels = Vec::new();
            encode_labels(&mut encoded_labels, labels);
            encode_timeseries(&mut body, &encoded_labels, *value, *timestamp_ms);
            expected.timeseries.push(TimeSeries {
                labels: labels.iter().map(|(name, value)| Label { name: name.clone(), value: value.clone() }).collect(),
                samples: vec![Sample { value: *value, timestamp: *timestamp_ms }],
                ..Default::default()
            });
        }
        let decoded = WriteRequest::decode(body.as_slice()).map_err(|error| error.to_string());
        assert_eq!(decoded, Ok(expected));
        let compressed = compress(&body).unwrap_or_default();
        let decompressed = snap::raw::Decoder::new().decompress_vec(&compressed).unwrap_or_default();
        assert_eq!(decompressed, body);
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for value in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX, 1_700_000_000_000] {
            let mut buffer = Vec::new();
            put_varint(&mut buffer, value);
            assert_eq!(buffer.len(), varint_len(value), "value {value}");
        }
    }
}

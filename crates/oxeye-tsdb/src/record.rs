//! WAL record encoding: what one commit (or one checkpoint entry) writes into the write-ahead log.
//!
//! Each WAL record starts with a type byte; the layouts are in `docs/format.md`. A commit writes at most
//! one record of each type: the series it introduces, its samples, its exemplars and changed metadata.
//! Checkpoints add [`RecordType::SeriesChunks`], the encoded chunks of one head series.

use oxeye_model::{Label, Labels, MetricMetadata, MetricType};

use crate::chunkenc::Encoding;
use crate::encoding::{DecodeError, Decoder, put_bytes, put_uvarint, put_varint};

/// The first byte of every WAL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordType {
    Series = 1,
    /// Samples with full 8-byte values, written by earlier versions; replayed, no longer written.
    #[cfg_attr(not(test), allow(dead_code))]
    Samples = 2,
    Exemplars = 3,
    Metadata = 4,
    SeriesChunks = 5,
    /// Samples with refs delta-coded from the previous sample and integer values as varints; what
    /// commits write. Type 2 (`Samples`) is still replayed.
    CompactSamples = 6,
}

/// A series introduced to the WAL: its reference and labels, still in the record encoding (which is
/// also the head's), with the decoded pairs borrowed from it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RefSeries<'a> {
    pub(crate) series_ref: u64,
    pub(crate) labels_encoded: &'a [u8],
    pub(crate) pairs: Vec<(&'a str, &'a str)>,
}

/// One sample of a series known by reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RefSample {
    pub(crate) series_ref: u64,
    pub(crate) timestamp_ms: i64,
    pub(crate) value: f64,
}

/// One exemplar of a series known by reference.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RefExemplar {
    pub(crate) series_ref: u64,
    pub(crate) exemplar: oxeye_model::Exemplar,
}

/// One encoded chunk of a head series, as checkpoints store it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RefChunk<'a> {
    pub(crate) encoding: Encoding,
    pub(crate) mint_ms: i64,
    pub(crate) maxt_ms: i64,
    pub(crate) bytes: &'a [u8],
}

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record<'a> {
    Series(Vec<RefSeries<'a>>),
    Samples(Vec<RefSample>),
    Exemplars(Vec<RefExemplar>),
    Metadata(Vec<(String, MetricMetadata)>),
    SeriesChunks { series_ref: u64, chunks: Vec<RefChunk<'a>> },
}

pub(crate) fn encode_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(out, labels.len() as u64);
    for label in labels {
        put_bytes(out, label.name.as_bytes());
        put_bytes(out, label.value.as_bytes());
    }
}

/// Labels in the record encoding and their `(name, value)` pairs borrowed from it.
pub(crate) type EncodedLabels<'a> = (&'a [u8], Vec<(&'a str, &'a str)>);

/// Checks labels in the record encoding without allocating strings; returns the encoded span and the
/// pairs.
pub(crate) fn decode_label_pairs<'a>(
    decoder: &mut Decoder<'a>,
    bytes: &'a [u8],
) -> Result<EncodedLabels<'a>, DecodeError> {
    let start = decoder.position();
    let count = decoder.count(2, "label count")?;
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = decoder.str("label name")?;
        let value = decoder.str("label value")?;
        if pairs.last().is_some_and(|(previous, _)| *previous >= name) {
            return Err(decoder.error("labels sorted by name"));
        }
        pairs.push((name, value));
    }
    let span = bytes.get(start..decoder.position()).ok_or_else(|| decoder.error("label span"))?;
    Ok((span, pairs))
}

pub(crate) fn decode_labels(decoder: &mut Decoder<'_>) -> Result<Labels, DecodeError> {
    let count = decoder.count(2, "label count")?;
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let name = decoder.str("label name")?;
        let value = decoder.str("label value")?;
        labels.push(Label { name: name.to_owned(), value: value.to_owned() });
    }
    let sorted = labels.windows(2).all(|pair| pair[0].name < pair[1].name);
    if !sorted {
        return Err(decoder.error("labels sorted by name"));
    }
    Ok(Labels::from_sorted(labels))
}

#[cfg(test)]
pub(crate) fn encode_series(series: &[(u64, &Labels)]) -> Vec<u8> {
    let mut out = vec![RecordType::Series as u8];
    put_uvarint(&mut out, series.len() as u64);
    for (series_ref, labels) in series {
        put_uvarint(&mut out, *series_ref);
        encode_labels(&mut out, labels);
    }
    out
}

/// A series record from labels already in the record's label encoding.
pub(crate) fn encode_series_encoded(series: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + series.iter().map(|(_, labels)| labels.len() + 5).sum::<usize>());
    out.push(RecordType::Series as u8);
    put_uvarint(&mut out, series.len() as u64);
    for (series_ref, labels) in series {
        put_uvarint(&mut out, *series_ref);
        out.extend_from_slice(labels);
    }
    out
}

#[cfg(test)]
pub(crate) fn encode_samples(samples: &[RefSample]) -> Vec<u8> {
    encode_samples_iter(samples.len(), samples.iter().copied())
}

/// A samples record of exactly `count` samples.
#[cfg(test)]
pub(crate) fn encode_samples_iter(count: usize, samples: impl Iterator<Item = RefSample>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_samples_into(&mut out, count, samples);
    out
}

/// The integer a value stands for exactly, when it has one below 2^53 in magnitude (so `-0.0`, NaN,
/// ±Inf and fractions have none).
fn exact_integer(value: f64) -> Option<i64> {
    let integer = value as i64;
    ((integer as f64).to_bits() == value.to_bits() && integer.unsigned_abs() < 1 << 53).then_some(integer)
}

/// Writes a compact samples record (type 6) of exactly `count` samples into `out` (cleared first),
/// reusing its allocation.
pub(crate) fn encode_samples_into(out: &mut Vec<u8>, count: usize, mut samples: impl Iterator<Item = RefSample>) {
    out.clear();
    out.reserve(8 + count * 8);
    out.push(RecordType::CompactSamples as u8);
    put_uvarint(out, count as u64);
    let Some(first) = samples.next() else { return };
    put_uvarint(out, first.series_ref);
    put_varint(out, first.timestamp_ms);
    let mut previous_ref = first.series_ref;
    for sample in std::iter::once(first).chain(samples) {
        put_varint(out, sample.series_ref.wrapping_sub(previous_ref) as i64);
        previous_ref = sample.series_ref;
        put_varint(out, sample.timestamp_ms.wrapping_sub(first.timestamp_ms));
        match exact_integer(sample.value) {
            Some(integer) => put_uvarint(out, zigzag(integer) << 1),
            None => {
                out.push(1);
                out.extend_from_slice(&sample.value.to_bits().to_le_bytes());
            }
        }
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Writes a type-2 samples record, as earlier versions did (replay must still read them).
#[cfg(test)]
pub(crate) fn encode_samples_type2(samples: &[RefSample]) -> Vec<u8> {
    let mut out = Vec::new();
    let out = &mut out;
    let count = samples.len();
    let mut samples = samples.iter().copied();
    out.push(RecordType::Samples as u8);
    put_uvarint(out, count as u64);
    let Some(first) = samples.next() else { return std::mem::take(out) };
    put_uvarint(out, first.series_ref);
    put_varint(out, first.timestamp_ms);
    for sample in std::iter::once(first).chain(samples) {
        put_varint(out, sample.series_ref.wrapping_sub(first.series_ref) as i64);
        put_varint(out, sample.timestamp_ms.wrapping_sub(first.timestamp_ms));
        out.extend_from_slice(&sample.value.to_bits().to_le_bytes());
    }
    std::mem::take(out)
}

pub(crate) fn encode_exemplars(exemplars: &[RefExemplar]) -> Vec<u8> {
    let mut out = vec![RecordType::Exemplars as u8];
    put_uvarint(&mut out, exemplars.len() as u64);
    for entry in exemplars {
        put_uvarint(&mut out, entry.series_ref);
        put_varint(&mut out, entry.exemplar.timestamp_ms);
        out.extend_from_slice(&entry.exemplar.value.to_bits().to_le_bytes());
        encode_labels(&mut out, &entry.exemplar.labels);
    }
    out
}

fn metric_type_byte(metric_type: MetricType) -> u8 {
    match metric_type {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

fn metric_type_from_byte(byte: u8) -> MetricType {
    match byte {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

pub(crate) fn encode_metadata(entries: &[(String, MetricMetadata)]) -> Vec<u8> {
    let mut out = vec![RecordType::Metadata as u8];
    put_uvarint(&mut out, entries.len() as u64);
    for (family, metadata) in entries {
        put_bytes(&mut out, family.as_bytes());
        out.push(metric_type_byte(metadata.metric_type));
        put_bytes(&mut out, metadata.unit.as_bytes());
        put_bytes(&mut out, metadata.help.as_bytes());
    }
    out
}

pub(crate) fn encode_series_chunks(series_ref: u64, chunks: &[RefChunk<'_>]) -> Vec<u8> {
    let mut out = vec![RecordType::SeriesChunks as u8];
    put_uvarint(&mut out, series_ref);
    put_uvarint(&mut out, chunks.len() as u64);
    for chunk in chunks {
        out.push(chunk.encoding.to_byte());
        put_varint(&mut out, chunk.mint_ms);
        put_varint(&mut out, chunk.maxt_ms);
        put_bytes(&mut out, chunk.bytes);
    }
    out
}

/// Decodes one WAL record.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let mut decoder = Decoder::new(bytes);
    let record_type = decoder.u8("record type")?;
    let record = match record_type {
        1 => {
            let count = decoder.count(2, "series count")?;
            let mut series = Vec::with_capacity(count);
            for _ in 0..count {
                let series_ref = decoder.uvarint("series ref")?;
                let (labels_encoded, pairs) = decode_label_pairs(&mut decoder, bytes)?;
                series.push(RefSeries { series_ref, labels_encoded, pairs });
            }
            Record::Series(series)
        }
        2 => {
            let count = decoder.count(10, "sample count")?;
            let mut samples = Vec::with_capacity(count);
            if count > 0 {
                let base_ref = decoder.uvarint("base series ref")?;
                let base_timestamp = decoder.varint("base timestamp")?;
                for _ in 0..count {
                    let series_ref = base_ref.wrapping_add(decoder.varint("series ref delta")? as u64);
                    let timestamp_ms = base_timestamp.wrapping_add(decoder.varint("timestamp delta")?);
                    let value = f64::from_bits(decoder.u64_le("sample value")?);
                    samples.push(RefSample { series_ref, timestamp_ms, value });
                }
            }
            Record::Samples(samples)
        }
        6 => {
            let count = decoder.count(3, "sample count")?;
            let mut samples = Vec::with_capacity(count);
            if count > 0 {
                let mut series_ref = decoder.uvarint("first series ref")?;
                let base_timestamp = decoder.varint("first timestamp")?;
                for _ in 0..count {
                    series_ref = series_ref.wrapping_add(decoder.varint("series ref delta")? as u64);
                    let timestamp_ms = base_timestamp.wrapping_add(decoder.varint("timestamp delta")?);
                    let coded = decoder.uvarint("sample value")?;
                    let value = match coded {
                        1 => f64::from_bits(decoder.u64_le("sample value bits")?),
                        coded if coded & 1 == 0 => unzigzag(coded >> 1) as f64,
                        _ => return Err(decoder.error("sample value kind 0 or 1")),
                    };
                    samples.push(RefSample { series_ref, timestamp_ms, value });
                }
            }
            Record::Samples(samples)
        }
        3 => {
            let count = decoder.count(11, "exemplar count")?;
            let mut exemplars = Vec::with_capacity(count);
            for _ in 0..count {
                let series_ref = decoder.uvarint("series ref")?;
                let timestamp_ms = decoder.varint("exemplar timestamp")?;
                let value = f64::from_bits(decoder.u64_le("exemplar value")?);
                let labels = decode_labels(&mut decoder)?;
                exemplars
                    .push(RefExemplar { series_ref, exemplar: oxeye_model::Exemplar { labels, value, timestamp_ms } });
            }
            Record::Exemplars(exemplars)
        }
        4 => {
            let count = decoder.count(4, "metadata count")?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let family = decoder.str("metric family name")?.to_owned();
                let metric_type = metric_type_from_byte(decoder.u8("metric type")?);
                let unit = decoder.str("unit")?.to_owned();
                let help = decoder.str("help")?.to_owned();
                entries.push((family, MetricMetadata { metric_type, help, unit }));
            }
            Record::Metadata(entries)
        }
        5 => {
            let series_ref = decoder.uvarint("series ref")?;
            let count = decoder.count(4, "chunk count")?;
            let mut chunks = Vec::with_capacity(count);
            for _ in 0..count {
                let encoding_byte = decoder.u8("chunk encoding")?;
                let encoding =
                    Encoding::from_byte(encoding_byte).ok_or_else(|| decoder.error("known chunk encoding"))?;
                let mint_ms = decoder.varint("chunk mint")?;
                let maxt_ms = decoder.varint("chunk maxt")?;
                let bytes = decoder.bytes("chunk bytes")?;
                chunks.push(RefChunk { encoding, mint_ms, maxt_ms, bytes });
            }
            Record::SeriesChunks { series_ref, chunks }
        }
        _ => return Err(DecodeError { position: 0, expected: "known record type" }),
    };
    if !decoder.is_empty() {
        return Err(decoder.error("end of record"));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use oxeye_model::{Exemplar, STALE_NAN};

    use super::*;

    #[test]
    fn every_record_type_round_trips() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
        let series = encode_series(&[(7, &labels), (9, &labels)]);
        let Record::Series(decoded) = decode(&series).unwrap() else { panic!("series record") };
        let refs: Vec<u64> = decoded.iter().map(|entry| entry.series_ref).collect();
        assert_eq!(refs, [7, 9]);
        for entry in &decoded {
            assert_eq!(decode_labels(&mut Decoder::new(entry.labels_encoded)).unwrap(), labels);
            assert_eq!(entry.pairs, [("__name__", "up"), ("job", "api")]);
        }
        let mut encoded_labels = Vec::new();
        encode_labels(&mut encoded_labels, &labels);
        assert_eq!(encode_series_encoded(&[(7, &encoded_labels), (9, &encoded_labels)]), series);
        let samples = vec![
            RefSample { series_ref: 9, timestamp_ms: 1000, value: 1.5 },
            RefSample { series_ref: 3, timestamp_ms: -5, value: f64::INFINITY },
        ];
        assert_eq!(decode(&encode_samples(&samples)).unwrap(), Record::Samples(samples.clone()));
        assert_eq!(decode(&encode_samples_type2(&samples)).unwrap(), Record::Samples(samples));
        let stale = encode_samples(&[RefSample { series_ref: 1, timestamp_ms: 1, value: STALE_NAN }]);
        let Record::Samples(decoded) = decode(&stale).unwrap() else { panic!("samples") };
        assert!(oxeye_model::is_stale_nan(decoded[0].value));
        let exemplars = vec![RefExemplar {
            series_ref: 4,
            exemplar: Exemplar { labels: Labels::from_pairs([("trace_id", "abc")]), value: 0.5, timestamp_ms: 12 },
        }];
        assert_eq!(decode(&encode_exemplars(&exemplars)).unwrap(), Record::Exemplars(exemplars));
        let metadata = vec![(
            "http_requests".to_owned(),
            MetricMetadata { metric_type: MetricType::Counter, help: "Requests.".to_owned(), unit: String::new() },
        )];
        assert_eq!(decode(&encode_metadata(&metadata)).unwrap(), Record::Metadata(metadata));
        let chunk = [0u8, 1, 2, 3];
        let chunks = vec![RefChunk { encoding: Encoding::Xor, mint_ms: 5, maxt_ms: 10, bytes: &chunk }];
        assert_eq!(decode(&encode_series_chunks(3, &chunks)).unwrap(), Record::SeriesChunks { series_ref: 3, chunks });
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_record_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            for record_type in 1u8..=6 {
                let mut typed = vec![record_type];
                typed.extend_from_slice(&bytes);
                let _ = decode(&typed);
            }
        }
    }

    fn sample_value() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            any::<f64>(),
            any::<i32>().prop_map(f64::from),
            (-(1i64 << 53)..=(1i64 << 53)).prop_map(|n| n as f64),
            Just(STALE_NAN),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            Just(9_007_199_254_740_993.0),
            Just(-9_223_372_036_854_775_808.0),
            Just(1e300),
            (0u32..1_000_000).prop_map(|n| f64::from(n) / 100.0),
        ]
    }

    proptest::proptest! {
        #[test]
        fn compact_samples_round_trip_bit_for_bit(
            samples in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), 0u64..5000, proptest::prelude::any::<i64>(), -100_000i64..100_000, sample_value()),
                0..200,
            ),
            wide in proptest::prelude::any::<bool>(),
        ) {
            let samples: Vec<RefSample> = samples
                .into_iter()
                .map(|(any_ref, small_ref, any_time, small_time, value)| RefSample {
                    series_ref: if wide { any_ref } else { small_ref },
                    timestamp_ms: if wide { any_time } else { 1_700_000_000_000 + small_time },
                    value,
                })
                .collect();
            let encoded = encode_samples(&samples);
            proptest::prop_assert_eq!(encoded[0], RecordType::CompactSamples as u8);
            let Record::Samples(decoded) = decode(&encoded).unwrap() else { panic!("samples record") };
            proptest::prop_assert_eq!(decoded.len(), samples.len());
            for (got, want) in decoded.iter().zip(&samples) {
                proptest::prop_assert_eq!(got.series_ref, want.series_ref);
                proptest::prop_assert_eq!(got.timestamp_ms, want.timestamp_ms);
                proptest::prop_assert_eq!(got.value.to_bits(), want.value.to_bits());
            }
            for cut in 0..encoded.len() {
                proptest::prop_assert!(decode(&encoded[..cut]).is_err(), "cut at {}", cut);
            }
        }
    }

    #[test]
    fn compact_samples_are_small_for_integer_counters() {
        let samples: Vec<RefSample> = (0..2000u64)
            .map(|n| RefSample { series_ref: 100_000 + n, timestamp_ms: 1_700_000_000_000, value: (n * 977) as f64 })
            .collect();
        let encoded = encode_samples(&samples);
        assert!(encoded.len() < 2000 * 7, "{} bytes", encoded.len());
        assert!(encoded.len() * 10 < encode_samples_type2(&samples).len() * 6);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let labels = Labels::from_pairs([("__name__", "up")]);
        let series = encode_series(&[(7, &labels)]);
        for cut in 0..series.len() {
            assert!(decode(&series[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[99]).is_err());
        assert!(decode(&[2, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}

//! Prometheus remote_write 1.0 and 2.0 request bodies, decoded into borrowed series ready to append.
//!
//! The decoder walks the protobuf bytes itself (see `protowire`) instead of building the `prost` structs of
//! `oxeye-proto`: label names and values stay `&str` slices of the request buffer and samples land in one
//! flat vector, so a request costs a handful of allocations however many series it holds. A store that
//! caches series by label set can look them up with [`SeriesView::labels_stable_hash`] (equal to
//! [`Labels::stable_hash`] of the same set) and build [`Labels`] only for new series.
//!
//! Validation follows Prometheus 3's receiver (`storage/remote/write_handler.go`): labels are sorted by
//! name when the sender did not sort them; a series without `__name__`, with an empty metric name, an empty
//! label name, invalid UTF-8 or a duplicate label name is **skipped** and reported in
//! [`WriteRequestView::rejected`] (Prometheus 3 skips such series and still answers 204 for 1.0, and answers
//! 400 after writing the rest for 2.0); malformed protobuf fails the whole request. Labels with empty
//! values are dropped (an empty value means "absent"). Native histograms are counted in
//! [`WriteRequestView::histograms_dropped`] and not decoded: `oxeye-model` has no histogram sample yet.
//!
//! Throughput (`cargo run --release -p oxeye-ingest --example remote_write_throughput`: 2000 series of eight
//! labels and one sample per request, the shape of Prometheus' default queue): about 3 M samples per CPU
//! second for snappy plus decoding into the borrowed view, 4 M for decoding alone, against 0.6 M for
//! decoding into `prost` structs (2-vCPU shared development machine, Nov 2026). Building owned
//! [`Labels`] for every series costs five times more than the decode, hence the view.
//!
//! Sources: <https://prometheus.io/docs/specs/prw/remote_write_spec/>,
//! <https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/>.

use crate::protowire::{
    FieldReader, WireError, WireValue, bytes_field, double_field, repeated_u32_field, sub_message, varint_field,
};
use crate::{IngestError, SeriesProblem};
use oxeye_model::storage::HeldSeries;
use oxeye_model::{Exemplar, Label, Labels, METRIC_NAME_LABEL, MetricMetadata, MetricType, Sample};
use std::ops::Range;

/// The remote_write protocol version of a request, from `Content-Type` and
/// `X-Prometheus-Remote-Write-Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteWriteVersion {
    /// 1.0: `prometheus.WriteRequest`.
    V1,
    /// 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

/// The `proto` parameter of a remote_write 2.0 `Content-Type`.
pub const V2_PROTO_MESSAGE: &str = "io.prometheus.write.v2.Request";

/// Picks the protocol version from a `Content-Type` header value: `application/x-protobuf` alone or with
/// `proto=prometheus.WriteRequest` is 1.0, with `proto=io.prometheus.write.v2.Request` 2.0; a missing header
/// is 1.0 (old senders). `None` for any other type or proto (HTTP 415, as the 2.0 spec requires).
pub fn version_from_content_type(content_type: Option<&str>) -> Option<RemoteWriteVersion> {
    let Some(content_type) = content_type else { return Some(RemoteWriteVersion::V1) };
    let mut parts = content_type.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or("");
    if !media_type.eq_ignore_ascii_case("application/x-protobuf") {
        return None;
    }
    let mut version = RemoteWriteVersion::V1;
    for parameter in parts {
        let Some((key, value)) = parameter.split_once('=') else { continue };
        if key.trim().eq_ignore_ascii_case("proto") {
            version = match value.trim().trim_matches('"') {
                "prometheus.WriteRequest" => RemoteWriteVersion::V1,
                V2_PROTO_MESSAGE => RemoteWriteVersion::V2,
                _ => return None,
            };
        }
    }
    Some(version)
}

pub use oxeye_model::LabelRef;

/// Metadata of one metric family, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMetadata {
    /// The metric family name (remote_write senders use the sample name, e.g. `http_requests_total`).
    pub metric_family_name: String,
    /// Type, help and unit.
    pub metadata: MetricMetadata,
}

/// Counts for the remote_write 2.0 `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`
/// response headers: what the accepted series of a request hold. The server reports them after a
/// successful commit (and zeros when the commit fails).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrittenCounts {
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples (always 0: oxeye does not store them yet).
    pub histograms: u64,
    /// Exemplars.
    pub exemplars: u64,
}

#[derive(Debug, Clone)]
struct SeriesEntry<'a> {
    index: u32,
    labels: Range<u32>,
    samples: Range<u32>,
    exemplars: Range<u32>,
    /// Set when the store knew the series by its protobuf label bytes (`labels` is then empty).
    held: Option<HeldSeries>,
    /// The consecutive `labels` fields at the start of the 1.0 `TimeSeries` (empty for 2.0).
    protobuf_labels: &'a [u8],
}

/// A decoded remote_write request whose series borrow label strings from the decompressed body.
///
/// Shapes: series in request order (skipped ones excluded), each with labels sorted by name, samples
/// (timestamps in **milliseconds**) in the sender's order, and exemplars.
#[derive(Debug, Clone, Default)]
pub struct WriteRequestView<'a> {
    labels: Vec<LabelRef<'a>>,
    samples: Vec<Sample>,
    exemplars: Vec<Exemplar>,
    series: Vec<SeriesEntry<'a>>,
    metadata: Vec<FamilyMetadata>,
    rejected: Vec<IngestError>,
    rejected_samples: u64,
    /// Native histogram samples in the request, not decoded (see the module docs).
    pub histograms_dropped: u64,
    /// Exemplars dropped because their labels were not valid UTF-8 or referenced no symbol.
    pub exemplars_dropped: u64,
}

/// One decoded series of a [`WriteRequestView`].
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'a, 'v> {
    index: usize,
    labels: &'v [LabelRef<'a>],
    samples: &'v [Sample],
    exemplars: &'v [Exemplar],
    held: Option<HeldSeries>,
    protobuf_labels: &'a [u8],
}

impl<'a> SeriesView<'a, '_> {
    /// The series' position in the request (counting skipped series too).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The labels, sorted by name, unique, none empty, `__name__` among them; **empty** for a series the
    /// store found by its protobuf label bytes (see [`SeriesView::held`]), whose labels were not decoded.
    pub fn labels(&self) -> &[LabelRef<'a>] {
        self.labels
    }

    /// The series as the store holds it, when [`decode_write_request_with_known_series`] found it by its
    /// protobuf label bytes; append to it with `Appender::append_held`.
    pub fn held(&self) -> Option<HeldSeries> {
        self.held
    }

    /// The bytes of the consecutive `labels` fields at the start of the 1.0 `TimeSeries` (empty for 2.0):
    /// the key of `Appender::hold_protobuf_labels` and `Appender::cache_protobuf_labels`.
    pub fn protobuf_labels(&self) -> &'a [u8] {
        self.protobuf_labels
    }

    /// The metric name.
    pub fn metric_name(&self) -> &'a str {
        self.labels.iter().find(|label| label.name == METRIC_NAME_LABEL).map(|label| label.value).unwrap_or("")
    }

    /// The samples, timestamps in milliseconds.
    pub fn samples(&self) -> &[Sample] {
        self.samples
    }

    /// The exemplars.
    pub fn exemplars(&self) -> &[Exemplar] {
        self.exemplars
    }

    /// The labels as an owned [`Labels`] (allocates).
    pub fn to_labels(&self) -> Labels {
        let labels = self
            .labels
            .iter()
            .map(|label| Label { name: label.name.to_string(), value: label.value.to_string() })
            .collect();
        Labels::from_sorted(labels)
    }

    /// The same value as [`Labels::stable_hash`] of [`SeriesView::to_labels`], without allocating.
    pub fn labels_stable_hash(&self) -> u64 {
        oxeye_model::stable_hash_of_refs(self.labels)
    }
}

/// One owned series: what [`WriteRequestView::to_batch`] produces.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// The series' labels.
    pub labels: Labels,
    /// Its samples, timestamps in milliseconds.
    pub samples: Vec<Sample>,
    /// Its exemplars.
    pub exemplars: Vec<Exemplar>,
}

/// An owned decoded request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteBatch {
    /// The accepted series.
    pub series: Vec<SeriesSamples>,
    /// Metric family metadata.
    pub metadata: Vec<FamilyMetadata>,
    /// Skipped series, each an [`IngestError::InvalidSeries`].
    pub rejected: Vec<IngestError>,
    /// Native histogram samples not decoded.
    pub histograms_dropped: u64,
}

impl<'a> WriteRequestView<'a> {
    /// An empty view with room for a typical request of `body_len` bytes (about 200 bytes per series of
    /// eight labels and one sample), so that decoding rarely reallocates.
    fn with_capacity_for(body_len: usize) -> Self {
        WriteRequestView {
            labels: Vec::with_capacity(body_len / 24),
            samples: Vec::with_capacity(body_len / 160),
            series: Vec::with_capacity(body_len / 160),
            ..WriteRequestView::default()
        }
    }

    /// The accepted series in request order.
    pub fn series(&self) -> impl ExactSizeIterator<Item = SeriesView<'a, '_>> + '_ {
        self.series.iter().map(|entry| SeriesView {
            index: entry.index as usize,
            labels: &self.labels[entry.labels.start as usize..entry.labels.end as usize],
            samples: &self.samples[entry.samples.start as usize..entry.samples.end as usize],
            exemplars: &self.exemplars[entry.exemplars.start as usize..entry.exemplars.end as usize],
            held: entry.held,
            protobuf_labels: entry.protobuf_labels,
        })
    }

    /// The number of accepted series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The number of samples in accepted series.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// The number of exemplars in accepted series.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars.len()
    }

    /// Metric family metadata (1.0: the request's `metadata`; 2.0: each series' metadata keyed by its
    /// metric name, first one wins).
    pub fn metadata(&self) -> &[FamilyMetadata] {
        &self.metadata
    }

    /// Skipped series, each an [`IngestError::InvalidSeries`] naming the series' index and the problem.
    pub fn rejected(&self) -> &[IngestError] {
        &self.rejected
    }

    /// Samples of skipped series (Prometheus' `samples_with_invalid_labels`).
    pub fn rejected_samples(&self) -> u64 {
        self.rejected_samples
    }

    /// The 2.0 `…-Written` header counts for this request's accepted data.
    pub fn written_counts(&self) -> WrittenCounts {
        WrittenCounts { samples: self.samples.len() as u64, histograms: 0, exemplars: self.exemplars.len() as u64 }
    }

    /// Copies everything into an owned [`WriteBatch`] (series found by the store through
    /// [`decode_write_request_with_known_series`] have no labels in it).
    pub fn to_batch(&self) -> WriteBatch {
        WriteBatch {
            series: self
                .series()
                .map(|series| SeriesSamples {
                    labels: series.to_labels(),
                    samples: series.samples().to_vec(),
                    exemplars: series.exemplars().to_vec(),
                })
                .collect(),
            metadata: self.metadata.clone(),
            rejected: self.rejected.clone(),
            histograms_dropped: self.histograms_dropped,
        }
    }

    /// Decodes one `samples` field (a `Sample` message, the same in 1.0 and 2.0) and appends it;
    /// `position` counts the series' samples for error paths.
    fn push_sample(
        &mut self,
        reader: &FieldReader<'a>,
        value: WireValue<'a>,
        position: &mut usize,
    ) -> Result<(), WireError> {
        let (sample_bytes, sample_base) = sub_message(reader, value, "samples")?;
        let sample = decode_v1_sample(sample_bytes, sample_base)
            .map_err(|error| error.within(format_args!("samples[{position}]")))?;
        self.samples.push(sample);
        *position += 1;
        Ok(())
    }

    /// Validates the labels collected since `labels_start` for series `index`, sorting them if needed, and
    /// either records the series or rolls its labels, samples and exemplars back and records the problem.
    fn finish_series(
        &mut self,
        index: usize,
        labels_start: usize,
        samples_start: usize,
        exemplars_start: usize,
        utf8_problem: Option<SeriesProblem>,
        protobuf_labels: &'a [u8],
    ) {
        let problem = utf8_problem.or_else(|| validate_series_labels(&mut self.labels[labels_start..]));
        if let Some(problem) = problem {
            self.rejected_samples += (self.samples.len() - samples_start) as u64;
            self.labels.truncate(labels_start);
            self.samples.truncate(samples_start);
            self.exemplars.truncate(exemplars_start);
            self.rejected.push(IngestError::InvalidSeries { index, problem });
            return;
        }
        // Drop empty values only after validation so that an empty `__name__` is reported, not ignored.
        let mut write = labels_start;
        for read in labels_start..self.labels.len() {
            if !self.labels[read].value.is_empty() {
                self.labels[write] = self.labels[read];
                write += 1;
            }
        }
        self.labels.truncate(write);
        self.series.push(SeriesEntry {
            index: index as u32,
            labels: labels_start as u32..self.labels.len() as u32,
            samples: samples_start as u32..self.samples.len() as u32,
            exemplars: exemplars_start as u32..self.exemplars.len() as u32,
            held: None,
            protobuf_labels,
        });
    }
}

/// Sorts `labels` by name if needed and checks them as Prometheus 3 does; `None` when valid.
fn validate_series_labels(labels: &mut [LabelRef<'_>]) -> Option<SeriesProblem> {
    let sorted = labels.windows(2).all(|pair| pair[0].name <= pair[1].name);
    if !sorted {
        labels.sort_by(|left, right| left.name.cmp(right.name));
    }
    match labels.iter().find(|label| label.name == METRIC_NAME_LABEL) {
        None => return Some(SeriesProblem::MissingMetricName),
        Some(label) if label.value.is_empty() => return Some(SeriesProblem::EmptyMetricName),
        Some(_) => {}
    }
    if labels.iter().any(|label| label.name.is_empty()) {
        return Some(SeriesProblem::EmptyLabelName);
    }
    labels
        .windows(2)
        .find(|pair| pair[0].name == pair[1].name)
        .map(|pair| SeriesProblem::DuplicateLabelName(pair[0].name.to_string()))
}

fn protobuf_error(error: WireError) -> IngestError {
    if let Some(field) = error.reason.strip_prefix("invalid UTF-8 in ") {
        let field = if error.path.is_empty() { field.to_string() } else { format!("{}.{field}", error.path) };
        return IngestError::InvalidUtf8 { field };
    }
    IngestError::Protobuf {
        field: if error.path.is_empty() { "request".into() } else { error.path },
        reason: error.reason,
    }
}

fn metric_type_from_wire(value: u64) -> MetricType {
    match value {
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

/// Decodes a decompressed remote_write **1.0** body (`prometheus.WriteRequest`).
///
/// # Errors
/// [`IngestError::Protobuf`] naming the field path and byte position for malformed bytes (wrong wire type,
/// truncation, a length past the end); [`IngestError::InvalidUtf8`] for invalid UTF-8 in metadata strings.
/// Invalid series are not errors: see [`WriteRequestView::rejected`].
pub fn decode_write_request(body: &[u8]) -> Result<WriteRequestView<'_>, IngestError> {
    decode_v1(body, None)
}

/// As [`decode_write_request`], asking `known_series` first for the series whose `labels` fields come
/// first in their `TimeSeries` (as every sender writes them): given the raw bytes of those fields for
/// every series of the request at once (an empty slice for a series without them), it pushes for each the
/// series when the store knows it (`Appender::hold_protobuf_labels_batch`). A known series' labels are then
/// neither decoded nor validated: the store guarantees they decode to that series' labels, which were
/// validated when it was created. Everything else is decoded and validated as [`decode_write_request`]
/// does, so invalid labels are still reported on first sight, and a series with exemplars is always
/// decoded (exemplars are appended by labels).
///
/// # Errors
/// As [`decode_write_request`].
pub fn decode_write_request_with_known_series<'a>(
    body: &'a [u8],
    known_series: &mut KnownSeries<'_>,
) -> Result<WriteRequestView<'a>, IngestError> {
    decode_v1(body, Some(known_series))
}

/// The store's lookup of series by the raw bytes of their protobuf `labels` fields, all series of a
/// request in one call (see [`decode_write_request_with_known_series`]): pushes one entry per key, in
/// order.
pub type KnownSeries<'s> = dyn FnMut(&[&[u8]], &mut Vec<Option<HeldSeries>>) + 's;

/// The leading `labels` bytes of each `timeseries` field of a 1.0 `WriteRequest`, in order. A malformed
/// field ends the list early; the full decode then reports it at its place.
fn leading_labels_of_each_series(body: &[u8]) -> Vec<&[u8]> {
    let mut keys = Vec::with_capacity(body.len() / 160);
    let mut reader = FieldReader::new(body, 0);
    while let Ok(Some((field_number, value))) = reader.next_field() {
        if field_number != 1 {
            continue;
        }
        let Ok((bytes, base)) = sub_message(&reader, value, "timeseries") else { break };
        keys.push(&bytes[..leading_labels_length(bytes, base)]);
    }
    keys
}

fn decode_v1<'a>(
    body: &'a [u8],
    known_series: Option<&mut KnownSeries<'_>>,
) -> Result<WriteRequestView<'a>, IngestError> {
    let mut view = WriteRequestView::with_capacity_for(body.len());
    // All series are looked up before any is decoded, so that the store can overlap their lookups.
    let (keys, found) = match known_series {
        Some(known_series) => {
            let keys = leading_labels_of_each_series(body);
            let mut found = Vec::with_capacity(keys.len());
            known_series(&keys, &mut found);
            (keys, found)
        }
        None => (Vec::new(), Vec::new()),
    };
    let mut reader = FieldReader::new(body, 0);
    let mut series_index = 0usize;
    while let Some((field_number, value)) = reader.next_field().map_err(protobuf_error)? {
        match field_number {
            1 => {
                let (bytes, base) = sub_message(&reader, value, "timeseries").map_err(protobuf_error)?;
                let protobuf_labels = match keys.get(series_index) {
                    Some(key) => key,
                    None => &bytes[..leading_labels_length(bytes, base)],
                };
                let decoded = match found.get(series_index).copied().flatten() {
                    Some(held) => decode_v1_known_series(&mut view, held, protobuf_labels, bytes, base, series_index),
                    None => Ok(false),
                };
                let decoded = decoded.and_then(|decoded| {
                    if decoded {
                        return Ok(());
                    }
                    decode_v1_series(&mut view, bytes, base, series_index, protobuf_labels)
                });
                decoded.map_err(|error| protobuf_error(error.within(format_args!("timeseries[{series_index}]"))))?;
                series_index += 1;
            }
            3 => {
                let index = view.metadata.len();
                let (bytes, base) = sub_message(&reader, value, "metadata").map_err(protobuf_error)?;
                let metadata = decode_v1_metadata(bytes, base)
                    .map_err(|error| protobuf_error(error.within(format_args!("metadata[{index}]"))))?;
                view.metadata.push(metadata);
            }
            _ => {}
        }
    }
    Ok(view)
}

/// The length of the run of `labels` fields (field 1, length-delimited) at the start of a 1.0
/// `TimeSeries`; a malformed field ends the run (the full decode reports it).
fn leading_labels_length(bytes: &[u8], base: usize) -> usize {
    // Fast path for what senders write: tag 0x0a and a one-byte length.
    let mut length = 0;
    while let Some([0x0a, field_length, ..]) = bytes.get(length..)
        && *field_length < 0x80
    {
        let end = length + 2 + usize::from(*field_length);
        if end > bytes.len() {
            return length;
        }
        length = end;
    }
    let mut reader = FieldReader::new(&bytes[length..], base + length);
    while let Ok(Some((1, WireValue::LengthDelimited(_)))) = reader.next_field() {
        length = reader.absolute_position() - base;
    }
    length
}

/// Decodes the fields after the leading `labels` of a series the store found by those bytes. `Ok(false)`
/// (with nothing kept) when the series has to be decoded in full after all: another `labels` field comes
/// later, or it has exemplars.
fn decode_v1_known_series<'a>(
    view: &mut WriteRequestView<'a>,
    held: HeldSeries,
    protobuf_labels: &'a [u8],
    bytes: &'a [u8],
    base: usize,
    index: usize,
) -> Result<bool, WireError> {
    let samples_start = view.samples.len();
    let histograms_before = view.histograms_dropped;
    let mut sample_position = 0usize;
    let mut reader = FieldReader::new(&bytes[protobuf_labels.len()..], base + protobuf_labels.len());
    while let Some((field_number, value)) = reader.next_field()? {
        match field_number {
            1 | 3 => {
                view.samples.truncate(samples_start);
                view.histograms_dropped = histograms_before;
                return Ok(false);
            }
            2 => {
                view.push_sample(&reader, value, &mut sample_position)?;
            }
            4 => {
                sub_message(&reader, value, "histograms")?;
                view.histograms_dropped += 1;
            }
            _ => {}
        }
    }
    let labels_end = view.labels.len() as u32;
    let exemplars_end = view.exemplars.len() as u32;
    view.series.push(SeriesEntry {
        index: index as u32,
        labels: labels_end..labels_end,
        samples: samples_start as u32..view.samples.len() as u32,
        exemplars: exemplars_end..exemplars_end,
        held: Some(held),
        protobuf_labels,
    });
    Ok(true)
}

fn decode_v1_series<'a>(
    view: &mut WriteRequestView<'a>,
    bytes: &'a [u8],
    base: usize,
    index: usize,
    protobuf_labels: &'a [u8],
) -> Result<(), WireError> {
    let labels_start = view.labels.len();
    let samples_start = view.samples.len();
    let exemplars_start = view.exemplars.len();
    let mut utf8_problem = None;
    let mut label_position = 0usize;
    let mut sample_position = 0usize;
    let mut exemplar_position = 0usize;
    let mut reader = FieldReader::new(bytes, base);
    while let Some((field_number, value)) = reader.next_field()? {
        match field_number {
            1 => {
                let (label_bytes, label_base) = sub_message(&reader, value, "labels")?;
                let (name, value) = decode_v1_label(label_bytes, label_base)
                    .map_err(|error| error.within(format_args!("labels[{label_position}]")))?;
                match (std::str::from_utf8(name), std::str::from_utf8(value)) {
                    (Ok(name), Ok(value)) => view.labels.push(LabelRef { name, value }),
                    (Err(_), _) => {
                        utf8_problem
                            .get_or_insert(SeriesProblem::InvalidUtf8 { position: label_position, part: "name" });
                    }
                    (_, Err(_)) => {
                        utf8_problem
                            .get_or_insert(SeriesProblem::InvalidUtf8 { position: label_position, part: "value" });
                    }
                }
                label_position += 1;
            }
            2 => {
                view.push_sample(&reader, value, &mut sample_position)?;
            }
            3 => {
                let (exemplar_bytes, exemplar_base) = sub_message(&reader, value, "exemplars")?;
                let exemplar = decode_v1_exemplar(exemplar_bytes, exemplar_base)
                    .map_err(|error| error.within(format_args!("exemplars[{exemplar_position}]")))?;
                match exemplar {
                    Some(exemplar) => view.exemplars.push(exemplar),
                    None => view.exemplars_dropped += 1,
                }
                exemplar_position += 1;
            }
            4 => {
                sub_message(&reader, value, "histograms")?;
                view.histograms_dropped += 1;
            }
            _ => {}
        }
    }
    view.finish_series(index, labels_start, samples_start, exemplars_start, utf8_problem, protobuf_labels);
    Ok(())
}

#[inline]
fn decode_v1_label(bytes: &[u8], base: usize) -> Result<(&[u8], &[u8]), WireError> {
    // Fast path for what every sender writes: `name` then `value`, both shorter than 128 bytes.
    if let [0x0a, name_length, rest @ ..] = bytes
        && *name_length < 0x80
        && let Some((name, rest)) = rest.split_at_checked(usize::from(*name_length))
        && let [0x12, value_length, value @ ..] = rest
        && usize::from(*value_length) == value.len()
    {
        return Ok((name, value));
    }
    let mut name: &[u8] = &[];
    let mut value: &[u8] = &[];
    let mut reader = FieldReader::new(bytes, base);
    while let Some((field_number, field_value)) = reader.next_field()? {
        match field_number {
            1 => name = bytes_field(field_value, "name")?,
            2 => value = bytes_field(field_value, "value")?,
            _ => {}
        }
    }
    Ok((name, value))
}

#[inline]
fn decode_v1_sample(bytes: &[u8], base: usize) -> Result<Sample, WireError> {
    // Fast path for what senders write: `value` (fixed64) then `timestamp` (varint), nothing else.
    if let [0x09, value @ ..] = bytes
        && let Some((value, [0x10, timestamp @ ..])) = value.split_first_chunk::<8>()
        && let Some(timestamp_ms) = complete_varint(timestamp)
    {
        return Ok(Sample { timestamp_ms: timestamp_ms as i64, value: f64::from_le_bytes(*value) });
    }
    let mut sample = Sample { timestamp_ms: 0, value: 0.0 };
    let mut reader = FieldReader::new(bytes, base);
    while let Some((field_number, value)) = reader.next_field()? {
        match field_number {
            1 => sample.value = double_field(value, "value")?,
            2 => sample.timestamp_ms = varint_field(value, "timestamp")? as i64,
            _ => {}
        }
    }
    Ok(sample)
}

/// The varint that makes up all of `bytes` (at most ten bytes, the last one without its high bit);
/// `None` for anything else.
#[inline]
fn complete_varint(bytes: &[u8]) -> Option<u64> {
    let (last, leading) = bytes.split_last()?;
    if *last >= 0x80 || leading.len() >= 10 || leading.iter().any(|byte| *byte < 0x80) {
        return None;
    }
    let mut value = 0u64;
    for (index, byte) in bytes.iter().enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
    }
    Some(value)
}

/// `None` when a label is not valid UTF-8 (the exemplar is dropped, as exemplars are best effort).
fn decode_v1_exemplar(bytes: &[u8], base: usize) -> Result<Option<Exemplar>, WireError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut valid = true;
    let mut exemplar = Exemplar { labels: Labels::empty(), value: 0.0, timestamp_ms: 0 };
    let mut label_position = 0usize;
    let mut reader = FieldReader::new(bytes, base);
    while let Some((field_number, value)) = reader.next_field()? {
        match field_number {
            1 => {
                let (label_bytes, label_base) = sub_message(&reader, value, "labels")?;
                let (name, value) = decode_v1_label(label_bytes, label_base)
                    .map_err(|error| error.within(format_args!("labels[{label_position}]")))?;
                match (std::str::from_utf8(name), std::str::from_utf8(value)) {
                    (Ok(name), Ok(value)) => pairs.push((name.to_string(), value.to_string())),
                    _ => valid = false,
                }
                label_position += 1;
            }
            2 => exemplar.value = double_field(value, "value")?,
            3 => exemplar.timestamp_ms = varint_field(value, "timestamp")? as i64,
            _ => {}
        }
    }
    if !valid {
        return Ok(None);
    }
    exemplar.labels = Labels::from_pairs(pairs);
    Ok(Some(exemplar))
}

fn decode_v1_metadata(bytes: &[u8], base: usize) -> Result<FamilyMetadata, WireError> {
    let mut family = FamilyMetadata { metric_family_name: String::new(), metadata: MetricMetadata::default() };
    let mut reader = FieldReader::new(bytes, base);
    let utf8 = |bytes: &[u8], field: &str| -> Result<String, WireError> {
        std::str::from_utf8(bytes).map(str::to_string).map_err(|_| WireError::new(format!("invalid UTF-8 in {field}")))
    };
    while let Some((field_number, value)) = reader.next_field()? {
        match field_number {
            1 => family.metadata.metric_type = metric_type_from_wire(varint_field(value, "type")?),
            2 => family.metric_family_name = utf8(bytes_field(value, "metric_family_name")?, "metric_family_name")?,
            4 => family.metadata.help = utf8(bytes_field(value, "help")?, "help")?,
            5 => family.metadata.unit = utf8(bytes_field(value, "unit")?, "unit")?,
            _ => {}
        }
    }
    Ok(family)
}

/// Decodes a decompressed remote_write **2.0** body (`io.prometheus.write.v2.Request`), resolving label,
/// help and unit references through the symbols table.
///
/// Symbols may come after the series on the wire, so the body is read twice: symbols first, then series.
/// `created_timestamp` / `start_timestamp` are read past and not used.
///
/// # Errors
/// [`IngestError::Protobuf`] for malformed bytes; [`IngestError::SymbolOutOfRange`] for a reference past the
/// table; [`IngestError::OddLabelReferences`] for a `labels_refs` list of odd length. Invalid series are
/// skipped and listed in [`WriteRequestView::rejected`] (Prometheus then answers 400 after writing the rest).
pub fn decode_write_request_v2(body: &[u8]) -> Result<WriteRequestView<'_>, IngestError> {
    let mut symbols: Vec<Option<&str>> = Vec::new();
    let mut reader = FieldReader::new(body, 0);
    while let Some((field_number, value)) = reader.next_field().map_err(protobuf_error)? {
        if field_number == 4 {
            let bytes = bytes_field(value, "symbols").map_err(protobuf_error)?;
            symbols.push(std::str::from_utf8(bytes).ok());
        }
    }
    let mut view = WriteRequestView::with_capacity_for(body.len());
    let mut reader = FieldReader::new(body, 0);
    let mut series_index = 0usize;
    let mut label_refs = Vec::new();
    while let Some((field_number, value)) = reader.next_field().map_err(protobuf_error)? {
        if field_number == 5 {
            let (bytes, base) = sub_message(&reader, value, "timeseries").map_err(protobuf_error)?;
            decode_v2_series(&mut view, &symbols, &mut label_refs, bytes, base, series_index)
                .map_err(|error| error.within_series(series_index))?;
            series_index += 1;
        }
    }
    Ok(view)
}

/// Errors of the 2.0 series decoder: wire errors or symbol problems, both relative to one series.
enum V2Error {
    Wire(WireError),
    SymbolOutOfRange { field: String, reference: u32, symbols: usize },
    OddLabelReferences { field: String, count: usize },
}

impl From<WireError> for V2Error {
    fn from(error: WireError) -> Self {
        V2Error::Wire(error)
    }
}

impl V2Error {
    fn within_series(self, index: usize) -> IngestError {
        let prefix = |field: String| format!("timeseries[{index}].{field}");
        match self {
            V2Error::Wire(error) => protobuf_error(error.within(format_args!("timeseries[{index}]"))),
            V2Error::SymbolOutOfRange { field, reference, symbols } => {
                IngestError::SymbolOutOfRange { field: prefix(field), reference, symbols }
            }
            V2Error::OddLabelReferences { field, count } => {
                IngestError::OddLabelReferences { field: prefix(field), count }
            }
        }
    }
}

fn symbol<'a>(symbols: &[Option<&'a str>], reference: u32, field: &str) -> Result<Option<&'a str>, V2Error> {
    symbols.get(reference as usize).copied().ok_or_else(|| V2Error::SymbolOutOfRange {
        field: field.to_string(),
        reference,
        symbols: symbols.len(),
    })
}

fn decode_v2_series<'a>(
    view: &mut WriteRequestView<'a>,
    symbols: &[Option<&'a str>],
    label_refs: &mut Vec<u32>,
    bytes: &'a [u8],
    base: usize,
    index: usize,
) -> Result<(), V2Error> {
    let labels_start = view.labels.len();
    let samples_start = view.samples.len();
    let exemplars_start = view.exemplars.len();
    let mut sample_position = 0usize;
    let mut exemplar_position = 0usize;
    let mut metadata: Option<(u64, u32, u32)> = None;
    label_refs.clear();
    let mut reader = FieldReader::new(bytes, base);
    while let Some((field_number, value)) = reader.next_field()? {
        match field_number {
            1 => repeated_u32_field(value, "labels_refs", label_refs)?,
            2 => {
                view.push_sample(&reader, value, &mut sample_position)?;
            }
            3 => {
                sub_message(&reader, value, "histograms")?;
                view.histograms_dropped += 1;
            }
            4 => {
                let (exemplar_bytes, exemplar_base) = sub_message(&reader, value, "exemplars")?;
                let field = format!("exemplars[{exemplar_position}]");
                let exemplar = decode_v2_exemplar(symbols, exemplar_bytes, exemplar_base, &field)?;
                match exemplar {
                    Some(exemplar) => view.exemplars.push(exemplar),
                    None => view.exemplars_dropped += 1,
                }
                exemplar_position += 1;
            }
            5 => {
                let (metadata_bytes, metadata_base) = sub_message(&reader, value, "metadata")?;
                let mut metadata_reader = FieldReader::new(metadata_bytes, metadata_base);
                let (mut metric_type, mut help_ref, mut unit_ref) = metadata.unwrap_or((0, 0, 0));
                while let Some((metadata_field, metadata_value)) =
                    metadata_reader.next_field().map_err(|error| error.within("metadata"))?
                {
                    match metadata_field {
                        1 => metric_type = varint_field(metadata_value, "type").map_err(|e| e.within("metadata"))?,
                        3 => {
                            help_ref =
                                varint_field(metadata_value, "help_ref").map_err(|e| e.within("metadata"))? as u32
                        }
                        4 => {
                            unit_ref =
                                varint_field(metadata_value, "unit_ref").map_err(|e| e.within("metadata"))? as u32
                        }
                        _ => {}
                    }
                }
                metadata = Some((metric_type, help_ref, unit_ref));
            }
            _ => {}
        }
    }
    if !label_refs.len().is_multiple_of(2) {
        return Err(V2Error::OddLabelReferences { field: "labels_refs".into(), count: label_refs.len() });
    }
    let mut utf8_problem = None;
    for (position, pair) in label_refs.chunks_exact(2).enumerate() {
        let name = symbol(symbols, pair[0], "labels_refs")?;
        let value = symbol(symbols, pair[1], "labels_refs")?;
        match (name, value) {
            (Some(name), Some(value)) => view.labels.push(LabelRef { name, value }),
            (None, _) => {
                utf8_problem.get_or_insert(SeriesProblem::InvalidUtf8 { position, part: "name" });
            }
            (_, None) => {
                utf8_problem.get_or_insert(SeriesProblem::InvalidUtf8 { position, part: "value" });
            }
        }
    }
    let rejected_before = view.rejected.len();
    view.finish_series(index, labels_start, samples_start, exemplars_start, utf8_problem, &[]);
    let accepted = view.rejected.len() == rejected_before;
    if let (true, Some((metric_type, help_ref, unit_ref))) = (accepted, metadata) {
        let help = symbol(symbols, help_ref, "metadata.help_ref")?.unwrap_or("");
        let unit = symbol(symbols, unit_ref, "metadata.unit_ref")?.unwrap_or("");
        let metric_type = metric_type_from_wire(metric_type);
        let metric_name = view.labels[labels_start..]
            .iter()
            .find(|label| label.name == METRIC_NAME_LABEL)
            .map(|label| label.value)
            .unwrap_or("");
        let informative = metric_type != MetricType::Unknown || !help.is_empty() || !unit.is_empty();
        if informative && !view.metadata.iter().any(|family| family.metric_family_name == metric_name) {
            view.metadata.push(FamilyMetadata {
                metric_family_name: metric_name.to_string(),
                metadata: MetricMetadata { metric_type, help: help.to_string(), unit: unit.to_string() },
            });
        }
    }
    Ok(())
}

fn decode_v2_exemplar(
    symbols: &[Option<&str>],
    bytes: &[u8],
    base: usize,
    field: &str,
) -> Result<Option<Exemplar>, V2Error> {
    let mut refs = Vec::new();
    let mut exemplar = Exemplar { labels: Labels::empty(), value: 0.0, timestamp_ms: 0 };
    let mut reader = FieldReader::new(bytes, base);
    while let Some((field_number, value)) = reader.next_field().map_err(|error| error.within(field))? {
        match field_number {
            1 => repeated_u32_field(value, "labels_refs", &mut refs).map_err(|error| error.within(field))?,
            2 => exemplar.value = double_field(value, "value").map_err(|error| error.within(field))?,
            3 => exemplar.timestamp_ms = varint_field(value, "timestamp").map_err(|error| error.within(field))? as i64,
            _ => {}
        }
    }
    let refs_field = format!("{field}.labels_refs");
    if !refs.len().is_multiple_of(2) {
        return Err(V2Error::OddLabelReferences { field: refs_field, count: refs.len() });
    }
    let mut pairs = Vec::with_capacity(refs.len() / 2);
    for pair in refs.chunks_exact(2) {
        let name = symbol(symbols, pair[0], &refs_field)?;
        let value = symbol(symbols, pair[1], &refs_field)?;
        match (name, value) {
            (Some(name), Some(value)) => pairs.push((name, value)),
            _ => return Ok(None),
        }
    }
    exemplar.labels = Labels::from_pairs(pairs);
    Ok(Some(exemplar))
}

/// Decompresses (snappy block, capped at `max_decoded_bytes`) and decodes a remote_write body of the given
/// version into an owned [`WriteBatch`]. Convenience for callers that do not need the borrowed view.
///
/// # Errors
/// Those of [`crate::compression::decode_snappy`], [`decode_write_request`] and [`decode_write_request_v2`].
pub fn decode_snappy_write_request(
    body: &[u8],
    version: RemoteWriteVersion,
    max_decoded_bytes: usize,
) -> Result<WriteBatch, IngestError> {
    let decoded = crate::compression::decode_snappy(body, max_decoded_bytes)?;
    let view = match version {
        RemoteWriteVersion::V1 => decode_write_request(&decoded)?,
        RemoteWriteVersion::V2 => decode_write_request_v2(&decoded)?,
    };
    Ok(view.to_batch())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_model::storage::ErrorKind;
    use oxeye_proto::prometheus as v1;
    use oxeye_proto::prometheus_v2 as v2;
    use prost::Message;

    fn label(name: &str, value: &str) -> v1::Label {
        v1::Label { name: name.into(), value: value.into() }
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: labels.iter().map(|(name, value)| label(name, value)).collect(),
            samples: samples.iter().map(|&(timestamp, value)| v1::Sample { value, timestamp }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn v1_round_trip_through_snappy() {
        let mut with_exemplar =
            series(&[("__name__", "http_requests_total"), ("job", "api")], &[(1000, 1.0), (2000, 2.5)]);
        with_exemplar.exemplars.push(v1::Exemplar {
            labels: vec![label("trace_id", "abc")],
            value: 2.5,
            timestamp: 1990,
        });
        let request = v1::WriteRequest {
            timeseries: vec![with_exemplar, series(&[("__name__", "up"), ("instance", "a:1")], &[(1000, 1.0)])],
            metadata: vec![v1::MetricMetadata {
                r#type: 1,
                metric_family_name: "http_requests_total".into(),
                help: "Requests.".into(),
                unit: String::new(),
            }],
        };
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("compress");
        let batch = decode_snappy_write_request(&body, RemoteWriteVersion::V1, 1 << 20).expect("decodes");
        assert_eq!(batch.series.len(), 2);
        assert_eq!(batch.series[0].labels, Labels::from_pairs([("__name__", "http_requests_total"), ("job", "api")]));
        assert_eq!(
            batch.series[0].samples,
            [Sample { timestamp_ms: 1000, value: 1.0 }, Sample { timestamp_ms: 2000, value: 2.5 }]
        );
        assert_eq!(
            batch.series[0].exemplars,
            [Exemplar { labels: Labels::from_pairs([("trace_id", "abc")]), value: 2.5, timestamp_ms: 1990 }]
        );
        assert_eq!(batch.series[1].labels.to_string(), r#"up{instance="a:1"}"#);
        assert_eq!(batch.metadata[0].metric_family_name, "http_requests_total");
        assert_eq!(batch.metadata[0].metadata.metric_type, MetricType::Counter);
        assert_eq!(batch.metadata[0].metadata.help, "Requests.");
        assert!(batch.rejected.is_empty());
    }

    #[test]
    fn unsorted_labels_are_sorted_and_empty_values_dropped() {
        let request = v1::WriteRequest {
            timeseries: vec![series(&[("zone", "eu"), ("__name__", "up"), ("empty", ""), ("app", "x")], &[(1, 1.0)])],
            metadata: vec![],
        };
        let body = request.encode_to_vec();
        let view = decode_write_request(&body).expect("decodes");
        let series = view.series().next().expect("one series");
        let names: Vec<&str> = series.labels().iter().map(|label| label.name).collect();
        assert_eq!(names, ["__name__", "app", "zone"]);
        assert_eq!(series.labels_stable_hash(), series.to_labels().stable_hash());
        assert_eq!(series.metric_name(), "up");
    }

    #[test]
    fn invalid_series_are_skipped_and_named() {
        let request = v1::WriteRequest {
            timeseries: vec![
                series(&[("job", "x")], &[(1, 1.0)]),
                series(&[("__name__", ""), ("job", "x")], &[(1, 1.0)]),
                series(&[("__name__", "up"), ("", "x")], &[(1, 1.0)]),
                series(&[("__name__", "up"), ("job", "a"), ("job", "b")], &[(1, 1.0), (2, 2.0)]),
                series(&[("__name__", "up"), ("job", "fine")], &[(1, 1.0)]),
            ],
            metadata: vec![],
        };
        let body = request.encode_to_vec();
        let view = decode_write_request(&body).expect("decodes");
        let messages: Vec<String> = view.rejected().iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "timeseries[0]: missing metric name (label __name__)",
                "timeseries[1]: empty metric name",
                "timeseries[2]: empty label name",
                "timeseries[3]: duplicate label name \"job\"",
            ]
        );
        assert_eq!(view.rejected_samples(), 5);
        assert_eq!(view.series_count(), 1);
        assert_eq!(view.sample_count(), 1);
        let accepted = view.series().next().expect("one accepted");
        assert_eq!(accepted.index(), 4);
        assert_eq!(accepted.to_labels().get("job"), Some("fine"));
        assert!(view.rejected().iter().all(|error| error.kind() == ErrorKind::BadData));
    }

    #[test]
    fn sample_and_label_fast_paths_agree_with_the_field_reader() {
        for (timestamp, value) in [(0, 2.0), (1, -1.5), (1_700_000_000_000, 42.0), (-5, f64::NAN), (i64::MAX, 1e300)] {
            let bytes = v1::Sample { value, timestamp }.encode_to_vec();
            let fast = decode_v1_sample(&bytes, 0).expect("decodes");
            // The same fields in the other order take the reader.
            let mut reversed = bytes[9..].to_vec();
            reversed.extend_from_slice(&bytes[..9]);
            let slow = decode_v1_sample(&reversed, 0).expect("decodes");
            assert_eq!(fast.timestamp_ms, timestamp);
            assert_eq!((fast.timestamp_ms, fast.value.to_bits()), (slow.timestamp_ms, slow.value.to_bits()));
        }
        // A truncated timestamp is an error, not a fast-path value.
        let bytes = v1::Sample { value: 1.0, timestamp: 1_700_000_000_000 }.encode_to_vec();
        assert!(decode_v1_sample(&bytes[..bytes.len() - 1], 0).is_err());
        assert_eq!(complete_varint(&[0x80, 0x01]), Some(128));
        assert_eq!(complete_varint(&[0x01, 0x01]), None);
        assert_eq!(complete_varint(&[]), None);

        let short = label("job", "api").encode_to_vec();
        let long = label("long", &"v".repeat(300)).encode_to_vec();
        let field = |bytes: &[u8]| {
            let mut field = vec![0x0a];
            let mut length = bytes.len();
            while length >= 0x80 {
                field.push((length as u8) | 0x80);
                length >>= 7;
            }
            field.push(length as u8);
            field.extend_from_slice(bytes);
            field
        };
        let sample = [&[0x12, 2][..], &[0x10, 0x05]].concat();
        let labels = [field(&short), field(&long), field(&short)].concat();
        let series = [labels.clone(), sample.clone()].concat();
        assert_eq!(leading_labels_length(&series, 0), labels.len());
        // A label field running past the end ends the run before it.
        let truncated = [field(&short), vec![0x0a, 0x7f, 0x0a]].concat();
        assert_eq!(leading_labels_length(&truncated, 0), field(&short).len());
    }

    #[test]
    fn invalid_utf8_label_rejects_the_series() {
        let mut body = Vec::new();
        // timeseries { labels { name "__name__" value 0xff } samples { value 1 } }
        let label_bytes = [&[0x0a, 8][..], b"__name__", &[0x12, 1, 0xff]].concat();
        let sample_bytes = [&[0x09][..], &1.0f64.to_le_bytes()].concat();
        let mut series_bytes = vec![0x0a, label_bytes.len() as u8];
        series_bytes.extend_from_slice(&label_bytes);
        series_bytes.extend_from_slice(&[0x12, sample_bytes.len() as u8]);
        series_bytes.extend_from_slice(&sample_bytes);
        body.extend_from_slice(&[0x0a, series_bytes.len() as u8]);
        body.extend_from_slice(&series_bytes);
        let view = decode_write_request(&body).expect("decodes");
        assert_eq!(view.rejected()[0].to_string(), "timeseries[0]: invalid UTF-8 in label 0 value");
        assert_eq!(view.series_count(), 0);
    }

    /// Decodes with a store that knows the series whose raw label bytes are `known` (as series 7).
    fn decode_knowing<'a>(body: &'a [u8], known: &[u8]) -> (WriteRequestView<'a>, Vec<Vec<u8>>) {
        let mut asked = Vec::new();
        let view = decode_write_request_with_known_series(body, &mut |keys, found| {
            for key in keys {
                if !key.is_empty() {
                    asked.push(key.to_vec());
                }
                found.push((*key == known).then_some(HeldSeries(7)));
            }
        })
        .expect("decodes");
        (view, asked)
    }

    #[test]
    fn known_series_are_not_decoded_and_unknown_ones_are_validated() {
        let known = series(&[("__name__", "up"), ("job", "api")], &[(1, 1.0), (2, 2.0)]);
        let known_labels: Vec<u8> = known
            .labels
            .iter()
            .flat_map(|label| {
                let bytes = label.encode_to_vec();
                [vec![0x0a, bytes.len() as u8], bytes].concat()
            })
            .collect();
        let request = v1::WriteRequest {
            timeseries: vec![known, series(&[("__name__", "up"), ("job", "web")], &[(1, 3.0)])],
            metadata: vec![],
        };
        let body = request.encode_to_vec();
        let (view, asked) = decode_knowing(&body, &known_labels);
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[0], known_labels);
        let decoded: Vec<_> = view.series().collect();
        assert_eq!(decoded[0].held(), Some(HeldSeries(7)));
        assert!(decoded[0].labels().is_empty());
        assert_eq!(decoded[0].protobuf_labels(), known_labels);
        assert_eq!(
            decoded[0].samples(),
            [Sample { timestamp_ms: 1, value: 1.0 }, Sample { timestamp_ms: 2, value: 2.0 }]
        );
        assert_eq!(decoded[1].held(), None);
        assert_eq!(decoded[1].to_labels().to_string(), r#"up{job="web"}"#);
        assert_eq!(decoded[1].protobuf_labels(), asked[1]);
        assert_eq!(view.sample_count(), 3);

        // The same bytes with an invalid UTF-8 value are not known: validated and refused as before.
        let mut invalid = body.clone();
        let position = invalid.windows(3).rposition(|window| window == b"web").expect("value");
        invalid[position] = 0xff;
        let (view, _) = decode_knowing(&invalid, &known_labels);
        assert_eq!(view.rejected()[0].to_string(), "timeseries[1]: invalid UTF-8 in label 1 value");
        assert_eq!(view.series_count(), 1);
    }

    #[test]
    fn known_series_with_later_labels_or_exemplars_are_decoded_in_full() {
        let name_label = label("__name__", "up").encode_to_vec();
        let job_label = label("job", "api").encode_to_vec();
        let sample = v1::Sample { value: 1.0, timestamp: 5 }.encode_to_vec();
        let field = |tag: u8, bytes: &[u8]| [vec![tag, bytes.len() as u8], bytes.to_vec()].concat();
        // `labels`, `samples`, `labels` again: the leading run alone is not the whole label set.
        let series_bytes = [field(0x0a, &name_label), field(0x12, &sample), field(0x0a, &job_label)].concat();
        let body = field(0x0a, &series_bytes);
        let (view, asked) = decode_knowing(&body, &field(0x0a, &name_label));
        assert_eq!(asked, [field(0x0a, &name_label)]);
        let decoded = view.series().next().expect("series");
        assert_eq!(decoded.held(), None);
        assert_eq!(decoded.to_labels().to_string(), r#"up{job="api"}"#);
        assert_eq!(decoded.samples(), [Sample { timestamp_ms: 5, value: 1.0 }]);

        let mut with_exemplar = series(&[("__name__", "up")], &[(5, 1.0)]);
        with_exemplar.exemplars.push(v1::Exemplar { labels: vec![label("trace_id", "abc")], value: 1.0, timestamp: 5 });
        let body = v1::WriteRequest { timeseries: vec![with_exemplar], metadata: vec![] }.encode_to_vec();
        let (view, _) = decode_knowing(&body, &field(0x0a, &name_label));
        let decoded = view.series().next().expect("series");
        assert_eq!(decoded.held(), None);
        assert_eq!(decoded.to_labels().to_string(), "up");
        assert_eq!(decoded.samples().len(), 1);
        assert_eq!(decoded.exemplars().len(), 1);
    }

    #[test]
    fn truncated_protobuf_names_the_field_and_byte() {
        let request =
            v1::WriteRequest { timeseries: vec![series(&[("__name__", "up")], &[(5, 1.0)])], metadata: vec![] };
        let body = request.encode_to_vec();
        let error = decode_write_request(&body[..body.len() - 3]).expect_err("truncated");
        assert_eq!(error.kind(), ErrorKind::BadData);
        let message = error.to_string();
        assert!(message.starts_with("protobuf: length"), "{message}");
        assert!(message.ends_with("for field request"), "{message}");
    }

    #[test]
    fn wrong_wire_type_names_the_nested_field() {
        // Series 0 fine, series 1 has a sample whose value (field 1) is a varint instead of a double.
        let good = series(&[("__name__", "up")], &[(1, 1.0)]).encode_to_vec();
        let bad_sample = [0x08u8, 0x01];
        let name_label = label("__name__", "up").encode_to_vec();
        let mut bad_series = vec![0x0a, name_label.len() as u8];
        bad_series.extend_from_slice(&name_label);
        bad_series.extend_from_slice(&[0x12, bad_sample.len() as u8]);
        bad_series.extend_from_slice(&bad_sample);
        let mut body = vec![0x0a, good.len() as u8];
        body.extend_from_slice(&good);
        body.extend_from_slice(&[0x0a, bad_series.len() as u8]);
        body.extend_from_slice(&bad_series);
        let error = decode_write_request(&body).expect_err("wrong wire type");
        assert_eq!(
            error.to_string(),
            "protobuf: invalid wire type 0 (expected 1) for field timeseries[1].samples[0].value"
        );
    }

    #[test]
    fn corrupt_snappy_is_an_error() {
        let error =
            decode_snappy_write_request(b"\xff\xff\xff\xff\xff", RemoteWriteVersion::V1, 1 << 20).expect_err("corrupt");
        assert!(matches!(error, IngestError::Snappy { .. }), "{error}");
        assert!(error.to_string().starts_with("snappy: "));
    }

    #[test]
    fn histograms_are_counted_not_decoded() {
        let mut with_histogram = series(&[("__name__", "latency")], &[]);
        with_histogram.histograms.push(v1::Histogram { schema: 3, sum: 1.0, timestamp: 7, ..Default::default() });
        let body = v1::WriteRequest { timeseries: vec![with_histogram], metadata: vec![] }.encode_to_vec();
        let view = decode_write_request(&body).expect("decodes");
        assert_eq!(view.histograms_dropped, 1);
        assert_eq!(view.sample_count(), 0);
    }

    fn v2_request() -> v2::Request {
        // symbols: 0 "", 1 __name__, 2 http_requests_total, 3 job, 4 api, 5 trace_id, 6 abc, 7 help, 8 unit
        let symbols = ["", "__name__", "http_requests_total", "job", "api", "trace_id", "abc", "Requests.", "requests"];
        v2::Request {
            symbols: symbols.iter().map(|symbol| symbol.to_string()).collect(),
            timeseries: vec![
                v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![v2::Sample { value: 3.0, timestamp: 1000, start_timestamp: 0 }],
                    exemplars: vec![v2::Exemplar { labels_refs: vec![5, 6], value: 3.0, timestamp: 999 }],
                    metadata: Some(v2::Metadata { r#type: 1, help_ref: 7, unit_ref: 8 }),
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![3, 4],
                    samples: vec![v2::Sample { value: 1.0, timestamp: 1000, start_timestamp: 0 }],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn v2_resolves_symbols_and_counts_written() {
        let body = v2_request().encode_to_vec();
        let view = decode_write_request_v2(&body).expect("decodes");
        let series = view.series().next().expect("one series");
        assert_eq!(series.to_labels().to_string(), r#"http_requests_total{job="api"}"#);
        assert_eq!(series.samples(), [Sample { timestamp_ms: 1000, value: 3.0 }]);
        assert_eq!(series.exemplars()[0].labels.get("trace_id"), Some("abc"));
        assert_eq!(view.written_counts(), WrittenCounts { samples: 1, histograms: 0, exemplars: 1 });
        assert_eq!(
            view.metadata(),
            [FamilyMetadata {
                metric_family_name: "http_requests_total".into(),
                metadata: MetricMetadata {
                    metric_type: MetricType::Counter,
                    help: "Requests.".into(),
                    unit: "requests".into()
                }
            }]
        );
        assert_eq!(view.rejected()[0].to_string(), "timeseries[1]: missing metric name (label __name__)");
    }

    #[test]
    fn v2_symbol_out_of_range_and_odd_refs_are_errors() {
        let mut request = v2_request();
        request.timeseries[1].labels_refs = vec![1, 42];
        let error = decode_write_request_v2(&request.encode_to_vec()).expect_err("out of range");
        assert_eq!(
            error.to_string(),
            "timeseries[1].labels_refs: symbol reference 42 is out of range (the table has 9 symbols)"
        );
        request.timeseries[1].labels_refs = vec![1, 2, 3];
        let error = decode_write_request_v2(&request.encode_to_vec()).expect_err("odd");
        assert_eq!(error.to_string(), "timeseries[1].labels_refs: odd number of label references (3)");
    }

    #[test]
    fn content_type_selects_the_version() {
        assert_eq!(version_from_content_type(None), Some(RemoteWriteVersion::V1));
        assert_eq!(version_from_content_type(Some("application/x-protobuf")), Some(RemoteWriteVersion::V1));
        assert_eq!(
            version_from_content_type(Some("application/x-protobuf;proto=io.prometheus.write.v2.Request")),
            Some(RemoteWriteVersion::V2)
        );
        assert_eq!(
            version_from_content_type(Some("application/x-protobuf; proto=prometheus.WriteRequest")),
            Some(RemoteWriteVersion::V1)
        );
        assert_eq!(version_from_content_type(Some("application/json")), None);
        assert_eq!(version_from_content_type(Some("application/x-protobuf;proto=other.Message")), None);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_write_request(&bytes);
            let _ = decode_write_request_v2(&bytes);
            let _ = decode_snappy_write_request(&bytes, RemoteWriteVersion::V1, 1 << 16);
        }

        #[test]
        fn accepted_series_always_satisfy_the_labels_invariant(
            label_sets in proptest::collection::vec(
                proptest::collection::vec(("(__name__|job|a|b|)", "[a-c]{0,2}"), 0..6),
                0..8,
            ),
        ) {
            let timeseries = label_sets
                .iter()
                .map(|pairs| {
                    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
                    series(&borrowed, &[(1, 1.0)])
                })
                .collect();
            let body = v1::WriteRequest { timeseries, metadata: vec![] }.encode_to_vec();
            let view = decode_write_request(&body).expect("valid protobuf decodes");
            proptest::prop_assert_eq!(view.series_count() + view.rejected().len(), label_sets.len());
            for series in view.series() {
                proptest::prop_assert!(series.labels().windows(2).all(|pair| pair[0].name < pair[1].name));
                proptest::prop_assert!(series.labels().iter().all(|label| !label.value.is_empty() && !label.name.is_empty()));
                proptest::prop_assert!(!series.metric_name().is_empty());
                proptest::prop_assert_eq!(series.labels_stable_hash(), series.to_labels().stable_hash());
            }
        }

        #[test]
        fn round_trip_of_arbitrary_values(
            values in proptest::collection::vec((proptest::num::i64::ANY, proptest::num::f64::NORMAL), 0..20),
            job in "[a-z]{1,8}",
        ) {
            let samples: Vec<(i64, f64)> = values.clone();
            let body = v1::WriteRequest { timeseries: vec![series(&[("__name__", "m"), ("job", &job)], &samples)], metadata: vec![] }
                .encode_to_vec();
            let view = decode_write_request(&body).expect("decodes");
            let decoded: Vec<(i64, f64)> = view.series().next().expect("series").samples().iter().map(|s| (s.timestamp_ms, s.value)).collect();
            proptest::prop_assert_eq!(decoded, samples);
        }
    }
}

//! The binary encoding of a set of traces, shared by WAL records and block pages: a string table first,
//! then the traces, each with its resource/scope grouping, every string written as a varint index into the
//! table. `docs/format.md` draws it byte by byte ("Trace set").
//!
//! Integers are LEB128 varints (`uvarint`) unless said otherwise; signed ones are zig-zag encoded first.
//! Span times are stored relative to the trace's earliest span start, so they take 1-5 bytes instead of 8.

use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanKind, SpanLink,
    StatusCode, Trace, TraceScanHints,
};

/// Appends `value` as an LEB128 varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Attribute value tags.
const TAG_STRING: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_DOUBLE: u8 = 3;
const TAG_ARRAY: u8 = 4;
const TAG_MAP: u8 = 5;
const TAG_BYTES: u8 = 6;

/// Builds the string table while the body is written. foldhash, not SipHash: every key, value and name of
/// every span is looked up here on each WAL record and block page, and SipHash was a tenth of ingest CPU.
#[derive(Default)]
struct StringTable<'a> {
    indexes: foldhash::HashMap<&'a str, u64>,
    strings: Vec<&'a str>,
    /// Bytes the table takes encoded (each string's length varint and its bytes).
    encoded_bytes: usize,
}

impl<'a> StringTable<'a> {
    fn index(&mut self, text: &'a str) -> u64 {
        if let Some(index) = self.indexes.get(text) {
            return *index;
        }
        let index = self.strings.len() as u64;
        self.strings.push(text);
        self.indexes.insert(text, index);
        self.encoded_bytes += uvarint_len(text.len() as u64) + text.len();
        index
    }

    /// Empties the table, keeping its allocations for the next trace set.
    fn clear(&mut self) {
        self.indexes.clear();
        self.strings.clear();
        self.encoded_bytes = 0;
    }
}

/// How many bytes [`put_uvarint`] writes for `value`.
fn uvarint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// The strings a block summary needs, noted while a page is encoded, as indexes into the page's string
/// table: hashing two small integers per attribute instead of two strings again.
#[derive(Default)]
struct PageStrings {
    /// `key index << 32 | value index` of every string-valued span and resource attribute.
    attribute_pairs: foldhash::HashSet<u64>,
    /// The name of each span, in encoding order.
    span_names: Vec<u32>,
}

#[derive(Default)]
struct Encoder<'a> {
    table: StringTable<'a>,
    body: Vec<u8>,
    /// Only block pages note strings for the summary; WAL records do not.
    page_strings: Option<PageStrings>,
}

impl<'a> Encoder<'a> {
    fn string(&mut self, text: &'a str) -> u64 {
        let index = self.table.index(text);
        put_uvarint(&mut self.body, index);
        index
    }

    /// [`Encoder::attributes`] for span and resource attributes, noting string-valued ones for the summary.
    fn summarized_attributes(&mut self, attributes: &'a [Attribute]) {
        if self.page_strings.is_none() {
            self.attributes(attributes);
            return;
        }
        put_uvarint(&mut self.body, attributes.len() as u64);
        for attribute in attributes {
            let key_index = self.string(&attribute.key);
            let AttributeValue::String(text) = &attribute.value else {
                self.value(&attribute.value);
                continue;
            };
            self.body.push(TAG_STRING);
            let value_index = self.string(text);
            if let Some(page_strings) = &mut self.page_strings {
                page_strings.attribute_pairs.insert(key_index << 32 | value_index);
            }
        }
    }

    fn attributes(&mut self, attributes: &'a [Attribute]) {
        put_uvarint(&mut self.body, attributes.len() as u64);
        for attribute in attributes {
            self.string(&attribute.key);
            self.value(&attribute.value);
        }
    }

    fn value(&mut self, value: &'a AttributeValue) {
        match value {
            AttributeValue::String(text) => {
                self.body.push(TAG_STRING);
                self.string(text);
            }
            AttributeValue::Bool(flag) => {
                self.body.push(TAG_BOOL);
                self.body.push(u8::from(*flag));
            }
            AttributeValue::Int(number) => {
                self.body.push(TAG_INT);
                put_uvarint(&mut self.body, zigzag(*number));
            }
            AttributeValue::Double(number) => {
                self.body.push(TAG_DOUBLE);
                self.body.extend_from_slice(&number.to_le_bytes());
            }
            AttributeValue::Array(values) => {
                self.body.push(TAG_ARRAY);
                put_uvarint(&mut self.body, values.len() as u64);
                for item in values {
                    self.value(item);
                }
            }
            AttributeValue::Map(attributes) => {
                self.body.push(TAG_MAP);
                self.attributes(attributes);
            }
            AttributeValue::Bytes(bytes) => {
                self.body.push(TAG_BYTES);
                put_uvarint(&mut self.body, bytes.len() as u64);
                self.body.extend_from_slice(bytes);
            }
        }
    }

    fn span(&mut self, span: &'a Span, base_nanos: u64) {
        self.body.extend_from_slice(&span.span_id);
        match &span.parent_span_id {
            Some(parent) => {
                self.body.push(1);
                self.body.extend_from_slice(parent);
            }
            None => self.body.push(0),
        }
        self.string(&span.trace_state);
        let name_index = self.string(&span.name);
        if let Some(page_strings) = &mut self.page_strings {
            page_strings.span_names.push(name_index as u32);
        }
        self.body.push(span.kind as u8);
        put_uvarint(&mut self.body, span.start_time_unix_nano.saturating_sub(base_nanos));
        put_uvarint(&mut self.body, zigzag(span.end_time_unix_nano.wrapping_sub(span.start_time_unix_nano) as i64));
        self.summarized_attributes(&span.attributes);
        put_uvarint(&mut self.body, u64::from(span.dropped_attributes_count));
        put_uvarint(&mut self.body, span.events.len() as u64);
        for event in &span.events {
            put_uvarint(&mut self.body, zigzag(event.time_unix_nano.wrapping_sub(span.start_time_unix_nano) as i64));
            self.string(&event.name);
            self.attributes(&event.attributes);
            put_uvarint(&mut self.body, u64::from(event.dropped_attributes_count));
        }
        put_uvarint(&mut self.body, u64::from(span.dropped_events_count));
        put_uvarint(&mut self.body, span.links.len() as u64);
        for link in &span.links {
            self.body.extend_from_slice(&link.trace_id);
            self.body.extend_from_slice(&link.span_id);
            self.string(&link.trace_state);
            self.attributes(&link.attributes);
            put_uvarint(&mut self.body, u64::from(link.dropped_attributes_count));
            put_uvarint(&mut self.body, u64::from(link.flags));
        }
        put_uvarint(&mut self.body, u64::from(span.dropped_links_count));
        self.body.push(span.status_code as u8);
        self.string(&span.status_message);
        put_uvarint(&mut self.body, u64::from(span.flags));
    }

    fn trace(&mut self, trace: &'a Trace) {
        self.body.extend_from_slice(&trace.trace_id);
        let base_nanos = trace.spans().map(|(_, span)| span.start_time_unix_nano).min().unwrap_or(0);
        put_uvarint(&mut self.body, base_nanos);
        put_uvarint(&mut self.body, trace.resource_spans.len() as u64);
        for batch in &trace.resource_spans {
            self.summarized_attributes(&batch.resource.attributes);
            put_uvarint(&mut self.body, u64::from(batch.resource.dropped_attributes_count));
            self.string(&batch.schema_url);
            put_uvarint(&mut self.body, batch.scope_spans.len() as u64);
            for scope_spans in &batch.scope_spans {
                self.string(&scope_spans.scope.name);
                self.string(&scope_spans.scope.version);
                self.attributes(&scope_spans.scope.attributes);
                put_uvarint(&mut self.body, u64::from(scope_spans.scope.dropped_attributes_count));
                self.string(&scope_spans.schema_url);
                put_uvarint(&mut self.body, scope_spans.spans.len() as u64);
                for span in &scope_spans.spans {
                    self.span(span, base_nanos);
                }
            }
        }
    }
}

/// The strings of a whole block that its summary and span columns need, gathered page by page from
/// [`TraceSetEncoder::finish_page_into`].
#[derive(Default)]
pub(crate) struct BlockStrings<'a> {
    /// Distinct `(key, value)` pairs of string-valued span and resource attributes.
    pub(crate) attribute_pairs: foldhash::HashSet<(&'a str, &'a str)>,
    /// Distinct span names, in order of first use.
    pub(crate) span_names: Vec<&'a str>,
    /// The position in `span_names` of each span's name, spans in encoding order (trace by trace, each
    /// trace's spans as [`Trace::spans`] walks them).
    pub(crate) span_name_ids: Vec<u32>,
    span_name_positions: foldhash::HashMap<&'a str, u32>,
    /// Scratch: page string index to position in `span_names` (`u32::MAX`: not seen yet in this page).
    page_name_positions: Vec<u32>,
}

/// Builds a trace set trace by trace, so a block writer can close a page once its encoded size reaches the
/// target without encoding any trace twice; one encoder serves page after page, keeping its allocations.
#[derive(Default)]
pub(crate) struct TraceSetEncoder<'a> {
    encoder: Encoder<'a>,
    trace_count: u64,
}

impl<'a> TraceSetEncoder<'a> {
    /// An encoder for block pages: it also notes what [`TraceSetEncoder::finish_page_into`] adds to the
    /// block's [`BlockStrings`].
    pub(crate) fn for_pages() -> Self {
        let encoder = Encoder { page_strings: Some(PageStrings::default()), ..Encoder::default() };
        TraceSetEncoder { encoder, trace_count: 0 }
    }

    /// [`TraceSetEncoder::finish_into`], first adding the page's attribute pairs and span names to `block`
    /// (an encoder made by [`TraceSetEncoder::for_pages`]; others add nothing).
    pub(crate) fn finish_page_into(&mut self, out: &mut Vec<u8>, block: &mut BlockStrings<'a>) {
        if let Some(page_strings) = &mut self.encoder.page_strings {
            let strings = &self.encoder.table.strings;
            for pair in page_strings.attribute_pairs.drain() {
                let key = strings.get((pair >> 32) as usize);
                let value = strings.get((pair & u64::from(u32::MAX)) as usize);
                if let (Some(key), Some(value)) = (key, value) {
                    block.attribute_pairs.insert((key, value));
                }
            }
            block.page_name_positions.clear();
            block.page_name_positions.resize(strings.len(), u32::MAX);
            for name_index in page_strings.span_names.drain(..) {
                let Some(position) = block.page_name_positions.get_mut(name_index as usize) else { continue };
                if *position == u32::MAX {
                    let name = strings.get(name_index as usize).copied().unwrap_or_default();
                    let next_position = block.span_names.len() as u32;
                    *position = *block.span_name_positions.entry(name).or_insert(next_position);
                    if *position == next_position {
                        block.span_names.push(name);
                    }
                }
                block.span_name_ids.push(*position);
            }
        }
        self.finish_into(out);
    }

    /// Adds `trace` to the set. Every span of the trace must carry the trace's id (written once per trace).
    pub(crate) fn push(&mut self, trace: &'a Trace) {
        self.encoder.trace(trace);
        self.trace_count += 1;
    }

    /// Traces added since the last [`TraceSetEncoder::finish_into`].
    pub(crate) fn trace_count(&self) -> u64 {
        self.trace_count
    }

    /// The exact size in bytes that [`TraceSetEncoder::finish_into`] would append now.
    pub(crate) fn encoded_len(&self) -> usize {
        uvarint_len(self.encoder.table.strings.len() as u64)
            + self.encoder.table.encoded_bytes
            + uvarint_len(self.trace_count)
            + self.encoder.body.len()
    }

    /// Appends the trace set (string table, trace count, traces) to `out` and empties the encoder.
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        put_uvarint(out, self.encoder.table.strings.len() as u64);
        for text in &self.encoder.table.strings {
            put_uvarint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        put_uvarint(out, self.trace_count);
        out.extend_from_slice(&self.encoder.body);
        self.encoder.table.clear();
        self.encoder.body.clear();
        self.trace_count = 0;
    }
}

/// Encodes `traces` as a trace set (string table, trace count, traces), appended to `out`. Every span of a
/// trace must carry the trace's id (the id is written once per trace).
pub(crate) fn encode_traces<'a>(traces: impl IntoIterator<Item = &'a Trace>, out: &mut Vec<u8>) {
    let mut encoder = TraceSetEncoder::default();
    for trace in traces {
        encoder.push(trace);
    }
    encoder.finish_into(out);
}

/// A decoding failure: the byte offset and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) offset: usize,
    pub(crate) reason: String,
}

/// Which part of a trace an attribute belongs to, for trace-level filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttributeOwner {
    Resource,
    Scope,
    /// Span, event and link attributes.
    Span,
}

/// What a walk over an encoded trace reports; string values and keys are string table indexes.
pub(crate) trait TraceVisitor {
    fn string_value(&mut self, _owner: AttributeOwner, _key: u64, _value: u64) {}
    fn number_value(&mut self, _key: u64, _value: f64) {}
    /// A bool, bytes or map value.
    fn other_value(&mut self, _key: u64) {}
    fn span(&mut self, _name: u64, _status: StatusCode, _duration_nanos: u64) {}
}

struct SkipVisitor;

impl TraceVisitor for SkipVisitor {}

/// [`TraceScanHints`] resolved against one trace set's string table, checked on each trace's bytes before it
/// is decoded: every hint must hold for some span or attribute of the trace, as the hints define.
pub(crate) struct PageFilter<'h> {
    hints: &'h TraceScanHints,
    strings: Vec<&'h str>,
    service: Option<(u64, u64)>,
    span_name: Option<u64>,
    string_attributes: Vec<(u64, u64)>,
    /// Key index and, per string table entry, 0 = not yet matched, 1 = no, 2 = yes.
    regexes: Vec<(u64, Vec<u8>)>,
    numeric_keys: Vec<u64>,
    met: Vec<bool>,
}

impl<'h> PageFilter<'h> {
    /// The filter for a set whose string table is `strings`; `None` when some hint names a string the table
    /// lacks, so no trace of the set can match.
    pub(crate) fn new(hints: &'h TraceScanHints, strings: Vec<&'h str>) -> Option<PageFilter<'h>> {
        let index_of = |text: &str| strings.iter().position(|candidate| *candidate == text).map(|index| index as u64);
        let service = match &hints.service_name {
            Some(name) => Some((index_of("service.name")?, index_of(name)?)),
            None => None,
        };
        let span_name = match &hints.span_name {
            Some(name) => Some(index_of(name)?),
            None => None,
        };
        let mut string_attributes = Vec::with_capacity(hints.string_attributes.len());
        for (key, value) in &hints.string_attributes {
            string_attributes.push((index_of(key)?, index_of(value)?));
        }
        let mut regexes = Vec::with_capacity(hints.attribute_regexes.len());
        for hint in &hints.attribute_regexes {
            regexes.push((index_of(&hint.key)?, vec![0u8; strings.len()]));
        }
        let mut numeric_keys = Vec::with_capacity(hints.numeric_attributes.len());
        for hint in &hints.numeric_attributes {
            numeric_keys.push(index_of(&hint.key)?);
        }
        let conditions = 4 + string_attributes.len() + regexes.len() + numeric_keys.len();
        Some(PageFilter {
            hints,
            strings,
            service,
            span_name,
            string_attributes,
            regexes,
            numeric_keys,
            met: vec![false; conditions],
        })
    }

    /// Whether the hints rule out nothing, so checking traces is wasted work.
    pub(crate) fn is_empty(&self) -> bool {
        self.met.len() == 4
            && self.service.is_none()
            && self.span_name.is_none()
            && !self.hints.has_error
            && self.hints.min_span_duration_nanos.is_none()
    }

    fn reset(&mut self) {
        self.met.fill(false);
        // The first four: service, span name, error, duration; met from the start when not asked for.
        self.met[0] = self.service.is_none();
        self.met[1] = self.span_name.is_none();
        self.met[2] = !self.hints.has_error;
        self.met[3] = self.hints.min_span_duration_nanos.is_none();
    }

    fn is_met(&self) -> bool {
        self.met.iter().all(|met| *met)
    }
}

impl TraceVisitor for PageFilter<'_> {
    fn string_value(&mut self, owner: AttributeOwner, key: u64, value: u64) {
        if owner == AttributeOwner::Resource && self.service == Some((key, value)) {
            self.met[0] = true;
        }
        let base = 4;
        for (position, wanted) in self.string_attributes.iter().enumerate() {
            if *wanted == (key, value) {
                self.met[base + position] = true;
            }
        }
        let base = base + self.string_attributes.len();
        for (position, (regex_key, verdicts)) in self.regexes.iter_mut().enumerate() {
            if *regex_key != key {
                continue;
            }
            let Some(verdict) = verdicts.get_mut(value as usize) else { continue };
            if *verdict == 0 {
                let text = self.strings.get(value as usize).copied().unwrap_or("");
                let matches = self.hints.attribute_regexes.get(position).is_some_and(|hint| hint.regex.is_match(text));
                *verdict = if matches { 2 } else { 1 };
            }
            if *verdict == 2 {
                self.met[base + position] = true;
            }
        }
        // A string may still compare with a number after conversion elsewhere: never rule it out here.
        self.other_value(key);
    }

    fn number_value(&mut self, key: u64, value: f64) {
        let base = 4 + self.string_attributes.len() + self.regexes.len();
        for (position, numeric_key) in self.numeric_keys.iter().enumerate() {
            if *numeric_key == key && self.hints.numeric_attributes.get(position).is_some_and(|hint| hint.admits(value))
            {
                self.met[base + position] = true;
            }
        }
    }

    fn other_value(&mut self, key: u64) {
        let base = 4 + self.string_attributes.len() + self.regexes.len();
        for (position, numeric_key) in self.numeric_keys.iter().enumerate() {
            if *numeric_key == key {
                self.met[base + position] = true;
            }
        }
    }

    fn span(&mut self, name: u64, status: StatusCode, duration_nanos: u64) {
        if self.span_name == Some(name) {
            self.met[1] = true;
        }
        if status == StatusCode::Error {
            self.met[2] = true;
        }
        if self.hints.min_span_duration_nanos.is_some_and(|minimum| duration_nanos >= minimum) {
            self.met[3] = true;
        }
    }
}

/// Reads a trace set.
pub(crate) struct Decoder<'b> {
    bytes: &'b [u8],
    position: usize,
    strings: Vec<&'b str>,
}

/// The largest count a decoder accepts for one list, so a corrupt count cannot allocate without bound.
const MAX_COUNT: u64 = 1 << 24;

/// Attribute values nest at most this deep (arrays and maps).
const MAX_DEPTH: u32 = 32;

impl<'b> Decoder<'b> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError { offset: self.position, reason: reason.into() })
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        match self.bytes.get(self.position) {
            Some(byte) => {
                self.position += 1;
                Ok(*byte)
            }
            None => self.fail("unexpected end of data"),
        }
    }

    fn take(&mut self, length: usize) -> Result<&'b [u8], DecodeError> {
        let end = self.position.checked_add(length).filter(|end| *end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.position..end];
                self.position = end;
                Ok(slice)
            }
            None => self.fail(format!("need {length} bytes, {} left", self.bytes.len() - self.position)),
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        self.fail("varint longer than 10 bytes")
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        let count = self.uvarint()?;
        if count > MAX_COUNT {
            return self.fail(format!("count {count} exceeds {MAX_COUNT}"));
        }
        Ok(count as usize)
    }

    fn small(&mut self) -> Result<u32, DecodeError> {
        let value = self.uvarint()?;
        u32::try_from(value).or_else(|_| self.fail(format!("value {value} exceeds 32 bits")))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let index = self.uvarint()?;
        match self.strings.get(index as usize) {
            Some(text) => Ok((*text).to_string()),
            None => self.fail(format!("string index {index} outside the table of {}", self.strings.len())),
        }
    }

    fn attributes(&mut self, depth: u32) -> Result<Vec<Attribute>, DecodeError> {
        let count = self.count()?;
        let mut attributes = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let key = self.string()?;
            let value = self.value(depth)?;
            attributes.push(Attribute { key, value });
        }
        Ok(attributes)
    }

    fn value(&mut self, depth: u32) -> Result<AttributeValue, DecodeError> {
        if depth > MAX_DEPTH {
            return self.fail("attribute values nested too deep");
        }
        let tag = self.byte()?;
        Ok(match tag {
            TAG_STRING => AttributeValue::String(self.string()?),
            TAG_BOOL => AttributeValue::Bool(self.byte()? != 0),
            TAG_INT => AttributeValue::Int(unzigzag(self.uvarint()?)),
            TAG_DOUBLE => AttributeValue::Double(f64::from_le_bytes(self.fixed::<8>()?)),
            TAG_ARRAY => {
                let count = self.count()?;
                let mut values = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    values.push(self.value(depth + 1)?);
                }
                AttributeValue::Array(values)
            }
            TAG_MAP => AttributeValue::Map(self.attributes(depth + 1)?),
            TAG_BYTES => {
                let length = self.count()?;
                AttributeValue::Bytes(self.take(length)?.to_vec())
            }
            other => return self.fail(format!("unknown attribute value tag {other}")),
        })
    }

    fn span(&mut self, trace_id: [u8; 16], base_nanos: u64) -> Result<Span, DecodeError> {
        let span_id = self.fixed::<8>()?;
        let parent_span_id = match self.byte()? {
            0 => None,
            1 => Some(self.fixed::<8>()?),
            other => return self.fail(format!("parent flag must be 0 or 1, found {other}")),
        };
        let trace_state = self.string()?;
        let name = self.string()?;
        let kind = SpanKind::from_wire(i32::from(self.byte()?));
        let start_time_unix_nano = base_nanos.wrapping_add(self.uvarint()?);
        let end_time_unix_nano = start_time_unix_nano.wrapping_add(unzigzag(self.uvarint()?) as u64);
        let attributes = self.attributes(0)?;
        let dropped_attributes_count = self.small()?;
        let event_count = self.count()?;
        let mut events = Vec::with_capacity(event_count.min(64));
        for _ in 0..event_count {
            let time_unix_nano = start_time_unix_nano.wrapping_add(unzigzag(self.uvarint()?) as u64);
            events.push(SpanEvent {
                time_unix_nano,
                name: self.string()?,
                attributes: self.attributes(0)?,
                dropped_attributes_count: self.small()?,
            });
        }
        let dropped_events_count = self.small()?;
        let link_count = self.count()?;
        let mut links = Vec::with_capacity(link_count.min(64));
        for _ in 0..link_count {
            links.push(SpanLink {
                trace_id: self.fixed::<16>()?,
                span_id: self.fixed::<8>()?,
                trace_state: self.string()?,
                attributes: self.attributes(0)?,
                dropped_attributes_count: self.small()?,
                flags: self.small()?,
            });
        }
        let dropped_links_count = self.small()?;
        let status_code = StatusCode::from_wire(i32::from(self.byte()?));
        let status_message = self.string()?;
        let flags = self.small()?;
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind,
            start_time_unix_nano,
            end_time_unix_nano,
            attributes,
            dropped_attributes_count,
            events,
            dropped_events_count,
            links,
            dropped_links_count,
            status_code,
            status_message,
            flags,
        })
    }

    /// The next trace of the set.
    pub(crate) fn trace(&mut self) -> Result<Trace, DecodeError> {
        let trace_id = self.fixed::<16>()?;
        let base_nanos = self.uvarint()?;
        let batch_count = self.count()?;
        let mut resource_spans = Vec::with_capacity(batch_count.min(64));
        for _ in 0..batch_count {
            let attributes = self.attributes(0)?;
            let resource = Resource { attributes, dropped_attributes_count: self.small()? };
            let schema_url = self.string()?;
            let scope_count = self.count()?;
            let mut scope_spans = Vec::with_capacity(scope_count.min(64));
            for _ in 0..scope_count {
                let scope = Scope {
                    name: self.string()?,
                    version: self.string()?,
                    attributes: self.attributes(0)?,
                    dropped_attributes_count: self.small()?,
                };
                let scope_schema_url = self.string()?;
                let span_count = self.count()?;
                let mut spans = Vec::with_capacity(span_count.min(1024));
                for _ in 0..span_count {
                    spans.push(self.span(trace_id, base_nanos)?);
                }
                scope_spans.push(ScopeSpans { scope, spans, schema_url: scope_schema_url });
            }
            resource_spans.push(ResourceSpans { resource, scope_spans, schema_url });
        }
        Ok(Trace { trace_id, resource_spans })
    }

    /// Walks the attributes at the position without building them, telling `visitor` each value by key.
    fn walk_attributes(
        &mut self,
        depth: u32,
        owner: AttributeOwner,
        visitor: &mut impl TraceVisitor,
    ) -> Result<(), DecodeError> {
        let count = self.count()?;
        for _ in 0..count {
            let key = self.uvarint()?;
            self.walk_value(depth, owner, key, visitor)?;
        }
        Ok(())
    }

    fn walk_value(
        &mut self,
        depth: u32,
        owner: AttributeOwner,
        key: u64,
        visitor: &mut impl TraceVisitor,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return self.fail("attribute values nested too deep");
        }
        match self.byte()? {
            TAG_STRING => {
                let value = self.uvarint()?;
                visitor.string_value(owner, key, value);
            }
            TAG_BOOL => {
                self.byte()?;
                visitor.other_value(key);
            }
            TAG_INT => {
                let value = unzigzag(self.uvarint()?);
                visitor.number_value(key, value as f64);
            }
            TAG_DOUBLE => {
                let value = f64::from_le_bytes(self.fixed::<8>()?);
                visitor.number_value(key, value);
            }
            // Array elements count under the array's key, as TraceQL compares any element.
            TAG_ARRAY => {
                let count = self.count()?;
                for _ in 0..count {
                    self.walk_value(depth + 1, owner, key, visitor)?;
                }
            }
            TAG_MAP => {
                visitor.other_value(key);
                self.walk_attributes(depth + 1, owner, visitor)?;
            }
            TAG_BYTES => {
                let length = self.count()?;
                self.take(length)?;
                visitor.other_value(key);
            }
            other => return self.fail(format!("unknown attribute value tag {other}")),
        }
        Ok(())
    }

    fn walk_span(&mut self, visitor: &mut impl TraceVisitor) -> Result<(), DecodeError> {
        self.take(8)?;
        match self.byte()? {
            0 => {}
            1 => {
                self.take(8)?;
            }
            other => return self.fail(format!("parent flag must be 0 or 1, found {other}")),
        }
        self.uvarint()?; // trace state
        let name = self.uvarint()?;
        self.byte()?; // kind
        self.uvarint()?; // start
        let duration = unzigzag(self.uvarint()?);
        self.walk_attributes(0, AttributeOwner::Span, visitor)?;
        self.uvarint()?; // dropped attributes
        let event_count = self.count()?;
        for _ in 0..event_count {
            self.uvarint()?; // time
            self.uvarint()?; // name
            self.walk_attributes(0, AttributeOwner::Span, visitor)?;
            self.uvarint()?; // dropped attributes
        }
        self.uvarint()?; // dropped events
        let link_count = self.count()?;
        for _ in 0..link_count {
            self.take(16 + 8)?;
            self.uvarint()?; // trace state
            self.walk_attributes(0, AttributeOwner::Span, visitor)?;
            self.uvarint()?; // dropped attributes
            self.uvarint()?; // flags
        }
        self.uvarint()?; // dropped links
        let status = self.byte()?;
        self.uvarint()?; // status message
        self.uvarint()?; // flags
        visitor.span(name, StatusCode::from_wire(i32::from(status)), u64::try_from(duration).unwrap_or(0));
        Ok(())
    }

    /// Moves past the next trace without building it, telling `visitor` its spans and attribute values
    /// (string values as string table indexes). Follows the layout [`Decoder::trace`] reads.
    fn walk_trace(&mut self, visitor: &mut impl TraceVisitor) -> Result<(), DecodeError> {
        self.take(16)?;
        self.uvarint()?; // base start
        let batch_count = self.count()?;
        for _ in 0..batch_count {
            self.walk_attributes(0, AttributeOwner::Resource, visitor)?;
            self.uvarint()?; // dropped attributes
            self.uvarint()?; // schema URL
            let scope_count = self.count()?;
            for _ in 0..scope_count {
                self.uvarint()?; // name
                self.uvarint()?; // version
                self.walk_attributes(0, AttributeOwner::Scope, visitor)?;
                self.uvarint()?; // dropped attributes
                self.uvarint()?; // schema URL
                let span_count = self.count()?;
                for _ in 0..span_count {
                    self.walk_span(visitor)?;
                }
            }
        }
        Ok(())
    }

    /// Moves past the next trace without building it (finding one trace in a page costs a walk over the
    /// others' bytes, not their allocations).
    pub(crate) fn skip_trace(&mut self) -> Result<(), DecodeError> {
        self.walk_trace(&mut SkipVisitor)
    }

    /// Whether the next trace may match `filter`, moving past it; `false` only when it certainly does not.
    pub(crate) fn next_trace_may_match(&mut self, filter: &mut PageFilter<'_>) -> Result<bool, DecodeError> {
        filter.reset();
        self.walk_trace(filter)?;
        Ok(filter.is_met())
    }

    /// Moves back to `position` (one returned by [`Decoder::position`] on this decoder).
    pub(crate) fn rewind(&mut self, position: usize) {
        debug_assert!(position <= self.bytes.len());
        self.position = position;
    }

    /// The string table of the set.
    pub(crate) fn strings(&self) -> &[&'b str] {
        &self.strings
    }

    /// The id of the next trace, without moving past it.
    pub(crate) fn next_trace_id(&self) -> Option<[u8; 16]> {
        let slice = self.bytes.get(self.position..self.position + 16)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(slice);
        Some(id)
    }
}

/// A decoder over bytes without a string table (for tombstone records: a varint count and raw ids).
pub(crate) fn plain_reader(bytes: &[u8]) -> Decoder<'_> {
    Decoder { bytes, position: 0, strings: Vec::new() }
}

impl Decoder<'_> {
    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.position
    }
}

/// Opens a trace set: reads its string table and trace count.
pub(crate) fn open_traces(bytes: &[u8]) -> Result<(Decoder<'_>, usize), DecodeError> {
    let mut decoder = Decoder { bytes, position: 0, strings: Vec::new() };
    let string_count = decoder.count()?;
    decoder.strings.reserve(string_count.min(1 << 16));
    for _ in 0..string_count {
        let length = decoder.count()?;
        let raw = decoder.take(length)?;
        match std::str::from_utf8(raw) {
            Ok(text) => decoder.strings.push(text),
            Err(_) => return decoder.fail("string table entry is not UTF-8"),
        }
    }
    let trace_count = decoder.count()?;
    Ok((decoder, trace_count))
}

/// Decodes a whole trace set.
pub(crate) fn decode_traces(bytes: &[u8]) -> Result<Vec<Trace>, DecodeError> {
    let (mut decoder, count) = open_traces(bytes)?;
    let mut traces = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        traces.push(decoder.trace()?);
    }
    if decoder.position != bytes.len() {
        return decoder.fail(format!("{} bytes after the last trace", bytes.len() - decoder.position));
    }
    Ok(traces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_model::traces::{AttributeRegexHint, NumericAttributeHint};
    use proptest::prelude::*;

    pub(crate) fn sample_trace(seed: u8) -> Trace {
        let span = |id: u8, parent: Option<u8>, name: &str, start: u64, end: u64| Span {
            trace_id: [seed; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|parent| [parent; 8]),
            name: name.into(),
            kind: SpanKind::Server,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: vec![
                Attribute::string("request_id", format!("req-{seed}")),
                Attribute { key: "http.status_code".into(), value: AttributeValue::Int(-500) },
                Attribute { key: "ratio".into(), value: AttributeValue::Double(0.25) },
                Attribute {
                    key: "nested".into(),
                    value: AttributeValue::Map(vec![Attribute {
                        key: "list".into(),
                        value: AttributeValue::Array(vec![
                            AttributeValue::Bool(true),
                            AttributeValue::Bytes(vec![1, 2]),
                        ]),
                    }]),
                },
            ],
            events: vec![SpanEvent {
                time_unix_nano: start.saturating_sub(5),
                name: "exception".into(),
                attributes: vec![Attribute::string("exception.type", "ValueError")],
                dropped_attributes_count: 1,
            }],
            links: vec![SpanLink { trace_id: [7; 16], span_id: [8; 8], flags: 1, ..SpanLink::default() }],
            status_code: StatusCode::Error,
            status_message: "boom".into(),
            flags: 257,
            ..Span::default()
        };
        Trace {
            trace_id: [seed; 16],
            resource_spans: vec![ResourceSpans {
                resource: Resource {
                    attributes: vec![Attribute::string("service.name", "boxoffice")],
                    dropped_attributes_count: 2,
                },
                scope_spans: vec![ScopeSpans {
                    scope: Scope { name: "boxoffice".into(), version: "1.0".into(), ..Scope::default() },
                    spans: vec![
                        span(1, None, "ticket.checkout", 1_700_000_000_000_000_000, 1_700_000_002_500_000_000),
                        span(
                            2,
                            Some(1),
                            "ticket.check_eligibility",
                            1_700_000_000_100_000_000,
                            1_700_000_000_050_000_000,
                        ),
                    ],
                    schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn trace_sets_round_trip_including_ends_before_starts() {
        let traces = vec![sample_trace(1), sample_trace(2)];
        let mut bytes = Vec::new();
        encode_traces(&traces, &mut bytes);
        assert_eq!(decode_traces(&bytes).unwrap(), traces);
    }

    /// A block page closes on `encoded_len`, so it must be the size `finish_into` writes, and a reused
    /// encoder must write the next set as a fresh one would.
    #[test]
    fn set_encoder_predicts_its_size_and_starts_clean_after_finishing() {
        let mut encoder = TraceSetEncoder::default();
        let first = [sample_trace(1), sample_trace(2)];
        let second = [sample_trace(3)];
        for trace in &first {
            encoder.push(trace);
        }
        let mut bytes = Vec::new();
        let predicted = encoder.encoded_len();
        encoder.finish_into(&mut bytes);
        assert_eq!(bytes.len(), predicted);
        assert_eq!(decode_traces(&bytes).unwrap(), first.to_vec());
        encoder.push(&second[0]);
        let mut reused = Vec::new();
        let predicted = encoder.encoded_len();
        encoder.finish_into(&mut reused);
        let mut fresh = Vec::new();
        encode_traces(&second, &mut fresh);
        assert_eq!(reused.len(), predicted);
        assert_eq!(reused, fresh);
        for value in [0u64, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut written = Vec::new();
            put_uvarint(&mut written, value);
            assert_eq!(uvarint_len(value), written.len(), "{value}");
        }
    }

    /// `skip_trace` must walk exactly the bytes `trace` reads, or a by-id lookup would land mid-trace.
    #[test]
    fn skipping_a_trace_moves_as_far_as_decoding_it() {
        let traces = vec![sample_trace(1), sample_trace(2), sample_trace(3)];
        let mut bytes = Vec::new();
        encode_traces(&traces, &mut bytes);
        let (mut skipping, count) = open_traces(&bytes).unwrap();
        let (mut decoding, _) = open_traces(&bytes).unwrap();
        assert_eq!(count, 3);
        for expected in &traces {
            assert_eq!(skipping.next_trace_id(), Some(expected.trace_id));
            skipping.skip_trace().unwrap();
            assert_eq!(&decoding.trace().unwrap(), expected);
            assert_eq!(skipping.position(), decoding.position());
        }
        assert_eq!(skipping.position(), bytes.len());
        let (mut truncated, _) = open_traces(&bytes[..bytes.len() - 1]).unwrap();
        truncated.skip_trace().unwrap();
        truncated.skip_trace().unwrap();
        assert!(truncated.skip_trace().is_err());
    }

    /// Which of `traces` a page filter lets through, by trace id seed.
    fn admitted(traces: &[Trace], hints: &TraceScanHints) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_traces(traces, &mut bytes);
        let (mut decoder, count) = open_traces(&bytes).unwrap();
        let Some(mut filter) = PageFilter::new(hints, decoder.strings().to_vec()) else { return Vec::new() };
        let mut admitted = Vec::new();
        for _ in 0..count {
            let id = decoder.next_trace_id().unwrap();
            if decoder.next_trace_may_match(&mut filter).unwrap() {
                admitted.push(id[0]);
            }
        }
        assert_eq!(decoder.position(), bytes.len());
        admitted
    }

    #[test]
    fn page_filters_rule_out_traces_by_their_encoded_spans_and_attributes() {
        let mut ok = sample_trace(2);
        for span in ok.resource_spans[0].scope_spans[0].spans.iter_mut() {
            span.status_code = StatusCode::Ok;
            span.end_time_unix_nano = span.start_time_unix_nano + 1_000;
            span.attributes[0] = Attribute::string("request_id", "other");
            span.attributes[1].value = AttributeValue::Array(vec![AttributeValue::Int(200)]);
        }
        let traces = vec![sample_trace(1), ok];
        let hints = |edit: &dyn Fn(&mut TraceScanHints)| {
            let mut hints = TraceScanHints::default();
            edit(&mut hints);
            hints
        };
        assert_eq!(admitted(&traces, &TraceScanHints::default()), vec![1, 2]);
        assert_eq!(admitted(&traces, &hints(&|hints| hints.has_error = true)), vec![1]);
        assert_eq!(admitted(&traces, &hints(&|hints| hints.min_span_duration_nanos = Some(2_000_000_000))), vec![1]);
        assert_eq!(admitted(&traces, &hints(&|hints| hints.service_name = Some("boxoffice".into()))), vec![1, 2]);
        assert_eq!(admitted(&traces, &hints(&|hints| hints.service_name = Some("payments".into()))), Vec::<u8>::new());
        assert_eq!(admitted(&traces, &hints(&|hints| hints.span_name = Some("ticket.checkout".into()))), vec![1, 2]);
        let request = |value: &str| {
            let value = value.to_string();
            hints(&move |hints: &mut TraceScanHints| {
                hints.string_attributes.push(("request_id".into(), value.clone()));
            })
        };
        assert_eq!(admitted(&traces, &request("req-1")), vec![1]);
        assert_eq!(admitted(&traces, &request("other")), vec![2]);
        let regex = |pattern: &str| {
            let regex = regex::Regex::new(pattern).unwrap();
            hints(&move |hints: &mut TraceScanHints| {
                let hint = AttributeRegexHint { key: "request_id".into(), regex: regex.clone() };
                hints.attribute_regexes.push(hint);
            })
        };
        assert_eq!(admitted(&traces, &regex("^req-.*$")), vec![1]);
        assert_eq!(admitted(&traces, &regex("^(req-1|other)$")), vec![1, 2]);
        let status = |min: f64, max: f64| {
            hints(&move |hints: &mut TraceScanHints| {
                hints.numeric_attributes.push(NumericAttributeHint { key: "http.status_code".into(), min, max });
            })
        };
        // Trace 1 has -500, trace 2 an array holding 200.
        assert_eq!(admitted(&traces, &status(-500.0, -500.0)), vec![1]);
        assert_eq!(admitted(&traces, &status(100.0, f64::INFINITY)), vec![2]);
        assert_eq!(admitted(&traces, &status(500.0, f64::INFINITY)), Vec::<u8>::new());
        // A key whose values are not numbers cannot be ruled out by a numeric condition.
        let mut nested = status(0.0, 1.0);
        nested.numeric_attributes[0].key = "nested".into();
        assert_eq!(admitted(&traces, &nested), vec![1, 2]);
    }

    #[test]
    fn truncated_sets_fail_with_an_offset() {
        let mut bytes = Vec::new();
        encode_traces(&[sample_trace(1)], &mut bytes);
        for length in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_traces(&bytes[..length]).is_err(), "length {length}");
        }
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_traces(&bytes);
        }

        #[test]
        fn times_and_integers_round_trip(start in 0u64..u64::MAX / 2, duration in 0u64..1u64 << 40, number in proptest::num::i64::ANY) {
            let mut trace = sample_trace(3);
            let span = &mut trace.resource_spans[0].scope_spans[0].spans[0];
            span.start_time_unix_nano = start;
            span.end_time_unix_nano = start + duration;
            span.attributes[1].value = AttributeValue::Int(number);
            let mut bytes = Vec::new();
            encode_traces(&[trace.clone()], &mut bytes);
            prop_assert_eq!(decode_traces(&bytes).unwrap(), vec![trace]);
        }
    }
}

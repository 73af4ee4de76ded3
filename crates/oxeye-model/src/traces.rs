//! Spans and the trace storage interface: what OTLP trace ingest writes and what TraceQL and the Tempo API
//! read.
//!
//! The shapes follow the OpenTelemetry trace data model as OTLP carries it
//! (`opentelemetry/proto/trace/v1/trace.proto`, <https://opentelemetry.io/docs/specs/otel/trace/api/>):
//! spans grouped by [`Resource`] and instrumentation [`Scope`] ([`ResourceSpans`] ▸ [`ScopeSpans`] ▸ [`Span`]).
//! Tempo's by-id API returns exactly this grouping (`{"batches":[ResourceSpans..]}`), so the stores keep it.
//!
//! Times are **nanoseconds** since the Unix epoch (`u64`, as OTLP's `fixed64 *_time_unix_nano`); trace ids are
//! 16 bytes, span ids 8 bytes, both non-zero for a valid span (OTLP: an all-zero id is invalid).

use crate::storage::StorageError;

/// A trace id: 16 bytes, rendered as 32 lowercase hex digits. All zero is invalid.
pub type TraceId = [u8; 16];

/// A span id: 8 bytes, rendered as 16 lowercase hex digits. All zero is invalid.
pub type SpanId = [u8; 8];

/// An attribute value: OTLP's `AnyValue` (`common.proto`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// `string_value`.
    String(String),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `array_value`.
    Array(Vec<AttributeValue>),
    /// `kvlist_value`: nested key/value pairs in the order received.
    Map(Vec<Attribute>),
    /// `bytes_value`.
    Bytes(Vec<u8>),
}

impl AttributeValue {
    /// The value as a string when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttributeValue::String(value) => Some(value),
            _ => None,
        }
    }
}

/// One key/value attribute (OTLP `KeyValue`).
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// The attribute key, e.g. `http.route` or `service.name`.
    pub key: String,
    /// Its value.
    pub value: AttributeValue,
}

impl Attribute {
    /// A string attribute.
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute { key: key.into(), value: AttributeValue::String(value.into()) }
    }
}

/// Finds attribute `key` in `attributes` (first match, as OTLP says keys are unique).
pub fn find_attribute<'a>(attributes: &'a [Attribute], key: &str) -> Option<&'a AttributeValue> {
    attributes.iter().find(|attribute| attribute.key == key).map(|attribute| &attribute.value)
}

/// The kind of a span (OTLP `Span.SpanKind`; the numbers are the wire values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED` (0).
    #[default]
    Unspecified = 0,
    /// `SPAN_KIND_INTERNAL` (1).
    Internal = 1,
    /// `SPAN_KIND_SERVER` (2).
    Server = 2,
    /// `SPAN_KIND_CLIENT` (3).
    Client = 3,
    /// `SPAN_KIND_PRODUCER` (4).
    Producer = 4,
    /// `SPAN_KIND_CONSUMER` (5).
    Consumer = 5,
}

impl SpanKind {
    /// The kind for an OTLP wire value; values outside 0..=5 are `Unspecified`.
    pub fn from_wire(value: i32) -> Self {
        match value {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The TraceQL / Tempo name: `unspecified`, `internal`, `server`, `client`, `producer`, `consumer`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// The OTLP enum name, e.g. `SPAN_KIND_SERVER` (Tempo's metrics-generator `span_kind` label value).
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
}

/// A span's status code (OTLP `Status.StatusCode`; the numbers are the wire values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum StatusCode {
    /// `STATUS_CODE_UNSET` (0).
    #[default]
    Unset = 0,
    /// `STATUS_CODE_OK` (1).
    Ok = 1,
    /// `STATUS_CODE_ERROR` (2).
    Error = 2,
}

impl StatusCode {
    /// The code for an OTLP wire value; values outside 0..=2 are `Unset`.
    pub fn from_wire(value: i32) -> Self {
        match value {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// The TraceQL name: `unset`, `ok`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }

    /// The OTLP enum name, e.g. `STATUS_CODE_ERROR` (Tempo's metrics-generator `status_code` label value).
    pub fn otlp_name(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
}

/// A timed event within a span (OTLP `Span.Event`), e.g. an exception.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanEvent {
    /// When it happened, nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// The event name, e.g. `exception`.
    pub name: String,
    /// Its attributes, e.g. `exception.type`.
    pub attributes: Vec<Attribute>,
    /// Attributes the client dropped.
    pub dropped_attributes_count: u32,
}

/// A link from a span to another span (OTLP `Span.Link`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanLink {
    /// The linked trace.
    pub trace_id: TraceId,
    /// The linked span.
    pub span_id: SpanId,
    /// W3C `tracestate` of the linked span, possibly empty.
    pub trace_state: String,
    /// The link's attributes.
    pub attributes: Vec<Attribute>,
    /// Attributes the client dropped.
    pub dropped_attributes_count: u32,
    /// W3C trace flags (OTLP `flags`).
    pub flags: u32,
}

/// One span (OTLP `Span`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: TraceId,
    /// Its own id.
    pub span_id: SpanId,
    /// The parent span's id; `None` for a root span (OTLP: empty `parent_span_id`).
    pub parent_span_id: Option<SpanId>,
    /// W3C `tracestate`, possibly empty.
    pub trace_state: String,
    /// The span name, e.g. `GET /events/{id}/` or `ticket.checkout`.
    pub name: String,
    /// Its kind.
    pub kind: SpanKind,
    /// Start, nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch (`>= start_time_unix_nano` for a well-formed span).
    pub end_time_unix_nano: u64,
    /// Span attributes, e.g. `http.route`, `request_id`.
    pub attributes: Vec<Attribute>,
    /// Attributes the client dropped.
    pub dropped_attributes_count: u32,
    /// Events, e.g. exceptions.
    pub events: Vec<SpanEvent>,
    /// Events the client dropped.
    pub dropped_events_count: u32,
    /// Links to other spans.
    pub links: Vec<SpanLink>,
    /// Links the client dropped.
    pub dropped_links_count: u32,
    /// Status code.
    pub status_code: StatusCode,
    /// Status message (set with an error), possibly empty.
    pub status_message: String,
    /// W3C trace flags (OTLP `flags`).
    pub flags: u32,
}

impl Span {
    /// The span's duration in nanoseconds (0 when the end precedes the start).
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano.saturating_sub(self.start_time_unix_nano)
    }

    /// Whether this is a root span (no parent).
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }
}

/// The entity that produced spans (OTLP `Resource`), e.g. `service.name=boxoffice`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    /// Resource attributes.
    pub attributes: Vec<Attribute>,
    /// Attributes the client dropped.
    pub dropped_attributes_count: u32,
}

impl Resource {
    /// The `service.name` attribute, if it is a string.
    pub fn service_name(&self) -> Option<&str> {
        find_attribute(&self.attributes, "service.name").and_then(AttributeValue::as_str)
    }
}

/// The instrumentation scope that produced spans (OTLP `InstrumentationScope`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    /// e.g. `opentelemetry.instrumentation.django`.
    pub name: String,
    /// The instrumentation's version, possibly empty.
    pub version: String,
    /// Scope attributes.
    pub attributes: Vec<Attribute>,
    /// Attributes the client dropped.
    pub dropped_attributes_count: u32,
}

/// Spans of one scope (OTLP `ScopeSpans`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeSpans {
    /// The scope.
    pub scope: Scope,
    /// The spans.
    pub spans: Vec<Span>,
    /// Schema URL, possibly empty.
    pub schema_url: String,
}

/// Spans of one resource (OTLP `ResourceSpans`, Tempo's "batch").
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSpans {
    /// The resource.
    pub resource: Resource,
    /// Spans per scope.
    pub scope_spans: Vec<ScopeSpans>,
    /// Schema URL, possibly empty.
    pub schema_url: String,
}

impl ResourceSpans {
    /// Every span of every scope, in order.
    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.scope_spans.iter().flat_map(|scope_spans| scope_spans.spans.iter())
    }
}

/// All stored spans of one trace, grouped by resource and scope as they were received.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// The trace id.
    pub trace_id: TraceId,
    /// Its spans by resource and scope.
    pub resource_spans: Vec<ResourceSpans>,
}

impl Trace {
    /// Every span of the trace with its resource, in storage order.
    pub fn spans(&self) -> impl Iterator<Item = (&Resource, &Span)> {
        self.resource_spans.iter().flat_map(|batch| batch.spans().map(move |span| (&batch.resource, span)))
    }

    /// The root span (no parent) with its resource; `None` while the root has not arrived.
    pub fn root(&self) -> Option<(&Resource, &Span)> {
        self.spans().find(|(_, span)| span.is_root())
    }

    /// From the earliest span start to the latest span end, in nanoseconds (0 for no spans).
    pub fn duration_nanos(&self) -> u64 {
        let start = self.spans().map(|(_, span)| span.start_time_unix_nano).min();
        let end = self.spans().map(|(_, span)| span.end_time_unix_nano).max();
        match (start, end) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        }
    }
}

/// Renders an id (trace or span) as lowercase hex.
pub fn id_to_hex(id: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(id.len() * 2);
    for byte in id {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// Parses a trace id from hex as Tempo accepts it: up to 32 hex digits, case-insensitive, left-padded with
/// zeros (Tempo accepts 64-bit ids written as 16 digits). Returns `None` for an empty, too long, non-hex or
/// all-zero id.
pub fn trace_id_from_hex(text: &str) -> Option<TraceId> {
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    let mut id = [0u8; 16];
    let padded_start = 32 - text.len();
    for (index, character) in text.chars().enumerate() {
        let digit = character.to_digit(16)? as u8;
        let position = padded_start + index;
        id[position / 2] |= if position.is_multiple_of(2) { digit << 4 } else { digit };
    }
    if id == [0u8; 16] { None } else { Some(id) }
}

/// What a [`TraceWriter::push`] stored and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracePushSummary {
    /// Spans stored.
    pub accepted_spans: u64,
    /// Spans refused (invalid ids, outside retention); reported as OTLP partial success `rejected_spans`.
    pub rejected_spans: u64,
    /// The first refusal, worded for the client (OTLP partial success `error_message`).
    pub first_error: Option<String>,
}

/// Writes spans durably: [`TraceWriter::push`] returns only after the accepted spans are in the WAL and
/// fsynced.
pub trait TraceWriter: Send + Sync {
    /// Stores `batches`. Invalid spans are refused one by one and counted in the summary; the valid ones are
    /// stored.
    ///
    /// Errors: [`StorageError`] when the store cannot write (I/O), in which case nothing of the call is
    /// acknowledged.
    fn push(&self, batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError>;

    /// Removes every stored span of `trace_ids` that has not yet been written into an immutable block: what
    /// tail sampling calls for traces it decided not to keep. The removal is durable before this returns (a
    /// WAL tombstone), so a replay after a crash does not bring the spans back; traces whose spans were never
    /// decided before a crash are kept. Unknown ids are ignored.
    ///
    /// Errors: [`StorageError`] when the tombstone cannot be written.
    fn drop_traces(&self, trace_ids: &[TraceId]) -> Result<(), StorageError>;
}

/// Reads stored traces.
pub trait TraceReader: Send + Sync {
    /// The trace with `trace_id`, restricted to spans starting in `[start_unix_nano, end_unix_nano)` when a
    /// window is given; `Ok(None)` when no span of it is stored.
    ///
    /// Errors: [`StorageError`] on I/O or corrupt data.
    fn trace_by_id(&self, trace_id: &TraceId, window: Option<(u64, u64)>) -> Result<Option<Trace>, StorageError>;

    /// Calls `visit` with every stored trace that has a span starting in `[start_unix_nano, end_unix_nano)`,
    /// newest first where the store can, until `visit` returns `false`. A store may skip traces that cannot
    /// match `hints` (they only narrow; the caller still evaluates its query on each trace).
    ///
    /// Errors: [`StorageError`] on I/O or corrupt data.
    fn scan_traces(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        hints: &TraceScanHints,
        visit: &mut dyn FnMut(&Trace) -> bool,
    ) -> Result<(), StorageError>;

    /// Calls `visit` with the intrinsic columns of every stored span starting in
    /// `[start_unix_nano, end_unix_nano)`, in no particular order, until `visit` returns `false`. Only the
    /// columns in `columns` need be filled (the start always is); the others may hold their defaults. A store
    /// with per-block span columns answers this without decoding whole traces; the default derives the rows
    /// from [`TraceReader::scan_traces`].
    ///
    /// Errors: [`StorageError`] on I/O or corrupt data.
    fn scan_span_columns(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        columns: SpanColumnSet,
        visit: &mut dyn FnMut(&SpanColumnsRow<'_>) -> bool,
    ) -> Result<(), StorageError> {
        let _ = columns;
        self.scan_traces(start_unix_nano, end_unix_nano, &TraceScanHints::default(), &mut |trace| {
            visit_span_rows(trace, start_unix_nano, end_unix_nano, visit)
        })
    }
}

/// Calls `visit` with the [`SpanColumnsRow`] of each span of `trace` starting in
/// `[start_unix_nano, end_unix_nano)`, in storage order; returns `false` as soon as `visit` does.
pub fn visit_span_rows(
    trace: &Trace,
    start_unix_nano: u64,
    end_unix_nano: u64,
    visit: &mut dyn FnMut(&SpanColumnsRow<'_>) -> bool,
) -> bool {
    for batch in &trace.resource_spans {
        let service_name = find_attribute(&batch.resource.attributes, "service.name");
        for span in batch.spans() {
            if span.start_time_unix_nano < start_unix_nano || span.start_time_unix_nano >= end_unix_nano {
                continue;
            }
            let row = SpanColumnsRow {
                start_time_unix_nano: span.start_time_unix_nano,
                duration_nanos: span.duration_nanos(),
                service_name,
                name: &span.name,
                kind: span.kind,
                status_code: span.status_code,
            };
            if !visit(&row) {
                return false;
            }
        }
    }
    true
}

/// Which span columns a [`TraceReader::scan_span_columns`] caller reads (the start is always read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanColumnSet {
    /// [`SpanColumnsRow::duration_nanos`].
    pub duration: bool,
    /// [`SpanColumnsRow::service_name`].
    pub service_name: bool,
    /// [`SpanColumnsRow::name`].
    pub name: bool,
    /// [`SpanColumnsRow::kind`].
    pub kind: bool,
    /// [`SpanColumnsRow::status_code`].
    pub status_code: bool,
}

impl SpanColumnSet {
    /// Every column.
    pub const ALL: SpanColumnSet =
        SpanColumnSet { duration: true, service_name: true, name: true, kind: true, status_code: true };
}

/// One span's intrinsic fields as per-block span columns hold them: what TraceQL metrics over intrinsics
/// need, without the span's attributes, events or trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanColumnsRow<'a> {
    /// Span start, nanoseconds since the epoch.
    pub start_time_unix_nano: u64,
    /// End minus start, nanoseconds (0 when a client sent end < start), as [`Span::duration_nanos`].
    pub duration_nanos: u64,
    /// The `service.name` of the span's resource, whatever its type (a string as a rule; an integer or other
    /// value is kept as sent, so `resource.service.name` reads the same as on the whole trace).
    pub service_name: Option<&'a AttributeValue>,
    /// The span name.
    pub name: &'a str,
    /// The span kind.
    pub kind: SpanKind,
    /// The status code.
    pub status_code: StatusCode,
}

/// Conditions a trace must meet for a search, which a store may use to skip blocks or traces
/// (min/max summaries, per-block columns). Every condition present must hold for some span of the trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceScanHints {
    /// Some span's resource has `service.name` equal to this.
    pub service_name: Option<String>,
    /// Some span has this name.
    pub span_name: Option<String>,
    /// Some span has at least this duration, nanoseconds.
    pub min_span_duration_nanos: Option<u64>,
    /// Some span has status error.
    pub has_error: bool,
    /// Some span or resource has these string attributes with these exact values.
    pub string_attributes: Vec<(String, String)>,
    /// Some attribute with the key has a string value (or array element) the regex matches.
    pub attribute_regexes: Vec<AttributeRegexHint>,
    /// Some attribute with the key has an integer or double value (or array element) within the bounds, or a
    /// value of another type (which the query may still compare, so it cannot rule the trace out).
    pub numeric_attributes: Vec<NumericAttributeHint>,
}

/// A [`TraceScanHints`] condition: an attribute whose string value matches a regex (TraceQL `=~`).
#[derive(Debug, Clone)]
pub struct AttributeRegexHint {
    /// The attribute key.
    pub key: String,
    /// The compiled regex, anchored as the query matches it.
    pub regex: regex::Regex,
}

impl PartialEq for AttributeRegexHint {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.regex.as_str() == other.regex.as_str()
    }
}

/// A [`TraceScanHints`] condition: an attribute whose numeric value lies in `[min, max]` (TraceQL `>`, `>=`,
/// `<`, `<=`, `=` against a number; the strict forms use the bound itself, which only admits more).
#[derive(Debug, Clone, PartialEq)]
pub struct NumericAttributeHint {
    /// The attribute key.
    pub key: String,
    /// Smallest value admitted.
    pub min: f64,
    /// Largest value admitted.
    pub max: f64,
}

impl NumericAttributeHint {
    /// Whether `value` lies within the bounds.
    pub fn admits(&self, value: f64) -> bool {
        value >= self.min && value <= self.max
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_short_ids_are_left_padded() {
        let id: TraceId = [0xab, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0xff];
        let hex = id_to_hex(&id);
        assert_eq!(hex, "ab000102030405060708090a0b0c0dff");
        assert_eq!(trace_id_from_hex(&hex), Some(id));
        assert_eq!(trace_id_from_hex(&hex.to_uppercase()), Some(id));
        let short = trace_id_from_hex("1f").unwrap();
        assert_eq!(short[15], 0x1f);
        assert_eq!(short[..15], [0u8; 15]);
        assert_eq!(trace_id_from_hex("abc").unwrap()[14..], [0x0a, 0xbc]);
        assert_eq!(trace_id_from_hex(""), None);
        assert_eq!(trace_id_from_hex("0000"), None);
        assert_eq!(trace_id_from_hex("xyz"), None);
        assert_eq!(trace_id_from_hex(&"1".repeat(33)), None);
    }

    #[test]
    fn trace_finds_root_and_duration_across_resources() {
        let span = |id: u8, parent: Option<u8>, start: u64, end: u64| Span {
            trace_id: [1; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|parent| [parent; 8]),
            name: format!("span-{id}"),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Span::default()
        };
        let batch = |service: &str, spans: Vec<Span>| ResourceSpans {
            resource: Resource { attributes: vec![Attribute::string("service.name", service)], ..Resource::default() },
            scope_spans: vec![ScopeSpans { spans, ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        };
        let trace = Trace {
            trace_id: [1; 16],
            resource_spans: vec![
                batch("payments", vec![span(2, Some(1), 150, 900)]),
                batch("boxoffice", vec![span(1, None, 100, 2_100)]),
            ],
        };
        let (resource, root) = trace.root().unwrap();
        assert_eq!(root.name, "span-1");
        assert_eq!(resource.service_name(), Some("boxoffice"));
        assert_eq!(trace.duration_nanos(), 2_000);
        assert_eq!(trace.spans().count(), 2);
        assert_eq!(SpanKind::from_wire(2).as_str(), "server");
        assert_eq!(StatusCode::from_wire(2).otlp_name(), "STATUS_CODE_ERROR");
    }
}

//! Loki push bodies (`POST /loki/api/v1/push`) into `oxeye-model` log streams.
//!
//! Source: Loki's HTTP API reference (`loki-http-api.md`, "Ingest logs") and `pkg/push/push.proto`:
//! - JSON: `{"streams":[{"stream":{"job":"x"},"values":[["<ns string>","line"],["<ns>","line",{"trace_id":"…"}]]}]}`;
//!   the optional third element is structured metadata (a flat string map). Timestamps are strings of
//!   nanoseconds (numbers are accepted too).
//! - Protobuf: a snappy **block** of `PushRequest`; each stream's labels are selector text `{a="b"}`.
//!
//! A body that does not decode is refused whole ([`IngestError`] names the field), so nothing is stored.

use oxeye_model::logs::{LogEntry, LogStream};
use oxeye_model::{Label, Labels};
use oxeye_proto::loki::PushRequest;
use prost::Message;

use crate::IngestError;

fn json_error(field: String, reason: impl Into<String>) -> IngestError {
    IngestError::Json { field, reason: reason.into() }
}

/// Decodes a JSON push body (already gzip-decoded).
///
/// # Errors
/// [`IngestError::Json`] naming the path of the first bad value, e.g. `streams[0].values[3][0]`.
pub fn decode_push_json(body: &[u8]) -> Result<Vec<LogStream>, IngestError> {
    // The typed decoder builds the streams straight from the bytes; a body it refuses goes through the
    // tree decoder, which names the bad field.
    if let Ok(typed) = serde_json::from_slice::<typed::Body>(body) {
        return Ok(typed
            .streams
            .into_iter()
            .map(|stream| LogStream {
                labels: Labels::from_pairs(stream.stream.0),
                entries: stream.values.into_iter().map(|entry| entry.0).collect(),
            })
            .collect());
    }
    decode_push_json_tree(body)
}

/// Typed serde targets for a push body, so the happy path builds no `serde_json::Value` tree. They accept
/// exactly what [`decode_push_json_tree`] accepts: timestamps as strings or integers of nanoseconds, 2 or 3
/// elements per entry, string-valued label and metadata maps (a repeated key keeps its first position and its
/// last value, as the tree's ordered map does).
mod typed {
    use std::fmt;

    use oxeye_model::Label;
    use oxeye_model::logs::LogEntry;
    use serde::Deserialize;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    #[derive(Deserialize)]
    pub(super) struct Body {
        pub(super) streams: Vec<Stream>,
    }

    #[derive(Deserialize)]
    pub(super) struct Stream {
        pub(super) stream: StringPairs,
        pub(super) values: Vec<Entry>,
    }

    /// A JSON object of string values, in order.
    pub(super) struct StringPairs(pub(super) Vec<(String, String)>);

    impl<'de> Deserialize<'de> for StringPairs {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct PairsVisitor;
            impl<'de> Visitor<'de> for PairsVisitor {
                type Value = StringPairs;
                fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                    formatter.write_str("an object of strings")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringPairs, A::Error> {
                    let mut pairs: Vec<(String, String)> = Vec::with_capacity(map.size_hint().unwrap_or(4));
                    while let Some((name, value)) = map.next_entry::<String, String>()? {
                        match pairs.iter_mut().find(|(seen, _)| *seen == name) {
                            Some(pair) => pair.1 = value,
                            None => pairs.push((name, value)),
                        }
                    }
                    Ok(StringPairs(pairs))
                }
            }
            deserializer.deserialize_map(PairsVisitor)
        }
    }

    /// `["<ns>", "line"]` or `["<ns>", "line", {metadata}]`.
    pub(super) struct Entry(pub(super) LogEntry);

    struct Timestamp(i64);

    impl<'de> Deserialize<'de> for Timestamp {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct TimestampVisitor;
            impl Visitor<'_> for TimestampVisitor {
                type Value = Timestamp;
                fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                    formatter.write_str("an integer of nanoseconds")
                }
                fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                    text.parse().map(Timestamp).map_err(|_| E::custom("timestamp"))
                }
                fn visit_i64<E: de::Error>(self, value: i64) -> Result<Timestamp, E> {
                    Ok(Timestamp(value))
                }
                fn visit_u64<E: de::Error>(self, value: u64) -> Result<Timestamp, E> {
                    i64::try_from(value).map(Timestamp).map_err(|_| E::custom("timestamp"))
                }
            }
            deserializer.deserialize_any(TimestampVisitor)
        }
    }

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct EntryVisitor;
            impl<'de> Visitor<'de> for EntryVisitor {
                type Value = Entry;
                fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                    formatter.write_str("an entry array")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Entry, A::Error> {
                    let missing = || de::Error::custom("entry has fewer than 2 elements");
                    let Timestamp(timestamp_ns) = items.next_element()?.ok_or_else(missing)?;
                    let line: String = items.next_element()?.ok_or_else(missing)?;
                    let structured_metadata = match items.next_element::<StringPairs>()? {
                        None => Vec::new(),
                        Some(pairs) => pairs.0.into_iter().map(|(name, value)| Label { name, value }).collect(),
                    };
                    if items.next_element::<IgnoredAny>()?.is_some() {
                        return Err(de::Error::custom("entry has more than 3 elements"));
                    }
                    Ok(Entry(LogEntry { timestamp_ns, line, structured_metadata }))
                }
            }
            deserializer.deserialize_seq(EntryVisitor)
        }
    }
}

/// The tree decoder behind [`decode_push_json`]: slower, names the path of the first bad value.
fn decode_push_json_tree(body: &[u8]) -> Result<Vec<LogStream>, IngestError> {
    use serde_json::Value;
    let mut root: Value = serde_json::from_slice(body).map_err(|error| json_error("$".into(), error.to_string()))?;
    let Some(Value::Array(streams)) = root.get_mut("streams").map(Value::take) else {
        return Err(json_error("streams".into(), "missing or not an array"));
    };
    let mut result = Vec::with_capacity(streams.len());
    // Lines and metadata are moved out of the parsed tree, and error paths are formatted only on error:
    // this runs once per pushed line.
    for (stream_index, mut stream) in streams.into_iter().enumerate() {
        let path = || format!("streams[{stream_index}]");
        let Some(labels_object) = stream.get("stream").and_then(Value::as_object) else {
            return Err(json_error(format!("{}.stream", path()), "missing or not an object"));
        };
        let mut pairs = Vec::with_capacity(labels_object.len());
        for (name, value) in labels_object {
            let Some(value) = value.as_str() else {
                return Err(json_error(format!("{}.stream.{name}", path()), "label value is not a string"));
            };
            pairs.push((name.clone(), value.to_string()));
        }
        let labels = Labels::from_pairs(pairs);
        let Some(Value::Array(values)) = stream.get_mut("values").map(Value::take) else {
            return Err(json_error(format!("{}.values", path()), "missing or not an array"));
        };
        let mut entries = Vec::with_capacity(values.len());
        for (entry_index, value) in values.into_iter().enumerate() {
            let entry_path = || format!("{}.values[{entry_index}]", path());
            let Value::Array(items) = value else {
                return Err(json_error(entry_path(), "entry is not an array"));
            };
            if items.len() < 2 || items.len() > 3 {
                return Err(json_error(entry_path(), format!("entry has {} elements (expected 2 or 3)", items.len())));
            }
            let mut items = items.into_iter();
            let timestamp_ns = match items.next() {
                Some(Value::String(text)) => text.parse::<i64>().ok(),
                Some(Value::Number(number)) => number.as_i64(),
                _ => None,
            };
            let Some(timestamp_ns) = timestamp_ns else {
                return Err(json_error(format!("{}[0]", entry_path()), "timestamp is not an integer of nanoseconds"));
            };
            let Some(Value::String(line)) = items.next() else {
                return Err(json_error(format!("{}[1]", entry_path()), "line is not a string"));
            };
            let mut structured_metadata = Vec::new();
            if let Some(metadata) = items.next() {
                let Value::Object(metadata) = metadata else {
                    return Err(json_error(format!("{}[2]", entry_path()), "structured metadata is not an object"));
                };
                structured_metadata.reserve(metadata.len());
                for (name, value) in metadata {
                    let Value::String(value) = value else {
                        return Err(json_error(
                            format!("{}[2].{name}", entry_path()),
                            "structured metadata value is not a string",
                        ));
                    };
                    structured_metadata.push(Label { name, value });
                }
            }
            entries.push(LogEntry { timestamp_ns, line, structured_metadata });
        }
        result.push(LogStream { labels, entries });
    }
    Ok(result)
}

/// Decodes a protobuf push body: snappy block, then `PushRequest`.
///
/// # Errors
/// [`IngestError::Snappy`], [`IngestError::TooLarge`], [`IngestError::Protobuf`] (field `PushRequest`),
/// [`IngestError::Json`]-free: a stream's label text that does not parse is [`IngestError::Protobuf`]
/// naming `streams[i].labels`.
pub fn decode_push_protobuf(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<LogStream>, IngestError> {
    let decoded = crate::compression::decode_snappy(body, max_decoded_bytes)?;
    let request = PushRequest::decode(decoded.as_slice())
        .map_err(|error| IngestError::Protobuf { field: "PushRequest".into(), reason: error.to_string() })?;
    let mut result = Vec::with_capacity(request.streams.len());
    for (index, stream) in request.streams.into_iter().enumerate() {
        let labels = parse_label_text(&stream.labels)
            .map_err(|reason| IngestError::Protobuf { field: format!("streams[{index}].labels"), reason })?;
        let entries = stream
            .entries
            .into_iter()
            .map(|entry| {
                let timestamp = entry.timestamp.unwrap_or_default();
                LogEntry {
                    timestamp_ns: timestamp
                        .seconds
                        .saturating_mul(1_000_000_000)
                        .saturating_add(i64::from(timestamp.nanos)),
                    line: entry.line,
                    structured_metadata: entry
                        .structured_metadata
                        .into_iter()
                        .map(|pair| Label { name: pair.name, value: pair.value })
                        .collect(),
                }
            })
            .collect();
        result.push(LogStream { labels, entries });
    }
    Ok(result)
}

/// Parses label selector text `{a="b", c="d"}` (Go-quoted values) into labels.
///
/// # Errors
/// A message with the byte offset of the problem.
pub fn parse_label_text(text: &str) -> Result<Labels, String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| format!("labels {text:?} are not enclosed in braces"))?;
    let characters: Vec<char> = inner.chars().collect();
    let mut position = 0;
    let mut pairs = Vec::new();
    let skip_space = |position: &mut usize| {
        while *position < characters.len() && characters[*position].is_whitespace() {
            *position += 1;
        }
    };
    loop {
        skip_space(&mut position);
        if position >= characters.len() {
            break;
        }
        let start = position;
        while position < characters.len()
            && (characters[position].is_alphanumeric() || matches!(characters[position], '_' | '.' | ':'))
        {
            position += 1;
        }
        let name: String = characters[start..position].iter().collect();
        if name.is_empty() {
            return Err(format!("expected a label name at position {start} of {text:?}"));
        }
        skip_space(&mut position);
        if characters.get(position) != Some(&'=') {
            return Err(format!("expected '=' at position {position} of {text:?}"));
        }
        position += 1;
        skip_space(&mut position);
        if characters.get(position) != Some(&'"') {
            return Err(format!("expected a quoted value at position {position} of {text:?}"));
        }
        position += 1;
        let mut value = String::new();
        loop {
            match characters.get(position) {
                None => return Err(format!("unterminated value in {text:?}")),
                Some('"') => {
                    position += 1;
                    break;
                }
                Some('\\') => {
                    position += 1;
                    match characters.get(position) {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(other) => value.push(*other),
                        None => return Err(format!("unterminated escape in {text:?}")),
                    }
                    position += 1;
                }
                Some(other) => {
                    value.push(*other);
                    position += 1;
                }
            }
        }
        pairs.push((name, value));
        skip_space(&mut position);
        match characters.get(position) {
            Some(',') => position += 1,
            None => break,
            Some(other) => return Err(format!("unexpected {other:?} at position {position} of {text:?}")),
        }
    }
    Ok(Labels::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_proto::loki::{EntryAdapter, LabelPairAdapter, StreamAdapter, Timestamp};

    fn captures_dir() -> std::path::PathBuf {
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures")).to_path_buf()
    }

    #[test]
    fn json_with_structured_metadata() {
        let body = br#"{"streams":[{"stream":{"job":"x"},"values":[["1700000000000000001","a"],["1700000000000000002","b",{"trace_id":"abc"}]]}]}"#;
        let streams = decode_push_json(body).unwrap();
        assert_eq!(streams[0].labels, Labels::from_pairs([("job", "x")]));
        assert_eq!(streams[0].entries[0].timestamp_ns, 1_700_000_000_000_000_001);
        assert_eq!(streams[0].entries[1].metadata("trace_id"), Some("abc"));
    }

    #[test]
    fn typed_and_tree_decoders_agree() {
        let bodies: [&[u8]; 4] = [
            br#"{"streams":[{"values":[[1,"a"],["2","b",{"k":"1","j":"2","k":"3"}]],"stream":{"job":"x","a":"b"}}],"x":1}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[]},{"stream":{},"values":[["3","c",{}]]}]}"#,
            br#"{"streams":[]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["9223372036854775807","\u00e9\n"]]}]}"#,
        ];
        for body in bodies {
            let typed = decode_push_json(body).unwrap();
            assert_eq!(typed, decode_push_json_tree(body).unwrap(), "{}", String::from_utf8_lossy(body));
        }
        let refused: [&[u8]; 4] = [
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a",{},"extra"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["9223372036854775808","a"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a",{"k":1}]]}]}"#,
        ];
        for body in refused {
            assert!(serde_json::from_slice::<typed::Body>(body).is_err());
            assert!(decode_push_json(body).is_err());
        }
    }

    #[test]
    fn malformed_json_names_the_field() {
        let error = decode_push_json(br#"{"streams":[{"stream":{"job":"x"},"values":[[1.5e30,"a"]]}]}"#).unwrap_err();
        assert_eq!(error.to_string(), "json: timestamp is not an integer of nanoseconds at streams[0].values[0][0]");
        assert!(decode_push_json(b"{").is_err());
        assert!(decode_push_json(br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#).is_err());
    }

    #[test]
    fn protobuf_round_trip() {
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{service_name="boxoffice", env="a\"b"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 5 }),
                    line: "hello".into(),
                    structured_metadata: vec![LabelPairAdapter { name: "trace_id".into(), value: "t".into() }],
                    parsed: vec![],
                }],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap();
        let streams = decode_push_protobuf(&body, 1 << 20).unwrap();
        assert_eq!(streams[0].labels.get("env"), Some("a\"b"));
        assert_eq!(streams[0].entries[0].timestamp_ns, 1_700_000_000_000_000_005);
        assert_eq!(streams[0].entries[0].metadata("trace_id"), Some("t"));
        assert!(decode_push_protobuf(b"not snappy", 1 << 20).is_err());
        assert!(parse_label_text("{a=b}").is_err());
    }

    #[test]
    fn captured_python_logging_loki_bodies_decode() {
        let dir = captures_dir();
        if !dir.exists() {
            println!("skipping: {} is absent", dir.display());
            return;
        }
        for kind in ["first", "error", "login"] {
            let body = std::fs::read(dir.join(format!("loki_api_v1_push.{kind}.bin"))).unwrap();
            let streams = decode_push_json(&body).unwrap();
            assert_eq!(streams.len(), 1, "{kind}");
            assert_eq!(streams[0].labels.get("service_name"), Some("boxoffice"));
            assert_eq!(streams[0].entries.len(), 1);
            let line: serde_json::Value = serde_json::from_str(&streams[0].entries[0].line).unwrap();
            assert!(line.get("event").is_some(), "{kind}: structlog line keeps its event");
        }
    }
}

//! Field columns of `| logfmt`, and the extractor a log store is given to keep the columns of `| json` or
//! `| logfmt`, whichever reads a chunk's lines (`oxeye_model::logs::LineFieldExtractor`; the store's
//! `docs/format.md`, "Field columns"). A query whose pipeline needs a line only through a few labels of
//! one of them ([`Pipeline::line_field_names`](crate::pipeline::Pipeline::line_field_names)) then reads
//! those columns instead of the chunk's lines.
//!
//! ```
//! use oxeye_logql::field_columns::{LOGFMT_FIELD_COLUMNS_SEMANTICS, LineFieldColumns};
//! use oxeye_logql::pipeline::JSON_FIELD_COLUMNS_SEMANTICS;
//! use oxeye_model::logs::LineFieldExtractor;
//!
//! let columns = LineFieldColumns::new(["level"]);
//! let mut found = Vec::new();
//! let logfmt = columns.extract(&["level=info msg=hi", "level=warn"], &mut |index, name, value| {
//!     found.push((index, name.to_string(), value.to_string()))
//! });
//! assert_eq!(logfmt, Some(LOGFMT_FIELD_COLUMNS_SEMANTICS));
//! assert_eq!(found, [(0, "level".to_string(), "info".to_string()), (1, "level".into(), "warn".into())]);
//! let json = columns.extract(&[r#"{"level":"info"}"#], &mut |_, _, _| {});
//! assert_eq!(json, Some(JSON_FIELD_COLUMNS_SEMANTICS));
//! ```

use std::ops::ControlFlow;

use oxeye_model::logs::LineFieldExtractor;

use crate::logfmt;
use crate::pipeline::{
    DEFAULT_JSON_FIELD_COLUMNS, JsonFieldColumns, hinted_names, hinted_position, is_valid_label_name,
    sanitize_label_name_into,
};

/// The semantics [`LogfmtFieldColumns`] stores with its columns: the labels `| logfmt` without flags or
/// parameters gives a line, for each name the value of the first pair whose key sanitizes into it and
/// whose value is not empty and holds no U+FFFD (`| logfmt` leaves pairs with empty values out, empties a
/// value holding U+FFFD as Loki does, and keeps a label's first value). Raise it whenever `| logfmt` would
/// give any line other labels, so that columns written before stop being read: 3 since values holding
/// U+FFFD are emptied (a column of semantics 2 may hold such a value where a later pair gives the label).
pub const LOGFMT_FIELD_COLUMNS_SEMANTICS: u32 = 3;

/// How many lines [`LogfmtFieldColumns`] reads for a label before it gives a chunk up: a chunk of
/// unstructured lines (which `| logfmt` reads as bare keys) would get no column anyway, and its lines need
/// not all be scanned at the cut. A chunk whose first labels come later gets none (its queries read lines).
pub const LINES_READ_WITHOUT_LABEL: usize = 256;

/// Finds, for a log store cutting a chunk, the labels `| logfmt` (no flags, no parameters) gives each line
/// among a fixed set of names, so that the store keeps them in field columns. The non-strict parse never
/// fails and keeps a label's first value, whatever else a query asks for, so every chunk gets columns
/// unless none of its first lines ([`LINES_READ_WITHOUT_LABEL`]) has a label of the names.
#[derive(Debug, Clone)]
pub struct LogfmtFieldColumns {
    /// Label names as `| logfmt` gives them (sanitized), sorted, with `x` for each `x_extracted`.
    names: Vec<String>,
}

impl LogfmtFieldColumns {
    /// Columns for the labels `names` (label names as `| logfmt` gives them: keys sanitized).
    pub fn new<Name: Into<String>>(names: impl IntoIterator<Item = Name>) -> LogfmtFieldColumns {
        LogfmtFieldColumns { names: hinted_names(names.into_iter().map(Into::into).collect()) }
    }
}

impl Default for LogfmtFieldColumns {
    /// Columns for [`DEFAULT_JSON_FIELD_COLUMNS`].
    fn default() -> Self {
        LogfmtFieldColumns::new(DEFAULT_JSON_FIELD_COLUMNS)
    }
}

impl LineFieldExtractor for LogfmtFieldColumns {
    fn writes(&self, semantics: u32, names: &[String]) -> bool {
        semantics == LOGFMT_FIELD_COLUMNS_SEMANTICS && names.iter().all(|name| self.names.contains(name))
    }

    /// Reads each line's pairs as `| logfmt` does (the scanner of `| logfmt`, not strict), taking per name the first
    /// non-empty value holding no U+FFFD of a key that is the name or sanitizes into it, up to the line's end or until
    /// every name has one. `None` when none of the first [`LINES_READ_WITHOUT_LABEL`] lines has one.
    fn extract(&self, lines: &[&str], field: &mut dyn FnMut(usize, &str, &str)) -> Option<u32> {
        let names = &self.names;
        if names.is_empty() || names.len() > 64 {
            return None;
        }
        let every_name = u64::MAX >> (64 - names.len());
        let mut label_name = String::new();
        let mut labels_found = false;
        for (index, line) in lines.iter().enumerate() {
            if index == LINES_READ_WITHOUT_LABEL && !labels_found {
                return None;
            }
            let mut found = 0u64;
            let outcome = logfmt::visit_pairs(line, false, |key, value| {
                // A value holding U+FFFD comes empty (`visit_pairs`).
                if value.is_empty() {
                    return ControlFlow::Continue(());
                }
                let position = if is_valid_label_name(key) {
                    hinted_position(names, key)
                } else {
                    sanitize_label_name_into(key, &mut label_name);
                    hinted_position(names, &label_name)
                };
                let Some(position) = position else { return ControlFlow::Continue(()) };
                if found & (1 << position) == 0 {
                    found |= 1 << position;
                    if let Some(name) = names.get(position) {
                        field(index, name, &value);
                    }
                }
                if found == every_name { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            // A non-strict parse reports no error; were it to, `| logfmt` would set `__error__`.
            outcome.ok()?;
            labels_found |= found != 0;
        }
        Some(LOGFMT_FIELD_COLUMNS_SEMANTICS)
    }
}

/// The field columns of `| json` ([`JsonFieldColumns`]) for a chunk whose every line `| json` parses, else
/// those of `| logfmt` ([`LogfmtFieldColumns`]) when `| json` gave no label before the line it failed on
/// (a logfmt chunk fails at its first line, so JSON chunks cost no more than with `| json` alone); a chunk
/// of JSON lines then other lines gets none. The extractor a server gives its log store.
#[derive(Debug, Clone)]
pub struct LineFieldColumns {
    json: JsonFieldColumns,
    logfmt: LogfmtFieldColumns,
}

impl LineFieldColumns {
    /// Columns for the labels `names`, of whichever parser reads a chunk.
    pub fn new<Name: Into<String>>(names: impl IntoIterator<Item = Name>) -> LineFieldColumns {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        LineFieldColumns { json: JsonFieldColumns::new(names.iter().cloned()), logfmt: LogfmtFieldColumns::new(names) }
    }
}

impl Default for LineFieldColumns {
    /// Columns for [`DEFAULT_JSON_FIELD_COLUMNS`].
    fn default() -> Self {
        LineFieldColumns::new(DEFAULT_JSON_FIELD_COLUMNS)
    }
}

impl LineFieldExtractor for LineFieldColumns {
    fn writes(&self, semantics: u32, names: &[String]) -> bool {
        self.json.writes(semantics, names) || self.logfmt.writes(semantics, names)
    }

    fn extract(&self, lines: &[&str], field: &mut dyn FnMut(usize, &str, &str)) -> Option<u32> {
        let mut json_labels = false;
        let json = self.json.extract(lines, &mut |index, name, value| {
            json_labels = true;
            field(index, name, value);
        });
        if json.is_some() || json_labels {
            return json;
        }
        self.logfmt.extract(lines, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::JSON_FIELD_COLUMNS_SEMANTICS;

    fn extracted(columns: &dyn LineFieldExtractor, lines: &[&str]) -> (Option<u32>, Vec<(usize, String, String)>) {
        let mut found = Vec::new();
        let semantics =
            columns.extract(lines, &mut |index, name, value| found.push((index, name.to_string(), value.to_string())));
        found.sort();
        (semantics, found)
    }

    fn triples(expected: &[(usize, &str, &str)]) -> Vec<(usize, String, String)> {
        expected.iter().map(|(index, name, value)| (*index, name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn logfmt_columns_take_each_names_first_non_empty_value() {
        let columns = LogfmtFieldColumns::new(["level", "status_code", "a_b"]);
        let lines = [
            r#"level=info status_code=200 msg="a b""#,
            "level= level=warn level=error",
            r#"level="in\"fo \\ x" a.b=1 a-b=2"#,
            "status-code=500 status_code=404 1x=2",
            "plain words only",
            r#"{"level":"info"}"#,
            "",
        ];
        let (semantics, found) = extracted(&columns, &lines);
        assert_eq!(semantics, Some(LOGFMT_FIELD_COLUMNS_SEMANTICS));
        assert_eq!(
            found,
            triples(&[
                (0, "level", "info"),
                (0, "status_code", "200"),
                (1, "level", "warn"),
                (2, "a_b", "1"),
                (2, "level", "in\"fo \\ x"),
                (3, "status_code", "500"),
            ])
        );
        assert!(columns.writes(LOGFMT_FIELD_COLUMNS_SEMANTICS, &["level".into(), "a_b".into()]));
        // Unstructured lines: given up after the first lines without a label, even if a later one has one.
        let mut unstructured = vec!["GET /index.html took 3 ms"; LINES_READ_WITHOUT_LABEL];
        unstructured.push("level=info");
        assert_eq!(extracted(&columns, &unstructured), (None, Vec::new()));
        unstructured[LINES_READ_WITHOUT_LABEL - 1] = "level=warn";
        assert_eq!(extracted(&columns, &unstructured).0, Some(LOGFMT_FIELD_COLUMNS_SEMANTICS));
        assert!(!columns.writes(LOGFMT_FIELD_COLUMNS_SEMANTICS, &["path".into()]));
        assert!(!columns.writes(JSON_FIELD_COLUMNS_SEMANTICS, &["level".into()]));
    }

    #[test]
    fn line_field_columns_choose_json_then_logfmt_per_chunk() {
        let columns = LineFieldColumns::new(["level"]);
        // Every line JSON: JSON's columns.
        let (semantics, found) = extracted(&columns, &[r#"{"level":"info"}"#, r#"{"level":"warn","a":1}"#]);
        assert_eq!(
            (semantics, found),
            (Some(JSON_FIELD_COLUMNS_SEMANTICS), triples(&[(0, "level", "info"), (1, "level", "warn")]))
        );
        // No line JSON: logfmt's.
        let (semantics, found) = extracted(&columns, &["level=info", r#"{"level":"info"}"#]);
        assert_eq!((semantics, found), (Some(LOGFMT_FIELD_COLUMNS_SEMANTICS), triples(&[(0, "level", "info")])));
        // JSON lines giving labels, then a line JSON fails on: none.
        assert_eq!(extracted(&columns, &[r#"{"level":"info"}"#, "level=info"]).0, None);
        // JSON lines giving none of the labels before the failing line: logfmt's.
        let (semantics, found) = extracted(&columns, &[r#"{"msg":"x"}"#, "level=info"]);
        assert_eq!((semantics, found), (Some(LOGFMT_FIELD_COLUMNS_SEMANTICS), triples(&[(1, "level", "info")])));
        // A name twice in a JSON line: JSON refuses after giving labels; none.
        assert_eq!(extracted(&columns, &[r#"{"level":"a"}"#, r#"{"level":"a","level":"b"}"#]).0, None);
        assert!(columns.writes(JSON_FIELD_COLUMNS_SEMANTICS, &["level".into()]));
        assert!(columns.writes(LOGFMT_FIELD_COLUMNS_SEMANTICS, &["level".into()]));
        // Semantics 2 was logfmt's before values holding U+FFFD were emptied: no longer written.
        assert!(!columns.writes(2, &["level".into()]));
        assert!(!columns.writes(4, &["level".into()]));
    }

    /// A pipeline given an entry's field values (`give_parsed_fields`) treats it as it treats the line `fields_line`
    /// rebuilds from them, for `| json` and `| logfmt` followed by label stages, with values holding quotes,
    /// backslashes, spaces, numbers and U+FFFD, and stream labels and metadata colliding with names.
    #[test]
    fn given_fields_answer_as_the_rebuilt_line_does() {
        use crate::pipeline::{ParserHints, Pipeline};
        use crate::syntax::{Expr, Grouping, MetricExpr, parse_expr};
        use oxeye_model::logs::LogEntryRef;
        use oxeye_model::{LabelRef, Labels};

        let queries = [
            r#"sum by (level, path) (count_over_time({a="b"} | json [1m]))"#,
            r#"sum by (level, path) (count_over_time({a="b"} | logfmt [1m]))"#,
            r#"sum by (path) (count_over_time({a="b"} | logfmt | duration_ms > 1000 [1m]))"#,
            r#"sum by (path) (count_over_time({a="b"} | json | level=~"in.*" or duration_ms < 5 [1m]))"#,
            r#"sum by (level) (count_over_time({a="b"} | logfmt | drop __error__, path="/x" [1m]))"#,
        ];
        let values = [
            None,
            Some("info"),
            Some(r#"in"fo \ x"#),
            Some("a b"),
            Some("/x"),
            Some("1500.5"),
            Some("3"),
            Some(""),
            Some("a\u{fffd}b"),
            Some("\u{ff21}"),
        ];
        let streams = [Labels::from_pairs([("a", "b")]), Labels::from_pairs([("a", "b"), ("level", "stream")])];
        let metadata = [LabelRef { name: "path", value: "from-metadata" }];
        for query in queries {
            let Expr::Metric(metric) = parse_expr(query).unwrap() else { panic!("{query}") };
            let MetricExpr::VectorAggregation { grouping, inner, .. } = &metric else { panic!("{query}") };
            let MetricExpr::RangeAggregation { range, .. } = inner.as_ref() else { panic!("{query}") };
            let grouping: Option<&Grouping> = grouping.as_ref();
            let hints = ParserHints::for_grouping(grouping, &range.log.pipeline, None);
            let mut by_line = Pipeline::with_hints(&range.log.pipeline, hints.clone()).unwrap();
            let mut by_fields = Pipeline::with_hints(&range.log.pipeline, hints).unwrap();
            let (semantics, names) =
                by_line.line_field_names().map(|(semantics, names)| (semantics, names.to_vec())).unwrap();
            for first in values {
                for second in values {
                    let mut entry_values = vec![None; names.len()];
                    entry_values[0] = first;
                    if let Some(slot) = entry_values.get_mut(1) {
                        *slot = second;
                    }
                    if semantics == LOGFMT_FIELD_COLUMNS_SEMANTICS && entry_values.contains(&Some("")) {
                        // `| logfmt` gives no label an empty value.
                        continue;
                    }
                    let mut line = String::new();
                    Pipeline::fields_line(semantics, &names, &entry_values, &mut line);
                    for stream in &streams {
                        for structured_metadata in [&metadata[..], &[]] {
                            let expected = by_line
                                .process_ref(stream, LogEntryRef { timestamp_ns: 1, line: &line, structured_metadata });
                            by_fields.give_parsed_fields(&entry_values);
                            let found = by_fields
                                .process_ref(stream, LogEntryRef { timestamp_ns: 1, line: "", structured_metadata });
                            by_fields.clear_parsed_fields();
                            assert_eq!(
                                found.map(|entry| entry.labels),
                                expected.map(|entry| entry.labels),
                                "{query} {line}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// On random lines over the bytes and keys that matter (separators, `=`, quotes, escapes, keys that
    /// sanitize into a column's name or nearly do), the labels the logfmt columns keep are those a full
    /// `| logfmt` parse of the line gives (a stream without colliding labels).
    #[test]
    fn logfmt_columns_agree_with_a_full_parse() {
        use crate::pipeline::Pipeline;
        use crate::syntax::{Expr, parse_expr};
        use oxeye_model::Labels;
        use oxeye_model::logs::LogEntry;

        let keys = ["level", "le.vel", "level=", "lev", "path", "pa-th", "1x", "_1x"];
        let values = ["\\\"", "info", "/api/a b", "é", "42", "{\"level\":\"j\"}", "\u{fffd}", "\u{ff21}"];
        let pieces: Vec<&str> = keys.into_iter().chain(crate::test_random::LOGFMT_SYNTAX).chain(values).collect();
        let names = ["level", "path", "_1x"];
        let columns = LogfmtFieldColumns::new(names);
        let Expr::Log(log) = parse_expr(r#"{a="b"} | logfmt"#).unwrap() else { panic!("not a log query") };
        let mut full = Pipeline::new(&log.pipeline).unwrap();
        let stream = Labels::from_pairs([("a", "b")]);
        let mut next = crate::test_random::xorshift(0x51af_d7ed_558c_cd1d);
        let lines: Vec<String> = (0..20_000)
            .map(|_| {
                let count = (next() % 16) as usize;
                (0..count).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect()
            })
            .collect();
        let line_refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut kept: Vec<Vec<(String, String)>> = vec![Vec::new(); lines.len()];
        let semantics = columns.extract(&line_refs, &mut |index, name, value| {
            kept[index].push((name.to_string(), value.to_string()));
        });
        assert_eq!(semantics, Some(LOGFMT_FIELD_COLUMNS_SEMANTICS));
        for (line, kept) in lines.iter().zip(&mut kept) {
            let labels = full.process(&stream, &LogEntry::new(1, line.as_str())).unwrap().labels;
            let mut expected: Vec<(String, String)> = names
                .iter()
                .filter_map(|name| labels.get(name).map(|value| (name.to_string(), value.to_string())))
                .collect();
            expected.sort();
            kept.sort();
            assert_eq!(*kept, expected, "{line:?}");
        }
    }
}

//! One line-oriented parser for the text formats and OpenMetrics; the [`Dialect`] switches the few
//! rules that differ (comments, `# EOF`, timestamp unit, exemplars, blank lines, HELP escapes).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use oxeye_model::{MetricMetadata, MetricType};

use super::float::{format_openmetrics_float, parse_float};
use super::{Exposition, ExpositionFormat, MetricFamilyMetadata, ScrapedExemplar, ScrapedSample};
use crate::ScrapeError;

/// The rules that differ between the text formats and OpenMetrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// Text 0.0.4 and 1.0.0: any `#` line that is not HELP/TYPE is a comment, timestamps are integer
    /// milliseconds, no exemplars, blank lines allowed, HELP escapes `\\` and `\n`.
    Text,
    /// OpenMetrics 1.0: only HELP/TYPE/UNIT/EOF comments, float-second timestamps, exemplars, no blank
    /// lines, HELP also escapes `\"`, and the body must end with `# EOF`.
    OpenMetrics,
}

/// A label set as written: `(name, value)` pairs.
type LabelPairs<'body> = Vec<(Cow<'body, str>, Cow<'body, str>)>;

/// How much of an offending line an error message quotes.
const SNIPPET_CHARACTERS: usize = 60;

pub(super) fn parse(body: &[u8], format: ExpositionFormat) -> Result<Exposition<'_>, ScrapeError> {
    let text = std::str::from_utf8(body).map_err(|utf8_error| {
        let valid_prefix = body.get(..utf8_error.valid_up_to()).unwrap_or_default();
        let line_number = valid_prefix.iter().filter(|byte| **byte == b'\n').count() + 1;
        ScrapeError::Parse { line_number, reason: "invalid UTF-8".to_string() }
    })?;
    let dialect = match format {
        ExpositionFormat::OpenMetrics100 => Dialect::OpenMetrics,
        ExpositionFormat::PrometheusText004 | ExpositionFormat::PrometheusText100 => Dialect::Text,
    };
    let mut state = ParserState::default();
    let mut eof_line_number: Option<usize> = None;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((index, raw_line)) = lines.next() {
        let line_number = index + 1;
        let is_last_piece = lines.peek().is_none();
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if eof_line_number.is_some() {
            if line.is_empty() && is_last_piece {
                break;
            }
            return Err(ScrapeError::Parse { line_number, reason: "unexpected data after # EOF".to_string() });
        }
        let mut cursor = LineCursor { line, position: 0, line_number };
        cursor.skip_blanks();
        if cursor.at_end() {
            if dialect == Dialect::OpenMetrics && !is_last_piece {
                return Err(cursor.error("blank lines are not allowed in OpenMetrics".to_string()));
            }
            continue;
        }
        if cursor.peek() == Some(b'#') {
            let outcome = match dialect {
                Dialect::Text => state.text_comment(&mut cursor)?,
                Dialect::OpenMetrics => state.openmetrics_comment(&mut cursor)?,
            };
            if outcome == CommentOutcome::EndOfFile {
                eof_line_number = Some(line_number);
            }
            continue;
        }
        let sample = state.sample(&mut cursor, dialect)?;
        state.samples.push(sample);
    }
    if dialect == Dialect::OpenMetrics && eof_line_number.is_none() {
        let line_number = text.split('\n').count();
        return Err(ScrapeError::Parse { line_number, reason: "data does not end with # EOF".to_string() });
    }
    Ok(Exposition { samples: state.samples, families: state.families })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommentOutcome {
    Handled,
    EndOfFile,
}

#[derive(Default)]
struct ParserState<'body> {
    samples: Vec<ScrapedSample<'body>>,
    families: Vec<MetricFamilyMetadata>,
    family_index: HashMap<String, usize>,
    /// The family of the latest HELP/TYPE/UNIT line: samples whose name belongs to it take its type.
    current_family: Option<usize>,
    /// Normalised `le`/`quantile` values by their written form (`None`: already canonical). Bounds
    /// repeat for every series of a histogram, so each is formatted once per body.
    normalised_bounds: HashMap<String, Option<String>>,
}

impl<'body> ParserState<'body> {
    fn family_mut(&mut self, name: &str) -> &mut MetricFamilyMetadata {
        let index = match self.family_index.get(name) {
            Some(index) => *index,
            None => {
                let index = self.families.len();
                self.families
                    .push(MetricFamilyMetadata { name: name.to_string(), metadata: MetricMetadata::default() });
                self.family_index.insert(name.to_string(), index);
                index
            }
        };
        self.current_family = Some(index);
        // The index was just looked up or pushed, so it is in range.
        &mut self.families[index]
    }

    /// `# HELP name text`, `# TYPE name type`; any other `#` line is a comment.
    fn text_comment(&mut self, cursor: &mut LineCursor<'body>) -> Result<CommentOutcome, ScrapeError> {
        cursor.advance(1);
        cursor.skip_blanks();
        let keyword = cursor.take_until_blank();
        if !matches!(keyword, "HELP" | "TYPE") || cursor.skip_blanks() == 0 || cursor.at_end() {
            return Ok(CommentOutcome::Handled);
        }
        let family_name = cursor.metadata_name()?;
        let separator_blanks = cursor.skip_blanks();
        if keyword == "HELP" {
            if separator_blanks == 0 && !cursor.at_end() {
                return Err(cursor.error(format!("expected a blank after the metric name in {keyword}")));
            }
            let help = unescape_help(cursor.rest(), Dialect::Text);
            self.family_mut(&family_name).metadata.help = help;
            return Ok(CommentOutcome::Handled);
        }
        let type_word = cursor.rest().trim_end_matches([' ', '\t']);
        let metric_type = parse_type_word(type_word, Dialect::Text)
            .ok_or_else(|| cursor.error(format!("invalid metric type {:?}", truncate(type_word))))?;
        self.family_mut(&family_name).metadata.metric_type = metric_type;
        Ok(CommentOutcome::Handled)
    }

    /// `# HELP`, `# TYPE`, `# UNIT` or `# EOF`, exactly; anything else is an error in OpenMetrics.
    fn openmetrics_comment(&mut self, cursor: &mut LineCursor<'body>) -> Result<CommentOutcome, ScrapeError> {
        let line = cursor.rest();
        if line == "# EOF" {
            return Ok(CommentOutcome::EndOfFile);
        }
        let Some(after_hash) = line.strip_prefix("# ") else {
            return Err(cursor.error(format!("invalid comment {:?}", truncate(line))));
        };
        let keyword = after_hash.split(' ').next().unwrap_or("");
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") || after_hash.len() <= keyword.len() + 1 {
            return Err(
                cursor.error(format!("invalid comment {:?}: expected # HELP, # TYPE, # UNIT or # EOF", truncate(line)))
            );
        }
        cursor.advance(2 + keyword.len() + 1);
        let family_name = cursor.metadata_name()?;
        let text_after_name = match cursor.peek() {
            None => "",
            Some(b' ') => {
                cursor.advance(1);
                cursor.rest()
            }
            Some(_) => {
                return Err(cursor.error(format!("expected a space after the metric name in # {keyword}")));
            }
        };
        match keyword {
            "HELP" => {
                let help = unescape_help(text_after_name, Dialect::OpenMetrics);
                self.family_mut(&family_name).metadata.help = help;
            }
            "TYPE" => {
                let metric_type = parse_type_word(text_after_name, Dialect::OpenMetrics)
                    .ok_or_else(|| cursor.error(format!("invalid metric type {:?}", truncate(text_after_name))))?;
                self.family_mut(&family_name).metadata.metric_type = metric_type;
            }
            _ => {
                self.family_mut(&family_name).metadata.unit = text_after_name.to_string();
            }
        }
        Ok(CommentOutcome::Handled)
    }

    /// `name{labels} value [timestamp] [# {exemplar labels} value [timestamp]]`.
    fn sample(
        &mut self,
        cursor: &mut LineCursor<'body>,
        dialect: Dialect,
    ) -> Result<ScrapedSample<'body>, ScrapeError> {
        let series_start = cursor.position;
        let mut metric_name: Option<Cow<'body, str>> = None;
        if cursor.peek() != Some(b'{') {
            let name = cursor.take_legacy_metric_name();
            if name.is_empty() {
                return Err(cursor.error(format!("expected a metric name, got {:?}", cursor.snippet())));
            }
            metric_name = Some(Cow::Borrowed(name));
        }
        let mut labels = LabelPairs::new();
        if cursor.peek() == Some(b'{') {
            cursor.label_set(&mut labels, if metric_name.is_none() { Some(&mut metric_name) } else { None })?;
        }
        let Some(metric_name) = metric_name else {
            return Err(cursor.error("metric name missing: expected a quoted name first in the braces".to_string()));
        };
        let series_text = cursor.line.get(series_start..cursor.position).unwrap_or("");
        if cursor.skip_blanks() == 0 {
            return Err(if cursor.at_end() {
                cursor.error(format!("missing value after {metric_name:?}"))
            } else {
                cursor.error(format!("expected a blank before the value, got {:?}", cursor.snippet()))
            });
        }
        let value_text = cursor.take_until_blank();
        let value =
            parse_float(value_text).ok_or_else(|| cursor.error(format!("invalid value {:?}", truncate(value_text))))?;
        cursor.skip_blanks();
        let mut timestamp_ms = None;
        if !cursor.at_end() && cursor.peek() != Some(b'#') {
            let timestamp_text = cursor.take_until_blank();
            timestamp_ms = Some(cursor.timestamp(timestamp_text, dialect)?);
            cursor.skip_blanks();
        }
        let mut exemplar = None;
        if !cursor.at_end() {
            if cursor.peek() != Some(b'#') || dialect == Dialect::Text {
                return Err(cursor.error(format!("unexpected text after the sample: {:?}", cursor.snippet())));
            }
            exemplar = Some(cursor.exemplar()?);
        }
        check_unique_label_names(cursor, &labels)?;
        let metric_type = self.sample_type(&metric_name);
        for (name, value) in &mut labels {
            let is_float_label = (metric_type == MetricType::Histogram && name == "le")
                || (metric_type == MetricType::Summary && name == "quantile");
            if !is_float_label {
                continue;
            }
            let normalised = match self.normalised_bounds.get(value.as_ref()) {
                Some(cached) => cached.clone(),
                None => {
                    let normalised = parse_float(value)
                        .map(format_openmetrics_float)
                        .filter(|formatted| formatted.as_str() != value.as_ref());
                    self.normalised_bounds.insert(value.to_string(), normalised.clone());
                    normalised
                }
            };
            if let Some(normalised) = normalised {
                *value = Cow::Owned(normalised);
            }
        }
        Ok(ScrapedSample {
            metric_name,
            labels,
            value,
            timestamp_ms,
            exemplar,
            metric_type,
            series_text,
            line_number: cursor.line_number,
        })
    }

    /// The type of the current family when `metric_name` is one of its sample names.
    fn sample_type(&self, metric_name: &str) -> MetricType {
        let Some(family) = self.current_family.and_then(|index| self.families.get(index)) else {
            return MetricType::Unknown;
        };
        let family_type = family.metadata.metric_type;
        let Some(suffix) = metric_name.strip_prefix(family.name.as_str()) else {
            return MetricType::Unknown;
        };
        let allowed_suffixes: &[&str] = match family_type {
            MetricType::Counter => &["", "_total", "_created"],
            MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            MetricType::Summary => &["", "_count", "_sum", "_created"],
            MetricType::Info => &["", "_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
        };
        if allowed_suffixes.contains(&suffix) { family_type } else { MetricType::Unknown }
    }
}

fn parse_type_word(word: &str, dialect: Dialect) -> Option<MetricType> {
    let metric_type = MetricType::parse(word)?;
    // `untyped` is the text format's word, `unknown` OpenMetrics'; the OpenMetrics-only types are
    // rejected in the text format as Prometheus does.
    let allowed = match dialect {
        Dialect::Text => {
            matches!(metric_type, MetricType::Counter | MetricType::Gauge | MetricType::Histogram | MetricType::Summary)
                || word == "untyped"
        }
        Dialect::OpenMetrics => word != "untyped",
    };
    allowed.then_some(metric_type)
}

fn unescape_help(text: &str, dialect: Dialect) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut output = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            output.push(character);
            continue;
        }
        match characters.next() {
            Some('\\') => output.push('\\'),
            Some('n') => output.push('\n'),
            Some('"') if dialect == Dialect::OpenMetrics => output.push('"'),
            Some(other) => {
                output.push('\\');
                output.push(other);
            }
            None => output.push('\\'),
        }
    }
    output
}

fn check_unique_label_names(cursor: &LineCursor<'_>, labels: &LabelPairs<'_>) -> Result<(), ScrapeError> {
    let duplicate = if labels.len() <= 16 {
        labels.iter().enumerate().find_map(|(index, (name, _))| {
            labels.iter().skip(index + 1).any(|(other, _)| other == name).then_some(name)
        })
    } else {
        let mut seen: HashSet<&str> = HashSet::with_capacity(labels.len());
        labels.iter().map(|(name, _)| name).find(|name| !seen.insert(name))
    };
    match duplicate {
        Some(name) => Err(cursor.error(format!("duplicate label name {:?}", truncate(name)))),
        None => Ok(()),
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(SNIPPET_CHARACTERS) {
        Some((byte_index, _)) => text.get(..byte_index).unwrap_or(text),
        None => text,
    }
}

/// A position in one line. Every delimiter the parser looks for is ASCII, so slicing at the positions
/// it stops at always falls on character boundaries; slicing still goes through `get` to stay panic-free.
struct LineCursor<'body> {
    line: &'body str,
    position: usize,
    line_number: usize,
}

impl<'body> LineCursor<'body> {
    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.position).copied()
    }

    fn at_end(&self) -> bool {
        self.position >= self.line.len()
    }

    fn advance(&mut self, bytes: usize) {
        self.position = (self.position + bytes).min(self.line.len());
    }

    fn rest(&self) -> &'body str {
        self.line.get(self.position..).unwrap_or("")
    }

    fn snippet(&self) -> &'body str {
        if self.at_end() { "end of line" } else { truncate(self.rest()) }
    }

    /// A parse error at this line; the message ends by quoting the line.
    fn error(&self, reason: String) -> ScrapeError {
        let reason = format!("{reason} in {:?}", truncate(self.line));
        ScrapeError::Parse { line_number: self.line_number, reason }
    }

    /// Skips spaces and tabs; returns how many.
    fn skip_blanks(&mut self) -> usize {
        let start = self.position;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
        self.position - start
    }

    fn take_while(&mut self, mut predicate: impl FnMut(usize, u8) -> bool) -> &'body str {
        let start = self.position;
        while let Some(byte) = self.peek() {
            if !predicate(self.position - start, byte) {
                break;
            }
            self.position += 1;
        }
        self.line.get(start..self.position).unwrap_or("")
    }

    fn take_until_blank(&mut self) -> &'body str {
        self.take_while(|_, byte| byte != b' ' && byte != b'\t')
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    fn take_legacy_metric_name(&mut self) -> &'body str {
        self.take_while(|offset, byte| {
            byte.is_ascii_alphabetic() || byte == b'_' || byte == b':' || (offset > 0 && byte.is_ascii_digit())
        })
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`.
    fn take_legacy_label_name(&mut self) -> &'body str {
        self.take_while(|offset, byte| {
            byte.is_ascii_alphabetic() || byte == b'_' || (offset > 0 && byte.is_ascii_digit())
        })
    }

    /// The metric name of a HELP/TYPE/UNIT line: quoted (UTF-8) or everything up to the next blank.
    fn metadata_name(&mut self) -> Result<Cow<'body, str>, ScrapeError> {
        if self.peek() == Some(b'"') {
            return self.quoted_string("metric name");
        }
        let name = self.take_until_blank();
        if name.is_empty() {
            return Err(self.error("expected a metric name".to_string()));
        }
        Ok(Cow::Borrowed(name))
    }

    /// A `"…"` string at the cursor, unescaping `\\`, `\"` and `\n`; other escapes are kept verbatim,
    /// as Prometheus does.
    fn quoted_string(&mut self, what: &str) -> Result<Cow<'body, str>, ScrapeError> {
        if self.peek() != Some(b'"') {
            return Err(self.error(format!("expected a quoted {what}, got {:?}", self.snippet())));
        }
        let content_start = self.position + 1;
        let bytes = self.line.as_bytes();
        let mut index = content_start;
        let mut has_escape = false;
        loop {
            match bytes.get(index) {
                None => return Err(self.error(format!("unterminated quoted {what}"))),
                Some(b'\\') => {
                    has_escape = true;
                    index += 2;
                }
                Some(b'"') => break,
                Some(_) => index += 1,
            }
        }
        let content = self.line.get(content_start..index).unwrap_or("");
        self.position = index + 1;
        if !has_escape {
            return Ok(Cow::Borrowed(content));
        }
        let mut output = String::with_capacity(content.len());
        let mut characters = content.chars();
        while let Some(character) = characters.next() {
            if character != '\\' {
                output.push(character);
                continue;
            }
            match characters.next() {
                Some('\\') => output.push('\\'),
                Some('"') => output.push('"'),
                Some('n') => output.push('\n'),
                Some(other) => {
                    output.push('\\');
                    output.push(other);
                }
                None => output.push('\\'),
            }
        }
        Ok(Cow::Owned(output))
    }

    /// `{name="value",…}` with an optional trailing comma. When `metric_name` is given (the line began
    /// with `{`), a first quoted string not followed by `=` is the metric name.
    fn label_set(
        &mut self,
        labels: &mut LabelPairs<'body>,
        mut metric_name: Option<&mut Option<Cow<'body, str>>>,
    ) -> Result<(), ScrapeError> {
        self.advance(1);
        let mut is_first = true;
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'}') => {
                    self.advance(1);
                    return Ok(());
                }
                None => return Err(self.error("unterminated label set: expected '}'".to_string())),
                _ => {}
            }
            let name: Cow<'body, str> = if self.peek() == Some(b'"') {
                self.quoted_string("label name")?
            } else {
                let name = self.take_legacy_label_name();
                if name.is_empty() {
                    return Err(self.error(format!("expected a label name, got {:?}", self.snippet())));
                }
                Cow::Borrowed(name)
            };
            self.skip_blanks();
            let is_bare_name = matches!(self.peek(), Some(b',' | b'}'));
            if is_bare_name
                && is_first
                && let Some(slot) = metric_name.as_deref_mut()
            {
                *slot = Some(name);
            } else {
                if self.peek() != Some(b'=') {
                    return Err(self.error(format!("expected '=' after label name {name:?}, got {:?}", self.snippet())));
                }
                self.advance(1);
                self.skip_blanks();
                let value = self.quoted_string("label value")?;
                labels.push((name, value));
                self.skip_blanks();
            }
            is_first = false;
            match self.peek() {
                Some(b',') => self.advance(1),
                Some(b'}') => {}
                _ => return Err(self.error(format!("expected ',' or '}}' in the label set, got {:?}", self.snippet()))),
            }
        }
    }

    fn timestamp(&self, text: &str, dialect: Dialect) -> Result<i64, ScrapeError> {
        match dialect {
            Dialect::Text => text.parse::<i64>().map_err(|_| {
                self.error(format!("invalid timestamp {:?}: expected integer milliseconds", truncate(text)))
            }),
            Dialect::OpenMetrics => {
                let seconds = parse_float(text)
                    .filter(|seconds| seconds.is_finite())
                    .ok_or_else(|| self.error(format!("invalid timestamp {:?}", truncate(text))))?;
                seconds_to_milliseconds(seconds)
                    .ok_or_else(|| self.error(format!("timestamp {:?} is out of range", truncate(text))))
            }
        }
    }

    /// `# {labels} value [timestamp]` at the cursor (OpenMetrics only).
    fn exemplar(&mut self) -> Result<ScrapedExemplar<'body>, ScrapeError> {
        self.advance(1);
        if self.skip_blanks() == 0 || self.peek() != Some(b'{') {
            return Err(self.error(format!("expected an exemplar '# {{labels}} value', got {:?}", self.snippet())));
        }
        let mut labels = LabelPairs::new();
        self.label_set(&mut labels, None)?;
        check_unique_label_names(self, &labels)?;
        if self.skip_blanks() == 0 {
            return Err(self.error("missing exemplar value".to_string()));
        }
        let value_text = self.take_until_blank();
        let value = parse_float(value_text)
            .ok_or_else(|| self.error(format!("invalid exemplar value {:?}", truncate(value_text))))?;
        self.skip_blanks();
        let mut timestamp_ms = None;
        if !self.at_end() {
            let timestamp_text = self.take_until_blank();
            timestamp_ms = Some(self.timestamp(timestamp_text, Dialect::OpenMetrics)?);
            self.skip_blanks();
        }
        if !self.at_end() {
            return Err(self.error(format!("unexpected text after the exemplar: {:?}", self.snippet())));
        }
        Ok(ScrapedExemplar { labels, value, timestamp_ms })
    }
}

/// Float seconds to whole milliseconds, rounded to the nearest (so `1700000123.456` is exactly
/// `1700000123456` despite binary floating point); `None` outside the `i64` range.
fn seconds_to_milliseconds(seconds: f64) -> Option<i64> {
    let milliseconds = (seconds * 1000.0).round();
    // i64::MAX as f64 rounds up to 2^63, so compare with a strict bound.
    if (-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&milliseconds) {
        Some(milliseconds as i64)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(body: &str) -> Result<Exposition<'_>, ScrapeError> {
        parse(body.as_bytes(), ExpositionFormat::PrometheusText004)
    }

    fn openmetrics(body: &str) -> Result<Exposition<'_>, ScrapeError> {
        parse(body.as_bytes(), ExpositionFormat::OpenMetrics100)
    }

    fn error_of(result: Result<Exposition<'_>, ScrapeError>) -> (usize, String) {
        match result {
            Err(ScrapeError::Parse { line_number, reason }) => (line_number, reason),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn label_pairs(sample: &ScrapedSample<'_>) -> Vec<(String, String)> {
        sample.labels.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn text_sample_with_labels_timestamp_and_trailing_comma() {
        let exposition = text("http_requests_total{method=\"post\",code=\"200\",} 1027 1395066363000\n").unwrap();
        let sample = &exposition.samples[0];
        assert_eq!(sample.metric_name, "http_requests_total");
        assert_eq!(
            label_pairs(sample),
            vec![("method".to_string(), "post".to_string()), ("code".to_string(), "200".to_string())]
        );
        assert_eq!(sample.value, 1027.0);
        assert_eq!(sample.timestamp_ms, Some(1_395_066_363_000));
        assert_eq!(sample.line_number, 1);
        assert_eq!(sample.series_text, "http_requests_total{method=\"post\",code=\"200\",}");
    }

    #[test]
    fn text_blanks_tabs_comments_and_special_values() {
        let body =
            "# a free comment\n\n  metric_without_labels\t12.47\nnan_metric NaN\npos +Inf\nneg -inf\nempty{} 3\n";
        let exposition = text(body).unwrap();
        let values: Vec<f64> = exposition.samples.iter().map(|sample| sample.value).collect();
        assert_eq!(values[0], 12.47);
        assert!(values[1].is_nan());
        assert_eq!(values[2], f64::INFINITY);
        assert_eq!(values[3], f64::NEG_INFINITY);
        assert_eq!(values[4], 3.0);
        assert_eq!(exposition.samples[0].line_number, 3);
        assert!(exposition.families.is_empty());
    }

    #[test]
    fn label_value_escapes_are_unescaped_and_unknown_escapes_kept() {
        let exposition = text("msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\",raw=\"a\\tb\"} 1.458255915e9\n").unwrap();
        let labels = label_pairs(&exposition.samples[0]);
        assert_eq!(labels[0].1, "C:\\DIR\\FILE.TXT");
        assert_eq!(labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(labels[2].1, "a\\tb");
    }

    #[test]
    fn quoted_utf8_metric_and_label_names() {
        let body = "# HELP \"my.metric\" A dotted metric.\n# TYPE \"my.metric\" gauge\n{\"my.metric\",\"a.b\"=\"x\"} 1\nlegacy{\"queue.name\"=\"emails\"} 4\n";
        let exposition = parse(body.as_bytes(), ExpositionFormat::PrometheusText100).unwrap();
        assert_eq!(exposition.samples[0].metric_name, "my.metric");
        assert_eq!(label_pairs(&exposition.samples[0]), vec![("a.b".to_string(), "x".to_string())]);
        assert_eq!(exposition.samples[0].metric_type, MetricType::Gauge);
        assert_eq!(exposition.samples[1].metric_name, "legacy");
        assert_eq!(exposition.families[0].name, "my.metric");
        assert_eq!(exposition.families[0].metadata.help, "A dotted metric.");
        let labels = exposition.samples[0].to_labels();
        assert_eq!(labels.metric_name(), Some("my.metric"));
        assert_eq!(labels.get("a.b"), Some("x"));
    }

    #[test]
    fn help_and_type_become_family_metadata() {
        let body = "# HELP api_http_requests_total The total number of HTTP requests.\\nSecond line \\\\ done\n# TYPE api_http_requests_total counter\napi_http_requests_total 3\n";
        let exposition = text(body).unwrap();
        assert_eq!(exposition.families.len(), 1);
        let family = &exposition.families[0];
        assert_eq!(family.name, "api_http_requests_total");
        assert_eq!(family.metadata.metric_type, MetricType::Counter);
        assert_eq!(family.metadata.help, "The total number of HTTP requests.\nSecond line \\ done");
        assert_eq!(exposition.samples[0].metric_type, MetricType::Counter);
    }

    #[test]
    fn histogram_le_and_summary_quantile_are_normalised_like_prometheus_3() {
        let body = "# TYPE latency_seconds histogram\nlatency_seconds_bucket{le=\"1\"} 1\nlatency_seconds_bucket{le=\"2.50\"} 2\nlatency_seconds_bucket{le=\"+inf\"} 3\nlatency_seconds_count 3\n# TYPE rpc_seconds summary\nrpc_seconds{quantile=\"0.50\"} 1\nrpc_seconds{quantile=\"1\"} 2\n# TYPE untyped_bucket untyped\nuntyped_bucket{le=\"1\"} 4\n";
        let exposition = text(body).unwrap();
        let values: Vec<String> = exposition
            .samples
            .iter()
            .flat_map(|sample| sample.labels.iter().map(|(_, value)| value.to_string()))
            .collect();
        assert_eq!(values, vec!["1.0", "2.5", "+Inf", "0.5", "1.0", "1"]);
        assert_eq!(exposition.samples[3].metric_type, MetricType::Histogram);
    }

    #[test]
    fn text_errors_name_the_line_and_the_problem() {
        assert_eq!(error_of(text("ok 1\nthis is garbage\n")).0, 2);
        let (line, reason) = error_of(text("ok 1\nmetric{a=\"1\" 2\n"));
        assert_eq!(line, 2);
        assert!(reason.contains("expected ',' or '}'"), "{reason}");
        let (_, reason) = error_of(text("metric 12abc\n"));
        assert!(reason.contains("invalid value \"12abc\""), "{reason}");
        let (_, reason) = error_of(text("metric 1 1.5\n"));
        assert!(reason.contains("invalid timestamp"), "{reason}");
        let (_, reason) = error_of(text("metric{a=\"1\",a=\"2\"} 1\n"));
        assert!(reason.contains("duplicate label name \"a\""), "{reason}");
        let (_, reason) = error_of(text("# TYPE metric histogrammm\n"));
        assert!(reason.contains("invalid metric type"), "{reason}");
        let (_, reason) = error_of(text("metric{a=\"unterminated} 1\n"));
        assert!(reason.contains("unterminated"), "{reason}");
        let (_, reason) = error_of(text("metric\n"));
        assert!(reason.contains("missing value"), "{reason}");
        let (_, reason) = error_of(text("{a=\"b\"} 1\n"));
        assert!(reason.contains("metric name missing"), "{reason}");
        let (line, reason) = error_of(parse(b"ok 1\nbad\xff 1\n", ExpositionFormat::PrometheusText004));
        assert_eq!((line, reason.as_str()), (2, "invalid UTF-8"));
        let (_, reason) = error_of(text("metric 1 # {a=\"b\"} 1\n"));
        assert!(reason.contains("unexpected text"), "{reason}");
    }

    #[test]
    fn openmetrics_counter_with_unit_created_and_exemplar() {
        let body = "# TYPE foo_seconds counter\n# UNIT foo_seconds seconds\n# HELP foo_seconds Time \\\"spent\\\".\nfoo_seconds_total{a=\"b\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879606.5\nfoo_seconds_created{a=\"b\"} 1520430000.123\n# EOF\n";
        let exposition = openmetrics(body).unwrap();
        let family = &exposition.families[0];
        assert_eq!(family.name, "foo_seconds");
        assert_eq!(family.metadata.metric_type, MetricType::Counter);
        assert_eq!(family.metadata.unit, "seconds");
        assert_eq!(family.metadata.help, "Time \"spent\".");
        let total = &exposition.samples[0];
        assert_eq!(total.timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(total.metric_type, MetricType::Counter);
        let exemplar = total.exemplar.as_ref().unwrap();
        assert_eq!(exemplar.value, 0.67);
        assert_eq!(exemplar.timestamp_ms, Some(1_520_879_606_500));
        assert_eq!(exemplar.labels[0].1, "KOO5S4vxi0o");
        assert_eq!(exemplar.to_exemplar(0).labels.get("trace_id"), Some("KOO5S4vxi0o"));
        assert_eq!(exposition.samples[1].metric_name, "foo_seconds_created");
        assert_eq!(exposition.samples[1].value, 1_520_430_000.123);
        assert_eq!(exposition.samples[1].metric_type, MetricType::Counter);
    }

    #[test]
    fn openmetrics_exemplar_without_timestamp_and_info_stateset_gaugehistogram() {
        let body = "# TYPE a histogram\na_bucket{le=\"1\"} 1 # {id=\"x\"} 0.5\na_bucket{le=\"+Inf\"} 1\n# TYPE b info\nb_info{v=\"1\"} 1\n# TYPE c stateset\nc{c=\"on\"} 1\n# TYPE d gaugehistogram\nd_bucket{le=\"1\"} 1\nd_gcount 1\nd_gsum 0.5\n# EOF";
        let exposition = openmetrics(body).unwrap();
        assert_eq!(exposition.samples[0].labels[0].1, "1.0");
        assert_eq!(exposition.samples[0].exemplar.as_ref().unwrap().timestamp_ms, None);
        let types: Vec<MetricType> = exposition.samples.iter().map(|sample| sample.metric_type).collect();
        assert_eq!(
            types,
            vec![
                MetricType::Histogram,
                MetricType::Histogram,
                MetricType::Info,
                MetricType::StateSet,
                MetricType::GaugeHistogram,
                MetricType::GaugeHistogram,
                MetricType::GaugeHistogram
            ]
        );
        // Gauge histograms keep `le` as written, as Prometheus 3 does.
        assert_eq!(exposition.samples[4].labels[0].1, "1");
    }

    #[test]
    fn openmetrics_structure_errors() {
        let (line, reason) = error_of(openmetrics("a 1\n"));
        assert_eq!(reason, "data does not end with # EOF");
        assert_eq!(line, 2);
        let (line, reason) = error_of(openmetrics("a 1\n# EOF\nb 2\n"));
        assert_eq!((line, reason.as_str()), (3, "unexpected data after # EOF"));
        let (line, reason) = error_of(openmetrics("a 1\n\nb 1\n# EOF\n"));
        assert_eq!(line, 2);
        assert!(reason.contains("blank lines"), "{reason}");
        let (_, reason) = error_of(openmetrics("# just a comment\n# EOF\n"));
        assert!(reason.contains("invalid comment"), "{reason}");
        let (_, reason) = error_of(openmetrics("# TYPE a untyped\n# EOF\n"));
        assert!(reason.contains("invalid metric type"), "{reason}");
        let (_, reason) = error_of(openmetrics("a 1 # {id=\"x\"}\n# EOF\n"));
        assert!(reason.contains("missing exemplar value"), "{reason}");
        let (_, reason) = error_of(openmetrics("a 1 1e400\n# EOF\n"));
        assert!(reason.contains("invalid timestamp"), "{reason}");
    }

    #[test]
    fn the_fallback_format_parses_text_and_content_types_are_negotiated() {
        assert_eq!(ExpositionFormat::from_content_type(None), ExpositionFormat::PrometheusText004);
        assert_eq!(
            ExpositionFormat::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
            ExpositionFormat::PrometheusText004
        );
        assert_eq!(
            ExpositionFormat::from_content_type(Some("text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8")),
            ExpositionFormat::PrometheusText100
        );
        assert_eq!(
            ExpositionFormat::from_content_type(Some(
                "Application/OpenMetrics-Text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
            )),
            ExpositionFormat::OpenMetrics100
        );
        assert_eq!(
            ExpositionFormat::from_content_type(Some("application/openmetrics-text; version=0.0.1")),
            ExpositionFormat::OpenMetrics100
        );
        assert_eq!(ExpositionFormat::from_content_type(Some("application/json")), ExpositionFormat::PrometheusText004);
        assert_eq!(ExpositionFormat::from_content_type(Some("text/html")), ExpositionFormat::PrometheusText004);
        let fallback = ExpositionFormat::OpenMetrics100;
        assert_eq!(ExpositionFormat::from_content_type_or(None, fallback), fallback);
        assert_eq!(ExpositionFormat::from_content_type_or(Some("application/json"), fallback), fallback);
        assert_eq!(
            ExpositionFormat::from_content_type_or(Some("text/plain"), fallback),
            ExpositionFormat::PrometheusText004
        );
    }

    #[test]
    fn no_panic_on_truncated_or_odd_input() {
        for body in [
            "{",
            "{\"",
            "{\"a\"",
            "a{",
            "a{b",
            "a{b=",
            "a{b=\"",
            "a{b=\"\\",
            "a{,} 1",
            "# HELP",
            "# HELP ",
            "# TYPE a",
            "a 1 # {",
            "\u{feff}a 1",
            "a\u{00e9} 1",
            "é 1",
            "a{é=\"1\"} 1",
            "a 1 2 3",
        ] {
            let _ = text(body);
            let _ = openmetrics(body);
        }
    }
}

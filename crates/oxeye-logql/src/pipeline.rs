//! Executing a log pipeline on one entry: line filters, parsers, label filters and formatters, as Loki's
//! `pkg/logql/log` stages do.
//!
//! Labels seen by the stages are the stream labels, then structured metadata, then parsed labels. A parsed
//! label or structured metadata whose name is already a stream label is stored as `<name>_extracted`, and
//! a parsed label named like structured metadata replaces it, as in Loki. Parser and
//! conversion failures do not drop the entry: they set `__error__` (`JSONParserErr`, `LogfmtParserErr`,
//! `LabelFilterErr`, `TemplateFormatErr`) and `__error_details__`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use oxeye_model::logs::{LogEntry, LogEntryRef};
use oxeye_model::{Labels, Matcher};
use regex::Regex;

use crate::json_fields::{
    EXPECTED_END_OF_LINE, EXPECTED_MEMBER_BRACE, JsonScalar, TopLevelKey, visit_fields, visit_fields_where,
};
use crate::line_regex::LineRegex;
use crate::logfmt::{self, HintedKeySearch};
use crate::pattern::Pattern;
use crate::swar::{HIGHS, ascii_label_name_bytes};
use crate::syntax::{
    Grouping, LabelFilter, LabelFormatItem, LabelItem, LineFilter, LineFilterOp, NumberKind, ParserStage, Stage,
    Unwrap,
    parser::{parse_bytes_text, parse_duration_seconds_precise},
};
use crate::template::{Template, TemplateContext};

/// ANSI colour and cursor escape sequences (CSI ... letter), which `| decolorize` removes.
#[allow(clippy::unwrap_used)] // a constant pattern, compiled by the tests
static ANSI_ESCAPE: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| Regex::new(r"\x1b\[[0-9;]*[a-zA-Z]").unwrap());

/// The `__error__` label.
pub const ERROR_LABEL: &str = "__error__";
/// The `__error_details__` label.
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// An IP address, range or CIDR for `ip()` label filters (IPv4 only).
#[derive(Debug, Clone)]
pub struct IpMatcher {
    low: u32,
    high: u32,
}

fn parse_ipv4(text: &str) -> Option<u32> {
    text.trim().parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

impl IpMatcher {
    /// Parses `a.b.c.d`, `a.b.c.d-e.f.g.h` or `a.b.c.d/n`.
    ///
    /// # Errors
    /// A message naming the pattern.
    pub fn parse(pattern: &str) -> Result<IpMatcher, String> {
        let invalid = || format!("invalid ip pattern {pattern:?}");
        if let Some((address, bits)) = pattern.split_once('/') {
            let address = parse_ipv4(address).ok_or_else(invalid)?;
            let bits: u32 = bits.parse().ok().filter(|bits| *bits <= 32).ok_or_else(invalid)?;
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            return Ok(IpMatcher { low: address & mask, high: (address & mask) | !mask });
        }
        if let Some((low, high)) = pattern.split_once('-') {
            return Ok(IpMatcher {
                low: parse_ipv4(low).ok_or_else(invalid)?,
                high: parse_ipv4(high).ok_or_else(invalid)?,
            });
        }
        let address = parse_ipv4(pattern).ok_or_else(invalid)?;
        Ok(IpMatcher { low: address, high: address })
    }

    fn matches(&self, value: &str) -> bool {
        parse_ipv4(value).is_some_and(|address| address >= self.low && address <= self.high)
    }
}

enum CompiledLineFilter {
    /// Literal needles searched with SIMD substring search (memchr's `memmem`).
    Contains(Vec<memchr::memmem::Finder<'static>>, bool),
    Regex(Vec<Regex>, bool),
    Pattern(Vec<Pattern>, bool),
}

impl CompiledLineFilter {
    fn compile(filter: &LineFilter) -> Result<Self, String> {
        let negative = filter.op.is_negative();
        Ok(match filter.op {
            LineFilterOp::Contains | LineFilterOp::NotContains => CompiledLineFilter::Contains(
                filter.values.iter().map(|value| memchr::memmem::Finder::new(value.as_bytes()).into_owned()).collect(),
                negative,
            ),
            LineFilterOp::Regex | LineFilterOp::NotRegex => CompiledLineFilter::Regex(
                filter
                    .values
                    .iter()
                    .map(|value| Regex::new(value).map_err(|error| error.to_string()))
                    .collect::<Result<_, _>>()?,
                negative,
            ),
            LineFilterOp::Pattern | LineFilterOp::NotPattern => CompiledLineFilter::Pattern(
                filter.values.iter().map(|value| Pattern::parse(value)).collect::<Result<_, _>>()?,
                negative,
            ),
        })
    }

    fn keeps(&self, line: &str) -> bool {
        match self {
            CompiledLineFilter::Contains(finders, negative) => {
                finders.iter().any(|finder| finder.find(line.as_bytes()).is_some()) != *negative
            }
            CompiledLineFilter::Regex(regexes, negative) => {
                regexes.iter().any(|regex| regex.is_match(line)) != *negative
            }
            CompiledLineFilter::Pattern(patterns, negative) => {
                patterns.iter().any(|pattern| pattern.is_match(line)) != *negative
            }
        }
    }
}

enum CompiledLabelFilter {
    And(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
    Or(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
    Matcher(Matcher),
    Number { name: String, op: crate::syntax::CompareOp, value: f64, kind: NumberKind },
    Ip { name: String, negated: bool, matcher: IpMatcher },
}

impl CompiledLabelFilter {
    fn compile(filter: &LabelFilter) -> Result<Self, String> {
        Ok(match filter {
            LabelFilter::And(left, right) => {
                CompiledLabelFilter::And(Box::new(Self::compile(left)?), Box::new(Self::compile(right)?))
            }
            LabelFilter::Or(left, right) => {
                CompiledLabelFilter::Or(Box::new(Self::compile(left)?), Box::new(Self::compile(right)?))
            }
            LabelFilter::Paren(inner) => Self::compile(inner)?,
            LabelFilter::Matcher(matcher) => CompiledLabelFilter::Matcher(matcher.clone()),
            LabelFilter::Number { name, op, value, kind, .. } => {
                CompiledLabelFilter::Number { name: name.clone(), op: *op, value: *value, kind: *kind }
            }
            LabelFilter::Ip { name, negated, pattern } => {
                CompiledLabelFilter::Ip { name: name.clone(), negated: *negated, matcher: IpMatcher::parse(pattern)? }
            }
        })
    }

    /// Evaluates; a conversion failure records an error and keeps the entry.
    fn keeps(&self, state: &mut EntryState) -> bool {
        self.evaluate(state, FilterCheck::AtPosition, &mut false)
    }

    /// [`CompiledLabelFilter::keeps`] without its side effect, for a parser checking the filter early (see
    /// [`EarlyLabelFilter`]): a failed conversion keeps the entry and sets no error (the filter sets it at its
    /// own position), but counts as an error for the rest of this evaluation, as Loki's
    /// `labelFilterHint.matches` (`pkg/logql/log/label_filter_hints.go`) runs the filter and then restores the
    /// error labels. `error_seen` starts false and tells whether a conversion failed.
    fn keeps_early(&self, state: &mut EntryState, error_seen: &mut bool) -> bool {
        self.evaluate(state, FilterCheck::Early, error_seen)
    }

    fn evaluate(&self, state: &mut EntryState, check: FilterCheck, error_seen: &mut bool) -> bool {
        match self {
            CompiledLabelFilter::And(left, right) => {
                left.evaluate(state, check, error_seen) && right.evaluate(state, check, error_seen)
            }
            CompiledLabelFilter::Or(left, right) => {
                left.evaluate(state, check, error_seen) || right.evaluate(state, check, error_seen)
            }
            CompiledLabelFilter::Matcher(matcher) => matcher.matches(state.get(&matcher.name).unwrap_or("")),
            CompiledLabelFilter::Ip { name, negated, matcher } => {
                matcher.matches(state.get(name).unwrap_or("")) != *negated
            }
            // As Loki's numeric, duration and bytes filters (`pkg/logql/log/label_filter.go`): an entry
            // carrying `__error__` is kept, only string matchers filter it out.
            CompiledLabelFilter::Number { .. }
                if *error_seen || (state.has_error && state.get(ERROR_LABEL).is_some()) =>
            {
                true
            }
            CompiledLabelFilter::Number { name, op, value, kind } => {
                let Some(text) = state.get(name) else {
                    return false;
                };
                match convert(text, *kind) {
                    Some(number) => op.compare(number, *value),
                    None if check == FilterCheck::Early => {
                        *error_seen = true;
                        true
                    }
                    None => {
                        let details = format!("cannot convert {text:?} of label {name}");
                        state.set_error("LabelFilterErr", &details);
                        true
                    }
                }
            }
        }
    }
}

/// Where a label filter is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterCheck {
    /// At its own stage: a failed conversion sets `__error__`.
    AtPosition,
    /// Early, by a parser that just extracted its label: a failed conversion sets nothing.
    Early,
}

/// A label filter that `| json` or `| logfmt` checks right after it extracts the filter's one label,
/// dropping the line there when the filter fails, without reading the rest of it: Loki's label filter hints
/// (`LabelFilterHints`, `ShouldContinueParsingLine` in `pkg/logql/log/label_filter_hints.go`, and
/// `JSONParser.parseLabelValue`'s `errLabelDoesNotMatch` and `LogfmtParser.Process` in
/// `pkg/logql/log/parser.go`). A line that the filter drops early is dropped even when its tail is not JSON:
/// the filter fails before the parser sees the error (which would have made a numeric filter keep the line
/// at its own position). Likewise an `__error__` that a label filter between the parser and this one would
/// set (a failed conversion) comes too late to keep the line.
struct EarlyLabelFilter {
    /// The label whose extraction triggers the check (the parsed label's final name, `_extracted` suffix
    /// included).
    label: String,
    filter: CompiledLabelFilter,
    /// The filter's index among the pipeline's stages.
    stage: usize,
}

/// A parser's early label filters and, for the entry being parsed, the label filter stages whose result
/// they settled: one bit per stage index (stages from 64 on are never settled). A filter that passed its
/// early check without a failed conversion keeps the entry at its own position too (its label does not
/// change in between, and an error set later only makes a numeric filter keep the entry), so the pipeline
/// skips it there instead of evaluating it twice.
struct EarlyChecks<'a> {
    filters: &'a [EarlyLabelFilter],
    settled_stages: &'a mut u64,
}

/// At most this many early filters per parser (a bit mask tracks which ones a label triggers).
const MAX_EARLY_LABEL_FILTERS: usize = 64;

/// The label filters after the `| json` (without parameters) or `| logfmt` (without flags or parameters) at
/// index `parser` of `stages` that it can check early, in the cases where Loki's rules (`labelFiltersAfter`, `canCheckEarly` in
/// `pkg/logql/log/label_filter_hints.go`) allow it and this crate is sure the early check decides as the
/// filter at its own position would: a filter reading
/// exactly one label that is not special ([`early_checkable_label`]), with only line filters and label
/// filters between the parser and it (neither changes a parsed label). The search stops at any other stage,
/// a more conservative rule than Loki's, which looks past stages that cannot change the label.
///
/// # Errors
/// As [`CompiledLabelFilter::compile`].
fn early_label_filters(stages: &[Stage], parser: usize) -> Result<Vec<EarlyLabelFilter>, String> {
    let mut early = Vec::new();
    for (index, stage) in stages.iter().enumerate().skip(parser + 1) {
        match stage {
            Stage::LineFilter(_) => {}
            Stage::LabelFilter(filter) => {
                if let Some(label) = early_checkable_label(filter)
                    && early.len() < MAX_EARLY_LABEL_FILTERS
                {
                    early.push(EarlyLabelFilter { label, filter: CompiledLabelFilter::compile(filter)?, stage: index });
                }
            }
            Stage::Parser(_)
            | Stage::LineFormat(_)
            | Stage::LabelFormat(_)
            | Stage::Drop(_)
            | Stage::Keep(_)
            | Stage::Decolorize => break,
        }
    }
    Ok(early)
}

/// The early label filters of the `| logfmt` without flags or parameters at index `parser` of `stages`
/// ([`early_label_filters`]), none when the checks can only cost: with `hints` naming the labels to extract
/// (the parse then stops once it has them all) and no early check able to decide otherwise than the filter
/// at its own position ([`early_checks_may_decide`]).
///
/// # Errors
/// As [`CompiledLabelFilter::compile`].
fn logfmt_early_label_filters(
    stages: &[Stage],
    parser: usize,
    hints: &ParserHints,
) -> Result<Vec<EarlyLabelFilter>, String> {
    let early = early_label_filters(stages, parser)?;
    let needed = !matches!(hints, ParserHints::Only(_)) || early_checks_may_decide(stages, parser, &early);
    Ok(if needed { early } else { Vec::new() })
}

/// Whether an early check of one of `early` (the early filters of the parser at index `parser` of `stages`)
/// can decide otherwise than the filter at its own position, for a parser that sets no error (`| logfmt`
/// without flags): only when a label filter between the parser and it may set `__error__` (a failed
/// conversion of a numeric, duration or bytes comparison), which keeps the line at a numeric filter's
/// position but comes after the early check (Loki drops the line there). Otherwise an early check only
/// saves reading the rest of the line.
fn early_checks_may_decide(stages: &[Stage], parser: usize, early: &[EarlyLabelFilter]) -> bool {
    fn may_set_error(filter: &LabelFilter) -> bool {
        match filter {
            LabelFilter::And(left, right) | LabelFilter::Or(left, right) => may_set_error(left) || may_set_error(right),
            LabelFilter::Paren(inner) => may_set_error(inner),
            LabelFilter::Number { .. } => true,
            LabelFilter::Matcher(_) | LabelFilter::Ip { .. } => false,
        }
    }
    let Some(last) = early.iter().map(|filter| filter.stage).max() else { return false };
    let between = stages.get(parser + 1..last).unwrap_or_default();
    between.iter().any(|stage| matches!(stage, Stage::LabelFilter(filter) if may_set_error(filter)))
}

/// The one label `filter` reads, when a parser may check it early: matchers, numeric, duration and bytes
/// comparisons and their `and`/`or`, all on that label (Loki's `BinaryLabelFilter.RequiredLabelNames` must
/// name one label), which is not special (`__error__`, `__error_details__`, any `__name__`: `| json` can set
/// the error labels after the check). `None` for a filter with `ip()`, whose result depends on `__error__`.
fn early_checkable_label(filter: &LabelFilter) -> Option<String> {
    fn has_ip(filter: &LabelFilter) -> bool {
        match filter {
            LabelFilter::And(left, right) | LabelFilter::Or(left, right) => has_ip(left) || has_ip(right),
            LabelFilter::Paren(inner) => has_ip(inner),
            LabelFilter::Ip { .. } => true,
            LabelFilter::Matcher(_) | LabelFilter::Number { .. } => false,
        }
    }
    if has_ip(filter) {
        return None;
    }
    let mut names = Vec::new();
    label_filter_names(filter, &mut names);
    let (first, rest) = names.split_first()?;
    let special = first.len() >= 4 && first.starts_with("__") && first.ends_with("__");
    (!special && rest.iter().all(|name| name == first)).then(|| first.clone())
}

/// Converts a label value for numeric filters and unwrap: a number, a Go duration (seconds), or a size.
pub fn convert(text: &str, kind: NumberKind) -> Option<f64> {
    // Label filters convert a value per entry, mostly a plain number: that case stays in a small function
    // (no registers saved for the rest), the others go to `convert_other`.
    if kind == NumberKind::Number
        && let Some(value) = plain_decimal(text)
    {
        return Some(value);
    }
    convert_other(text, kind)
}

/// [`convert`] of what is not a plain decimal without surrounding whitespace.
#[inline(never)]
fn convert_other(text: &str, kind: NumberKind) -> Option<f64> {
    // No Unicode whitespace starts or ends with a visible ASCII byte: most values need no trimming.
    let visible = |byte: Option<&u8>| byte.is_some_and(u8::is_ascii_graphic);
    let text = if visible(text.as_bytes().first()) && visible(text.as_bytes().last()) { text } else { text.trim() };
    match kind {
        NumberKind::Number => plain_decimal(text).or_else(|| text.parse::<f64>().ok()),
        NumberKind::Duration => {
            if text == "0" {
                return Some(0.0);
            }
            let (negative, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            parse_duration_seconds_precise(digits).map(|seconds| if negative { -seconds } else { seconds })
        }
        NumberKind::Bytes => text.parse::<f64>().ok().or_else(|| parse_bytes_text(&text.replace(' ', ""))),
    }
}

/// The value of `[-]digits[.digits]` with at most 15 digits in all (most numbers in log lines: ids, status
/// codes, milliseconds), else `None` for `str::parse` to read. Exact and so equal to `str::parse`: the digits
/// make an integer below 2^53 and the power of ten dividing it is at most 10^15, both exact in an `f64`, and
/// one IEEE division of exact operands is correctly rounded (Clinger's fast path, "How to read floating point
/// numbers accurately", 1990). A tenth of the instructions of `str::parse` for a filter like `user_id < 0`.
#[inline]
fn plain_decimal(text: &str) -> Option<f64> {
    const MAX_DIGITS: usize = 15;
    const POWERS_OF_TEN: [f64; 16] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    // The length bounds the digits (15, or 15 and a point), so the loop does not count them.
    if digits.is_empty() || digits.len() > MAX_DIGITS + 1 {
        return None;
    }
    let (mut mantissa, mut point) = (0u64, None);
    for (index, &byte) in digits.iter().enumerate() {
        let digit = byte.wrapping_sub(b'0');
        if digit < 10 {
            mantissa = mantissa * 10 + u64::from(digit);
        } else if byte == b'.' && point.is_none() && index > 0 {
            point = Some(index);
        } else {
            return None;
        }
    }
    let fraction_digits = match point {
        None if digits.len() > MAX_DIGITS => return None,
        None => 0,
        // A point needs a digit after it too.
        Some(at) => digits.len() - at - 1,
    };
    if point.is_some() && fraction_digits == 0 {
        return None;
    }
    // Below 2^53, so exact as an `i64` too, which converts in one instruction (a `u64` takes several);
    // whole numbers need no division (by 1, exact either way), which costs more than the rest.
    let whole = mantissa as i64 as f64;
    let value = if fraction_digits == 0 { whole } else { whole / POWERS_OF_TEN.get(fraction_digits)? };
    Some(if negative { -value } else { value })
}

enum CompiledStage {
    LineFilter(CompiledLineFilter),
    /// `| json`: its `label="path"` parameters, and the label filters it checks early (none with parameters).
    Json {
        params: Vec<(String, Vec<PathPart>)>,
        early_filters: Vec<EarlyLabelFilter>,
        /// Whether labels given instead of the line (`give_parsed_fields`) are checked against
        /// `early_filters` ([`early_checks_may_decide`]; otherwise the filters decide alike at their
        /// positions).
        given_checks_early: bool,
    },
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<(String, String)>,
        /// For a non-strict parse without parameters extracting a few hinted labels: their search.
        key_search: Option<Box<HintedKeySearch>>,
        /// The label filters it checks early (only for `| logfmt` without flags or parameters; see
        /// [`logfmt_early_label_filters`]).
        early_filters: Vec<EarlyLabelFilter>,
        /// As for `| json`.
        given_checks_early: bool,
    },
    /// `| regexp`: the expression, its capture locations (reused from line to line) and the named groups the
    /// hints want, by group index, with their label names (sanitized once here rather than per line).
    Regexp {
        regex: Box<LineRegex>,
        locations: regex::CaptureLocations,
        groups: Vec<(usize, String)>,
    },
    /// `| pattern`: the pattern cut after the last capture the hints want ([`Pattern::first_captures`]: the
    /// literals after it are not searched), its captures' label names (sanitized) where the hints want them
    /// (by capture index), and the wanted captures of the current line (index, start, end), reused from
    /// line to line.
    Pattern {
        pattern: Box<Pattern>,
        wanted: Vec<Option<String>>,
        spans: Vec<(usize, usize, usize)>,
    },
    Unpack,
    LabelFilter(CompiledLabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<(String, Result<Template, String>)>),
    Drop(Vec<LabelItem>),
    Keep(Vec<LabelItem>),
    Decolorize(Regex),
}

#[derive(Debug, Clone)]
enum PathPart {
    Key(String),
    Index(usize),
}

fn parse_json_path(expression: &str) -> Vec<PathPart> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut characters = expression.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '.' => {
                if !current.is_empty() {
                    parts.push(PathPart::Key(std::mem::take(&mut current)));
                }
            }
            '[' => {
                if !current.is_empty() {
                    parts.push(PathPart::Key(std::mem::take(&mut current)));
                }
                let mut inside = String::new();
                for inner in characters.by_ref() {
                    if inner == ']' {
                        break;
                    }
                    inside.push(inner);
                }
                let trimmed = inside.trim();
                if let Ok(index) = trimmed.parse::<usize>() {
                    parts.push(PathPart::Index(index));
                } else {
                    parts.push(PathPart::Key(trimmed.trim_matches(|c| c == '"' || c == '\'').to_string()));
                }
            }
            other => current.push(other),
        }
    }
    if !current.is_empty() {
        parts.push(PathPart::Key(current));
    }
    parts
}

/// The line filters at the head of a pipeline, run on borrowed lines before anything is allocated: an
/// entry they drop never reaches the rest of the pipeline.
pub struct LineFilters {
    filters: Vec<CompiledLineFilter>,
}

impl LineFilters {
    /// Compiles the leading line filter stages of `stages`; returns them and how many stages they cover.
    ///
    /// # Errors
    /// A message when a regex or pattern does not compile.
    pub fn leading(stages: &[Stage]) -> Result<(LineFilters, usize), String> {
        let mut filters = Vec::new();
        for stage in stages {
            let Stage::LineFilter(filter) = stage else { break };
            filters.push(CompiledLineFilter::compile(filter)?);
        }
        let covered = filters.len();
        Ok((LineFilters { filters }, covered))
    }

    /// True when there is no filter.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// True when every filter keeps `line`.
    pub fn keeps(&self, line: &str) -> bool {
        self.filters.iter().all(|filter| filter.keeps(line))
    }
}

/// Which labels the parsers of a pipeline must extract: Loki's parser hints (`pkg/logql/log/parser_hints.go`).
///
/// A metric query grouped `by (...)` only needs the grouping labels and the labels its filters and
/// `unwrap` read, so `sum by (status) (rate({app="x"} | json [5m]))` extracts `status` alone and
/// `sum(rate({app="x"} | json [5m]))` runs no parser at all (and so, as in Loki, reports no parse error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParserHints {
    /// Extract every label (log queries, `without` and ungrouped metric queries).
    #[default]
    All,
    /// Extract only these label names (after sanitizing, before the `_extracted` rename); empty means
    /// the parsers need not run.
    Only(Vec<String>),
}

impl ParserHints {
    /// The hints for a range aggregation over `stages` whose series are grouped by `grouping` (the range
    /// aggregation's own grouping or a `sum` pushed down into it); `All` without a `by` grouping, or when a
    /// stage reads or rewrites labels in ways not listed by name (`line_format`, `label_format`).
    pub fn for_grouping(grouping: Option<&Grouping>, stages: &[Stage], unwrap: Option<&Unwrap>) -> ParserHints {
        let Some(Grouping { without: false, labels }) = grouping else { return ParserHints::All };
        let mut names: Vec<String> = labels.clone();
        for stage in stages {
            match stage {
                Stage::LabelFilter(filter) => label_filter_names(filter, &mut names),
                // `drop` and `keep` only remove labels, reading the values of those they name with a
                // matcher: a label not extracted is absent either way (Grafana's Logs Drilldown groups
                // `... | json | drop __error__, __error_details__`).
                Stage::Drop(items) | Stage::Keep(items) => {
                    for item in items {
                        if let LabelItem::Matcher(matcher) = item {
                            names.push(matcher.name.clone());
                        }
                    }
                }
                Stage::LineFormat(_) | Stage::LabelFormat(_) => return ParserHints::All,
                Stage::LineFilter(_) | Stage::Parser(_) | Stage::Decolorize => {}
            }
        }
        if let Some(unwrap) = unwrap {
            names.push(unwrap.label.clone());
            for filter in &unwrap.post_filters {
                label_filter_names(filter, &mut names);
            }
        }
        ParserHints::Only(hinted_names(names))
    }

    fn wants(&self, name: &str) -> bool {
        match self {
            ParserHints::All => true,
            ParserHints::Only(names) => names.iter().any(|wanted| wanted == name),
        }
    }

    fn wants_none(&self) -> bool {
        matches!(self, ParserHints::Only(names) if names.is_empty())
    }

    fn is_all(&self) -> bool {
        matches!(self, ParserHints::All)
    }
}

fn label_filter_names(filter: &LabelFilter, names: &mut Vec<String>) {
    match filter {
        LabelFilter::And(left, right) | LabelFilter::Or(left, right) => {
            label_filter_names(left, names);
            label_filter_names(right, names);
        }
        LabelFilter::Paren(inner) => label_filter_names(inner, names),
        LabelFilter::Matcher(matcher) => names.push(matcher.name.clone()),
        LabelFilter::Number { name, .. } | LabelFilter::Ip { name, .. } => names.push(name.clone()),
    }
}

/// A compiled pipeline, reusable across entries: it keeps its per-entry buffers (added labels, the JSON
/// scanner's field path) from one entry to the next, so processing an entry allocates only what it returns.
pub struct Pipeline {
    stages: Vec<CompiledStage>,
    hints: ParserHints,
    /// The lengths of the hinted names, fixed with `hints`: built once rather than per entry.
    hinted_lengths: HintedLengths,
    /// Whether a parser may stop reading a line once every hinted label is found (as Loki's json parser
    /// does); off for a [`Pipeline::prefilter`] with a parser that can fail ([`parser_may_fail`]), which
    /// must see parse errors anywhere in the line.
    stop_early: bool,
    /// The leading parsers and label filters compiled to extract only the labels those filters read: an
    /// entry it drops is dropped without extracting every label (see [`Pipeline::with_hints`]).
    prefilter: Option<Box<Pipeline>>,
    prefilter_counts: PrefilterCounts,
    scratch: EntryScratch,
    /// The parser's labels of the entries being run, when given instead of their lines
    /// ([`Pipeline::give_parsed_fields`]).
    given_fields: GivenFields,
}

/// Labels a pipeline's parser is given instead of parsing the line ([`Pipeline::give_parsed_fields`]).
#[derive(Default)]
struct GivenFields {
    /// Whether runs take these instead of running their first stage.
    active: bool,
    /// The values, one after another.
    text: String,
    /// Per hinted name, in order: its value's range in `text`, or `None` for no label.
    ranges: Vec<Option<(usize, usize)>>,
}

impl GivenFields {
    /// Takes each value holding U+FFFD as the parser takes it in a line ([`holds_replacement_character`]):
    /// as no label for `| logfmt` (`logfmt`), as the empty value for `| json`.
    #[cold]
    #[inline(never)]
    fn empty_replacement_characters(&mut self, logfmt: bool) {
        for range in &mut self.ranges {
            let Some((start, end)) = *range else { continue };
            if self.text.get(start..end).is_some_and(holds_replacement_character) {
                *range = (!logfmt).then_some((start, start));
            }
        }
    }
}

/// Buffers reused from entry to entry.
#[derive(Default)]
struct EntryScratch {
    added: AddedLabels,
    removed: Vec<String>,
    /// The JSON scanner's current field path.
    json_path: String,
    /// A label name being sanitized.
    label_name: String,
}

/// The per-entry labels, by origin: the stream's (borrowed), those added by metadata, parsers and
/// formatters, and stream labels removed.
struct EntryState<'a> {
    stream: &'a Labels,
    added: &'a mut AddedLabels,
    removed: &'a mut Vec<String>,
    has_error: bool,
}

/// True when a parsed label value holds U+FFFD, the Unicode replacement character. Loki's `| logfmt` and
/// `| json` (pkg/logql/log/parser.go: `LogfmtParser.Process`, `unescapeJSONString`) empty such a value,
/// "rejected by Prometheus": `| logfmt` then leaves the pair out unless `--keep-empty`, `| json` gives the
/// label the empty value. The check is on the value as given (after unescaping); the parsers make it only
/// for values their scans did not see to be ASCII.
#[inline]
pub(crate) fn holds_replacement_character(value: &str) -> bool {
    value.contains('\u{FFFD}')
}

/// True when `left` and `right` hold the same bytes, for the short names, values and group keys compared
/// per entry: eight bytes at a time in line (the last word overlapping the one before it), where comparing
/// byte by byte took about four instructions a byte and a call to `memcmp` costs more than the comparison.
#[inline]
pub(crate) fn same_short_bytes(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    if let (Some(left_last), Some(right_last)) = (left.last_chunk::<8>(), right.last_chunk::<8>()) {
        let (left_words, _) = left.as_chunks::<8>();
        let (right_words, _) = right.as_chunks::<8>();
        return left_last == right_last && left_words.iter().zip(right_words).all(|(left, right)| left == right);
    }
    let halves = |bytes: &[u8]| Some((*bytes.first_chunk::<4>()?, *bytes.last_chunk::<4>()?));
    match (halves(left), halves(right)) {
        (Some(left_halves), Some(right_halves)) => left_halves == right_halves,
        _ => left.iter().zip(right).all(|(left, right)| left == right),
    }
}

/// `left.cmp(right)` for label names, which are short and mostly differ early: bytes compared in line rather
/// than by a call to `memcmp` (4% of a `| json | duration_ms > 1000` scan grouped by `path`, session 12).
#[inline]
fn compare_names(left: &str, right: &str) -> std::cmp::Ordering {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    for (left_byte, right_byte) in left.iter().zip(right) {
        if left_byte != right_byte {
            return left_byte.cmp(right_byte);
        }
    }
    left.len().cmp(&right.len())
}

/// The value of stream label `name`. Streams have a few labels: they are compared by length before any
/// byte, which a binary search (a string comparison per step) cannot do; entries ask this per parsed label.
fn stream_label<'a>(stream: &'a Labels, name: &str) -> Option<&'a str> {
    const FEW_LABELS: usize = 16;
    if stream.len() > FEW_LABELS {
        return stream.get(name);
    }
    stream.iter().find(|label| label.name.len() == name.len() && label.name == name).map(|label| label.value.as_str())
}

/// One label a stage added to an entry.
#[derive(Default)]
struct AddedLabel {
    name: String,
    value: String,
    /// Set while `| json` adds labels, so a line whose failure Loki reads as none of them (a nested object
    /// never closed) can take them back (see [`parse_json`]).
    pending: bool,
    /// Where the label came from: a parser's label replaces structured metadata of its name.
    origin: AddedOrigin,
}

/// Where an [`AddedLabel`] came from, as far as a parser's label of its name cares: Loki's
/// `LabelsBuilder.Set` lets a `ParsedLabel` replace a `StructuredMetadataLabel`, and a parsed label that
/// came first stays.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum AddedOrigin {
    /// A parser, `label_format` or an error.
    #[default]
    Stage,
    /// The entry's structured metadata.
    Metadata,
    /// A parser's label that replaced structured metadata (kept in [`AddedLabels`]' `replaced_metadata`).
    ReplacedMetadata,
}

/// The labels stages added to an entry, sorted by name, in slots reused from entry to entry: a slot's
/// strings keep their capacity, so an entry whose labels fit in what earlier entries left allocates
/// nothing. A sorted vector rather than a map: an entry carries a few dozen labels at most.
#[derive(Default)]
struct AddedLabels {
    /// The first `len` slots are in use, sorted by name; the rest are spare.
    slots: Vec<AddedLabel>,
    len: usize,
    /// The structured metadata (name, value) that parsed labels replaced in this entry, put back if a
    /// pending label is taken back: the first `replaced_len` pairs, the rest spare (their strings keep their
    /// capacity). Apart from the slots, which it would make larger.
    replaced_metadata: Vec<(String, String)>,
    replaced_len: usize,
}

impl AddedLabels {
    fn clear(&mut self) {
        self.len = 0;
        self.replaced_len = 0;
    }

    /// The slot at `index` for a parsed label of its name when it holds structured metadata (its value
    /// cleared, the metadata kept aside), else `None`: a parsed label of that name came first.
    fn replace_metadata(&mut self, index: usize) -> Option<&mut AddedLabel> {
        let slot = self.slots.get_mut(..self.len)?.get_mut(index)?;
        if slot.origin != AddedOrigin::Metadata {
            return None;
        }
        slot.origin = AddedOrigin::ReplacedMetadata;
        if self.replaced_len == self.replaced_metadata.len() {
            self.replaced_metadata.push(Default::default());
        }
        let (name, value) = &mut self.replaced_metadata[self.replaced_len];
        self.replaced_len += 1;
        name.clear();
        name.push_str(&slot.name);
        std::mem::swap(value, &mut slot.value);
        slot.value.clear();
        Some(slot)
    }

    fn in_use(&self) -> &[AddedLabel] {
        self.slots.get(..self.len).unwrap_or_default()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.in_use().binary_search_by(|label| compare_names(&label.name, name))
    }

    fn get(&self, name: &str) -> Option<&str> {
        // An entry's few added labels are compared by length before any byte, which the binary search cannot
        // do; label filters and group keys ask this per entry.
        const FEW_LABELS: usize = 8;
        let in_use = self.in_use();
        if in_use.len() <= FEW_LABELS {
            let same = |label: &&AddedLabel| same_short_bytes(label.name.as_bytes(), name.as_bytes());
            return in_use.iter().find(same).map(|label| label.value.as_str());
        }
        let index = self.position(name).ok()?;
        self.slots.get(index).map(|label| label.value.as_str())
    }

    /// Takes a spare slot into use at `index` (at most `len`), shifting the later ones up; its strings are
    /// cleared and it is not pending.
    fn claim(&mut self, index: usize) -> &mut AddedLabel {
        debug_assert!(index <= self.len);
        if self.len == self.slots.len() {
            self.slots.push(AddedLabel::default());
        }
        if index < self.len
            && let Some(moved) = self.slots.get_mut(index..=self.len)
        {
            moved.rotate_right(1);
        }
        self.len += 1;
        let slot = &mut self.slots[index];
        slot.name.clear();
        slot.value.clear();
        slot.pending = false;
        slot.origin = AddedOrigin::Stage;
        slot
    }

    /// A new slot named `name` (already checked absent at `index`) for the caller to fill in the value.
    fn claim_named(&mut self, index: usize, name: &str) -> &mut AddedLabel {
        // The entries of a scan mostly parse the same names in the same order, and `clear` leaves the slots'
        // names in place: a label added last often finds its name in the spare slot already, and only the
        // value needs clearing (about 30 instructions less per label than rewriting the name).
        let spare_has_name = index == self.len
            && self.slots.get(index).is_some_and(|spare| same_short_bytes(spare.name.as_bytes(), name.as_bytes()));
        if spare_has_name {
            self.len += 1;
            let slot = &mut self.slots[index];
            slot.value.clear();
            slot.pending = false;
            slot.origin = AddedOrigin::Stage;
            return slot;
        }
        let slot = self.claim(index);
        slot.name.push_str(name);
        slot
    }

    /// Adds the label, replacing the value of one of that name (structured metadata included: the label
    /// is no longer metadata); returns its slot.
    fn insert(&mut self, name: &str, value: &str) -> &mut AddedLabel {
        let slot = match self.position(name) {
            Ok(index) => {
                let slot = &mut self.slots[index];
                slot.value.clear();
                slot.origin = AddedOrigin::Stage;
                slot
            }
            Err(index) => self.claim_named(index, name),
        };
        slot.value.push_str(value);
        slot
    }

    fn remove(&mut self, name: &str) {
        if let Ok(index) = self.position(name) {
            if let Some(moved) = self.slots.get_mut(index..self.len) {
                moved.rotate_left(1);
            }
            self.len -= 1;
        }
    }

    /// Keeps the pending labels (they stay, no longer pending) or takes them out (structured metadata they
    /// replaced comes back), keeping the order of the others.
    fn settle_pending(&mut self, keep: bool) {
        if !keep && self.replaced_len != 0 {
            self.restore_replaced_metadata();
        }
        let mut kept = 0;
        for index in 0..self.len {
            let slot = &mut self.slots[index];
            if slot.pending && !keep {
                continue;
            }
            slot.pending = false;
            self.slots.swap(kept, index);
            kept += 1;
        }
        self.len = kept;
    }

    /// Puts back the structured metadata that pending labels replaced: those slots hold the metadata
    /// again, no longer pending.
    #[cold]
    fn restore_replaced_metadata(&mut self) {
        for slot in self.slots.iter_mut().take(self.len) {
            if !slot.pending || slot.origin != AddedOrigin::ReplacedMetadata {
                continue;
            }
            let replaced =
                self.replaced_metadata.iter_mut().take(self.replaced_len).find(|(name, _)| *name == slot.name);
            if let Some((_, value)) = replaced {
                std::mem::swap(&mut slot.value, value);
                slot.origin = AddedOrigin::Metadata;
                slot.pending = false;
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.in_use().iter().map(|label| (&label.name, &label.value))
    }
}

impl EntryState<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        if let Some(value) = self.added.get(name) {
            return Some(value);
        }
        if self.removed.iter().any(|removed| removed == name) {
            return None;
        }
        stream_label(self.stream, name)
    }

    fn is_stream_label(&self, name: &str) -> bool {
        stream_label(self.stream, name).is_some()
    }

    /// Adds a parsed label, renaming it on collision with a stream label.
    fn add_parsed(&mut self, name: &str, value: &str) {
        let name = sanitized_label_name(name);
        self.add_sanitized(&name, value);
    }

    /// Adds a parsed label whose name is already sanitized, unless one of that name was parsed before.
    fn add_sanitized(&mut self, name: &str, value: &str) {
        if let Some(slot) = self.claim_parsed(name) {
            slot.value.push_str(value);
        }
    }

    /// The slot for a parsed label whose name is already sanitized (`<name>_extracted` on collision with a
    /// stream label), for the caller to write its value into; `None` when the name is empty or a label of
    /// that name was parsed before (the first wins). Structured metadata of that name gives up its slot,
    /// as in Loki: `BaseHas` (the `_extracted` test) sees stream labels only, and `LabelsBuilder.Set` of a
    /// `ParsedLabel` deletes the `StructuredMetadataLabel` of its name (grafana/loki
    /// `pkg/logql/log/labels.go`).
    fn claim_parsed(&mut self, name: &str) -> Option<&mut AddedLabel> {
        if name.is_empty() {
            return None;
        }
        if self.is_stream_label(name) {
            let mut renamed = String::with_capacity(name.len() + 10);
            renamed.push_str(name);
            renamed.push_str("_extracted");
            return match self.added.position(&renamed) {
                Ok(index) => self.added.replace_metadata(index),
                Err(index) => {
                    let slot = self.added.claim(index);
                    std::mem::swap(&mut slot.name, &mut renamed);
                    Some(slot)
                }
            };
        }
        match self.added.position(name) {
            Ok(index) => self.added.replace_metadata(index),
            Err(index) => Some(self.added.claim_named(index, name)),
        }
    }

    fn set(&mut self, name: &str, value: &str) {
        self.removed.retain(|removed| removed != name);
        self.added.insert(name, value);
    }

    fn delete(&mut self, name: &str) {
        self.added.remove(name);
        if !self.removed.iter().any(|removed| removed == name) {
            self.removed.push(name.to_string());
        }
    }

    fn set_error(&mut self, kind: &str, details: &str) {
        if self.has_error {
            return;
        }
        self.has_error = true;
        self.added.insert(ERROR_LABEL, kind);
        self.added.insert(ERROR_DETAILS_LABEL, details);
    }

    fn all(&self) -> Vec<(String, String)> {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for label in self.stream {
            if !self.removed.contains(&label.name) {
                map.insert(label.name.clone(), label.value.clone());
            }
        }
        for (name, value) in self.added.iter() {
            map.insert(name.clone(), value.clone());
        }
        map.into_iter().filter(|(_, value)| !value.is_empty()).collect()
    }

    /// The entry's labels: the stream's not removed, then those added, without empty values.
    fn labels(&self) -> Labels {
        let mut merged: Vec<oxeye_model::Label> = Vec::with_capacity(self.stream.len() + self.added.len());
        let mut added = self.added.iter().peekable();
        for label in self.stream {
            while let Some((name, value)) = added.next_if(|(name, _)| name.as_str() < label.name.as_str()) {
                merged.push(oxeye_model::Label { name: name.clone(), value: value.clone() });
            }
            if added.peek().is_some_and(|(name, _)| **name == label.name) || self.removed.contains(&label.name) {
                continue;
            }
            merged.push(label.clone());
        }
        merged.extend(added.map(|(name, value)| oxeye_model::Label { name: name.clone(), value: value.clone() }));
        merged.retain(|label| !label.value.is_empty());
        Labels::from_sorted(merged)
    }

    fn label_map(&self) -> HashMap<String, String> {
        self.all().into_iter().collect()
    }
}

/// Turns a JSON key or logfmt key into a label name: characters outside `[a-zA-Z0-9_]` become `_`, and a
/// leading digit gets a `_` prefix.
pub fn sanitize_label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    sanitize_label_name_into(name, &mut out);
    out
}

/// [`sanitize_label_name`], borrowing names that are already valid.
pub fn sanitized_label_name(name: &str) -> Cow<'_, str> {
    if is_valid_label_name(name) { Cow::Borrowed(name) } else { Cow::Owned(sanitize_label_name(name)) }
}

/// True when [`sanitize_label_name`] leaves `name` as it is. Parsers ask this of most field names they pass
/// over, per entry: names of four bytes or more are tested eight bytes at a time (the last word overlapping
/// the one before it, or, below eight bytes, the name's first and last four bytes in one word), where a
/// loop took about a dozen instructions a byte.
#[inline]
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    let valid_word = |word: u64| word & HIGHS == 0 && ascii_label_name_bytes(word) == HIGHS;
    if let Some(last) = bytes.last_chunk::<8>() {
        let (words, _) = bytes.as_chunks::<8>();
        return valid_word(u64::from_le_bytes(*last)) && words.iter().all(|word| valid_word(u64::from_le_bytes(*word)));
    }
    if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        return valid_word(u64::from(u32::from_le_bytes(*first)) | (u64::from(u32::from_le_bytes(*last)) << 32));
    }
    bytes.iter().all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
}

/// [`sanitize_label_name`] into a reused buffer (cleared first).
pub(crate) fn sanitize_label_name_into(name: &str, out: &mut String) {
    out.clear();
    if name.starts_with(|character: char| character.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(
        name.chars()
            .map(|character| if character.is_ascii_alphanumeric() || character == '_' { character } else { '_' }),
    );
}

/// What a pipeline made of an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedEntry {
    /// The (possibly reformatted) line.
    pub line: String,
    /// The final label set: stream labels, structured metadata, parsed labels.
    pub labels: Labels,
}

impl Pipeline {
    /// Compiles stages.
    ///
    /// # Errors
    /// A message when a regex, pattern or template does not compile (the parser checks these first).
    pub fn new(stages: &[Stage]) -> Result<Pipeline, String> {
        Pipeline::with_hints(stages, ParserHints::All)
    }

    /// Compiles stages whose parsers extract only the labels `hints` names (see [`ParserHints`]); the
    /// result's labels then hold the stream labels, the hinted labels and any `__error__`.
    ///
    /// # Errors
    /// As [`Pipeline::new`].
    pub fn with_hints(stages: &[Stage], hints: ParserHints) -> Result<Pipeline, String> {
        let mut pipeline = Pipeline::compile(stages, hints, true)?;
        if pipeline.hints.is_all()
            && let Some((prefix, names)) = prefilter_stages(stages)
        {
            // A prefix whose parsers cannot fail need not read past the last label its filters read.
            let stop_early = prefix.iter().all(|stage| !parser_may_fail(stage));
            pipeline.prefilter = Some(Box::new(Pipeline::compile(prefix, ParserHints::Only(names), stop_early)?));
        }
        Ok(pipeline)
    }

    fn compile(stages: &[Stage], hints: ParserHints, stop_early: bool) -> Result<Pipeline, String> {
        let mut compiled = Vec::with_capacity(stages.len());
        for (index, stage) in stages.iter().enumerate() {
            compiled.push(match stage {
                Stage::LineFilter(filter) => CompiledStage::LineFilter(CompiledLineFilter::compile(filter)?),
                Stage::Parser(ParserStage::Json(params)) => {
                    // Loki gives early filters to `JSONParser` only, not to `JSONExpressionParser`.
                    let early_filters =
                        if params.is_empty() { early_label_filters(stages, index)? } else { Vec::new() };
                    CompiledStage::Json {
                        params: params
                            .iter()
                            .map(|(label, expression)| (label.clone(), parse_json_path(expression)))
                            .collect(),
                        given_checks_early: early_checks_may_decide(stages, index, &early_filters),
                        early_filters,
                    }
                }
                Stage::Parser(ParserStage::Logfmt { strict, keep_empty, params }) => {
                    let key_search = match &hints {
                        ParserHints::Only(names) if !*strict && params.is_empty() && !names.is_empty() => {
                            HintedKeySearch::new(names).map(Box::new)
                        }
                        _ => None,
                    };
                    // Loki's `LogfmtParser` checks early filters, its `LogfmtExpressionParser` does not; flags are
                    // left out here, to keep to the cases tested against Loki's rules.
                    let plain = !*strict && !*keep_empty && params.is_empty();
                    let early_filters =
                        if plain { logfmt_early_label_filters(stages, index, &hints)? } else { Vec::new() };
                    CompiledStage::Logfmt {
                        strict: *strict,
                        keep_empty: *keep_empty,
                        params: params.clone(),
                        key_search,
                        given_checks_early: early_checks_may_decide(stages, index, &early_filters),
                        early_filters,
                    }
                }
                Stage::Parser(ParserStage::Regexp(regex)) => {
                    let regex = Box::new(LineRegex::new(regex).map_err(|error| error.to_string())?);
                    let groups = regex
                        .regex()
                        .capture_names()
                        .enumerate()
                        .filter_map(|(index, name)| Some((index, name?.to_string())))
                        .filter(|(_, name)| hints.wants(name))
                        .map(|(index, name)| (index, sanitize_label_name(&name)))
                        .collect();
                    CompiledStage::Regexp { locations: regex.capture_locations(), regex, groups }
                }
                Stage::Parser(ParserStage::Pattern(pattern)) => {
                    let parsed = Pattern::parse(pattern)?;
                    let wanted: Vec<Option<String>> = parsed
                        .capture_names()
                        .map(|name| name.filter(|name| hints.wants(name)).map(sanitize_label_name))
                        .collect();
                    let wanted_captures = wanted.iter().rposition(Option::is_some).map_or(0, |last| last + 1);
                    let cut = Box::new(parsed.first_captures(wanted_captures));
                    CompiledStage::Pattern { pattern: cut, wanted, spans: Vec::new() }
                }
                Stage::Parser(ParserStage::Unpack) => CompiledStage::Unpack,
                Stage::LabelFilter(filter) => CompiledStage::LabelFilter(CompiledLabelFilter::compile(filter)?),
                Stage::LineFormat(template) => CompiledStage::LineFormat(Template::parse(template)?),
                Stage::LabelFormat(items) => CompiledStage::LabelFormat(
                    items
                        .iter()
                        .map(|item| match item {
                            LabelFormatItem::Rename { destination, source } => {
                                (destination.clone(), Err(source.clone()))
                            }
                            LabelFormatItem::Template { destination, template } => {
                                (destination.clone(), Template::parse(template).map_err(|_| String::new()))
                            }
                        })
                        .collect(),
                ),
                Stage::Drop(items) => CompiledStage::Drop(items.clone()),
                Stage::Keep(items) => CompiledStage::Keep(items.clone()),
                Stage::Decolorize => CompiledStage::Decolorize(ANSI_ESCAPE.clone()),
            });
        }
        Ok(Pipeline {
            stages: compiled,
            hinted_lengths: HintedLengths::of(&hints),
            hints,
            stop_early,
            prefilter: None,
            prefilter_counts: PrefilterCounts::default(),
            scratch: EntryScratch::default(),
            given_fields: GivenFields::default(),
        })
    }

    /// True when the pipeline has no stage that can change labels (line filters only), so results keep
    /// their stream labels plus structured metadata.
    pub fn is_filter_only(&self) -> bool {
        self.stages.iter().all(|stage| matches!(stage, CompiledStage::LineFilter(_)))
    }

    /// The labels a line matters by, with the semantics of the parser giving them (the field columns'
    /// semantics: [`JSON_FIELD_COLUMNS_SEMANTICS`], or
    /// [`LOGFMT_FIELD_COLUMNS_SEMANTICS`](crate::field_columns::LOGFMT_FIELD_COLUMNS_SEMANTICS)), when the
    /// pipeline is one `| json` without parameters, or one `| logfmt` without flags or parameters, followed
    /// only by label filters, `drop` and `keep`, and its hints name the labels it extracts: its entries then
    /// depend on the line only through those labels' values, which the pipeline can be given instead of the
    /// line ([`Pipeline::give_parsed_fields`]) or which could be written back into a line it treats alike (a
    /// JSON object, `name="value"` pairs: the tests' oracle), for a line the parser reads without error. `None` also when the names hold both `x` and
    /// `x_extracted`: with a stream label `x`, the label `x_extracted` then takes whichever of the two comes
    /// first in the line, an order the values alone do not tell.
    pub fn line_field_names(&self) -> Option<(u32, &[String])> {
        let ParserHints::Only(names) = &self.hints else { return None };
        let (Some(parser), Some(rest)) = (self.stages.first(), self.stages.get(1..)) else { return None };
        let semantics = match parser {
            CompiledStage::Json { params, .. } if params.is_empty() => JSON_FIELD_COLUMNS_SEMANTICS,
            CompiledStage::Logfmt { strict: false, keep_empty: false, params, .. } if params.is_empty() => {
                crate::field_columns::LOGFMT_FIELD_COLUMNS_SEMANTICS
            }
            _ => return None,
        };
        let label_stages_only = rest.iter().all(|stage| {
            matches!(stage, CompiledStage::LabelFilter(_) | CompiledStage::Drop(_) | CompiledStage::Keep(_))
        });
        let renamed_twice = names.iter().any(|name| {
            name.strip_suffix("_extracted").is_some_and(|stripped| names.iter().any(|other| other == stripped))
        });
        (label_stages_only && !renamed_twice && !names.is_empty() && self.prefilter.is_none())
            .then_some((semantics, names.as_slice()))
    }

    /// Makes the runs that follow, until [`Pipeline::clear_parsed_fields`], take `values` as the labels the
    /// pipeline's parser gives the entry instead of parsing its line, for a pipeline of
    /// [`Pipeline::line_field_names`]: `values` holds, for each name it gave (same order), the label's value
    /// or `None` for a line without it. For a line the parser reads without error and whose labels of those
    /// names have these values, the pipeline then gives the entry the same labels, errors and fate as when
    /// it parses the line (as it would a line of those labels alone), without a line to build and parse.
    ///
    /// A value holding U+FFFD is taken as the parser takes it in a line ([`holds_replacement_character`]):
    /// as no label for `| logfmt`, as the empty value for `| json`.
    pub fn give_parsed_fields(&mut self, values: &[Option<&str>]) {
        let given = &mut self.given_fields;
        given.active = true;
        given.text.clear();
        given.ranges.clear();
        for value in values {
            given.ranges.push(value.map(|value| {
                let start = given.text.len();
                given.text.push_str(value);
                (start, given.text.len())
            }));
        }
        // One test of all the values together: most are ASCII, which holds no U+FFFD.
        if !given.text.is_ascii() {
            let logfmt = matches!(self.stages.first(), Some(CompiledStage::Logfmt { .. }));
            given.empty_replacement_characters(logfmt);
        }
    }

    /// Ends [`Pipeline::give_parsed_fields`]: runs parse lines again.
    pub fn clear_parsed_fields(&mut self) {
        self.given_fields.active = false;
    }

    /// Writes into `line` (cleared first) a line of the labels `names` with `values` (same order, `None`
    /// for a label the line lacks) for the parser of `semantics` ([`Pipeline::line_field_names`]): for a
    /// line that parser reads without error and whose labels `names` have these values, no name coming
    /// twice, [`Pipeline::line_field_names`]'s pipeline gives this line the same labels, errors and fate.
    /// A JSON object ([`Pipeline::json_fields_line`]) for `| json`, `name="value"` pairs
    /// ([`Pipeline::logfmt_fields_line`]) for `| logfmt`. Tests only: the oracle of
    /// [`Pipeline::give_parsed_fields`].
    #[cfg(test)]
    pub(crate) fn fields_line(semantics: u32, names: &[String], values: &[Option<&str>], line: &mut String) {
        if semantics == crate::field_columns::LOGFMT_FIELD_COLUMNS_SEMANTICS {
            Pipeline::logfmt_fields_line(names, values, line);
        } else {
            debug_assert_eq!(semantics, JSON_FIELD_COLUMNS_SEMANTICS);
            Pipeline::json_fields_line(names, values, line);
        }
    }

    /// Writes into `line` (cleared first) a JSON object of the labels `names` with `values` (same order,
    /// `None` for a label the line lacks), which `| json` gives the labels `names` with these values.
    #[cfg(test)]
    fn json_fields_line(names: &[String], values: &[Option<&str>], line: &mut String) {
        line.clear();
        line.push('{');
        for (name, value) in names.iter().zip(values) {
            let Some(value) = value else { continue };
            if line.len() > 1 {
                line.push(',');
            }
            push_json_string(line, name);
            line.push(':');
            push_json_string(line, value);
        }
        line.push('}');
    }

    /// Writes into `line` (cleared first) the logfmt pairs `name="value"` of the labels `names` with
    /// `values` (same order, `None` for a label the line lacks; each name a valid label name, each value
    /// quoted with `"` and `\` escaped), which `| logfmt` gives the labels `names` with these values.
    #[cfg(test)]
    fn logfmt_fields_line(names: &[String], values: &[Option<&str>], line: &mut String) {
        line.clear();
        for (name, value) in names.iter().zip(values) {
            let Some(value) = value else { continue };
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(name);
            line.push_str("=\"");
            for character in value.chars() {
                if matches!(character, '"' | '\\') {
                    line.push('\\');
                }
                line.push(character);
            }
            line.push('"');
        }
    }

    /// True when the pipeline has no stage at all.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// True when a stage reads or rewrites the line; `drop` and `keep` read labels only, so a pipeline of
    /// them alone (`| drop __error__, __error_details__`, as Grafana adds) keeps or drops an entry whatever
    /// its line.
    pub fn reads_lines(&self) -> bool {
        self.stages.iter().any(|stage| !matches!(stage, CompiledStage::Drop(_) | CompiledStage::Keep(_)))
    }

    /// Runs the pipeline; `None` when a filter drops the entry. `extra_labels` (structured metadata) are
    /// visible to the stages and kept in the result.
    pub fn process(&mut self, stream_labels: &Labels, entry: &LogEntry) -> Option<ProcessedEntry> {
        let metadata: Vec<oxeye_model::LabelRef<'_>> = entry
            .structured_metadata
            .iter()
            .map(|label| oxeye_model::LabelRef { name: &label.name, value: &label.value })
            .collect();
        self.process_ref(
            stream_labels,
            LogEntryRef { timestamp_ns: entry.timestamp_ns, line: &entry.line, structured_metadata: &metadata },
        )
    }

    /// [`Pipeline::process`] on a borrowed entry: the line is copied only when a stage rewrites it.
    pub fn process_ref(&mut self, stream_labels: &Labels, entry: LogEntryRef<'_>) -> Option<ProcessedEntry> {
        let (line, state) = self.run(stream_labels, entry)?;
        Some(ProcessedEntry { line: line.into_owned(), labels: state.labels() })
    }

    /// Runs the pipeline for a range aggregation grouped `by (names)`: returns the line's length in bytes
    /// and the entry's labels reduced to `names` (as `sum by (names)` would group them), without building
    /// the entry's full label set; or, when a stage left `__error__` on the entry, its full labels as the
    /// error (the query then fails naming them).
    ///
    /// # Errors
    /// The entry's full labels when they carry `__error__`.
    pub fn process_grouped(
        &mut self,
        stream_labels: &Labels,
        entry: LogEntryRef<'_>,
        names: &[String],
    ) -> Option<Result<(usize, Labels), Labels>> {
        let (line, state) = self.run(stream_labels, entry)?;
        // An error a stage left and none dropped (`| drop __error__`).
        if state.has_error && state.get(ERROR_LABEL).is_some() {
            return Some(Err(state.labels()));
        }
        let mut grouped: Vec<oxeye_model::Label> = names
            .iter()
            .filter_map(|name| {
                let value = state.get(name).filter(|value| !value.is_empty())?;
                Some(oxeye_model::Label { name: name.clone(), value: value.to_string() })
            })
            .collect();
        grouped.sort_by(|left, right| left.name.cmp(&right.name));
        grouped.dedup_by(|left, right| left.name == right.name);
        Some(Ok((line.len(), Labels::from_sorted(grouped))))
    }

    /// [`Pipeline::process_grouped`] without building the group's labels: writes into `group_key` the
    /// value of each of `names` in order (`u64` little-endian byte length, then the bytes; absent and empty
    /// values alike, as `sum by` drops both), so entries with equal keys fall in the same group, and
    /// returns the line's length in bytes. A caller builds the group's labels with
    /// [`Pipeline::process_grouped`] only for a key it has not seen.
    ///
    /// # Errors
    /// The entry's full labels when they carry `__error__`.
    pub fn process_grouped_key(
        &mut self,
        stream_labels: &Labels,
        entry: LogEntryRef<'_>,
        names: &[String],
        group_key: &mut Vec<u8>,
    ) -> Option<Result<usize, Labels>> {
        let (line, state) = self.run(stream_labels, entry)?;
        // An error a stage left and none dropped (`| drop __error__`).
        if state.has_error && state.get(ERROR_LABEL).is_some() {
            return Some(Err(state.labels()));
        }
        group_key.clear();
        for name in names {
            let value = state.get(name).unwrap_or("");
            group_key.extend_from_slice(&(value.len() as u64).to_le_bytes());
            group_key.extend_from_slice(value.as_bytes());
        }
        Some(Ok(line.len()))
    }

    /// Runs the pipeline on one entry: `None` when a stage drops it, else the line (borrowed until a stage
    /// rewrites it) and the entry's labels, in buffers reused by the next entry.
    fn run<'a>(
        &'a mut self,
        stream_labels: &'a Labels,
        entry: LogEntryRef<'a>,
    ) -> Option<(Cow<'a, str>, EntryState<'a>)> {
        if !self.prefilter_keeps(stream_labels, entry) {
            return None;
        }
        let Pipeline { stages, hints, hinted_lengths, stop_early, scratch, given_fields, .. } = self;
        let hinted_lengths = *hinted_lengths;
        debug_assert_eq!(hinted_lengths.0, HintedLengths::of(hints).0, "hinted_lengths are the lengths of hints");
        let EntryScratch { added, removed, json_path, label_name } = scratch;
        added.clear();
        removed.clear();
        let mut state = EntryState { stream: stream_labels, added, removed, has_error: false };
        let mut line: Cow<'a, str> = Cow::Borrowed(entry.line);
        for label in entry.structured_metadata {
            if hinted_lengths.rules_out(label.name) {
                continue;
            }
            let name = sanitized_label_name(label.name);
            // Named like a stream label, it takes the `_extracted` suffix as a parsed label does: Loki adds
            // structured metadata with `LabelsBuilder.Add`, whose `BaseHas` test renames it (grafana/loki
            // `pkg/logql/log/labels.go`, `pkg/logql/log/pipeline.go`).
            // (Hints wanting `x_extracted` want `x` as well.)
            if !hints.wants(&name) {
                continue;
            }
            if state.is_stream_label(&name) {
                let renamed = format!("{name}_extracted");
                if hints.wants(&renamed) {
                    state.added.insert(&renamed, label.value).origin = AddedOrigin::Metadata;
                }
            } else {
                state.added.insert(&name, label.value).origin = AddedOrigin::Metadata;
            }
        }
        let run_parsers = !hints.wants_none();
        let hinted = HintedNames { hints, lengths: hinted_lengths };
        // Label filter stages already known to keep the entry (see [`EarlyChecks`]).
        let mut settled_stages = 0u64;
        for (stage_index, stage) in stages.iter_mut().enumerate() {
            match stage {
                CompiledStage::LineFilter(filter) => {
                    if !filter.keeps(&line) {
                        return None;
                    }
                }
                // The parser's labels given instead of the line (`give_parsed_fields`), claimed and checked
                // against the early filters as the parser claims and checks them (in any order: such a line
                // parses without error).
                CompiledStage::Json { early_filters, given_checks_early, .. }
                | CompiledStage::Logfmt { early_filters, given_checks_early, .. }
                    if given_fields.active && stage_index == 0 =>
                {
                    let ParserHints::Only(names) = &*hints else { continue };
                    let early_filters: &[EarlyLabelFilter] = if *given_checks_early { early_filters } else { &[] };
                    let mut triggered = 0u64;
                    for (name, range) in names.iter().zip(&given_fields.ranges) {
                        let Some(value) = range.and_then(|(start, end)| given_fields.text.get(start..end)) else {
                            continue;
                        };
                        if let Some(slot) = state.claim_parsed(name) {
                            slot.value.push_str(value);
                            if !early_filters.is_empty() {
                                triggered |= early_filters_triggered(early_filters, &slot.name);
                            }
                        }
                    }
                    if triggered != 0 && !early_filters_keep(early_filters, triggered, &mut state, &mut settled_stages)
                    {
                        return None;
                    }
                }
                CompiledStage::Json { .. }
                | CompiledStage::Logfmt { .. }
                | CompiledStage::Regexp { .. }
                | CompiledStage::Pattern { .. }
                | CompiledStage::Unpack
                    if !run_parsers => {}
                CompiledStage::Json { params, early_filters, .. } => {
                    let buffers = JsonBuffers { path: json_path, label_name };
                    let early = EarlyChecks { filters: early_filters, settled_stages: &mut settled_stages };
                    let fate = if early_filters.is_empty() {
                        parse_json::<false>(&line, &mut state, params, early, hinted, *stop_early, buffers)
                    } else {
                        parse_json::<true>(&line, &mut state, params, early, hinted, *stop_early, buffers)
                    };
                    if fate == LineFate::Dropped {
                        return None;
                    }
                }
                CompiledStage::Logfmt { strict, keep_empty, params, key_search, early_filters, .. } => {
                    let options = LogfmtOptions {
                        strict: *strict,
                        keep_empty: *keep_empty,
                        params,
                        key_search: key_search.as_deref_mut(),
                    };
                    let early = EarlyChecks { filters: early_filters, settled_stages: &mut settled_stages };
                    let fate = if early_filters.is_empty() {
                        parse_logfmt::<false>(&line, &mut state, options, early, hinted, *stop_early, label_name)
                    } else {
                        parse_logfmt::<true>(&line, &mut state, options, early, hinted, *stop_early, label_name)
                    };
                    if fate == LineFate::Dropped {
                        return None;
                    }
                }
                CompiledStage::Regexp { regex, locations, groups } => {
                    if let Some(group) = regex.repeated_class_group(&line) {
                        // The pattern's only group is group 1.
                        let value = group.and_then(|(start, end)| line.get(start..end));
                        if let (Some(value), Some((_, name))) = (value, groups.first()) {
                            state.add_sanitized(name, value);
                        }
                    } else if let Some(base) = regex.captures_read(locations, &line) {
                        for (index, name) in groups.iter() {
                            let found = locations.get(*index);
                            if let Some(value) = found.and_then(|(start, end)| line.get(base + start..base + end)) {
                                state.add_sanitized(name, value);
                            }
                        }
                    }
                }
                CompiledStage::Pattern { pattern, wanted, spans } => {
                    spans.clear();
                    pattern.extract_spans(&line, |index, start, end| {
                        if wanted.get(index).is_some_and(Option::is_some) {
                            spans.push((index, start, end));
                        }
                    });
                    for &(index, start, end) in spans.iter() {
                        if let (Some(Some(name)), Some(value)) = (wanted.get(index), line.get(start..end)) {
                            state.add_sanitized(name, value);
                        }
                    }
                }
                CompiledStage::Unpack => {
                    if let Some(unpacked) = unpack(&line, &mut state, hints) {
                        line = Cow::Owned(unpacked);
                    }
                }
                CompiledStage::LabelFilter(filter) => {
                    let settled = stage_index < 64 && settled_stages & (1 << stage_index) != 0;
                    if !settled && !filter.keeps(&mut state) {
                        return None;
                    }
                }
                CompiledStage::LineFormat(template) => {
                    let labels = state.label_map();
                    let context = TemplateContext { labels: &labels, line: &line, timestamp_ns: entry.timestamp_ns };
                    match template.render(&context) {
                        Ok(rendered) => line = Cow::Owned(rendered),
                        Err(message) => state.set_error("TemplateFormatErr", &message),
                    }
                }
                CompiledStage::LabelFormat(items) => {
                    let labels = state.label_map();
                    for (destination, item) in items {
                        match item {
                            Err(source) if !source.is_empty() => {
                                let value = state.get(source).unwrap_or("").to_string();
                                state.delete(source);
                                state.set(destination, &value);
                            }
                            Ok(template) => {
                                let context =
                                    TemplateContext { labels: &labels, line: &line, timestamp_ns: entry.timestamp_ns };
                                match template.render(&context) {
                                    Ok(value) => state.set(destination, &value),
                                    Err(message) => state.set_error("TemplateFormatErr", &message),
                                }
                            }
                            Err(_) => {}
                        }
                    }
                }
                CompiledStage::Drop(items) => {
                    // Item by item, without listing the entry's labels: only deletions, so the order does
                    // not matter, and labels with empty values count as absent.
                    for item in items.iter() {
                        let (name, matcher) = match item {
                            LabelItem::Name(name) => (name, None),
                            LabelItem::Matcher(matcher) => (&matcher.name, Some(matcher)),
                        };
                        let drop = state.get(name).is_some_and(|value| {
                            !value.is_empty() && matcher.is_none_or(|matcher| matcher.matches(value))
                        });
                        if drop {
                            state.delete(name);
                        }
                    }
                }
                CompiledStage::Keep(items) => {
                    for (name, value) in state.all() {
                        let keep = items.iter().any(|item| match item {
                            LabelItem::Name(kept) => *kept == name,
                            LabelItem::Matcher(matcher) => matcher.name == name && matcher.matches(&value),
                        });
                        if !keep {
                            state.delete(&name);
                        }
                    }
                }
                CompiledStage::Decolorize(regex) => {
                    if let Cow::Owned(decolorized) = regex.replace_all(&line, "") {
                        line = Cow::Owned(decolorized);
                    }
                }
            }
        }
        Some((line, state))
    }

    /// Runs the prefilter, if any, on the entry: false when it drops the entry. A prefilter that keeps most
    /// entries only doubles the parsing of what it keeps, so after [`PrefilterCounts::TRIAL`] entries one
    /// keeping more than half of them is switched off.
    fn prefilter_keeps(&mut self, stream_labels: &Labels, entry: LogEntryRef<'_>) -> bool {
        let Some(prefilter) = &mut self.prefilter else { return true };
        let kept = prefilter.run(stream_labels, entry).is_some();
        let counts = &mut self.prefilter_counts;
        counts.seen += 1;
        counts.kept += u64::from(kept);
        if counts.seen == PrefilterCounts::TRIAL && counts.kept * 2 > counts.seen {
            self.prefilter = None;
        }
        kept
    }
}

/// How many entries a pipeline's prefilter saw and kept.
#[derive(Debug, Default, Clone, Copy)]
struct PrefilterCounts {
    seen: u64,
    kept: u64,
}

impl PrefilterCounts {
    /// Entries after which a prefilter that kept most of them is switched off.
    const TRIAL: u64 = 4096;
}

/// The stages a prefilter runs for a pipeline extracting every label, and the labels it extracts: the
/// leading line filters, parsers and label filters, up to the last such label filter reading a label other
/// than `__error__`, when a parser comes before it. Such a prefix only adds labels (first wins) and drops
/// entries, and its filters read only the labels named, so extracting just those labels (the whole line
/// still read, so parse errors are seen) drops exactly the entries the full pipeline drops there.
fn prefilter_stages(stages: &[Stage]) -> Option<(&[Stage], Vec<String>)> {
    let mut parser_seen = false;
    let mut end = None;
    let mut names = Vec::new();
    for (index, stage) in stages.iter().enumerate() {
        match stage {
            Stage::LineFilter(_) => {}
            Stage::Parser(ParserStage::Json(_) | ParserStage::Logfmt { .. })
            | Stage::Parser(ParserStage::Regexp(_) | ParserStage::Pattern(_)) => parser_seen = true,
            Stage::LabelFilter(filter) => {
                let before = names.len();
                label_filter_names(filter, &mut names);
                let reads_fields = names
                    .get(before..)
                    .unwrap_or_default()
                    .iter()
                    .any(|name| name != ERROR_LABEL && name != ERROR_DETAILS_LABEL);
                if parser_seen && reads_fields {
                    end = Some(index + 1);
                }
            }
            Stage::Parser(ParserStage::Unpack)
            | Stage::LineFormat(_)
            | Stage::LabelFormat(_)
            | Stage::Drop(_)
            | Stage::Keep(_)
            | Stage::Decolorize => break,
        }
    }
    let prefix = stages.get(..end?)?;
    Some((prefix, hinted_names(names)))
}

/// True for a parser stage that can leave `__error__` on an entry: `| json` (any line that is not one JSON
/// object) and `| logfmt --strict`. Non-strict `| logfmt` skips what it cannot read (see
/// [`logfmt::visit_pairs`]), and `| regexp` and `| pattern` only extract or not, so a prefilter made of those
/// alone extracts the same first values whether or not it reads the rest of the line.
fn parser_may_fail(stage: &Stage) -> bool {
    match stage {
        Stage::Parser(ParserStage::Json(_) | ParserStage::Unpack) => true,
        Stage::Parser(ParserStage::Logfmt { strict, .. }) => *strict,
        _ => false,
    }
}

/// Label names to extract for a hint: `names`, plus `x` for each `x_extracted` (a parsed label colliding
/// with a stream label is renamed after the hint is consulted), sorted and deduplicated.
pub(crate) fn hinted_names(mut names: Vec<String>) -> Vec<String> {
    let stripped: Vec<String> =
        names.iter().filter_map(|name| name.strip_suffix("_extracted")).map(str::to_string).collect();
    names.extend(stripped);
    names.sort();
    names.dedup();
    names
}

/// The lengths of hinted label names, to pass over most field names without comparing or sanitizing
/// them: sanitizing an ASCII name keeps its length, or adds one byte when it starts with a digit, so an
/// ASCII name whose length so counted is no hinted name's length cannot become one.
#[derive(Clone, Copy)]
struct HintedLengths(u64);

impl HintedLengths {
    fn of(hints: &ParserHints) -> HintedLengths {
        let ParserHints::Only(names) = hints else { return HintedLengths(u64::MAX) };
        let mut lengths = 0u64;
        for name in names {
            // Names of 63 bytes or more are not told apart: the last bit stands for all of them.
            lengths |= 1 << name.len().min(63);
        }
        HintedLengths(lengths)
    }

    /// True when `name` (a field name before sanitizing) cannot sanitize into a hinted name.
    #[inline]
    fn rules_out(self, name: &str) -> bool {
        self.rules_out_key(TopLevelKey { bytes: name.as_bytes(), known_ascii: false })
    }

    /// [`HintedLengths::rules_out`] for a key of a `| json` line, whose ASCII test the scan may have done.
    #[inline]
    fn rules_out_key(self, key: TopLevelKey<'_>) -> bool {
        // The bit of the sanitized name's length (lengths of 63 and more share the top bit). Counting the
        // `_` a leading digit gets, not both lengths, passes over the keys one byte shorter than a hinted
        // name: `logger` for `user_id`.
        let leading_digit = key.bytes.first().is_some_and(u8::is_ascii_digit);
        let possible = 1u64 << (key.bytes.len() + usize::from(leading_digit)).min(63);
        self.0 & possible == 0 && (key.known_ascii || key.bytes.is_ascii())
    }
}

/// A pipeline's parser hints with the lengths of their names, built once per pipeline for its parsers.
#[derive(Clone, Copy)]
struct HintedNames<'a> {
    hints: &'a ParserHints,
    /// `HintedLengths::of(hints)`.
    lengths: HintedLengths,
}

/// False when `name` cannot sanitize into any of `names` by its first byte alone: sanitizing keeps a first
/// letter or `_` and makes anything else start with `_`. Cheaper than [`is_valid_label_name`] for the field
/// names of a hinted length that a parser still looks at (`span_id` for `user_id`).
#[inline]
fn may_sanitize_to_a_first_byte(names: &[String], name: &str) -> bool {
    let Some(&first) = name.as_bytes().first() else { return true };
    let sanitized_first = if first.is_ascii_alphabetic() { first } else { b'_' };
    names.iter().any(|wanted| wanted.as_bytes().first() == Some(&sanitized_first))
}

/// The index of `name` among hinted `names`. Names are short: bytes compared in line rather than by a
/// call to `memcmp` (4-5% of a by-level `| json` pipeline's instructions in session 10).
#[inline]
pub(crate) fn hinted_position(names: &[String], name: &str) -> Option<usize> {
    names.iter().position(|wanted| same_short_bytes(wanted.as_bytes(), name.as_bytes()))
}

/// The semantics [`JsonFieldColumns`] stores with its columns (`oxeye_model::logs::LineFieldExtractor`):
/// the labels `| json` (no parameters) gives a line that it parses without error. Raise it whenever `| json`
/// would give any such line other labels, so that columns written before stop being read.
pub const JSON_FIELD_COLUMNS_SEMANTICS: u32 = 1;

/// The top-level fields of seed-shaped structlog JSON kept in field columns by default, read by `sum by
/// (...)` and label filters of Grafana's dashboards: `level`, `logger`, `method`, `status_code` and `path`
/// have few values each (dictionary columns; `method` follows from `path`, a derived column), `duration_ms`
/// many (a values column of decimals). On `ingest_throughput`'s corpus `path` and `duration_ms` add 1.4
/// bytes per stored line to the other four (33.1 -> 34.5), and let `sum by (path) (count_over_time({...} |
/// json | duration_ms > 1000 [10m]))` read no line.
pub const DEFAULT_JSON_FIELD_COLUMNS: [&str; 6] = ["level", "logger", "method", "status_code", "path", "duration_ms"];

/// Finds, for a log store cutting a chunk, the labels `| json` gives each line among a fixed set of names,
/// so that the store keeps them in field columns and a query needing only those (`sum by (level)
/// (count_over_time({...} | json [5m]))`) reads them instead of the lines; see
/// [`Pipeline::line_field_names`]. A chunk gets no columns when `| json` fails on one of its lines, or
/// when one of the names comes twice in a line (after sanitizing and flattening): which occurrence a
/// query's parse keeps then depends on the other names it asks for.
#[derive(Debug, Clone)]
pub struct JsonFieldColumns {
    hints: ParserHints,
}

impl JsonFieldColumns {
    /// Columns for the labels `names` (label names as `| json` gives them: sanitized, nested keys joined
    /// with `_`).
    pub fn new<Name: Into<String>>(names: impl IntoIterator<Item = Name>) -> JsonFieldColumns {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        JsonFieldColumns { hints: ParserHints::Only(hinted_names(names)) }
    }
}

impl Default for JsonFieldColumns {
    /// Columns for [`DEFAULT_JSON_FIELD_COLUMNS`].
    fn default() -> Self {
        JsonFieldColumns::new(DEFAULT_JSON_FIELD_COLUMNS)
    }
}

impl oxeye_model::logs::LineFieldExtractor for JsonFieldColumns {
    fn writes(&self, semantics: u32, names: &[String]) -> bool {
        semantics == JSON_FIELD_COLUMNS_SEMANTICS
            && names.iter().all(|name| matches!(&self.hints, ParserHints::Only(ours) if ours.contains(name)))
    }

    fn extract(&self, lines: &[&str], field: &mut dyn FnMut(usize, &str, &str)) -> Option<u32> {
        let ParserHints::Only(names) = &self.hints else { return None };
        if names.is_empty() || names.len() > 64 {
            return None;
        }
        let hinted_lengths = HintedLengths::of(&self.hints);
        let (mut path, mut label_name) = (String::new(), String::new());
        // Each name's value in the current line, in buffers reused line after line; `given` has bit i set
        // when `values[i]` holds the line's value (a name seen with `null` has none).
        let mut values: Vec<String> = vec![String::new(); names.len()];
        for (index, line) in lines.iter().enumerate() {
            let mut seen = 0u64;
            let mut given = 0u64;
            let mut duplicate = false;
            let outcome =
                visit_fields_where(line, &mut path, |key| hinted_lengths.rules_out_key(key), &mut |name, value| {
                    if hinted_lengths.rules_out(name) {
                        return ControlFlow::Continue(());
                    }
                    let position = match hinted_position(names, name) {
                        Some(position) => Some(position),
                        None if !may_sanitize_to_a_first_byte(names, name) || is_valid_label_name(name) => None,
                        None => {
                            sanitize_label_name_into(name, &mut label_name);
                            names.iter().position(|wanted| *wanted == label_name)
                        }
                    };
                    let Some(position) = position else { return ControlFlow::Continue(()) };
                    if seen & (1 << position) != 0 {
                        duplicate = true;
                        return ControlFlow::Break(());
                    }
                    seen |= 1 << position;
                    if let Some(slot) = values.get_mut(position) {
                        slot.clear();
                        if value.write_label_value(slot) {
                            given |= 1 << position;
                        }
                    }
                    ControlFlow::Continue(())
                });
            let parsed = match outcome {
                Ok(()) => true,
                Err(error) => error.expected == EXPECTED_END_OF_LINE,
            };
            if duplicate || !parsed {
                return None;
            }
            for (position, (name, value)) in names.iter().zip(&values).enumerate() {
                if given & (1 << position) != 0 {
                    field(index, name, value);
                }
            }
        }
        Some(JSON_FIELD_COLUMNS_SEMANTICS)
    }
}

/// Appends `text` to `out` as a JSON string (quoted; `"`, `\` and control characters escaped), which the
/// `| json` parser reads back as `text`.
#[cfg(test)]
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    // Most values need no escape: copied whole.
    if !text.bytes().any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20) {
        out.push_str(text);
        out.push('"');
        return;
    }
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// The JSON parser's reused buffers.
struct JsonBuffers<'a> {
    path: &'a mut String,
    label_name: &'a mut String,
}

/// `| logfmt` flags and `label="key"` parameters.
struct LogfmtOptions<'a> {
    strict: bool,
    keep_empty: bool,
    params: &'a [(String, String)],
    /// The search of the hinted labels, when the stage has one (see [`HintedKeySearch`]).
    key_search: Option<&'a mut HintedKeySearch>,
}

/// `| json`: adds the line's scalar fields as labels. A line that fails to parse keeps what Loki's
/// `JSONParser.Process` (pkg/logql/log/parser.go) keeps, since it sets each label as `jsonparser.ObjectEach`
/// reaches it and only then `__error__="JSONParserErr"` with the error's message as `__error_details__`: the
/// fields before the error, except those of a top-level member whose nested object's braces never balance
/// (`ObjectEach` finds a nested object's end before walking it). Nothing for a line that is no object; a
/// line whose object closes is not in error, whatever follows it (`ObjectEach` stops at the closing brace).
///
/// Each label extracted is checked at once against the early filters on it; one failing drops the line
/// ([`LineFate::Dropped`]), as Loki drops it (see [`EarlyLabelFilter`]). A label at the top level is checked
/// and the line dropped without reading further. A nested one is kept only if its top-level member's braces
/// balance (`ObjectEach` walks a nested object only then, so Loki never checks a label of one that does
/// not), which is known at the end of the line: a failed check there drops the line if the label stays.
/// `EARLY_CHECKS` is false when the stage has no early filter: the scan then carries no code for them.
fn parse_json<const EARLY_CHECKS: bool>(
    line: &str,
    state: &mut EntryState<'_>,
    params: &[(String, Vec<PathPart>)],
    early: EarlyChecks<'_>,
    hinted_names: HintedNames<'_>,
    stop_early: bool,
    buffers: JsonBuffers<'_>,
) -> LineFate {
    let HintedNames { hints, lengths: hinted_lengths } = hinted_names;
    if !params.is_empty() {
        parse_json_expressions(line, state, params);
        return LineFate::Kept;
    }
    // Stop early once every hinted label is found (at most 64 names tracked), as Loki's json parser does.
    let (mut missing, hinted) = match hints {
        ParserHints::Only(names) if names.len() <= 64 => (u64::MAX >> (64 - names.len().max(1)), Some(names)),
        _ => (u64::MAX, None),
    };
    let JsonBuffers { path, label_name } = buffers;
    // Labels go straight into the entry's slots, marked pending until the line's outcome is known.
    // Fields whose names the hints rule out by length are checked without a call to the visitor.
    let unwanted = |key: TopLevelKey<'_>| hinted.is_some() && hinted_lengths.rules_out_key(key);
    // The scanner names a top-level member with an unescaped key by the key itself, a slice of the line;
    // other names (nested members, escaped keys) are built in its path buffer.
    let line_bytes = line.as_bytes().as_ptr_range();
    let (mut dropped, mut dropped_if_kept) = (false, false);
    let EarlyChecks { filters: early_filters, settled_stages } = early;
    let settled_before = *settled_stages;
    let outcome = visit_fields_where(line, path, unwanted, &mut |name, value: JsonScalar<'_>| {
        let sanitized: &str = match hinted {
            Some(names) => {
                if hinted_lengths.rules_out(name) {
                    return ControlFlow::Continue(());
                }
                // Most keys are valid label names already: match them before sanitizing anything.
                let index = match hinted_position(names, name) {
                    Some(index) => index,
                    None if !may_sanitize_to_a_first_byte(names, name) || is_valid_label_name(name) => {
                        return ControlFlow::Continue(());
                    }
                    None => {
                        sanitize_label_name_into(name, label_name);
                        let Some(index) = names.iter().position(|wanted| wanted == label_name) else {
                            return ControlFlow::Continue(());
                        };
                        index
                    }
                };
                missing &= !(1u64 << index);
                names.get(index).map_or("", String::as_str)
            }
            None if is_valid_label_name(name) => name,
            None => {
                sanitize_label_name_into(name, label_name);
                label_name
            }
        };
        // Which early filters the label just extracted triggers, one bit each.
        let mut triggered = 0u64;
        if !matches!(value, JsonScalar::Null)
            && let Some(slot) = state.claim_parsed(sanitized)
        {
            slot.pending = true;
            value.write_label_value(&mut slot.value);
            // Only a string the scan did not see to be ASCII, or one unescaped, may hold U+FFFD.
            if matches!(value, JsonScalar::String { escaped, known_ascii, .. } if escaped || !known_ascii)
                && holds_replacement_character(&slot.value)
            {
                slot.value.clear();
            }
            if EARLY_CHECKS {
                triggered = early_filters_triggered(early_filters, &slot.name);
            }
        }
        if EARLY_CHECKS && triggered != 0 && !early_filters_keep(early_filters, triggered, state, settled_stages) {
            if line_bytes.contains(&name.as_ptr()) {
                dropped = true;
                return ControlFlow::Break(());
            }
            dropped_if_kept = true;
        }
        if stop_early && missing == 0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    if EARLY_CHECKS && dropped {
        state.added.settle_pending(false);
        return LineFate::Dropped;
    }
    match outcome {
        Ok(()) => state.added.settle_pending(true),
        Err(error) if error.expected == EXPECTED_END_OF_LINE => state.added.settle_pending(true),
        Err(error) if error.expected == EXPECTED_MEMBER_BRACE => {
            // A top-level member's nested object never closes: Loki keeps none of its fields, so the labels
            // are taken back and what comes before the member read again. That part's own error, at the
            // member's value, is not the line's: the line's error replaces it. The second read runs the early
            // checks before the member again, before any error of this parser, as Loki runs them; a failed one
            // in the member is void with its label.
            state.added.settle_pending(false);
            *settled_stages = settled_before;
            let error_before = state.has_error;
            let before = line.get(..error.position).unwrap_or_default();
            let buffers = JsonBuffers { path, label_name };
            let early = EarlyChecks { filters: early_filters, settled_stages };
            if parse_json_again::<EARLY_CHECKS>(before, state, early, hinted_names, stop_early, buffers)
                == LineFate::Dropped
            {
                return LineFate::Dropped;
            }
            if !error_before {
                state.has_error = false;
                state.set_error("JSONParserErr", error.loki_details(line));
            }
            return LineFate::Kept;
        }
        Err(error) => {
            state.added.settle_pending(true);
            state.set_error("JSONParserErr", error.loki_details(line));
        }
    }
    if EARLY_CHECKS && dropped_if_kept { LineFate::Dropped } else { LineFate::Kept }
}

/// Whether a parser keeps or drops the line it parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineFate {
    Kept,
    /// A label filter checked early failed (see [`EarlyLabelFilter`]).
    Dropped,
}

/// The early filters (one bit each) that the extraction of the label `name` (its final name) triggers.
#[inline(always)]
fn early_filters_triggered(early_filters: &[EarlyLabelFilter], name: &str) -> u64 {
    let mut triggered = 0u64;
    for (index, early) in early_filters.iter().enumerate() {
        if same_short_bytes(early.label.as_bytes(), name.as_bytes()) {
            triggered |= 1 << index;
        }
    }
    triggered
}

/// True when every early filter whose bit is set in `triggered` keeps the entry as it stands; marks in
/// `settled_stages` those that keep it without a failed conversion (see [`EarlyChecks`]).
fn early_filters_keep(
    early_filters: &[EarlyLabelFilter],
    triggered: u64,
    state: &mut EntryState<'_>,
    settled_stages: &mut u64,
) -> bool {
    for (index, early) in early_filters.iter().enumerate() {
        if triggered & (1 << index) == 0 {
            continue;
        }
        let mut error_seen = false;
        if !early.filter.keeps_early(state, &mut error_seen) {
            return false;
        }
        if !error_seen && early.stage < 64 {
            *settled_stages |= 1 << early.stage;
        }
    }
    true
}

/// [`parse_json`] of the part of a line before a top-level member that never closes: off the scan's path,
/// and kept out of line so that `parse_json` itself can be inlined.
#[cold]
#[inline(never)]
fn parse_json_again<const EARLY_CHECKS: bool>(
    line: &str,
    state: &mut EntryState<'_>,
    early: EarlyChecks<'_>,
    hinted: HintedNames<'_>,
    stop_early: bool,
    buffers: JsonBuffers<'_>,
) -> LineFate {
    parse_json::<EARLY_CHECKS>(line, state, &[], early, hinted, stop_early, buffers)
}

fn json_scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) if holds_replacement_character(text) => Some(String::new()),
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(value) => Some(value.to_string()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `| json label="path"`: each expression's value, empty when the path leads nowhere.
fn parse_json_expressions(line: &str, state: &mut EntryState<'_>, params: &[(String, Vec<PathPart>)]) {
    let parsed: serde_json::Value = match serde_json::from_str(line) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        Ok(_) => {
            state.set_error("JSONParserErr", "Value looks like object, but can't find closing '}' symbol");
            return;
        }
        Err(error) => {
            state.set_error("JSONParserErr", &error.to_string());
            return;
        }
    };
    for (label, path) in params {
        let mut current = Some(&parsed);
        for part in path {
            current = match (current, part) {
                (Some(serde_json::Value::Object(map)), PathPart::Key(key)) => map.get(key),
                (Some(serde_json::Value::Array(items)), PathPart::Index(index)) => items.get(*index),
                _ => None,
            };
        }
        let value = current.and_then(json_scalar).unwrap_or_default();
        state.add_parsed(label, &value);
    }
}

/// `| unpack`: for a JSON object line with a string `_entry` field, adds its other string fields and returns
/// `_entry`, which replaces the line; a line without `_entry` is left as it is, labels included. As Loki's
/// `UnpackParser` (pkg/logql/log/parser.go): an empty line is left alone; a line not starting with `{` gets
/// `__error__="JSONParserErr"` and `__error_details__="expecting json object(6), but it is not"`; a line
/// that fails to parse gets the JSON parser's error and no labels (they are only added once the whole object
/// is read). What follows the object's closing brace is not read.
fn unpack(line: &str, state: &mut EntryState<'_>, hints: &ParserHints) -> Option<String> {
    match line.as_bytes().first() {
        None => return None,
        Some(b'{') => {}
        Some(_) => {
            state.set_error("JSONParserErr", "expecting json object(6), but it is not");
            return None;
        }
    }
    let first_value = serde_json::Deserializer::from_str(line).into_iter::<serde_json::Value>().next();
    let parsed: serde_json::Map<String, serde_json::Value> = match first_value {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => {
            let error = visit_fields(line, &mut String::new(), &mut |_, _| ControlFlow::Continue(())).err();
            let details = error.map_or("Malformed JSON error", |error| error.loki_details(line));
            state.set_error("JSONParserErr", details);
            return None;
        }
    };
    if !matches!(parsed.get("_entry"), Some(serde_json::Value::String(_))) {
        return None;
    }
    let mut unpacked_line = None;
    for (key, value) in parsed {
        if key == "_entry" {
            if let serde_json::Value::String(entry_line) = value {
                unpacked_line = Some(entry_line);
            }
            continue;
        }
        if let serde_json::Value::String(text) = value
            && hints.wants(&sanitized_label_name(&key))
        {
            state.add_parsed(&key, &text);
        }
    }
    unpacked_line
}

/// The parser `detected_fields` credits a line to and the fields it found, as Loki's
/// `pkg/querier/queryrange/detected_fields.go` does: `| json` when the line is a JSON object (nested keys
/// flattened with `_`, arrays skipped), else `| logfmt` (pairs with empty values left out); `None` when
/// neither finds a field. Names are sanitized label names; values as the parser extracts them.
pub fn detect_line_fields(line: &str) -> Option<(&'static str, Vec<(String, String)>)> {
    let mut json_fields: Vec<(String, String)> = Vec::new();
    let json = visit_fields(line, &mut String::new(), &mut |name, value: JsonScalar<'_>| {
        if let Some(value) = value.to_label_value() {
            json_fields.push((sanitize_label_name(name), value));
        }
        ControlFlow::Continue(())
    });
    if json.is_ok() {
        return Some(("json", json_fields));
    }
    let pairs = logfmt::pairs(line, false).ok()?;
    let logfmt_fields: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (sanitize_label_name(key), value.into_owned()))
        .filter(|(name, _)| !name.is_empty())
        .collect();
    if logfmt_fields.is_empty() { None } else { Some(("logfmt", logfmt_fields)) }
}

fn parse_logfmt<const EARLY_CHECKS: bool>(
    line: &str,
    state: &mut EntryState<'_>,
    options: LogfmtOptions<'_>,
    early: EarlyChecks<'_>,
    hinted_names: HintedNames<'_>,
    stop_early: bool,
    label_name: &mut String,
) -> LineFate {
    let HintedNames { hints, lengths: hinted_lengths } = hinted_names;
    // A label with early filters is checked as soon as it is claimed (see [`EarlyLabelFilter`]); a failed
    // check drops the line without reading the rest of it, as Loki's `LogfmtParser.Process` returns `false`
    // when `ShouldContinueParsingLine` fails. A parse without flags sets no error, so checking a filter here or
    // at its own position gives the same result on the labels it reads.
    let EarlyChecks { filters: early_filters, settled_stages } = early;
    let mut dropped = false;
    let mut check_early = |state: &mut EntryState<'_>, triggered: u64| {
        EARLY_CHECKS && triggered != 0 && !early_filters_keep(early_filters, triggered, state, settled_stages)
    };
    if !options.params.is_empty() {
        // A strict parse that fails keeps the pairs before the error, as Loki's `LogfmtExpressionParser` does.
        let mut pairs = Vec::new();
        let outcome = logfmt::visit_pairs(line, options.strict, |key, value| {
            pairs.push((key, value));
            ControlFlow::Continue(())
        });
        for (label, key) in options.params {
            if let Some((_, value)) = pairs.iter().find(|(found, _)| found == key) {
                state.add_parsed(label, value);
            }
        }
        if let Err(details) = outcome {
            state.set_error("LogfmtParserErr", &details);
        }
        return LineFate::Kept;
    }
    // Stop early once every hinted label is found (at most 64 names tracked), as Loki's logfmt parser does
    // (`LogfmtParser.Process` in pkg/logql/log/parser.go breaks once `AllRequiredExtracted`).
    let (mut missing, hinted) = match hints {
        ParserHints::Only(names) if names.len() <= 64 => (u64::MAX >> (64 - names.len().max(1)), Some(names)),
        _ => (u64::MAX, None),
    };
    let mut scan_from = 0;
    if let (Some(search), Some(names)) = (options.key_search, hinted) {
        // The labels found are checked together once the search returns, which keeps the checks out of the
        // search: the parse sets no error, so the order of the checks does not matter.
        let mut triggered = 0u64;
        let plain = search.find(line, names, options.keep_empty, label_name, |index, value| {
            if let Some(slot) = names.get(index).and_then(|name| state.claim_parsed(name)) {
                slot.value.push_str(value);
                if EARLY_CHECKS {
                    triggered |= early_filters_triggered(early_filters, &slot.name);
                }
            }
        });
        if check_early(state, triggered) {
            return LineFate::Dropped;
        }
        missing &= !plain.found;
        if missing == 0 || plain.end >= line.len() {
            return LineFate::Kept;
        }
        // The rest of the line, from the token holding its first quote, is scanned as usual: its pairs of
        // names found already lose to the first ones (`claim_parsed`).
        scan_from = plain.end;
    }
    let line = line.get(scan_from..).unwrap_or_default();
    // Pairs go straight into the entry's slots. A strict parse that fails keeps the pairs before the error, as
    // Loki's `LogfmtParser.Process` (pkg/logql/log/parser.go) does: it sets each pair as its decoder reads it
    // and, in strict mode, stops at the first error and adds `__error__` and `__error_details__`.
    let outcome = logfmt::visit_pairs(line, options.strict, |key, value| {
        if (value.is_empty() && !options.keep_empty) || hinted_lengths.rules_out(key) {
            return ControlFlow::Continue(());
        }
        let name: &str = match hinted {
            Some(names) => {
                // Most keys are valid label names already: match them before sanitizing anything.
                let valid = is_valid_label_name(key);
                let index = match hinted_position(names, key) {
                    Some(index) if valid => index,
                    _ if valid => return ControlFlow::Continue(()),
                    _ => {
                        sanitize_label_name_into(key, label_name);
                        let Some(index) = hinted_position(names, label_name) else {
                            return ControlFlow::Continue(());
                        };
                        index
                    }
                };
                missing &= !(1u64 << index);
                names.get(index).map_or("", String::as_str)
            }
            None => {
                let name: &str = if is_valid_label_name(key) {
                    key
                } else {
                    sanitize_label_name_into(key, label_name);
                    label_name
                };
                if !hints.wants(name) {
                    return ControlFlow::Continue(());
                }
                name
            }
        };
        let triggered = match state.claim_parsed(name) {
            Some(slot) => {
                slot.value.push_str(&value);
                if EARLY_CHECKS { early_filters_triggered(early_filters, &slot.name) } else { 0 }
            }
            None => 0,
        };
        if check_early(state, triggered) {
            dropped = true;
            return ControlFlow::Break(());
        }
        if stop_early && missing == 0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    if dropped {
        return LineFate::Dropped;
    }
    if let Err(details) = outcome {
        state.set_error("LogfmtParserErr", &details);
    }
    LineFate::Kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{Expr, Grouping, parse_expr};

    fn run(query: &str, line: &str) -> Option<ProcessedEntry> {
        let Expr::Log(log) = parse_expr(query).unwrap() else { panic!("not a log query") };
        let mut pipeline = Pipeline::new(&log.pipeline).unwrap();
        pipeline
            .process(&Labels::from_pairs([("service_name", "boxoffice"), ("level", "info")]), &LogEntry::new(1, line))
    }

    /// A name the length test passes over never sanitizes into a hinted name: random names of digits,
    /// letters, `_`, punctuation and multibyte text against hints of every length from 1 to 12.
    #[test]
    fn hinted_lengths_pass_over_only_names_that_cannot_become_a_hint() {
        let mut next = crate::test_random::xorshift(0x2545_f491_4f6c_dd1d);
        let pieces = ["a", "Z", "_", "7", "0", ".", "-", "é", " "];
        for _ in 0..20_000 {
            let name: String = (0..next() % 9).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
            let sanitized = sanitize_label_name(&name);
            let hints = ParserHints::Only(vec!["x".repeat(sanitized.len().max(1)), "user_id".to_string()]);
            let lengths = HintedLengths::of(&hints);
            if sanitized.len() == lengths_hint_length(&hints) {
                assert!(!lengths.rules_out(&name), "{name:?}");
                let known_ascii = name.is_ascii();
                assert!(!lengths.rules_out_key(TopLevelKey { bytes: name.as_bytes(), known_ascii }), "{name:?}");
            }
        }
        // The first-byte test never rules out a name that sanitizes into a hint (half the time the hint is
        // the name's own sanitized form).
        for _ in 0..20_000 {
            let mut draw =
                || -> String { (0..next() % 6).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect() };
            let (name, other) = (draw(), draw());
            let hint = sanitize_label_name(if next().is_multiple_of(2) { &name } else { &other });
            let hints = vec![hint, "user_id".to_string()];
            if hints.contains(&sanitize_label_name(&name)) {
                assert!(may_sanitize_to_a_first_byte(&hints, &name), "{name:?} {hints:?}");
            }
        }
        assert!(!may_sanitize_to_a_first_byte(&["user_id".to_string()], "span_id"));
        assert!(may_sanitize_to_a_first_byte(&["_1".to_string()], "1"));
        // `logger` is one byte shorter than `user_id` and starts with no digit: passed over.
        let user_id = HintedLengths::of(&ParserHints::Only(vec!["user_id".to_string()]));
        assert!(user_id.rules_out("logger"));
        assert!(!user_id.rules_out("span_id"));
        assert!(!user_id.rules_out("1logge"));
    }

    /// The length of the first hinted name.
    fn lengths_hint_length(hints: &ParserHints) -> usize {
        match hints {
            ParserHints::Only(names) => names.first().map_or(0, String::len),
            _ => 0,
        }
    }

    #[test]
    fn label_name_check_agrees_with_the_byte_loop_at_every_length_and_position() {
        // The word-wise check has paths below 4, below 8 and from 8 bytes: every byte class boundary
        // (neighbours of `0`-`9`, `A`-`Z`, `_`, `a`-`z`, DEL, non-ASCII) at every position must be seen.
        let by_bytes = |name: &str| {
            !name.starts_with(|character: char| character.is_ascii_digit())
                && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        };
        let probes = ["/", "0", "9", ":", "@", "A", "Z", "[", "^", "_", "`", "a", "z", "{", "\x7f", "\0", "é", "-"];
        for length in 0..20usize {
            let base: String = (0..length).map(|index| ['a', 'Z', '_', '7'][index % 4]).collect();
            for position in 0..length {
                for probe in probes {
                    let mut name = base.clone();
                    name.replace_range(position..=position, probe);
                    assert_eq!(is_valid_label_name(&name), by_bytes(&name), "{name:?}");
                }
            }
            assert_eq!(is_valid_label_name(&base), by_bytes(&base), "{base:?}");
        }
    }

    #[test]
    fn same_short_bytes_agrees_with_slice_equality_at_every_length_and_position() {
        // The word-wise comparison has separate paths below 4, below 8 and from 8 bytes, and reads the last
        // word overlapping the one before it: a difference at any position of any length must be seen.
        for length in 0..40usize {
            let left: Vec<u8> = (0..length).map(|index| b'a' + (index % 26) as u8).collect();
            assert!(same_short_bytes(&left, &left.clone()), "length {length}");
            for position in 0..length {
                let mut right = left.clone();
                right[position] ^= 0x20;
                assert!(!same_short_bytes(&left, &right), "length {length}, difference at {position}");
            }
            let longer = [left.as_slice(), b"x"].concat();
            assert!(!same_short_bytes(&left, &longer), "lengths {length} and {}", length + 1);
        }
    }

    #[test]
    fn json_flattens_and_renames_collisions() {
        let entry = run(r#"{a="b"} | json"#, r#"{"level":"error","http":{"status":500},"tags":[1]}"#).unwrap();
        assert_eq!(entry.labels.get("level_extracted"), Some("error"));
        assert_eq!(entry.labels.get("http_status"), Some("500"));
        assert_eq!(entry.labels.get("tags"), None);
        let broken = run(r#"{a="b"} | json"#, "not json").unwrap();
        assert_eq!(broken.labels.get(ERROR_LABEL), Some("JSONParserErr"));
        assert!(run(r#"{a="b"} | json | __error__="""#, "not json").is_none());
    }

    #[test]
    fn json_params_logfmt_and_numeric_filters() {
        let entry =
            run(r#"{a="b"} | json code="http.status", first="items[0]""#, r#"{"http":{"status":404},"items":["x"]}"#)
                .unwrap();
        assert_eq!((entry.labels.get("code"), entry.labels.get("first")), (Some("404"), Some("x")));
        assert!(
            run(r#"{a="b"} | logfmt | latency > 250ms and status >= 500"#, "status=503 latency=1.5s msg=\"a b\"")
                .is_some()
        );
        assert!(run(r#"{a="b"} | logfmt | latency > 2s"#, "status=503 latency=1.5s").is_none());
        assert!(run(r#"{a="b"} | logfmt | size > 1KB"#, "size=2KB").is_some());
        let formatted = run(
            r#"{a="b"} | logfmt | line_format "{{.msg}} ({{.status}})" | label_format code=status"#,
            "status=200 msg=\"ok go\"",
        )
        .unwrap();
        assert_eq!(formatted.line, "ok go (200)");
        assert_eq!((formatted.labels.get("code"), formatted.labels.get("status")), (Some("200"), None));
    }

    #[test]
    fn equal_group_keys_mean_equal_group_labels() {
        let stages = match parse_expr(r#"{a="b"} | json"#).unwrap() {
            Expr::Log(log) => log.pipeline,
            _ => panic!("not a log query"),
        };
        let names = vec!["path".to_string(), "level".to_string(), "path".to_string()];
        let hints = ParserHints::Only(vec!["path".to_string(), "level".to_string()]);
        let mut pipeline = Pipeline::with_hints(&stages, hints).unwrap();
        let stream = Labels::from_pairs([("service_name", "boxoffice")]);
        let lines = [
            r#"{"level":"error","path":"/x"}"#,
            r#"{"path":"/x","level":"error","other":1}"#,
            r#"{"level":"info","path":"/x"}"#,
            r#"{"level":"","path":"/x"}"#,
            r#"{"path":"/x"}"#,
            r#"{"level":"/x"}"#,
            r#"{"level":"x","path":"/"}"#,
        ];
        let mut keyed = Vec::new();
        for line in lines {
            let entry = LogEntryRef { timestamp_ns: 1, line, structured_metadata: &[] };
            let mut key = Vec::new();
            let length = pipeline.process_grouped_key(&stream, entry, &names, &mut key).unwrap().unwrap();
            let (grouped_length, labels) = pipeline.process_grouped(&stream, entry, &names).unwrap().unwrap();
            assert_eq!(length, grouped_length);
            keyed.push((key, labels));
        }
        for (left_key, left_labels) in &keyed {
            for (right_key, right_labels) in &keyed {
                assert_eq!(left_key == right_key, left_labels == right_labels, "{left_labels:?} {right_labels:?}");
            }
        }
    }

    fn run_hinted(query: &str, line: &str) -> Option<ProcessedEntry> {
        let mut pipeline = hinted_pipeline(query);
        let mut entry = LogEntry::new(1, line);
        entry.structured_metadata.push(oxeye_model::Label { name: "trace_id".into(), value: "abc".into() });
        pipeline.process(&Labels::from_pairs([("service_name", "boxoffice"), ("level", "info")]), &entry)
    }

    /// The pipeline of a grouped metric query, with the parser hints its grouping gives.
    fn hinted_pipeline(query: &str) -> Pipeline {
        let Expr::Metric(crate::syntax::MetricExpr::VectorAggregation { inner, grouping, .. }) =
            parse_expr(query).unwrap()
        else {
            panic!("not a vector aggregation")
        };
        let crate::syntax::MetricExpr::RangeAggregation { range, .. } = *inner else { panic!("not a range") };
        let hints = ParserHints::for_grouping(
            Some(&grouping.unwrap_or(Grouping { without: false, labels: Vec::new() })),
            &range.log.pipeline,
            range.unwrap.as_ref(),
        );
        Pipeline::with_hints(&range.log.pipeline, hints).unwrap()
    }

    #[test]
    fn grouped_metric_queries_extract_only_the_labels_they_read() {
        let line = r#"{"level":"error","status":503,"path":"/x","user":{"id":7}}"#;
        let entry =
            run_hinted(r#"sum by (level_extracted) (count_over_time({a="b"} | json | status >= 500 [1m]))"#, line)
                .unwrap();
        let names: Vec<&str> = entry.labels.iter().map(|label| label.name.as_str()).collect();
        assert_eq!(names, ["level", "level_extracted", "service_name", "status"]);
        assert!(run_hinted(r#"sum by (path) (count_over_time({a="b"} | json | status < 500 [1m]))"#, line).is_none());
        let user = run_hinted(r#"sum by (user_id) (count_over_time({a="b"} | logfmt [1m]))"#, "user_id=9 x=1").unwrap();
        assert_eq!((user.labels.get("user_id"), user.labels.get("x")), (Some("9"), None));
        // Once every hinted label is found the rest of the line is not read, as in Loki: a strict parse
        // reports no error after it; one before it still counts.
        let strict = r#"sum by (user_id) (count_over_time({a="b"} | logfmt --strict [1m]))"#;
        let early = run_hinted(strict, r#"x=1 user_id=9 broken="unterminated"#).unwrap();
        assert_eq!((early.labels.get("user_id"), early.labels.get(ERROR_LABEL)), (Some("9"), None));
        let late = run_hinted(strict, r#"x="unterminated user_id=9"#).unwrap();
        assert_eq!(late.labels.get(ERROR_LABEL), Some("LogfmtParserErr"));
        // Nothing to extract: the parser does not run, so a line that is not JSON is no error (as in Loki).
        let ungrouped = run_hinted(r#"sum(count_over_time({a="b"} | json [1m]))"#, "not json").unwrap();
        assert_eq!((ungrouped.labels.get(ERROR_LABEL), ungrouped.labels.get("trace_id")), (None, None));
        // A filter on __error__ keeps the parser running.
        assert!(run_hinted(r#"sum(count_over_time({a="b"} | json | __error__="" [1m]))"#, "not json").is_none());
        // drop and keep only remove labels: the hints stay (a matcher's label is read, so extracted).
        let dropped = run_hinted(
            r#"sum by (path) (count_over_time({a="b"} | json | drop __error__, status="503" | keep path, user_id [1m]))"#,
            line,
        )
        .unwrap();
        assert_eq!(
            (dropped.labels.get("path"), dropped.labels.get("status"), dropped.labels.get("user_id")),
            (Some("/x"), None, None)
        );
        // Field names that only become the hinted name once sanitized: a leading digit gains a `_`, a
        // non-ASCII character shrinks to one `_`, punctuation becomes `_`.
        let sanitized = r#"{"1st":"a","é_x":"b","http.status":"c","ab":"d"}"#;
        for (label, value) in [("_1st", "a"), ("__x", "b"), ("http_status", "c")] {
            let query = format!(r#"sum by ({label}) (count_over_time({{a="b"}} | json [1m]))"#);
            let hinted = run_hinted(&query, sanitized).unwrap();
            assert_eq!((hinted.labels.get(label), hinted.labels.get("ab")), (Some(value), None), "{label}");
        }
        // Formatting stages read labels by template: every label is extracted.
        let formatted =
            run_hinted(r#"sum by (x) (count_over_time({a="b"} | json | line_format "{{.path}}" [1m]))"#, line).unwrap();
        assert_eq!((formatted.line.as_str(), formatted.labels.get("user_id")), ("/x", Some("7")));
    }

    #[test]
    fn prefilters_drop_exactly_what_the_full_pipeline_drops() {
        let queries = [
            r#"{a="b"} | json | status >= 500"#,
            r#"{a="b"} | json | status >= 500 or path = "/x""#,
            r#"{a="b"} |= "a" | json | level_extracted = "error" | line_format "{{.path}}""#,
            r#"{a="b"} | json | user_id != "7""#,
            r#"{a="b"} | json | status > 1s"#,
            r#"{a="b"} | logfmt | status >= 500 | __error__ = """#,
            r#"{a="b"} | logfmt --strict | status >= 500"#,
            r#"{a="b"} | json | trace_id = "abc" | drop path"#,
            r#"{a="b"} | regexp "status=(?P<status>[0-9]+)" | status >= 500"#,
            r#"{a="b"} | json | user_id < 0"#,
            r#"{a="b"} | json | http_status >= 500"#,
            r#"{a="b"} | logfmt | user_id = "7""#,
            r#"{a="b"} | logfmt | status >= 500 and path = "/x""#,
            r#"{a="b"} | logfmt --strict | user_id = "7""#,
            r#"{a="b"} | pattern "<_> status=<status> <_>" | status >= 500"#,
        ];
        let lines = [
            r#"{"http":{"status":503},"user_id":3}"#,
            r#"{"user-id":"7","x":[1,2],"status":503}"#,
            r#"{"status":503,"status":200}"#,
            r#"{"user_id":-1,"x":tru}"#,
            r#"{"user_id":"-5s","status":"x"}"#,
            "status=503 status=200 path=/x",
            "status=200 status=503 path=/x",
            "status= status=503 path=/x",
            "user-id=7 x=\"unterminated",
            "user_id=7 =oops path=/x status=501",
            "user_id=8 user_id=7",
            r#"{"level":"error","status":503,"path":"/x","user_id":"7"}"#,
            r#"{"level":"info","status":200,"path":"/y","user_id":"8","status":600}"#,
            r#"{"status":"5xx"}"#,
            r#"{"status":503, broken"#,
            r#"{"user_id":"7","http":{"status":503,"path":"/x""#,
            r#"{"user_id":"7","http":{"status":503,"path":x},"status":200}"#,
            r#"{"status":503,"path":"/x"#,
            r#"{"status":503,"path":"/x"} trailing"#,
            "status=503 path=/x",
            "status=503 path=\"/x",
            "not json at all",
            "",
        ];
        let stream = Labels::from_pairs([("service_name", "boxoffice"), ("level", "info")]);
        for query in queries {
            let Expr::Log(log) = parse_expr(query).unwrap() else { panic!("not a log query") };
            let mut with_prefilter = Pipeline::new(&log.pipeline).unwrap();
            let prefilter = with_prefilter.prefilter.as_ref();
            assert!(prefilter.is_some(), "{query}");
            // Only a prefilter whose parsers cannot fail stops reading once its labels are found.
            let may_fail = query.contains("json") || query.contains("--strict");
            assert_eq!(prefilter.is_some_and(|prefilter| prefilter.stop_early), !may_fail, "{query}");
            let mut without = Pipeline::compile(&log.pipeline, ParserHints::All, true).unwrap();
            for line in lines {
                let mut entry = LogEntry::new(1, line);
                entry.structured_metadata.push(oxeye_model::Label { name: "trace_id".into(), value: "abc".into() });
                assert_eq!(
                    with_prefilter.process(&stream, &entry),
                    without.process(&stream, &entry),
                    "{query} on {line:?}"
                );
            }
        }
        // Nothing for a prefilter to do without a parser before a filter reading a parsed label.
        for query in
            [r#"{a="b"} | json"#, r#"{a="b"} | json | __error__ = """#, r#"{a="b"} | line_format "x" | json | a = "b""#]
        {
            let Expr::Log(log) = parse_expr(query).unwrap() else { panic!("not a log query") };
            assert!(Pipeline::new(&log.pipeline).unwrap().prefilter.is_none(), "{query}");
        }
    }

    #[test]
    fn numeric_filters_keep_entries_with_errors_as_loki_does() {
        // `{"user_id":5, broken` under `| json | user_id < 0` is dropped: Loki checks the filter as soon as
        // `| json` extracts `user_id`, before the error (`ShouldContinueParsingLine`,
        // pkg/logql/log/label_filter_hints.go); see `json_checks_label_filters_as_it_extracts_their_label`.
        for (query, line) in [
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user_id":-1,"x":tru}"#),
            (r#"{a="b"} | json | duration > 1s"#, "not json"),
            (r#"{a="b"} | logfmt --strict | size > 1KB"#, "size=5 =x"),
        ] {
            let kept = run(query, line).unwrap_or_else(|| panic!("{query} dropped {line:?}"));
            assert!(kept.labels.get(ERROR_LABEL).is_some(), "{query} on {line:?}");
        }
        // String matchers still filter errored entries (which keep the fields before the error); without the
        // error the number decides.
        assert!(run(r#"{a="b"} | json | user_id = "6""#, r#"{"user_id":5, broken"#).is_none());
        assert!(run(r#"{a="b"} | json | user_id = "5""#, r#"{"user_id":5, broken"#).is_some());
        assert!(run(r#"{a="b"} | json | user_id < 0"#, r#"{"user_id":5}"#).is_none());
        assert!(run(r#"{a="b"} | json | user_id < 0"#, r#"{"user_id":5, broken"#).is_none());
    }

    /// `pipeline` (and its prefilter) with its early label filters removed: the pipeline as it was before them.
    fn without_early_filters(mut pipeline: Pipeline) -> Pipeline {
        for stage in &mut pipeline.stages {
            if let CompiledStage::Json { early_filters, .. } | CompiledStage::Logfmt { early_filters, .. } = stage {
                early_filters.clear();
            }
        }
        pipeline.prefilter = pipeline.prefilter.map(|prefilter| Box::new(without_early_filters(*prefilter)));
        pipeline
    }

    fn log_stages(query: &str) -> Vec<Stage> {
        let Expr::Log(log) = parse_expr(query).unwrap() else { panic!("not a log query") };
        log.pipeline
    }

    /// For each `(query, line, kept, error)`: whether [`run`] keeps the line, and the `__error__` it keeps it with.
    fn assert_kept_with_error(cases: &[(&str, &str, bool, Option<&str>)]) {
        for &(query, line, kept, error) in cases {
            let entry = run(query, line);
            assert_eq!(entry.is_some(), kept, "{query} on {line:?}");
            if let Some(entry) = entry {
                assert_eq!(entry.labels.get(ERROR_LABEL), error, "{query} on {line:?}");
            }
        }
    }

    #[test]
    fn json_checks_label_filters_as_it_extracts_their_label() {
        // (query, line, kept, `__error__` when kept): Loki's label filter hints, pkg/logql/log/label_filter_hints.go.
        let cases = [
            // The filter fails before the broken tail: dropped. It passes, then the tail sets `__error__`.
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user_id":5, broken"#, false, None),
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user_id":-1,"x":tru}"#, true, Some("JSONParserErr")),
            (r#"{a="b"} | json | user_id < 0"#, r#"{"x":tru,"user_id":5}"#, true, Some("JSONParserErr")),
            (r#"{a="b"} | json | status = "500""#, r#"{"status":200,"x":tru}"#, false, None),
            (
                r#"{a="b"} | json | user_id < 0 | method = "y""#,
                r#"{"method":"y","user_id":-1, broken"#,
                true,
                Some("JSONParserErr"),
            ),
            (r#"{a="b"} | json | user_id < 0 | method = "x""#, r#"{"method":"y","user_id":-1, broken"#, false, None),
            (r#"{a="b"} | json |= "user" | user_id < 0"#, r#"{"user_id":5, broken"#, false, None),
            // A stage between that can change the label: no early check, the error keeps the line.
            (
                r#"{a="b"} | json | label_format user_id=other | user_id < 0"#,
                r#"{"user_id":5,"other":3, x"#,
                true,
                Some("JSONParserErr"),
            ),
            (r#"{a="b"} | json | drop user_id | user_id < 0"#, r#"{"user_id":5, x"#, true, Some("JSONParserErr")),
            // `or` and `and` on one label are checked early; on two labels they are not.
            (r#"{a="b"} | json | user_id < 0 or user_id > 100"#, r#"{"user_id":5, x"#, false, None),
            (r#"{a="b"} | json | user_id < 0 or user_id > 100"#, r#"{"user_id":500, x"#, true, Some("JSONParserErr")),
            (r#"{a="b"} | json | user_id > 0 and user_id < 3"#, r#"{"user_id":5, x"#, false, None),
            (r#"{a="b"} | json | user_id < 0 or status = "x""#, r#"{"user_id":5, x"#, true, Some("JSONParserErr")),
            (r#"{a="b"} | json | user_id < 0, status = """#, r#"{"user_id":5, x"#, true, Some("JSONParserErr")),
            // A conversion failure keeps the line and sets its error only at the filter, where the other side
            // of an `and` then keeps it too.
            (r#"{a="b"} | json | user_id > 1 and user_id < 0"#, r#"{"user_id":"abc"}"#, true, Some("LabelFilterErr")),
            // `ip()` reads `__error__`, and filters on special labels are never checked early.
            (r#"{a="b"} | json | addr = ip("10.0.0.0/8")"#, r#"{"addr":"1.2.3.4", x"#, false, None),
            (r#"{a="b"} | json | __error__ != "JSONParserErr""#, r#"{"user_id":5, x"#, false, None),
            // A nested label is checked once its top-level member closes; a member never closed gives no label.
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user":{"id":5},"x":tru}"#, false, None),
            (r#"{a="b"} | json | user_id < 0"#, r#"{"a":1,"user":{"id":5,"x":1"#, true, Some("JSONParserErr")),
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user":{"id":-5},"b":{"x":1"#, true, Some("JSONParserErr")),
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user":{"id":5},"b":{"x":1"#, false, None),
            // An escaped key names its label outside the line: checked at the end of the line.
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user\u005fid":5, x"#, false, None),
            // The label `| json` extracts for a key colliding with a stream label is `level_extracted`.
            (r#"{a="b"} | json | level = "error""#, r#"{"level":"warn", x"#, false, None),
            (r#"{a="b"} | json | level_extracted = "error""#, r#"{"level":"warn", x"#, false, None),
            (r#"{a="b"} | json | level_extracted = "warn""#, r#"{"level":"warn", x"#, true, Some("JSONParserErr")),
            // The first of duplicate keys is the label, as at the filter's position.
            (r#"{a="b"} | json | user_id < 0"#, r#"{"user_id":-1,"user_id":5, x"#, true, Some("JSONParserErr")),
            // `| json` with parameters checks nothing early (Loki's `JSONExpressionParser`).
            (r#"{a="b"} | json user_id="user_id" | user_id < 0"#, r#"{"user_id":5, x"#, true, Some("JSONParserErr")),
        ];
        assert_kept_with_error(&cases);
        let grouped = r#"sum by (status) (count_over_time({a="b"} | json | user_id < 0 [1m]))"#;
        assert!(run_hinted(grouped, r#"{"status":200,"user_id":5, broken"#).is_none());
        // Kept, and without an error: a grouped query's parse stops once it has every label it reads.
        let kept = run_hinted(grouped, r#"{"status":200,"user_id":-5, broken"#).unwrap();
        assert_eq!((kept.labels.get("user_id"), kept.labels.get(ERROR_LABEL)), (Some("-5"), None));
        assert!(run_hinted(grouped, r#"{"user_id":5,"status":200}"#).is_none());
    }

    /// Stages after a parser whose label filters it checks early, for the tests that early checks change
    /// nothing on lines without errors.
    const EARLY_FILTER_STAGES: [&str; 9] = [
        "user_id < 0",
        "user_id < 0 or user_id > 5",
        r#"level = "error" | status >= 500"#,
        r#"level_extracted =~ "err.*" | duration_ms > 1000"#,
        r#"status != "200" | label_format s=status | s = "404""#,
        "duration > 1s",
        "size > 1KB and size < 1MB",
        "user_id > 1 and user_id < 9",
        r#"user_id > 1, status = "200""#,
    ];

    /// Every one of `queries` keeps and drops each of `lines`, with the same labels, as it did without early
    /// label filters, ungrouped and grouped by `status` and `user_id` (with every label and with hints).
    fn assert_early_filters_change_nothing(queries: &[String], lines: &[&str]) {
        let stream = Labels::from_pairs([("service_name", "boxoffice"), ("level", "info")]);
        let grouping = ["status".to_string(), "user_id".to_string()];
        for query in queries {
            let stages = log_stages(query);
            let hinted =
                ParserHints::for_grouping(Some(&Grouping { without: false, labels: grouping.to_vec() }), &stages, None);
            for hints in [ParserHints::All, hinted] {
                let mut early = Pipeline::with_hints(&stages, hints.clone()).unwrap();
                let mut before = without_early_filters(Pipeline::with_hints(&stages, hints.clone()).unwrap());
                for &line in lines {
                    let entry = LogEntry::new(1, line);
                    assert_eq!(early.process(&stream, &entry), before.process(&stream, &entry), "{query} on {line}");
                    let entry = LogEntryRef { timestamp_ns: 1, line, structured_metadata: &[] };
                    assert_eq!(
                        early.process_grouped(&stream, entry, &grouping),
                        before.process_grouped(&stream, entry, &grouping),
                        "{query} on {line} grouped ({hints:?})"
                    );
                }
            }
        }
    }

    #[test]
    fn early_label_filters_change_nothing_on_well_formed_lines() {
        let queries = EARLY_FILTER_STAGES.map(|stages| format!(r#"{{a="b"}} | json | {stages}"#));
        let lines = [
            r#"{"level":"error","status":503,"path":"/x","user":{"id":7},"duration_ms":1500}"#,
            r#"{"user_id":-3,"status":"404","level":"warn","size":"2KB","duration":"2s"}"#,
            r#"{"user_id":6,"status":200,"duration_ms":"abc","user":{"id":-1}}"#,
            r#"{"user_id":"x","status":null,"size":5000,"duration":"500ms","level":"errorish"}"#,
            r#"{"user_id":3,"user_id":-3,"status":"404","s":"1"}"#,
            r#"{"user\u005fid":-2,"status":500,"duration_ms":2000}"#,
            r#"{"user":{"id":2},"user_id":-2}"#,
            r#"{}"#,
        ];
        assert_early_filters_change_nothing(&queries, &lines);
    }

    /// Loki empties a parsed value holding U+FFFD (raw, or in JSON from an escape or an unpaired surrogate):
    /// `| logfmt` then leaves the pair out (a later pair of the key gives the label) unless `--keep-empty`,
    /// `| json` and parameters give the label `""`. The same on every path: the full parse, the hinted parse
    /// (the key search of `| logfmt`, early label filters) and values given instead of the line.
    #[test]
    fn values_holding_the_replacement_character_are_emptied_as_loki_does() {
        // (stages after the selector, line, label, its value or `None` for no label, kept)
        let cases: [(&str, &str, &str, Option<&str>, bool); 28] = [
            ("| json", "{\"x\":\"a\u{fffd}b\",\"y\":\"1\"}", "x", Some(""), true),
            ("| json", "{\"x\":\"a\u{fffd}b\",\"y\":\"1\"}", "y", Some("1"), true),
            ("| json", r#"{"x":"a\ufffdb","y":"1"}"#, "x", Some(""), true),
            ("| json", r#"{"x":"\uFFFD"}"#, "x", Some(""), true),
            ("| json", r#"{"x":"a\ud800b"}"#, "x", Some(""), true),
            ("| json", r#"{"n":{"x":"\"\ufffd"}}"#, "n_x", Some(""), true),
            ("| json", r#"{"x":"caf\u00e9 \uff21"}"#, "x", Some("caf\u{e9} \u{ff21}"), true),
            ("| json", "{\"x\":\"\u{ff21}\u{fffe}\"}", "x", Some("\u{ff21}\u{fffe}"), true),
            ("| json | x=\"\"", "{\"x\":\"\u{fffd}\"}", "x", Some(""), true),
            ("| json | x!=\"\"", "{\"x\":\"\u{fffd}\"}", "x", None, false),
            ("| json | x!=\"\"", r#"{"x":"\ufffd","y":"1"}"#, "x", None, false),
            ("| json y=\"x\"", r#"{"x":"\ufffd"}"#, "y", Some(""), true),
            ("| json y=\"x\"", r#"{"x":"\u00e9"}"#, "y", Some("\u{e9}"), true),
            ("| logfmt", "x=a\u{fffd}b y=1", "x", None, true),
            ("| logfmt", "x=a\u{fffd}b y=1", "y", Some("1"), true),
            ("| logfmt", "y=\"q\" x=\"a \u{fffd}\"", "x", None, true),
            ("| logfmt", "x=\"a\\\"\u{fffd}\" y=1", "x", None, true),
            ("| logfmt", "x=\u{fffd} x=second", "x", Some("second"), true),
            ("| logfmt", "x=\"\u{fffd}\" x=second", "x", Some("second"), true),
            ("| logfmt", "x=\u{ff21}\u{fffe}", "x", Some("\u{ff21}\u{fffe}"), true),
            ("| logfmt --keep-empty", "x=\u{fffd} x=second", "x", Some(""), true),
            ("| logfmt --keep-empty", "y=1 x=\"a \u{fffd}\"", "x", Some(""), true),
            ("| logfmt | x=\"\"", "x=\u{fffd}", "x", None, true),
            ("| logfmt | x!=\"\"", "x=\u{fffd} y=1", "x", None, false),
            ("| logfmt | x=\"second\"", "x=\u{fffd} x=second", "x", Some("second"), true),
            ("| logfmt --keep-empty | x!=\"\"", "x=\u{fffd} x=second", "x", None, false),
            ("| logfmt y=\"x\"", "x=\u{fffd}", "y", Some(""), true),
            ("| logfmt y=\"x\"", "x=\u{ff21}", "y", Some("\u{ff21}"), true),
        ];
        let stream = Labels::from_pairs([("a", "b")]);
        for (stages, line, label, expected, kept) in cases {
            let query = format!("{{a=\"b\"}} {stages}");
            let Expr::Log(log) = parse_expr(&query).unwrap() else { panic!("not a log query") };
            let entry = Pipeline::new(&log.pipeline).unwrap().process(&stream, &LogEntry::new(1, line));
            assert_eq!(entry.is_some(), kept, "{query} on {line:?}");
            if let Some(entry) = entry {
                // A label set holds no empty value: `""` reads as no label.
                assert_eq!(entry.labels.get(label), expected.filter(|value| !value.is_empty()), "{query} on {line:?}");
            }
            // Hinted: the key search of `| logfmt`, early label filters.
            let metric = format!("sum by ({label}) (count_over_time({{a=\"b\"}} {stages} [1m]))");
            let mut hinted = hinted_pipeline(&metric);
            let entry = hinted.process(&stream, &LogEntry::new(1, line));
            assert_eq!(entry.is_some(), kept, "{metric} on {line:?}");
            if let Some(entry) = entry {
                assert_eq!(entry.labels.get(label), expected.filter(|value| !value.is_empty()), "{metric} on {line:?}");
            }
        }
        // Values given instead of the line, as field columns hold them: `""` for `| json`, no label for
        // `| logfmt`, both no label in the entry's label set.
        for parser in ["json", "logfmt"] {
            for raw in ["a\u{fffd}b", "\u{fffd}"] {
                let metric = format!("sum by (x) (count_over_time({{a=\"b\"}} | {parser} [1m]))");
                let mut pipeline = hinted_pipeline(&metric);
                assert_eq!(pipeline.line_field_names().unwrap().1, ["x".to_string()]);
                pipeline.give_parsed_fields(&[Some(raw)]);
                let entry = pipeline.process(&stream, &LogEntry::new(1, "")).unwrap();
                assert_eq!(entry.labels.get("x"), None, "{metric} given {raw:?}");
                pipeline.give_parsed_fields(&[Some("\u{ff21}")]);
                let entry = pipeline.process(&stream, &LogEntry::new(1, "")).unwrap();
                assert_eq!(entry.labels.get("x"), Some("\u{ff21}"), "{metric}");
            }
        }
    }

    #[test]
    fn logfmt_checks_label_filters_as_it_extracts_their_label() {
        // (query, line, kept, `__error__` when kept): Loki's `LogfmtParser.Process` (pkg/logql/log/parser.go)
        // runs `ShouldContinueParsingLine` (pkg/logql/log/label_filter_hints.go) after each label it sets.
        let cases = [
            // A conversion failure in a filter between sets `__error__` only at that filter's position, after
            // the early check of `user_id` dropped the line; the line used to be kept with the error.
            (r#"{a="b"} | logfmt | n > 1 | user_id < 0"#, "n=x user_id=5", false, None),
            (r#"{a="b"} | logfmt | n > 1 | user_id < 0"#, "user_id=5 n=x", false, None),
            (r#"{a="b"} | logfmt | n > 1 | user_id < 0"#, "n=x user_id=-1", true, Some("LabelFilterErr")),
            (r#"{a="b"} | logfmt | user_id < 0 | n > 1"#, "n=x user_id=-1", true, Some("LabelFilterErr")),
            (r#"{a="b"} | logfmt |= "user" | n > 1 | user_id < 0"#, "n=x user_id=5", false, None),
            // An error set before the parser keeps the line at the early check, as at the filter's position.
            (r#"{a="b"} | json | logfmt | user_id < 0"#, "user_id=5", true, Some("JSONParserErr")),
            // A stage between that can change the label: no early check of it.
            (
                r#"{a="b"} | logfmt | n > 1 | label_format user_id=other | user_id < 0"#,
                "n=x user_id=5 other=3",
                true,
                Some("LabelFilterErr"),
            ),
            (r#"{a="b"} | logfmt | n > 1 | drop user_id | user_id < 0"#, "n=x user_id=5", true, Some("LabelFilterErr")),
            // `or` on one label is checked early; on two labels it is not.
            (r#"{a="b"} | logfmt | n > 1 | user_id < 0 or user_id > 9"#, "n=x user_id=5", false, None),
            (
                r#"{a="b"} | logfmt | n > 1 | user_id < 0 or status = "x""#,
                "n=x user_id=5 status=y",
                true,
                Some("LabelFilterErr"),
            ),
            // The label for a key colliding with a stream label is `level_extracted`; the first of duplicate
            // keys is the label; a key past the first quote is checked too.
            (r#"{a="b"} | logfmt | n > 1 | level_extracted = "error""#, "n=x level=warn", false, None),
            (r#"{a="b"} | logfmt | n > 1 | user_id < 0"#, "n=x user_id=-1 user_id=5", true, Some("LabelFilterErr")),
            (r#"{a="b"} | logfmt | n > 1 | user_id < 0"#, r#"msg="a b" n=x user_id=5"#, false, None),
            // With flags or parameters nothing is checked early (Loki's `LogfmtExpressionParser` does not).
            (r#"{a="b"} | logfmt --strict | n > 1 | user_id < 0"#, "n=x user_id=5", true, Some("LabelFilterErr")),
            (r#"{a="b"} | logfmt --keep-empty | n > 1 | user_id < 0"#, "n=x user_id=5", true, Some("LabelFilterErr")),
            (
                r#"{a="b"} | logfmt n="n", user_id="user_id" | n > 1 | user_id < 0"#,
                "n=x user_id=5",
                true,
                Some("LabelFilterErr"),
            ),
        ];
        assert_kept_with_error(&cases);
        // A grouped query's hinted-name search checks the labels it finds too, in the plain part of the line
        // and past its first quote.
        let grouped = r#"sum by (status) (count_over_time({a="b"} | logfmt | n > 1 | user_id < 0 [1m]))"#;
        assert!(run_hinted(grouped, "status=200 n=x user_id=5").is_none());
        assert!(run_hinted(grouped, r#"status=200 msg="a b" n=x user_id=5"#).is_none());
        let kept = run_hinted(grouped, "status=200 n=x user_id=-5").unwrap();
        assert_eq!((kept.labels.get("status"), kept.labels.get(ERROR_LABEL)), (Some("200"), Some("LabelFilterErr")));
    }

    #[test]
    fn given_fields_are_checked_early_as_the_parsed_line() {
        // A filter between that sets `__error__` after the early check: the line is dropped whether the
        // parser reads it or is given its fields (`give_parsed_fields`).
        for (query, line) in [
            (
                r#"sum by (status) (count_over_time({a="b"} | logfmt | n > 1 | user_id < 0 [1m]))"#,
                "status=2 n=x user_id=5",
            ),
            (
                r#"sum by (status) (count_over_time({a="b"} | json | n > 1 | user_id < 0 [1m]))"#,
                r#"{"status":"2","n":"x","user_id":"5"}"#,
            ),
        ] {
            let mut pipeline = hinted_pipeline(query);
            let stream = Labels::from_pairs([("a", "b")]);
            assert_eq!(pipeline.process(&stream, &LogEntry::new(1, line)), None, "{query}");
            let names = pipeline.line_field_names().unwrap().1.to_vec();
            let values: Vec<Option<&str>> = names
                .iter()
                .map(|name| match name.as_str() {
                    "n" => Some("x"),
                    "status" => Some("2"),
                    "user_id" => Some("5"),
                    _ => None,
                })
                .collect();
            pipeline.give_parsed_fields(&values);
            assert_eq!(pipeline.process(&stream, &LogEntry::new(1, "")), None, "{query} given {names:?}");
        }
    }

    #[test]
    fn logfmt_early_label_filters_change_nothing_without_errors_between() {
        let mut queries = EARLY_FILTER_STAGES.map(|stages| format!(r#"{{a="b"}} | logfmt | {stages}"#)).to_vec();
        queries.push(r#"{a="b"} | logfmt |= "user" | user_id < 0 | status = "404""#.to_string());
        let lines = [
            "level=error status=503 path=/x user_id=7 duration_ms=1500",
            r#"user_id=-3 status=404 level=warn size=2KB duration=2s msg="a b""#,
            r#"msg="q" user_id=6 status=200 duration_ms=abc"#,
            "user_id=x status= size=5000 duration=500ms level=errorish",
            "user_id=3 user_id=-3 status=404 s=1",
            "user.id=-2 status=500 duration_ms=2000",
            "",
        ];
        assert_early_filters_change_nothing(&queries, &lines);
    }

    #[test]
    fn pattern_captures_only_what_the_query_reads_and_partial_matches_as_loki() {
        let query = r#"{a="b"} | pattern "<_> level=<lvl> path=<path> status=<status>""#;
        let line = "ts=1 level=warn path=/x status=404";
        let all = run(query, line).unwrap();
        assert_eq!(
            (all.labels.get("lvl"), all.labels.get("path"), all.labels.get("status")),
            (Some("warn"), Some("/x"), Some("404"))
        );
        assert_eq!(all.labels.get("_"), None);
        let hinted_query = r#"sum by (status) (count_over_time({a="b"} | pattern "<_> level=<lvl> path=<path> status=<status>" [1m]))"#;
        let hinted = run_hinted(hinted_query, line).unwrap();
        assert_eq!(
            (hinted.labels.get("status"), hinted.labels.get("path"), hinted.labels.get("lvl")),
            (Some("404"), None, None)
        );
        // A line matching the first literals but not the last: as in Loki (pattern.go's `Matches`), the
        // captures found are kept and the one whose literal is missing takes the rest of the line.
        let partial = run(query, "ts=1 level=warn path=/x code=404").unwrap();
        assert_eq!(
            (partial.labels.get("lvl"), partial.labels.get("path"), partial.labels.get("status")),
            (Some("warn"), Some("/x code=404"), None)
        );
        // Captures next to multibyte text, and one starting with a digit sanitized.
        let unicode = run(r#"{a="b"} | pattern "é=<v> <1x>""#, "é=ünï 2").unwrap();
        assert_eq!((unicode.labels.get("v"), unicode.labels.get("_1x")), (Some("ünï"), Some("2")));
    }

    #[test]
    fn plain_decimals_read_as_str_parse_reads_them() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "7",
            "-42",
            "1234.5",
            "0.1",
            "0.3",
            "-0.000001",
            "999999999999999",
            "9999999999999999",
            "123456789012.345",
            "1.",
            ".5",
            "1e3",
            "+5",
            "--1",
            "1.2.3",
            "",
            "-",
            "0x10",
            "12a",
            "1_000",
            "00012",
            "4503599627370497",
            "0.123456789012345",
            " 12 ",
            "12\u{a0}",
            "\u{2003}-3.5",
        ]
        .map(str::to_string)
        .to_vec();
        let mut random = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let digits = format!("{}", random % 10u64.pow((random >> 60) as u32 % 16 + 1));
            let point = (random >> 40) as usize % (digits.len() + 1);
            let (whole, fraction) = digits.split_at(point);
            let sign = if random & 1 == 1 { "-" } else { "" };
            texts.push(if fraction.is_empty() {
                format!("{sign}{whole}")
            } else {
                format!("{sign}{whole}.{fraction}")
            });
        }
        for text in &texts {
            let parsed = text.trim().parse::<f64>().ok();
            if let Some(value) = plain_decimal(text) {
                assert_eq!(Some(value.to_bits()), parsed.map(f64::to_bits), "{text}");
            }
            assert_eq!(convert(text, NumberKind::Number).map(f64::to_bits), parsed.map(f64::to_bits), "{text}");
        }
        assert_eq!(plain_decimal("1234.5"), Some(1234.5));
        assert_eq!(plain_decimal("1e3"), None);
    }

    #[test]
    fn a_prefilter_keeping_most_entries_is_switched_off() {
        let Expr::Log(log) = parse_expr(r#"{a="b"} | json | status >= 200"#).unwrap() else {
            panic!("not a log query")
        };
        let mut pipeline = Pipeline::new(&log.pipeline).unwrap();
        let stream = Labels::from_pairs([("service_name", "boxoffice")]);
        let entry = LogEntry::new(1, r#"{"status":200}"#);
        for _ in 0..PrefilterCounts::TRIAL {
            assert!(pipeline.process(&stream, &entry).is_some());
        }
        assert!(pipeline.prefilter.is_none());
        assert_eq!(pipeline.process(&stream, &entry).unwrap().labels.get("status"), Some("200"));
    }

    #[test]
    fn reused_label_slots_do_not_leak_between_entries() {
        let Expr::Log(log) = parse_expr(r#"{a="b"} | json"#).unwrap() else { panic!("not a log query") };
        let mut pipeline = Pipeline::new(&log.pipeline).unwrap();
        let stream = Labels::from_pairs([("service_name", "boxoffice")]);
        let first = pipeline.process(&stream, &LogEntry::new(1, r#"{"a":"long value","b":"x","c":"y"}"#)).unwrap();
        assert_eq!(first.labels.len(), 4);
        let second = pipeline.process(&stream, &LogEntry::new(2, r#"{"b":"z"}"#)).unwrap();
        assert_eq!(second.labels, Labels::from_pairs([("service_name", "boxoffice"), ("b", "z")]));
        let broken = pipeline.process(&stream, &LogEntry::new(3, r#"{"a":"1","b":2,"#)).unwrap();
        assert_eq!((broken.labels.get("a"), broken.labels.get(ERROR_LABEL)), (Some("1"), Some("JSONParserErr")));
        let next = pipeline.process(&stream, &LogEntry::new(4, r#"{"c":"w"}"#)).unwrap();
        assert_eq!(next.labels, Labels::from_pairs([("service_name", "boxoffice"), ("c", "w")]));
    }

    #[test]
    fn detected_fields_try_json_then_logfmt() {
        let (parser, fields) = detect_line_fields(r#"{"a":{"b":1},"c":"x","d":[1]}"#).unwrap();
        assert_eq!((parser, fields), ("json", vec![("a_b".into(), "1".into()), ("c".into(), "x".into())]));
        let (parser, fields) = detect_line_fields(r#"level=info msg="a b" empty="#).unwrap();
        assert_eq!((parser, fields), ("logfmt", vec![("level".into(), "info".into()), ("msg".into(), "a b".into())]));
        assert_eq!(detect_line_fields("plain text"), None);
    }

    /// `| logfmt` extracting a few hinted labels (found by searching for the names, see
    /// `logfmt::HintedKeySearch`) gives each of them the value a parse of every pair gives it, on random lines
    /// over keys that sanitize into the names or nearly, quotes, escapes, `=`, bare keys and empty values.
    #[test]
    fn hinted_logfmt_labels_agree_with_a_full_parse() {
        let keys = ["path", "pa.th", "path=", "duration_ms", "duration-ms", "durationéms", "duration", "1x", "_1x"];
        let values = ["level", "level_extracted", "/api/path", "x", "42", "é", "ms"];
        let pieces: Vec<&str> = keys.into_iter().chain(crate::test_random::LOGFMT_SYNTAX).chain(values).collect();
        let names = hinted_names(["path", "duration_ms", "_1x", "level_extracted"].map(String::from).to_vec());
        let stream = Labels::from_pairs([("service_name", "boxoffice"), ("level", "info")]);
        let mut next = crate::test_random::xorshift(0x9e37_79b9_7f4a_7c15);
        for flags in ["", " --keep-empty"] {
            let Expr::Log(log) = parse_expr(&format!(r#"{{a="b"}} | logfmt{flags}"#)).unwrap() else { panic!() };
            let mut hinted = Pipeline::with_hints(&log.pipeline, ParserHints::Only(names.clone())).unwrap();
            let mut full = Pipeline::new(&log.pipeline).unwrap();
            for _ in 0..20_000 {
                let count = (next() % 20) as usize;
                let line: String = (0..count).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
                let entry = LogEntry::new(1, line.as_str());
                let hinted_labels = hinted.process(&stream, &entry).unwrap().labels;
                let full_labels = full.process(&stream, &entry).unwrap().labels;
                for name in &names {
                    assert_eq!(hinted_labels.get(name), full_labels.get(name), "{name} of {line:?}{flags}");
                }
            }
        }
    }

    #[test]
    fn line_filters_drop_keep_and_decolorize() {
        assert!(run(r#"{a="b"} |= "x" or "y" != "z""#, "has y").is_some());
        assert!(run(r#"{a="b"} |= "x" or "y" != "z""#, "has y and z").is_none());
        assert!(run(r#"{a="b"} |~ "(?i)ERROR""#, "an error").is_some());
        assert!(run(r#"{a="b"} |> "GET <_> 200""#, "GET /x 200").is_some());
        let kept = run(r#"{a="b"} | logfmt | keep status, service_name"#, "status=1 other=2").unwrap();
        assert_eq!(kept.labels.len(), 2);
        let dropped = run(r#"{a="b"} | drop level"#, "x").unwrap();
        assert_eq!(dropped.labels.get("level"), None);
        assert_eq!(run(r#"{a="b"} | decolorize"#, "\x1b[31mred\x1b[0m").unwrap().line, "red");
        let pattern = run(r#"{a="b"} | pattern "<method> <path>""#, "GET /api").unwrap();
        assert_eq!(pattern.labels.get("path"), Some("/api"));
        let regexp = run(r#"{a="b"} | regexp "took (?P<ms>[0-9]+)ms" | ms > 100"#, "took 250ms").unwrap();
        assert_eq!(regexp.labels.get("ms"), Some("250"));
        assert!(run(r#"{a="b"} | logfmt | ip = ip("10.0.0.0/8")"#, "ip=10.1.2.3").is_some());
    }
}

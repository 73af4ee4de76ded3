//! Field columns of chunk data: the labels a line parser gives a chunk's lines, for a few names, kept
//! beside the lines at the chunk cut so that a query needing only those labels reads no line
//! (`docs/format.md`, "Field columns"). A column of few values is a dictionary with a one-byte code per
//! entry; a column of more values holds each entry's value, decimal numbers as integers; a column whose
//! value follows from another dictionary column's code holds its value per code of that column only.

use std::path::Path;

use oxeye_model::logs::{LineFieldExtractor, LogEntry};

use crate::LogStoreError;
use crate::chunk::ChunkLayout;
use crate::encoding::{Reader, put_bytes, put_uvarint};

/// The most distinct values a dictionary column holds: its codes are one byte each, 0 meaning no label.
const MAX_DICTIONARY_VALUES: usize = 255;

/// The dictionary size that marks a column of per-entry values instead of a dictionary.
const VALUES_COLUMN: usize = 0;

/// The dictionary size that marks a column derived from another: its value for each of the other's codes.
const DERIVED_COLUMN: usize = 256;

/// A values column's form byte of an entry without the label.
const FORM_ABSENT: u8 = 0;

/// A values column's form byte of an entry whose value is a string (`uvarint` length, bytes).
const FORM_STRING: u8 = 1;

/// A values column's form byte of an entry whose value is a decimal number with no digit after the point;
/// `FORM_DECIMAL + s` has `s` digits after it. The number follows as a `uvarint` of all its digits.
const FORM_DECIMAL: u8 = 2;

/// The most digits after the point of a decimal kept as a number: 19 digits in all fit a `u64`, and the
/// integer part has one at least.
const MAX_DECIMAL_SCALE: u8 = 18;

/// The digits of `text` as one integer and how many of them follow the decimal point, when
/// [`push_decimal`] writes exactly `text` back from them: `0` or digits not starting with `0`, then
/// optionally `.` and one or more digits, 19 digits at most. `None` for any other text.
fn decimal_of(text: &str) -> Option<(u64, u8)> {
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) if !fraction.is_empty() => (integer, fraction),
        Some(_) => return None,
        None => (text, ""),
    };
    let leading_zero = integer.len() > 1 && integer.starts_with('0');
    if integer.is_empty() || leading_zero || integer.len() + fraction.len() > 19 {
        return None;
    }
    let mut digits = 0u64;
    for byte in integer.bytes().chain(fraction.bytes()) {
        if !byte.is_ascii_digit() {
            return None;
        }
        digits = digits * 10 + u64::from(byte - b'0');
    }
    Some((digits, u8::try_from(fraction.len()).ok()?))
}

/// Appends the decimal whose digits are `digits` with `scale` of them after the point, zero-padded on the
/// left to `scale + 1` digits at least (`(5, 2)` is `0.05`, `(1234, 1)` is `123.4`, `(7, 0)` is `7`).
fn push_decimal(digits: u64, scale: u8, out: &mut String) {
    // The digits from the lowest up.
    let mut lowest_first = [b'0'; 20];
    let mut count = 0;
    let mut rest = digits;
    for slot in lowest_first.iter_mut() {
        *slot = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let width = count.max(usize::from(scale) + 1);
    for power in (0..width).rev() {
        out.push(char::from(lowest_first.get(power).copied().unwrap_or(b'0')));
        if scale > 0 && power == usize::from(scale) {
            out.push('.');
        }
    }
}

/// The length of `value` as a `uvarint`, in bytes.
fn uvarint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).max(1).div_ceil(7)
}

/// One field column being built at a chunk cut.
struct ColumnBuilder {
    name: String,
    /// Its distinct values, in order of first appearance.
    values: Vec<String>,
    /// Value to its code (1-based index into `values`).
    codes_by_value: foldhash::HashMap<String, u32>,
    /// Per entry: 0 for no label, else the value's code.
    codes: Vec<u32>,
}

impl ColumnBuilder {
    /// Each distinct value as a values column holds it: form byte and bytes.
    fn encoded_values(&self) -> Vec<(u8, Vec<u8>)> {
        let mut encoded_values = Vec::with_capacity(self.values.len());
        for value in &self.values {
            let mut bytes = Vec::new();
            let form = match decimal_of(value) {
                Some((digits, scale)) if scale <= MAX_DECIMAL_SCALE => {
                    put_uvarint(&mut bytes, digits);
                    FORM_DECIMAL + scale
                }
                _ => {
                    put_bytes(&mut bytes, value.as_bytes());
                    FORM_STRING
                }
            };
            encoded_values.push((form, bytes));
        }
        encoded_values
    }

    /// The byte length of the column's dictionary strings.
    fn dictionary_len(&self) -> usize {
        self.values.iter().map(|value| uvarint_len(value.len() as u64) + value.len()).sum()
    }

    /// Whether the column is written as a dictionary: it has at most 255 values, and they take fewer bytes
    /// before compression than the entries' values would (both forms hold a byte per entry).
    fn is_dictionary(&self) -> bool {
        if self.values.len() > MAX_DICTIONARY_VALUES {
            return false;
        }
        let lengths: Vec<usize> = self.encoded_values().iter().map(|(_, bytes)| bytes.len()).collect();
        let values_len: usize = self.codes.iter().filter_map(|code| lengths.get(code.checked_sub(1)? as usize)).sum();
        self.dictionary_len() <= uvarint_len(values_len as u64) + values_len
    }

    /// This column's code for each code of `base` (0 to its dictionary size), when the base column's code
    /// of every entry determines this column's code, and writing the column so is shorter than as a
    /// dictionary; `None` otherwise.
    fn derived_from(&self, base: &ColumnBuilder) -> Option<Vec<u32>> {
        let mut by_base_code: Vec<Option<u32>> = vec![None; base.values.len() + 1];
        for (base_code, code) in base.codes.iter().zip(&self.codes) {
            let slot = by_base_code.get_mut(*base_code as usize)?;
            match slot {
                Some(known) if *known != *code => return None,
                Some(_) => {}
                None => *slot = Some(*code),
            }
        }
        let by_base_code: Vec<u32> = by_base_code.into_iter().map(|code| code.unwrap_or(0)).collect();
        let derived_len: usize = by_base_code
            .iter()
            .map(|code| match code.checked_sub(1).and_then(|index| self.values.get(index as usize)) {
                Some(value) => uvarint_len(value.len() as u64 + 1) + value.len(),
                None => 1,
            })
            .sum();
        (derived_len < self.dictionary_len() + self.codes.len()).then_some(by_base_code)
    }

    /// Appends the column as a dictionary: name, size, values, a code byte per entry.
    fn write_dictionary(&self, section: &mut Vec<u8>) {
        put_bytes(section, self.name.as_bytes());
        put_uvarint(section, self.values.len() as u64);
        for value in &self.values {
            put_bytes(section, value.as_bytes());
        }
        section.extend(self.codes.iter().map(|code| u8::try_from(*code).unwrap_or(0)));
    }

    /// Appends the column as a values column: name, 0, the values' byte length, a form byte per entry, the
    /// values.
    fn write_values(&self, section: &mut Vec<u8>) {
        let encoded_values = self.encoded_values();
        let encoded = |code: u32| code.checked_sub(1).and_then(|index| encoded_values.get(index as usize));
        let values_len: usize = self.codes.iter().filter_map(|code| encoded(*code)).map(|(_, bytes)| bytes.len()).sum();
        put_bytes(section, self.name.as_bytes());
        put_uvarint(section, VALUES_COLUMN as u64);
        put_uvarint(section, values_len as u64);
        section.extend(self.codes.iter().map(|code| encoded(*code).map_or(FORM_ABSENT, |(form, _)| *form)));
        for (_, bytes) in self.codes.iter().filter_map(|code| encoded(*code)) {
            section.extend_from_slice(bytes);
        }
    }

    /// Appends the column as derived from the dictionary column at `base` among the section's columns:
    /// name, [`DERIVED_COLUMN`], the base's index, its dictionary size + 1, then per base code the value
    /// (`uvarint` 0 for no label, else the length + 1 and the bytes).
    fn write_derived(&self, base: usize, by_base_code: &[u32], section: &mut Vec<u8>) {
        put_bytes(section, self.name.as_bytes());
        put_uvarint(section, DERIVED_COLUMN as u64);
        put_uvarint(section, base as u64);
        put_uvarint(section, by_base_code.len() as u64);
        for code in by_base_code {
            match code.checked_sub(1).and_then(|index| self.values.get(index as usize)) {
                Some(value) => {
                    put_uvarint(section, value.len() as u64 + 1);
                    section.extend_from_slice(value.as_bytes());
                }
                None => put_uvarint(section, 0),
            }
        }
    }
}

/// How each column of a chunk is written.
enum ColumnForm {
    Dictionary,
    Values,
    /// Derived from the dictionary column at `base`: this column's code for each of its codes.
    Derived {
        base: usize,
        by_base_code: Vec<u32>,
    },
}

/// The form of each of `columns` (in section order): dictionaries where they are shorter than the values;
/// then, smallest dictionaries first, a dictionary column whose values follow from another dictionary
/// column's (`method` from `path`, `level` from `status_code`) is derived from it, the other kept as it is.
fn column_forms(columns: &[ColumnBuilder]) -> Vec<ColumnForm> {
    let mut forms: Vec<ColumnForm> = columns
        .iter()
        .map(|column| if column.is_dictionary() { ColumnForm::Dictionary } else { ColumnForm::Values })
        .collect();
    let mut by_size: Vec<usize> =
        (0..columns.len()).filter(|index| matches!(forms.get(*index), Some(ColumnForm::Dictionary))).collect();
    by_size.sort_by_key(|index| columns.get(*index).map_or(0, |column| column.values.len()));
    let mut is_base = vec![false; columns.len()];
    for derived in by_size.iter().copied() {
        if is_base.get(derived).copied().unwrap_or(true) {
            continue;
        }
        let Some(column) = columns.get(derived) else { continue };
        // The base: the largest dictionary column (other than this one) not derived itself.
        for base in by_size.iter().rev().copied() {
            let (Some(ColumnForm::Dictionary), Some(base_column)) = (forms.get(base), columns.get(base)) else {
                continue;
            };
            if base == derived {
                continue;
            }
            if let Some(by_base_code) = column.derived_from(base_column) {
                if let Some(slot) = is_base.get_mut(base) {
                    *slot = true;
                }
                if let Some(slot) = forms.get_mut(derived) {
                    *slot = ColumnForm::Derived { base, by_base_code };
                }
                break;
            }
        }
    }
    forms
}

/// The field columns section of [`ChunkLayout::ColumnsFields`]: `uvarint` semantics (0: no columns),
/// `uvarint` column count, then per column, in name order, its name (string) and either a dictionary
/// (`uvarint` size D, 1 to 255, the D values as strings, then one code byte per entry: 0 when the parser
/// gives the line no such label, k for the k-th value) or, after a size of 0, the entries' values (`uvarint`
/// byte length V of the values, one form byte per entry, then the V bytes of the values of the entries
/// having one) or, after a size of 256, its value per code of another dictionary column; see
/// `docs/format.md`.
pub(crate) fn encode_field_columns(entries: &[LogEntry], fields: Option<&dyn LineFieldExtractor>) -> Vec<u8> {
    let mut section = Vec::new();
    let Some(extractor) = fields else {
        put_uvarint(&mut section, 0);
        put_uvarint(&mut section, 0);
        return section;
    };
    let mut columns: Vec<ColumnBuilder> = Vec::new();
    let lines: Vec<&str> = entries.iter().map(|entry| entry.line.as_str()).collect();
    let semantics = extractor.extract(&lines, &mut |index, name, value| {
        let position = match columns.iter().position(|column| column.name == name) {
            Some(position) => position,
            None => {
                columns.push(ColumnBuilder {
                    name: name.to_string(),
                    values: Vec::new(),
                    codes_by_value: foldhash::HashMap::default(),
                    codes: vec![0; entries.len()],
                });
                columns.len() - 1
            }
        };
        let Some(column) = columns.get_mut(position) else { return };
        let code = match column.codes_by_value.get(value) {
            Some(code) => *code,
            None => {
                column.values.push(value.to_string());
                let code = u32::try_from(column.values.len()).unwrap_or(u32::MAX);
                column.codes_by_value.insert(value.to_string(), code);
                code
            }
        };
        if let Some(slot) = column.codes.get_mut(index) {
            *slot = code;
        }
    });
    let Some(semantics) = semantics.filter(|semantics| *semantics != 0 && !columns.is_empty()) else {
        put_uvarint(&mut section, 0);
        put_uvarint(&mut section, 0);
        return section;
    };
    columns.sort_by(|left, right| left.name.cmp(&right.name));
    put_uvarint(&mut section, u64::from(semantics));
    put_uvarint(&mut section, columns.len() as u64);
    for (column, form) in columns.iter().zip(column_forms(&columns)) {
        match form {
            ColumnForm::Dictionary => column.write_dictionary(&mut section),
            ColumnForm::Values => column.write_values(&mut section),
            ColumnForm::Derived { base, by_base_code } => column.write_derived(base, &by_base_code, &mut section),
        }
    }
    section
}

/// Where, in a field columns section `section` of a chunk of `count` entries, each column ends, and each
/// values column's form bytes end (offsets from the section's start, ascending): ending a zstd block there
/// gives each column's codes, forms and values entropy tables of their own (`compress` in `chunk.rs`).
/// Empty when the section does not decode.
pub(crate) fn field_column_ends(section: &[u8], count: usize) -> Vec<usize> {
    let walk = || -> Result<Vec<usize>, (usize, String)> {
        let mut reader = Reader::new(section);
        let mut ends = Vec::new();
        reader.uvarint()?;
        for _ in 0..reader.length()? {
            reader.skip_bytes()?;
            match usize::try_from(reader.uvarint()?).unwrap_or(usize::MAX) {
                VALUES_COLUMN => {
                    let values_len = reader.length()?;
                    reader.take(count)?;
                    ends.push(reader.offset());
                    reader.take(values_len)?;
                }
                DERIVED_COLUMN => {
                    reader.uvarint()?;
                    for _ in 0..reader.length()? {
                        let length = usize::try_from(reader.uvarint()?).unwrap_or(usize::MAX);
                        reader.take(length.saturating_sub(1))?;
                    }
                }
                size => {
                    for _ in 0..size.min(MAX_DICTIONARY_VALUES) {
                        reader.skip_bytes()?;
                    }
                    reader.take(count)?;
                }
            }
            ends.push(reader.offset());
        }
        Ok(ends)
    };
    walk().unwrap_or_default()
}

/// One field column a reader asked for.
enum FieldColumn<'a> {
    /// The column's dictionary and one code byte per entry (0: no label, k: the k-th value).
    Dictionary { dictionary: Vec<&'a str>, codes: &'a [u8] },
    /// Each entry's value: a range of `text` (decimals written out), `None` for no label.
    Values { text: String, ranges: Vec<Option<(u32, u32)>> },
    /// The value for each code of a dictionary column (its one code byte per entry, `base_codes`).
    Derived { by_base_code: Vec<Option<&'a str>>, base_codes: &'a [u8] },
}

/// The field columns of one chunk a reader asked for ([`field_columns`]), in the order asked.
pub(crate) struct FieldColumns<'a> {
    columns: Vec<FieldColumn<'a>>,
}

impl<'a> FieldColumns<'a> {
    /// How many columns were asked for.
    pub(crate) fn len(&self) -> usize {
        self.columns.len()
    }

    /// Writes entry `position`'s value of each asked field into `values` (cleared first).
    #[inline]
    pub(crate) fn values_at<'column>(&'column self, position: usize, values: &mut Vec<Option<&'column str>>) {
        values.clear();
        for column in &self.columns {
            values.push(match column {
                FieldColumn::Dictionary { dictionary, codes } => {
                    let code = codes.get(position).copied().unwrap_or(0);
                    code.checked_sub(1).and_then(|index| dictionary.get(usize::from(index)).copied())
                }
                FieldColumn::Derived { by_base_code, base_codes } => {
                    let base_code = base_codes.get(position).copied().unwrap_or(0);
                    by_base_code.get(usize::from(base_code)).copied().flatten()
                }
                FieldColumn::Values { text, ranges } => ranges
                    .get(position)
                    .copied()
                    .flatten()
                    .and_then(|(start, end)| text.get(start as usize..end as usize)),
            });
        }
    }
}

/// Reads a values column of `count` entries from `section`, after its name and the size 0: the column
/// when `keep`, else only moves past it.
fn read_values_column<'a>(
    section: &mut Reader<'a>,
    count: usize,
    keep: bool,
) -> Result<Option<FieldColumn<'a>>, (usize, String)> {
    let values_len = section.length()?;
    let forms = section.take(count)?;
    let values_offset = section.offset();
    let values = section.take(values_len)?;
    if !keep {
        return Ok(None);
    }
    let mut reader = Reader::new(values);
    let mut text = String::new();
    let mut ranges = Vec::with_capacity(count);
    for form in forms {
        let start = text.len();
        match *form {
            FORM_ABSENT => {
                ranges.push(None);
                continue;
            }
            FORM_STRING => text.push_str(reader.str().map_err(|(at, reason)| (values_offset + at, reason))?),
            decimal if decimal - FORM_DECIMAL <= MAX_DECIMAL_SCALE => {
                let digits = reader.uvarint().map_err(|(at, reason)| (values_offset + at, reason))?;
                push_decimal(digits, decimal - FORM_DECIMAL, &mut text);
            }
            _ => return Err((values_offset, "field column value form out of range".to_string())),
        }
        match (u32::try_from(start), u32::try_from(text.len())) {
            (Ok(start), Ok(end)) => ranges.push(Some((start, end))),
            _ => return Err((values_offset, "field column values too long".to_string())),
        }
    }
    if !reader.is_empty() {
        return Err((values_offset + reader.offset(), "bytes after the last field column value".to_string()));
    }
    Ok(Some(FieldColumn::Values { text, ranges }))
}

/// Reads the field columns of column-encoded chunk data ([`ChunkLayout::ColumnsFields`]) from `columns`,
/// its start up to the lines: the columns of `names`, in that order, when they were written by an
/// extractor of `semantics` and every name has one; `None` otherwise (the caller reads the lines).
///
/// # Errors
/// [`LogStoreError::Corrupt`] when the section does not decode.
pub(crate) fn field_columns<'a>(
    columns: &'a [u8],
    layout: ChunkLayout,
    semantics: u32,
    names: &[String],
    path: &Path,
) -> Result<Option<FieldColumns<'a>>, LogStoreError> {
    if layout != ChunkLayout::ColumnsFields || semantics == 0 {
        return Ok(None);
    }
    let read = || -> Result<Option<FieldColumns<'a>>, (usize, String)> {
        let mut header = Reader::new(columns);
        let count = header.length()?;
        header.uvarint()?;
        let lengths = [header.length()?, header.length()?, header.length()?, header.length()?];
        header.split_off(lengths[0])?;
        header.split_off(lengths[1])?;
        header.split_off(lengths[2])?;
        let mut section = header.split_off(lengths[3])?;
        if section.uvarint()? != u64::from(semantics) {
            return Ok(None);
        }
        let column_count = section.length()?;
        let mut found: Vec<Option<FieldColumn<'a>>> = (0..names.len()).map(|_| None).collect();
        // Per column: its dictionary size and codes, for a dictionary column.
        let mut dictionaries: Vec<Option<(usize, &'a [u8])>> = Vec::with_capacity(column_count);
        // Asked columns derived from another, resolved once all are read: (asked index, base column index,
        // value by base code, offset of the base index).
        let mut derived: Vec<(usize, u64, Vec<Option<&'a str>>, usize)> = Vec::new();
        for _ in 0..column_count {
            let name = section.str()?;
            let asked = names.iter().position(|wanted| wanted == name);
            let slot = asked.and_then(|index| found.get_mut(index));
            let size_offset = section.offset();
            let size = usize::try_from(section.uvarint()?).unwrap_or(usize::MAX);
            if size == DERIVED_COLUMN {
                let base_offset = section.offset();
                let base = section.uvarint()?;
                let value_count = section.length()?;
                if value_count == 0 || value_count > MAX_DICTIONARY_VALUES + 1 {
                    return Err((section.offset(), "derived field column size out of range".to_string()));
                }
                let mut by_base_code = Vec::with_capacity(value_count);
                for _ in 0..value_count {
                    // The length + 1, or 0 (`str_of` checks the length against the bytes left).
                    let length = usize::try_from(section.uvarint()?).unwrap_or(usize::MAX);
                    by_base_code.push(match length.checked_sub(1) {
                        Some(length) => Some(section.str_of(length)?),
                        None => None,
                    });
                }
                dictionaries.push(None);
                if let Some(asked) = asked {
                    derived.push((asked, base, by_base_code, base_offset));
                }
                continue;
            }
            if size == VALUES_COLUMN {
                dictionaries.push(None);
                let column = read_values_column(&mut section, count, slot.is_some())?;
                if let (Some(slot), Some(column)) = (slot, column) {
                    *slot = Some(column);
                }
                continue;
            }
            if size > MAX_DICTIONARY_VALUES {
                return Err((size_offset, "field column dictionary size out of range".to_string()));
            }
            let mut dictionary = Vec::with_capacity(size);
            for _ in 0..size {
                dictionary.push(section.str()?);
            }
            let codes_offset = section.offset();
            let codes = section.take(count)?;
            if codes.iter().any(|code| usize::from(*code) > size) {
                return Err((codes_offset, "field column code out of range".to_string()));
            }
            dictionaries.push(Some((size, codes)));
            if let Some(slot) = slot {
                *slot = Some(FieldColumn::Dictionary { dictionary, codes });
            }
        }
        if !section.is_empty() {
            return Err((section.offset(), "bytes after the last field column".to_string()));
        }
        for (asked, base, by_base_code, base_offset) in derived {
            let base = usize::try_from(base).ok().and_then(|base| dictionaries.get(base).copied().flatten());
            let Some((size, base_codes)) = base.filter(|(size, _)| size + 1 == by_base_code.len()) else {
                return Err((base_offset, "derived field column without its dictionary column".to_string()));
            };
            debug_assert!(base_codes.iter().all(|code| usize::from(*code) <= size));
            if let Some(slot) = found.get_mut(asked) {
                *slot = Some(FieldColumn::Derived { by_base_code, base_codes });
            }
        }
        Ok(found.into_iter().collect::<Option<Vec<_>>>().map(|columns| FieldColumns { columns }))
    };
    read().map_err(|(offset, reason)| LogStoreError::corrupt(path, offset as u64, reason))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn decimals_round_trip_exactly_or_stay_text() {
        for text in ["0", "7", "10", "0.0", "0.5", "0.05", "0.50", "123.4", "1999.9", "1.000", "9999999999999999999"] {
            let (digits, scale) = decimal_of(text).unwrap();
            let mut back = String::new();
            push_decimal(digits, scale, &mut back);
            assert_eq!(back, text);
        }
        for text in
            ["", ".", "1.", ".5", "01", "00", "00.5", "-1", "+1", "1e5", "1.2.3", "1_0", "١", "12345678901234567890"]
        {
            assert_eq!(decimal_of(text), None, "{text}");
        }
        let mut written = String::new();
        push_decimal(u64::MAX, MAX_DECIMAL_SCALE, &mut written);
        assert_eq!(written, "18.446744073709551615");
        written.clear();
        push_decimal(3, MAX_DECIMAL_SCALE, &mut written);
        assert_eq!(written, "0.000000000000000003");
    }

    /// A test parser giving the lines of [`layout_is_as_documented`] fixed labels.
    #[derive(Debug)]
    struct Fixed(&'static [&'static [(&'static str, &'static str)]]);

    /// The labels of [`layout_is_as_documented`]'s three lines.
    const DOCUMENTED: Fixed =
        Fixed(&[&[("b", "123.4"), ("a", "x"), ("c", "GET")], &[], &[("a", "y"), ("c", "POST"), ("b", "hi")]]);

    impl LineFieldExtractor for Fixed {
        fn writes(&self, semantics: u32, _: &[String]) -> bool {
            semantics == 7
        }

        fn extract(&self, lines: &[&str], field: &mut dyn FnMut(usize, &str, &str)) -> Option<u32> {
            for index in 0..lines.len() {
                for (name, value) in self.0.get(index).copied().unwrap_or_default() {
                    field(index, name, value);
                }
            }
            Some(7)
        }
    }

    /// Both column forms byte by byte as `docs/format.md` draws them ("Field columns"), read back; a
    /// dictionary column is what chunks written before values columns hold.
    #[test]
    fn layout_is_as_documented() {
        let section: &[u8] = &[
            7, 3, // semantics, column count
            1, b'a', 0x80, 0x02, 2, 3, 0, 2, b'x', 2, b'y', // `a` derived from `c`: none, x, y by c's code
            1, b'b', 0, 5, 3, 0, 1, 0xd2, 0x09, 2, b'h', b'i', // values column `b`: 123.4, none, hi
            1, b'c', 2, 3, b'G', b'E', b'T', 4, b'P', b'O', b'S', b'T', 1, 0, 2, // dictionary column `c`
        ];
        let entries: Vec<LogEntry> = (0..3).map(|_| LogEntry::new(0, String::new())).collect();
        assert_eq!(encode_field_columns(&entries, Some(&DOCUMENTED)), section);
        // Entry count, unit, the four section lengths, then three timestamps, three line lengths and three
        // empty structured metadata lists, the field columns; no line bytes.
        let mut data = vec![3, 1, 3, 3, 3, section.len() as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        data.extend_from_slice(section);
        let names = ["b".to_string(), "a".to_string(), "c".to_string()];
        let path = Path::new("mem");
        let found = field_columns(&data, ChunkLayout::ColumnsFields, 7, &names, path).unwrap().unwrap();
        let mut values = Vec::new();
        let mut rows = Vec::new();
        for position in 0..3 {
            found.values_at(position, &mut values);
            rows.push(values.clone());
        }
        assert_eq!(
            rows,
            [
                vec![Some("123.4"), Some("x"), Some("GET")],
                vec![None, None, None],
                vec![Some("hi"), Some("y"), Some("POST")]
            ]
        );
        // A form past 2 + 18, a values length leaving bytes over, a derived column based on a values column
        // or past the last: corrupt. (The section starts at 15.)
        for (position, byte) in [(15 + 17, 21), (15 + 16, 4), (15 + 6, 1), (15 + 6, 3)] {
            let mut damaged = data.clone();
            damaged[position] = byte;
            assert!(field_columns(&damaged, ChunkLayout::ColumnsFields, 7, &names, path).is_err(), "{position}");
        }
    }

    /// Every byte of a section of all three forms damaged, or the section cut short: an error, no columns,
    /// or columns whose values can be read, never a panic.
    #[test]
    fn damaged_columns_never_panic() {
        let entries: Vec<LogEntry> = (0..3).map(|_| LogEntry::new(0, String::new())).collect();
        let section = encode_field_columns(&entries, Some(&DOCUMENTED));
        let header = [3, 1, 3, 3, 3, section.len() as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let names = ["a".to_string(), "b".to_string(), "c".to_string()];
        for position in 0..section.len() {
            for flip in [0x01, 0x7f, 0x80, 0xff] {
                let mut damaged = section.clone();
                damaged[position] ^= flip;
                for end in [damaged.len(), position] {
                    let mut data = header.to_vec();
                    data.extend_from_slice(&damaged[..end]);
                    if let Ok(Some(found)) = field_columns(&data, ChunkLayout::ColumnsFields, 7, &names, Path::new("m"))
                    {
                        let mut values = Vec::new();
                        for position in 0..4 {
                            found.values_at(position, &mut values);
                        }
                    }
                    field_column_ends(&damaged[..end], 3);
                }
            }
        }
    }

    /// A derived column written last, its last value ending the section, reads back.
    #[test]
    fn derived_column_last_reads_back() {
        const LINES: Fixed = Fixed(&[
            &[("p", "/a"), ("z", "GET")],
            &[("p", "/b"), ("z", "POST")],
            &[("p", "/c"), ("z", "GET")],
            &[("p", "/b"), ("z", "POST")],
            &[("p", "/a"), ("z", "GET")],
            &[("p", "/c"), ("z", "GET")],
            &[("p", "/b"), ("z", "POST")],
            &[("p", "/a"), ("z", "GET")],
        ]);
        let entries: Vec<LogEntry> = (0..8).map(|_| LogEntry::new(0, String::new())).collect();
        let section = encode_field_columns(&entries, Some(&LINES));
        assert_eq!(section.get(section.len() - 19..), Some(&b"z\x80\x02\x00\x04\x00\x04GET\x05POST\x04GET"[..]));
        let mut data = vec![8, 1, 8, 8, 8, section.len() as u8];
        data.extend_from_slice(&[0; 24]);
        data.extend_from_slice(&section);
        let names = ["z".to_string(), "p".to_string()];
        let found = field_columns(&data, ChunkLayout::ColumnsFields, 7, &names, Path::new("mem")).unwrap().unwrap();
        let mut values = Vec::new();
        for (position, labels) in LINES.0.iter().enumerate() {
            found.values_at(position, &mut values);
            assert_eq!(values, [Some(labels[1].1), Some(labels[0].1)]);
        }
        assert_eq!(field_column_ends(&section, 8).last(), Some(&section.len()));
    }

    #[test]
    fn uvarint_lengths() {
        for value in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut bytes = Vec::new();
            put_uvarint(&mut bytes, value);
            assert_eq!(uvarint_len(value), bytes.len(), "{value}");
        }
    }
}

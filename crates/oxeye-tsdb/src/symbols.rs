//! The head's symbol table: every label name and value the head's series use, stored once per process,
//! with series holding small symbol references instead of their label text.
//!
//! A fleet's label values repeat heavily (a target's `instance`, `job` and `pod` are shared by its
//! thousand series, `le` and `method` by whole families), so a series' labels shrink from their text
//! (165 bytes for `oxeye-bench`'s fleet) to one varint per value, mostly one or two bytes, after one
//! varint for the series' list of label names: a family's series share that list, so it is interned
//! whole in a second table ([`name_sets`]) instead of costing a varint per name in every series.
//! Prometheus' TSDB index interns label text the same way on disk (the index's symbol table,
//! `tsdb/docs/format/index.md`); here it is done for the in-memory head.
//!
//! References are process-local and never written to disk: the WAL and checkpoints keep label text in
//! the record encoding (`docs/format.md`), so their layout does not depend on this table.
//!
//! Concurrency: looking a symbol's text up by reference takes no lock (an append-only array of
//! segments, each allocated once, each slot set once before its reference is published); interning
//! takes a read lock on one of [`STRIPES`] maps by text, and a write lock for a new symbol.
//!
//! Limit: symbols and name lists are never freed. The table holds every distinct name and value seen since the process
//! started (a fleet's few thousand, plus whatever churns: a new pod name per restarted pod); a head
//! restart starts over from the series it replays.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock, RwLock};

use oxeye_model::Labels;

use crate::db::{read, write};
use crate::encoding::put_uvarint;
use crate::head::MixBuildHasher;

const STRIPES: usize = 16;
/// The first segment holds `1 << FIRST_SEGMENT_BITS` symbols, each next one twice the previous.
const FIRST_SEGMENT_BITS: u32 = 10;
/// Enough segments for every `u32` reference.
const SEGMENTS: usize = 33 - FIRST_SEGMENT_BITS as usize;

type Segment<T> = Box<[OnceLock<&'static T>]>;

/// Interned values of one kind by reference and by value, never freed: label texts ([`symbols`]) and
/// lists of label names ([`name_sets`]).
#[derive(Debug)]
pub(crate) struct Interner<T: ?Sized + 'static> {
    segments: [OnceLock<Segment<T>>; SEGMENTS],
    by_value: [RwLock<HashMap<&'static T, u32, MixBuildHasher>>; STRIPES],
    next: AtomicU32,
    /// Bytes of the interned values themselves (their heap copies).
    value_bytes: AtomicU64,
}

/// Label names and values by reference and by text.
pub(crate) type SymbolTable = Interner<str>;

/// The process's symbol table.
pub(crate) fn symbols() -> &'static SymbolTable {
    static TABLE: LazyLock<SymbolTable> = LazyLock::new(SymbolTable::new);
    &TABLE
}

/// The process's lists of label names (each a series' names in order), by reference and by value.
pub(crate) fn name_sets() -> &'static Interner<[&'static str]> {
    static TABLE: LazyLock<Interner<[&'static str]>> = LazyLock::new(Interner::new);
    &TABLE
}

/// Segment and slot of a reference.
fn position(symbol: u32) -> (usize, usize) {
    let shifted = u64::from(symbol) + (1 << FIRST_SEGMENT_BITS);
    let bit = 63 - shifted.leading_zeros();
    ((bit - FIRST_SEGMENT_BITS) as usize, (shifted - (1 << bit)) as usize)
}

impl<T> Interner<T>
where
    T: ?Sized + Eq + Hash + 'static,
    for<'a> Box<T>: From<&'a T>,
    &'static T: Default,
{
    fn new() -> Self {
        Interner {
            segments: std::array::from_fn(|_| OnceLock::new()),
            by_value: std::array::from_fn(|_| RwLock::new(HashMap::default())),
            next: AtomicU32::new(0),
            value_bytes: AtomicU64::new(0),
        }
    }

    /// The value of a reference returned by [`Interner::intern`]; the empty value for any other number.
    #[inline]
    pub(crate) fn text(&self, symbol: u32) -> &'static T {
        let (segment, slot) = position(symbol);
        self.segments
            .get(segment)
            .and_then(OnceLock::get)
            .and_then(|segment| segment.get(slot))
            .and_then(OnceLock::get)
            .copied()
            .unwrap_or_default()
    }

    /// The reference of `value`, added to the table when new.
    ///
    /// # Panics
    /// When more than `u32::MAX` distinct values were interned (16 GiB of distinct label text at least).
    pub(crate) fn intern(&self, value: &T) -> u32 {
        let stripe = &self.by_value[(MixBuildHasher::default().hash_one(value) >> 40) as usize % STRIPES];
        if let Some(&symbol) = read(stripe).get(value) {
            return symbol;
        }
        let mut map = write(stripe);
        if let Some(&symbol) = map.get(value) {
            return symbol;
        }
        let symbol = self.next.fetch_add(1, Ordering::AcqRel);
        assert!(symbol != u32::MAX, "symbol table full");
        let stored: &'static T = Box::leak(Box::<T>::from(value));
        let (segment, slot) = position(symbol);
        let segment = self.segments[segment].get_or_init(|| {
            (0..(1usize << (FIRST_SEGMENT_BITS as usize + segment))).map(|_| OnceLock::new()).collect()
        });
        // The slot is set before the reference is published through the map (under its write lock).
        let _ = segment[slot].set(stored);
        map.insert(stored, symbol);
        self.value_bytes.fetch_add(std::mem::size_of_val(stored) as u64, Ordering::Relaxed);
        symbol
    }

    /// Estimated heap bytes of the table: the values, the segments' slots and the maps by value.
    pub(crate) fn approximate_bytes(&self) -> u64 {
        let slot_bytes = std::mem::size_of::<OnceLock<&'static T>>();
        let segments: usize = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| segment.get().is_some())
            .map(|(index, _)| (1usize << (FIRST_SEGMENT_BITS as usize + index)) * slot_bytes)
            .sum();
        let entry_bytes = std::mem::size_of::<(&'static T, u32)>() + 1;
        let maps: usize =
            self.by_value.iter().map(|stripe| read(stripe).capacity().div_ceil(7) * 8 * entry_bytes).sum();
        self.value_bytes.load(Ordering::Relaxed) + segments as u64 + maps as u64
    }
}

/// A series' labels as references: its list of label names' reference in [`name_sets`], then each
/// value's reference in [`symbols`], all unsigned varints. Labels must be sorted by name (as [`Labels`]
/// are); `count` is their number.
pub(crate) fn encode_symbols<'a>(count: usize, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Box<[u8]> {
    let table = symbols();
    let mut names: Vec<&'static str> = Vec::with_capacity(count);
    let mut out = Vec::with_capacity(5 + 3 * count);
    // The name list is known only after every name is seen, and its reference goes first: the values
    // are gathered apart and follow it.
    let mut values = Vec::with_capacity(3 * count);
    for (name, value) in pairs {
        names.push(table.text(table.intern(name)));
        put_uvarint(&mut values, u64::from(table.intern(value)));
    }
    put_uvarint(&mut out, u64::from(name_sets().intern(&names)));
    out.extend_from_slice(&values);
    out.into_boxed_slice()
}

/// [`encode_symbols`] of owned labels.
pub(crate) fn encode_labels_symbols(labels: &Labels) -> Box<[u8]> {
    encode_symbols(labels.len(), labels.iter().map(|label| (label.name.as_str(), label.value.as_str())))
}

/// Reads one unsigned varint of at most five bytes from the front of `bytes`.
#[inline]
fn take_uvarint(bytes: &mut &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in [0, 7, 14, 21, 28] {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// The label count and the `(name, value)` texts of labels encoded by [`encode_symbols`]. A malformed
/// encoding (never produced by [`encode_symbols`]) ends the pairs early.
pub(crate) fn decode_symbols(mut encoded: &[u8]) -> (usize, SymbolPairs<'_>) {
    let names = take_uvarint(&mut encoded).map_or(<&[&str]>::default(), |names| name_sets().text(names));
    (names.len(), SymbolPairs { names: names.iter(), values: encoded, table: symbols() })
}

/// The `(name, value)` texts of labels encoded by [`encode_symbols`], in order.
#[derive(Debug, Clone)]
pub(crate) struct SymbolPairs<'a> {
    names: std::slice::Iter<'static, &'static str>,
    values: &'a [u8],
    table: &'static SymbolTable,
}

impl Iterator for SymbolPairs<'_> {
    type Item = (&'static str, &'static str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let name = self.names.next()?;
        let value = take_uvarint(&mut self.values)?;
        Some((name, self.table.text(value)))
    }
}

/// The labels in the WAL record encoding (count, then length-prefixed names and values), appended to
/// `out`.
pub(crate) fn symbols_to_record(encoded: &[u8], out: &mut Vec<u8>) {
    let (count, pairs) = decode_symbols(encoded);
    put_uvarint(out, count as u64);
    for (name, value) in pairs {
        for text in [name, value] {
            put_uvarint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_across_segments() {
        assert_eq!(position(0), (0, 0));
        assert_eq!(position(1023), (0, 1023));
        assert_eq!(position(1024), (1, 0));
        assert_eq!(position(3071), (1, 2047));
        assert_eq!(position(3072), (2, 0));
        assert_eq!(position(u32::MAX).0, SEGMENTS - 1);
        let table = SymbolTable::new();
        let texts: Vec<String> = (0..5000).map(|index| format!("value-{index}")).collect();
        let symbols: Vec<u32> = texts.iter().map(|text| table.intern(text)).collect();
        for (text, symbol) in texts.iter().zip(&symbols) {
            assert_eq!(table.text(*symbol), text);
            assert_eq!(table.intern(text), *symbol, "interned once");
        }
        assert_eq!(table.text(9_999_999), "");
        assert!(table.approximate_bytes() > 5000 * 10);
    }

    #[test]
    fn labels_encode_to_symbols_and_back_to_the_record_encoding() {
        let labels = Labels::from_pairs([("__name__", "up"), ("instance", &"x".repeat(300)), ("job", "api")]);
        let encoded = encode_labels_symbols(&labels);
        let (count, pairs) = decode_symbols(&encoded);
        assert_eq!(count, 3);
        let pairs: Vec<_> = pairs.collect();
        assert_eq!(pairs[1].1.len(), 300);
        assert_eq!(pairs[2], ("job", "api"));
        let mut record = Vec::new();
        symbols_to_record(&encoded, &mut record);
        let mut expected = Vec::new();
        crate::record::encode_labels(&mut expected, &labels);
        assert_eq!(record, expected);
    }

    #[test]
    fn series_with_the_same_label_names_share_one_name_list() {
        let first = Labels::from_pairs([("__name__", "http_requests_total"), ("job", "api"), ("status", "200")]);
        let second = Labels::from_pairs([("__name__", "http_requests_total"), ("job", "web"), ("status", "500")]);
        let other_names = Labels::from_pairs([("__name__", "http_requests_total"), ("method", "GET")]);
        let encoded: Vec<Box<[u8]>> = [&first, &second, &other_names].map(encode_labels_symbols).into();
        // One varint for the name list, one per value: names cost nothing per series.
        assert!(encoded[0].len() <= 1 + 3 * 3, "{} bytes", encoded[0].len());
        assert_eq!(encoded[0][0], encoded[1][0], "one name list for both");
        assert_ne!(encoded[0][0], encoded[2][0]);
        for (labels, encoded) in [&first, &second, &other_names].into_iter().zip(&encoded) {
            let (count, pairs) = decode_symbols(encoded);
            assert_eq!(count, labels.len());
            let decoded: Vec<(&str, &str)> = pairs.collect();
            let expected: Vec<(&str, &str)> =
                labels.iter().map(|label| (label.name.as_str(), label.value.as_str())).collect();
            assert_eq!(decoded, expected);
        }
        let empty = encode_labels_symbols(&Labels::from_pairs::<&str, &str>([]));
        let (count, mut pairs) = decode_symbols(&empty);
        assert_eq!((count, pairs.next()), (0, None));
        assert_eq!(decode_symbols(&[]).0, 0, "nothing decoded from no bytes");
    }

    #[test]
    fn concurrent_interning_gives_one_reference_per_text() {
        let table = std::sync::Arc::new(SymbolTable::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let table = std::sync::Arc::clone(&table);
                std::thread::spawn(move || {
                    (0..2000).map(|index| table.intern(&format!("t{index}"))).collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<u32>> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
        assert!(results.windows(2).all(|pair| pair[0] == pair[1]));
        assert_eq!(table.next.load(Ordering::Relaxed), 2000);
    }
}

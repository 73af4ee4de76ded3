//! The head's symbol table: every label name and value the head's series use, stored once per process,
//! with series holding small symbol references instead of their label text.
//!
//! A fleet's label values repeat heavily (a target's `instance`, `job` and `pod` are shared by its
//! thousand series, `le` and `method` by whole families), so a series' labels shrink from their text
//! (165 bytes for `oxeye-bench`'s fleet) to one varint per name and per value, mostly one or two bytes.
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
//! Limit: symbols are never freed. The table holds every distinct name and value seen since the process
//! started (a fleet's few thousand, plus whatever churns: a new pod name per restarted pod); a head
//! restart starts over from the series it replays.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
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

type Segment = Box<[OnceLock<&'static str>]>;

/// Label names and values by reference and by text. One per process: [`symbols`].
#[derive(Debug)]
pub(crate) struct SymbolTable {
    segments: [OnceLock<Segment>; SEGMENTS],
    by_text: [RwLock<HashMap<&'static str, u32, MixBuildHasher>>; STRIPES],
    next: AtomicU32,
    /// Bytes of text interned so far.
    text_bytes: AtomicU64,
}

/// The process's symbol table.
pub(crate) fn symbols() -> &'static SymbolTable {
    static TABLE: LazyLock<SymbolTable> = LazyLock::new(SymbolTable::new);
    &TABLE
}

/// Segment and slot of a reference.
fn position(symbol: u32) -> (usize, usize) {
    let shifted = u64::from(symbol) + (1 << FIRST_SEGMENT_BITS);
    let bit = 63 - shifted.leading_zeros();
    ((bit - FIRST_SEGMENT_BITS) as usize, (shifted - (1 << bit)) as usize)
}

impl SymbolTable {
    fn new() -> Self {
        SymbolTable {
            segments: std::array::from_fn(|_| OnceLock::new()),
            by_text: std::array::from_fn(|_| RwLock::new(HashMap::default())),
            next: AtomicU32::new(0),
            text_bytes: AtomicU64::new(0),
        }
    }

    /// The text of a reference returned by [`SymbolTable::intern`]; `""` for any other number.
    #[inline]
    pub(crate) fn text(&self, symbol: u32) -> &'static str {
        let (segment, slot) = position(symbol);
        self.segments
            .get(segment)
            .and_then(OnceLock::get)
            .and_then(|segment| segment.get(slot))
            .and_then(OnceLock::get)
            .copied()
            .unwrap_or("")
    }

    /// The reference of `text`, added to the table when new.
    ///
    /// # Panics
    /// When more than `u32::MAX` distinct symbols were interned (16 GiB of distinct label text at least).
    pub(crate) fn intern(&self, text: &str) -> u32 {
        let mut hasher = MixBuildHasher::default().build_hasher();
        hasher.write(text.as_bytes());
        let stripe = &self.by_text[(hasher.finish() >> 40) as usize % STRIPES];
        if let Some(&symbol) = read(stripe).get(text) {
            return symbol;
        }
        let mut map = write(stripe);
        if let Some(&symbol) = map.get(text) {
            return symbol;
        }
        let symbol = self.next.fetch_add(1, Ordering::AcqRel);
        assert!(symbol != u32::MAX, "symbol table full");
        let stored: &'static str = Box::leak(Box::<str>::from(text));
        let (segment, slot) = position(symbol);
        let segment = self.segments[segment].get_or_init(|| {
            (0..(1usize << (FIRST_SEGMENT_BITS as usize + segment))).map(|_| OnceLock::new()).collect()
        });
        // The slot is set before the reference is published through the map (under its write lock).
        let _ = segment[slot].set(stored);
        map.insert(stored, symbol);
        self.text_bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        symbol
    }

    /// Estimated heap bytes of the table: the text, the segments' slots and the maps by text.
    pub(crate) fn approximate_bytes(&self) -> u64 {
        let slot_bytes = std::mem::size_of::<OnceLock<&'static str>>();
        let segments: usize = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| segment.get().is_some())
            .map(|(index, _)| (1usize << (FIRST_SEGMENT_BITS as usize + index)) * slot_bytes)
            .sum();
        let entry_bytes = std::mem::size_of::<(&'static str, u32)>() + 1;
        let maps: usize = self.by_text.iter().map(|stripe| read(stripe).capacity().div_ceil(7) * 8 * entry_bytes).sum();
        self.text_bytes.load(Ordering::Relaxed) + segments as u64 + maps as u64
    }
}

/// A series' labels as symbol references: the label count, then each name's and value's reference, all
/// unsigned varints. Labels must be sorted by name (as [`Labels`] are).
pub(crate) fn encode_symbols<'a>(count: usize, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Box<[u8]> {
    let table = symbols();
    let mut out = Vec::with_capacity(1 + 4 * count);
    put_uvarint(&mut out, count as u64);
    for (name, value) in pairs {
        put_uvarint(&mut out, u64::from(table.intern(name)));
        put_uvarint(&mut out, u64::from(table.intern(value)));
    }
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
    let count = take_uvarint(&mut encoded).unwrap_or(0) as usize;
    (count, SymbolPairs { rest: encoded, table: symbols() })
}

/// The `(name, value)` texts of labels encoded by [`encode_symbols`], in order.
#[derive(Debug, Clone)]
pub(crate) struct SymbolPairs<'a> {
    rest: &'a [u8],
    table: &'static SymbolTable,
}

impl Iterator for SymbolPairs<'_> {
    type Item = (&'static str, &'static str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let name = take_uvarint(&mut self.rest)?;
        let value = take_uvarint(&mut self.rest)?;
        Some((self.table.text(name), self.table.text(value)))
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

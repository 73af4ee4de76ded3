//! The head: the in-memory, writable part of the store holding the most recent samples of every active
//! series in compressed chunks, with a label-hash map for lookup on append and postings for queries.
//!
//! Concurrency: series are found through striped locks (by label hash and by reference); each series
//! has its own mutex for its chunks; postings sit behind one `RwLock` taken for writing only when a
//! series is created or removed.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use oxeye_model::{LabelRef, Labels};
use triomphe::ThinArc;

use crate::chunkenc::{self, ChunkDecodeError, Encoding, HeadAppender, MAX_CHUNK_BYTES, MAX_SAMPLES_PER_CHUNK};
use crate::head_chunks::{DiskChunkRef, HeadChunkFiles};
use crate::head_refs::SeriesRefs;
use crate::postings::MemPostings;
use crate::series_cache::SeriesCache;
use crate::symbols;

/// Stripes of the label-hash map.
const STRIPES: usize = 256;

/// A hasher for keys that are already hashes or small integers: one multiply spreads the bits.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut array = [0u8; 8];
            array.copy_from_slice(word);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(array)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        let mut tail = [0u8; 8];
        let rest = words.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(tail) ^ ((bytes.len() as u64) << 56))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }
}

pub(crate) type MixBuildHasher = BuildHasherDefault<MixHasher>;

/// The head's in-memory hash of a label set: eight bytes at a time, several times faster than the
/// byte-wise FNV of `Labels::stable_hash`. Never persisted, so it may change between versions;
/// collisions are resolved by comparing labels.
pub(crate) fn label_hash(labels: &Labels) -> u64 {
    hash_label_pairs(labels.iter().map(|label| (label.name.as_bytes(), label.value.as_bytes())))
}

/// [`label_hash`] of borrowed labels (equal for equal labels).
pub(crate) fn label_hash_refs(labels: &[LabelRef<'_>]) -> u64 {
    hash_label_pairs(labels.iter().map(|label| (label.name.as_bytes(), label.value.as_bytes())))
}

/// [`label_hash`] of labels in the record encoding (equal for equal labels).
pub(crate) fn label_hash_encoded(pairs: &[(&str, &str)]) -> u64 {
    hash_label_pairs(pairs.iter().map(|(name, value)| (name.as_bytes(), value.as_bytes())))
}

fn hash_label_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash: u64 = 0x243f_6a88_85a3_08d3;
    let mut mix = |word: u64| {
        hash = (hash.rotate_left(23) ^ word).wrapping_mul(MULTIPLIER);
    };
    for (name, value) in pairs {
        for text in [name, value] {
            let mut words = text.chunks_exact(8);
            for word in &mut words {
                let mut array = [0u8; 8];
                array.copy_from_slice(word);
                mix(u64::from_le_bytes(array));
            }
            let mut tail = [0u8; 8];
            let rest = words.remainder();
            tail[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab"+"c" apart from "a"+"bc".
            mix(u64::from_le_bytes(tail) ^ ((text.len() as u64) << 56));
        }
    }
    hash ^ (hash >> 29)
}

/// Where a closed head chunk's bytes are.
#[derive(Debug)]
pub(crate) enum ChunkData {
    Memory(Box<[u8]>),
    /// Moved to a head chunk file by maintenance.
    Disk(DiskChunkRef),
}

/// A closed head chunk.
#[derive(Debug)]
pub(crate) struct HeadChunk {
    pub(crate) mint_ms: i64,
    pub(crate) maxt_ms: i64,
    pub(crate) encoding: Encoding,
    pub(crate) data: ChunkData,
}

/// A chunk's bytes as seen through a series' lock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChunkBytes<'a> {
    Memory(&'a [u8]),
    Disk(DiskChunkRef),
}

/// A chunk copied out of a series for reading after the lock is released: ready bytes or a disk
/// reference still to read.
#[derive(Debug)]
pub(crate) enum PendingChunk {
    Ready(Encoding, Vec<u8>),
    Disk(DiskChunkRef),
}

impl ChunkBytes<'_> {
    pub(crate) fn to_pending(self, encoding: Encoding) -> PendingChunk {
        match self {
            ChunkBytes::Memory(bytes) => PendingChunk::Ready(encoding, bytes.to_vec()),
            ChunkBytes::Disk(reference) => PendingChunk::Disk(reference),
        }
    }
}

/// A chunk written to a head chunk file during a spill: its mint (which identifies it within its
/// series) and its location.
type SpilledChunk = (i64, DiskChunkRef);

/// Resolves pending chunks (reading every disk chunk with one batched read) into
/// `(encoding, mint, maxt, bytes)`, in the given order.
pub(crate) fn resolve_chunks(
    pending: Vec<(i64, i64, PendingChunk)>,
    files: &HeadChunkFiles,
) -> Result<Vec<crate::block::OwnedChunk>, crate::TsdbError> {
    let disk: Vec<DiskChunkRef> = pending
        .iter()
        .filter_map(|(_, _, chunk)| match chunk {
            PendingChunk::Disk(reference) => Some(*reference),
            PendingChunk::Ready(..) => None,
        })
        .collect();
    let mut read = if disk.is_empty() { Vec::new() } else { files.read_many(&disk)? }.into_iter();
    let mut out = Vec::with_capacity(pending.len());
    for (mint_ms, maxt_ms, chunk) in pending {
        match chunk {
            PendingChunk::Ready(encoding, bytes) => out.push((encoding, mint_ms, maxt_ms, bytes)),
            PendingChunk::Disk(_) => {
                let Some((encoding, bytes)) = read.next() else {
                    return Err(crate::TsdbError::corrupt("chunks_head", "missing head chunk read"));
                };
                out.push((encoding, mint_ms, maxt_ms, bytes));
            }
        }
    }
    Ok(out)
}

/// The chunk being appended to, in scaled integers or XOR ([`HeadAppender`]); its oldest and newest
/// timestamps are the appender's. It keeps no field of its own: every active series holds one.
#[derive(Debug)]
pub(crate) struct OpenChunk {
    pub(crate) appender: HeadAppender,
}

impl OpenChunk {
    pub(crate) fn mint_ms(&self) -> i64 {
        self.appender.first_timestamp_ms()
    }

    pub(crate) fn maxt_ms(&self) -> i64 {
        self.appender.last_timestamp_ms()
    }

    /// The chunk is cut before a sample at or after this time (the next block boundary). Every sample of
    /// a chunk lies in the block range its first one started, so the newest sample tells the boundary as
    /// well as the oldest, and is kept unpacked.
    fn boundary_ms(&self, chunk_range_ms: i64) -> i64 {
        self.maxt_ms().div_euclid(chunk_range_ms).saturating_add(1).saturating_mul(chunk_range_ms)
    }
}

/// What appending one sample to a series did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeriesAppend {
    Appended,
    /// Same timestamp and same value bits as the newest sample: nothing to store.
    DuplicateIgnored,
    OutOfOrder {
        newest_timestamp_ms: i64,
    },
    DuplicateDifferentValue,
}

/// The newest end of a series: its open chunk, whose last sample is the series' newest, or, with no
/// open chunk, the newest sample's timestamp and value bits kept on their own (`i64::MIN` when the
/// series has none). One of the two, so the open chunk's fields are not stored twice.
#[derive(Debug)]
pub(crate) enum Tail {
    Open(OpenChunk),
    Closed { max_time_ms: i64, last_value_bits: u64 },
}

/// The closed chunks of a series, oldest first, behind one thin pointer (`None` when there are none,
/// as for every series whose head holds a single chunk): a boxed slice (no spare capacity), reallocated
/// at each cut. A fat boxed slice in place would cost every series 8 more bytes.
#[derive(Debug, Default)]
pub(crate) struct ClosedChunks(Option<Box<Box<[HeadChunk]>>>);

impl ClosedChunks {
    /// Takes the chunks out, leaving none.
    fn take(&mut self) -> Vec<HeadChunk> {
        self.0.take().map(|chunks| chunks.into_vec()).unwrap_or_default()
    }

    /// Replaces the chunks.
    fn set(&mut self, chunks: Vec<HeadChunk>) {
        self.0 = (!chunks.is_empty()).then(|| Box::new(chunks.into_boxed_slice()));
    }
}

impl std::ops::Deref for ClosedChunks {
    type Target = [HeadChunk];

    fn deref(&self) -> &[HeadChunk] {
        self.0.as_deref().map_or(&[], |chunks| chunks)
    }
}

impl std::ops::DerefMut for ClosedChunks {
    fn deref_mut(&mut self) -> &mut [HeadChunk] {
        self.0.as_deref_mut().map_or(&mut [], |chunks| chunks)
    }
}

/// Samples of one series; guarded by the series' mutex.
#[derive(Debug)]
pub(crate) struct SeriesState {
    pub(crate) closed: ClosedChunks,
    pub(crate) tail: Tail,
}

impl SeriesState {
    fn new() -> Self {
        SeriesState {
            closed: ClosedChunks::default(),
            tail: Tail::Closed { max_time_ms: i64::MIN, last_value_bits: 0 },
        }
    }

    /// The open chunk, if any.
    pub(crate) fn open(&self) -> Option<&OpenChunk> {
        match &self.tail {
            Tail::Open(open) => Some(open),
            Tail::Closed { .. } => None,
        }
    }

    /// The newest sample's timestamp (`i64::MIN` when the series has none) and value bits.
    pub(crate) fn newest(&self) -> (i64, u64) {
        match &self.tail {
            Tail::Open(open) => (open.appender.last_timestamp_ms(), open.appender.last_value_bits()),
            Tail::Closed { max_time_ms, last_value_bits } => (*max_time_ms, *last_value_bits),
        }
    }

    /// Checks a sample against the newest one without storing it. The newest value is read only for a
    /// sample at the newest timestamp: reading it may touch the open chunk's bytes (its decimal scale),
    /// which this check, made as each sample arrives, otherwise never does.
    pub(crate) fn check(&self, timestamp_ms: i64, value_bits: u64) -> SeriesAppend {
        let newest_ms = match &self.tail {
            Tail::Open(open) => open.appender.last_timestamp_ms(),
            Tail::Closed { max_time_ms, .. } => *max_time_ms,
        };
        if newest_ms == i64::MIN || timestamp_ms > newest_ms {
            return SeriesAppend::Appended;
        }
        let (max_time_ms, last_value_bits) = self.newest();
        check_order(max_time_ms, last_value_bits, timestamp_ms, value_bits)
    }

    /// Appends a sample, cutting a new chunk when the open one is full or the sample crosses a block
    /// boundary of `chunk_range_ms`.
    pub(crate) fn append(&mut self, timestamp_ms: i64, value: f64, chunk_range_ms: i64) -> SeriesAppend {
        let value_bits = value.to_bits();
        let outcome = self.check(timestamp_ms, value_bits);
        if outcome != SeriesAppend::Appended {
            return outcome;
        }
        let must_cut = match &self.tail {
            Tail::Closed { .. } => true,
            Tail::Open(open) => {
                open.appender.num_samples() >= MAX_SAMPLES_PER_CHUNK
                    || open.appender.size_bytes() >= MAX_CHUNK_BYTES
                    || timestamp_ms >= open.boundary_ms(chunk_range_ms)
                    || !open.appender.can_append(timestamp_ms)
            }
        };
        if must_cut {
            self.cut_open_chunk();
            self.tail = Tail::Open(OpenChunk { appender: HeadAppender::new() });
        }
        if let Tail::Open(open) = &mut self.tail {
            open.appender.append(timestamp_ms, value);
        }
        SeriesAppend::Appended
    }

    /// Closes the open chunk, if any; the newest sample stays known for ordering checks.
    fn cut_open_chunk(&mut self) {
        let (max_time_ms, last_value_bits) = self.newest();
        let tail = std::mem::replace(&mut self.tail, Tail::Closed { max_time_ms, last_value_bits });
        if let Tail::Open(open) = tail {
            // Closed chunks never change again: store them in their smallest encoding.
            let (mint_ms, maxt_ms) = (open.mint_ms(), open.maxt_ms());
            let encoding = open.appender.encoding();
            let (encoding, bytes) = chunkenc::recode_closed(encoding, open.appender.into_bytes());
            let data = ChunkData::Memory(bytes.into_boxed_slice());
            self.push_closed(HeadChunk { mint_ms, maxt_ms, encoding, data });
        }
    }

    /// Appends a closed chunk (the slice grows by exactly one: most series hold few closed chunks).
    fn push_closed(&mut self, chunk: HeadChunk) {
        let mut closed = self.closed.take();
        closed.reserve_exact(1);
        closed.push(chunk);
        self.closed.set(closed);
    }

    /// Drops chunks that end before `mint_ms`. True when the series has no chunk left.
    pub(crate) fn truncate_before(&mut self, mint_ms: i64) -> bool {
        if self.closed.iter().any(|chunk| chunk.maxt_ms < mint_ms) {
            let mut closed = self.closed.take();
            closed.retain(|chunk| chunk.maxt_ms >= mint_ms);
            self.closed.set(closed);
        }
        if self.open().is_some_and(|open| open.maxt_ms() < mint_ms) {
            let (max_time_ms, last_value_bits) = self.newest();
            self.tail = Tail::Closed { max_time_ms, last_value_bits };
        }
        self.is_empty()
    }

    /// True when the series holds no chunk.
    pub(crate) fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open().is_none()
    }

    /// Every chunk, oldest first, as `(encoding, mint, maxt, bytes)`.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = (Encoding, i64, i64, ChunkBytes<'_>)> {
        self.closed
            .iter()
            .map(|chunk| {
                let bytes = match &chunk.data {
                    ChunkData::Memory(bytes) => ChunkBytes::Memory(bytes),
                    ChunkData::Disk(reference) => ChunkBytes::Disk(*reference),
                };
                (chunk.encoding, chunk.mint_ms, chunk.maxt_ms, bytes)
            })
            .chain(self.open().into_iter().map(|open| {
                let bytes = ChunkBytes::Memory(open.appender.bytes());
                (open.appender.encoding(), open.mint_ms(), open.maxt_ms(), bytes)
            }))
    }

    /// Copies of the chunks overlapping `[mint_ms, maxt_ms]`, to read after the lock is released.
    pub(crate) fn pending_chunks(&self, mint_ms: i64, maxt_ms: i64) -> Vec<(i64, i64, PendingChunk)> {
        self.chunks()
            .filter(|(_, chunk_mint, chunk_maxt, _)| *chunk_maxt >= mint_ms && *chunk_mint <= maxt_ms)
            .map(|(encoding, chunk_mint, chunk_maxt, bytes)| (chunk_mint, chunk_maxt, bytes.to_pending(encoding)))
            .collect()
    }

    /// Samples with `mint_ms <= t <= maxt_ms` of the chunks held in memory, appended to `out`.
    #[cfg(test)]
    pub(crate) fn samples_in(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        out: &mut Vec<oxeye_model::Sample>,
    ) -> Result<(), ChunkDecodeError> {
        for (encoding, chunk_mint, chunk_maxt, bytes) in self.chunks() {
            if chunk_maxt < mint_ms || chunk_mint > maxt_ms {
                continue;
            }
            if let ChunkBytes::Memory(bytes) = bytes {
                chunkenc::decode_into(encoding, bytes, mint_ms, maxt_ms, out)?;
            }
        }
        Ok(())
    }

    /// Restores chunks from a checkpoint: all but the last are closed; the last stays open for appends
    /// when it is in one of the head's open encodings (XOR or appendable scaled integers). Chunks not
    /// newer than the series' newest sample are skipped.
    pub(crate) fn restore_chunks(
        &mut self,
        chunks: Vec<(Encoding, i64, i64, Vec<u8>)>,
    ) -> Result<(), ChunkDecodeError> {
        let (newest_ms, _) = self.newest();
        let mut chunks: Vec<_> = chunks.into_iter().filter(|chunk| chunk.2 > newest_ms).collect();
        let Some((last_encoding, last_mint_ms, last_maxt_ms, last_bytes)) = chunks.pop() else { return Ok(()) };
        // Decode the newest chunk before changing anything, so a damaged one leaves the series as it was.
        let (last, last_closed) = match HeadAppender::from_bytes(last_encoding, &last_bytes)? {
            Some(appender) if appender.num_samples() == 0 => return Ok(()),
            Some(appender) => (Tail::Open(OpenChunk { appender }), None),
            None => {
                let tail = Tail::Closed {
                    max_time_ms: last_maxt_ms,
                    last_value_bits: last_value_bits(last_encoding, &last_bytes)?,
                };
                (tail, Some((last_encoding, last_mint_ms, last_maxt_ms, last_bytes)))
            }
        };
        self.cut_open_chunk();
        let mut closed = self.closed.take();
        closed.reserve_exact(chunks.len() + usize::from(last_closed.is_some()));
        for (encoding, mint_ms, maxt_ms, bytes) in chunks.into_iter().chain(last_closed) {
            // Closed chunks hold only encodings 1 and 2 (a checkpoint's last chunk may be appendable).
            let (encoding, bytes) = if encoding == Encoding::ScaledIntAppendable {
                chunkenc::recode_closed(encoding, bytes)
            } else {
                (encoding, bytes)
            };
            closed.push(HeadChunk { mint_ms, maxt_ms, encoding, data: ChunkData::Memory(bytes.into_boxed_slice()) });
        }
        self.closed.set(closed);
        self.tail = last;
        Ok(())
    }
}

fn last_value_bits(encoding: Encoding, bytes: &[u8]) -> Result<u64, ChunkDecodeError> {
    let mut samples = Vec::new();
    chunkenc::decode_into(encoding, bytes, i64::MIN, i64::MAX, &mut samples)?;
    Ok(samples.last().map(|sample| sample.value.to_bits()).unwrap_or(0))
}

/// The Prometheus ordering rule for one sample against the newest stored one.
pub(crate) fn check_order(newest_ms: i64, newest_value_bits: u64, timestamp_ms: i64, value_bits: u64) -> SeriesAppend {
    if newest_ms == i64::MIN || timestamp_ms > newest_ms {
        return SeriesAppend::Appended;
    }
    if timestamp_ms < newest_ms {
        return SeriesAppend::OutOfOrder { newest_timestamp_ms: newest_ms };
    }
    if value_bits == newest_value_bits { SeriesAppend::DuplicateIgnored } else { SeriesAppend::DuplicateDifferentValue }
}

/// What a series holds besides its labels: the fixed-size start of [`MemSeries`]' allocation.
#[derive(Debug)]
pub(crate) struct SeriesFields {
    pub(crate) series_ref: u32,
    state: Mutex<SeriesState>,
    /// The low bits ([`HOLDS`]) count the appenders holding this series in an uncommitted batch (garbage
    /// collection skips it meanwhile); bit [`LOGGED`] is set once a commit that wrote this series' WAL
    /// series record is durable; bit [`REMOVED`] once garbage collection removed the series from the
    /// head. One word for the three keeps the fields in 64 bytes.
    holds_and_flags: AtomicU32,
}

/// One series of the head, shared by the head's maps, the series cache and appenders: a thin pointer
/// (8 bytes) to one allocation holding a reference count, the [`SeriesFields`], the labels' length and
/// the labels as references into the process's tables ([`crate::symbols::encode_symbols`]: one varint
/// for the list of label names, then one per value). 80 bytes plus the labels: 96 bytes (jemalloc's
/// size class) for labels of 16 bytes or less, 97% of the fleet benchmark's series at 1M. A `std` `Arc`
/// of the fields with the labels in a boxed slice of their own cost a 96-byte and a 16-byte allocation
/// (`Arc`'s weak count and the slice's fat pointer being the difference); `triomphe`'s `ThinArc` keeps
/// one count and stores the length in the allocation.
#[derive(Clone)]
pub(crate) struct MemSeries(ThinArc<SeriesFields, u8>);

impl std::ops::Deref for MemSeries {
    type Target = SeriesFields;

    fn deref(&self) -> &SeriesFields {
        &self.0.header.header
    }
}

impl std::fmt::Debug for MemSeries {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MemSeries")
            .field("fields", &**self)
            .field("label_symbols", &self.label_symbols())
            .finish()
    }
}

/// Bytes of a [`MemSeries`] allocation before its labels: the reference count, the fields and the
/// labels' length.
const SERIES_ALLOCATION_BYTES: usize = std::mem::size_of::<SeriesFields>() + 2 * std::mem::size_of::<usize>();

/// The bit of [`SeriesFields::holds_and_flags`] that marks a series removed from the head: holds through
/// the series cache, which takes no head lock, fail from then on.
const REMOVED: u32 = 1 << 31;
/// The bit of [`SeriesFields::holds_and_flags`] set once the series' WAL series record is durable.
const LOGGED: u32 = 1 << 30;
/// The bits of [`SeriesFields::holds_and_flags`] counting holds.
const HOLDS: u32 = LOGGED - 1;

impl MemSeries {
    fn new(series_ref: u32, labels: &Labels) -> Self {
        Self::from_symbols(series_ref, &symbols::encode_labels_symbols(labels))
    }

    /// A series with one label, for tests of structures that hold series.
    #[cfg(test)]
    pub(crate) fn for_tests(series_ref: u32) -> Self {
        Self::new(series_ref, &Labels::from_pairs([("__name__", "test")]))
    }

    fn from_symbols(series_ref: u32, label_symbols: &[u8]) -> Self {
        let fields =
            SeriesFields { series_ref, state: Mutex::new(SeriesState::new()), holds_and_flags: AtomicU32::new(0) };
        MemSeries(ThinArc::from_header_and_slice(fields, label_symbols))
    }

    /// The labels as symbol references ([`crate::symbols::encode_symbols`]).
    pub(crate) fn label_symbols(&self) -> &[u8] {
        &self.0.slice
    }

    /// Whether two handles share one series.
    #[cfg(test)]
    pub(crate) fn ptr_eq(&self, other: &MemSeries) -> bool {
        std::ptr::eq(self.0.ptr(), other.0.ptr())
    }

    /// Appends the labels in the WAL record encoding (count, then length-prefixed names and values).
    pub(crate) fn encode_labels_record(&self, out: &mut Vec<u8>) {
        symbols::symbols_to_record(self.label_symbols(), out);
    }

    /// The series' labels, decoded.
    pub(crate) fn labels(&self) -> Labels {
        let (count, pairs) = symbols::decode_symbols(self.label_symbols());
        let mut labels = Vec::with_capacity(count);
        labels.extend(pairs.map(|(name, value)| oxeye_model::Label { name: name.to_owned(), value: value.to_owned() }));
        // Stored from valid (sorted, unique) labels.
        Labels::from_sorted(labels)
    }

    /// The stored `(name, value)` pairs, borrowed from the symbol table.
    fn label_pairs(&self) -> symbols::SymbolPairs<'_> {
        symbols::decode_symbols(self.label_symbols()).1
    }

    fn label_refs_equal(&self, labels: &[LabelRef<'_>]) -> bool {
        self.pairs_equal(labels.len(), labels.iter().map(|label| (label.name, label.value)))
    }

    fn labels_equal(&self, labels: &Labels) -> bool {
        self.pairs_equal(labels.len(), labels.iter().map(|label| (label.name.as_str(), label.value.as_str())))
    }

    /// Compares the series' labels with `count` sorted `(name, value)` pairs (this runs once per appended
    /// sample): shared symbols are few and stay in the CPU cache.
    fn pairs_equal<'a>(&self, count: usize, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        let (stored_count, mut stored) = symbols::decode_symbols(self.label_symbols());
        if stored_count != count {
            return false;
        }
        pairs.into_iter().all(|(name, value)| {
            stored.next().is_some_and(|(stored_name, stored_value)| stored_name == name && stored_value == value)
        })
    }

    /// Whether `pairs` (decoded from a WAL series record) are exactly the series' labels.
    fn pairs_equal_decoded(&self, pairs: &[(&str, &str)]) -> bool {
        self.pairs_equal(pairs.len(), pairs.iter().copied())
    }

    /// Orders two series as their `Labels` would order (label by label, name then value, a prefix
    /// first), without allocating.
    pub(crate) fn cmp_labels(&self, other: &MemSeries) -> std::cmp::Ordering {
        if self.label_symbols() == other.label_symbols() {
            return std::cmp::Ordering::Equal;
        }
        let (_, left) = symbols::decode_symbols(self.label_symbols());
        let (_, right) = symbols::decode_symbols(other.label_symbols());
        left.cmp(right)
    }

    /// Reads the series' lock word without taking it, so that a following [`MemSeries::lock`] finds it
    /// in the CPU cache (see WAL replay).
    pub(crate) fn touch(&self) {
        std::hint::black_box(self.state.is_poisoned());
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SeriesState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the series held by one more appender unless garbage collection removed it.
    pub(crate) fn try_hold(&self) -> bool {
        let before = self.holds_and_flags.fetch_add(1, Ordering::AcqRel);
        if before & REMOVED != 0 {
            self.release();
            return false;
        }
        true
    }

    /// Marks the series held by one more appender (the caller holds a head lock under which garbage
    /// collection cannot remove it).
    pub(crate) fn hold(&self) {
        let before = self.holds_and_flags.fetch_add(1, Ordering::AcqRel);
        debug_assert!(before & HOLDS < HOLDS, "series hold count overflow");
    }

    /// Ends one appender's hold.
    pub(crate) fn release(&self) {
        let before = self.holds_and_flags.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before & HOLDS > 0, "series released more often than held");
    }

    /// Whether a commit that wrote this series' WAL series record is durable.
    pub(crate) fn is_logged(&self) -> bool {
        self.holds_and_flags.load(Ordering::Acquire) & LOGGED != 0
    }

    /// Records that this series' WAL series record is durable.
    pub(crate) fn mark_logged(&self) {
        self.holds_and_flags.fetch_or(LOGGED, Ordering::AcqRel);
    }

    /// Loads, without locking or writing, the memory a held append reads first (the struct's lines, the
    /// first and last bytes of its symbol references; the symbols' text is shared and stays cached) and
    /// returns a value made of it. `SeriesCache::hold_all` calls it for a
    /// whole request before any atomic read-modify-write, so that the cache misses of different series
    /// overlap.
    pub(crate) fn touch_for_cache_hit(&self) -> u64 {
        let first_label_byte = self.label_symbols().first().copied().unwrap_or(0);
        let last_label_byte = self.label_symbols().last().copied().unwrap_or(0);
        u64::from(first_label_byte ^ last_label_byte)
            ^ u64::from(self.holds_and_flags.load(Ordering::Relaxed))
            ^ u64::from(self.state.is_poisoned())
    }

    /// Marks the series removed if no appender holds it; false when one does.
    fn try_mark_removed(&self) -> bool {
        let mut current = self.holds_and_flags.load(Ordering::Acquire);
        loop {
            if current & (HOLDS | REMOVED) != 0 {
                return false;
            }
            match self.holds_and_flags.compare_exchange_weak(
                current,
                current | REMOVED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes back [`MemSeries::try_mark_removed`] (the series got samples again and stays).
    fn unmark_removed(&self) {
        self.holds_and_flags.fetch_and(!REMOVED, Ordering::AcqRel);
    }

    /// Whether garbage collection removed the series from the head.
    pub(crate) fn is_removed(&self) -> bool {
        self.holds_and_flags.load(Ordering::Acquire) & REMOVED != 0
    }

    /// Approximate heap bytes of the series, for sizing.
    pub(crate) fn approximate_bytes(&self) -> usize {
        SERIES_ALLOCATION_BYTES + self.label_symbols().len()
    }
}

/// Series by label hash: one series reference (4 bytes) per bucket, resolved through the by-reference
/// slots ([`SeriesRefs`]). The hash is not stored beside it; a resize recomputes each series'
/// [`label_hash`] from its symbols. Series whose hashes collide sit side by side and are told apart by
/// their labels. Every reference in a stripe is in the by-reference slots: a series is added there
/// first and removed from there last.
#[derive(Debug, Default)]
struct HashStripe {
    table: hashbrown::HashTable<u32>,
}

/// Where each stripe's share of [`label_hash`]es starts, as a hash's top 32 bits: stripe `s` takes a
/// share proportional to `2^(s / STRIPES)`, so the stripes' sizes spread evenly (on a log scale) over one
/// doubling. Each stripe's table doubles when it is seven eighths full; with equal stripes every table
/// doubles at the same series count and the whole map is then under half full (1M fleet series: 2^21
/// buckets for 1M entries, 48%), while with shares spread over a doubling the tables double one by one
/// and the map stays about 63% full (seven eighths times `1 / (2 ln 2)`) at any count.
fn hash_stripe_starts() -> &'static [u32; STRIPES] {
    static STARTS: std::sync::OnceLock<[u32; STRIPES]> = std::sync::OnceLock::new();
    STARTS.get_or_init(|| {
        // The shares of stripes below `s` sum to `2^(s / STRIPES) - 1` of the whole (which sums to 1).
        std::array::from_fn(|stripe| ((2f64.powf(stripe as f64 / STRIPES as f64) - 1.0) * 2f64.powi(32)) as u32)
    })
}

/// The stripe of the label-hash map holding [`label_hash`] `hash` ([`hash_stripe_starts`]).
fn hash_stripe_index(hash: u64) -> usize {
    let top = (hash >> 32) as u32;
    // The first start is 0, so at least one start is at or below `top`.
    hash_stripe_starts().partition_point(|start| *start <= top) - 1
}

/// The hash the stripe's table uses for a [`label_hash`]: its top bits chose the stripe, so the bits are
/// spread again.
fn table_hash(hash: u64) -> u64 {
    hash.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
}

/// [`label_hash`] of a stored series, from its symbols.
fn series_label_hash(series: &MemSeries) -> u64 {
    hash_label_pairs(series.label_pairs().map(|(name, value)| (name.as_bytes(), value.as_bytes())))
}

impl HashStripe {
    /// The series under `hash` whose labels `matches` accepts.
    fn find_with(&self, hash: u64, refs: &SeriesRefs, matches: impl Fn(&MemSeries) -> bool) -> Option<MemSeries> {
        let mut found = None;
        self.table.find(table_hash(hash), |series_ref| match refs.get(*series_ref) {
            Some(series) if matches(&series) => {
                found = Some(series);
                true
            }
            _ => false,
        })?;
        found
    }

    fn find(&self, hash: u64, labels: &Labels, refs: &SeriesRefs) -> Option<MemSeries> {
        self.find_with(hash, refs, |series| series.labels_equal(labels))
    }

    fn find_refs(&self, hash: u64, labels: &[LabelRef<'_>], refs: &SeriesRefs) -> Option<MemSeries> {
        self.find_with(hash, refs, |series| series.label_refs_equal(labels))
    }

    fn find_decoded(&self, hash: u64, pairs: &[(&str, &str)], refs: &SeriesRefs) -> Option<MemSeries> {
        self.find_with(hash, refs, |series| series.pairs_equal_decoded(pairs))
    }

    /// Adds a series not in the stripe yet (already in `refs`); `hash` is its [`label_hash`].
    fn insert(&mut self, hash: u64, series_ref: u32, refs: &SeriesRefs) {
        self.table.insert_unique(table_hash(hash), series_ref, |stored| {
            // Every stored reference resolves (see the type's documentation).
            refs.get(*stored).map_or(0, |series| table_hash(series_label_hash(&series)))
        });
    }

    fn remove(&mut self, hash: u64, series_ref: u32) {
        if let Ok(entry) = self.table.find_entry(table_hash(hash), |stored| *stored == series_ref) {
            entry.remove();
        }
    }
}

/// Head counters, exported through `TsdbStats`.
#[derive(Debug, Default)]
pub(crate) struct HeadCounters {
    pub(crate) samples_appended_total: AtomicU64,
    pub(crate) out_of_order_samples_total: AtomicU64,
    pub(crate) out_of_bounds_samples_total: AtomicU64,
    pub(crate) duplicate_samples_total: AtomicU64,
    pub(crate) series_created_total: AtomicU64,
    pub(crate) series_removed_total: AtomicU64,
}

/// Estimated heap bytes of the head by component, as requested from the allocator (which rounds each
/// allocation up to its size class, so resident memory is somewhat higher). For sizing and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeadMemory {
    /// Series in the head.
    pub series: u64,
    /// The per-series structures (`MemSeries` with its reference counts and its samples' lock).
    pub series_structs: u64,
    /// Labels as each series stores them: references into the symbol table.
    pub labels: u64,
    /// The process's symbol table of label names and values (text, slots and map by text), shared by
    /// every head in the process.
    #[serde(default)]
    pub label_symbols: u64,
    /// Bytes written to the open chunks.
    pub open_chunks_used: u64,
    /// Capacity of the open chunks' buffers (`open_chunks_used` plus room to grow).
    pub open_chunks_capacity: u64,
    /// Closed chunks still in memory (not yet moved to head chunk files), bytes.
    pub closed_chunks_in_memory: u64,
    /// The closed chunks' descriptors (time range, encoding, where the bytes are), capacity included.
    pub closed_chunk_descriptors: u64,
    /// The maps from label hash and from reference to series, and the remote_write series cache
    /// (capacity included).
    pub series_index: u64,
    /// The postings: label names and values as keys and their bitmaps.
    pub postings: u64,
}

impl HeadMemory {
    /// The sum of every component.
    pub fn total(&self) -> u64 {
        self.series_structs
            + self.labels
            + self.label_symbols
            + self.open_chunks_capacity
            + self.closed_chunks_in_memory
            + self.closed_chunk_descriptors
            + self.series_index
            + self.postings
    }
}

/// The in-memory head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) chunk_range_ms: i64,
    by_hash: Box<[RwLock<HashStripe>]>,
    /// Series by reference; the label-hash map and the series cache hold references into it.
    pub(crate) by_ref: SeriesRefs,
    postings: RwLock<MemPostings>,
    next_ref: AtomicU32,
    num_series: AtomicU64,
    /// Oldest sample time in the head, `i64::MAX` when empty.
    min_time_ms: AtomicI64,
    /// Newest sample time in the head, `i64::MIN` when empty.
    max_time_ms: AtomicI64,
    /// Samples older than this are refused (raised before a block is cut).
    min_valid_time_ms: AtomicI64,
    /// Queries read the head from this time on; raised only once the block below it is visible, so a
    /// query during a block cut sees every sample (possibly twice, deduplicated) and never a gap.
    query_min_time_ms: AtomicI64,
    pub(crate) counters: HeadCounters,
    /// Series by the raw protobuf label bytes remote_write senders send for them.
    pub(crate) series_cache: SeriesCache,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a series could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CreateSeriesError {
    RefsExhausted,
}

impl Head {
    pub(crate) fn new(chunk_range_ms: i64) -> Self {
        Head {
            chunk_range_ms,
            by_hash: (0..STRIPES).map(|_| RwLock::new(HashStripe::default())).collect(),
            by_ref: SeriesRefs::default(),
            postings: RwLock::new(MemPostings::new()),
            next_ref: AtomicU32::new(1),
            num_series: AtomicU64::new(0),
            min_time_ms: AtomicI64::new(i64::MAX),
            max_time_ms: AtomicI64::new(i64::MIN),
            min_valid_time_ms: AtomicI64::new(i64::MIN),
            query_min_time_ms: AtomicI64::new(i64::MIN),
            counters: HeadCounters::default(),
            series_cache: SeriesCache::default(),
        }
    }

    fn hash_stripe(&self, hash: u64) -> &RwLock<HashStripe> {
        &self.by_hash[hash_stripe_index(hash)]
    }

    /// The series with exactly these labels, marked as held by one more appender when `hold` is set.
    /// The existing series with these borrowed labels (`hash` from [`label_hash_refs`]), marked held by
    /// an appender.
    pub(crate) fn get_by_label_refs(&self, labels: &[LabelRef<'_>], hash: u64) -> Option<MemSeries> {
        let stripe = read(self.hash_stripe(hash));
        let series = stripe.find_refs(hash, labels, &self.by_ref)?;
        series.hold();
        Some(series)
    }

    pub(crate) fn get_by_labels(&self, labels: &Labels, hash: u64, hold: bool) -> Option<MemSeries> {
        let stripe = read(self.hash_stripe(hash));
        let series = stripe.find(hash, labels, &self.by_ref)?;
        if hold {
            series.hold();
        }
        Some(series)
    }

    /// The series with these labels, created when missing (with `fixed_ref` during replay, else the next
    /// reference). Returns whether it was created. With `hold`, the series is marked as held by an
    /// appender before any lock is released, so garbage collection cannot remove it in between.
    pub(crate) fn get_or_create(
        &self,
        labels: &Labels,
        fixed_ref: Option<u32>,
        hold: bool,
    ) -> Result<(MemSeries, bool), CreateSeriesError> {
        let hash = label_hash(labels);
        if let Some(series) = self.get_by_labels(labels, hash, hold) {
            return Ok((series, false));
        }
        let mut stripe = write(self.hash_stripe(hash));
        if let Some(series) = stripe.find(hash, labels, &self.by_ref) {
            if hold {
                series.hold();
            }
            return Ok((series, false));
        }
        let series_ref = self.allocate_ref(fixed_ref)?;
        let series = MemSeries::new(series_ref, labels);
        if hold {
            series.hold();
        }
        self.by_ref.insert(series.clone());
        stripe.insert(hash, series_ref, &self.by_ref);
        write(&self.postings).add(series_ref, labels);
        drop(stripe);
        self.num_series.fetch_add(1, Ordering::Relaxed);
        self.counters.series_created_total.fetch_add(1, Ordering::Relaxed);
        Ok((series, true))
    }

    fn allocate_ref(&self, fixed_ref: Option<u32>) -> Result<u32, CreateSeriesError> {
        match fixed_ref {
            Some(series_ref) => {
                self.next_ref.fetch_max(series_ref.saturating_add(1), Ordering::AcqRel);
                Ok(series_ref)
            }
            None => {
                let allocated = self.next_ref.fetch_add(1, Ordering::AcqRel);
                if allocated == u32::MAX {
                    return Err(CreateSeriesError::RefsExhausted);
                }
                Ok(allocated)
            }
        }
    }

    /// As [`Head::get_or_create`] without holding, for `(name, value)` pairs borrowed from a WAL series
    /// record (replay): no label strings are allocated beyond new symbols. The series is **not** added to the postings: replay calls
    /// [`Head::index_unindexed_postings`] once every series exists, which is several times faster than
    /// inserting into shared bitmaps under one lock from every replay worker.
    pub(crate) fn get_or_create_encoded(
        &self,
        pairs: &[(&str, &str)],
        fixed_ref: Option<u32>,
    ) -> Result<MemSeries, CreateSeriesError> {
        let hash = label_hash_encoded(pairs);
        if let Some(series) = read(self.hash_stripe(hash)).find_decoded(hash, pairs, &self.by_ref) {
            return Ok(series);
        }
        let mut stripe = write(self.hash_stripe(hash));
        if let Some(series) = stripe.find_decoded(hash, pairs, &self.by_ref) {
            return Ok(series);
        }
        let series_ref = self.allocate_ref(fixed_ref)?;
        let series = MemSeries::from_symbols(series_ref, &symbols::encode_symbols(pairs.len(), pairs.iter().copied()));
        self.by_ref.insert(series.clone());
        stripe.insert(hash, series_ref, &self.by_ref);
        drop(stripe);
        self.num_series.fetch_add(1, Ordering::Relaxed);
        self.counters.series_created_total.fetch_add(1, Ordering::Relaxed);
        Ok(series)
    }

    /// Adds every series that is not in the postings yet (those [`Head::get_or_create_encoded`]
    /// created) to the postings, in ascending reference order.
    pub(crate) fn index_unindexed_postings(&self) {
        // Series maps before the postings, as series creation takes them.
        let all_series = self.all_series();
        let mut postings = write(&self.postings);
        let mut unindexed: Vec<MemSeries> =
            all_series.into_iter().filter(|series| !postings.all().contains(series.series_ref)).collect();
        unindexed.sort_unstable_by_key(|series| series.series_ref);
        postings.extend_ascending(unindexed.iter().map(|series| (series.series_ref, series.label_pairs())));
    }

    /// The series with reference `series_ref`.
    pub(crate) fn get_by_ref(&self, series_ref: u32) -> Option<MemSeries> {
        self.by_ref.get(series_ref)
    }

    /// Every series, one by-reference stripe's snapshot at a time (about a 256th of the head each), in
    /// no particular order. Walks over the whole head use it so that they never hold a pointer to every
    /// series at once (8 MB at 1M series, on top of the head at its largest).
    pub(crate) fn series_in_stripes(&self) -> impl Iterator<Item = Vec<MemSeries>> + '_ {
        self.by_ref.in_stripes()
    }

    /// Every series, in no particular order.
    pub(crate) fn all_series(&self) -> Vec<MemSeries> {
        let mut all = Vec::with_capacity(self.num_series() as usize);
        for stripe in self.by_ref.in_stripes() {
            all.extend(stripe);
        }
        all
    }

    pub(crate) fn postings(&self) -> RwLockReadGuard<'_, MemPostings> {
        read(&self.postings)
    }

    pub(crate) fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    pub(crate) fn min_time_ms(&self) -> i64 {
        self.min_time_ms.load(Ordering::Acquire)
    }

    pub(crate) fn max_time_ms(&self) -> i64 {
        self.max_time_ms.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.max_time_ms() == i64::MIN
    }

    pub(crate) fn min_valid_time_ms(&self) -> i64 {
        self.min_valid_time_ms.load(Ordering::Acquire)
    }

    pub(crate) fn raise_min_valid_time(&self, timestamp_ms: i64) {
        self.min_valid_time_ms.fetch_max(timestamp_ms, Ordering::AcqRel);
    }

    /// The oldest time queries read from the head.
    pub(crate) fn query_min_time_ms(&self) -> i64 {
        self.query_min_time_ms.load(Ordering::Acquire)
    }

    /// The oldest timestamp an append may carry now: the newer of the block cut line and half a chunk
    /// range before the head's newest sample (Prometheus' `appendableMinValidTime`).
    pub(crate) fn appendable_min_valid_time_ms(&self) -> i64 {
        let min_valid = self.min_valid_time_ms();
        let max_time = self.max_time_ms();
        if max_time == i64::MIN {
            return min_valid;
        }
        min_valid.max(max_time.saturating_sub(self.chunk_range_ms / 2))
    }

    /// Widens the head's time range after samples in `[mint_ms, maxt_ms]` were appended.
    pub(crate) fn observe_time_range(&self, mint_ms: i64, maxt_ms: i64) {
        self.min_time_ms.fetch_min(mint_ms, Ordering::AcqRel);
        self.max_time_ms.fetch_max(maxt_ms, Ordering::AcqRel);
    }

    /// Drops every chunk ending before `mint_ms` and every series left without chunks that no appender
    /// holds; the head then starts at `mint_ms` for appends and queries (call it only once the data
    /// below `mint_ms` is readable from a block). Returns the number of series removed.
    pub(crate) fn truncate(&self, mint_ms: i64) -> u64 {
        self.raise_min_valid_time(mint_ms);
        self.query_min_time_ms.fetch_max(mint_ms, Ordering::AcqRel);
        let mut empty = Vec::new();
        for series in self.series_in_stripes().flatten() {
            let mut state = series.lock();
            if state.truncate_before(mint_ms) {
                empty.push(series.clone());
            }
        }
        let mut removed = 0;
        for series in empty {
            let labels = series.labels();
            let hash = label_hash(&labels);
            let mut stripe = write(self.hash_stripe(hash));
            // Marked before the emptiness check: from here on no appender can hold it through the series
            // cache (which takes no head lock) and append between the check and the removal.
            if !series.try_mark_removed() {
                continue;
            }
            if !series.lock().is_empty() {
                series.unmark_removed();
                continue;
            }
            stripe.remove(hash, series.series_ref);
            drop(stripe);
            self.by_ref.remove(series.series_ref);
            write(&self.postings).remove(series.series_ref, &labels);
            removed += 1;
        }
        if removed > 0 {
            self.series_cache.purge_removed(&self.by_ref);
        }
        self.num_series.fetch_sub(removed, Ordering::Relaxed);
        self.counters.series_removed_total.fetch_add(removed, Ordering::Relaxed);
        if self.max_time_ms() == i64::MIN || self.num_series() == 0 {
            self.min_time_ms.store(i64::MAX, Ordering::Release);
            self.max_time_ms.store(i64::MIN, Ordering::Release);
        } else {
            self.min_time_ms.fetch_max(mint_ms, Ordering::AcqRel);
        }
        removed
    }

    /// The oldest time at or after `from_ms` of any sample in the head (chunk granularity: the mint of
    /// the oldest chunk ending at or after `from_ms`, raised to `from_ms`); `None` when there is none.
    pub(crate) fn oldest_sample_time_ms(&self, from_ms: i64) -> Option<i64> {
        let mut oldest: Option<i64> = None;
        for series in self.series_in_stripes().flatten() {
            let state = series.lock();
            let first = state.chunks().find(|(_, _, maxt_ms, _)| *maxt_ms >= from_ms);
            if let Some((_, mint_ms, _, _)) = first {
                let candidate = mint_ms.max(from_ms);
                oldest = Some(oldest.map_or(candidate, |known| known.min(candidate)));
            }
        }
        oldest
    }

    /// Moves closed chunks held in memory to head chunk files, in rounds of a few thousand series (each
    /// round written before its references are published). Returns the number of chunks moved.
    pub(crate) fn spill(&self, files: &HeadChunkFiles) -> Result<u64, crate::TsdbError> {
        const SERIES_PER_ROUND: usize = 4096;
        let mut moved = 0;
        let mut round = Vec::with_capacity(SERIES_PER_ROUND);
        for series in self.series_in_stripes().flatten() {
            round.push(series);
            if round.len() == SERIES_PER_ROUND {
                moved += spill_round(&round, files)?;
                round.clear();
            }
        }
        moved += spill_round(&round, files)?;
        Ok(moved)
    }

    /// Estimated heap bytes of the head by component; walks every series (takes each one's lock briefly).
    pub(crate) fn memory(&self) -> HeadMemory {
        let mut memory = HeadMemory::default();
        let struct_bytes = SERIES_ALLOCATION_BYTES as u64;
        for series in self.series_in_stripes().flatten() {
            memory.series += 1;
            memory.series_structs += struct_bytes;
            memory.labels += series.label_symbols().len() as u64;
            let state = series.lock();
            if let Some(open) = state.open() {
                memory.open_chunks_used += open.appender.size_bytes() as u64;
                memory.open_chunks_capacity += open.appender.capacity_bytes() as u64;
            }
            // The slice, and the box holding its fat pointer when there is one.
            let outer_box_bytes = if state.closed.is_empty() { 0 } else { std::mem::size_of::<Box<[HeadChunk]>>() };
            memory.closed_chunk_descriptors +=
                (std::mem::size_of_val::<[HeadChunk]>(&state.closed) + outer_box_bytes) as u64;
            for chunk in state.closed.iter() {
                if let ChunkData::Memory(bytes) = &chunk.data {
                    memory.closed_chunks_in_memory += bytes.len() as u64;
                }
            }
        }
        // A hashbrown table holds one control byte per bucket beside each entry, and its capacity is
        // seven eighths of its buckets.
        let table_bytes = |capacity: usize, entry: usize| (capacity.div_ceil(7) * 8 * (entry + 1)) as u64;
        for stripe in self.by_hash.iter() {
            memory.series_index += table_bytes(read(stripe).table.capacity(), std::mem::size_of::<u32>());
        }
        memory.series_index += self.by_ref.approximate_bytes();
        memory.series_index += self.series_cache.approximate_bytes();
        memory.postings = self.postings().approximate_bytes();
        memory.label_symbols = symbols::symbols().approximate_bytes();
        memory
    }

    /// Approximate heap bytes held by series structures and chunks (not postings), for stats.
    pub(crate) fn approximate_chunk_bytes(&self) -> u64 {
        let mut total = 0u64;
        for series in self.series_in_stripes().flatten() {
            let state = series.lock();
            total += series.approximate_bytes() as u64;
            total += state
                .chunks()
                .map(|(_, _, _, bytes)| match bytes {
                    ChunkBytes::Memory(bytes) => bytes.len() as u64 + 48,
                    ChunkBytes::Disk(_) => 48,
                })
                .sum::<u64>();
        }
        total
    }
}

/// One round of [`Head::spill`]: writes the closed in-memory chunks of `round`, then points the series
/// at them. Returns the number of chunks moved.
fn spill_round(round: &[MemSeries], files: &HeadChunkFiles) -> Result<u64, crate::TsdbError> {
    if round.is_empty() {
        return Ok(0);
    }
    let mut moved = 0;
    let mut batch = files.batch();
    // Per series: (mint of the chunk, where it was written).
    let mut planned: Vec<(&MemSeries, Vec<SpilledChunk>)> = Vec::new();
    for series in round {
        let state = series.lock();
        let mut references = Vec::new();
        for chunk in state.closed.iter() {
            if let ChunkData::Memory(bytes) = &chunk.data {
                references.push((chunk.mint_ms, batch.add(chunk.encoding, bytes, chunk.maxt_ms)?));
            }
        }
        if !references.is_empty() {
            planned.push((series, references));
        }
    }
    batch.finish()?;
    for (series, references) in planned {
        let mut state = series.lock();
        for (mint_ms, reference) in references {
            // Closed chunks never change; a truncated one is simply gone.
            if let Some(chunk) = state.closed.iter_mut().find(|chunk| chunk.mint_ms == mint_ms)
                && matches!(chunk.data, ChunkData::Memory(_))
            {
                chunk.data = ChunkData::Disk(reference);
                moved += 1;
            }
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_found_by_labels_and_by_ref() {
        let head = Head::new(7_200_000);
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let (created, was_created) = head.get_or_create(&labels, None, false).unwrap();
        assert!(was_created);
        let (found, was_created) = head.get_or_create(&labels, None, false).unwrap();
        assert!(!was_created);
        assert_eq!(found.series_ref, created.series_ref);
        assert_eq!(head.get_by_ref(created.series_ref).unwrap().labels(), labels);
        assert_eq!(head.postings().get("job", "a").unwrap().len(), 1);
    }

    #[test]
    fn hash_stripes_take_shares_spread_over_one_doubling() {
        assert_eq!(hash_stripe_index(0), 0);
        assert_eq!(hash_stripe_index(u64::MAX), STRIPES - 1);
        let mut counts = [0u32; STRIPES];
        for key in 0..(1u64 << 20) {
            counts[hash_stripe_index(table_hash(key))] += 1;
        }
        assert!(counts.iter().all(|count| *count > 0));
        // Stripe `s` takes a share proportional to 2^(s / STRIPES): the last about twice the first.
        let first: u32 = counts[..16].iter().sum();
        let last: u32 = counts[STRIPES - 16..].iter().sum();
        let ratio = f64::from(last) / f64::from(first);
        assert!((1.8..2.1).contains(&ratio), "{ratio}");
    }

    #[test]
    fn stored_labels_order_as_labels_do() {
        let sets = [
            Labels::from_pairs([("__name__", "a")]),
            Labels::from_pairs([("__name__", "a"), ("job", "x")]),
            Labels::from_pairs([("__name__", "a"), ("job", "xy")]),
            Labels::from_pairs([("__name__", "a"), ("jobs", "a")]),
            Labels::from_pairs([("__name__", "ab")]),
            Labels::from_pairs([("__name__", "b"), ("a", "z")]),
            Labels::from_pairs([("a", "z")]),
            Labels::default(),
        ];
        for (left_position, left) in sets.iter().enumerate() {
            for (right_position, right) in sets.iter().enumerate() {
                let stored_left = MemSeries::new(left_position as u32, left);
                let stored_right = MemSeries::new(right_position as u32, right);
                assert_eq!(stored_left.cmp_labels(&stored_right), left.cmp(right), "{left:?} vs {right:?}");
            }
        }
    }

    #[test]
    fn label_comparison_with_short_and_long_strings_and_many_labels() {
        let long_value = "v".repeat(300);
        let many: Vec<(String, String)> = (0..200).map(|index| (format!("l{index:03}"), "x".to_owned())).collect();
        let sets = [
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            Labels::from_pairs([("__name__", "up"), ("job", "ab")]),
            Labels::from_pairs([("__name__", "up"), ("jo", "ba")]),
            Labels::from_pairs([("__name__", "up")]),
            Labels::from_pairs([("__name__", "up"), ("job", long_value.as_str())]),
            Labels::from_pairs([("__name__", "up"), ("job", &long_value[1..])]),
            Labels::from_pairs(many.iter().map(|(name, value)| (name.as_str(), value.as_str()))),
        ];
        for (stored_index, stored) in sets.iter().enumerate() {
            let series = MemSeries::new(1, stored);
            for (probe_index, probe) in sets.iter().enumerate() {
                let refs: Vec<LabelRef<'_>> =
                    probe.iter().map(|label| LabelRef { name: &label.name, value: &label.value }).collect();
                let expected = stored_index == probe_index;
                assert_eq!(series.labels_equal(probe), expected, "{stored} against {probe}");
                assert_eq!(series.label_refs_equal(&refs), expected, "{stored} against {probe} (refs)");
            }
        }
    }

    #[test]
    fn series_stay_found_across_table_resizes() {
        // Every resize rehashes the stored series from their symbols: the hash must equal the one
        // computed from the labels at lookup.
        let mut stripe = HashStripe::default();
        let refs = SeriesRefs::default();
        let all: Vec<Labels> = (0..3000)
            .map(|index| Labels::from_pairs([("__name__", "up"), ("instance", &format!("host-{index}:9100"))]))
            .collect();
        for (index, labels) in all.iter().enumerate() {
            assert_eq!(series_label_hash(&MemSeries::new(0, labels)), label_hash(labels));
            refs.insert(MemSeries::new(index as u32, labels));
            stripe.insert(label_hash(labels), index as u32, &refs);
        }
        for (index, labels) in all.iter().enumerate() {
            assert_eq!(
                stripe.find(label_hash(labels), labels, &refs).map(|series| series.series_ref),
                Some(index as u32)
            );
        }
        stripe.remove(label_hash(&all[7]), 7);
        assert!(stripe.find(label_hash(&all[7]), &all[7], &refs).is_none());
        assert_eq!(stripe.table.len(), 2999);
    }

    #[test]
    fn colliding_hashes_keep_both_series() {
        let mut stripe = HashStripe::default();
        let refs = SeriesRefs::default();
        let first_labels = Labels::from_pairs([("a", "1")]);
        let second_labels = Labels::from_pairs([("a", "2")]);
        refs.insert(MemSeries::new(1, &first_labels));
        refs.insert(MemSeries::new(2, &second_labels));
        // Forced to one hash (the table's first buckets hold both, so no resize recomputes it).
        stripe.insert(42, 1, &refs);
        stripe.insert(42, 2, &refs);
        assert_eq!(stripe.find(42, &first_labels, &refs).unwrap().series_ref, 1);
        assert_eq!(stripe.find(42, &second_labels, &refs).unwrap().series_ref, 2);
        stripe.remove(42, 1);
        assert!(stripe.find(42, &first_labels, &refs).is_none());
        assert_eq!(stripe.find(42, &second_labels, &refs).unwrap().series_ref, 2);
    }

    #[test]
    fn chunks_are_cut_at_sample_count_and_block_boundary() {
        let mut state = SeriesState::new();
        for index in 0..130 {
            assert_eq!(state.append(index * 1000, 1.0, 100_000), SeriesAppend::Appended);
        }
        // Boundaries at 100 s cut the first chunk at 100 samples; the rest stay open.
        assert_eq!(state.closed.len(), 1);
        assert_eq!(state.closed[0].maxt_ms, 99_000);
        assert_eq!(state.append(5, 1.0, 100_000), SeriesAppend::OutOfOrder { newest_timestamp_ms: 129_000 });
        assert_eq!(state.append(129_000, 1.0, 100_000), SeriesAppend::DuplicateIgnored);
        assert_eq!(state.append(129_000, 2.0, 100_000), SeriesAppend::DuplicateDifferentValue);
        let mut samples = Vec::new();
        state.samples_in(98_000, 101_000, &mut samples).unwrap();
        assert_eq!(
            samples.iter().map(|sample| sample.timestamp_ms).collect::<Vec<_>>(),
            [98_000, 99_000, 100_000, 101_000]
        );
    }

    #[test]
    fn restored_chunks_continue_where_they_left_off() {
        for count in [50, 120, 300] {
            let mut original = SeriesState::new();
            for index in 0..count {
                original.append(index * 1000, (index % 7) as f64, 10_000_000);
            }
            let chunks: Vec<_> = original
                .chunks()
                .map(|(encoding, mint, maxt, bytes)| match bytes {
                    ChunkBytes::Memory(bytes) => (encoding, mint, maxt, bytes.to_vec()),
                    ChunkBytes::Disk(_) => panic!("no chunk files in this test"),
                })
                .collect();
            let mut restored = SeriesState::new();
            restored.restore_chunks(chunks).unwrap();
            assert_eq!(restored.check((count - 1) * 1000, 99f64.to_bits()), SeriesAppend::DuplicateDifferentValue);
            assert_eq!(
                restored.check((count - 1) * 1000, (((count - 1) % 7) as f64).to_bits()),
                SeriesAppend::DuplicateIgnored
            );
            for state in [&mut original, &mut restored] {
                assert_eq!(state.append(count * 1000, 5.0, 10_000_000), SeriesAppend::Appended);
            }
            let (mut expected, mut actual) = (Vec::new(), Vec::new());
            original.samples_in(i64::MIN, i64::MAX, &mut expected).unwrap();
            restored.samples_in(i64::MIN, i64::MAX, &mut actual).unwrap();
            assert_eq!(actual, expected, "{count} samples");
        }
    }

    /// Checkpoints written before open chunks had an appendable scaled-integer form end in an XOR chunk.
    #[test]
    fn an_xor_open_chunk_of_an_older_checkpoint_stays_open() {
        let mut xor = chunkenc::XorAppender::new();
        for index in 0..10 {
            xor.append(index * 1000, index as f64);
        }
        let mut restored = SeriesState::new();
        restored.restore_chunks(vec![(Encoding::Xor, 0, 9_000, xor.into_bytes())]).unwrap();
        assert_eq!(restored.open().map(|open| open.appender.encoding()), Some(Encoding::Xor));
        assert_eq!(restored.append(10_000, 10.0, 10_000_000), SeriesAppend::Appended);
        let mut samples = Vec::new();
        restored.samples_in(i64::MIN, i64::MAX, &mut samples).unwrap();
        let expected: Vec<oxeye_model::Sample> =
            (0..11).map(|index| oxeye_model::Sample { timestamp_ms: index * 1000, value: index as f64 }).collect();
        assert_eq!(samples, expected);
    }

    #[test]
    fn truncate_removes_empty_series_but_not_held_ones() {
        let head = Head::new(1000);
        let old = Labels::from_pairs([("__name__", "old")]);
        let held = Labels::from_pairs([("__name__", "held")]);
        let (old_series, _) = head.get_or_create(&old, None, false).unwrap();
        old_series.lock().append(10, 1.0, 1000);
        let (held_series, _) = head.get_or_create(&held, None, true).unwrap();
        head.observe_time_range(10, 10);
        assert_eq!(head.truncate(5000), 1);
        assert!(head.get_by_ref(old_series.series_ref).is_none());
        assert!(head.get_by_ref(held_series.series_ref).is_some());
        assert_eq!(head.postings().label_values("__name__"), ["held"]);
        assert_eq!(head.appendable_min_valid_time_ms(), 5000);
    }
}
#[cfg(test)]
mod size_budget {
    /// Every active series holds one `MemSeries` allocation (plus chunk bytes): keep it small. 64 bytes of
    /// fields plus the count and the labels' length leave 16 bytes of labels in jemalloc's 96-byte size
    /// class (the next one is 112).
    #[test]
    fn per_series_structures_stay_within_budget() {
        assert!(std::mem::size_of::<super::SeriesFields>() <= 64, "{}", std::mem::size_of::<super::SeriesFields>());
        assert_eq!(super::SERIES_ALLOCATION_BYTES + 16, 96);
        assert_eq!(std::mem::size_of::<Option<super::MemSeries>>(), 8);
        assert!(std::mem::size_of::<crate::chunkenc::HeadAppender>() <= 40);
        // The open chunk is the appender alone, and the tail enum finds its tag in the appender's niche.
        assert!(std::mem::size_of::<super::Tail>() <= 40);
        assert!(std::mem::size_of::<super::ClosedChunks>() <= 8);
    }
}

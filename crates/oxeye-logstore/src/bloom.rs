//! Per-chunk skipping: a bloom filter over the **minimizers** of every line's byte k-grams.
//!
//! A needle search (`|= "95a3c3b70468058d1315f7725d8ef0b9"`) can skip a chunk only if the chunk surely lacks
//! the needle. Indexing whole words would miss needles that are part of a longer word, and indexing every
//! n-gram of high-entropy ids (trace ids, UUIDs) saturates the filter. Minimizers avoid both: for each
//! window of [`WINDOW`] consecutive [`KGRAM_BYTES`]-byte k-grams of a line, the k-gram with the smallest
//! hash is the window's minimizer, and only minimizers are inserted (about `2 / (WINDOW + 1)` of all
//! positions). A needle of at least [`MIN_NEEDLE_BYTES`] bytes contains at least one whole window, and a
//! window's minimizer depends only on the window's bytes, so every minimizer of the needle was inserted for
//! any line containing it: a chunk whose filter lacks one of them cannot contain the needle. Shorter needles
//! never skip.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Minimizer hashes are already mixed 64-bit values: the set uses them as their own hash.
#[derive(Debug, Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Bytes per k-gram.
pub const KGRAM_BYTES: usize = 5;
/// k-grams per minimizer window.
pub const WINDOW: usize = 12;
/// The shortest needle that can skip chunks: one whole window.
pub const MIN_NEEDLE_BYTES: usize = KGRAM_BYTES + WINDOW - 1;
/// Bits per distinct inserted value: about 1.3% false positives per key with [`HASH_COUNT`] probes, and a
/// needle looks up several keys, all of which must pass. (10 bits gave 1%, for 10% more filter bytes.)
const BITS_PER_ITEM: usize = 9;
/// Probes per value.
pub const HASH_COUNT: u8 = 7;
/// Set in a filter's first byte (with the probe count in the low bits) when its values are hashed with the
/// current k-gram hash. Filters without it (written before the hash changed) cannot be probed with current
/// needle keys, so they never skip a chunk.
pub const HASH_V2_FLAG: u8 = 0x80;

/// The hash of one k-gram: its 5 bytes as a little-endian integer, mixed by the murmur3 64-bit finaliser
/// (after an xor with a constant, so the all-zero k-gram does not hash to 0). Two multiplications and no
/// chain between positions, unlike a byte-at-a-time hash: building the filter costs a fraction of what FNV
/// did. Filters hashed this way carry [`HASH_V2_FLAG`] in their first byte.
#[inline(always)]
fn hash_kgram(kgram: &[u8]) -> u64 {
    debug_assert_eq!(kgram.len(), KGRAM_BYTES);
    let mut word = [0u8; 8];
    word[..KGRAM_BYTES].copy_from_slice(kgram);
    hash_kgram_word(u64::from_le_bytes(word))
}

/// [`hash_kgram`] of the k-gram held in the low [`KGRAM_BYTES`] bytes of `word` (the others zero).
#[inline(always)]
fn hash_kgram_word(word: u64) -> u64 {
    let mut hash = word ^ 0x9e37_79b9_7f4a_7c15;
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// Calls `emit` with the hash of every window minimizer of `bytes`, once per run of windows sharing the
/// same minimum value. A window's minimizer is its smallest k-gram hash; which of several equal hashes
/// wins does not matter, since only the values are inserted and looked up.
///
/// The k-gram hashes are computed first (independent of each other, so they pipeline), then each window's
/// minimum is the smaller of a suffix minimum and a prefix minimum over blocks of [`WINDOW`] positions
/// (van Herk / Gil-Werman): two comparisons per position and no data-dependent branch, where a monotone
/// queue mispredicts on almost every position of random ids.
pub fn for_each_minimizer(bytes: &[u8], emit: impl FnMut(u64)) {
    MINIMIZER_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => minimizers_with(bytes, &mut scratch, emit),
        // Only reachable if `emit` itself computes minimizers: use a fresh buffer then.
        Err(_) => minimizers_with(bytes, &mut Vec::new(), emit),
    });
}

thread_local! {
    /// Reused per-thread buffer of hashes, prefix and suffix minima, so hashing a line allocates nothing.
    static MINIMIZER_SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn minimizers_with(bytes: &[u8], scratch: &mut Vec<u64>, mut emit: impl FnMut(u64)) {
    if bytes.len() < KGRAM_BYTES {
        return;
    }
    let kgram_count = bytes.len() - KGRAM_BYTES + 1;
    if kgram_count < WINDOW {
        // A line shorter than one window: its k-grams' minimum still lets equal lines match, and no
        // needle that short is ever looked up, so inserting it only costs a bit.
        if let Some(minimum) = bytes.windows(KGRAM_BYTES).map(hash_kgram).min() {
            emit(minimum);
        }
        return;
    }
    // Every slot is written before it is read: grow the buffer when needed, never refill it (filling it
    // cost about a tenth of the builder's instructions).
    if scratch.len() < kgram_count * 2 {
        scratch.resize(kgram_count * 2, 0);
    }
    let (prefix, suffix) = scratch[..kgram_count * 2].split_at_mut(kgram_count);
    // One 8-byte load per position where the line has 8 bytes left (all but the last three k-grams), masked
    // to the k-gram; iterators rather than indexes, so the loops carry no bounds checks.
    let loaded = bytes.len().saturating_sub(7).min(kgram_count);
    for (slot, eight) in prefix[..loaded].iter_mut().zip(bytes.windows(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        *slot = hash_kgram_word(u64::from_le_bytes(word) & ((1 << (8 * KGRAM_BYTES)) - 1));
    }
    for (slot, kgram) in prefix[loaded..].iter_mut().zip(bytes[loaded..].windows(KGRAM_BYTES)) {
        *slot = hash_kgram(kgram);
    }
    // suffix[i] = min of hashes i..end of i's block; prefix[i] = min of hashes from i's block start to i.
    for (prefix_block, suffix_block) in prefix.chunks_mut(WINDOW).zip(suffix.chunks_mut(WINDOW)) {
        let mut running = u64::MAX;
        for (hash, suffix_minimum) in prefix_block.iter().zip(suffix_block.iter_mut()).rev() {
            running = running.min(*hash);
            *suffix_minimum = running;
        }
        let mut running = u64::MAX;
        for slot in prefix_block.iter_mut() {
            running = running.min(*slot);
            *slot = running;
        }
    }
    let mut last_emitted = None;
    for (suffix_minimum, prefix_minimum) in suffix[..=kgram_count - WINDOW].iter().zip(&prefix[WINDOW - 1..]) {
        let minimum = (*suffix_minimum).min(*prefix_minimum);
        if last_emitted != Some(minimum) {
            emit(minimum);
            last_emitted = Some(minimum);
        }
    }
}

/// The values to look up for a needle, or `None` when the needle is too short to skip anything.
pub fn needle_keys(needle: &str) -> Option<Vec<u64>> {
    if needle.len() < MIN_NEEDLE_BYTES {
        return None;
    }
    let mut keys = Vec::new();
    for_each_minimizer(needle.as_bytes(), |hash| keys.push(hash));
    keys.sort_unstable();
    keys.dedup();
    Some(keys)
}

/// Collects distinct minimizer hashes while a chunk is built.
#[derive(Debug, Default)]
pub struct BloomBuilder {
    values: HashSet<u64, BuildHasherDefault<PrehashedHasher>>,
}

impl BloomBuilder {
    /// Adds every minimizer of `line`.
    pub fn add_line(&mut self, line: &str) {
        let values = &mut self.values;
        for_each_minimizer(line.as_bytes(), |hash| {
            values.insert(hash);
        });
    }

    /// The filter's bytes: one byte holding [`HASH_V2_FLAG`] and the probe count, then the bit array (bit `i` is bit `i % 8`
    /// of byte `1 + i / 8`). Sized at [`BITS_PER_ITEM`] bits per distinct value, at least 64 bits.
    pub fn finish(&self) -> Vec<u8> {
        let bit_count = (self.values.len() * BITS_PER_ITEM).max(64).next_multiple_of(8);
        let mut bytes = vec![0u8; 1 + bit_count / 8];
        bytes[0] = HASH_V2_FLAG | HASH_COUNT;
        for value in &self.values {
            for bit in probe_bits(*value, HASH_COUNT, bit_count) {
                bytes[1 + bit / 8] |= 1 << (bit % 8);
            }
        }
        bytes
    }
}

fn probe_bits(value: u64, hash_count: u8, bit_count: usize) -> impl Iterator<Item = usize> {
    // Kirsch-Mitzenmacher double hashing over the two halves of the 64-bit value.
    let first = value & 0xffff_ffff;
    let second = (value >> 32) | 1;
    (0..u64::from(hash_count))
        .map(move |index| (first.wrapping_add(index.wrapping_mul(second)) % bit_count as u64) as usize)
}

/// True when the filter may contain every key (or is malformed, empty or of the old hash: then nothing is
/// skipped).
pub fn may_contain_all(filter: &[u8], keys: &[u64]) -> bool {
    let Some((&header, bits)) = filter.split_first() else {
        return true;
    };
    let hash_count = header & !HASH_V2_FLAG;
    if header & HASH_V2_FLAG == 0 || bits.is_empty() || hash_count == 0 {
        return true;
    }
    let bit_count = bits.len() * 8;
    keys.iter().all(|key| probe_bits(*key, hash_count, bit_count).all(|bit| bits[bit / 8] & (1 << (bit % 8)) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needle_inside_a_line_is_always_found() {
        let line =
            r#"{"event": "request_finished", "trace_id": "95a3c3b70468058d1315f7725d8ef0b9", "path": "/healthz/"}"#;
        let mut builder = BloomBuilder::default();
        builder.add_line(line);
        let filter = builder.finish();
        for start in 0..line.len() - MIN_NEEDLE_BYTES {
            for end in start + MIN_NEEDLE_BYTES..=line.len() {
                let needle = &line[start..end];
                let keys = needle_keys(needle).unwrap();
                assert!(may_contain_all(&filter, &keys), "needle {needle:?}");
            }
        }
    }

    #[test]
    fn absent_needles_are_mostly_skipped() {
        let mut builder = BloomBuilder::default();
        for index in 0..2000 {
            builder.add_line(&format!(
                r#"{{"event": "request_finished", "trace_id": "{:032x}", "request_id": "{:016x}"}}"#,
                (index as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834),
                index * 7919
            ));
        }
        let filter = builder.finish();
        let mut passed = 0;
        for probe in 0..1000u128 {
            let needle = format!("{:032x}", probe.wrapping_mul(0x2545_f491_4f6c_dd1d_1234_5678_9abc_def1) + 17);
            if may_contain_all(&filter, &needle_keys(&needle).unwrap()) {
                passed += 1;
            }
        }
        assert!(passed < 50, "{passed} of 1000 absent needles passed the filter");
    }

    /// The definition the sliding-window code must match: each window's smallest hash, once per run of
    /// windows with the same minimum.
    fn minimizers_by_definition(bytes: &[u8]) -> Vec<u64> {
        let hashes: Vec<u64> = bytes.windows(KGRAM_BYTES).map(hash_kgram).collect();
        if hashes.len() < WINDOW {
            return hashes.iter().min().copied().into_iter().collect();
        }
        let mut out: Vec<u64> = Vec::new();
        for window in hashes.windows(WINDOW) {
            let minimum = window.iter().copied().min().unwrap();
            if out.last() != Some(&minimum) {
                out.push(minimum);
            }
        }
        out
    }

    #[test]
    fn sliding_window_minimizers_match_the_definition() {
        let lines = [
            r#"{"event": "request_finished", "trace_id": "95a3c3b70468058d1315f7725d8ef0b9", "path": "/healthz/"}"#,
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababababababababab",
            "short line",
            "tiny",
            "0123456789abcdef",
        ];
        let long_line = lines[0].repeat(9);
        let lines: Vec<&str> = lines.into_iter().chain([long_line.as_str()]).collect();
        for line in lines {
            let mut emitted = Vec::new();
            for_each_minimizer(line.as_bytes(), |hash| emitted.push(hash));
            assert_eq!(emitted, minimizers_by_definition(line.as_bytes()), "{line:?}");
        }
    }

    #[test]
    fn short_needles_and_malformed_filters_never_skip() {
        assert!(needle_keys("short").is_none());
        assert!(may_contain_all(&[], &[1, 2]));
        assert!(may_contain_all(&[HASH_V2_FLAG | 7], &[1, 2]));
        // A filter of the old hash (no flag) never skips, whatever its bits.
        assert!(may_contain_all(&[7, 0, 0, 0, 0, 0, 0, 0, 0], &[1, 2]));
    }
}

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

/// Bytes per k-gram.
pub const KGRAM_BYTES: usize = 5;
/// k-grams per minimizer window.
pub const WINDOW: usize = 12;
/// The shortest needle that can skip chunks: one whole window.
pub const MIN_NEEDLE_BYTES: usize = KGRAM_BYTES + WINDOW - 1;
/// Bits per distinct inserted value (about 1% false positives with [`HASH_COUNT`] probes).
const BITS_PER_ITEM: usize = 10;
/// Probes per value.
pub const HASH_COUNT: u8 = 7;

fn hash_bytes(bytes: &[u8]) -> u64 {
    // FNV-1a followed by a murmur3 finaliser: cheap, stable across versions (stored on disk).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// Calls `emit` with the hash of every window minimizer of `bytes` (consecutive repeats once).
pub fn for_each_minimizer(bytes: &[u8], mut emit: impl FnMut(u64)) {
    if bytes.len() < KGRAM_BYTES {
        return;
    }
    let hashes: Vec<u64> = bytes.windows(KGRAM_BYTES).map(hash_bytes).collect();
    if hashes.len() < WINDOW {
        // A line shorter than one window: its k-grams' minimum still lets equal lines match, and no
        // needle that short is ever looked up, so inserting it only costs a bit.
        if let Some(minimum) = hashes.iter().min() {
            emit(*minimum);
        }
        return;
    }
    let mut last_emitted_position = usize::MAX;
    for start in 0..=hashes.len() - WINDOW {
        let window = &hashes[start..start + WINDOW];
        let mut best_position = start;
        let mut best = window[0];
        for (offset, hash) in window.iter().enumerate().skip(1) {
            if *hash < best {
                best = *hash;
                best_position = start + offset;
            }
        }
        if best_position != last_emitted_position {
            emit(best);
            last_emitted_position = best_position;
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
    values: HashSet<u64>,
}

impl BloomBuilder {
    /// Adds every minimizer of `line`.
    pub fn add_line(&mut self, line: &str) {
        let values = &mut self.values;
        for_each_minimizer(line.as_bytes(), |hash| {
            values.insert(hash);
        });
    }

    /// The filter's bytes: one byte holding the probe count, then the bit array (bit `i` is bit `i % 8`
    /// of byte `1 + i / 8`). Sized at [`BITS_PER_ITEM`] bits per distinct value, at least 64 bits.
    pub fn finish(&self) -> Vec<u8> {
        let bit_count = (self.values.len() * BITS_PER_ITEM).max(64).next_multiple_of(8);
        let mut bytes = vec![0u8; 1 + bit_count / 8];
        bytes[0] = HASH_COUNT;
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

/// True when the filter may contain every key (or is malformed or empty: then nothing is skipped).
pub fn may_contain_all(filter: &[u8], keys: &[u64]) -> bool {
    let Some((&hash_count, bits)) = filter.split_first() else {
        return true;
    };
    if bits.is_empty() || hash_count == 0 {
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

    #[test]
    fn short_needles_and_malformed_filters_never_skip() {
        assert!(needle_keys("short").is_none());
        assert!(may_contain_all(&[], &[1, 2]));
        assert!(may_contain_all(&[7], &[1, 2]));
    }
}

//! Per-chunk skipping: a bloom filter over the **tokens** of every line.
//!
//! A needle search (`|= "95a3c3b70468058d1315f7725d8ef0b9"`) can skip a chunk only if the chunk surely lacks
//! the needle. A line is split into tokens, the maximal runs of [token bytes](is_token_byte) (letters,
//! digits, `_ - . @ + % $ ~`, and every byte of a non-ASCII character); every other byte delimits. A token
//! shorter than [`MIN_NEEDLE_BYTES`] is inserted whole (one value); a longer one, such as a trace id, is
//! inserted as the **minimizers** of its byte k-grams: for each window of [`WINDOW`] consecutive
//! [`KGRAM_BYTES`]-byte k-grams, the k-gram with the smallest hash (about `2 / (WINDOW + 1)` of all
//! positions). A chunk's lines repeat most tokens (keys, event names, levels, the ids of one request), so
//! each distinct long token's minimizers are computed once per chunk and repeated short tokens cost one
//! lookup.
//!
//! Looking a needle up is exact (a chunk holding the needle is never skipped): every token of the needle
//! with a delimiter on both sides inside the needle is a whole token of any line containing the needle, so
//! its value was inserted; a token of at least [`MIN_NEEDLE_BYTES`] bytes (whole or cut by the needle's
//! ends) lies inside one token of the line at least as long, and a window's minimizer depends only on the
//! window's bytes, so every minimizer of the needle's token was inserted. A chunk whose filter lacks one of
//! those values cannot contain the needle. A needle with neither (a single word shorter than
//! [`MIN_NEEDLE_BYTES`]) never skips.
//!
//! Short tokens that are [decimal numbers](is_decimal_token) (`24.123456Z`, the seconds of a timestamp;
//! `0.25s`; `123.4`) are not inserted: the sub-second part of a timestamp is a new token on nearly every
//! line, and on seed-shaped JSON these tokens were half of a filter's values. A needle's decimal tokens are
//! not looked up either; which tokens are decimal depends on the token's bytes alone, so a needle's whole
//! token and the line's token it stands for are judged alike and the lookup stays exact. A needle made only
//! of decimals and words cut by its ends skips nothing.
//!
//! Filters written before decimals were left out ([`FilterScheme::Tokens`]) are probed with the decimal
//! tokens too; filters written before the token scheme ([`FilterScheme::LineMinimizers`]) hold the
//! minimizers of whole lines and are probed with the minimizers of the whole needle.

use std::collections::HashSet;

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
/// Set in a filter's first byte (with the probe count in the low bits) in filters of
/// [`FilterScheme::LineMinimizers`] and [`FilterScheme::Tokens`]; filters with none of the flags (FNV-1a
/// hashes, written before session 2) never skip.
pub const HASH_V2_FLAG: u8 = 0x80;
/// Set in filters of [`FilterScheme::Tokens`] (with [`HASH_V2_FLAG`]) and
/// [`FilterScheme::TokensWithoutDecimals`] (with [`DECIMALS_LEFT_OUT_FLAG`]).
pub const TOKENS_FLAG: u8 = 0x40;
/// Set with [`TOKENS_FLAG`] and without [`HASH_V2_FLAG`] in filters of [`FilterScheme::TokensWithoutDecimals`]
/// (written since session 13; the probe count, 7, never set this bit before). Without [`HASH_V2_FLAG`],
/// readers older than this scheme take such a filter for an FNV-1a one and never skip by it, rather than
/// look up decimals it does not hold.
pub const DECIMALS_LEFT_OUT_FLAG: u8 = 0x20;
/// The probe count's bits in a filter's first byte.
const HASH_COUNT_MASK: u8 = 0x1f;

/// What a filter's values are, named by its first byte; a needle is looked up with keys of the filter's
/// scheme (`docs/format.md`, "Bloom filter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterScheme {
    /// [`HASH_V2_FLAG`] alone (filters written before the token scheme): the window minimizers of every whole
    /// line.
    LineMinimizers,
    /// [`HASH_V2_FLAG`] and [`TOKENS_FLAG`] (sessions 6 to 12): short tokens whole, the window minimizers of
    /// long tokens (see the module documentation).
    Tokens,
    /// [`TOKENS_FLAG`] and [`DECIMALS_LEFT_OUT_FLAG`], written since: as
    /// [`FilterScheme::Tokens`] without the short tokens that are [decimal numbers](is_decimal_token).
    TokensWithoutDecimals,
}

impl FilterScheme {
    /// The scheme [`BloomBuilder`] writes.
    pub const CURRENT: FilterScheme = FilterScheme::TokensWithoutDecimals;

    /// The scheme named by a filter's first byte, `None` for filters that never skip.
    pub fn of_filter_header(header: u8) -> Option<FilterScheme> {
        match (header & HASH_V2_FLAG != 0, header & TOKENS_FLAG != 0, header & DECIMALS_LEFT_OUT_FLAG != 0) {
            (true, false, false) => Some(FilterScheme::LineMinimizers),
            (true, true, false) => Some(FilterScheme::Tokens),
            (false, true, true) => Some(FilterScheme::TokensWithoutDecimals),
            _ => None,
        }
    }

    fn header_flags(self) -> u8 {
        match self {
            FilterScheme::LineMinimizers => HASH_V2_FLAG,
            FilterScheme::Tokens => HASH_V2_FLAG | TOKENS_FLAG,
            FilterScheme::TokensWithoutDecimals => TOKENS_FLAG | DECIMALS_LEFT_OUT_FLAG,
        }
    }
}

/// Which bytes make up tokens: ASCII letters and digits, `_ - . @ + % $ ~`, and bytes of non-ASCII
/// characters (0x80 and up). Part of the filter format: changing it needs a new [`FilterScheme`].
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0usize;
    while byte < 256 {
        let ascii = byte as u8;
        table[byte] = ascii.is_ascii_alphanumeric()
            || matches!(ascii, b'_' | b'-' | b'.' | b'@' | b'+' | b'%' | b'$' | b'~')
            || ascii >= 0x80;
        byte += 1;
    }
    table
};

/// Whether `byte` belongs to tokens (see [`FilterScheme::Tokens`]); every other byte delimits them.
#[inline(always)]
pub fn is_token_byte(byte: u8) -> bool {
    TOKEN_BYTES[usize::from(byte)]
}

/// Whether a token is a decimal number, which filters of [`FilterScheme::TokensWithoutDecimals`] leave out:
/// one or more ASCII digits, `.`, one or more ASCII digits, then any ASCII letters (a unit or a time zone:
/// `24.123456Z`, `0.25s`, `123.4`). Part of the filter format. Not inlined: the builder asks only for
/// values missing from its cache, and the check inlined into its token loop slowed the whole loop.
#[inline(never)]
pub fn is_decimal_token(token: &[u8]) -> bool {
    let digits = |bytes: &[u8]| bytes.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let whole_digits = digits(token);
    let Some((b'.', fraction_and_unit)) = token.get(whole_digits..).and_then(<[u8]>::split_first) else {
        return false;
    };
    let fraction_digits = digits(fraction_and_unit);
    whole_digits > 0
        && fraction_digits > 0
        && fraction_and_unit.get(fraction_digits..).is_some_and(|unit| unit.iter().all(u8::is_ascii_alphabetic))
}

/// The tokens of `bytes` as `(start, end)` byte ranges, in order.
struct Tokens<'b> {
    bytes: &'b [u8],
    position: usize,
}

impl Iterator for Tokens<'_> {
    type Item = (usize, usize);

    #[inline]
    fn next(&mut self) -> Option<(usize, usize)> {
        let rest = self.bytes.get(self.position..)?;
        let start = self.position + rest.iter().position(|byte| is_token_byte(*byte))?;
        let tail = self.bytes.get(start..)?;
        let end = start + tail.iter().position(|byte| !is_token_byte(*byte)).unwrap_or(tail.len());
        self.position = end;
        Some((start, end))
    }
}

fn tokens(bytes: &[u8]) -> Tokens<'_> {
    Tokens { bytes, position: 0 }
}

/// [`is_token_byte`] by comparisons instead of a table lookup, so the compiler classifies a block of bytes
/// 16 at a time with vector compares ([`token_mask`]); equal to it on every byte (tested).
#[inline(always)]
fn is_token_byte_by_ranges(byte: u8) -> bool {
    (byte >= 0x80)
        | (byte.wrapping_sub(b'0') < 10)
        // `@` and `A` to `Z`.
        | (byte.wrapping_sub(b'@') < 27)
        | (byte.wrapping_sub(b'a') < 26)
        // `$` and `%`.
        | (byte.wrapping_sub(b'$') < 2)
        // `-` and `.`.
        | (byte.wrapping_sub(b'-') < 2)
        | (byte == b'+')
        | (byte == b'_')
        | (byte == b'~')
}

/// Bytes classified together by [`token_mask`].
const BLOCK_BYTES: usize = 64;

/// Bit `i` set where `block[i]` is a token byte. The flags are bytes of 0 or 1; a multiplication gathers
/// eight of them into one byte (flag `i` of a word lands on bit `56 + i` of the product, and no two partial
/// products share a bit, so nothing carries).
#[inline(always)]
fn token_mask(block: &[u8; BLOCK_BYTES]) -> u64 {
    let flags: [u8; BLOCK_BYTES] = std::array::from_fn(|index| u8::from(is_token_byte_by_ranges(block[index])));
    let mut mask = 0u64;
    for (index, eight) in flags.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        let gathered = u64::from_le_bytes(word).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= gathered << (8 * index);
    }
    mask
}

/// Writes to `bounds` from `count` on the offset of every token edge in a block whose token bytes are
/// `mask` and which starts at `block_start`; `previous` is the last byte's bit of the block before (and is
/// updated). Writes by index into a slice sized beforehand (a `Vec::push` stored the length back to memory
/// on every edge), two edges a loop turn: with an odd count the last turn writes one slot past the block's
/// edges, which the next block overwrites or which lies past the count returned.
#[inline(always)]
fn write_token_edges(mask: u64, previous: &mut u64, block_start: u32, bounds: &mut [u32], count: &mut usize) {
    let mut edges = mask ^ ((mask << 1) | *previous);
    *previous = mask >> 63;
    let end = *count + edges.count_ones() as usize;
    let mut written = *count;
    while written < end {
        let first = block_start + edges.trailing_zeros();
        edges &= edges.wrapping_sub(1);
        let second = block_start + edges.trailing_zeros();
        edges &= edges.wrapping_sub(1);
        if let Some([first_slot, second_slot]) = bounds.get_mut(written..written + 2) {
            *first_slot = first;
            *second_slot = second;
        }
        written += 2;
    }
    *count = end;
}

/// The same tokens as [`tokens`], written to the first entries of `bounds` as start, end, start, end, ...;
/// returns how many. `bounds` is grown to `bytes.len() + 2` entries (the most edges a line can have, and
/// the slot [`write_token_edges`] may write past them) and never shrunk, so a buffer kept across lines is zeroed once. The bytes are classified [`BLOCK_BYTES`] at a
/// time into a bit mask ([`token_mask`]); the edges are the bits where the mask changes, one loop turn per
/// edge rather than per byte. The last partial block is padded with zero bytes, which delimit, so a token
/// running to the end of `bytes` ends there.
fn token_bounds(bytes: &[u8], bounds: &mut Vec<u32>) -> usize {
    if bounds.len() < bytes.len() + 2 {
        bounds.resize(bytes.len() + 2, 0);
    }
    let bounds = bounds.as_mut_slice();
    let mut count = 0usize;
    let mut previous = 0u64;
    let mut block_start = 0u32;
    let mut blocks = bytes.chunks_exact(BLOCK_BYTES);
    for block in &mut blocks {
        let mut whole = [0u8; BLOCK_BYTES];
        whole.copy_from_slice(block);
        write_token_edges(token_mask(&whole), &mut previous, block_start, bounds, &mut count);
        block_start += BLOCK_BYTES as u32;
    }
    let rest = blocks.remainder();
    if rest.is_empty() {
        if previous != 0 {
            if let Some(slot) = bounds.get_mut(count) {
                *slot = block_start;
            }
            count += 1;
        }
    } else {
        let mut padded = [0u8; BLOCK_BYTES];
        padded[..rest.len()].copy_from_slice(rest);
        write_token_edges(token_mask(&padded), &mut previous, block_start, bounds, &mut count);
    }
    debug_assert!(count <= bounds.len());
    count
}

/// Xored into token words, so short-token values and k-gram hashes of the same bytes differ.
const SHORT_TOKEN_KEY: u64 = 0x6a09_e667_f3bc_c908;

/// The value inserted for a token shorter than [`MIN_NEEDLE_BYTES`]: `lo` = its first up to 8 bytes and
/// `hi` = the rest (up to 7), each read as a little-endian integer with zeros above (token bytes are never
/// zero, so no two tokens share a pair), then `murmur3(murmur3(lo ^ key) ^ hi)`. Where 16 bytes follow
/// `start` in `bytes` (all but the last tokens of a line), both words are loaded whole and masked by
/// [`WORD_MASKS`], without a branch on the token's length.
#[inline(always)]
fn short_token_value(bytes: &[u8], start: usize, end: usize) -> u64 {
    debug_assert!(start < end && end - start < MIN_NEEDLE_BYTES && end <= bytes.len());
    let length = end - start;
    let (low, high) = match bytes.get(start..start + 16) {
        Some(sixteen) => {
            let mut low_word = [0u8; 8];
            low_word.copy_from_slice(&sixteen[..8]);
            let mut high_word = [0u8; 8];
            high_word.copy_from_slice(&sixteen[8..]);
            (
                u64::from_le_bytes(low_word) & WORD_MASKS[length.min(8)],
                u64::from_le_bytes(high_word) & WORD_MASKS[length.saturating_sub(8).min(8)],
            )
        }
        None => {
            let low_end = end.min(start + 8);
            let low = little_endian_word(bytes, start, low_end);
            (low, if low_end < end { little_endian_word(bytes, low_end, end) } else { 0 })
        }
    };
    murmur3_finalise(murmur3_finalise(low ^ SHORT_TOKEN_KEY) ^ high)
}

/// `WORD_MASKS[n]` keeps the low `n` bytes of a word.
const WORD_MASKS: [u64; 9] = {
    let mut masks = [u64::MAX; 9];
    let mut length = 0;
    while length < 8 {
        masks[length] = (1u64 << (8 * length)) - 1;
        length += 1;
    }
    masks
};

/// `bytes[start..end]` (at most 8 bytes) as a little-endian integer with zero bytes above; one 8-byte load
/// where the slice has 8 bytes from `start` on (a copy of a variable length would call `memcpy`).
#[inline(always)]
fn little_endian_word(bytes: &[u8], start: usize, end: usize) -> u64 {
    let length = end - start;
    debug_assert!(length <= 8);
    match bytes.get(start..start + 8) {
        Some(eight) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            let mask = if length >= 8 { u64::MAX } else { (1u64 << (8 * length)) - 1 };
            u64::from_le_bytes(word) & mask
        }
        None => bytes
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .rev()
            .fold(0u64, |word, byte| (word << 8) | u64::from(*byte)),
    }
}

/// The murmur3 64-bit finaliser: every input bit flips each output bit with probability about one half.
#[inline(always)]
fn murmur3_finalise(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The hash of one k-gram: its 5 bytes as a little-endian integer, mixed by the murmur3 64-bit finaliser
/// (after an xor with a constant, so the all-zero k-gram does not hash to 0). Two multiplications and no
/// chain between positions, unlike a byte-at-a-time hash: building the filter costs a fraction of what FNV
/// did.
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
    murmur3_finalise(word ^ 0x9e37_79b9_7f4a_7c15)
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

/// The values to look up for a needle in a filter of each scheme, sorted and distinct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeedleKeys {
    /// For [`FilterScheme::LineMinimizers`]: the minimizers of the whole needle (none below
    /// [`MIN_NEEDLE_BYTES`]).
    line_minimizers: Vec<u64>,
    /// For [`FilterScheme::Tokens`] and [`FilterScheme::TokensWithoutDecimals`]: the values of the needle's
    /// whole short tokens that are not decimals and the minimizers of its long tokens.
    tokens: Vec<u64>,
    /// For [`FilterScheme::Tokens`] only: the values of the needle's whole short tokens that are decimals.
    decimal_tokens: Vec<u64>,
}

impl NeedleKeys {
    /// The keys to look up in a filter of `scheme`, in two parts.
    fn of_scheme(&self, scheme: FilterScheme) -> [&[u64]; 2] {
        match scheme {
            FilterScheme::LineMinimizers => [&self.line_minimizers, &[]],
            FilterScheme::Tokens => [&self.tokens, &self.decimal_tokens],
            FilterScheme::TokensWithoutDecimals => [&self.tokens, &[]],
        }
    }
}

/// The values to look up for a needle, or `None` when no filter can tell the needle is absent (a needle
/// shorter than [`MIN_NEEDLE_BYTES`] without a token delimited on both sides inside it).
pub fn needle_keys(needle: &str) -> Option<NeedleKeys> {
    let bytes = needle.as_bytes();
    let mut keys = NeedleKeys::default();
    if bytes.len() >= MIN_NEEDLE_BYTES {
        for_each_minimizer(bytes, |hash| keys.line_minimizers.push(hash));
    }
    for (start, end) in tokens(bytes) {
        let token = &bytes[start..end];
        if token.len() >= MIN_NEEDLE_BYTES {
            for_each_minimizer(token, |hash| keys.tokens.push(hash));
        } else if start > 0 && end < bytes.len() {
            let value = short_token_value(bytes, start, end);
            if is_decimal_token(token) { keys.decimal_tokens.push(value) } else { keys.tokens.push(value) }
        }
    }
    for values in [&mut keys.line_minimizers, &mut keys.tokens, &mut keys.decimal_tokens] {
        values.sort_unstable();
        values.dedup();
    }
    (!keys.line_minimizers.is_empty() || !keys.tokens.is_empty() || !keys.decimal_tokens.is_empty()).then_some(keys)
}

/// Slots of [`BloomBuilder`]'s cache of recently inserted values (a power of two).
const RECENT_SLOTS: usize = 1024;

/// The distinct values of a filter: an open-addressed table of the values themselves with linear probing,
/// at most three quarters full (a probe run mostly stays within one cache line of 8 slots, and a smaller
/// table misses the cache less). Values are already mixed, so their low bits pick the first slot (not the
/// top bits: minimizers are the smallest hashes of their windows, and their top bits are mostly zero).
/// Zero marks an empty slot; the value zero is held by a flag.
#[derive(Debug)]
struct ValueSet {
    /// A power of two slots, each a value or zero.
    slots: Vec<u64>,
    /// Distinct values held, the zero value included.
    len: usize,
    /// Whether the value zero was inserted.
    holds_zero: bool,
}

impl ValueSet {
    /// A set that grows only past `values` values.
    fn with_capacity(values: usize) -> ValueSet {
        let slot_count = (values.saturating_mul(4) / 3).next_power_of_two().max(64);
        ValueSet { slots: vec![0; slot_count], len: 0, holds_zero: false }
    }

    #[inline(always)]
    fn insert(&mut self, value: u64) {
        if value == 0 {
            self.len += usize::from(!self.holds_zero);
            self.holds_zero = true;
            return;
        }
        let slot_mask = self.slots.len() - 1;
        let mut slot = value as usize & slot_mask;
        while let Some(held) = self.slots.get_mut(slot) {
            if *held == value {
                return;
            }
            if *held == 0 {
                *held = value;
                self.len += 1;
                if self.len * 4 > self.slots.len() * 3 {
                    self.grow();
                }
                return;
            }
            slot = (slot + 1) & slot_mask;
        }
    }

    /// Doubles the slots and inserts the values again.
    #[cold]
    fn grow(&mut self) {
        let mut larger = ValueSet::with_capacity(self.slots.len());
        for value in self.values() {
            larger.insert(value);
        }
        *self = larger;
    }

    /// The values, in no particular order.
    fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().copied().filter(|value| *value != 0).chain(self.holds_zero.then_some(0))
    }
}

/// Collects the distinct values of a chunk's lines ([`FilterScheme::CURRENT`]) while the chunk is sealed;
/// borrows the lines, so a long token seen before is recognised by its bytes.
#[derive(Debug)]
pub struct BloomBuilder<'a> {
    values: ValueSet,
    /// Long tokens whose minimizers are already in `values`.
    long_tokens: HashSet<&'a [u8], foldhash::fast::FixedState>,
    /// Token bounds of the line being added ([`token_bounds`]), kept for the next line.
    bounds: Vec<u32>,
    /// A direct-mapped cache of values inserted lately (slot = low bits of the value): most tokens of a
    /// line were inserted by an earlier line, and this finds them without probing the set. Slot `i` starts
    /// with a value whose low bits are not `i`, so an empty slot never matches.
    recent: Box<[u64; RECENT_SLOTS]>,
    /// The scheme written: [`FilterScheme::CURRENT`] (tests also write [`FilterScheme::Tokens`]).
    scheme: FilterScheme,
}

impl Default for BloomBuilder<'_> {
    fn default() -> Self {
        BloomBuilder {
            values: ValueSet::with_capacity(0),
            long_tokens: HashSet::default(),
            bounds: Vec::new(),
            recent: Box::new(std::array::from_fn(|slot| slot as u64 ^ 1)),
            scheme: FilterScheme::CURRENT,
        }
    }
}

impl<'a> BloomBuilder<'a> {
    /// A builder with room for the values of about `lines` lines (about two distinct values per line on
    /// seed-shaped JSON), so the sets do not grow while the chunk is sealed.
    pub fn with_line_capacity(lines: usize) -> Self {
        BloomBuilder {
            values: ValueSet::with_capacity(lines.saturating_mul(2)),
            long_tokens: HashSet::with_capacity_and_hasher(lines, foldhash::fast::FixedState::default()),
            ..BloomBuilder::default()
        }
    }

    /// Inserts `value` unless it was seen lately or `wanted` (asked only then) says no; either way it is then
    /// seen lately, so a value left out is judged once per stay in the cache, not per occurrence.
    #[inline(always)]
    fn insert_if(values: &mut ValueSet, recent: &mut [u64; RECENT_SLOTS], value: u64, wanted: impl FnOnce() -> bool) {
        let slot = (value as usize) & (RECENT_SLOTS - 1);
        let cached = &mut recent[slot];
        if *cached == value {
            return;
        }
        *cached = value;
        if wanted() {
            values.insert(value);
        }
    }

    /// Adds the values of `line`'s tokens.
    pub fn add_line(&mut self, line: &'a str) {
        let bytes = line.as_bytes();
        let BloomBuilder { values, long_tokens, bounds, recent, scheme } = self;
        let keep_decimals = *scheme != FilterScheme::TokensWithoutDecimals;
        let bound_count = token_bounds(bytes, bounds);
        for pair in bounds.get(..bound_count).unwrap_or_default().chunks_exact(2) {
            let (start, end) = (pair[0] as usize, pair[1] as usize);
            let Some(token) = bytes.get(start..end) else { continue };
            if token.len() < MIN_NEEDLE_BYTES {
                let value = short_token_value(bytes, start, end);
                Self::insert_if(values, recent, value, || keep_decimals || !is_decimal_token(token));
            } else if long_tokens.insert(token) {
                for_each_minimizer(token, |hash| Self::insert_if(values, recent, hash, || true));
            }
        }
    }

    /// The filter's bytes: one byte holding the scheme's flags ([`HASH_V2_FLAG`], [`TOKENS_FLAG`],
    /// [`DECIMALS_LEFT_OUT_FLAG`]) and the probe count, then the bit array (bit `i` is bit `i % 8` of byte
    /// `1 + i / 8`). Sized at 9 bits per distinct value (`BITS_PER_ITEM`), at least 64 bits.
    pub fn finish(&self) -> Vec<u8> {
        filter_of(self.values.values(), self.values.len, self.scheme)
    }
}

/// A filter of `scheme` holding `values` (`count` of them, distinct).
fn filter_of(values: impl Iterator<Item = u64>, count: usize, scheme: FilterScheme) -> Vec<u8> {
    let bit_count = (count * BITS_PER_ITEM).max(64).next_multiple_of(8);
    let mut bytes = vec![0u8; 1 + bit_count / 8];
    bytes[0] = scheme.header_flags() | HASH_COUNT;
    let bits = &mut bytes[1..];
    for value in values {
        for_each_probe_bit(value, HASH_COUNT, bit_count, |bit| {
            if let Some(byte) = bits.get_mut(bit / 8) {
                *byte |= 1 << (bit % 8);
            }
        });
    }
    bytes
}

/// Calls `probe` with the same bits as [`probe_bits`], in the same order, with two divisions per value
/// instead of one per probe: `(first + index * second) % bit_count` is the previous probe plus
/// `second % bit_count`, less `bit_count` when that reaches it.
#[inline(always)]
fn for_each_probe_bit(value: u64, hash_count: u8, bit_count: usize, mut probe: impl FnMut(usize)) {
    debug_assert!(bit_count > 0);
    let modulus = bit_count as u64;
    let mut bit = (value & 0xffff_ffff) % modulus;
    let step = ((value >> 32) | 1) % modulus;
    for _ in 0..hash_count {
        probe(bit as usize);
        bit += step;
        if bit >= modulus {
            bit -= modulus;
        }
    }
}

fn probe_bits(value: u64, hash_count: u8, bit_count: usize) -> impl Iterator<Item = usize> {
    // Kirsch-Mitzenmacher double hashing over the two halves of the 64-bit value.
    let first = value & 0xffff_ffff;
    let second = (value >> 32) | 1;
    (0..u64::from(hash_count))
        .map(move |index| (first.wrapping_add(index.wrapping_mul(second)) % bit_count as u64) as usize)
}

/// True when the filter may contain every key of the needle for its scheme (or is malformed, empty or of
/// the FNV-1a hash, or the needle has no key for its scheme: then nothing is skipped).
pub fn may_contain_all(filter: &[u8], needle: &NeedleKeys) -> bool {
    let Some((&header, bits)) = filter.split_first() else {
        return true;
    };
    let hash_count = header & HASH_COUNT_MASK;
    let Some(scheme) = FilterScheme::of_filter_header(header) else {
        return true;
    };
    if bits.is_empty() || hash_count == 0 {
        return true;
    }
    let bit_count = bits.len() * 8;
    needle
        .of_scheme(scheme)
        .iter()
        .flat_map(|keys| keys.iter())
        .all(|key| probe_bits(*key, hash_count, bit_count).all(|bit| bits[bit / 8] & (1 << (bit % 8)) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::hash::{BuildHasherDefault, Hasher};

    /// Minimizer and token values are already mixed 64-bit values: the set uses them as their own hash.
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

    /// The token bounds as sessions 6 to 13 found them (the oracle of [`token_bounds`]): without a branch per
    /// byte (a branch at every token edge would mispredict several times per line): every byte writes its
    /// offset, and the write is kept only where the byte starts or ends a token.
    fn token_bounds_per_byte(bytes: &[u8], bounds: &mut Vec<u32>) {
        bounds.clear();
        bounds.resize(bytes.len() + 2, 0);
        let mut count = 0usize;
        let mut inside = false;
        for (offset, &byte) in bytes.iter().enumerate() {
            let token_byte = is_token_byte(byte);
            if let Some(slot) = bounds.get_mut(count) {
                *slot = offset as u32;
            }
            count += usize::from(token_byte != inside);
            inside = token_byte;
        }
        if let Some(slot) = bounds.get_mut(count) {
            *slot = bytes.len() as u32;
        }
        count += usize::from(inside);
        bounds.truncate(count);
    }

    /// [`OracleBloomBuilder`] as sessions 6 to 13 wrote it (std sets, [`token_bounds_per_byte`], a division per
    /// probe): the oracle the builder's filters must equal byte for byte.
    #[derive(Debug)]
    struct OracleBloomBuilder<'a> {
        values: HashSet<u64, BuildHasherDefault<PrehashedHasher>>,
        /// Long tokens whose minimizers are already in `values`.
        long_tokens: HashSet<&'a [u8], foldhash::fast::FixedState>,
        /// Token bounds of the line being added ([`token_bounds_per_byte`]), kept for the next line.
        bounds: Vec<u32>,
        /// A direct-mapped cache of values inserted lately (slot = low bits of the value): most tokens of a
        /// line were inserted by an earlier line, and this finds them without probing the set. Slot `i` starts
        /// with a value whose low bits are not `i`, so an empty slot never matches.
        recent: Vec<u64>,
        /// The scheme written: [`FilterScheme::CURRENT`] (tests also write [`FilterScheme::Tokens`]).
        scheme: FilterScheme,
    }

    impl Default for OracleBloomBuilder<'_> {
        fn default() -> Self {
            OracleBloomBuilder {
                values: HashSet::default(),
                long_tokens: HashSet::default(),
                bounds: Vec::new(),
                recent: (0..RECENT_SLOTS as u64).map(|slot| slot ^ 1).collect(),
                scheme: FilterScheme::CURRENT,
            }
        }
    }

    impl<'a> OracleBloomBuilder<'a> {
        #[inline(always)]
        fn insert(values: &mut HashSet<u64, BuildHasherDefault<PrehashedHasher>>, recent: &mut [u64], value: u64) {
            Self::insert_if(values, recent, value, || true);
        }

        /// Inserts `value` unless it was seen lately or `wanted` (asked only then) says no; either way it is then
        /// seen lately, so a value left out is judged once per stay in the cache, not per occurrence.
        #[inline(always)]
        fn insert_if(
            values: &mut HashSet<u64, BuildHasherDefault<PrehashedHasher>>,
            recent: &mut [u64],
            value: u64,
            wanted: impl FnOnce() -> bool,
        ) {
            let slot = (value as usize) & (RECENT_SLOTS - 1);
            if let Some(cached) = recent.get_mut(slot) {
                if *cached == value {
                    return;
                }
                *cached = value;
            }
            if wanted() {
                values.insert(value);
            }
        }

        /// Adds the values of `line`'s tokens.
        fn add_line(&mut self, line: &'a str) {
            let bytes = line.as_bytes();
            let OracleBloomBuilder { values, long_tokens, bounds, recent, scheme } = self;
            let keep_decimals = *scheme != FilterScheme::TokensWithoutDecimals;
            token_bounds_per_byte(bytes, bounds);
            for pair in bounds.chunks_exact(2) {
                let (start, end) = (pair[0] as usize, pair[1] as usize);
                let Some(token) = bytes.get(start..end) else { continue };
                if token.len() < MIN_NEEDLE_BYTES {
                    // The format's definition, not the builder's word loads.
                    let value = short_token_value_by_definition(token);
                    Self::insert_if(values, recent, value, || keep_decimals || !is_decimal_token(token));
                } else if long_tokens.insert(token) {
                    for hash in minimizers_by_definition(token) {
                        Self::insert(values, recent, hash);
                    }
                }
            }
        }

        /// The filter's bytes: one byte holding the scheme's flags ([`HASH_V2_FLAG`], [`TOKENS_FLAG`],
        /// [`DECIMALS_LEFT_OUT_FLAG`]) and the probe count, then the bit array (bit `i` is bit `i % 8` of byte
        /// `1 + i / 8`). Sized at 9 bits per distinct value (`BITS_PER_ITEM`), at least 64 bits.
        fn finish(&self) -> Vec<u8> {
            filter_of_by_probe_bits(self.values.iter().copied(), self.values.len(), self.scheme)
        }
    }

    /// [`filter_of`] with a division per probe ([`probe_bits`]).
    fn filter_of_by_probe_bits(values: impl Iterator<Item = u64>, count: usize, scheme: FilterScheme) -> Vec<u8> {
        let bit_count = (count * BITS_PER_ITEM).max(64).next_multiple_of(8);
        let mut bytes = vec![0u8; 1 + bit_count / 8];
        bytes[0] = scheme.header_flags() | HASH_COUNT;
        for value in values {
            for bit in probe_bits(value, HASH_COUNT, bit_count) {
                bytes[1 + bit / 8] |= 1 << (bit % 8);
            }
        }
        bytes
    }

    /// A splitmix64 sequence: random lines without a dependency, the same on every run.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut mixed = self.0;
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            mixed ^ (mixed >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn pick<'p>(&mut self, choices: &[&'p str]) -> &'p str {
            choices[self.below(choices.len() as u64) as usize]
        }
    }

    /// One random piece of a line: words, hex ids, decimals, long runs, non-ASCII text, punctuation runs,
    /// single bytes of every ASCII class, and some JSON and logfmt shapes.
    fn random_piece(random: &mut SplitMix, out: &mut String) {
        match random.below(12) {
            0 => out.push_str(random.pick(&[
                "level",
                "info",
                "error",
                "request_finished",
                "db_query",
                "GET",
                "/api/events/",
            ])),
            1 => {
                let digits = [4, 8, 12, 16, 21, 32, 40][random.below(7) as usize];
                for _ in 0..digits {
                    out.push(char::from(b"0123456789abcdef"[random.below(16) as usize]));
                }
            }
            2 => out.push_str(&format!(
                "{}.{:0width$}",
                random.below(1000),
                random.below(1_000_000),
                width = random.below(7) as usize
            )),
            3 => out.push_str(random.pick(&["s", "ms", "Z", "µs", "", "-2", ".5", "x9"])),
            4 => {
                let byte =
                    [b'a', b'Z', b'7', b'_', b'-', b'.', b'@', b'+', b'%', b'$', b'~'][random.below(11) as usize];
                out.extend(std::iter::repeat_n(char::from(byte), 1 + random.below(90) as usize));
            }
            5 => {
                out.push_str(random.pick(&["Zahlung", "für", "Überweisung", "日本語のログ", "ошибка", "ñ", "€", "🦀"]))
            }
            6 => {
                let punctuation = b"\"{}[]:,= /\\\t\n'()<>!?#&*;^`|";
                for _ in 0..1 + random.below(6) {
                    out.push(char::from(punctuation[random.below(punctuation.len() as u64) as usize]));
                }
            }
            7 => out.push(char::from(random.below(128) as u8)),
            8 => out.push_str(&format!(
                r#""trace_id": "{:032x}", "#,
                u128::from(random.next()) << 64 | u128::from(random.next())
            )),
            9 => out.push_str(&format!(
                "ts=2026-11-{:02}T07:02:{:02}.{:06}Z ",
                1 + random.below(28),
                random.below(60),
                random.below(1_000_000)
            )),
            10 => out.push(' '),
            _ => out.push_str(&format!("user{}@example.com", random.below(5000))),
        }
    }

    #[test]
    fn filters_equal_the_oracle_builders_on_random_lines() {
        let mut random = SplitMix(0x000b_100f_0a57);
        for round in 0..100 {
            let line_count = [1, 2, 10, 100, 1000][round % 5];
            let lines: Vec<String> = (0..line_count)
                .map(|_| {
                    let mut line = String::new();
                    // Lengths around the 64-byte blocks of `token_bounds` and far past them.
                    let most_pieces = [3, 8, 40][random.below(3) as usize];
                    let pieces = random.below(most_pieces);
                    for _ in 0..pieces {
                        random_piece(&mut random, &mut line);
                    }
                    line
                })
                .collect();
            for scheme in [FilterScheme::Tokens, FilterScheme::TokensWithoutDecimals] {
                let mut builder = BloomBuilder { scheme, ..BloomBuilder::with_line_capacity(line_count / 4) };
                let mut oracle = OracleBloomBuilder { scheme, ..OracleBloomBuilder::default() };
                for line in &lines {
                    builder.add_line(line);
                    oracle.add_line(line);
                }
                assert_eq!(builder.finish(), oracle.finish(), "round {round}, {scheme:?}, lines {lines:?}");
            }
        }
    }

    #[test]
    fn token_bytes_by_ranges_are_the_table() {
        for byte in 0..=255u8 {
            assert_eq!(is_token_byte_by_ranges(byte), is_token_byte(byte), "{byte:#04x}");
        }
    }

    #[test]
    fn token_bounds_equal_the_per_byte_oracle_at_every_length_and_offset() {
        let mut random = SplitMix(7);
        let (mut bounds, mut expected) = (Vec::new(), Vec::new());
        for length in 0..300 {
            for _ in 0..20 {
                // Bytes of every class, token runs of every length, across block edges.
                let text: Vec<u8> = (0..length)
                    .map(|_| match random.below(4) {
                        0 => random.below(256) as u8,
                        1 => b' ',
                        _ => b'k',
                    })
                    .collect();
                let count = token_bounds(&text, &mut bounds);
                token_bounds_per_byte(&text, &mut expected);
                assert_eq!(bounds[..count], expected, "{text:?}");
            }
        }
    }

    #[test]
    fn value_sets_hold_each_value_once_through_growth() {
        let mut set = ValueSet::with_capacity(0);
        let mut random = SplitMix(3);
        let mut expected = HashSet::new();
        for _ in 0..5000 {
            // Few distinct values, zero among them, and values sharing their low bits.
            let value = match random.below(3) {
                0 => 0,
                1 => random.below(700) << 54 | 5,
                _ => random.below(2000),
            };
            set.insert(value);
            expected.insert(value);
            assert_eq!(set.len, expected.len());
        }
        let mut held: Vec<u64> = set.values().collect();
        held.sort_unstable();
        let mut wanted: Vec<u64> = expected.into_iter().collect();
        wanted.sort_unstable();
        assert_eq!(held, wanted);
    }

    #[test]
    fn probe_bits_by_steps_are_the_probe_bits() {
        let mut random = SplitMix(11);
        for _ in 0..10_000 {
            let value = random.next();
            let bit_count = [64, 72, 1000, 97_864, 1 << 31, (1 << 32) - 8][random.below(6) as usize];
            let mut stepped = Vec::new();
            for_each_probe_bit(value, HASH_COUNT, bit_count, |bit| stepped.push(bit));
            assert_eq!(stepped, probe_bits(value, HASH_COUNT, bit_count).collect::<Vec<_>>());
        }
    }

    /// Lines of the shapes the store takes: structlog JSON, JSON inside a JSON string, logfmt, prose with
    /// non-ASCII words, a long run without delimiters, and lines shorter than one window.
    const LINES: [&str; 8] = [
        r#"{"event": "request_finished", "trace_id": "95a3c3b70468058d1315f7725d8ef0b9", "path": "/healthz/", "timestamp": "2026-11-23T07:02:14.120443Z"}"#,
        r#"{"msg": "{\"user_id\": \"4821\", \"email\": \"ann@example.com\"}", "level": "info"}"#,
        "level=error msg=\"connection refused\" host=db-7.internal:5432 attempt=3 request_id=0a1b2c3d-4e5f6a7b8c9d",
        "Zahlung für Bestellung 8812 abgelehnt: Kartenprüfung fehlgeschlagen (Überweisung möglich)",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
        "GET /",
        "x",
        "ts=2026-11-23T07:02:14.120443Z took=0.25s rows=12.5ms 1.2.3 .5 5. v1.5 1.5-2 10.0.3.123",
    ];

    /// A builder writing filters of `scheme` (filters of [`FilterScheme::Tokens`] are what sessions 6 to 12
    /// wrote).
    fn builder_of<'a>(scheme: FilterScheme) -> BloomBuilder<'a> {
        BloomBuilder { scheme, ..BloomBuilder::default() }
    }

    #[test]
    fn a_needle_inside_a_line_is_always_found() {
        for (line, scheme) in LINES
            .iter()
            .flat_map(|line| [FilterScheme::Tokens, FilterScheme::TokensWithoutDecimals].map(|scheme| (*line, scheme)))
        {
            let mut builder = builder_of(scheme);
            builder.add_line(line);
            let filter = builder.finish();
            let boundaries: Vec<usize> = (0..=line.len()).filter(|index| line.is_char_boundary(*index)).collect();
            for (position, start) in boundaries.iter().enumerate() {
                for end in &boundaries[position + 1..] {
                    let needle = &line[*start..*end];
                    if let Some(keys) = needle_keys(needle) {
                        assert!(may_contain_all(&filter, &keys), "needle {needle:?} of {line:?}");
                    }
                }
            }
        }
    }

    /// The value of a short token as `docs/format.md` defines it: filters already written hold these values.
    fn short_token_value_by_definition(token: &[u8]) -> u64 {
        let word = |part: &[u8]| part.iter().rev().fold(0u64, |word, byte| (word << 8) | u64::from(*byte));
        let split = token.len().min(8);
        murmur3_finalise(murmur3_finalise(word(&token[..split]) ^ 0x6a09_e667_f3bc_c908) ^ word(&token[split..]))
    }

    #[test]
    fn short_token_values_follow_the_format_wherever_the_token_sits() {
        let text = b"a bc defghijk lmnopqrstuvwxyz0";
        for start in 0..text.len() {
            for end in start + 1..=text.len().min(start + MIN_NEEDLE_BYTES - 1) {
                let token = &text[start..end];
                let expected = short_token_value_by_definition(token);
                assert_eq!(short_token_value(text, start, end), expected, "{token:?} in the text");
                assert_eq!(short_token_value(token, 0, token.len()), expected, "{token:?} alone");
            }
        }
    }

    #[test]
    fn token_bounds_are_the_tokens() {
        let mut bounds = Vec::new();
        for line in LINES.iter().copied().chain(["", " ", "a", " a", "a ", "{}", "ab cd"]) {
            let count = token_bounds(line.as_bytes(), &mut bounds);
            bounds.truncate(count);
            let expected: Vec<u32> =
                tokens(line.as_bytes()).flat_map(|(start, end)| [start as u32, end as u32]).collect();
            assert_eq!(bounds, expected, "{line:?}");
        }
    }

    #[test]
    fn needles_of_short_words_skip_when_a_word_is_whole() {
        // Whole words inside the needle give keys; a single word cut by the needle's ends gives none.
        assert!(needle_keys("refused").is_none());
        assert!(needle_keys(r#""level": "error""#).is_some());
        let token_keys = |needle: &str| needle_keys(needle).map_or(0, |keys| keys.tokens.len());
        assert_eq!(token_keys("connection refused"), 0);
        assert_eq!(token_keys("connection refused by"), 1);
        assert!(token_keys("95a3c3b70468058d1315f7725d8ef0b9") >= 3);
        let mut builder = BloomBuilder::default();
        builder.add_line(LINES[0]);
        builder.add_line(LINES[2]);
        let filter = builder.finish();
        assert!(may_contain_all(&filter, &needle_keys(r#""event": "request_finished""#).unwrap()));
        assert!(!may_contain_all(&filter, &needle_keys(r#""event": "request_started""#).unwrap()));
        assert!(!may_contain_all(&filter, &needle_keys(r#" attempt=4 "#).unwrap()));
    }

    #[test]
    fn absent_needles_are_mostly_skipped() {
        let lines: Vec<String> = (0..2000u64)
            .map(|index| {
                format!(
                    r#"{{"event": "request_finished", "trace_id": "{:032x}", "request_id": "{:016x}"}}"#,
                    u128::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834),
                    index * 7919
                )
            })
            .collect();
        let mut builder = BloomBuilder::default();
        for line in &lines {
            builder.add_line(line);
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
    fn minimizers_match_the_definition_at_every_length() {
        let mut random = SplitMix(5);
        for length in 0..200 {
            for alphabet in [2, 16, 256] {
                let text: Vec<u8> = (0..length).map(|_| random.below(alphabet) as u8).collect();
                let mut emitted = Vec::new();
                for_each_minimizer(&text, |hash| emitted.push(hash));
                assert_eq!(emitted, minimizers_by_definition(&text), "{text:?}");
            }
        }
    }

    #[test]
    fn filters_of_whole_line_minimizers_still_skip_and_never_miss() {
        // A filter as sessions 2 to 5 wrote it: the minimizers of whole lines, HASH_V2_FLAG alone.
        let lines: Vec<String> = (0..500u128)
            .map(|index| {
                format!(
                    r#"{{"event": "db_query", "trace_id": "{:032x}"}}"#,
                    index.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
                )
            })
            .collect();
        let mut values = HashSet::new();
        for line in &lines {
            for_each_minimizer(line.as_bytes(), |hash| {
                values.insert(hash);
            });
        }
        let filter = filter_of(values.iter().copied(), values.len(), FilterScheme::LineMinimizers);
        assert_eq!(filter[0], HASH_V2_FLAG | HASH_COUNT);
        for line in &lines {
            // The needle spans the id and the bytes around it.
            assert!(may_contain_all(&filter, &needle_keys(&line[25..68]).unwrap()), "{line}");
        }
        let absent_passed = (0..200u128)
            .filter(|probe| {
                let needle = format!("{:032x}", probe.wrapping_mul(0x2545_f491_4f6c_dd1d_1234_5678_9abc_def1) + 3);
                may_contain_all(&filter, &needle_keys(&needle).unwrap())
            })
            .count();
        assert!(absent_passed < 10, "{absent_passed} of 200 absent needles passed");
    }

    #[test]
    fn short_needles_and_malformed_filters_never_skip() {
        assert!(needle_keys("short").is_none());
        let keys = NeedleKeys { line_minimizers: vec![1, 2], tokens: vec![1, 2], decimal_tokens: vec![3] };
        assert!(may_contain_all(&[], &keys));
        assert!(may_contain_all(&[HASH_V2_FLAG | TOKENS_FLAG | 7], &keys));
        // A filter of the FNV-1a hash (no flag) never skips, whatever its bits.
        assert!(may_contain_all(&[7, 0, 0, 0, 0, 0, 0, 0, 0], &keys));
        // A needle without keys for the filter's scheme never skips it.
        let tokens_only = NeedleKeys { line_minimizers: vec![], tokens: vec![1, 2], decimal_tokens: vec![] };
        assert!(may_contain_all(&[HASH_V2_FLAG | 7, 0, 0, 0, 0, 0, 0, 0, 0], &tokens_only));
    }

    #[test]
    fn decimal_tokens_are_digits_a_point_digits_and_letters() {
        for decimal in ["24.123456Z", "0.25s", "123.4", "12.5ms", "1.0", "00.00"] {
            assert!(is_decimal_token(decimal.as_bytes()), "{decimal}");
        }
        for other in ["1.2.3", ".5", "5.", "v1.5", "1.5-2", "10.0.3.123", "12", "1.5Z9", "abc", "", ".", "1.é"] {
            assert!(!is_decimal_token(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn decimals_are_left_out_and_still_found_in_older_filters() {
        let lines: Vec<String> = (0..400)
            .map(|index| {
                format!(
                    r#"{{"event": "request_finished", "took": "{}.{:06}s", "n": {index}}}"#,
                    index % 60,
                    index * 7919 % 1_000_000
                )
            })
            .collect();
        let build = |scheme: FilterScheme| {
            let mut builder = builder_of(scheme);
            for line in &lines {
                builder.add_line(line);
            }
            builder.finish()
        };
        let (older, current) = (build(FilterScheme::Tokens), build(FilterScheme::TokensWithoutDecimals));
        assert_eq!(older[0], HASH_V2_FLAG | TOKENS_FLAG | HASH_COUNT);
        assert_eq!(current[0], TOKENS_FLAG | DECIMALS_LEFT_OUT_FLAG | HASH_COUNT);
        // A reader before this scheme took every filter without HASH_V2_FLAG for an FNV-1a one, never skipped.
        assert_eq!(current[0] & HASH_V2_FLAG, 0);
        assert_eq!(FilterScheme::of_filter_header(older[0]), Some(FilterScheme::Tokens));
        assert_eq!(FilterScheme::of_filter_header(current[0]), Some(FilterScheme::TokensWithoutDecimals));
        // 400 distinct `took` values fewer than about 405 others: the filter is about half the size.
        assert!(current.len() * 10 < older.len() * 6, "{} vs {} bytes", current.len(), older.len());
        let took = |index: usize| format!("{}.{:06}s", index % 60, index * 7919 % 1_000_000);
        let present = needle_keys(&format!(r#""took": "{}""#, took(123))).unwrap();
        let absent = needle_keys(&format!(r#""took": "{}""#, took(401))).unwrap();
        let absent_word = needle_keys(&format!(r#""took": "{}", "m""#, took(123))).unwrap();
        assert!(may_contain_all(&older, &present) && may_contain_all(&current, &present));
        // The older filter holds the decimals and skips the absent one; the current one cannot tell.
        assert!(!may_contain_all(&older, &absent));
        assert!(may_contain_all(&current, &absent));
        assert!(!may_contain_all(&current, &absent_word));
    }
}

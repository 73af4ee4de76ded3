//! The head's series cache for remote_write: series found by the raw bytes of a `TimeSeries`' protobuf
//! `labels` fields, so that a request for known series needs no label decoding, UTF-8 check or label
//! hash at all.
//!
//! The key is the exact run of `labels` fields (field 1, `prometheus.Label` messages) a sender wrote at the
//! start of a remote_write 1.0 `TimeSeries`. The cache maps a hash of those bytes to a series; a hit is
//! verified by comparing the bytes label by label with the series' stored labels, so a hash collision or a
//! stale entry is a miss, never a wrong series. VictoriaMetrics keys its TSID cache by the marshalled
//! metric name in the same spirit (`lib/storage/storage.go`, `tsidCache`).
//!
//! Only canonical keys verify: every label as `name` then `value`, lengths below 128 bytes, labels sorted
//! by name, no empty value (protobuf omits an empty string, which the decoder drops). Senders write that
//! (Prometheus sorts labels and drops empty ones before sending); anything else is a miss and takes the
//! decoding path, whose validation is then unchanged.
//!
//! Invalidation: a series removed by head garbage collection is marked removed first
//! ([`MemSeries::try_mark_removed`]); a hit on a removed series is a miss, and [`SeriesCache::purge_removed`]
//! drops those entries after each truncation.

use std::hash::Hasher;
use std::sync::{RwLock, RwLockReadGuard};

use crate::db::{read, write};
use crate::head::{MemSeries, MixHasher};
use crate::head_refs::SeriesRefs;
use crate::symbols;

const STRIPES: usize = 64;
/// Slots per bucket: eight 8-byte slots fill one 64-byte cache line.
const SLOTS_PER_BUCKET: usize = 8;
/// Buckets of a stripe's first table.
const INITIAL_BUCKETS: usize = 2;

/// One entry: the raw bytes' tag (their hash's high half, see [`tag_of`]) and the series' reference,
/// resolved through the head's by-reference slots (0: empty; references start at 1). Eight bytes instead
/// of a hash and a pointer: at 1M series the cache is about 10 bytes a series instead of 20.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    tag: u32,
    series_ref: u32,
}

/// Eight slots in one cache line, so that a lookup reads one line of the table (hashbrown reads a control
/// group and then the bucket, two lines).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket {
    slots: [Slot; SLOTS_PER_BUCKET],
}

/// An open-addressing table of one stripe: a tag picks a bucket; a full bucket continues in the next
/// one (linear probing, wrapping at the end). At most one slot per tag (an insert replaces: two keys
/// whose 32-bit tags collide in one stripe take turns, each a miss for the other), and slots are only
/// emptied by rebuilding the table, so an empty slot ends a probe.
///
/// The table grows by half, not by doubling: the bucket is the tag scaled to the bucket count (multiply
/// and shift), which needs no power of two. A doubled table is on average about two thirds full, one
/// grown by half about four fifths (every entry of an active series costs its share of a bucket).
#[derive(Debug, Default)]
struct Table {
    buckets: Vec<Bucket>,
    len: usize,
}

/// The bucket count a table grows to from `buckets`.
fn grown_buckets(buckets: usize) -> usize {
    (buckets + buckets / 2).max(INITIAL_BUCKETS)
}

/// The tag a hash is stored under: its bits 32 and up (the stripe takes their low bits, the bucket their
/// high bits).
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl Table {
    /// The bucket `tag` starts in (`buckets` must not be 0): the tag scaled to the bucket count.
    #[inline]
    fn home_bucket(tag: u32, buckets: usize) -> usize {
        ((u64::from(tag) * buckets as u64) >> 32) as usize
    }

    /// The bucket after `index`, wrapping at the end.
    #[inline]
    fn next_bucket(index: usize, buckets: usize) -> usize {
        if index + 1 == buckets { 0 } else { index + 1 }
    }

    /// The first tag of the bucket `tag` starts in (0 for an empty table): a load that brings the bucket
    /// into the CPU cache for [`Table::find`].
    #[inline]
    fn bucket_tag(&self, tag: u32) -> u32 {
        let buckets = self.buckets.len();
        if buckets == 0 {
            return 0;
        }
        self.buckets.get(Self::home_bucket(tag, buckets)).map_or(0, |bucket| bucket.slots[0].tag)
    }

    /// The reference stored under `tag`, unverified.
    #[inline]
    fn find(&self, tag: u32) -> Option<u32> {
        let buckets = self.buckets.len();
        if buckets == 0 {
            return None;
        }
        let mut index = Self::home_bucket(tag, buckets);
        loop {
            for slot in &self.buckets[index].slots {
                if slot.series_ref == 0 {
                    return None;
                }
                if slot.tag == tag {
                    return Some(slot.series_ref);
                }
            }
            index = Self::next_bucket(index, buckets);
        }
    }

    /// Stores `series_ref` (not 0) under `tag`.
    fn insert(&mut self, tag: u32, series_ref: u32) {
        // Grow at seven eighths full, so that probes stay short and always meet an empty slot.
        if (self.len + 1) * 8 > self.buckets.len() * SLOTS_PER_BUCKET * 7 {
            self.rebuild(grown_buckets(self.buckets.len()), |_| true);
        }
        self.insert_unchecked(tag, series_ref);
    }

    /// Inserts with room known to be left.
    fn insert_unchecked(&mut self, tag: u32, series_ref: u32) {
        debug_assert_ne!(series_ref, 0, "reference 0 marks an empty slot");
        let buckets = self.buckets.len();
        let mut index = Self::home_bucket(tag, buckets);
        loop {
            for slot in &mut self.buckets[index].slots {
                if slot.series_ref == 0 {
                    *slot = Slot { tag, series_ref };
                    self.len += 1;
                    return;
                }
                if slot.tag == tag {
                    slot.series_ref = series_ref;
                    return;
                }
            }
            index = Self::next_bucket(index, buckets);
        }
    }

    /// Moves the entries `keep` accepts into a new table of `buckets` buckets (with room for them all).
    fn rebuild(&mut self, buckets: usize, keep: impl Fn(u32) -> bool) {
        let old = std::mem::replace(&mut self.buckets, (0..buckets).map(|_| Bucket::default()).collect());
        self.len = 0;
        for slot in old.iter().flat_map(|bucket| bucket.slots) {
            if slot.series_ref != 0 && keep(slot.series_ref) {
                self.insert_unchecked(slot.tag, slot.series_ref);
            }
        }
    }
}

/// Raw protobuf label bytes → series, striped by hash.
#[derive(Debug)]
pub(crate) struct SeriesCache {
    stripes: Box<[RwLock<Table>]>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache { stripes: (0..STRIPES).map(|_| RwLock::new(Table::default())).collect() }
    }
}

/// The stripe of a tag: its low bits (the bucket takes the high bits).
fn stripe_index(tag: u32) -> usize {
    tag as usize % STRIPES
}

impl SeriesCache {
    /// For each of `keys` (the `labels` bytes of one series each), the live series they encode (found in
    /// `refs`, the head's series by reference), marked as held by one more appender (the caller releases
    /// it as any held series), or `None` when the bytes are empty or not cached, the entry does not
    /// verify, or the series was removed. Pushes one entry per key onto `found`, in order.
    ///
    /// The keys are looked up in passes over the whole batch, each pass short and only loading memory, so
    /// that the cache misses of different series overlap instead of following each other: the hashes, the
    /// buckets, the references' slots, then the series and their labels, and last verification and the
    /// holds (atomic read-modify-writes, which wait for every earlier load).
    pub(crate) fn hold_all(&self, refs: &SeriesRefs, keys: &[&[u8]], found: &mut Vec<Option<MemSeries>>) {
        let stripes: Vec<RwLockReadGuard<'_, Table>> = self.stripes.iter().map(read).collect();
        let tags: Vec<u32> = keys.iter().map(|key| tag_of(raw_labels_hash(key))).collect();
        // Loads only, no branch on what they read: the buckets of all keys are fetched side by side.
        let mut touched = 0u64;
        for &tag in &tags {
            touched ^= u64::from(stripes[stripe_index(tag)].bucket_tag(tag));
        }
        let cached_refs: Vec<Option<u32>> = keys
            .iter()
            .zip(&tags)
            .map(|(key, &tag)| if key.is_empty() { None } else { stripes[stripe_index(tag)].find(tag) })
            .collect();
        drop(stripes);
        let refs = refs.read_all();
        let candidates: Vec<Option<&MemSeries>> =
            cached_refs.iter().map(|series_ref| series_ref.and_then(|series_ref| refs.get(series_ref))).collect();
        for series in candidates.iter().flatten() {
            touched ^= series.touch_for_cache_hit();
        }
        std::hint::black_box(touched);
        found.extend(keys.iter().zip(candidates).map(|(key, candidate)| {
            let series = candidate?;
            if !protobuf_labels_equal(key, series.label_symbols()) || !series.try_hold() {
                return None;
            }
            Some(series.clone())
        }));
    }

    /// Caches `series` under `protobuf_labels` when the bytes encode exactly its labels (a non-canonical
    /// encoding would never verify, so it is not stored). The caller holds the series, so garbage
    /// collection cannot have removed it.
    pub(crate) fn insert(&self, protobuf_labels: &[u8], series: &MemSeries) {
        if series.series_ref == 0 || !protobuf_labels_equal(protobuf_labels, series.label_symbols()) {
            return;
        }
        let tag = tag_of(raw_labels_hash(protobuf_labels));
        write(&self.stripes[stripe_index(tag)]).insert(tag, series.series_ref);
    }

    /// Drops the entries of series no longer in `refs` or marked removed (each stripe's table is rebuilt
    /// at the size its remaining entries need).
    pub(crate) fn purge_removed(&self, refs: &SeriesRefs) {
        let live = |series_ref: u32| refs.get(series_ref).is_some_and(|series| !series.is_removed());
        for stripe in self.stripes.iter() {
            let mut table = write(stripe);
            let live_entries = table
                .buckets
                .iter()
                .flat_map(|bucket| &bucket.slots)
                .filter(|slot| slot.series_ref != 0 && live(slot.series_ref))
                .count();
            let mut buckets = INITIAL_BUCKETS;
            while live_entries * 8 > buckets * SLOTS_PER_BUCKET * 7 {
                buckets = grown_buckets(buckets);
            }
            table.rebuild(buckets, live);
        }
    }

    /// Heap bytes of the tables (64 bytes per bucket of eight entries).
    pub(crate) fn approximate_bytes(&self) -> u64 {
        self.stripes.iter().map(|stripe| (read(stripe).buckets.capacity() * size_of::<Bucket>()) as u64).sum()
    }

    /// Cached entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.stripes.iter().map(|stripe| read(stripe).len).sum()
    }

    /// [`SeriesCache::hold_all`] for one key.
    #[cfg(test)]
    pub(crate) fn hold(&self, refs: &SeriesRefs, protobuf_labels: &[u8]) -> Option<MemSeries> {
        let mut found = Vec::with_capacity(1);
        self.hold_all(refs, &[protobuf_labels], &mut found);
        found.pop().flatten()
    }
}

/// A hash of the raw bytes: [`MixHasher`]'s eight-bytes-at-a-time mix, then its high bits folded down (the
/// stripe takes bits 32 and up). In memory only, never persisted.
fn raw_labels_hash(bytes: &[u8]) -> u64 {
    let mut hasher = MixHasher::default();
    hasher.write(bytes);
    let hash = hasher.finish();
    hash ^ (hash >> 29)
}

/// Whether `protobuf_labels` (consecutive `labels` fields of a remote_write 1.0 `TimeSeries`) encode
/// exactly the labels in `label_symbols` (a series' symbol references, [`crate::symbols::encode_symbols`]),
/// in the same order. Only the one-byte-length form is compared; anything else is `false`.
///
/// With every length below 128, a label's protobuf field is `0x0a (n+v+4) 0x0a n name 0x12 v value`:
/// two length checks and two slice comparisons against the symbols' text per label.
pub(crate) fn protobuf_labels_equal(mut protobuf_labels: &[u8], label_symbols: &[u8]) -> bool {
    let (count, mut stored) = symbols::decode_symbols(label_symbols);
    for _ in 0..count {
        let Some((name, value)) = stored.next() else { return false };
        let [0x0a, field_length, 0x0a, name_length, after_name_length @ ..] = protobuf_labels else { return false };
        let (field_length, name_length) = (usize::from(*field_length), usize::from(*name_length));
        if field_length >= 0x80 || name_length >= 0x80 || name_length != name.len() {
            return false;
        }
        let Some((protobuf_name, after_name)) = after_name_length.split_at_checked(name_length) else { return false };
        if !short_bytes_equal(protobuf_name, name.as_bytes()) {
            return false;
        }
        let [0x12, value_length, after_value_length @ ..] = after_name else { return false };
        let value_length = usize::from(*value_length);
        if value_length >= 0x80
            || value_length == 0
            || value_length != value.len()
            || field_length != name_length + value_length + 4
        {
            return false;
        }
        let Some((protobuf_value, after_field)) = after_value_length.split_at_checked(value_length) else {
            return false;
        };
        if !short_bytes_equal(protobuf_value, value.as_bytes()) {
            return false;
        }
        protobuf_labels = after_field;
    }
    protobuf_labels.is_empty()
}

/// Slice equality for the short strings labels are, eight bytes at a time and inline (the library
/// comparison calls `memcmp` per string). A tail of one to seven bytes is compared as the last eight
/// bytes when the string has them (overlapping the previous word), else byte by byte.
#[inline]
fn short_bytes_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let (mut left_rest, mut right_rest) = (left, right);
    while let (Some((left_word, left_after)), Some((right_word, right_after))) =
        (left_rest.split_first_chunk::<8>(), right_rest.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*left_word) != u64::from_ne_bytes(*right_word) {
            return false;
        }
        (left_rest, right_rest) = (left_after, right_after);
    }
    if left_rest.is_empty() {
        return true;
    }
    match (left.last_chunk::<8>(), right.last_chunk::<8>()) {
        (Some(left_word), Some(right_word)) => u64::from_ne_bytes(*left_word) == u64::from_ne_bytes(*right_word),
        _ => left_rest.iter().zip(right_rest).all(|(left_byte, right_byte)| left_byte == right_byte),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_model::Labels;

    fn protobuf(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (name, value) in pairs {
            let mut label = vec![0x0a, name.len() as u8];
            label.extend_from_slice(name.as_bytes());
            if !value.is_empty() {
                label.extend_from_slice(&[0x12, value.len() as u8]);
                label.extend_from_slice(value.as_bytes());
            }
            bytes.extend_from_slice(&[0x0a, label.len() as u8]);
            bytes.extend_from_slice(&label);
        }
        bytes
    }

    fn encoded(pairs: &[(&str, &str)]) -> Box<[u8]> {
        symbols::encode_labels_symbols(&Labels::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn canonical_protobuf_labels_match_their_series_only() {
        let pairs = [("__name__", "http_requests_total"), ("instance", "host-12:9100"), ("job", "api")];
        assert!(protobuf_labels_equal(&protobuf(&pairs), &encoded(&pairs)));
        let other_value = [("__name__", "http_requests_total"), ("instance", "host-13:9100"), ("job", "api")];
        assert!(!protobuf_labels_equal(&protobuf(&other_value), &encoded(&pairs)));
        assert!(!protobuf_labels_equal(&protobuf(&pairs[..2]), &encoded(&pairs)));
        assert!(!protobuf_labels_equal(&protobuf(&pairs), &encoded(&pairs[..2])));
        assert!(!protobuf_labels_equal(&[], &encoded(&pairs)));
    }

    #[test]
    fn non_canonical_encodings_never_match() {
        let pairs = [("__name__", "up"), ("job", "api")];
        // Unsorted: the decoder would sort them, but the cache only takes the sorted form.
        assert!(!protobuf_labels_equal(&protobuf(&[("job", "api"), ("__name__", "up")]), &encoded(&pairs)));
        // An empty value, which the decoder drops.
        assert!(!protobuf_labels_equal(
            &protobuf(&[("__name__", "up"), ("empty", ""), ("job", "api")]),
            &encoded(&pairs)
        ));
        // Value before name.
        let swapped = [0x0a, 8, 0x12, 2, b'u', b'p', 0x0a, 2, b'x', b'y'];
        assert!(!protobuf_labels_equal(&swapped, &encoded(&[("xy", "up")])));
        // A long value (two-byte length) is not compared.
        let long = "v".repeat(200);
        assert!(!protobuf_labels_equal(&protobuf(&[("__name__", "up")]), &encoded(&[("__name__", &long)])));
    }

    #[test]
    fn garbage_collection_invalidates_entries_but_keeps_held_series() {
        let head = crate::head::Head::new(1000);
        let gone = Labels::from_pairs([("__name__", "gone"), ("job", "api")]);
        let kept = Labels::from_pairs([("__name__", "kept"), ("job", "api")]);
        let gone_bytes = protobuf(&[("__name__", "gone"), ("job", "api")]);
        let kept_bytes = protobuf(&[("__name__", "kept"), ("job", "api")]);
        let (gone_series, _) = head.get_or_create(&gone, None, false).unwrap();
        let (kept_series, _) = head.get_or_create(&kept, None, false).unwrap();
        gone_series.lock().append(10, 1.0, 1000);
        kept_series.lock().append(10, 1.0, 1000);
        head.series_cache.insert(&gone_bytes, &gone_series);
        head.series_cache.insert(&kept_bytes, &kept_series);
        assert_eq!(head.series_cache.len(), 2);
        assert!(head.series_cache.approximate_bytes() >= 2 * 17, "{}", head.series_cache.approximate_bytes());
        // An appender holds `kept` through the cache while the head is truncated past both series.
        let held = head.series_cache.hold(&head.by_ref, &kept_bytes).expect("cached");
        head.observe_time_range(10, 10);
        assert_eq!(head.truncate(5000), 1);
        assert!(head.series_cache.hold(&head.by_ref, &gone_bytes).is_none(), "removed series must not be found");
        assert_eq!(head.series_cache.len(), 1);
        assert!(head.get_by_ref(held.series_ref).is_some());
        held.release();
        // Still cached while it lives; once no appender holds it, the next truncation removes it.
        let again = head.series_cache.hold(&head.by_ref, &kept_bytes).expect("still cached");
        again.release();
        assert_eq!(head.truncate(6000), 1);
        assert!(head.series_cache.hold(&head.by_ref, &kept_bytes).is_none());
        assert_eq!(head.series_cache.len(), 0);
    }

    #[test]
    fn full_buckets_continue_in_the_next_and_tables_grow() {
        let mut table = Table::default();
        // Small tags all start in bucket 0, so most entries overflow into later buckets.
        let colliding = |index: u32| index + 1;
        let reference = |index: u32| index + 1000;
        for index in 0..200 {
            table.insert(colliding(index), reference(index));
        }
        assert_eq!(table.len, 200);
        assert!(table.buckets.len() * SLOTS_PER_BUCKET * 7 >= 200 * 8, "{}", table.buckets.len());
        for index in 0..200 {
            assert_eq!(table.find(colliding(index)), Some(reference(index)), "entry {index}");
        }
        assert!(table.find(colliding(500)).is_none());
        // An insert under a stored tag replaces its entry.
        table.insert(colliding(3), reference(7));
        assert_eq!(table.len, 200);
        assert_eq!(table.find(colliding(3)), Some(reference(7)));
        // Rebuilding keeps what it is told to keep, still findable.
        table.rebuild(INITIAL_BUCKETS, |series_ref| series_ref == reference(150));
        assert_eq!(table.len, 1);
        assert_eq!(table.find(colliding(150)), Some(reference(150)));
        assert!(table.find(colliding(149)).is_none());
        // Tags that start in the last bucket wrap around to the first.
        let mut table = Table::default();
        let last_bucket = |index: u32| u32::MAX - index;
        for index in 0..200 {
            table.insert(last_bucket(index), reference(index));
        }
        assert_eq!(table.len, 200);
        for index in 0..200 {
            assert_eq!(table.find(last_bucket(index)), Some(reference(index)), "entry {index}");
        }
    }

    #[test]
    fn tables_grow_by_half_and_stay_more_than_half_full() {
        let mut buckets = 0;
        let mut sizes = Vec::new();
        while buckets < 100_000 {
            buckets = grown_buckets(buckets);
            sizes.push(buckets);
        }
        for pair in sizes.windows(2) {
            // Right after growing at seven eighths full, a table is at least seven twelfths full.
            assert!(pair[1] * 2 <= pair[0] * 3 && pair[1] > pair[0], "{pair:?}");
        }
    }

    #[test]
    fn a_batch_finds_each_cached_key_in_order() {
        let head = crate::head::Head::new(1000);
        let pairs: Vec<[(String, String); 2]> = (0..3000)
            .map(|index| [("__name__".to_owned(), "up".to_owned()), ("instance".to_owned(), format!("host-{index}"))])
            .collect();
        let keys: Vec<Vec<u8>> = pairs
            .iter()
            .map(|pair| protobuf(&pair.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect::<Vec<_>>()))
            .collect();
        let mut created = Vec::new();
        for (pair, key) in pairs.iter().zip(&keys).step_by(2) {
            let labels = Labels::from_pairs(pair.iter().map(|(name, value)| (name.as_str(), value.as_str())));
            let (series, _) = head.get_or_create(&labels, None, false).unwrap();
            head.series_cache.insert(key, &series);
            created.push(series);
        }
        assert_eq!(head.series_cache.len(), 1500);
        let mut batch: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        batch.push(&[]);
        let mut found = Vec::new();
        head.series_cache.hold_all(&head.by_ref, &batch, &mut found);
        assert_eq!(found.len(), 3001);
        for (index, entry) in found.iter().enumerate() {
            match entry {
                Some(series) => {
                    assert_eq!(index % 2, 0, "{index}");
                    assert!(series.ptr_eq(&created[index / 2]));
                    series.release();
                }
                None => assert!(index % 2 == 1 || index == 3000, "{index} not found"),
            }
        }
    }

    #[test]
    fn short_comparison_agrees_with_slices() {
        let texts = ["", "a", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnoq"];
        for left in texts {
            for right in texts {
                assert_eq!(short_bytes_equal(left.as_bytes(), right.as_bytes()), left == right, "{left} {right}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn verification_is_exact(
            left in proptest::collection::btree_map("[a-z_]{1,12}", "[a-z0-9:.-]{1,20}", 1..8),
            right in proptest::collection::btree_map("[a-z_]{1,12}", "[a-z0-9:.-]{1,20}", 1..8),
        ) {
            let left: Vec<(&str, &str)> = left.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
            let right: Vec<(&str, &str)> = right.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
            proptest::prop_assert!(protobuf_labels_equal(&protobuf(&left), &encoded(&left)));
            proptest::prop_assert_eq!(protobuf_labels_equal(&protobuf(&left), &encoded(&right)), left == right);
        }
    }
}

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

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, RwLock};

use crate::db::{read, write};
use crate::head::{MemSeries, MixBuildHasher, MixHasher};

const STRIPES: usize = 64;

/// One stripe: hash of the raw bytes → series.
type CacheStripe = RwLock<HashMap<u64, Arc<MemSeries>, MixBuildHasher>>;

/// Raw protobuf label bytes → series, striped by hash.
#[derive(Debug)]
pub(crate) struct SeriesCache {
    stripes: Box<[CacheStripe]>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache { stripes: (0..STRIPES).map(|_| RwLock::new(HashMap::default())).collect() }
    }
}

impl SeriesCache {
    fn stripe(&self, hash: u64) -> &CacheStripe {
        &self.stripes[((hash >> 32) as usize) % STRIPES]
    }

    /// The live series whose labels `protobuf_labels` encode, marked as held by one more appender
    /// (the caller releases it as any held series). `None` when the bytes are not cached, the entry does
    /// not verify, or the series was removed.
    pub(crate) fn hold(&self, protobuf_labels: &[u8]) -> Option<Arc<MemSeries>> {
        let hash = raw_labels_hash(protobuf_labels);
        let stripe = read(self.stripe(hash));
        let series = stripe.get(&hash)?;
        if !protobuf_labels_equal(protobuf_labels, series.labels_encoded()) {
            return None;
        }
        if !series.try_hold() {
            return None;
        }
        Some(Arc::clone(series))
    }

    /// Caches `series` under `protobuf_labels` when the bytes encode exactly its labels (a non-canonical
    /// encoding would never verify, so it is not stored). The caller holds the series, so garbage
    /// collection cannot have removed it.
    pub(crate) fn insert(&self, protobuf_labels: &[u8], series: &Arc<MemSeries>) {
        if !protobuf_labels_equal(protobuf_labels, series.labels_encoded()) {
            return;
        }
        let hash = raw_labels_hash(protobuf_labels);
        write(self.stripe(hash)).insert(hash, Arc::clone(series));
    }

    /// Drops the entries of series that garbage collection removed.
    pub(crate) fn purge_removed(&self) {
        for stripe in self.stripes.iter() {
            write(stripe).retain(|_, series| !series.is_removed());
        }
    }

    /// Estimated heap bytes of the map (a hashbrown table: one control byte per bucket beside each
    /// entry, capacity seven eighths of the buckets).
    pub(crate) fn approximate_bytes(&self) -> u64 {
        let entry_bytes = std::mem::size_of::<(u64, Arc<MemSeries>)>() + 1;
        self.stripes.iter().map(|stripe| (read(stripe).capacity().div_ceil(7) * 8 * entry_bytes) as u64).sum()
    }

    /// Cached entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.stripes.iter().map(|stripe| read(stripe).len()).sum()
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
/// exactly the labels in `labels_encoded` (the record encoding: count, then length-prefixed names and
/// values), in the same order. Only the one-byte-length form is compared; anything else is `false`.
///
/// With every length below 128, a stored label is `n name v value` and its protobuf field is
/// `0x0a (n+v+4) 0x0a n name 0x12 v value`: the stored bytes are the field's bytes without the three
/// tag and length bytes around them, so two slice comparisons per label suffice.
pub(crate) fn protobuf_labels_equal(mut protobuf_labels: &[u8], labels_encoded: &[u8]) -> bool {
    let Some((&count, mut stored)) = labels_encoded.split_first() else { return false };
    if count >= 0x80 {
        return false;
    }
    for _ in 0..count {
        let [0x0a, field_length, 0x0a, name_length, after_name_length @ ..] = protobuf_labels else { return false };
        let (field_length, name_length) = (usize::from(*field_length), usize::from(*name_length));
        if field_length >= 0x80 || name_length >= 0x80 {
            return false;
        }
        let Some((name_part, after_name)) = stored.split_at_checked(name_length + 1) else { return false };
        // `name_part` is the stored length byte and name; the protobuf side has the same bytes.
        let Some(protobuf_name) = protobuf_labels.get(3..4 + name_length) else { return false };
        if !short_bytes_equal(protobuf_name, name_part) {
            return false;
        }
        let Some((&value_tag, after_value_tag)) = after_name_length.get(name_length..).and_then(<[u8]>::split_first)
        else {
            return false;
        };
        let Some(&value_length) = after_name.first() else { return false };
        let value_length = usize::from(value_length);
        if value_tag != 0x12
            || value_length >= 0x80
            || value_length == 0
            || field_length != name_length + value_length + 4
        {
            return false;
        }
        let Some((value_part, after_value)) = after_name.split_at_checked(value_length + 1) else { return false };
        let Some((protobuf_value, after_field)) = after_value_tag.split_at_checked(value_length + 1) else {
            return false;
        };
        if !short_bytes_equal(protobuf_value, value_part) {
            return false;
        }
        stored = after_value;
        protobuf_labels = after_field;
    }
    protobuf_labels.is_empty() && stored.is_empty()
}

/// Slice equality for the short strings labels are, eight bytes at a time and inline (the library
/// comparison calls `bcmp` per string).
#[inline]
fn short_bytes_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut left_words = left.chunks_exact(8);
    let mut right_words = right.chunks_exact(8);
    for (left_word, right_word) in (&mut left_words).zip(&mut right_words) {
        if left_word != right_word {
            return false;
        }
    }
    left_words.remainder() == right_words.remainder()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record;
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

    fn encoded(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        record::encode_labels(&mut bytes, &Labels::from_pairs(pairs.iter().copied()));
        bytes
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
        let held = head.series_cache.hold(&kept_bytes).expect("cached");
        head.observe_time_range(10, 10);
        assert_eq!(head.truncate(5000), 1);
        assert!(head.series_cache.hold(&gone_bytes).is_none(), "removed series must not be found");
        assert_eq!(head.series_cache.len(), 1);
        assert!(head.get_by_ref(held.series_ref).is_some());
        held.pending_appenders.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        // Still cached while it lives; once no appender holds it, the next truncation removes it.
        let again = head.series_cache.hold(&kept_bytes).expect("still cached");
        again.pending_appenders.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        assert_eq!(head.truncate(6000), 1);
        assert!(head.series_cache.hold(&kept_bytes).is_none());
        assert_eq!(head.series_cache.len(), 0);
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

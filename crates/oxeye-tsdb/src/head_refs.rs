//! The head's series by reference: a paged array indexed by the series reference instead of a hash
//! set, so each series costs one pointer slot (8 bytes) instead of a hash table's bucket with its
//! control byte and the spare half of a just-doubled table (18.9 bytes per series at 1M).
//!
//! References are handed out in ascending order (and replay restores the ones the WAL recorded), so
//! live references are dense: a stripe's page covers a run of consecutive references that were created
//! together and are mostly dropped together by garbage collection; a page whose last series goes is
//! freed, so the slots of series long gone do not stay behind.
//!
//! Reference `r` lives in stripe `r % STRIPES` at index `r / STRIPES`, split into a page and a slot:
//! consecutive references land in different stripes, so appenders creating series side by side do not
//! contend for one lock.

use std::sync::{RwLock, RwLockReadGuard};

use crate::db::{read, write};
use crate::head::MemSeries;

/// Stripes, each behind its own lock.
pub(crate) const STRIPES: usize = 256;
/// Slots per page: 2 KiB of pointers, so a stripe's last, partly filled page wastes little (at most
/// 512 KiB over all stripes).
const PAGE_SLOTS: usize = 256;

/// One page of a stripe: its slots and how many of them hold a series.
#[derive(Debug)]
struct Page {
    live: u32,
    slots: Box<[Option<MemSeries>]>,
}

impl Page {
    fn new() -> Self {
        Page { live: 0, slots: (0..PAGE_SLOTS).map(|_| None).collect() }
    }
}

/// The pages of one stripe, by page number (`None`: no series there).
#[derive(Debug, Default)]
struct Stripe {
    pages: Vec<Option<Page>>,
}

impl Stripe {
    /// The series in `slot` of page `page`, if any.
    fn slot(&self, page: usize, slot: usize) -> Option<&MemSeries> {
        self.pages.get(page)?.as_ref()?.slots[slot].as_ref()
    }
}

/// Where a reference lives: stripe, page, slot.
fn locate(series_ref: u32) -> (usize, usize, usize) {
    let series_ref = series_ref as usize;
    let index = series_ref / STRIPES;
    (series_ref % STRIPES, index / PAGE_SLOTS, index % PAGE_SLOTS)
}

/// Series by reference (see the module documentation).
#[derive(Debug)]
pub(crate) struct SeriesRefs {
    stripes: Box<[RwLock<Stripe>]>,
}

impl Default for SeriesRefs {
    fn default() -> Self {
        SeriesRefs { stripes: (0..STRIPES).map(|_| RwLock::new(Stripe::default())).collect() }
    }
}

impl SeriesRefs {
    /// The series with reference `series_ref`.
    pub(crate) fn get(&self, series_ref: u32) -> Option<MemSeries> {
        let (stripe, page, slot) = locate(series_ref);
        read(&self.stripes[stripe]).slot(page, slot).cloned()
    }

    /// Stores a series under its reference, replacing any series stored there.
    pub(crate) fn insert(&self, series: MemSeries) {
        let (stripe, page, slot) = locate(series.series_ref);
        let mut stripe = write(&self.stripes[stripe]);
        if stripe.pages.len() <= page {
            stripe.pages.resize_with(page + 1, || None);
        }
        let page = stripe.pages[page].get_or_insert_with(Page::new);
        if page.slots[slot].replace(series).is_none() {
            page.live += 1;
        }
    }

    /// Removes the series stored under `series_ref`, if any; frees its page when it was the last one.
    pub(crate) fn remove(&self, series_ref: u32) {
        let (stripe, page_number, slot) = locate(series_ref);
        let mut stripe = write(&self.stripes[stripe]);
        let Some(Some(page)) = stripe.pages.get_mut(page_number) else { return };
        if page.slots[slot].take().is_none() {
            return;
        }
        page.live -= 1;
        if page.live == 0 {
            stripe.pages[page_number] = None;
            while stripe.pages.last().is_some_and(Option::is_none) {
                stripe.pages.pop();
            }
        }
    }

    /// Read access to every stripe at once, for a batch of lookups (one lock per stripe instead of one
    /// per lookup).
    pub(crate) fn read_all(&self) -> SeriesRefsRead<'_> {
        SeriesRefsRead { stripes: self.stripes.iter().map(read).collect() }
    }

    /// Every series, one stripe's snapshot at a time (a [`STRIPES`]th of the head each), in ascending
    /// reference order within a stripe.
    pub(crate) fn in_stripes(&self) -> impl Iterator<Item = Vec<MemSeries>> + '_ {
        self.stripes.iter().map(|stripe| {
            let stripe = read(stripe);
            stripe.pages.iter().flatten().flat_map(|page| page.slots.iter().flatten().cloned()).collect()
        })
    }

    /// Heap bytes of the pages and page lists.
    pub(crate) fn approximate_bytes(&self) -> u64 {
        let page_bytes = (PAGE_SLOTS * std::mem::size_of::<Option<MemSeries>>()) as u64;
        self.stripes
            .iter()
            .map(|stripe| {
                let stripe = read(stripe);
                let pages = stripe.pages.iter().flatten().count() as u64;
                pages * page_bytes + (stripe.pages.capacity() * std::mem::size_of::<Option<Page>>()) as u64
            })
            .sum()
    }
}

/// Every stripe of [`SeriesRefs`] read-locked (see [`SeriesRefs::read_all`]).
pub(crate) struct SeriesRefsRead<'a> {
    stripes: Vec<RwLockReadGuard<'a, Stripe>>,
}

impl SeriesRefsRead<'_> {
    /// The series with reference `series_ref`.
    pub(crate) fn get(&self, series_ref: u32) -> Option<&MemSeries> {
        let (stripe, page, slot) = locate(series_ref);
        self.stripes[stripe].slot(page, slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(series_ref: u32) -> MemSeries {
        MemSeries::for_tests(series_ref)
    }

    #[test]
    fn series_are_found_replaced_and_removed_by_reference() {
        let refs = SeriesRefs::default();
        for series_ref in [1, 2, 255, 256, 257, 70_000, 3_000_000] {
            refs.insert(series(series_ref));
        }
        for series_ref in [1, 2, 255, 256, 257, 70_000, 3_000_000] {
            assert_eq!(refs.get(series_ref).map(|found| found.series_ref), Some(series_ref));
        }
        assert!(refs.get(3).is_none());
        assert!(refs.get(u32::MAX).is_none());
        let all_read = refs.read_all();
        assert_eq!(all_read.get(70_000).map(|found| found.series_ref), Some(70_000));
        assert!(all_read.get(70_001).is_none());
        drop(all_read);
        let mut all: Vec<u32> = refs.in_stripes().flatten().map(|found| found.series_ref).collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 255, 256, 257, 70_000, 3_000_000]);
        refs.insert(series(2));
        assert_eq!(refs.in_stripes().flatten().count(), 7);
        refs.remove(2);
        refs.remove(2);
        refs.remove(4);
        assert!(refs.get(2).is_none());
        assert_eq!(refs.in_stripes().flatten().count(), 6);
    }

    #[test]
    fn a_page_is_freed_with_its_last_series() {
        let refs = SeriesRefs::default();
        let far = (STRIPES * PAGE_SLOTS * 3) as u32;
        refs.insert(series(far));
        refs.insert(series(1));
        let with_far = refs.approximate_bytes();
        refs.remove(far);
        assert!(refs.approximate_bytes() < with_far);
        assert_eq!(refs.get(1).map(|found| found.series_ref), Some(1));
        refs.remove(1);
        assert_eq!(refs.in_stripes().flatten().count(), 0);
    }
}

//! The read path: stream selection through the postings index, batch-wise scans that decode chunks
//! into one reused buffer and hand out borrowed entries, and the label, series and stats lookups.
//!
//! A scan takes a snapshot of the matching streams' batches under the read lock (chunk handles, and the
//! window's head entries re-encoded into a byte buffer, so readers never hold the lock while decoding),
//! then visits batches in the asked order. A stored chunk's bloom filter is read, and its data
//! decompressed, only when the visitor wants the batch and the filter allows every needle. Streams whose
//! batches overlap in time may hold the same entry twice (a crash between a chunk file and the WAL
//! checkpoint replays it), so their entries are merged, sorted and deduplicated before visiting.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use memchr::memmem;
use oxeye_model::logs::{
    LogEntry, LogEntryRef, LogIndexStats, LogReader, LogSelection, LogStream, LogVisitor, ScanOrder, share_by_time,
};
use oxeye_model::storage::StorageError;
use oxeye_model::{LabelRef, Labels, Matcher};

use super::{Inner, LogStore, StoredChunk, StreamState, read_lock};
use crate::LogStoreError;
use crate::bloom::{NeedleKeys, may_contain_all, needle_keys};
use crate::chunk::{
    ChunkInflater, ChunkLayout, SealedChunk, field_columns, for_each_encoded_entry, for_each_encoded_entry_holding,
    for_each_encoded_entry_with_fields, for_each_encoded_entry_without_lines,
};
use crate::encoding::put_entry;

impl Inner {
    /// Streams matching every matcher, found through the postings index.
    pub(super) fn matching<'a>(&'a self, matchers: &'a [Matcher]) -> impl Iterator<Item = &'a StreamState> + 'a {
        self.postings.candidates(matchers, self.streams.len()).into_iter().filter_map(move |id| {
            let stream = self.streams.get(id as usize)?;
            matchers
                .iter()
                .all(|matcher| matcher.matches(stream.labels.get(&matcher.name).unwrap_or("")))
                .then_some(stream)
        })
    }

    /// True when stream `id` has entries in `[start_ns, end_ns)` (by its time bounds).
    fn stream_overlaps(&self, id: u32, start_ns: i64, end_ns: i64) -> bool {
        self.streams.get(id as usize).is_some_and(|stream| stream.overlaps(start_ns, end_ns))
    }
}

/// Where a batch's entries are.
enum BatchSource {
    Stored(StoredChunk),
    Sealed(Arc<SealedChunk>),
    /// Head entries in the window, in the chunk entry encoding (uncompressed).
    Head(Vec<u8>),
    /// Entries merged from several overlapping batches, sorted and deduplicated.
    Merged(Vec<LogEntry>),
}

struct Batch {
    stream: usize,
    min_ns: i64,
    max_ns: i64,
    source: BatchSource,
}

/// Collects `select` results.
#[derive(Default)]
struct Collect {
    streams: BTreeMap<Labels, Vec<LogEntry>>,
}

impl LogVisitor for Collect {
    fn entry(&mut self, stream: &Labels, entry: LogEntryRef<'_>) {
        if let Some(entries) = self.streams.get_mut(stream) {
            entries.push(entry.to_entry());
        } else {
            self.streams.insert(stream.clone(), vec![entry.to_entry()]);
        }
    }
}

/// An entry's line as a scan hands it to its visitor.
#[derive(Clone, Copy)]
enum Line<'a> {
    Text(&'a str),
    /// A line the chunk decoder found to hold the scan's searched needle ([`visit_chunk`]'s `needle`).
    Holding(&'a str),
    /// Left compressed: only its length in bytes is known.
    Unread(usize),
    /// Left compressed: its length in bytes and the asked field columns' values.
    Fields(usize, &'a [Option<&'a str>]),
}

/// The field columns a scan's visitor asked for ([`LogVisitor::line_fields`]): the parser's semantics and
/// the label names.
#[derive(Clone, Copy)]
struct FieldsWanted<'a> {
    semantics: u32,
    names: &'a [String],
}

/// Decompresses and decodes one chunk's `data` of `layout`, calling `visit` per entry; with `lines_unread`,
/// only the chunk's timestamps, line lengths and structured metadata when its layout allows; with `fields`,
/// those and the field columns asked for when the chunk holds them all; with `needle`, only the entries
/// whose line holds it (as [`Line::Holding`]).
#[allow(clippy::too_many_arguments)]
fn visit_chunk(
    inflater: &mut ChunkInflater,
    data: &[u8],
    layout: ChunkLayout,
    path: &Path,
    lines_unread: bool,
    fields: Option<FieldsWanted<'_>>,
    needle: Option<&memmem::Finder<'_>>,
    visit: &mut impl FnMut(i64, Line<'_>, &[LabelRef<'_>]),
) -> Result<(), LogStoreError> {
    if let Some(wanted) = fields
        && let Some((columns, encoded_len)) = inflater.inflate_columns(data, layout, path)?
    {
        if let Some(found) = field_columns(columns, layout, wanted.semantics, wanted.names, path)? {
            return for_each_encoded_entry_with_fields(
                columns,
                encoded_len,
                layout,
                path,
                &found,
                |timestamp_ns, bytes, metadata, values| visit(timestamp_ns, Line::Fields(bytes, values), metadata),
            );
        }
        // Not those columns: the lines after all, decompressed from where the columns ended.
        let encoded = inflater.inflate_rest(data, path)?;
        return for_each_encoded_entry(encoded, layout, path, |timestamp_ns, line, metadata| {
            visit(timestamp_ns, Line::Text(line), metadata)
        });
    }
    if lines_unread && let Some((columns, encoded_len)) = inflater.inflate_columns(data, layout, path)? {
        return for_each_encoded_entry_without_lines(
            columns,
            encoded_len,
            layout,
            path,
            |timestamp_ns, bytes, metadata| visit(timestamp_ns, Line::Unread(bytes), metadata),
        );
    }
    let encoded = inflater.inflate(data, path)?;
    if let Some(needle) = needle {
        return for_each_encoded_entry_holding(encoded, layout, path, needle, |timestamp_ns, line, metadata| {
            visit(timestamp_ns, Line::Holding(line), metadata)
        });
    }
    for_each_encoded_entry(encoded, layout, path, |timestamp_ns, line, metadata| {
        visit(timestamp_ns, Line::Text(line), metadata)
    })
}

impl LogStore {
    /// Reads the entries of the selection; see [`LogReader::select`].
    ///
    /// # Errors
    /// [`LogStoreError::Io`], [`LogStoreError::Corrupt`].
    pub fn select_streams(&self, selection: &LogSelection) -> Result<Vec<LogStream>, LogStoreError> {
        let mut collect = Collect::default();
        self.scan_entries(selection, ScanOrder::Forward, &mut collect)?;
        Ok(collect
            .streams
            .into_iter()
            .map(|(labels, mut entries)| {
                entries.sort_by_key(|entry| entry.timestamp_ns);
                LogStream { labels, entries }
            })
            .collect())
    }

    /// Visits the selection's entries batch by batch; see [`LogReader::scan`]. Entries outside the window
    /// or without every `line_contains` needle are not visited.
    ///
    /// # Errors
    /// [`LogStoreError::Io`], [`LogStoreError::Corrupt`].
    pub fn scan_entries(
        &self,
        selection: &LogSelection,
        order: ScanOrder,
        visitor: &mut dyn LogVisitor,
    ) -> Result<(), LogStoreError> {
        let (start_ns, end_ns) = (selection.start_ns, selection.end_ns);
        let (labels, mut batches) = self.snapshot_batches(selection)?;
        match order {
            ScanOrder::Forward => batches.sort_by_key(|batch| (batch.min_ns, batch.stream)),
            ScanOrder::Backward => batches.sort_by_key(|batch| (std::cmp::Reverse(batch.max_ns), batch.stream)),
        }
        let bloom_keys: Vec<NeedleKeys> =
            selection.line_contains.iter().filter_map(|needle| needle_keys(needle)).collect();
        let finders: Vec<memmem::Finder<'_>> =
            selection.line_contains.iter().map(|needle| memmem::Finder::new(needle.as_bytes())).collect();
        // The longest needle is searched in each chunk's lines as a whole by the chunk decoder, which then
        // hands over only the lines holding it (`Line::Holding`); the others are checked line by line.
        let searched =
            finders.iter().enumerate().max_by_key(|(_, finder)| finder.needle().len()).map(|(index, _)| index);
        let wanted = |timestamp_ns: i64, line: &str, holds_searched: bool| {
            timestamp_ns >= start_ns
                && timestamp_ns < end_ns
                && finders.iter().enumerate().all(|(index, finder)| {
                    (holds_searched && Some(index) == searched) || finder.find(line.as_bytes()).is_some()
                })
        };
        let needle = searched.and_then(|index| finders.get(index));
        let counters = &self.counters;
        let mut inflater = ChunkInflater::new();
        // The compressed data of each stored chunk in turn.
        let mut data = Vec::new();
        // Lines are decompressed only when the visitor or a needle reads them.
        let lines_unread = !visitor.reads_lines() && finders.is_empty();
        // Field columns stand in for the lines only when no needle reads them, and are looked for only when
        // this store writes them (columns of older settings are then left unread).
        let writes = |semantics: u32, names: &[String]| {
            self.options.line_fields.as_ref().is_some_and(|fields| fields.writes(semantics, names))
        };
        let fields_asked: Option<(u32, Vec<String>)> = match visitor.line_fields() {
            Some((semantics, names)) if finders.is_empty() && !lines_unread && writes(semantics, names) => {
                Some((semantics, names.to_vec()))
            }
            _ => None,
        };
        let fields = fields_asked
            .as_ref()
            .map(|(semantics, names)| FieldsWanted { semantics: *semantics, names: names.as_slice() });
        for batch in batches {
            let Some(stream) = labels.get(batch.stream) else { continue };
            if !visitor.wants_batch(stream, batch.min_ns.max(start_ns), batch.max_ns.min(end_ns - 1)) {
                continue;
            }
            let mut visit = |timestamp_ns: i64, line: Line<'_>, metadata: &[LabelRef<'_>]| match line {
                Line::Text(line) if wanted(timestamp_ns, line, false) => {
                    visitor.entry(stream, LogEntryRef { timestamp_ns, line, structured_metadata: metadata });
                }
                Line::Holding(line) if wanted(timestamp_ns, line, true) => {
                    visitor.entry(stream, LogEntryRef { timestamp_ns, line, structured_metadata: metadata });
                }
                Line::Unread(line_bytes) if timestamp_ns >= start_ns && timestamp_ns < end_ns => {
                    visitor.entry_without_line(stream, timestamp_ns, line_bytes, metadata);
                }
                Line::Fields(line_bytes, values) if timestamp_ns >= start_ns && timestamp_ns < end_ns => {
                    visitor.entry_with_fields(stream, timestamp_ns, line_bytes, metadata, values);
                }
                _ => {}
            };
            match &batch.source {
                BatchSource::Stored(chunk) => {
                    let meta = &chunk.file.chunks[chunk.index].1;
                    if !bloom_keys.is_empty() {
                        let bloom = chunk.file.read_bloom(meta)?;
                        counters.chunk_bytes_read_total.fetch_add(bloom.len() as u64, Ordering::Relaxed);
                        if !bloom_keys.iter().all(|keys| may_contain_all(&bloom, keys)) {
                            counters.chunks_skipped_total.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    chunk.file.read_data_into(meta, &mut data)?;
                    counters.chunk_bytes_read_total.fetch_add(data.len() as u64, Ordering::Relaxed);
                    counters.chunks_read_total.fetch_add(1, Ordering::Relaxed);
                    visit_chunk(
                        &mut inflater,
                        &data,
                        chunk.file.layout,
                        &chunk.file.path,
                        lines_unread,
                        fields,
                        needle,
                        &mut visit,
                    )?;
                }
                BatchSource::Sealed(chunk) => {
                    if !bloom_keys.iter().all(|keys| may_contain_all(&chunk.bloom, keys)) {
                        counters.chunks_skipped_total.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    counters.chunks_read_total.fetch_add(1, Ordering::Relaxed);
                    let memory = Path::new("memory");
                    visit_chunk(
                        &mut inflater,
                        &chunk.data,
                        ChunkLayout::SEALED,
                        memory,
                        lines_unread,
                        fields,
                        needle,
                        &mut visit,
                    )?;
                }
                BatchSource::Head(encoded) => for_each_encoded_entry(
                    encoded,
                    ChunkLayout::Rows,
                    Path::new("head"),
                    |timestamp_ns, line, metadata| visit(timestamp_ns, Line::Text(line), metadata),
                )?,
                BatchSource::Merged(entries) => {
                    let mut metadata: Vec<LabelRef<'_>> = Vec::new();
                    for entry in entries {
                        metadata.clear();
                        metadata.extend(
                            entry
                                .structured_metadata
                                .iter()
                                .map(|label| LabelRef { name: &label.name, value: &label.value }),
                        );
                        visit(entry.timestamp_ns, Line::Text(&entry.line), &metadata);
                    }
                }
            }
        }
        Ok(())
    }

    /// The matching streams' labels and their batches overlapping the window; streams with overlapping
    /// batches get one merged, deduplicated batch.
    fn snapshot_batches(&self, selection: &LogSelection) -> Result<(Vec<Labels>, Vec<Batch>), LogStoreError> {
        let (start_ns, end_ns) = (selection.start_ns, selection.end_ns);
        let mut labels = Vec::new();
        let mut batches = Vec::new();
        {
            let inner = read_lock(&self.inner);
            for stream in inner.matching(&selection.matchers).filter(|stream| stream.overlaps(start_ns, end_ns)) {
                let stream_index = labels.len();
                let first_batch = batches.len();
                for chunk in &stream.stored {
                    let meta = &chunk.file.chunks[chunk.index].1;
                    if meta.min_timestamp_ns < end_ns && meta.max_timestamp_ns >= start_ns {
                        batches.push(Batch {
                            stream: stream_index,
                            min_ns: meta.min_timestamp_ns,
                            max_ns: meta.max_timestamp_ns,
                            source: BatchSource::Stored(chunk.clone()),
                        });
                    }
                }
                for chunk in &stream.sealed {
                    if chunk.min_timestamp_ns < end_ns && chunk.max_timestamp_ns >= start_ns {
                        batches.push(Batch {
                            stream: stream_index,
                            min_ns: chunk.min_timestamp_ns,
                            max_ns: chunk.max_timestamp_ns,
                            source: BatchSource::Sealed(chunk.clone()),
                        });
                    }
                }
                let from = stream.head.partition_point(|entry| entry.timestamp_ns < start_ns);
                let to = stream.head.partition_point(|entry| entry.timestamp_ns < end_ns);
                if let (Some(first), Some(last)) =
                    (stream.head.get(from), to.checked_sub(1).and_then(|last| stream.head.get(last)))
                {
                    let window = stream.head.get(from..to).unwrap_or_default();
                    let mut encoded = Vec::with_capacity(window.iter().map(|entry| entry.line.len() + 8).sum());
                    let mut previous_ns = 0;
                    for entry in window {
                        put_entry(&mut encoded, entry, previous_ns);
                        previous_ns = entry.timestamp_ns;
                    }
                    batches.push(Batch {
                        stream: stream_index,
                        min_ns: first.timestamp_ns,
                        max_ns: last.timestamp_ns,
                        source: BatchSource::Head(encoded),
                    });
                }
                if batches.len() > first_batch {
                    labels.push(stream.labels.clone());
                }
            }
        }
        // Merge the batches of streams whose batches overlap in time.
        let mut by_stream: Vec<Vec<Batch>> = (0..labels.len()).map(|_| Vec::new()).collect();
        for batch in batches {
            if let Some(list) = by_stream.get_mut(batch.stream) {
                list.push(batch);
            }
        }
        let mut result = Vec::new();
        for (stream_index, mut list) in by_stream.into_iter().enumerate() {
            list.sort_by_key(|batch| batch.min_ns);
            let overlapping = list.windows(2).any(|pair| pair[1].min_ns <= pair[0].max_ns);
            if !overlapping {
                result.extend(list);
                continue;
            }
            let (min_ns, max_ns) = list
                .iter()
                .fold((i64::MAX, i64::MIN), |(low, high), batch| (low.min(batch.min_ns), high.max(batch.max_ns)));
            let mut entries = Vec::new();
            let mut inflater = ChunkInflater::new();
            for batch in &list {
                let mut push = |timestamp_ns: i64, line: &str, metadata: &[LabelRef<'_>]| {
                    entries.push(LogEntryRef { timestamp_ns, line, structured_metadata: metadata }.to_entry());
                };
                match &batch.source {
                    BatchSource::Stored(chunk) => {
                        let data = chunk.file.read_data(&chunk.file.chunks[chunk.index].1)?;
                        self.counters.chunks_read_total.fetch_add(1, Ordering::Relaxed);
                        let encoded = inflater.inflate(&data, &chunk.file.path)?;
                        for_each_encoded_entry(encoded, chunk.file.layout, &chunk.file.path, &mut push)?;
                    }
                    BatchSource::Sealed(chunk) => {
                        self.counters.chunks_read_total.fetch_add(1, Ordering::Relaxed);
                        let encoded = inflater.inflate(&chunk.data, Path::new("memory"))?;
                        for_each_encoded_entry(encoded, ChunkLayout::SEALED, Path::new("memory"), &mut push)?;
                    }
                    BatchSource::Head(encoded) => {
                        for_each_encoded_entry(encoded, ChunkLayout::Rows, Path::new("head"), &mut push)?
                    }
                    BatchSource::Merged(merged) => entries.extend(merged.iter().cloned()),
                }
            }
            entries.sort_by_key(|entry| entry.timestamp_ns);
            entries.dedup_by(|later, earlier| later.timestamp_ns == earlier.timestamp_ns && later.line == earlier.line);
            result.push(Batch { stream: stream_index, min_ns, max_ns, source: BatchSource::Merged(entries) });
        }
        Ok((labels, result))
    }

    /// Label sets of the matching streams with data in the window, sorted.
    fn matching_labels(&self, start_ns: i64, end_ns: i64, matchers: &[Matcher]) -> Vec<Labels> {
        let inner = read_lock(&self.inner);
        let mut labels: Vec<Labels> = inner
            .matching(matchers)
            .filter(|stream| stream.overlaps(start_ns, end_ns))
            .map(|stream| stream.labels.clone())
            .collect();
        labels.sort();
        labels
    }
}

impl LogReader for LogStore {
    fn select(&self, selection: &LogSelection) -> Result<Vec<LogStream>, StorageError> {
        self.select_streams(selection).map_err(StorageError::from)
    }

    fn scan(
        &self,
        selection: &LogSelection,
        order: ScanOrder,
        visitor: &mut dyn LogVisitor,
    ) -> Result<(), StorageError> {
        self.scan_entries(selection, order, visitor).map_err(StorageError::from)
    }

    fn series(&self, start_ns: i64, end_ns: i64, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        Ok(self.matching_labels(start_ns, end_ns, matchers))
    }

    fn label_names(&self, start_ns: i64, end_ns: i64, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let inner = read_lock(&self.inner);
        let mut names: Vec<String> = if matchers.is_empty() {
            // Straight from the index: a name is listed when one of its streams has data in the window.
            inner
                .postings
                .names()
                .filter(|(_, values)| values.values().flatten().any(|id| inner.stream_overlaps(*id, start_ns, end_ns)))
                .map(|(name, _)| name.clone())
                .collect()
        } else {
            let mut names: Vec<String> = Vec::new();
            for stream in inner.matching(matchers).filter(|stream| stream.overlaps(start_ns, end_ns)) {
                for label in &stream.labels {
                    if !names.contains(&label.name) {
                        names.push(label.name.clone());
                    }
                }
            }
            names
        };
        names.sort();
        Ok(names)
    }

    fn label_values(
        &self,
        start_ns: i64,
        end_ns: i64,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let inner = read_lock(&self.inner);
        let Some(values) = inner.postings.values(name) else { return Ok(Vec::new()) };
        let mut found: Vec<String> = if matchers.is_empty() {
            values
                .iter()
                .filter(|(_, ids)| ids.iter().any(|id| inner.stream_overlaps(*id, start_ns, end_ns)))
                .map(|(value, _)| value.clone())
                .collect()
        } else {
            let selected = inner.postings.candidates(matchers, inner.streams.len());
            values
                .iter()
                .filter(|(_, ids)| {
                    ids.iter().any(|id| {
                        selected.binary_search(id).is_ok()
                            && inner.stream_overlaps(*id, start_ns, end_ns)
                            && inner.streams.get(*id as usize).is_some_and(|stream| {
                                matchers
                                    .iter()
                                    .all(|matcher| matcher.matches(stream.labels.get(&matcher.name).unwrap_or("")))
                            })
                    })
                })
                .map(|(value, _)| value.clone())
                .collect()
        };
        found.sort();
        Ok(found)
    }

    fn index_stats(&self, start_ns: i64, end_ns: i64, matchers: &[Matcher]) -> Result<LogIndexStats, StorageError> {
        let inner = read_lock(&self.inner);
        let mut stats = LogIndexStats::default();
        for stream in inner.matching(matchers).filter(|stream| stream.overlaps(start_ns, end_ns)) {
            let mut counted = false;
            for chunk in &stream.stored {
                let meta = &chunk.file.chunks[chunk.index].1;
                if meta.min_timestamp_ns < end_ns && meta.max_timestamp_ns >= start_ns {
                    counted = true;
                    stats.chunks += 1;
                    stats.entries += u64::from(meta.entries);
                    stats.bytes += meta.line_bytes;
                }
            }
            for chunk in &stream.sealed {
                if chunk.min_timestamp_ns < end_ns && chunk.max_timestamp_ns >= start_ns {
                    counted = true;
                    stats.chunks += 1;
                    stats.entries += u64::from(chunk.entries);
                    stats.bytes += chunk.line_bytes;
                }
            }
            let from = stream.head.partition_point(|entry| entry.timestamp_ns < start_ns);
            let to = stream.head.partition_point(|entry| entry.timestamp_ns < end_ns);
            if let Some(window) = stream.head.get(from..to).filter(|window| !window.is_empty()) {
                counted = true;
                stats.chunks += 1;
                stats.entries += window.len() as u64;
                stats.bytes += window.iter().map(|entry| entry.line.len() as u64).sum::<u64>();
            }
            if counted {
                stats.streams += 1;
            }
        }
        Ok(stats)
    }

    fn volume(
        &self,
        start_ns: i64,
        end_ns: i64,
        matchers: &[Matcher],
        bucket_ends_ns: &[i64],
    ) -> Result<Vec<(Labels, Vec<u64>)>, StorageError> {
        let inner = read_lock(&self.inner);
        let mut volumes = Vec::new();
        for stream in inner.matching(matchers).filter(|stream| stream.overlaps(start_ns, end_ns)) {
            let mut buckets = vec![0u64; bucket_ends_ns.len()];
            let mut share = |bytes: u64, min_ns: i64, max_ns: i64| {
                if min_ns < end_ns && max_ns >= start_ns {
                    share_by_time(bytes, min_ns, max_ns, start_ns, bucket_ends_ns, &mut buckets);
                }
            };
            for chunk in &stream.stored {
                let meta = &chunk.file.chunks[chunk.index].1;
                share(meta.line_bytes, meta.min_timestamp_ns, meta.max_timestamp_ns);
            }
            for chunk in &stream.sealed {
                share(chunk.line_bytes, chunk.min_timestamp_ns, chunk.max_timestamp_ns);
            }
            let from = stream.head.partition_point(|entry| entry.timestamp_ns < start_ns);
            let to = stream.head.partition_point(|entry| entry.timestamp_ns < end_ns);
            for entry in stream.head.get(from..to).unwrap_or_default() {
                share(entry.line.len() as u64, entry.timestamp_ns, entry.timestamp_ns);
            }
            if buckets.iter().any(|bytes| *bytes > 0) {
                volumes.push((stream.labels.clone(), buckets));
            }
        }
        Ok(volumes)
    }
}

#[cfg(test)]
mod tests {
    use oxeye_model::logs::{LogEntry, LogWriter};
    use oxeye_model::{Label, MatchOp};

    use super::*;
    use crate::LogStoreOptions;

    const SECOND: i64 = 1_000_000_000;

    fn now_ns() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
    }

    fn store(dir: &Path) -> Arc<LogStore> {
        let mut options = LogStoreOptions::new(dir);
        options.background_maintenance = false;
        options.chunk_target_bytes = 200;
        LogStore::open(options).unwrap()
    }

    fn labels(service: &str) -> Labels {
        Labels::from_pairs([("service_name", service), ("env", "prod")])
    }

    /// Pushes 40 entries per stream for two streams, one per second, cut into many small chunks, some in a
    /// chunk file and the rest in memory.
    fn filled(dir: &Path, base: i64) -> Arc<LogStore> {
        let store = store(dir);
        for second in 0..40 {
            let mut entry = LogEntry::new(base + second * SECOND, format!("request {second} finished in 12ms"));
            if second % 10 == 0 {
                entry.structured_metadata.push(Label { name: "trace_id".into(), value: format!("{second:032x}") });
            }
            let other = LogEntry::new(base + second * SECOND + 1, format!("task {second} done"));
            store
                .push(vec![
                    LogStream { labels: labels("boxoffice"), entries: vec![entry] },
                    LogStream { labels: labels("worker"), entries: vec![other] },
                ])
                .unwrap();
            if second == 20 {
                store.flush(true).unwrap();
            }
        }
        store
    }

    struct Newest {
        limit: usize,
        seen: Vec<(String, i64, String, usize)>,
        batches_refused: usize,
    }

    impl LogVisitor for Newest {
        fn wants_batch(&mut self, _: &Labels, _: i64, max_ns: i64) -> bool {
            let oldest_kept = self.seen.iter().map(|seen| seen.1).min().unwrap_or(i64::MIN);
            let wanted = self.seen.len() < self.limit || max_ns > oldest_kept;
            if !wanted {
                self.batches_refused += 1;
            }
            wanted
        }

        fn entry(&mut self, stream: &Labels, entry: LogEntryRef<'_>) {
            let service = stream.get("service_name").unwrap_or("").to_string();
            self.seen.push((service, entry.timestamp_ns, entry.line.to_string(), entry.structured_metadata.len()));
        }
    }

    #[test]
    fn backward_scan_visits_newest_batches_first_and_can_stop_early() {
        let dir = tempfile::tempdir().unwrap();
        let base = now_ns() - 120 * SECOND;
        let store = filled(dir.path(), base);
        let selection = LogSelection {
            start_ns: base,
            end_ns: base + 60 * SECOND,
            matchers: vec![Matcher::equal("service_name", "boxoffice")],
            line_contains: vec![],
        };
        let mut visitor = Newest { limit: 3, seen: Vec::new(), batches_refused: 0 };
        store.scan_entries(&selection, ScanOrder::Backward, &mut visitor).unwrap();
        assert!(visitor.batches_refused > 3, "older batches are refused: {}", visitor.batches_refused);
        let mut newest: Vec<i64> = visitor.seen.iter().map(|seen| (seen.1 - base) / SECOND).collect();
        newest.sort_unstable();
        newest.reverse();
        assert_eq!(newest.get(..3), Some(&[39, 38, 37][..]));
        assert!(visitor.seen.iter().all(|seen| seen.0 == "boxoffice"));
        // The full forward read equals select, metadata included.
        let mut all = Newest { limit: usize::MAX, seen: Vec::new(), batches_refused: 0 };
        store.scan_entries(&selection, ScanOrder::Forward, &mut all).unwrap();
        assert_eq!(all.seen.len(), 40);
        assert_eq!(all.seen.iter().map(|seen| seen.3).sum::<usize>(), 4);
        let selected = store.select_streams(&selection).unwrap();
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].entries.len(), 40);
        assert_eq!(selected[0].entries[10].metadata("trace_id"), Some(format!("{:032x}", 10).as_str()));
    }

    #[test]
    fn needles_and_window_filter_entries_and_stats_count_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let base = now_ns() - 120 * SECOND;
        let store = filled(dir.path(), base);
        let selection = LogSelection {
            start_ns: base + 5 * SECOND,
            end_ns: base + 30 * SECOND,
            matchers: vec![Matcher::new(MatchOp::Regex, "service_name", ".+").unwrap()],
            line_contains: vec!["request 2".into()],
        };
        let streams = store.select_streams(&selection).unwrap();
        let lines: Vec<&str> =
            streams.iter().flat_map(|stream| &stream.entries).map(|entry| entry.line.as_str()).collect();
        assert_eq!(lines.len(), 10, "{lines:?}");
        assert!(lines.iter().all(|line| line.starts_with("request 2")));
        let stats = store.index_stats(base, base + 60 * SECOND, &[Matcher::equal("service_name", "worker")]).unwrap();
        assert_eq!((stats.streams, stats.entries), (1, 40));
        assert_eq!(stats.bytes, (0..40).map(|second| format!("task {second} done").len() as u64).sum::<u64>());
        assert!(stats.chunks > 2);
    }

    #[test]
    fn volume_shares_each_stream_bytes_among_buckets_once() {
        let dir = tempfile::tempdir().unwrap();
        let base = now_ns() - 120 * SECOND;
        let store = filled(dir.path(), base);
        let (start, end) = (base, base + 60 * SECOND);
        let worker_bytes = (0..40).map(|second| format!("task {second} done").len() as u64).sum::<u64>();
        let whole = store.volume(start, end, &[], &[end - 1]).unwrap();
        assert_eq!(whole.len(), 2);
        let worker = whole.iter().find(|(labels, _)| labels.get("service_name") == Some("worker")).unwrap();
        assert_eq!(worker.1, [worker_bytes]);
        // Ten-second buckets: stored chunks are shared by time, head entries fall in their own bucket;
        // nothing is counted twice or lost.
        let ends: Vec<i64> = (1..=6).map(|bucket| start + bucket * 10 * SECOND - 1).collect();
        let bucketed = store.volume(start, end, &[Matcher::equal("service_name", "worker")], &ends).unwrap();
        assert_eq!(bucketed.len(), 1);
        assert_eq!(bucketed[0].1.iter().sum::<u64>(), worker_bytes);
        assert_eq!(bucketed[0].1[4..], [0, 0]);
        assert!(bucketed[0].1[..4].iter().all(|bytes| *bytes > 0), "{:?}", bucketed[0].1);
        // A window ending in the head: only the entries inside it count.
        let early = store.volume(
            start,
            base + 30 * SECOND,
            &[Matcher::equal("service_name", "worker")],
            &[base + 30 * SECOND - 1],
        );
        let early_bytes = early.unwrap()[0].1[0];
        assert!(early_bytes < worker_bytes && early_bytes > 0);
    }

    #[test]
    fn overlapping_batches_are_merged_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let base = now_ns() - 120 * SECOND;
        let store = store(dir.path());
        let early = LogEntry::new(base + 10 * SECOND, "first half ".repeat(30));
        store.push(vec![LogStream { labels: labels("boxoffice"), entries: vec![early] }]).unwrap();
        store.flush(true).unwrap();
        // An out-of-order entry lands in a new head whose range overlaps the stored chunk's.
        let late = LogEntry::new(base + 5 * SECOND, "second");
        let again = LogEntry::new(base + 12 * SECOND, "third");
        store.push(vec![LogStream { labels: labels("boxoffice"), entries: vec![late, again] }]).unwrap();
        let selection = LogSelection {
            start_ns: base,
            end_ns: base + 60 * SECOND,
            matchers: vec![Matcher::equal("env", "prod")],
            line_contains: vec![],
        };
        let mut visitor = Newest { limit: usize::MAX, seen: Vec::new(), batches_refused: 0 };
        store.scan_entries(&selection, ScanOrder::Forward, &mut visitor).unwrap();
        let seconds: Vec<i64> = visitor.seen.iter().map(|seen| (seen.1 - base) / SECOND).collect();
        assert_eq!(seconds, [5, 10, 12], "one merged batch, sorted");
    }

    #[test]
    fn label_lookups_use_the_index_and_respect_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let base = now_ns() - 120 * SECOND;
        let store = filled(dir.path(), base);
        store
            .push(vec![LogStream {
                labels: Labels::from_pairs([("job", "syslog")]),
                entries: vec![LogEntry::new(base + 100 * SECOND, "late")],
            }])
            .unwrap();
        let window = (base, base + 60 * SECOND);
        assert_eq!(store.label_names(window.0, window.1, &[]).unwrap(), ["env", "service_name"]);
        assert_eq!(store.label_names(base, base + 110 * SECOND, &[]).unwrap(), ["env", "job", "service_name"]);
        assert_eq!(store.label_values(window.0, window.1, "service_name", &[]).unwrap(), ["boxoffice", "worker"]);
        let only_worker = [Matcher::new(MatchOp::Regex, "service_name", "w.*").unwrap()];
        assert_eq!(store.label_values(window.0, window.1, "service_name", &only_worker).unwrap(), ["worker"]);
        assert_eq!(store.label_names(window.0, window.1, &only_worker).unwrap(), ["env", "service_name"]);
        assert_eq!(store.series(window.0, window.1, &only_worker).unwrap(), [labels("worker")]);
        assert!(store.label_values(window.0, window.1, "absent", &[]).unwrap().is_empty());
    }
}

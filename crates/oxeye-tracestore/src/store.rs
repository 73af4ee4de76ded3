//! The trace store: WAL, head, blocks, retention, and the `TraceWriter` / `TraceReader` implementations.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use oxeye_model::storage::StorageError;
use oxeye_model::traces::{
    ResourceSpans, ScopeSpans, Span, SpanColumnSet, SpanColumnsRow, Trace, TraceId, TracePushSummary, TraceReader,
    TraceScanHints, TraceWriter, visit_span_rows,
};
use oxeye_wal::{Wal, WalOptions};

use crate::block::{BLOCK_SUFFIX, Block, write_block};
use crate::encoding::{self, put_uvarint};
use crate::{TraceStoreError, TraceStoreOptions};

/// WAL record type: a trace set (spans of one push, grouped by trace).
const RECORD_SPANS: u8 = 1;
/// WAL record type: tombstones (trace ids whose head spans are dropped).
const RECORD_TOMBSTONES: u8 = 2;

/// Counters for self-monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceStoreStats {
    /// Spans in the head (not yet in a block).
    pub head_spans: u64,
    /// Traces in the head.
    pub head_traces: u64,
    /// Blocks on disk.
    pub blocks: u64,
    /// Bytes of block files.
    pub block_bytes: u64,
    /// Spans in blocks.
    pub block_spans: u64,
    /// Spans accepted since start.
    pub accepted_spans_total: u64,
    /// Spans refused since start (invalid ids, outside retention).
    pub rejected_spans_total: u64,
    /// Traces dropped by tombstones since start.
    pub dropped_traces_total: u64,
}

#[derive(Default)]
struct Head {
    /// Shared so a search or by-id read can hold head traces without copying them under the lock; a push into
    /// a trace a reader still holds copies it first (`Arc::make_mut`).
    traces: foldhash::HashMap<TraceId, Arc<Trace>>,
    span_count: u64,
    /// When the first span of this head arrived, ns since the epoch (0 when empty).
    first_push_unix_nano: u64,
}

/// Adds `batch` (spans of one trace) to `trace`, merging into an equal resource and scope.
fn merge_batch(trace: &mut Trace, batch: ResourceSpans) {
    let existing = trace
        .resource_spans
        .iter_mut()
        .find(|candidate| candidate.resource == batch.resource && candidate.schema_url == batch.schema_url);
    let Some(existing) = existing else {
        trace.resource_spans.push(batch);
        return;
    };
    for scope_spans in batch.scope_spans {
        match existing
            .scope_spans
            .iter_mut()
            .find(|candidate| candidate.scope == scope_spans.scope && candidate.schema_url == scope_spans.schema_url)
        {
            Some(target) => target.spans.extend(scope_spans.spans),
            None => existing.scope_spans.push(scope_spans),
        }
    }
}

fn merge_trace(into: &mut Trace, from: Trace) {
    for batch in from.resource_spans {
        merge_batch(into, batch);
    }
}

impl Head {
    fn insert(&mut self, trace: Trace, now_unix_nano: u64) {
        let spans = trace.spans().count() as u64;
        if self.span_count == 0 {
            self.first_push_unix_nano = now_unix_nano;
        }
        self.span_count += spans;
        match self.traces.get_mut(&trace.trace_id) {
            Some(existing) => merge_trace(Arc::make_mut(existing), trace),
            None => {
                self.traces.insert(trace.trace_id, Arc::new(trace));
            }
        }
    }

    fn remove(&mut self, trace_id: &TraceId) -> bool {
        match self.traces.remove(trace_id) {
            Some(trace) => {
                self.span_count = self.span_count.saturating_sub(trace.spans().count() as u64);
                true
            }
            None => false,
        }
    }
}

/// Splits pushed batches into one [`Trace`] per trace id (spans keep their resource and scope).
fn group_by_trace(batches: Vec<ResourceSpans>) -> Vec<Trace> {
    let mut positions: foldhash::HashMap<TraceId, usize> = foldhash::HashMap::default();
    let mut traces: Vec<Trace> = Vec::new();
    for batch in batches {
        let ResourceSpans { resource, scope_spans, schema_url } = batch;
        for scope_spans in scope_spans {
            let ScopeSpans { scope, spans, schema_url: scope_schema_url } = scope_spans;
            let mut by_trace: Vec<(TraceId, Vec<Span>)> = Vec::new();
            for span in spans {
                match by_trace.iter_mut().find(|(trace_id, _)| *trace_id == span.trace_id) {
                    Some((_, spans)) => spans.push(span),
                    None => by_trace.push((span.trace_id, vec![span])),
                }
            }
            for (trace_id, spans) in by_trace {
                let fragment = ResourceSpans {
                    resource: resource.clone(),
                    scope_spans: vec![ScopeSpans { scope: scope.clone(), spans, schema_url: scope_schema_url.clone() }],
                    schema_url: schema_url.clone(),
                };
                let position = *positions.entry(trace_id).or_insert_with(|| {
                    traces.push(Trace { trace_id, resource_spans: Vec::new() });
                    traces.len() - 1
                });
                if let Some(trace) = traces.get_mut(position) {
                    merge_batch(trace, fragment);
                }
            }
        }
    }
    traces
}

fn now_unix_nano() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// Drops repeated span ids (a span seen both in the head being cut and in its new block).
fn remove_duplicate_spans(mut trace: Trace) -> Trace {
    let mut seen = std::collections::HashSet::new();
    for batch in &mut trace.resource_spans {
        for scope_spans in &mut batch.scope_spans {
            scope_spans.spans.retain(|span| seen.insert(span.span_id));
        }
    }
    trace
}

/// Keeps only spans starting in `[start, end)`; `None` when nothing is left.
fn restrict_to_window(mut trace: Trace, window: Option<(u64, u64)>) -> Option<Trace> {
    if let Some((start, end)) = window {
        for batch in &mut trace.resource_spans {
            for scope_spans in &mut batch.scope_spans {
                scope_spans.spans.retain(|span| span.start_time_unix_nano >= start && span.start_time_unix_nano < end);
            }
            batch.scope_spans.retain(|scope_spans| !scope_spans.spans.is_empty());
        }
        trace.resource_spans.retain(|batch| !batch.scope_spans.is_empty());
    }
    let has_spans = trace.spans().next().is_some();
    has_spans.then_some(trace)
}

fn overlaps(trace: &Trace, start: u64, end: u64) -> bool {
    trace.spans().any(|(_, span)| span.start_time_unix_nano >= start && span.start_time_unix_nano < end)
}

/// A durable trace store in one directory (`wal/` and `blocks/`). See the crate docs.
pub struct TraceStore {
    options: TraceStoreOptions,
    wal: Wal,
    blocks_dir: PathBuf,
    /// Pushes hold it shared while they write the WAL and the head; a block cut holds it exclusively while it
    /// swaps the head out and rotates the WAL, so every record in older segments is in the swapped head.
    cut_gate: RwLock<()>,
    /// Serialises block cuts and retention.
    maintenance: Mutex<()>,
    head: RwLock<Head>,
    /// The head being written into a block, readable until the block is in `blocks`.
    cutting: RwLock<Option<Arc<Head>>>,
    blocks: RwLock<Vec<Arc<Block>>>,
    next_block_sequence: AtomicU64,
    accepted_spans_total: AtomicU64,
    rejected_spans_total: AtomicU64,
    dropped_traces_total: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for TraceStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TraceStore").field("dir", &self.options.dir).finish_non_exhaustive()
    }
}

fn block_sequence(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    u64::from_str_radix(name.strip_suffix(BLOCK_SUFFIX)?, 16).ok()
}

impl TraceStore {
    /// Opens (or creates) the store in `options.dir`: loads every block's index and summary, deletes
    /// leftovers of interrupted block writes, and replays the WAL segments not yet covered by a block into
    /// the head (tombstones included).
    ///
    /// # Errors
    /// [`TraceStoreError::InvalidOption`] for a bad option, [`TraceStoreError::Io`] /
    /// [`TraceStoreError::Corrupt`] / [`TraceStoreError::Wal`] when the directory cannot be read.
    pub fn open(options: TraceStoreOptions) -> Result<Arc<TraceStore>, TraceStoreError> {
        options.validate()?;
        let blocks_dir = options.dir.join("blocks");
        std::fs::create_dir_all(&blocks_dir)
            .map_err(|error| TraceStoreError::io(&blocks_dir, "create blocks directory", error))?;
        let mut blocks = Vec::new();
        let entries =
            std::fs::read_dir(&blocks_dir).map_err(|error| TraceStoreError::io(&blocks_dir, "list blocks", error))?;
        for entry in entries {
            let path = entry.map_err(|error| TraceStoreError::io(&blocks_dir, "list blocks", error))?.path();
            if path.extension().is_some_and(|extension| extension == "tmp") {
                std::fs::remove_file(&path)
                    .map_err(|error| TraceStoreError::io(&path, "delete partial block", error))?;
                continue;
            }
            if block_sequence(&path).is_some() {
                blocks.push(Arc::new(Block::open(&path)?));
            }
        }
        blocks.sort_by_key(|block| block_sequence(&block.path));
        let next_block_sequence =
            blocks.last().and_then(|block| block_sequence(&block.path)).map_or(1, |last| last + 1);
        let first_wal_segment = blocks.iter().map(|block| block.summary.wal_through_segment).max().unwrap_or(0);

        let wal_dir = options.dir.join("wal");
        let mut head = Head::default();
        let replay_started = now_unix_nano();
        let summary = oxeye_wal::replay::<TraceStoreError>(&wal_dir, first_wal_segment, |record| {
            apply_record(&mut head, record, replay_started)
        })?;
        if let Some(torn) = &summary.torn_tail {
            tracing::warn!(path = %torn.path.display(), offset = torn.offset, "trace WAL had a torn tail, cut off");
        }
        let wal = Wal::open(WalOptions { dir: wal_dir, segment_size_bytes: options.wal_segment_size_bytes })?;
        wal.truncate_before(first_wal_segment)?;
        tracing::info!(
            blocks = blocks.len(),
            head_spans = head.span_count,
            wal_records = summary.records,
            "trace store opened"
        );
        Ok(Arc::new(TraceStore {
            blocks_dir,
            wal,
            cut_gate: RwLock::new(()),
            maintenance: Mutex::new(()),
            head: RwLock::new(head),
            cutting: RwLock::new(None),
            blocks: RwLock::new(blocks),
            next_block_sequence: AtomicU64::new(next_block_sequence),
            accepted_spans_total: AtomicU64::new(0),
            rejected_spans_total: AtomicU64::new(0),
            dropped_traces_total: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            options,
        }))
    }

    /// Stores `batches` durably (WAL fsynced before return) and makes them readable. Spans with an all-zero
    /// trace or span id, and spans that ended before the retention window, are refused and counted.
    ///
    /// # Errors
    /// [`TraceStoreError::Closed`] after [`TraceStore::close`]; [`TraceStoreError::Wal`] when the WAL write
    /// fails (nothing of the call is acknowledged then).
    pub fn push_batches(&self, mut batches: Vec<ResourceSpans>) -> Result<TracePushSummary, TraceStoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TraceStoreError::Closed);
        }
        let now = now_unix_nano();
        let oldest_kept = now.saturating_sub(self.options.retention.as_nanos() as u64);
        let mut summary = TracePushSummary::default();
        for batch in &mut batches {
            for scope_spans in &mut batch.scope_spans {
                scope_spans.spans.retain(|span| {
                    let problem = if span.trace_id == [0; 16] || span.span_id == [0; 8] {
                        Some(format!("span {:?}: trace and span ids must not be all zero", span.name))
                    } else if span.end_time_unix_nano.max(span.start_time_unix_nano) < oldest_kept {
                        Some(format!("span {:?}: ended before the retention window", span.name))
                    } else {
                        None
                    };
                    match problem {
                        Some(problem) => {
                            summary.rejected_spans += 1;
                            summary.first_error.get_or_insert(problem);
                            false
                        }
                        None => {
                            summary.accepted_spans += 1;
                            true
                        }
                    }
                });
            }
        }
        self.rejected_spans_total.fetch_add(summary.rejected_spans, Ordering::Relaxed);
        if summary.accepted_spans == 0 {
            return Ok(summary);
        }
        let traces = group_by_trace(batches);
        let mut record = vec![RECORD_SPANS];
        encoding::encode_traces(&traces, &mut record);
        let should_cut = {
            let _gate = self.cut_gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            self.wal.append(&record)?;
            let mut head = self.head.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            for trace in traces {
                head.insert(trace, now);
            }
            head.span_count >= self.options.max_head_spans
        };
        self.accepted_spans_total.fetch_add(summary.accepted_spans, Ordering::Relaxed);
        if should_cut {
            self.cut_block()?;
        }
        Ok(summary)
    }

    /// Drops the head spans of `trace_ids` durably (a WAL tombstone first). Spans already in blocks stay.
    ///
    /// # Errors
    /// [`TraceStoreError::Closed`] or [`TraceStoreError::Wal`].
    pub fn drop_head_traces(&self, trace_ids: &[TraceId]) -> Result<(), TraceStoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TraceStoreError::Closed);
        }
        if trace_ids.is_empty() {
            return Ok(());
        }
        let mut record = vec![RECORD_TOMBSTONES];
        put_uvarint(&mut record, trace_ids.len() as u64);
        for trace_id in trace_ids {
            record.extend_from_slice(trace_id);
        }
        let _gate = self.cut_gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.wal.append(&record)?;
        let mut head = self.head.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for trace_id in trace_ids {
            if head.remove(trace_id) {
                self.dropped_traces_total.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Writes the whole head into a new block (if it has spans), then deletes the WAL segments it covered.
    ///
    /// # Errors
    /// [`TraceStoreError::Io`] or [`TraceStoreError::Wal`]; the head stays readable and in the WAL then.
    pub fn cut_block(&self) -> Result<(), TraceStoreError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (frozen, wal_through_segment) = {
            let _gate = self.cut_gate.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut head = self.head.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if head.span_count == 0 {
                return Ok(());
            }
            let segment = self.wal.rotate()?;
            let frozen = Arc::new(std::mem::take(&mut *head));
            *self.cutting.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(frozen.clone());
            (frozen, segment)
        };
        let sequence = self.next_block_sequence.fetch_add(1, Ordering::Relaxed);
        let path = self.blocks_dir.join(format!("{sequence:016x}{BLOCK_SUFFIX}"));
        let traces: Vec<&Trace> = frozen.traces.values().map(|trace| &**trace).collect();
        let written =
            write_block(&path, traces, self.options.page_bytes, wal_through_segment).and_then(|_| Block::open(&path));
        let block = match written {
            Ok(block) => block,
            Err(error) => {
                // Put the frozen head back so nothing becomes unreadable; its WAL segments are still there.
                let mut head = self.head.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                let current = std::mem::take(&mut *head);
                let mut restored = Arc::try_unwrap(frozen).unwrap_or_else(|shared| Head {
                    traces: shared.traces.clone(),
                    span_count: shared.span_count,
                    first_push_unix_nano: shared.first_push_unix_nano,
                });
                for trace in current.traces.into_values() {
                    restored.insert(Arc::unwrap_or_clone(trace), current.first_push_unix_nano);
                }
                *head = restored;
                *self.cutting.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                return Err(error);
            }
        };
        tracing::info!(path = %path.display(), spans = block.summary.span_count, bytes = block.size_bytes, "trace block written");
        {
            let mut blocks = self.blocks.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            blocks.push(Arc::new(block));
            *self.cutting.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
        self.wal.truncate_before(wal_through_segment)?;
        Ok(())
    }

    /// Periodic work: cuts a block when the head is older than `max_head_age`, and deletes blocks whose
    /// newest span ended before the retention window. `serve` calls it every few seconds.
    ///
    /// # Errors
    /// As [`TraceStore::cut_block`], or [`TraceStoreError::Io`] when a block cannot be deleted.
    pub fn maintain(&self) -> Result<(), TraceStoreError> {
        let now = now_unix_nano();
        let head_is_old = {
            let head = self.head.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            head.span_count > 0
                && now.saturating_sub(head.first_push_unix_nano) >= self.options.max_head_age.as_nanos() as u64
        };
        if head_is_old {
            self.cut_block()?;
        }
        self.apply_retention(now)
    }

    /// Deletes blocks whose newest span ended before `now_unix_nano - retention`.
    ///
    /// # Errors
    /// [`TraceStoreError::Io`] naming the block that could not be deleted.
    pub fn apply_retention(&self, now_unix_nano: u64) -> Result<(), TraceStoreError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let oldest_kept = now_unix_nano.saturating_sub(self.options.retention.as_nanos() as u64);
        let expired: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (expired, kept): (Vec<_>, Vec<_>) =
                blocks.drain(..).partition(|block| block.summary.max_end_unix_nano < oldest_kept);
            *blocks = kept;
            expired
        };
        for block in expired {
            std::fs::remove_file(&block.path)
                .map_err(|error| TraceStoreError::io(&block.path, "delete expired block", error))?;
            tracing::info!(path = %block.path.display(), "trace block deleted by retention");
        }
        Ok(())
    }

    /// The trace with `trace_id` from head and blocks, merged; see [`TraceReader::trace_by_id`].
    ///
    /// # Errors
    /// [`TraceStoreError::Io`] or [`TraceStoreError::Corrupt`] when a block page cannot be read.
    pub fn find_trace(&self, trace_id: &TraceId, window: Option<(u64, u64)>) -> Result<Option<Trace>, TraceStoreError> {
        let mut found: Option<Trace> = None;
        let mut add = |trace: Trace| match &mut found {
            Some(existing) => merge_trace(existing, trace),
            None => found = Some(trace),
        };
        // Head, then the head being cut, then blocks: a concurrent cut moves a trace only forward in this
        // order, so it is seen at least once (twice at worst; duplicates are removed below).
        if let Some(trace) = self.head.read().unwrap_or_else(|poisoned| poisoned.into_inner()).traces.get(trace_id) {
            add(Trace::clone(trace));
        }
        if let Some(cutting) = self.cutting.read().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref()
            && let Some(trace) = cutting.traces.get(trace_id)
        {
            add(Trace::clone(trace));
        }
        let blocks: Vec<Arc<Block>> = self.blocks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for block in &blocks {
            if let Some((start, end)) = window
                && (block.summary.max_end_unix_nano < start || block.summary.min_start_unix_nano >= end)
            {
                continue;
            }
            if let Some(trace) = block.trace(trace_id)? {
                add(trace);
            }
        }
        Ok(found.map(remove_duplicate_spans).and_then(|trace| restrict_to_window(trace, window)))
    }

    /// Visits traces with a span starting in `[start, end)`: head first, then blocks newest first (a trace
    /// whose spans are split between the head and a block, or between blocks, is visited once per part).
    /// Blocks whose summary rules out `hints` are skipped.
    ///
    /// # Errors
    /// [`TraceStoreError::Io`] or [`TraceStoreError::Corrupt`] when a block page cannot be read.
    pub fn scan(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        hints: &TraceScanHints,
        visit: &mut dyn FnMut(&Trace) -> bool,
    ) -> Result<(), TraceStoreError> {
        for trace in &self.in_memory_traces(start_unix_nano, end_unix_nano) {
            if !visit(trace) {
                return Ok(());
            }
        }
        for block in self.blocks_newest_first(start_unix_nano, end_unix_nano) {
            if !block.summary.may_match(hints) {
                continue;
            }
            let finished = block.for_each_trace(hints, &mut |trace| {
                if overlaps(&trace, start_unix_nano, end_unix_nano) { visit(&trace) } else { true }
            })?;
            if !finished {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Visits the span columns of every span starting in `[start, end)`: head spans and blocks without
    /// columns (version 1) from their traces, other blocks from their span columns, reading only `columns`
    /// and the start; see [`TraceReader::scan_span_columns`].
    ///
    /// # Errors
    /// [`TraceStoreError::Io`] or [`TraceStoreError::Corrupt`] when a block cannot be read.
    pub fn scan_span_rows(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        columns: SpanColumnSet,
        visit: &mut dyn FnMut(&SpanColumnsRow<'_>) -> bool,
    ) -> Result<(), TraceStoreError> {
        for trace in &self.in_memory_traces(start_unix_nano, end_unix_nano) {
            if !visit_span_rows(trace, start_unix_nano, end_unix_nano, visit) {
                return Ok(());
            }
        }
        for block in self.blocks_newest_first(start_unix_nano, end_unix_nano) {
            let finished = if block.has_span_columns() {
                block.for_each_span_row(start_unix_nano, end_unix_nano, columns, visit)?
            } else {
                block.for_each_trace(&TraceScanHints::default(), &mut |trace| {
                    visit_span_rows(&trace, start_unix_nano, end_unix_nano, visit)
                })?
            };
            if !finished {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The blocks whose time range overlaps `[start, end)`, newest first.
    fn blocks_newest_first(&self, start_unix_nano: u64, end_unix_nano: u64) -> Vec<Arc<Block>> {
        let blocks = self.blocks.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        blocks
            .iter()
            .rev()
            .filter(|block| {
                block.summary.max_end_unix_nano >= start_unix_nano && block.summary.min_start_unix_nano < end_unix_nano
            })
            .cloned()
            .collect()
    }

    /// The head's and the cutting head's traces with a span starting in `[start, end)` (shared, not copied:
    /// the caller evaluates them after the locks are released).
    fn in_memory_traces(&self, start_unix_nano: u64, end_unix_nano: u64) -> Vec<Arc<Trace>> {
        let head = self.head.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cutting = self.cutting.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        head.traces
            .values()
            .chain(cutting.iter().flat_map(|frozen| frozen.traces.values()))
            .filter(|trace| overlaps(trace, start_unix_nano, end_unix_nano))
            .cloned()
            .collect()
    }

    /// A snapshot of the store's counters.
    pub fn stats(&self) -> TraceStoreStats {
        let head = self.head.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let blocks = self.blocks.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        TraceStoreStats {
            head_spans: head.span_count,
            head_traces: head.traces.len() as u64,
            blocks: blocks.len() as u64,
            block_bytes: blocks.iter().map(|block| block.size_bytes).sum(),
            block_spans: blocks.iter().map(|block| block.summary.span_count).sum(),
            accepted_spans_total: self.accepted_spans_total.load(Ordering::Relaxed),
            rejected_spans_total: self.rejected_spans_total.load(Ordering::Relaxed),
            dropped_traces_total: self.dropped_traces_total.load(Ordering::Relaxed),
        }
    }

    /// Bytes of the WAL directory.
    ///
    /// # Errors
    /// [`TraceStoreError::Wal`] when it cannot be listed.
    pub fn wal_size_bytes(&self) -> Result<u64, TraceStoreError> {
        Ok(self.wal.size_bytes()?)
    }

    /// Flushes and closes the WAL; later writes fail with [`TraceStoreError::Closed`]. The head is not cut
    /// into a block: it is replayed from the WAL on the next open. Idempotent.
    ///
    /// # Errors
    /// [`TraceStoreError::Wal`] when the final fsync fails.
    pub fn close(&self) -> Result<(), TraceStoreError> {
        self.closed.store(true, Ordering::Release);
        Ok(self.wal.close()?)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }
}

/// Applies one WAL record to the head during replay.
fn apply_record(head: &mut Head, record: &[u8], now: u64) -> Result<(), TraceStoreError> {
    let Some((&record_type, body)) = record.split_first() else {
        return Err(TraceStoreError::corrupt("wal", 0, "empty record"));
    };
    match record_type {
        RECORD_SPANS => {
            let traces = encoding::decode_traces(body)
                .map_err(|error| TraceStoreError::corrupt("wal", error.offset as u64 + 1, error.reason))?;
            for trace in traces {
                head.insert(trace, now);
            }
        }
        RECORD_TOMBSTONES => {
            let mut decoder = encoding::plain_reader(body);
            let count = decoder
                .uvarint()
                .map_err(|error| TraceStoreError::corrupt("wal", error.offset as u64 + 1, error.reason))?;
            let ids = body.get(decoder.position()..).unwrap_or_default();
            if ids.len() as u64 != count.saturating_mul(16) {
                return Err(TraceStoreError::corrupt("wal", 1, "tombstone record length does not match its count"));
            }
            for chunk in ids.chunks_exact(16) {
                let mut trace_id = [0u8; 16];
                trace_id.copy_from_slice(chunk);
                head.remove(&trace_id);
            }
        }
        other => return Err(TraceStoreError::corrupt("wal", 0, format!("unknown record type {other}"))),
    }
    Ok(())
}

impl TraceWriter for TraceStore {
    fn push(&self, batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError> {
        Ok(self.push_batches(batches)?)
    }

    fn drop_traces(&self, trace_ids: &[TraceId]) -> Result<(), StorageError> {
        Ok(self.drop_head_traces(trace_ids)?)
    }
}

impl TraceReader for TraceStore {
    fn trace_by_id(&self, trace_id: &TraceId, window: Option<(u64, u64)>) -> Result<Option<Trace>, StorageError> {
        Ok(self.find_trace(trace_id, window)?)
    }

    fn scan_traces(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        hints: &TraceScanHints,
        visit: &mut dyn FnMut(&Trace) -> bool,
    ) -> Result<(), StorageError> {
        Ok(self.scan(start_unix_nano, end_unix_nano, hints, visit)?)
    }

    fn scan_span_columns(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        columns: SpanColumnSet,
        visit: &mut dyn FnMut(&SpanColumnsRow<'_>) -> bool,
    ) -> Result<(), StorageError> {
        Ok(self.scan_span_rows(start_unix_nano, end_unix_nano, columns, visit)?)
    }
}

//! The tail sampler: a state machine over trace ids, driven by explicit times so tests need no sleeping.
//!
//! Spans are stored as they arrive; the sampler only remembers, per held trace, what its decision needs (any
//! error, the root's duration, the service whose overrides apply, the span time extent). A trace is decided
//! once no span of it has arrived for the wait; dropped traces are handed back to the caller, which removes
//! them from the store with [`oxeye_model::traces::TraceWriter::drop_traces`]. Recent decisions are remembered
//! (bounded, oldest forgotten first) so late spans follow their trace's decision.
//!
//! Memory is bounded by [`TailSamplingOptions::max_held_traces`] held traces (about 120 bytes each) plus
//! [`TailSamplingOptions::decision_cache_size`] remembered decisions (about 60 bytes each).

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use oxeye_model::traces::TraceId;

use super::options::TailSamplingOptions;

/// Why a trace was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeepReason {
    /// Some span has status error.
    Error,
    /// The root span (or, without a root, the spans' time extent) lasted longer than the slow threshold.
    Slow,
    /// The trace id's hash fell under the keep rate.
    Rate,
}

impl KeepReason {
    /// The `reason` label value in `/metrics`: `error`, `slow` or `rate`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Error => "error",
            KeepReason::Slow => "slow",
            KeepReason::Rate => "rate",
        }
    }
}

/// What the tail sampler decided for a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplingDecision {
    /// The trace stays in the store.
    Keep(KeepReason),
    /// The trace is removed from the store.
    Drop,
}

impl SamplingDecision {
    /// Whether the trace is kept.
    pub fn is_keep(self) -> bool {
        matches!(self, SamplingDecision::Keep(_))
    }
}

/// A 64-bit hash of a trace id, the same on every platform and in every process (SplitMix64's finaliser over
/// the two little-endian halves), so the rate decision of a trace never changes.
pub fn trace_id_hash(trace_id: &TraceId) -> u64 {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = *trace_id;
    let high = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
    let low = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
    mix64(high ^ mix64(low ^ 0x6f78_6579_655f_7473))
}

fn mix64(value: u64) -> u64 {
    let mut mixed = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

/// Whether a trace that is neither an error nor slow is kept at `rate` (`0.0..=1.0`): true when the trace
/// id's hash, as a fraction of 2^64, is below `rate`. Consistent: the same id always gets the same answer,
/// and an id kept at a rate is kept at every higher rate.
pub fn keep_by_rate(trace_id: &TraceId, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate.is_nan() || rate <= 0.0 {
        return false;
    }
    // 53 bits: exactly representable as an f64 fraction.
    let position = (trace_id_hash(trace_id) >> 11) as f64 / (1u64 << 53) as f64;
    position < rate
}

/// The rules with per-service overrides resolved to small indexes, so a held trace stores two bytes instead
/// of a service name.
#[derive(Debug, Clone)]
pub(crate) struct SamplingPolicy {
    wait_ms: u64,
    rate: f64,
    slow_threshold_nanos: u64,
    /// `(rate, slow threshold in ns)` per override index.
    overrides: Vec<(f64, u64)>,
    override_by_service: HashMap<String, u16>,
}

fn duration_nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl SamplingPolicy {
    pub(crate) fn new(options: &TailSamplingOptions) -> Self {
        let slow_threshold_nanos = duration_nanos(options.slow_threshold);
        let mut overrides = Vec::new();
        let mut override_by_service = HashMap::new();
        // More than u16::MAX services with overrides is not a configuration anyone writes; extra ones are ignored.
        for (index, (service, service_options)) in options.services.iter().enumerate().take(usize::from(u16::MAX)) {
            let rate = service_options.rate.unwrap_or(options.rate);
            let threshold = service_options.slow_threshold.map_or(slow_threshold_nanos, duration_nanos);
            overrides.push((rate, threshold));
            override_by_service.insert(service.clone(), u16::try_from(index).unwrap_or(u16::MAX));
        }
        SamplingPolicy {
            wait_ms: u64::try_from(options.wait.as_millis()).unwrap_or(u64::MAX),
            rate: options.rate,
            slow_threshold_nanos,
            overrides,
            override_by_service,
        }
    }

    /// The override index of `service`, if it has overrides.
    pub(crate) fn service_override(&self, service: &str) -> Option<u16> {
        if self.override_by_service.is_empty() {
            return None;
        }
        self.override_by_service.get(service).copied()
    }

    fn rate_and_threshold(&self, service_override: Option<u16>) -> (f64, u64) {
        service_override
            .and_then(|index| self.overrides.get(usize::from(index)).copied())
            .unwrap_or((self.rate, self.slow_threshold_nanos))
    }
}

/// What one push contributes to one trace: built by the pipeline from the spans of a push, one per trace id.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceObservation {
    /// The trace.
    pub trace_id: TraceId,
    /// Spans of the trace in this push.
    pub spans: u32,
    /// Whether any of them has status error.
    pub has_error: bool,
    /// The root span's duration in nanoseconds, when the root is among them.
    pub root_duration_nanos: Option<u64>,
    /// The override index of the root span's service, when the root is among them.
    pub root_service_override: Option<u16>,
    /// The override index of the first span's service.
    pub first_service_override: Option<u16>,
    /// The earliest span start, nanoseconds since the Unix epoch.
    pub min_start_unix_nano: u64,
    /// The latest span end, nanoseconds since the Unix epoch.
    pub max_end_unix_nano: u64,
}

impl TraceObservation {
    /// An observation of no spans yet.
    pub fn new(trace_id: TraceId) -> Self {
        TraceObservation {
            trace_id,
            spans: 0,
            has_error: false,
            root_duration_nanos: None,
            root_service_override: None,
            first_service_override: None,
            min_start_unix_nano: u64::MAX,
            max_end_unix_nano: 0,
        }
    }

    /// Adds one span: its status, whether it is the root, its times and its service's override index.
    pub fn add_span(&mut self, span: &oxeye_model::traces::Span, service_override: Option<u16>) {
        if self.spans == 0 {
            self.first_service_override = service_override;
        }
        self.spans = self.spans.saturating_add(1);
        self.has_error |= span.status_code == oxeye_model::traces::StatusCode::Error;
        if span.is_root() {
            self.root_duration_nanos = Some(span.duration_nanos());
            self.root_service_override = service_override;
        }
        self.min_start_unix_nano = self.min_start_unix_nano.min(span.start_time_unix_nano);
        self.max_end_unix_nano = self.max_end_unix_nano.max(span.end_time_unix_nano);
    }
}

#[derive(Debug, Clone)]
struct HeldTrace {
    /// When the trace is decided unless another span arrives, milliseconds since the Unix epoch.
    deadline_ms: u64,
    spans: u32,
    has_error: bool,
    has_root: bool,
    root_duration_nanos: u64,
    service_override: Option<u16>,
    min_start_unix_nano: u64,
    max_end_unix_nano: u64,
}

impl HeldTrace {
    fn new(deadline_ms: u64) -> Self {
        HeldTrace {
            deadline_ms,
            spans: 0,
            has_error: false,
            has_root: false,
            root_duration_nanos: 0,
            service_override: None,
            min_start_unix_nano: u64::MAX,
            max_end_unix_nano: 0,
        }
    }

    fn merge(&mut self, observation: &TraceObservation) {
        if self.spans == 0 {
            self.service_override = observation.first_service_override;
        }
        self.spans = self.spans.saturating_add(observation.spans);
        self.has_error |= observation.has_error;
        if let Some(root_duration_nanos) = observation.root_duration_nanos {
            self.has_root = true;
            self.root_duration_nanos = root_duration_nanos;
            self.service_override = observation.root_service_override;
        }
        self.min_start_unix_nano = self.min_start_unix_nano.min(observation.min_start_unix_nano);
        self.max_end_unix_nano = self.max_end_unix_nano.max(observation.max_end_unix_nano);
    }

    /// The duration compared with the slow threshold: the root's, else the spans' extent.
    fn duration_nanos(&self) -> u64 {
        if self.has_root {
            self.root_duration_nanos
        } else {
            self.max_end_unix_nano.saturating_sub(self.min_start_unix_nano)
        }
    }
}

/// Recent decisions, the oldest forgotten first once `capacity` is reached.
#[derive(Debug)]
struct DecisionCache {
    capacity: usize,
    decisions: HashMap<TraceId, SamplingDecision>,
    order: VecDeque<TraceId>,
}

impl DecisionCache {
    fn get(&self, trace_id: &TraceId) -> Option<SamplingDecision> {
        self.decisions.get(trace_id).copied()
    }

    fn insert(&mut self, trace_id: TraceId, decision: SamplingDecision) {
        if self.capacity == 0 {
            return;
        }
        if self.decisions.insert(trace_id, decision).is_none() {
            self.order.push_back(trace_id);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.decisions.remove(&oldest);
            }
        }
    }
}

/// The sampler's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerCounters {
    /// Spans observed (every span of every push, decided or not).
    pub spans: u64,
    /// Traces kept because a span had status error.
    pub kept_error: u64,
    /// Traces kept because they were slow.
    pub kept_slow: u64,
    /// Traces kept by the rate.
    pub kept_rate: u64,
    /// Traces dropped.
    pub dropped: u64,
    /// Decisions taken before the wait ended because the held-trace limit was reached (also counted in
    /// the kept/dropped counters).
    pub decided_early: u64,
    /// Spans that arrived after their trace was decided keep.
    pub late_spans_kept: u64,
    /// Spans that arrived after their trace was decided drop (removed again).
    pub late_spans_dropped: u64,
    /// Traces held now (a gauge).
    pub held_traces: u64,
}

/// Tail sampling state. Not synchronised: the pipeline keeps it behind a mutex.
#[derive(Debug)]
pub struct TailSampler {
    policy: SamplingPolicy,
    max_held_traces: usize,
    held: HashMap<TraceId, HeldTrace>,
    /// One entry per held trace, by the deadline it had when the entry was pushed (a lower bound of its
    /// current deadline).
    deadlines: BinaryHeap<Reverse<(u64, TraceId)>>,
    decisions: DecisionCache,
    pending_drops: Vec<TraceId>,
    counters: SamplerCounters,
}

impl TailSampler {
    /// A sampler with `options` (validated by the caller, see
    /// [`super::TracePipelineOptions::validate`]).
    pub fn new(options: &TailSamplingOptions) -> Self {
        TailSampler {
            policy: SamplingPolicy::new(options),
            max_held_traces: options.max_held_traces.max(1),
            held: HashMap::new(),
            deadlines: BinaryHeap::new(),
            decisions: DecisionCache {
                capacity: options.decision_cache_size,
                decisions: HashMap::new(),
                order: VecDeque::new(),
            },
            pending_drops: Vec::new(),
            counters: SamplerCounters::default(),
        }
    }

    /// The override index of `service` (for [`TraceObservation::add_span`]); `None` when it has none.
    pub fn service_override(&self, service: &str) -> Option<u16> {
        self.policy.service_override(service)
    }

    /// Registers the spans of one push for one trace at `now_ms` (ms since the Unix epoch). A held trace's
    /// wait starts again; a new trace is held (deciding the trace nearest its deadline first when the limit is
    /// reached); a decided trace's spans follow its decision (a dropped trace is queued for removal again).
    pub fn observe(&mut self, now_ms: u64, observation: &TraceObservation) {
        self.counters.spans += u64::from(observation.spans);
        let trace_id = observation.trace_id;
        if let Some(decision) = self.decisions.get(&trace_id) {
            if decision.is_keep() {
                self.counters.late_spans_kept += u64::from(observation.spans);
            } else {
                self.counters.late_spans_dropped += u64::from(observation.spans);
                self.pending_drops.push(trace_id);
            }
            return;
        }
        let deadline_ms = now_ms.saturating_add(self.policy.wait_ms);
        if !self.held.contains_key(&trace_id) && self.held.len() >= self.max_held_traces {
            self.decide_earliest_now();
        }
        match self.held.entry(trace_id) {
            Entry::Occupied(mut occupied) => {
                let held = occupied.get_mut();
                held.merge(observation);
                held.deadline_ms = held.deadline_ms.max(deadline_ms);
            }
            Entry::Vacant(vacant) => {
                let mut held = HeldTrace::new(deadline_ms);
                held.merge(observation);
                vacant.insert(held);
                self.deadlines.push(Reverse((deadline_ms, trace_id)));
            }
        }
        debug_assert_eq!(self.held.len(), self.deadlines.len(), "one deadline entry per held trace");
    }

    /// Decides every held trace whose wait has passed at `now_ms` and returns the ids to remove from the
    /// store: the traces dropped now, those dropped early under pressure, and dropped traces that received late
    /// spans (sorted, without repeats).
    pub fn expire(&mut self, now_ms: u64) -> Vec<TraceId> {
        while let Some(Reverse((entry_deadline_ms, trace_id))) = self.deadlines.peek().copied() {
            if entry_deadline_ms > now_ms {
                break;
            }
            self.deadlines.pop();
            let Some(held) = self.held.get(&trace_id) else {
                debug_assert!(false, "a deadline entry without a held trace");
                continue;
            };
            if held.deadline_ms > now_ms {
                // New spans moved the deadline since the entry was pushed.
                self.deadlines.push(Reverse((held.deadline_ms, trace_id)));
                continue;
            }
            if let Some(held) = self.held.remove(&trace_id) {
                self.decide(trace_id, &held);
            }
        }
        self.take_pending_drops()
    }

    /// Decides every held trace now (at shutdown) and returns the ids to remove from the store.
    pub fn decide_all(&mut self) -> Vec<TraceId> {
        let held: Vec<(TraceId, HeldTrace)> = self.held.drain().collect();
        self.deadlines.clear();
        for (trace_id, held_trace) in held {
            self.decide(trace_id, &held_trace);
        }
        self.take_pending_drops()
    }

    /// Queues ids whose removal failed, so the next [`TailSampler::expire`] returns them again.
    pub fn retry_drops(&mut self, trace_ids: &[TraceId]) {
        self.pending_drops.extend_from_slice(trace_ids);
    }

    /// The remembered decision for `trace_id`: `None` while it is held or once forgotten.
    pub fn decision(&self, trace_id: &TraceId) -> Option<SamplingDecision> {
        self.decisions.get(trace_id)
    }

    /// Whether `trace_id` is held, waiting for its decision.
    pub fn is_held(&self, trace_id: &TraceId) -> bool {
        self.held.contains_key(trace_id)
    }

    /// The counters so far, with the held-trace gauge.
    pub fn counters(&self) -> SamplerCounters {
        SamplerCounters { held_traces: self.held.len() as u64, ..self.counters }
    }

    fn take_pending_drops(&mut self) -> Vec<TraceId> {
        let mut drops = std::mem::take(&mut self.pending_drops);
        drops.sort_unstable();
        drops.dedup();
        drops
    }

    fn decide_earliest_now(&mut self) {
        while let Some(Reverse((_, trace_id))) = self.deadlines.pop() {
            if let Some(held) = self.held.remove(&trace_id) {
                self.counters.decided_early += 1;
                self.decide(trace_id, &held);
                return;
            }
        }
    }

    fn decide(&mut self, trace_id: TraceId, held: &HeldTrace) -> SamplingDecision {
        let (rate, slow_threshold_nanos) = self.policy.rate_and_threshold(held.service_override);
        let decision = if held.has_error {
            SamplingDecision::Keep(KeepReason::Error)
        } else if held.duration_nanos() > slow_threshold_nanos {
            SamplingDecision::Keep(KeepReason::Slow)
        } else if keep_by_rate(&trace_id, rate) {
            SamplingDecision::Keep(KeepReason::Rate)
        } else {
            SamplingDecision::Drop
        };
        match decision {
            SamplingDecision::Keep(KeepReason::Error) => self.counters.kept_error += 1,
            SamplingDecision::Keep(KeepReason::Slow) => self.counters.kept_slow += 1,
            SamplingDecision::Keep(KeepReason::Rate) => self.counters.kept_rate += 1,
            SamplingDecision::Drop => {
                self.counters.dropped += 1;
                self.pending_drops.push(trace_id);
            }
        }
        self.decisions.insert(trace_id, decision);
        decision
    }
}

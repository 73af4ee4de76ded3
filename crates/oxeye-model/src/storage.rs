//! The metrics storage interface: what writers (remote_write, OTLP, the scraper, recording rules) and
//! readers (PromQL, the Prometheus HTTP API) need from a metrics store, and nothing more.
//!
//! Shaped after Prometheus' `storage/interface.go`: an [`Appender`] collects one request's samples and
//! either commits them all or none; a [`Querier`] reads series whose samples fall in an inclusive
//! `[mint_ms, maxt_ms]` window. `oxeye-tsdb` implements both; nothing here knows its internals.

use crate::{Exemplar, LabelRef, Labels, Matcher, MetricMetadata, Sample};

/// What kind of failure an error is; only the server maps kinds to HTTP status codes and error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request's data is invalid (HTTP 400, Prometheus `bad_data`).
    BadData,
    /// The data is well formed but cannot be processed, e.g. a query execution error (HTTP 422).
    Invalid,
    /// A configured limit was hit (HTTP 429, or 413 for sizes).
    Limit,
    /// The store cannot take writes or answer now (HTTP 503).
    Unavailable,
    /// A bug or an I/O failure (HTTP 500).
    Internal,
}

/// Why a sample, an exemplar or a commit was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum StorageError {
    /// The sample is older than the newest sample of its series (Prometheus `ErrOutOfOrderSample`).
    #[error(
        "out of order sample for series {series} at timestamp {timestamp_ms} ms (newest is {newest_timestamp_ms} ms)"
    )]
    OutOfOrderSample {
        /// The series, in text form.
        series: String,
        /// The rejected sample's timestamp, in milliseconds.
        timestamp_ms: i64,
        /// The series' newest accepted timestamp, in milliseconds.
        newest_timestamp_ms: i64,
    },
    /// The sample is older than the store accepts (before the head's window or retention), Prometheus
    /// `ErrOutOfBounds`.
    #[error(
        "out of bounds: sample for series {series} at timestamp {timestamp_ms} ms is before the minimum accepted {min_valid_timestamp_ms} ms"
    )]
    OutOfBounds {
        /// The series, in text form.
        series: String,
        /// The rejected sample's timestamp, in milliseconds.
        timestamp_ms: i64,
        /// The oldest timestamp the store accepts now, in milliseconds.
        min_valid_timestamp_ms: i64,
    },
    /// Another value already exists at the same timestamp (Prometheus `ErrDuplicateSampleForTimestamp`).
    #[error("duplicate sample for timestamp {timestamp_ms} ms with a different value for series {series}")]
    DuplicateSampleForTimestamp {
        /// The series, in text form.
        series: String,
        /// The timestamp, in milliseconds.
        timestamp_ms: i64,
    },
    /// The label set is not acceptable (no metric name, an invalid or duplicate name).
    #[error("invalid labels {series}: {reason}")]
    InvalidLabels {
        /// The series, in text form.
        series: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A limit such as the maximum number of series was reached.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The store is shutting down or not yet ready.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// An I/O error while writing or reading; the message names the file.
    #[error("storage i/o error: {0}")]
    Io(String),
}

impl StorageError {
    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::OutOfOrderSample { .. }
            | StorageError::OutOfBounds { .. }
            | StorageError::DuplicateSampleForTimestamp { .. }
            | StorageError::InvalidLabels { .. } => ErrorKind::BadData,
            StorageError::LimitExceeded(_) => ErrorKind::Limit,
            StorageError::Unavailable(_) => ErrorKind::Unavailable,
            StorageError::Io(_) => ErrorKind::Internal,
        }
    }
}

/// What a successful [`Appender::commit`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitSummary {
    /// Float samples stored.
    pub samples: u64,
    /// Exemplars stored.
    pub exemplars: u64,
    /// Series created by this commit.
    pub series_created: u64,
}

/// A series one [`Appender`] holds for its batch, as [`Appender::hold_protobuf_labels`] returns it: a
/// position meaningful only to that appender, until it commits or rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldSeries(pub u32);

/// Collects samples for one atomic commit.
///
/// `append` validates each sample against the store and the batch so far; a refused sample is not added,
/// and the caller chooses whether to go on (a scrape skips it and counts it) or to [`Appender::rollback`]
/// the whole batch (remote_write answers 400 and stores nothing, as Prometheus does).
pub trait Appender: Send {
    /// Adds one float sample of the series `labels` to the batch.
    ///
    /// # Errors
    /// [`StorageError::OutOfOrderSample`], [`StorageError::OutOfBounds`],
    /// [`StorageError::DuplicateSampleForTimestamp`], [`StorageError::InvalidLabels`],
    /// [`StorageError::LimitExceeded`]; the batch is unchanged on error.
    fn append(&mut self, labels: &Labels, sample: Sample) -> Result<(), StorageError>;

    /// As [`Appender::append`] for a series given as borrowed labels (sorted by name, unique, non-empty),
    /// so a store can find an existing series without allocating. The store hashes the labels its own way
    /// (the caller computes nothing per series). The default builds the [`Labels`] and calls
    /// [`Appender::append`].
    ///
    /// # Errors
    /// As [`Appender::append`].
    fn append_ref(&mut self, labels: &[LabelRef<'_>], sample: Sample) -> Result<(), StorageError> {
        self.append(&Labels::from_refs(labels), sample)
    }

    /// Finds and holds for this batch the series whose labels a remote_write 1.0 sender encoded as
    /// `protobuf_labels`: the exact bytes of the consecutive `labels` fields (`prometheus.Label`
    /// messages) at the start of a `TimeSeries`, as [`Appender::cache_protobuf_labels`] remembered them.
    /// A store that answers `Some` guarantees that decoding those bytes would give exactly that series'
    /// labels (sorted, valid UTF-8, no empty value), so the caller may skip decoding and validating them
    /// and append with [`Appender::append_held`]. The default asks
    /// [`Appender::hold_protobuf_labels_batch`] with this one key.
    fn hold_protobuf_labels(&mut self, protobuf_labels: &[u8]) -> Option<HeldSeries> {
        let mut held = Vec::with_capacity(1);
        self.hold_protobuf_labels_batch(&[protobuf_labels], &mut held);
        held.pop().flatten()
    }

    /// [`Appender::hold_protobuf_labels`] for many series at once (typically every series of one
    /// request, so that a store can overlap their memory accesses): pushes one entry per key onto `held`,
    /// in order; an empty key is never found. The default knows no series.
    fn hold_protobuf_labels_batch(&mut self, keys: &[&[u8]], held: &mut Vec<Option<HeldSeries>>) {
        held.extend(keys.iter().map(|_| None));
    }

    /// Remembers that `protobuf_labels` (as in [`Appender::hold_protobuf_labels`]) decoded to `labels`, a
    /// series this batch appended to. Bytes the store cannot verify against the labels are ignored. The
    /// default remembers nothing.
    fn cache_protobuf_labels(&mut self, protobuf_labels: &[u8], labels: &[LabelRef<'_>]) {
        let _ = (protobuf_labels, labels);
    }

    /// As [`Appender::append`] for a series this appender returned from
    /// [`Appender::hold_protobuf_labels`].
    ///
    /// # Errors
    /// As [`Appender::append`]; [`StorageError::Unavailable`] for a series this appender does not hold
    /// (always, by default, as the default holds none).
    fn append_held(&mut self, series: HeldSeries, sample: Sample) -> Result<(), StorageError> {
        let _ = sample;
        Err(StorageError::Unavailable(format!("series {} is not held by this appender", series.0)))
    }

    /// Adds one exemplar of the series `labels`. Exemplars are best effort: an out-of-order exemplar is
    /// refused without affecting samples.
    ///
    /// # Errors
    /// [`StorageError::OutOfOrderSample`] for an exemplar older than the series' newest exemplar.
    fn append_exemplar(&mut self, labels: &Labels, exemplar: Exemplar) -> Result<(), StorageError>;

    /// Records the metadata of a metric family (by family name, e.g. `django_http_requests` for a counter
    /// whose samples are `django_http_requests_total`, or the sample name for remote_write senders).
    fn update_metadata(&mut self, metric_family_name: &str, metadata: MetricMetadata);

    /// Makes the batch durable (written to the WAL and fsynced by group commit) and then visible to
    /// queries. Blocks until durable: call it from a blocking thread in async code.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the WAL cannot be written; nothing of the batch is then visible.
    fn commit(self: Box<Self>) -> Result<CommitSummary, StorageError>;

    /// Discards the batch.
    fn rollback(self: Box<Self>);
}

/// One series and its samples in a queried window, oldest first, stale markers included.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Samples in ascending timestamp order, within the window asked for.
    pub samples: Vec<Sample>,
}

/// Exemplars of one series, as `/api/v1/query_exemplars` returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesExemplars {
    /// The series' labels.
    pub series_labels: Labels,
    /// Exemplars in ascending timestamp order.
    pub exemplars: Vec<Exemplar>,
}

/// Reads series from a metrics store. Windows are inclusive `[mint_ms, maxt_ms]` in milliseconds.
pub trait Querier: Send + Sync {
    /// Every series matching all `matchers` (which must include at least one matcher that does not match
    /// the empty string, as PromQL guarantees) with its samples in the window. Series without samples in
    /// the window are omitted. Order: by labels.
    ///
    /// # Errors
    /// [`StorageError::Io`] when a block cannot be read.
    fn select(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError>;

    /// The series [`Querier::select`] returns, in the same order, handed to `visit` one at a time, so a
    /// caller that folds them (an aggregation, say) holds one series' samples at once instead of all of
    /// them. A store that can read series lazily overrides it; the default calls `select`.
    ///
    /// # Errors
    /// [`StorageError::Io`] when a block cannot be read, or the first error `visit` returns (no further
    /// series are read after it).
    fn select_each(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        visit: &mut dyn FnMut(Series) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for series in self.select(mint_ms, maxt_ms, matchers)? {
            visit(series)?;
        }
        Ok(())
    }

    /// As [`Querier::select_each`] for a caller that looks only at some labels (an aggregation `by`
    /// some of them): a store may leave out of each series' labels those whose name `keep_label`
    /// rejects, saving their copies. The series are the same, in the same order, but two of them may then
    /// carry equal labels. The default keeps every label.
    ///
    /// # Errors
    /// As [`Querier::select_each`].
    fn select_each_projected(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        keep_label: &dyn Fn(&str) -> bool,
        visit: &mut dyn FnMut(Series) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let _ = keep_label;
        self.select_each(mint_ms, maxt_ms, matchers, visit)
    }

    /// The labels of every series matching all `matchers` (all series when empty) that has samples in the
    /// window, without samples. Order: by labels.
    ///
    /// # Errors
    /// [`StorageError::Io`] when a block cannot be read.
    fn series(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError>;

    /// Sorted, distinct label names of the series matching `matchers` (all series when empty) with data in
    /// the window.
    ///
    /// # Errors
    /// [`StorageError::Io`] when a block cannot be read.
    fn label_names(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;

    /// Sorted, distinct values of label `name` over the series matching `matchers` (all series when empty)
    /// with data in the window.
    ///
    /// # Errors
    /// [`StorageError::Io`] when a block cannot be read.
    fn label_values(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError>;
}

/// A metrics store: hands out appenders and queriers, and reports metadata and exemplars.
pub trait MetricsStorage: Querier {
    /// A new, empty batch.
    fn appender(&self) -> Box<dyn Appender>;

    /// Metadata per metric family name, sorted by name (at most `limit` families when given).
    fn metadata(&self, metric_family_name: Option<&str>, limit: Option<usize>) -> Vec<(String, MetricMetadata)>;

    /// Exemplars in the window of the series matching any of `matcher_sets` (each set ANDed).
    ///
    /// # Errors
    /// [`StorageError::Io`] when stored exemplars cannot be read.
    fn exemplars(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matcher_sets: &[Vec<Matcher>],
    ) -> Result<Vec<SeriesExemplars>, StorageError>;
}

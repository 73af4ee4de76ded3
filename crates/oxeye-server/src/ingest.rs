//! Appending decoded metrics to the storage, shared by remote_write, OTLP/HTTP and OTLP/gRPC.

use oxeye_model::storage::{Appender, ErrorKind, StorageError};
use oxeye_model::{Exemplar, Labels, MetricMetadata, Sample};

use crate::ServerState;

/// One decoded series with its samples and exemplars, in the order the sender gave them.
pub(crate) struct SeriesInput {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar>,
}

/// What a write stores, protocol-independent.
pub(crate) struct BatchInput {
    pub series: Vec<SeriesInput>,
    pub metadata: Vec<(String, MetricMetadata)>,
    /// Data points the decoder already refused (OTLP partial success), with the first reason.
    pub rejected_by_decoder: u64,
    pub decoder_message: String,
}

/// What happens to a request with a refused sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RejectPolicy {
    /// Prometheus remote_write: the whole request is refused with 400 and nothing is stored.
    WholeRequest,
    /// OTLP: refused data points are skipped and reported in `partial_success`; the rest is stored.
    SkipAndReport,
}

/// What a stored write reports back.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StoreOutcome {
    /// Samples stored.
    pub stored: u64,
    /// Data points refused (decoder and storage together).
    pub rejected: u64,
    /// The first reason for a refusal, empty when none.
    pub message: String,
}

fn reason_label(error: &StorageError) -> &'static str {
    match error {
        StorageError::OutOfOrderSample { .. } => "out_of_order",
        StorageError::OutOfBounds { .. } => "out_of_bounds",
        StorageError::DuplicateSampleForTimestamp { .. } => "duplicate",
        StorageError::InvalidLabels { .. } => "invalid",
        StorageError::LimitExceeded(_) => "limit",
        StorageError::Unavailable(_) | StorageError::Io(_) => "storage",
    }
}

/// The message of a request refused whole: the first problem, how many more of `what` there were, and
/// that nothing of the request was stored.
pub(crate) fn refusal_message(first: &dyn std::fmt::Display, more: u64, what: &str) -> String {
    if more > 0 {
        format!("{first} (and {more} more {what}; nothing of this request was stored)")
    } else {
        format!("{first} (nothing of this request was stored)")
    }
}

/// Appends a batch and commits it (blocking: call from a blocking thread).
///
/// # Errors
/// `(kind, message)` when the request is refused: under [`RejectPolicy::WholeRequest`] for the first
/// refused sample (message says how many samples of the request were refused), or when the commit fails.
pub(crate) fn store_batch(
    state: &ServerState,
    batch: BatchInput,
    policy: RejectPolicy,
    protocol: &str,
) -> Result<StoreOutcome, (ErrorKind, String)> {
    let storage = state.storage().map_err(|error| (ErrorKind::Unavailable, error.message))?;
    let mut appender: Box<dyn Appender> = storage.appender();
    let mut outcome =
        StoreOutcome { stored: 0, rejected: batch.rejected_by_decoder, message: batch.decoder_message.clone() };
    let mut first_error: Option<StorageError> = None;
    let mut refused_in_request: u64 = 0;
    for series in &batch.series {
        for sample in &series.samples {
            match appender.append(&series.labels, *sample) {
                Ok(()) => outcome.stored += 1,
                Err(error) => {
                    if matches!(error, StorageError::Io(_) | StorageError::Unavailable(_)) {
                        appender.rollback();
                        return Err((error.kind(), error.to_string()));
                    }
                    state.metrics.ingest_rejected_samples.add(&[protocol, reason_label(&error)], 1);
                    refused_in_request += 1;
                    first_error.get_or_insert(error);
                }
            }
        }
        for exemplar in &series.exemplars {
            // Exemplars are best effort, as in Prometheus: a refused one does not fail the request.
            let _ = appender.append_exemplar(&series.labels, exemplar.clone());
        }
    }
    if let Some(error) = &first_error {
        if policy == RejectPolicy::WholeRequest {
            appender.rollback();
            return Err((error.kind(), refusal_message(error, refused_in_request - 1, "refused samples")));
        }
        outcome.rejected += refused_in_request;
        if outcome.message.is_empty() {
            outcome.message = error.to_string();
        }
    }
    for (family, metadata) in &batch.metadata {
        appender.update_metadata(family, metadata.clone());
    }
    appender.commit().map_err(|error| (error.kind(), error.to_string()))?;
    state.metrics.ingest_samples.add(&[protocol], outcome.stored);
    Ok(outcome)
}

/// Stores a decoded remote_write request all-or-nothing through `appender` (the one the view was decoded
/// with), as Prometheus does: the first refused sample (out of order, too old, duplicate) rolls the whole
/// request back. Series the decoder found by their raw label bytes are appended by reference; the others
/// are looked up by their borrowed labels, and their raw label bytes are remembered for the next request.
///
/// # Errors
/// `(kind, message)` naming the first refused sample and how many more were refused, or the commit error.
/// Returns `(samples, exemplars)` stored.
pub(crate) fn store_write_request(
    state: &ServerState,
    mut appender: Box<dyn Appender>,
    view: &oxeye_ingest::remote_write::WriteRequestView<'_>,
) -> Result<(u64, u64), (ErrorKind, String)> {
    const PROTOCOL: &str = "remote_write";
    let mut first_error: Option<StorageError> = None;
    let mut refused: u64 = 0;
    let mut exemplars: u64 = 0;
    for series in view.series() {
        for sample in series.samples() {
            let appended = match series.held() {
                Some(held) => appender.append_held(held, *sample),
                None => appender.append_ref(series.labels(), *sample),
            };
            if let Err(error) = appended {
                if matches!(error, StorageError::Io(_) | StorageError::Unavailable(_)) {
                    appender.rollback();
                    return Err((error.kind(), error.to_string()));
                }
                state.metrics.ingest_rejected_samples.add(&[PROTOCOL, reason_label(&error)], 1);
                refused += 1;
                first_error.get_or_insert(error);
            }
        }
        if series.held().is_none() && !series.protobuf_labels().is_empty() {
            // After the appends, which created the series if it was new.
            appender.cache_protobuf_labels(series.protobuf_labels(), series.labels());
        }
        if !series.exemplars().is_empty() {
            let labels = series.to_labels();
            for exemplar in series.exemplars() {
                // Best effort, as in Prometheus: a refused exemplar does not fail the request.
                if appender.append_exemplar(&labels, exemplar.clone()).is_ok() {
                    exemplars += 1;
                }
            }
        }
    }
    if let Some(error) = first_error {
        appender.rollback();
        return Err((error.kind(), refusal_message(&error, refused - 1, "refused samples")));
    }
    for family in view.metadata() {
        appender.update_metadata(&family.metric_family_name, family.metadata.clone());
    }
    let summary = appender.commit().map_err(|error| (error.kind(), error.to_string()))?;
    state.metrics.ingest_samples.add(&[PROTOCOL], summary.samples);
    Ok((summary.samples, exemplars))
}

/// Translates an OTLP metrics request to Prometheus series (the standard OTLP-to-Prometheus rules, see
/// `oxeye_ingest::otlp_metrics`) and stores what can be stored; refused data points are reported for
/// `partial_success`.
///
/// # Errors
/// `(kind, message)` when the storage is unavailable or the commit fails.
pub(crate) fn store_otlp_metrics(
    state: &ServerState,
    request: &oxeye_proto::otlp::collector::ExportMetricsServiceRequest,
    protocol: &str,
) -> Result<StoreOutcome, (ErrorKind, String)> {
    let translated = oxeye_ingest::otlp_metrics::translate_metrics(request, &Default::default());
    let mut series: Vec<SeriesInput> = Vec::with_capacity(translated.samples.len() + translated.exemplars.len());
    for (labels, sample) in translated.samples {
        match series.last_mut() {
            Some(previous) if previous.labels == labels => previous.samples.push(sample),
            _ => series.push(SeriesInput { labels, samples: vec![sample], exemplars: Vec::new() }),
        }
    }
    for (labels, exemplar) in translated.exemplars {
        series.push(SeriesInput { labels, samples: Vec::new(), exemplars: vec![exemplar] });
    }
    if translated.rejected_data_points > 0 {
        state.metrics.ingest_rejected_samples.add(&[protocol, "untranslatable"], translated.rejected_data_points);
    }
    let batch = BatchInput {
        series,
        metadata: translated.metadata.into_iter().map(|family| (family.metric_family_name, family.metadata)).collect(),
        rejected_by_decoder: translated.rejected_data_points,
        decoder_message: translated.rejection_messages.join("; "),
    };
    store_batch(state, batch, RejectPolicy::SkipAndReport, protocol)
}

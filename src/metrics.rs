//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//!
//! Counters (all prefixed `cocreate_`): `webhooks_received_total{kind}`,
//! `webhooks_rejected_total{reason}`, `webhooks_duplicate_total`, `events_processed_total{outcome}`,
//! `events_retried_total`, `events_dead_lettered_total`, `gitlab_api_calls_total{method,status}`.
//! Gauges set at scrape time: `queue_pending`, `queue_in_flight`, `queue_dead`,
//! `queue_oldest_pending_age_seconds`. Refreshed from GitLab every `--overdue-refresh`:
//! `reviews_overdue` (open Co-Create MRs labelled overdue by `nudge`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::queue::QueueStats;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (tests start several servers in one process).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder already installed; /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

/// Publishes the queue's numbers as gauges.
pub fn record_queue(stats: &QueueStats) {
    metrics::gauge!("cocreate_queue_pending").set(stats.pending as f64);
    metrics::gauge!("cocreate_queue_in_flight").set(stats.in_flight as f64);
    metrics::gauge!("cocreate_queue_dead").set(stats.dead as f64);
    metrics::gauge!("cocreate_queue_oldest_pending_age_seconds")
        .set(stats.oldest_pending_age_ms.unwrap_or(0) as f64 / 1000.0);
}

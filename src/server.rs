//! The HTTP edge: `POST /webhook`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! A delivery is verified, size-limited, parsed (so a malformed supported event is refused with
//! 400 and never stored), stored durably, and only then acknowledged. All GitLab work happens
//! later, in the worker, so GitLab gets its answer in milliseconds.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::events::{self, EventKind};
use crate::queue::{Enqueued, NewEvent, Queue, QueueStats};
use crate::webhook::{SignatureHeaders, Verifier};
use crate::worker::ReadyLimits;

/// GitLab's own limit for webhook payloads.
pub const DEFAULT_BODY_LIMIT: usize = 25 * 1024 * 1024;

/// Headers kept with a stored event (never the secret token).
const KEPT_HEADERS: &[&str] = &[
    "x-gitlab-event",
    "x-gitlab-event-uuid",
    "x-gitlab-webhook-uuid",
    "x-gitlab-instance",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "user-agent",
    "content-type",
];

/// Shared state of the routes.
#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn Queue>,
    pub verifier: Verifier,
    /// Wakes the worker when an event was stored.
    pub wake: Arc<Notify>,
    /// Where the policies came from; `None` means they failed to load (not ready).
    pub policies_source: Option<String>,
    pub now_ms: fn() -> i64,
    /// Backlog limits past which `/readyz` answers 503.
    pub ready: ReadyLimits,
    /// The live policies (version in force, last failed reload) for `/readyz`.
    pub live: Option<Arc<crate::reload::LiveConfig>>,
    /// Whether GitLab accepts the bot's token; refused means not ready.
    pub token: crate::gitlab::TokenHealth,
}

pub fn system_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route(
            "/webhook",
            post(webhook).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn reject(status: StatusCode, reason: &'static str, message: &str) -> Response {
    metrics::counter!("cocreate_webhooks_rejected_total", "reason" => reason).increment(1);
    (status, Json(json!({ "error": message }))).into_response()
}

/// The key a redelivery shares with its original: the first of `Idempotency-Key`, `webhook-id`,
/// `X-Gitlab-Event-UUID`; older GitLab sends none, then a hash of the event kind and body.
pub fn dedupe_key(headers: &HeaderMap, kind: &str, body: &[u8]) -> String {
    for (name, prefix) in [
        ("idempotency-key", "idem"),
        ("webhook-id", "whid"),
        ("x-gitlab-event-uuid", "uuid"),
    ] {
        if let Some(v) = header(headers, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return format!("{prefix}:{v}");
        }
    }
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(body);
    format!("sha256:{}", hex::encode(h.finalize()))
}

async fn webhook(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = s
        .verifier
        .check_token(headers.get("x-gitlab-token").map(|v| v.as_bytes()))
    {
        tracing::warn!(reason = r.label(), "webhook refused");
        return reject(StatusCode::UNAUTHORIZED, r.label(), "unauthorized");
    }
    let sig = SignatureHeaders {
        id: header(&headers, "webhook-id"),
        timestamp: header(&headers, "webhook-timestamp"),
        signature: header(&headers, "webhook-signature"),
    };
    if let Err(r) = s.verifier.check_signature(sig, &body, (s.now_ms)() / 1000) {
        tracing::warn!(reason = r.label(), "webhook refused");
        return reject(StatusCode::UNAUTHORIZED, r.label(), "unauthorized");
    }
    let kind_header = header(&headers, "x-gitlab-event").unwrap_or("").to_owned();
    let kind = EventKind::from_header(&kind_header);
    metrics::counter!("cocreate_webhooks_received_total", "kind" => kind.header()).increment(1);
    match events::parse(kind, &body) {
        Err(e) => {
            tracing::warn!(error = %e, "malformed webhook payload refused");
            return reject(StatusCode::BAD_REQUEST, "malformed", &e.to_string());
        }
        Ok(Err(ignored)) => {
            tracing::debug!(?ignored, "webhook ignored");
            return (StatusCode::OK, Json(json!({ "status": "ignored" }))).into_response();
        }
        Ok(Ok(_)) => {}
    }
    let event = NewEvent {
        dedupe_key: dedupe_key(&headers, &kind_header, &body),
        kind: kind_header,
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|n| header(&headers, n).map(|v| (n.to_string(), v.to_owned())))
            .collect(),
        body: body.to_vec(),
        received_at_ms: (s.now_ms)(),
    };
    match s.queue.enqueue(event).await {
        Ok(Enqueued::New(id)) => {
            s.wake.notify_one();
            (
                StatusCode::OK,
                Json(json!({ "status": "queued", "id": id })),
            )
                .into_response()
        }
        Ok(Enqueued::Duplicate(id)) => {
            metrics::counter!("cocreate_webhooks_duplicate_total").increment(1);
            (
                StatusCode::OK,
                Json(json!({ "status": "duplicate", "id": id })),
            )
                .into_response()
        }
        Err(e) => {
            // Not stored, so not acknowledged: GitLab records the failure.
            tracing::error!(error = %e, "could not store webhook");
            reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_error",
                "could not store the event",
            )
        }
    }
}

/// Ready when the queue takes writes, the policies are loaded, and the backlog is within the
/// configured limits (dead letters, oldest pending age). The body says which check failed.
async fn readyz(State(s): State<AppState>) -> Response {
    let mut problems = Vec::new();
    let queue = match s.queue.ping().await {
        Ok(()) => "writable".to_owned(),
        Err(e) => {
            problems.push("queue not writable".to_owned());
            e.to_string()
        }
    };
    if s.policies_source.is_none() {
        problems.push("policies not loaded".to_owned());
    }
    if s.token.is_refused() {
        problems.push(
            "GitLab refused the token (401): events wait until GITLAB_TOKEN works again".to_owned(),
        );
    }
    let policies = s.live.as_ref().map(|l| l.status());
    let stats = s.queue.stats().await;
    match &stats {
        Ok(stats) => {
            record_limits(&s.ready, stats);
            problems.extend(s.ready.problems(stats));
        }
        Err(e) => problems.push(format!("queue stats unavailable: {e}")),
    }
    let stats = stats.ok();
    let body = json!({
        "status": if problems.is_empty() { "ready" } else { "not ready" },
        "problems": problems,
        "queue": queue,
        "policies": policies.as_ref().map(|p| p.source.as_str()).or(s.policies_source.as_deref()).unwrap_or("not loaded"),
        "policies_version": policies.as_ref().map(|p| p.version.clone()),
        "policies_reload_error": policies.as_ref().and_then(|p| p.last_error.clone()),
        "dead": stats.as_ref().map(|st| st.dead),
        "oldest_pending_age_seconds": stats.as_ref().map(|st| st.oldest_pending_age_ms.unwrap_or(0) / 1000),
        "limits": {
            "max_dead": s.ready.max_dead,
            "max_pending_age_seconds": s.ready.max_pending_age.map(|d| d.as_secs()),
        },
    });
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Publishes the readiness limits next to the queue gauges they apply to:
/// `cocreate_queue_healthy` (1 within every limit, else 0), `cocreate_queue_dead_limit` and
/// `cocreate_queue_oldest_pending_age_limit_seconds` (only when set).
fn record_limits(limits: &ReadyLimits, stats: &QueueStats) {
    let healthy = limits.problems(stats).is_empty();
    metrics::gauge!("cocreate_queue_healthy").set(if healthy { 1.0 } else { 0.0 });
    if let Some(max) = limits.max_dead {
        metrics::gauge!("cocreate_queue_dead_limit").set(max as f64);
    }
    if let Some(max) = limits.max_pending_age {
        metrics::gauge!("cocreate_queue_oldest_pending_age_limit_seconds").set(max.as_secs_f64());
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    if let Ok(stats) = s.queue.stats().await {
        crate::metrics::record_queue(&stats);
        record_limits(&s.ready, &stats);
    }
    match crate::metrics::handle() {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

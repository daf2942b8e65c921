//! The HTTP edge: `POST /webhook`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! A delivery is authenticated from its headers first (a request without a valid token, or
//! with signing keys without valid-looking signature headers, is answered 401 and its body is
//! never read), then its body is read within a size limit, a time limit and a shared memory
//! budget, verified, parsed (so a malformed supported event is refused with 400 and never
//! stored), stored durably, and only then acknowledged. All GitLab work happens later, in the
//! worker, so GitLab gets its answer in milliseconds.

mod body;
mod health;
pub mod hook_health;
mod listen;
mod refusals;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

pub use body::{BodyBudget, BodyError, BodyLimits};
pub use health::{Storage, StorageHealth, ANSWER_WITHIN};
pub use listen::{connection_cap, open_file_limit, ClientAddr, ConnLimits, RESERVED_FDS};
pub use refusals::RefusalLog;

use crate::events::{self, EventKind};
use crate::queue::ReadyLimits;
use crate::queue::{Enqueued, NewEvent, Queue, QueueStats};
use crate::webhook::{Rejection, SignatureHeaders, Verifier};

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

/// The receiver's limits besides the body size (each a `serve` setting, see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverLimits {
    pub conn: ConnLimits,
    /// Bytes of request bodies held in memory at once (at least the body limit).
    pub body_budget: usize,
    /// Longest time to receive a body after its headers.
    pub body_timeout: std::time::Duration,
}

impl Default for ReceiverLimits {
    fn default() -> Self {
        Self {
            conn: ConnLimits::default(),
            body_budget: DEFAULT_BODY_BUDGET,
            body_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Default memory budget of request bodies in flight: two bodies of GitLab's largest size.
pub const DEFAULT_BODY_BUDGET: usize = 64 * 1024 * 1024;

/// Seconds a client is told to wait when the body budget is in use.
const RETRY_AFTER_SECS: &str = "5";

/// Shared state of the routes.
#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn Queue>,
    pub verifier: Verifier,
    /// Wakes the worker when an event was stored.
    pub wake: Arc<Notify>,
    /// Where the policies came from; `None` means they failed to load (not ready).
    pub policies_source: Option<String>,
    /// The time stamped on deliveries and checked against signature timestamps.
    pub clock: crate::clock::Clock,
    /// Backlog limits past which `/readyz` answers 503.
    pub ready: ReadyLimits,
    /// The live policies (version in force, last failed reload) for `/readyz`.
    pub live: Option<Arc<crate::reload::LiveConfig>>,
    /// Whether GitLab accepts the bot's token; refused means not ready.
    pub token: crate::gitlab::TokenHealth,
    pub body: BodyLimits,
    pub budget: BodyBudget,
    pub storage: StorageHealth,
    pub refusals: Arc<RefusalLog>,
    /// Our webhooks' state in GitLab, from the periodic check (warnings in `/readyz`).
    pub hooks: hook_health::HookHealth,
}

impl AppState {
    /// State with the default body limits for `body_limit` and fresh health and logs.
    pub fn new(
        queue: Arc<dyn Queue>,
        verifier: Verifier,
        wake: Arc<Notify>,
        policies_source: Option<String>,
        ready: ReadyLimits,
        body: BodyLimits,
    ) -> Self {
        Self {
            queue,
            verifier,
            wake,
            policies_source,
            clock: crate::clock::Clock::system(),
            ready,
            budget: BodyBudget::new(body.budget),
            body,
            storage: StorageHealth::default(),
            refusals: Arc::default(),
            live: None,
            token: Default::default(),
            hooks: Default::default(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", post(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Serves the routes on `listener` and probes the storage, until `stop` turns true (see
/// [`ConnLimits`] for the timeouts, connection cap and shutdown deadline).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
) {
    let probe = health::probe(state.queue.clone(), state.storage.clone(), stop.clone());
    let app = router(state);
    tokio::join!(listen::serve(listener, app, limits, stop), probe);
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn reject(status: StatusCode, reason: &'static str, message: &str) -> Response {
    metrics::counter!("cocreate_webhooks_rejected_total", "reason" => reason).increment(1);
    (status, Json(json!({ "error": message }))).into_response()
}

/// The key a redelivery shares with its original, scoped by event kind. With signing keys the
/// signed `webhook-id` decides (`signed`), so an unsigned header cannot make a replay look
/// new. Otherwise the first of `Idempotency-Key`, `webhook-id`, `X-Gitlab-Event-UUID`; older
/// GitLab sends none, then a hash of the event kind and body.
pub fn dedupe_key(headers: &HeaderMap, kind: &str, body: &[u8], signed: bool) -> String {
    let kind = kind.trim();
    let named = |name: &str| {
        header(headers, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if signed {
        if let Some(id) = named("webhook-id") {
            return format!("signed:{kind}:{id}");
        }
    }
    for (name, prefix) in [
        ("idempotency-key", "idem"),
        ("webhook-id", "whid"),
        ("x-gitlab-event-uuid", "uuid"),
    ] {
        if let Some(v) = named(name) {
            return format!("{prefix}:{kind}:{v}");
        }
    }
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(body);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// What the receiver makes of an authenticated delivery.
#[derive(Debug)]
pub enum Admission {
    /// A supported event, ready to store (headers kept, dedupe and serial keys set).
    Event(NewEvent),
    /// An event kind or action the tool does not act on.
    Ignored(events::Ignored),
}

/// The receiver's path from an authenticated delivery (headers, body) to the event it stores:
/// parse (malformed is `Err`), dedupe key, serial key, kept headers. `recover` feeds GitLab's
/// recorded failed deliveries through it too, so both dedupe alike.
pub fn admit(
    headers: &HeaderMap,
    body: Vec<u8>,
    signed: bool,
    received_at_ms: i64,
) -> Result<Admission, events::PayloadError> {
    let kind_header = header(headers, "x-gitlab-event").unwrap_or("").to_owned();
    let kind = EventKind::from_header(&kind_header);
    let (serial_key, identity) = match events::parse(kind, &body)? {
        Err(ignored) => return Ok(Admission::Ignored(ignored)),
        Ok(event) => (serial_key(&event), events::identity(&event)),
    };
    Ok(Admission::Event(NewEvent {
        // A new comment or an opened issue is keyed by what it is, so its delivery and the
        // same comment or issue found by `recover`'s fallback sweep are one event.
        dedupe_key: identity.unwrap_or_else(|| dedupe_key(headers, &kind_header, &body, signed)),
        serial_key,
        kind: kind_header,
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|n| header(headers, n).map(|v| (n.to_string(), v.to_owned())))
            .collect(),
        body,
        received_at_ms,
    }))
}

impl AppState {
    fn refuse(&self, r: Rejection, client: Option<ClientAddr>) -> Response {
        self.refusals.refused(r.label(), client.map(|c| c.0));
        reject(StatusCode::UNAUTHORIZED, r.label(), "unauthorized")
    }
}

async fn webhook(State(s): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let client = parts.extensions.get::<ClientAddr>().copied();
    let sig = SignatureHeaders {
        id: header(headers, "webhook-id"),
        timestamp: header(headers, "webhook-timestamp"),
        signature: header(headers, "webhook-signature"),
    };
    let now_unix = s.clock.now_ms() / 1000;
    // Authenticate before a byte of the body is read.
    if let Err(r) = s.verifier.check_headers(
        headers.get("x-gitlab-token").map(|v| v.as_bytes()),
        sig,
        now_unix,
    ) {
        return s.refuse(r, client);
    }
    let content_length = header(headers, "content-length").and_then(|v| v.trim().parse().ok());
    let body = match body::read(body, content_length, &s.body, &s.budget).await {
        Ok(b) => b,
        Err(e) => {
            s.refusals.refused(body_reason(e), client.map(|c| c.0));
            return body_refusal(e);
        }
    };
    if let Err(r) = s.verifier.check_signature(sig, &body.bytes, now_unix) {
        return s.refuse(r, client);
    }
    metrics::counter!("cocreate_webhooks_received_total", "kind" => EventKind::from_header(header(headers, "x-gitlab-event").unwrap_or("")).header()).increment(1);
    let event = match admit(headers, body.bytes, s.verifier.signs(), s.clock.now_ms()) {
        Err(e) => {
            s.refusals.refused("malformed", client.map(|c| c.0));
            tracing::debug!(error = %e, "malformed webhook payload refused");
            return reject(StatusCode::BAD_REQUEST, "malformed", &e.to_string());
        }
        Ok(Admission::Ignored(ignored)) => {
            tracing::debug!(?ignored, "webhook ignored");
            return (StatusCode::OK, Json(json!({ "status": "ignored" }))).into_response();
        }
        Ok(Admission::Event(event)) => event,
    };
    let bytes = event.body.len();
    let stored = s.queue.enqueue(event).await;
    s.storage.record_enqueue(
        bytes,
        match &stored {
            Ok(_) => Ok(()),
            Err(e) => Err(health::cause(e)),
        },
    );
    match stored {
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
            tracing::error!(error = %health::cause(&e), "could not store webhook");
            reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_error",
                "could not store the event",
            )
        }
    }
}

/// What the worker must not run two of at once: one MR (its events and its comments' commands)
/// or one issue. The handlers also serialize by organization; this key lets the queue keep a
/// burst on one MR from taking every worker slot.
pub fn serial_key(event: &events::Event) -> Option<String> {
    match event {
        events::Event::MergeRequest(e) => {
            Some(format!("mr:{}:{}", e.project.id, e.object_attributes.iid))
        }
        events::Event::Issue(e) => Some(format!(
            "issue:{}:{}",
            e.project.id, e.object_attributes.iid
        )),
        events::Event::Note(e) => e
            .merge_request
            .as_ref()
            .map(|mr| format!("mr:{}:{}", e.project.id, mr.iid)),
        // Pushes reload the policies, one at a time.
        events::Event::Push(_) => Some("policies".to_owned()),
    }
}

fn body_reason(e: BodyError) -> &'static str {
    match e {
        BodyError::TooLarge => "too_large",
        BodyError::OverBudget => "body_budget",
        BodyError::Timeout => "body_timeout",
        BodyError::Read => "body_read",
    }
}

fn body_refusal(e: BodyError) -> Response {
    let reason = body_reason(e);
    match e {
        BodyError::TooLarge => reject(StatusCode::PAYLOAD_TOO_LARGE, reason, "body too large"),
        BodyError::OverBudget => {
            let mut r = reject(
                StatusCode::SERVICE_UNAVAILABLE,
                reason,
                "too many request bodies in flight; retry later",
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            r
        }
        BodyError::Timeout => reject(
            StatusCode::REQUEST_TIMEOUT,
            reason,
            "request body not received in time",
        ),
        BodyError::Read => reject(StatusCode::BAD_REQUEST, reason, "request body unreadable"),
    }
}

/// The queue's counts, or why there are none: the writer thread answers them, so a stalled disk
/// would make a health page wait; it gets [`ANSWER_WITHIN`].
async fn timely_stats(queue: &dyn Queue) -> Result<QueueStats, String> {
    match tokio::time::timeout(ANSWER_WITHIN, queue.stats()).await {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(e)) => Err(format!("queue stats unavailable: {}", health::cause(&e))),
        Err(_) => Err(format!(
            "queue did not answer within {} ms (storage stalled?)",
            ANSWER_WITHIN.as_millis()
        )),
    }
}

/// Ready when the queue takes writes, the policies are loaded, and the backlog is within the
/// configured limits (dead letters, oldest pending age). The body says which check failed.
/// Writes nothing: whether the queue takes writes comes from the last enqueue or background
/// probe; answers within a second also when the disk stalls.
async fn readyz(State(s): State<AppState>) -> Response {
    let mut problems = Vec::new();
    let queue = match s.storage.verdict() {
        Ok(word) => word.to_owned(),
        Err(problem) => {
            problems.push(problem.clone());
            problem
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
    let stats = timely_stats(&*s.queue).await;
    match &stats {
        Ok(stats) => {
            record_limits(&s.ready, stats, &s.storage);
            problems.extend(s.ready.problems(stats));
        }
        Err(e) => {
            metrics::gauge!("cocreate_queue_healthy").set(0.0);
            problems.push(e.clone());
        }
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
        // A hook GitLab disabled is a warning, not a readiness problem: see hook_health.
        "warnings": s.hooks.warnings(),
        "webhooks": s.hooks.hooks(),
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
/// `cocreate_queue_healthy` (1 when the storage takes writes and the backlog is within every
/// limit, else 0), `cocreate_queue_writable` (1 when the last write succeeded),
/// `cocreate_queue_dead_limit` and `cocreate_queue_oldest_pending_age_limit_seconds` (only when
/// set).
fn record_limits(limits: &ReadyLimits, stats: &QueueStats, storage: &StorageHealth) {
    let writable = storage.verdict().is_ok();
    metrics::gauge!("cocreate_queue_writable").set(if writable { 1.0 } else { 0.0 });
    let healthy = writable && limits.problems(stats).is_empty();
    metrics::gauge!("cocreate_queue_healthy").set(if healthy { 1.0 } else { 0.0 });
    if let Some(max) = limits.max_dead {
        metrics::gauge!("cocreate_queue_dead_limit").set(max as f64);
    }
    if let Some(max) = limits.max_pending_age {
        metrics::gauge!("cocreate_queue_oldest_pending_age_limit_seconds").set(max.as_secs_f64());
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    match timely_stats(&*s.queue).await {
        Ok(stats) => {
            crate::metrics::record_queue(&stats);
            record_limits(&s.ready, &stats, &s.storage);
        }
        Err(e) => {
            tracing::debug!(error = %e, "metrics without fresh queue counts");
            metrics::gauge!("cocreate_queue_healthy").set(0.0);
            let writable = s.storage.verdict().is_ok();
            metrics::gauge!("cocreate_queue_writable").set(if writable { 1.0 } else { 0.0 });
        }
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

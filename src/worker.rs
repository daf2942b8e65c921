//! The worker: claims stored events with a lease, runs each through its handler, and acks,
//! retries with backoff, or parks it as a dead letter after too many attempts.
//!
//! After a crash, events whose lease expired are claimed again, so everything acknowledged to
//! GitLab is processed at least once; the level-triggered handlers make "more than once" safe.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::backoff::backoff_delay;
use crate::events::EventKind;
use crate::gitlab::{Get, Retry};
use crate::handlers::{self, Context, Outcome};
use crate::queue::{ClaimedEvent, Lease, Queue, QueueError, ReadyLimits};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Events processed at once (different organizations run in parallel; one organization's
    /// events are serialized by the handlers).
    pub concurrency: usize,
    /// How long a claim lasts before another worker may take the event.
    pub lease: Duration,
    /// Attempts before an event becomes a dead letter.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Poll interval when nothing wakes the worker (retries come due on their own).
    pub poll: Duration,
    /// Processed events are kept this long (for dedupe and inspection), then pruned. Pending
    /// events are never pruned (they are work not yet done, however old), and dead letters stay
    /// until an operator replays or purges them (`cocreate queue`); the worker logs how many
    /// there are at each prune, and `/readyz` and `/metrics` expose the count.
    pub retention: Duration,
    /// On shutdown, how long in-flight events may finish before they are released.
    pub drain: Duration,
    /// Backlog limits past which `/readyz` reports the queue unhealthy.
    pub ready: ReadyLimits,
    /// While GitLab refuses the token (401), no event is taken; the token is checked again
    /// this often, and work resumes by itself once it is accepted.
    pub token_recheck: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease: Duration::from_secs(300),
            max_attempts: 8,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(600),
            poll: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 24 * 3600),
            drain: Duration::from_secs(20),
            ready: ReadyLimits::default(),
            token_recheck: Duration::from_secs(30),
        }
    }
}

fn header<'a>(ev: &'a ClaimedEvent, name: &str) -> Option<&'a str> {
    ev.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Processes one claimed event and records the result in the queue.
pub async fn process(ctx: &Context, queue: &dyn Queue, cfg: &WorkerConfig, ev: ClaimedEvent) {
    // Decided with the policies in force now, whatever was in force at start.
    let ctx = &ctx.with_live_config();
    let kind = EventKind::from_header(header(&ev, "x-gitlab-event").unwrap_or(""));
    let uuid = header(&ev, "x-gitlab-event-uuid").map(str::to_owned);
    let span = tracing::info_span!(
        "event",
        id = ev.id,
        kind = kind.header(),
        attempt = ev.attempts,
        policies = ctx
            .live
            .as_ref()
            .map(|l| l.current().version.clone())
            .unwrap_or_default()
    );
    let lease = ev.lease();
    let work = tracing::Instrument::instrument(
        handlers::dispatch(ctx, kind, &ev.body, uuid.as_deref()),
        span.clone(),
    );
    let Some(result) = while_leased(queue, lease, cfg.lease, work).await else {
        tracing::warn!(parent: &span, "lease lost: another worker claimed the event; this attempt stops and records nothing");
        return;
    };
    let recorded = match result {
        Ok(outcome) => {
            let label = match &outcome {
                Outcome::Skipped(_) => "skipped",
                Outcome::Done { writes: 0, .. } => "unchanged",
                Outcome::Done { .. } => "written",
            };
            metrics::counter!("cocreate_events_processed_total", "outcome" => label).increment(1);
            queue.ack_leased(lease).await
        }
        Err(e) if e.retry() == Retry::Unauthorized => {
            // Not the event's fault: it waits, unspent, until the token works again.
            if ctx.token.refuse() {
                tracing::error!(parent: &span, error = %e, "GitLab refused the bot's token (401): no event is processed until GITLAB_TOKEN works again; /readyz answers 503 meanwhile");
            }
            queue.release_leased(lease).await
        }
        Err(e) if e.is_permanent() || ev.attempts >= cfg.max_attempts => {
            metrics::counter!("cocreate_events_dead_lettered_total").increment(1);
            tracing::error!(parent: &span, error = %e, attempts = ev.attempts, "event moved to the dead-letter table");
            queue.fail_leased(lease, &e.to_string(), None).await
        }
        Err(e) => {
            // A retry the error says is pointless before a while waits that long (one attempt
            // spent, not all of them).
            let delay = backoff_delay(ev.attempts, cfg.backoff_base, cfg.backoff_cap)
                .max(e.retry_after().unwrap_or_default());
            metrics::counter!("cocreate_events_retried_total").increment(1);
            tracing::warn!(parent: &span, error = %e, retry_in_ms = delay.as_millis() as u64, "event failed; will retry");
            queue.fail_leased(lease, &e.to_string(), Some(delay)).await
        }
    };
    if let Err(e) = recorded {
        // The lease will expire and the event will be claimed again: nothing is lost.
        tracing::error!(parent: &span, error = %e, "could not record the event's outcome");
    }
}

/// While GitLab refuses the token: waits `delay` (1 s, doubling up to `token_recheck`, so a
/// passing refusal costs a second and a revoked token one call per `token_recheck`), then asks
/// GitLab who the bot is (`GET /user`); a success resumes work.
async fn wait_for_token(
    ctx: &Context,
    cfg: &WorkerConfig,
    delay: &mut Duration,
    shutdown: &mut watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(*delay) => {}
        _ = shutdown.changed() => return,
    }
    *delay = (*delay * 2).min(cfg.token_recheck);
    let Some(live) = ctx.gitlab() else {
        ctx.token.accept();
        return;
    };
    match Get::new("user")
        .one::<serde_json::Value>(&live.client)
        .await
    {
        Ok(_) => {
            if ctx.token.accept() {
                tracing::info!("GitLab accepts the bot's token again; processing resumes");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "GitLab still refuses the bot's token; events keep waiting")
        }
    }
}

/// Runs `work` while renewing `lease` every third of `duration`, so an event that takes longer
/// than one lease is not claimed by a second worker. Returns `None`, dropping `work`, when the
/// lease was lost all the same (this worker stalled past its lease and another claimed the
/// event): the same event never runs in two workers at once. A renewal that fails for another
/// reason (storage) is tried again at the next tick.
pub async fn while_leased<T>(
    queue: &dyn Queue,
    lease: Lease,
    duration: Duration,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    let every = (duration / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            _ = tick.tick() => match queue.renew(lease, duration).await {
                Ok(()) => {}
                Err(QueueError::LeaseLost { .. }) => return None,
                Err(error) => {
                    tracing::warn!(%error, event_id = lease.id, "could not renew the lease; trying again");
                }
            },
        }
    }
}

/// Runs until `shutdown` turns true; then stops claiming, lets in-flight events finish for
/// `cfg.drain`, and releases the rest so the next start picks them up at once.
pub async fn run(
    ctx: Context,
    queue: Arc<dyn Queue>,
    cfg: WorkerConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ctx = Arc::new(ctx);
    let cfg = Arc::new(cfg);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut in_flight: std::collections::HashMap<tokio::task::Id, Lease> = Default::default();
    let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
    let mut token_delay = Duration::from_secs(1).min(cfg.token_recheck);
    loop {
        if *shutdown.borrow() {
            break;
        }
        while let Some(done) = tasks.try_join_next_with_id() {
            let id = match &done {
                Ok((id, ())) => *id,
                Err(e) => e.id(),
            };
            in_flight.remove(&id);
        }
        if ctx.token.is_refused() {
            wait_for_token(&ctx, &cfg, &mut token_delay, &mut shutdown).await;
            continue;
        }
        token_delay = Duration::from_secs(1).min(cfg.token_recheck);
        let free = cfg.concurrency.saturating_sub(tasks.len());
        let mut claimed_any = false;
        if free > 0 {
            match queue.claim(free, cfg.lease).await {
                Ok(events) => {
                    claimed_any = !events.is_empty();
                    for ev in events {
                        let (ctx, queue, cfg) = (ctx.clone(), queue.clone(), cfg.clone());
                        let lease = ev.lease();
                        let handle =
                            tasks.spawn(async move { process(&ctx, &*queue, &cfg, ev).await });
                        in_flight.insert(handle.id(), lease);
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not claim events"),
            }
        }
        if last_prune.elapsed() > Duration::from_secs(600) {
            last_prune = std::time::Instant::now();
            match queue.prune_done(cfg.retention).await {
                Ok(n) if n > 0 => {
                    tracing::info!(pruned = n, "pruned processed events past retention")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not prune processed events"),
            }
            if let Ok(stats) = queue.stats().await {
                if stats.dead > 0 {
                    tracing::warn!(
                        dead = stats.dead,
                        "dead letters are waiting for an operator: `cocreate queue list --dead`, then `queue replay` or `queue purge`"
                    );
                }
            }
        }
        if claimed_any && tasks.len() < cfg.concurrency {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match &done { Ok((id, ())) => *id, Err(e) => e.id() };
                in_flight.remove(&id);
            }
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(
        in_flight = tasks.len(),
        "worker stopping; finishing in-flight events"
    );
    let deadline = tokio::time::sleep(cfg.drain);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            done = tasks.join_next_with_id() => match done {
                None => break,
                Some(Ok((id, ()))) => { in_flight.remove(&id); }
                Some(Err(e)) => { in_flight.remove(&e.id()); }
            },
            _ = &mut deadline => {
                tasks.abort_all();
                for (_, lease) in in_flight.drain() {
                    if let Err(e) = queue.release_leased(lease).await {
                        tracing::warn!(error = %e, event_id = lease.id, "could not release event; its lease will expire");
                    }
                }
                break;
            }
        }
    }
    tracing::info!("worker stopped");
}

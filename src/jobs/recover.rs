//! `cocreate recover`: GitLab never retries a failed webhook delivery, but since 17.3 it keeps
//! each hook's deliveries of the last 7 days with their request headers and body
//! (`GET /<owner>/hooks/:id/events`). For every hook `setup` registered (found by its URL in
//! the watched scope and the tracking project), this pages through the failed deliveries
//! since its cursor and stores each one as if it had just arrived, through the receiver's own
//! parse and dedupe path ([`crate::server::admit`]), oldest first: a delivery that did reach
//! `serve` is "already had", never processed twice. It also reads each hook's state and
//! reports a hook GitLab disabled. Where the events API is not there (older GitLab, or a
//! token without the role to read hooks) it falls back to sweeps: `reconcile`'s of open MRs
//! (unless `reconcile` itself runs next) and [`super::recover_sweep`]'s of the tracking
//! project's new issues and of command comments on open Co-Create MRs, so no event kind is
//! left unrecovered. The deliveries and the cursor go to `serve`'s queue: the SQLite one in the
//! data directory, or the PostgreSQL one the replicas share (`--queue`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{JobContext, Spend};
use crate::decide::setup::wanted_hooks;
use crate::gitlab::{ApiHook, ClientError, Get};
use crate::handlers::Context;
use crate::handlers::KeyedLocks;
use crate::queue::cursor::{CursorError, Cursors, RecoverCursors};
use crate::queue::{Enqueued, PostgresQueue, Queue, QueueError, SqliteQueue};
use crate::server::{admit, Admission};

/// What `recover` is asked to do.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// The URL `setup` registered (`serve`'s public `/webhook`): it identifies our hooks.
    pub webhook_url: String,
    /// `serve`'s data directory: the queue the deliveries go into, and the cursor (unless
    /// `queue_url` names the PostgreSQL queue).
    pub data_dir: PathBuf,
    /// `serve --queue`: the PostgreSQL queue (and cursor) instead of the SQLite one in `data_dir`.
    pub queue_url: Option<String>,
    /// Look this far back instead of from the cursor (GitLab keeps 7 days).
    pub since: Option<Duration>,
    /// `serve` runs with signing keys (the signed `webhook-id` is then the dedupe key).
    pub signed: bool,
    /// Process what was stored here and now instead of leaving it to a running `serve`.
    pub process: bool,
    /// Read only: store nothing, move no cursor.
    pub dry_run: bool,
    /// In the fallback, also sweep open MRs (`reconcile` turns this off: it sweeps next).
    pub mr_sweep: bool,
    /// Without `since`: how far back a hook with no cursor yet is read (unset: all 7 days)
    /// and the fallback sweeps (unset: [`FALLBACK_WINDOW`]). `reconcile` passes its `--since`.
    pub window: Option<Duration>,
}

/// How the job recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// From GitLab's webhook events API: exact, every event kind.
    EventsApi,
    /// The events API is not there: sweeps of open MRs (see `reconcile`), of the tracking
    /// project's new issues and of command comments on open Co-Create MRs.
    Fallback,
}

/// One hook of ours, its state in GitLab and what was recovered from it.
#[derive(Debug, Clone, Serialize)]
pub struct HookReport {
    /// `groups/50/hooks/7`.
    pub hook: String,
    /// GitLab's `alert_status`: `executable`, `temporarily_disabled` or `disabled`.
    pub alert_status: String,
    pub disabled_until: Option<String>,
    pub found: usize,
    pub enqueued: usize,
    pub already_had: usize,
    pub ignored: usize,
    /// Recorded deliveries that do not parse (stored by GitLab truncated, or not ours).
    pub malformed: usize,
}

impl HookReport {
    /// GitLab stopped calling this hook (for a while, or for good).
    pub fn disabled(&self) -> Option<String> {
        crate::server::hook_health::warning(
            &self.hook,
            &self.alert_status,
            self.disabled_until.as_deref(),
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    pub mode: Mode,
    pub hooks: Vec<HookReport>,
    pub found: usize,
    pub enqueued: usize,
    pub already_had: usize,
    /// Events this run processed itself (`--process`).
    pub processed: usize,
    /// Hooks GitLab has disabled, with how to re-enable them.
    pub disabled: Vec<String>,
    /// Why the fallback ran, or what failed.
    pub notes: Vec<String>,
    /// The fallback's MR sweep (`None` when `reconcile` sweeps instead).
    pub fallback: Option<super::mr_sweep::ReconcileReport>,
    /// The fallback's sweep of new issues and command comments.
    pub sweep: Option<super::recover_sweep::SweepReport>,
    pub dry_run: bool,
    pub api_reads: u64,
    pub api_writes: u64,
    pub elapsed_ms: u128,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("routing.yml watches no groups or projects: there are no hooks to recover from")]
    NothingWatched,
    #[error("reading {call}: {cause}")]
    Read { call: String, cause: String },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error(transparent)]
    Fallback(#[from] super::mr_sweep::ReconcileError),
    #[error(transparent)]
    Sweep(#[from] super::recover_sweep::SweepError),
}

/// One recorded delivery (GitLab's webhook events API).
#[derive(Debug, Deserialize)]
struct HookEvent {
    id: u64,
    #[serde(default)]
    request_headers: serde_json::Map<String, serde_json::Value>,
    /// GitLab documents an object; a string holding the JSON is accepted too.
    #[serde(default)]
    request_data: serde_json::Value,
    #[serde(default)]
    created_at: Option<String>,
}

/// How far back the fallback sweeps without `--since` (the job runs every 15 minutes).
pub const FALLBACK_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// The statuses GitLab counts as failed deliveries (4xx, and 5xx or no answer at all).
const FAILED: [&str; 2] = ["client_failure", "server_failure"];

/// An answer meaning "this GitLab has no events API for this token" (404 on GitLab < 17.3,
/// 403 without the Maintainer / Owner role).
fn unavailable(e: &gitlab::api::ApiError<ClientError>) -> bool {
    matches!(
        e,
        gitlab::api::ApiError::Client {
            source: ClientError::Status { status, .. }
        } if *status == http::StatusCode::NOT_FOUND || *status == http::StatusCode::FORBIDDEN
    )
}

fn read_error(call: String, e: impl std::fmt::Display) -> RecoverError {
    RecoverError::Read {
        call,
        cause: e.to_string(),
    }
}

/// Headers as GitLab recorded them; names or values that are not valid HTTP are left out.
fn header_map(recorded: &serde_json::Map<String, serde_json::Value>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in recorded {
        let Some(value) = value.as_str() else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.insert(n, v);
        }
    }
    out
}

fn body_bytes(data: &serde_json::Value) -> Vec<u8> {
    match data {
        serde_json::Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

fn parse_time(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.to_utc())
}

pub async fn run(ctx: &JobContext, opts: &RecoverOptions) -> Result<RecoverReport, RecoverError> {
    let live = ctx.live();
    let client = &live.client;
    let routing = &ctx.policies.routing;
    if routing.watch.groups.is_empty() && routing.watch.projects.is_empty() {
        return Err(RecoverError::NothingWatched);
    }
    let spend = Spend::start(client);
    let mut report = RecoverReport {
        mode: Mode::EventsApi,
        hooks: Vec::new(),
        found: 0,
        enqueued: 0,
        already_had: 0,
        processed: 0,
        disabled: Vec::new(),
        notes: Vec::new(),
        fallback: None,
        sweep: None,
        dry_run: opts.dry_run,
        api_reads: 0,
        api_writes: 0,
        elapsed_ms: 0,
    };
    let target = Target::open(opts).await?;
    let (queue, cursors) = (target.queue.clone(), target.cursors.as_ref());
    let ago = |since: Duration| {
        chrono::Duration::from_std(since)
            .ok()
            .and_then(|d| ctx.clock.now().checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
    };
    let after = opts.since.map(ago);

    // Every failed delivery of every hook of ours, with the hook it belongs to.
    let mut pending: Vec<(usize, HookEvent)> = Vec::new();
    let mut unavailable_reason = None;
    'owners: for wanted in wanted_hooks(&routing.watch, &routing.tracking.project, None) {
        let call = format!("GET {}/hooks", wanted.owner);
        let hooks: Vec<ApiHook> = match Get::new(format!("{}/hooks", wanted.owner))
            .all(client)
            .await
        {
            Ok(h) => h,
            Err(e) if unavailable(&e) => {
                unavailable_reason = Some(format!("{call}: {e}"));
                break 'owners;
            }
            Err(e) => return Err(read_error(call, e)),
        };
        for h in hooks.into_iter().filter(|h| h.url == opts.webhook_url) {
            let name = format!("{}/hooks/{}", wanted.owner, h.id);
            let cursor = if after.is_some() {
                None
            } else {
                cursors.get(&name).await?
            };
            let after = after.or_else(|| cursor.is_none().then(|| opts.window.map(ago)).flatten());
            let at = report.hooks.len();
            report.hooks.push(HookReport {
                hook: name.clone(),
                alert_status: h.alert_status.unwrap_or_default(),
                disabled_until: h.disabled_until,
                found: 0,
                enqueued: 0,
                already_had: 0,
                ignored: 0,
                malformed: 0,
            });
            for status in FAILED {
                let path = format!("{name}/events");
                let seen = |e: &HookEvent| {
                    cursor.is_some_and(|c| e.id <= c)
                        || after.is_some_and(|a| {
                            e.created_at
                                .as_deref()
                                .and_then(parse_time)
                                .is_some_and(|t| t < a)
                        })
                };
                let events: Vec<HookEvent> = match Get::new(path.clone())
                    .param("status", status)
                    .pages_until(client, 1, seen)
                    .await
                {
                    Ok(e) => e,
                    Err(e) if unavailable(&e) => {
                        unavailable_reason = Some(format!("GET {path}: {e}"));
                        break 'owners;
                    }
                    Err(e) => return Err(read_error(format!("GET {path}"), e)),
                };
                pending.extend(events.into_iter().filter(|e| !seen(e)).map(|e| (at, e)));
            }
        }
    }
    for h in &report.hooks {
        if let Some(why) = h.disabled() {
            metrics::gauge!("cocreate_webhook_disabled", "hook" => h.hook.clone()).set(1.0);
            tracing::error!(hook = %h.hook, "{why}");
            report.disabled.push(why);
        } else {
            metrics::gauge!("cocreate_webhook_disabled", "hook" => h.hook.clone()).set(0.0);
        }
    }

    if let Some(reason) = unavailable_reason {
        report.mode = Mode::Fallback;
        let since = opts.since.or(opts.window).unwrap_or(FALLBACK_WINDOW);
        report.notes.push(format!(
            "the webhook events API is not available ({reason}): fell back to sweeping the last {} \
             ({}new issues of the tracking project, command comments on open Co-Create MRs)",
            humantime::format_duration(since),
            if opts.mr_sweep { "open MRs, " } else { "" }
        ));
        tracing::warn!("{}", report.notes[0]);
        let after = ago(since);
        if opts.mr_sweep {
            report.fallback = Some(super::mr_sweep::run(ctx, since).await?);
        }
        let swept =
            super::recover_sweep::run(ctx, &*queue, after, opts.signed, opts.dry_run).await?;
        report.found += swept.issues_found + swept.commands_found;
        report.enqueued += swept.enqueued;
        report.already_had += swept.already_had;
        metrics::counter!("cocreate_recovered_total").increment(swept.enqueued as u64);
        report.sweep = Some(swept);
    } else {
        // Oldest first, as GitLab made them (event ids only grow).
        pending.sort_by_key(|(_, e)| e.id);
        pending.dedup_by_key(|(_, e)| e.id);
        let mut newest: Vec<Option<u64>> = vec![None; report.hooks.len()];
        for (at, e) in pending {
            report.found += 1;
            report.hooks[at].found += 1;
            newest[at] = newest[at].max(Some(e.id));
            let headers = header_map(&e.request_headers);
            let admitted = admit(
                &headers,
                body_bytes(&e.request_data),
                opts.signed,
                ctx.clock.now().timestamp_millis(),
            );
            let event = match admitted {
                Ok(Admission::Event(ev)) => ev,
                Ok(Admission::Ignored(_)) => {
                    report.hooks[at].ignored += 1;
                    continue;
                }
                Err(err) => {
                    report.hooks[at].malformed += 1;
                    report.notes.push(format!(
                        "{} event {}: not a delivery cocreate can parse: {err}",
                        report.hooks[at].hook, e.id
                    ));
                    continue;
                }
            };
            if opts.dry_run {
                continue;
            }
            match queue.enqueue(event).await? {
                Enqueued::New(_) => {
                    report.enqueued += 1;
                    report.hooks[at].enqueued += 1;
                }
                Enqueued::Duplicate(_) => {
                    report.already_had += 1;
                    report.hooks[at].already_had += 1;
                }
            }
        }
        if !opts.dry_run {
            let now = ctx.clock.now().timestamp_millis();
            for (h, id) in report.hooks.iter().zip(newest) {
                if let Some(id) = id {
                    cursors.set(&h.hook, id, now).await?;
                }
            }
        }
        metrics::counter!("cocreate_recovered_total").increment(report.enqueued as u64);
    }

    if opts.process && !opts.dry_run {
        let mut ctx: Context = (**ctx).clone();
        if let Some(locks) = &target.locks {
            ctx.locks = locks.clone();
        }
        report.processed = process_all(&ctx, queue.clone()).await?;
    }
    let spent = spend.so_far();
    report.api_reads = spent.reads;
    report.api_writes = spent.writes;
    report.elapsed_ms = spent.elapsed_ms;
    Ok(report)
}

/// The queue the deliveries go into, with its cursors (and, on PostgreSQL, the organizations'
/// locks shared with the running replicas, for `--process`).
struct Target {
    queue: Arc<dyn Queue>,
    cursors: Box<dyn RecoverCursors>,
    locks: Option<KeyedLocks>,
}

impl Target {
    async fn open(opts: &RecoverOptions) -> Result<Self, RecoverError> {
        // Stored error texts (of `--process`) never hold the token or a secret.
        let scrub = crate::redact::Redactor::from_env();
        Ok(match &opts.queue_url {
            Some(url) => {
                let pg = PostgresQueue::connect(url).await?.redacting(scrub);
                Self {
                    locks: Some(KeyedLocks::shared(Arc::new(pg.key_locks()))),
                    queue: Arc::new(pg.clone()),
                    cursors: Box::new(pg),
                }
            }
            None => Self {
                queue: Arc::new(SqliteQueue::open(&opts.data_dir)?.redacting(scrub)),
                cursors: Box::new(Cursors::open(&opts.data_dir)?),
                locks: None,
            },
        })
    }
}

/// Handles every event the queue has ready, as `serve`'s worker does, until none is left.
async fn process_all(ctx: &Context, queue: Arc<dyn Queue>) -> Result<usize, RecoverError> {
    let cfg = crate::worker::WorkerConfig::default();
    let mut done = 0;
    loop {
        let claimed = queue.claim(cfg.concurrency.max(1), cfg.lease).await?;
        if claimed.is_empty() {
            return Ok(done);
        }
        for ev in claimed {
            crate::worker::process(ctx, &*queue, &cfg, ev).await;
            done += 1;
        }
    }
}

/// A JUnit report: one test case per hook, failing when GitLab disabled it or a recorded
/// delivery could not be parsed.
pub fn junit(report: &RecoverReport) -> Result<String, quick_junit::SerializeError> {
    let mut r = quick_junit::Report::new("cocreate");
    for s in suite(report) {
        r.add_test_suite(s);
    }
    r.to_string()
}

/// The `recover` test suite of [`junit`] (`reconcile` adds it to its own report).
pub fn suite(report: &RecoverReport) -> Vec<quick_junit::TestSuite> {
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("recover");
    for h in &report.hooks {
        let problem = h.disabled().or_else(|| {
            (h.malformed > 0).then(|| format!("{} recorded deliveries do not parse", h.malformed))
        });
        let status = match problem {
            Some(message) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(message);
                s
            }
            None => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(h.hook.clone(), status);
        case.set_classname(format!("{:?}", report.mode).to_lowercase());
        case.set_system_out(format!(
            "found {}, enqueued {}, already had {}, ignored {}",
            h.found, h.enqueued, h.already_had, h.ignored
        ));
        suite.add_test_case(case);
    }
    if report.mode == Mode::Fallback {
        let mut case = TestCase::new("fallback sweep", TestCaseStatus::success());
        let mut out = report.notes.join("\n");
        if let Some(s) = &report.sweep {
            out.push_str(&format!("\n{}", sweep_line(s)));
        }
        if let Some(f) = &report.fallback {
            out.push_str(&format!("\nopen MRs swept: {}", f.mrs.len()));
        }
        case.set_system_out(out);
        suite.add_test_case(case);
    }
    vec![suite]
}

fn sweep_line(s: &super::recover_sweep::SweepReport) -> String {
    format!(
        "{} new issues of the tracking project, {} command comments on {} open Co-Create MRs; {} enqueued, {} already had",
        s.issues_found, s.commands_found, s.mrs_read, s.enqueued, s.already_had
    )
}

impl RecoverReport {
    /// Whether the job fails (exit 1): a hook is disabled, or the fallback sweep had errors.
    pub fn failed(&self) -> bool {
        !self.disabled.is_empty() || self.fallback.as_ref().is_some_and(|f| !f.errors.is_empty())
    }
}

/// One line for a terminal or CI log.
pub fn summary(report: &RecoverReport) -> String {
    let mode = match report.mode {
        Mode::EventsApi => "webhook events API",
        Mode::Fallback => "fallback sweep (events API not available)",
    };
    let mut out = format!(
        "recover ({mode}{}): {} hooks, {} failed deliveries found, {} enqueued, {} already had, {} processed; {} API reads, {} writes, {} ms\n",
        if report.dry_run { ", dry run" } else { "" },
        report.hooks.len(),
        report.found,
        report.enqueued,
        report.already_had,
        report.processed,
        report.api_reads,
        report.api_writes,
        report.elapsed_ms
    );
    for n in &report.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if let Some(s) = &report.sweep {
        out.push_str(&format!("sweep: {}\n", sweep_line(s)));
    }
    if let Some(f) = &report.fallback {
        out.push_str(&format!(
            "sweep: {} open MRs re-routed, {} errors\n",
            f.mrs.len(),
            f.errors.len()
        ));
    }
    for d in &report.disabled {
        out.push_str(&format!("error: {d}\n"));
    }
    out
}

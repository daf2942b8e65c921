//! One handler per feature. Each splits into `parse` (event → `Option<Input>`, pure) and
//! `handle` (gather facts → `decide` → executor).

pub mod checklist;
pub mod issue;
pub mod merge_request;
pub mod merged;
pub mod note;
pub mod push;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::decide::Skip;
use crate::events::{self, Event, EventKind, Ignored, PayloadError};
use crate::gitlab::{
    ExecuteError, Executor, FactSource, GitlabClient, GitlabError, Retry, TokenHealth,
};
use crate::messages::{Messages, TemplateError};
use crate::policy::Policies;
use crate::reload::LiveConfig;

/// Everything a handler needs; shared by the worker, the scheduled jobs and `plan`.
#[derive(Debug, Clone)]
pub struct Context {
    pub policies: Arc<Policies>,
    pub messages: Arc<Messages>,
    /// GitLab to read and whether to write to it.
    pub mode: Mode,
    pub bot_username: String,
    pub locks: KeyedLocks,
    /// "Now" for agreement expiry and sweep windows.
    pub clock: crate::clock::Clock,
    /// `serve`'s live policies and templates; `None` for one-shot commands, which use the
    /// version they loaded.
    pub live: Option<Arc<LiveConfig>>,
    /// Whether GitLab accepts the token (a 401 pauses the worker).
    pub token: TokenHealth,
}

/// How a context reaches GitLab. One enum, so a live executor without GitLab cannot be built.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Reads GitLab and writes to it.
    Live(Live),
    /// Reads GitLab and writes nothing: the executor logs what it would write (`--dry-run`).
    DryRun(Live),
    /// No token: facts come from the payload alone; nothing is read or written.
    Offline,
}

impl Mode {
    /// The connected GitLab to read, if any.
    pub fn gitlab(&self) -> Option<&Live> {
        match self {
            Mode::Live(live) | Mode::DryRun(live) => Some(live),
            Mode::Offline => None,
        }
    }

    /// What the actions are written with.
    pub fn executor(&self) -> Executor {
        match self {
            Mode::Live(_) => Executor::Live,
            Mode::DryRun(_) | Mode::Offline => Executor::DryRun,
        }
    }

    /// The same GitLab read, nothing written.
    pub fn dry_run(self) -> Mode {
        match self {
            Mode::Live(live) => Mode::DryRun(live),
            other => other,
        }
    }

    pub fn is_dry_run(&self) -> bool {
        !matches!(self, Mode::Live(_))
    }
}

impl Context {
    /// The connected GitLab to read, if any (see [`Mode`]).
    pub fn gitlab(&self) -> Option<&Live> {
        self.mode.gitlab()
    }

    /// What the actions are written with (see [`Mode`]).
    pub fn executor(&self) -> Executor {
        self.mode.executor()
    }

    /// Runs `actions` with [`Context::executor`]; under `lock` (an organization's, held since
    /// the facts were read) each write happens only while the lock is surely held.
    pub async fn execute(
        &self,
        lock: Option<&KeyGuard>,
        client: Option<&GitlabClient>,
        actions: &[crate::decide::Action],
    ) -> Result<crate::gitlab::ExecutionReport, ExecuteError> {
        match lock {
            Some(lock) => self.executor().run_locked(lock, client, actions).await,
            None => self.executor().run(client, actions).await,
        }
    }

    /// This context with the policies and templates in force now: each event is decided with
    /// the version current when its processing starts.
    pub fn with_live_config(&self) -> Context {
        let mut ctx = self.clone();
        if let Some(live) = &self.live {
            let now = live.current();
            ctx.policies = now.policies.clone();
            ctx.messages = now.messages.clone();
        }
        ctx
    }
}

/// A connected GitLab: the client and the cached fact reads.
#[derive(Debug, Clone)]
pub struct Live {
    pub client: GitlabClient,
    pub facts: Arc<FactSource>,
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do, and why.
    Skipped(Skip),
    /// Acted: how many writes went to GitLab (0 when everything was already in place).
    Done { writes: usize, planned: usize },
}

/// Why handling failed. `Payload` and `Template` are permanent; GitLab errors are retried.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error(transparent)]
    Reload(#[from] crate::reload::ReloadError),
    /// A rule still asked for facts after every round of reads the handler does: a bug in
    /// the rule or the handler, not in the event.
    #[error("{rule} still needs {needs} after the reads it asked for")]
    StillNeeds { rule: &'static str, needs: String },
}

impl HandleError {
    /// Whether trying again can help: a bad payload or template cannot (a fixed parser or
    /// template plus `queue replay` can), nor a write GitLab refuses; no answer, 429 and 5xx
    /// can; a 401 means the token must be fixed first.
    pub fn retry(&self) -> Retry {
        match self {
            HandleError::Payload(_) | HandleError::Template(_) | HandleError::StillNeeds { .. } => {
                Retry::Permanent
            }
            HandleError::Gitlab(e) => e.retry(false),
            HandleError::Execute(e) => e.retry(),
            HandleError::Reload(_) => Retry::Transient,
        }
    }

    /// How long a retry is pointless: the worker's backoff is at least this long.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            HandleError::Execute(e) => e.retry_after(),
            _ => None,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.retry() == Retry::Permanent
    }
}

/// Routes one stored delivery to its handler.
pub async fn dispatch(
    ctx: &Context,
    kind: EventKind,
    body: &[u8],
    event_uuid: Option<&str>,
) -> Result<Outcome, HandleError> {
    let event = events::parse(kind, body)?;
    let reference = match &event {
        Ok(e) => e.reference(),
        Err(_) => String::new(),
    };
    let outcome = route(ctx, event, event_uuid).await;
    if let Ok(Outcome::Skipped(reason)) = &outcome {
        // One line per skipped event, so "why did the bot ignore my MR?" has an answer.
        tracing::info!(reference = %reference, %reason, "event skipped");
    }
    outcome
}

async fn route(
    ctx: &Context,
    event: Result<Event, Ignored>,
    event_uuid: Option<&str>,
) -> Result<Outcome, HandleError> {
    match event {
        Err(Ignored::UnsupportedKind(k)) => Ok(Outcome::Skipped(Skip::UnhandledKind { kind: k })),
        Err(Ignored::SystemHookObject(k)) => {
            Ok(Outcome::Skipped(Skip::UnhandledSystemHook { kind: k }))
        }
        Ok(event @ Event::MergeRequest(_)) => match merge_request::parse(&event) {
            Some(input) => merge_request::handle(ctx, input, event_uuid).await,
            None => match merged::parse(&event) {
                Some(input) => merged::handle(ctx, input, event_uuid).await,
                None => Ok(Outcome::Skipped(Skip::MrActionNotRouted)),
            },
        },
        Ok(event @ Event::Issue(_)) => match issue::parse(&event) {
            Some(input) => issue::handle(ctx, input, event_uuid).await,
            None => Ok(Outcome::Skipped(Skip::IssueActionNotHandled)),
        },
        Ok(event @ Event::Note(_)) => match note::parse(&event, &ctx.bot_username) {
            Some(input) => note::handle(ctx, input, event_uuid).await,
            None => Ok(Outcome::Skipped(Skip::NoCommand)),
        },
        Ok(event @ Event::Push(_)) => match push::parse(&event, ctx.live.as_deref()) {
            Some(input) => push::handle(ctx, input).await,
            None => Ok(Outcome::Skipped(Skip::NotPolicyPush)),
        },
    }
}

/// Serializes work per key (an organization): two events of one organization never run their
/// decide → execute step at the same time, so they cannot both open or post the same thing.
///
/// With a shared queue ([`KeyedLocks::shared`]), the key is also locked across replicas, and
/// the guard fences the writes: handlers run the executor with [`Executor::run_locked`] and the
/// guard, so a replica whose shared lease ran out writes nothing (the event is retried). The
/// in-process lock alone (SQLite's one process) is always held.
///
/// While local events of one key wait for each other, the shared lock is handed from one to the
/// next without giving it back to the database (at most [`MAX_HANDOVERS`] times in a row, so
/// other replicas get their turn): one acquire and one release per run of events instead of per
/// event, and no retry pause between them.
#[derive(Debug, Clone, Default)]
pub struct KeyedLocks {
    // Weak: a key's slot lives while someone holds or waits for it; when the last one goes, the
    // slot and the shared lock in it are dropped (given back).
    inner: Arc<Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<Slot>>>>>,
    shared: Option<Arc<dyn crate::queue::SharedKeyLocks>>,
}

/// Local holders in a row that one shared lock is handed to before it is given back.
pub const MAX_HANDOVERS: u32 = 8;

/// The shared lock of one key while this process has it (`None` with the in-process lock only).
type Slot = Option<Held>;

struct Held {
    guard: Box<dyn crate::queue::SharedKeyGuard>,
    handovers: u32,
}

impl KeyedLocks {
    /// Locks that also hold each key across the replicas sharing `shared`.
    pub fn shared(shared: Arc<dyn crate::queue::SharedKeyLocks>) -> Self {
        Self {
            inner: Arc::default(),
            shared: Some(shared),
        }
    }

    pub async fn lock(&self, key: &str) -> KeyGuard {
        let m = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            // Forget keys nobody holds or waits for, so the map stays small.
            map.retain(|_, m| m.strong_count() > 0);
            match map.get(key).and_then(std::sync::Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(None));
                    map.insert(key.to_owned(), Arc::downgrade(&m));
                    m
                }
            }
        };
        let mut slot = m.lock_owned().await;
        if let Some(shared) = &self.shared {
            // Handed over by the previous local holder, if its lease is still surely held.
            if !slot.as_ref().is_some_and(|held| held.guard.held()) {
                *slot = None; // gives a lost lock back before taking it again
                *slot = Some(Held {
                    guard: shared.acquire(key).await,
                    handovers: 0,
                });
            }
        }
        KeyGuard {
            key: key.to_owned(),
            slot,
        }
    }
}

/// Held while one organization's work runs.
pub struct KeyGuard {
    key: String,
    slot: tokio::sync::OwnedMutexGuard<Slot>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        // Someone else in this process waits for the key: hand the shared lock over (a bounded
        // number of times). Else give it back now, before the in-process lock.
        let waiting = Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&self.slot)) > 1;
        match self.slot.as_mut() {
            Some(held) if waiting && held.handovers < MAX_HANDOVERS => held.handovers += 1,
            _ => *self.slot = None,
        }
    }
}

impl KeyGuard {
    /// Whether the key is surely still this process's (the in-process lock always is; the
    /// shared one while its lease is surely held).
    pub fn held(&self) -> bool {
        self.slot.as_ref().is_none_or(|held| held.guard.held())
    }
}

impl crate::gitlab::WriteLock for KeyGuard {
    fn key(&self) -> &str {
        &self.key
    }

    fn held(&self) -> bool {
        KeyGuard::held(self)
    }

    fn reservations(&self) -> Option<&dyn crate::queue::TrackingReservations> {
        self.slot.as_ref().map(|held| held.guard.reservations())
    }
}

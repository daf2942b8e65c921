//! Durable event queue.
//!
//! Webhook deliveries are stored durably (committed and fsynced) before the
//! receiver acknowledges them, then claimed by workers under a lease, and
//! finally acknowledged (`done`), retried later, or moved to the dead letters.
//!
//! The [`Queue`] trait is the storage-independent interface the worker uses;
//! [`SqliteQueue`] is the SQLite (WAL) implementation. [`QueueInspect`] is the
//! operator's interface (status, list, show, replay, purge), implemented for
//! SQLite by [`SqliteInspector`], which opens its own connection next to a
//! running `serve`. [`PostgresQueue`] implements both traits on PostgreSQL, for
//! several `serve` replicas sharing one queue, and also offers what only
//! replicas need: key locks per organization ([`SharedKeyLocks`], whose guards
//! fence the writes made under them) and, through each guard, the organization's
//! tracking-issue reservation ([`TrackingReservations`]). The SQLite queue needs
//! neither: its one process serializes an organization's work in memory.
//!
//! Semantics shared by every implementation:
//!
//! * An event is `pending` until it is acknowledged (`done`) or fails for good
//!   (`dead`). A pending event whose lease (`locked_until`) lies in the future
//!   is *in flight*: some worker holds it.
//! * A claim is committed immediately; a worker that crashes simply lets its
//!   lease expire and the event becomes claimable again (at-least-once
//!   delivery). Handlers must therefore be idempotent.
//! * All times are unix milliseconds, taken from the queue's clock.

pub mod cursor;
mod inspect;
mod key_lock;
mod migrate;
mod postgres;
mod ready;
mod sqlite;
mod sqlite_inspect;
pub mod tracking;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use inspect::{
    AttemptRecord, EventDetail, EventState, EventSummary, KindCount, ListFilter, QueueInspect,
    QueueStatus, Replayed, StorageSize,
};
pub use key_lock::{SharedKeyGuard, SharedKeyLocks};
pub use migrate::{migrate_sqlite_to_postgres, Migrated};
pub use postgres::{
    describe_url as describe_postgres_url, is_postgres_url, postgres_url_arg, PgKeyLocks,
    PostgresQueue,
};
pub use ready::ReadyLimits;
pub use sqlite::SqliteQueue;
pub use tracking::{Reserved, TrackingReservations};

pub use sqlite_inspect::SqliteInspector;

/// Identifier of a stored event (monotonically increasing, never reused).
pub type EventId = i64;

/// An event as received, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique key of the delivery (e.g. the webhook id). A second event with
    /// the same key is recognised as a duplicate and not stored again.
    pub dedupe_key: String,
    /// Kind of event (e.g. the GitLab `X-Gitlab-Event` value), used for routing.
    pub kind: String,
    /// Events with the same key are never in flight at once, and a claim skips an event
    /// whose key is busy (so one key's burst cannot fill the worker slots). E.g. one MR.
    pub serial_key: Option<String>,
    /// Request headers worth keeping, in order, as `(name, value)` pairs.
    pub headers: Vec<(String, String)>,
    /// Raw request body.
    pub body: Vec<u8>,
    /// When the receiver got the event, in unix milliseconds.
    pub received_at_ms: i64,
}

/// Outcome of [`Queue::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enqueued {
    /// The event was stored under this new id.
    New(EventId),
    /// An event with the same dedupe key already exists under this id;
    /// nothing was stored.
    Duplicate(EventId),
}

impl Enqueued {
    /// Id of the stored event, whether it was new or a duplicate.
    pub fn id(self) -> EventId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }

    /// `true` if this call stored the event.
    pub fn is_new(self) -> bool {
        matches!(self, Enqueued::New(_))
    }
}

/// An event handed to a worker by [`Queue::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    /// Id to pass to [`Queue::ack`], [`Queue::fail`] or [`Queue::release`].
    pub id: EventId,
    /// Kind of event, as given to [`Queue::enqueue`].
    pub kind: String,
    /// Stored headers, in their original order.
    pub headers: Vec<(String, String)>,
    /// Raw request body.
    pub body: Vec<u8>,
    /// Number of attempts so far, including this claim (1 on the first claim).
    pub attempts: u32,
    /// When the receiver got the event, in unix milliseconds.
    pub received_at_ms: i64,
    /// The fencing token of this claim: every claim of the event gets a larger one, and only
    /// the holder of the latest may renew, ack, fail or release it.
    pub lease_token: i64,
}

impl ClaimedEvent {
    /// This claim's lease, for the fenced operations.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            token: self.lease_token,
        }
    }
}

/// A claim of one event: its id and fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub id: EventId,
    pub token: i64,
}

/// Counts of events by state, for metrics and health pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Pending events nobody holds a lease on (waiting, possibly for a retry time).
    pub pending: u64,
    /// Pending events under an unexpired lease (being worked on).
    pub in_flight: u64,
    /// Events that failed for good (dead letters).
    pub dead: u64,
    /// Processed events not yet pruned.
    pub done: u64,
    /// Age of the oldest event still in state pending (waiting or in flight),
    /// measured from its `received_at`; `None` when there is none.
    pub oldest_pending_age_ms: Option<i64>,
}

/// Errors of the queue. Each carries the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue directory could not be created.
    #[error("cannot create queue directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened, configured or migrated.
    #[error("cannot open queue database {path}: {step}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What was being done (e.g. "set journal_mode=WAL").
        step: &'static str,
        /// The underlying SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of this program.
    #[error(
        "queue database {path} has schema version {found}, newer than the supported {supported}"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// Highest version this build understands.
        supported: i64,
    },
    /// The writer thread could not be started.
    #[error("cannot start the queue writer thread")]
    Spawn {
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory or a database file cannot be written (checked at start, so that
    /// `serve` refuses to run instead of answering 503 to every delivery).
    #[error("{path} is not writable: {source}")]
    NotWritable {
        /// The directory or file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A database operation failed.
    #[error("queue {op} failed: {source}")]
    Sqlite {
        /// The queue operation (e.g. "claim").
        op: &'static str,
        /// The underlying SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A group commit of several enqueues failed; every caller of the batch
    /// gets this error (nothing of the batch was stored).
    #[error("queue enqueue failed (group commit of {batch_size} events): {source}")]
    GroupCommit {
        /// Number of events in the failed batch.
        batch_size: usize,
        /// The underlying SQLite error, shared by the batch.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The event headers could not be encoded.
    #[error("queue enqueue: cannot encode headers")]
    Encode {
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// No event has this id (it may have been pruned).
    #[error("queue {op}: no event with id {id}")]
    NotFound {
        /// The queue operation.
        op: &'static str,
        /// The event id.
        id: EventId,
    },
    /// The writer thread is gone (the queue is shutting down or the thread died).
    #[error("queue {op}: the writer thread is not running")]
    WriterGone {
        /// The queue operation.
        op: &'static str,
    },
    /// An inspection found no queue database where it looked (it never creates one).
    #[error("no queue database at {path} (is the data directory right? `serve` creates it)")]
    NoDatabase {
        /// The database file looked for.
        path: PathBuf,
    },
    /// A worker holds the event right now; changing it could run it twice at once.
    #[error("queue {op}: event {id} is in flight (leased until unix ms {locked_until_ms}); try again when its attempt has finished")]
    InFlight {
        /// The queue operation.
        op: &'static str,
        /// The event id.
        id: EventId,
        /// End of the worker's lease.
        locked_until_ms: i64,
    },
    /// The lease was lost: the event was claimed again (by another worker, after this one's
    /// lease expired), so this holder may no longer change it.
    #[error("queue {op}: the lease on event {id} was lost (it was claimed again)")]
    LeaseLost {
        /// The queue operation.
        op: &'static str,
        /// The event id.
        id: EventId,
    },
    /// The background task running a blocking database call panicked or was cancelled.
    #[error("queue {op}: the database task did not finish")]
    Blocking {
        /// The queue operation.
        op: &'static str,
    },
    /// The PostgreSQL queue could not connect or migrate its schema (the URL is never shown:
    /// it may hold a password).
    #[error("cannot open the PostgreSQL queue at {target}: {step}: {source}")]
    PostgresOpen {
        /// Host, port and database of the URL, without user or password.
        target: String,
        /// What was being done (e.g. "connect", "migrate").
        step: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A group commit of several enqueues on PostgreSQL failed; every caller of the batch gets
    /// this error (nothing of the batch was stored).
    #[error("queue enqueue failed (group commit of {batch_size} events): {source}")]
    PostgresGroupCommit {
        /// Number of events in the failed batch.
        batch_size: usize,
        /// The underlying error, shared by the batch.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// A shared key lock is no longer the caller's (its lease ran out, another replica took
    /// it): what it guards was not done.
    #[error("the shared lock on `{key}` is no longer held (its lease ran out)")]
    LockLost {
        /// The locked key (an organization).
        key: String,
    },
    /// A PostgreSQL queue operation failed.
    #[error("queue {op} failed: {source}")]
    Postgres {
        /// The queue operation (e.g. "claim").
        op: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
}

/// A durable event queue.
///
/// Implementations must be safe to share between tasks (`Arc<dyn Queue>`).
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Durably store the event (committed, and fsynced per SQLite
    /// `synchronous=FULL`) before returning. Dedupes on `dedupe_key`: a second
    /// enqueue with the same key returns [`Enqueued::Duplicate`] with the id of
    /// the stored event and stores nothing.
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError>;

    /// Claim up to `max` pending events whose `next_attempt_at <= now` and
    /// whose lease (`locked_until`) is unset or expired, oldest first (by id).
    /// Sets `locked_until = now + lease`, gives the claim a new fencing token, and increments
    /// `attempts`, except when the event's previous lease expired unreleased (its worker
    /// lost it: that is not a failed attempt); the claim
    /// is committed before this returns (no transaction is held while the
    /// caller works).
    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<ClaimedEvent>, QueueError>;

    /// Mark the event processed (state `done`, `done_at = now`, lease cleared).
    /// Unfenced (operator tools and tests); a worker uses [`Queue::ack_leased`].
    ///
    /// Acknowledging an event that is no longer pending (already done, or dead)
    /// is a no-op; an unknown id is [`QueueError::NotFound`].
    async fn ack(&self, id: EventId) -> Result<(), QueueError>;

    /// Record a failed attempt with its error text (`last_error`, and a row in
    /// the `attempts` history table). With `retry_in = Some(d)` the event goes
    /// back to pending, due `d` from now by the queue's clock, its lease cleared;
    /// with `None` it becomes dead (dead letter, `dead_at = now`).
    ///
    /// Failing an event that is no longer pending is a no-op; an unknown id is
    /// [`QueueError::NotFound`].
    async fn fail(
        &self,
        id: EventId,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError>;

    /// Give a claimed event back without counting the attempt (graceful
    /// shutdown): `attempts -= 1`, lease cleared. A no-op for events that are
    /// no longer pending; an unknown id is [`QueueError::NotFound`].
    async fn release(&self, id: EventId) -> Result<(), QueueError>;

    /// Extend a held lease to `now + lease`. [`QueueError::LeaseLost`] when the event was
    /// claimed again meanwhile or is no longer pending.
    async fn renew(&self, lease: Lease, duration: Duration) -> Result<(), QueueError>;

    /// [`Queue::ack`], only while `lease` is the event's latest claim
    /// ([`QueueError::LeaseLost`] otherwise; a no-op when it is no longer pending).
    async fn ack_leased(&self, lease: Lease) -> Result<(), QueueError>;

    /// [`Queue::fail`], only while `lease` is the event's latest claim.
    async fn fail_leased(
        &self,
        lease: Lease,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError>;

    /// [`Queue::release`], only while `lease` is the event's latest claim.
    async fn release_leased(&self, lease: Lease) -> Result<(), QueueError>;

    /// Counts of events by state.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// A write check for readiness probes: succeeds only if the queue can commit a write
    /// right now. With `bytes > 0` the write includes that many bytes (kept in one scratch
    /// row, replaced each time), so that after a full disk refused an event of that size, the
    /// probe says writable only once such a write fits again.
    async fn ping(&self, bytes: usize) -> Result<(), QueueError>;

    /// Delete done events whose `done_at` is older than `now - retention`
    /// (with their attempt history). Returns the number of events deleted.
    async fn prune_done(&self, retention: Duration) -> Result<u64, QueueError>;
}

//! The operator's view of a queue: status, listing, one event in detail, replay and purge.
//!
//! [`QueueInspect`] is separate from [`Queue`](super::Queue): the worker needs only `Queue`, and
//! an operator command opens its own inspector next to a running `serve` (SQLite: its own
//! connection, short transactions). A PostgreSQL queue can implement both traits.

use std::time::Duration;

use serde::Serialize;

use super::{EventId, QueueError, QueueStats};

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Waiting to be claimed (now, or at its retry time).
    Pending,
    /// Pending, and a worker holds an unexpired lease on it.
    InFlight,
    /// Failed for good (a dead letter); only an operator replay brings it back.
    Dead,
    /// Processed; kept for the retention period (dedupe, inspection), then pruned.
    Done,
}

impl EventState {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::InFlight => "in_flight",
            EventState::Dead => "dead",
            EventState::Done => "done",
        }
    }
}

impl std::fmt::Display for EventState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many events of one kind were received in a time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindCount {
    /// The event kind (the `X-Gitlab-Event` value).
    pub kind: String,
    /// Events received.
    pub count: u64,
}

/// Size of the storage on disk, where the implementation can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorageSize {
    /// The database itself.
    pub database_bytes: u64,
    /// Write-ahead log not yet copied into the database.
    pub wal_bytes: u64,
}

/// Everything `queue status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    /// Counts by state and the oldest pending age.
    #[serde(flatten)]
    pub stats: QueueStats,
    /// Length of the window of [`QueueStatus::received`], in milliseconds.
    pub window_ms: i64,
    /// Events received in the window, by kind (most first).
    pub received: Vec<KindCount>,
    /// Size on disk.
    pub storage: Option<StorageSize>,
}

/// One stored event, without its headers, body and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    pub id: EventId,
    pub state: EventState,
    pub kind: String,
    /// When the receiver stored it (unix ms).
    pub received_at_ms: i64,
    /// Attempts since it was stored or last replayed.
    pub attempts: u32,
    /// Error of the latest failed attempt (kept after a replay or a later success).
    pub last_error: Option<String>,
    /// When a pending event is next due (unix ms).
    pub next_attempt_at_ms: Option<i64>,
    /// Lease end of an in-flight event (unix ms).
    pub locked_until_ms: Option<i64>,
    /// When it became a dead letter (unix ms).
    pub dead_at_ms: Option<i64>,
    /// When it was processed (unix ms).
    pub done_at_ms: Option<i64>,
    /// Times an operator replayed it.
    pub replays: u32,
    /// Last replay (unix ms).
    pub replayed_at_ms: Option<i64>,
    /// Raw body, so that a caller can name the event's subject (e.g. the merge request).
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// Attempt number (counting restarts at 1 after a replay).
    pub attempt: u32,
    /// When it failed (unix ms).
    pub at_ms: i64,
    /// The error.
    pub error: String,
}

/// One event in full, for `queue show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDetail {
    pub summary: EventSummary,
    pub dedupe_key: String,
    /// Stored headers in their original order. Redacting is the caller's job.
    pub headers: Vec<(String, String)>,
    /// Set when the stored headers cannot be decoded (then `headers` is empty).
    pub headers_error: Option<String>,
    /// Failed attempts, oldest first.
    pub history: Vec<AttemptRecord>,
}

/// Which events [`QueueInspect::list`] returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only events in this state.
    pub state: Option<EventState>,
    /// Only dead letters that died more than this long ago (implies state dead).
    pub dead_older_than: Option<Duration>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

/// What [`QueueInspect::replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replayed {
    pub id: EventId,
    /// The state it was in before.
    pub from: EventState,
}

/// Inspection and repair of a queue, for operators.
///
/// Implementations must be usable while a `serve` works on the same queue: every write is a
/// short transaction, and an event a worker holds (in flight) is never changed under it.
#[async_trait::async_trait]
pub trait QueueInspect: Send + Sync {
    /// Counts by state, oldest pending age, and events received per kind in the last `window`.
    async fn status(&self, window: Duration) -> Result<QueueStatus, QueueError>;

    /// Events matching `filter`, newest first.
    async fn list(&self, filter: ListFilter) -> Result<Vec<EventSummary>, QueueError>;

    /// One event with headers, body (in the summary) and attempt history;
    /// [`QueueError::NotFound`] when there is none (it may have been pruned).
    async fn show(&self, id: EventId) -> Result<EventDetail, QueueError>;

    /// Puts a dead, done or waiting event back to pending, due now, with its attempts reset.
    /// An in-flight event is refused ([`QueueError::InFlight`]).
    async fn replay(&self, id: EventId) -> Result<Replayed, QueueError>;

    /// Replays every event that is dead when the call starts; returns their ids.
    async fn replay_all_dead(&self) -> Result<Vec<EventId>, QueueError>;

    /// Deletes the dead letters that died at least `age` ago (with their attempt history);
    /// returns their ids. Pending and done events are never touched.
    async fn purge_dead(&self, age: Duration) -> Result<Vec<EventId>, QueueError>;
}

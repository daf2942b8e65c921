//! Reservations of tracking issues shared by every replica: before the executor opens an
//! organization's tracking issue on a shared queue it reserves the organization's row, and it
//! records the issue once GitLab created it. A reservation left without an issue (a crash, a
//! lost lock, an answer that never came) makes the next holder look for the issue by its
//! hidden marker before it opens another.
//!
//! The reservations belong to the organization's shared lock ([`super::SharedKeyGuard`]): each
//! call checks, in the database, that the lock's lease and token are still the caller's. With
//! SQLite's single process there is nothing to reserve: the in-process lock serializes an
//! organization's read → decide → write, and a crash between the creation and the event's
//! acknowledgement is followed by a retry that reads GitLab again (and finds the issue).

use std::time::Duration;

use super::QueueError;

/// How long a reservation without an issue may belong to a creation still waiting for
/// GitLab's answer, unless GitLab answered it: GitLab's own request timeout (Puma's
/// `worker_timeout`, 60 s by default), past which a request it received no longer creates
/// anything. An unfinished reservation younger than this is left alone (the event is retried
/// later); an older one, or one whose creation was answered, is finished by the next holder.
pub const IN_FLIGHT: Duration = Duration::from_secs(60);

/// What the reservation row said when it was reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The row is this holder's (new, or taken over): create the issue, then record it.
    Ours,
    /// An issue was created and recorded before (it may be closed since).
    Recorded { iid: u64 },
    /// Reserved without an issue since `at_ms`, less than [`IN_FLIGHT`] ago, and its creation
    /// not answered: it may still land.
    InFlight {
        by: String,
        at_ms: i64,
        /// How long until that creation can no longer land.
        settles_in: Duration,
    },
    /// Reserved without an issue since `at_ms`, long enough ago that no creation can land any
    /// more: look for the issue in GitLab, then [`TrackingReservations::record`] it or
    /// [`TrackingReservations::take_over`].
    Unfinished { by: String, at_ms: i64 },
}

/// One organization's tracking-issue reservations, bound to the holder of its shared lock.
#[async_trait::async_trait]
pub trait TrackingReservations: Send + Sync {
    /// Reserves the organization's tracking issue in `project`: the row is inserted when
    /// there is none ([`Reserved::Ours`]), else returned as it is.
    /// [`QueueError::LockLost`] when the lock is no longer the caller's.
    async fn reserve(&self, project: &str) -> Result<Reserved, QueueError>;
    /// Makes the row the caller's again, without an issue (a recorded issue was closed, or an
    /// unfinished creation found nothing). `false` when the row changed since it was read.
    async fn take_over(&self, project: &str, seen: &Reserved) -> Result<bool, QueueError>;
    /// Records the issue created (or found) for the reservation.
    async fn record(&self, project: &str, iid: u64) -> Result<(), QueueError>;
    /// Gives the caller's reservation back when nothing was created (GitLab refused, or the
    /// lock was lost before the request went out).
    async fn release(&self, project: &str) -> Result<(), QueueError>;
    /// GitLab answered the caller's creation with an error that may or may not have created
    /// the issue (5xx): nothing of it is in flight any more, so the next holder looks for the
    /// issue at once instead of waiting [`IN_FLIGHT`].
    async fn settle(&self, project: &str) -> Result<(), QueueError>;
}

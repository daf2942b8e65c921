//! Locks on a key (an organization) shared by every replica: the handlers take one around an
//! organization's read → decide → write step when the queue is shared ([`super::PostgresQueue`]),
//! beside their in-process lock.
//!
//! A lease can run out under a holder that stalls (its renewals fail while the database is
//! unreachable, or the process pauses): another replica may then take the key. So the guard
//! fences writes: it knows until when its lease is surely held, and the executor asks
//! [`SharedKeyGuard::held`] before each GitLab write; a guard that is no longer sure lets
//! nothing be written, and the event is retried (reading GitLab again).

/// Held while one key's work runs; dropping it gives the lock back.
pub trait SharedKeyGuard: Send + Sync {
    /// Whether the lease is surely still this guard's: its last successful renewal's deadline
    /// (less a safety margin) has not passed and no renewal failed. Once `false`, always
    /// `false`.
    fn held(&self) -> bool;

    /// The key's tracking-issue reservations, for this holder (the key is an organization).
    fn reservations(&self) -> &dyn super::TrackingReservations;
}

/// A lock service shared by replicas.
#[async_trait::async_trait]
pub trait SharedKeyLocks: Send + Sync + std::fmt::Debug {
    /// Waits until this process holds `key` (retrying while the store is unreachable), and
    /// keeps holding it (renewing its lease) until the guard is dropped.
    async fn acquire(&self, key: &str) -> Box<dyn SharedKeyGuard>;
}

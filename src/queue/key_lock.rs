//! Locks on a key (an organization) shared by every replica: the handlers take one around an
//! organization's read → decide → write step when the queue is shared ([`super::PostgresQueue`]),
//! beside their in-process lock.

/// Held while one key's work runs; dropping it gives the lock back.
pub trait SharedKeyGuard: Send + Sync {}

/// A lock service shared by replicas.
#[async_trait::async_trait]
pub trait SharedKeyLocks: Send + Sync + std::fmt::Debug {
    /// Waits until this process holds `key` (retrying while the store is unreachable), and
    /// keeps holding it (renewing its lease) until the guard is dropped.
    async fn acquire(&self, key: &str) -> Box<dyn SharedKeyGuard>;
}

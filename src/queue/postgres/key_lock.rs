//! [`SharedKeyLocks`] on PostgreSQL: a row of `key_locks` per key with a lease and a token (see
//! migrations/0002_key_locks.sql). Acquiring is one upsert that wins only over an expired or
//! released lease; a task renews the lease while the guard lives and records each renewal's
//! deadline in the guard (the fence: [`SharedKeyGuard::held`]); a failed renewal marks the
//! guard lost; dropping the guard releases the row (only if the token is still ours).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::oneshot;

use super::tracking::PgReservations;
use super::{duration_ms, PostgresQueue};
use crate::clock::Clock;
use crate::queue::{SharedKeyGuard, SharedKeyLocks, TrackingReservations};

/// The lock's lease: renewed every third of it, so a replica that dies blocks the key this long.
const LEASE: Duration = Duration::from_secs(15);
/// Pause between tries while another replica holds the key.
const RETRY: Duration = Duration::from_millis(25);
/// A write starts only while at least this much of the lease is left: room for clock skew
/// between replicas and for the write's own time. Renewals every third of the lease keep two
/// thirds left, so only a missed renewal eats into it.
const SAFETY: Duration = Duration::from_secs(5);

/// Key locks in the queue's database.
#[derive(Clone)]
pub struct PgKeyLocks {
    pool: PgPool,
    clock: Clock,
    owner: String,
}

impl std::fmt::Debug for PgKeyLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeyLocks")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl PostgresQueue {
    /// Key locks in this queue's database, shared with every replica on it.
    pub fn key_locks(&self) -> PgKeyLocks {
        let mut nonce = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        PgKeyLocks {
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            owner: format!("{}-{}", std::process::id(), hex::encode(nonce)),
        }
    }
}

/// What the renewal task tells the guard.
#[derive(Debug)]
struct Fence {
    /// The deadline of the lease as last written (bot clock, unix ms).
    until_ms: AtomicI64,
    /// A renewal failed or found the row taken over.
    lost: AtomicBool,
}

impl Fence {
    fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }
}

struct PgKeyGuard {
    stop: Option<oneshot::Sender<()>>,
    fence: Arc<Fence>,
    clock: Clock,
    reservations: PgReservations,
}

impl SharedKeyGuard for PgKeyGuard {
    fn held(&self) -> bool {
        !self.fence.lost.load(Ordering::SeqCst)
            && self.clock.now_ms().saturating_add(duration_ms(SAFETY))
                < self.fence.until_ms.load(Ordering::SeqCst)
    }

    fn reservations(&self) -> &dyn TrackingReservations {
        &self.reservations
    }
}

impl Drop for PgKeyGuard {
    fn drop(&mut self) {
        // The renewal task releases the row when told (or when this sender is gone).
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl PgKeyLocks {
    /// The token and the lease's deadline when `key` was free (or its lease expired).
    async fn try_acquire(&self, key: &str) -> Result<Option<(i64, i64)>, sqlx::Error> {
        let now = self.clock.now_ms();
        let until = now.saturating_add(duration_ms(LEASE));
        let token: Option<i64> = sqlx::query_scalar(
            "INSERT INTO key_locks (key, owner, token, locked_until) VALUES ($1, $2, 1, $3)
             ON CONFLICT (key) DO UPDATE
                 SET owner = excluded.owner, token = key_locks.token + 1,
                     locked_until = excluded.locked_until
                 WHERE key_locks.locked_until <= $4
             RETURNING token",
        )
        .bind(key)
        .bind(&self.owner)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(token.map(|t| (t, until)))
    }
}

#[async_trait::async_trait]
impl SharedKeyLocks for PgKeyLocks {
    async fn acquire(&self, key: &str) -> Box<dyn SharedKeyGuard> {
        let (token, until) = loop {
            match self.try_acquire(key).await {
                Ok(Some(taken)) => break taken,
                Ok(None) => tokio::time::sleep(RETRY).await,
                Err(error) => {
                    tracing::warn!(%error, key, "cannot take the shared key lock; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        let fence = Arc::new(Fence {
            until_ms: AtomicI64::new(until),
            lost: AtomicBool::new(false),
        });
        let reservations = PgReservations {
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            key: key.to_owned(),
            token,
            holder: format!("{}#{token}", self.owner),
        };
        let (pool, clock, key) = (self.pool.clone(), self.clock.clone(), key.to_owned());
        let renewing = fence.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(LEASE / 3) => {
                        // The deadline is computed before the statement is sent: the guard
                        // never believes in a lease longer than the row's.
                        let until = clock.now_ms().saturating_add(duration_ms(LEASE));
                        let renewed = sqlx::query(
                            "UPDATE key_locks SET locked_until = $3 WHERE key = $1 AND token = $2",
                        )
                        .bind(&key)
                        .bind(token)
                        .bind(until)
                        .execute(&pool)
                        .await;
                        match renewed {
                            Ok(r) if r.rows_affected() == 1 => {
                                renewing.until_ms.fetch_max(until, Ordering::SeqCst);
                            }
                            Ok(_) => {
                                renewing.lose();
                                tracing::warn!(key, "shared key lock lost (its lease expired and another replica took it): no more writes under it");
                                return;
                            }
                            Err(error) => {
                                // Whether the row is still ours is unknown: the guard stops
                                // trusting it (the event is retried), and gives it back.
                                renewing.lose();
                                tracing::warn!(%error, key, "cannot renew the shared key lock: no more writes under it");
                                break;
                            }
                        }
                    }
                }
            }
            let released =
                sqlx::query("UPDATE key_locks SET locked_until = 0 WHERE key = $1 AND token = $2")
                    .bind(&key)
                    .bind(token)
                    .execute(&pool)
                    .await;
            if let Err(error) = released {
                tracing::debug!(%error, key, "cannot release the shared key lock; its lease will expire");
            }
        });
        Box::new(PgKeyGuard {
            stop: Some(stop),
            fence,
            clock: self.clock.clone(),
            reservations,
        })
    }
}

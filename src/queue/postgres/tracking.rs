//! [`TrackingReservations`] on PostgreSQL: a row of `tracking_reservations` per organization
//! and tracking project (see migrations/0003_tracking_reservations.sql). Reserving and taking
//! over check, in the same transaction, that the organization's `key_locks` row still carries
//! the caller's token and an unexpired lease: a replica whose lock was taken over cannot
//! reserve.

use sqlx::PgPool;

use super::{duration_ms, pg};
use crate::clock::Clock;
use crate::queue::tracking::IN_FLIGHT;
use crate::queue::{QueueError, Reserved, TrackingReservations};

/// The reservations of one organization, for the holder of its key lock (`token`).
pub(super) struct PgReservations {
    pub(super) pool: PgPool,
    pub(super) clock: Clock,
    /// The organization (the key lock's key).
    pub(super) key: String,
    pub(super) token: i64,
    /// Who reserves: the lock's owner and token.
    pub(super) holder: String,
}

/// The caller still holds the key lock (in a statement's `WHERE`: `$1` key, `$2` token,
/// `$3` now).
const LOCK_HELD: &str =
    "EXISTS (SELECT 1 FROM key_locks WHERE key = $1 AND token = $2 AND locked_until > $3)";

fn iid_of(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

#[async_trait::async_trait]
impl TrackingReservations for PgReservations {
    async fn reserve(&self, project: &str) -> Result<Reserved, QueueError> {
        let now = self.clock.now_ms();
        let mut tx = self.pool.begin().await.map_err(pg("reserve"))?;
        // Shares the lock row until the commit: no replica takes it over meanwhile.
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM key_locks WHERE key = $1 AND token = $2 AND locked_until > $3
             FOR SHARE",
        )
        .bind(&self.key)
        .bind(self.token)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg("reserve"))?;
        if held.is_none() {
            return Err(QueueError::LockLost {
                key: self.key.clone(),
            });
        }
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO tracking_reservations
                 (org, project, iid, reserved_by, reserved_at, settles_at)
             VALUES ($1, $2, NULL, $3, $4, $5)
             ON CONFLICT (org, project) DO NOTHING
             RETURNING 1",
        )
        .bind(&self.key)
        .bind(project)
        .bind(&self.holder)
        .bind(now)
        .bind(now.saturating_add(duration_ms(IN_FLIGHT)))
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg("reserve"))?;
        let reserved = match inserted {
            Some(_) => Reserved::Ours,
            None => {
                let (iid, by, at_ms, settles_at): (Option<i64>, String, i64, i64) = sqlx::query_as(
                    "SELECT iid, reserved_by, reserved_at, settles_at
                         FROM tracking_reservations WHERE org = $1 AND project = $2",
                )
                .bind(&self.key)
                .bind(project)
                .fetch_one(&mut *tx)
                .await
                .map_err(pg("reserve"))?;
                match iid_of(iid) {
                    Some(iid) => Reserved::Recorded { iid },
                    None if by == self.holder => Reserved::Ours,
                    None if now < settles_at => Reserved::InFlight {
                        by,
                        at_ms,
                        settles_in: std::time::Duration::from_millis(
                            u64::try_from(settles_at - now).unwrap_or(0),
                        ),
                    },
                    None => Reserved::Unfinished { by, at_ms },
                }
            }
        };
        tx.commit().await.map_err(pg("reserve"))?;
        Ok(reserved)
    }

    async fn take_over(&self, project: &str, seen: &Reserved) -> Result<bool, QueueError> {
        let now = self.clock.now_ms();
        let query = match seen {
            Reserved::Ours => return Ok(true),
            Reserved::InFlight { .. } => return Ok(false),
            Reserved::Recorded { iid } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tracking_reservations
                 SET iid = NULL, reserved_by = $6, reserved_at = $3, settles_at = $7
                 WHERE org = $1 AND project = $4 AND iid = $5 AND {LOCK_HELD}"
            )))
            .bind(&self.key)
            .bind(self.token)
            .bind(now)
            .bind(project)
            .bind(i64::try_from(*iid).unwrap_or(i64::MAX))
            .bind(&self.holder)
            .bind(now.saturating_add(duration_ms(IN_FLIGHT))),
            Reserved::Unfinished { by, at_ms } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tracking_reservations
                 SET reserved_by = $7, reserved_at = $3, settles_at = $8
                 WHERE org = $1 AND project = $4 AND iid IS NULL
                   AND reserved_by = $5 AND reserved_at = $6 AND {LOCK_HELD}"
            )))
            .bind(&self.key)
            .bind(self.token)
            .bind(now)
            .bind(project)
            .bind(by)
            .bind(*at_ms)
            .bind(&self.holder)
            .bind(now.saturating_add(duration_ms(IN_FLIGHT))),
        };
        let done = query
            .execute(&self.pool)
            .await
            .map_err(pg("take over a reservation"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn record(&self, project: &str, iid: u64) -> Result<(), QueueError> {
        // The issue exists whoever holds the lock now: recorded unconditionally.
        sqlx::query(
            "UPDATE tracking_reservations SET iid = $3
             WHERE org = $1 AND project = $2 AND iid IS NULL",
        )
        .bind(&self.key)
        .bind(project)
        .bind(i64::try_from(iid).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(pg("record a reservation"))?;
        Ok(())
    }

    async fn release(&self, project: &str) -> Result<(), QueueError> {
        sqlx::query(
            "DELETE FROM tracking_reservations
             WHERE org = $1 AND project = $2 AND iid IS NULL AND reserved_by = $3",
        )
        .bind(&self.key)
        .bind(project)
        .bind(&self.holder)
        .execute(&self.pool)
        .await
        .map_err(pg("release a reservation"))?;
        Ok(())
    }

    async fn settle(&self, project: &str) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE tracking_reservations SET settles_at = $4
             WHERE org = $1 AND project = $2 AND iid IS NULL AND reserved_by = $3",
        )
        .bind(&self.key)
        .bind(project)
        .bind(&self.holder)
        .bind(self.clock.now_ms())
        .execute(&self.pool)
        .await
        .map_err(pg("settle a reservation"))?;
        Ok(())
    }
}

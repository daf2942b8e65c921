//! The worker's operations on the PostgreSQL queue: enqueue, claim, renew, ack, fail, release,
//! stats, ping and prune.

use std::collections::HashSet;
use std::time::Duration;

use rand::RngCore;
use sqlx::{Postgres, Row, Transaction};

use super::{duration_ms, pg, PostgresQueue};
use crate::queue::{
    ClaimedEvent, Enqueued, EventId, Lease, NewEvent, Queue, QueueError, QueueStats,
};

/// Candidates a claim locks per event it wants: some are skipped because their key is busy.
const CANDIDATES_PER_CLAIM: i64 = 4;

/// Pages of candidates a claim reads at most, so that a long burst on one key cannot make a
/// claim walk the whole table (the events behind it wait for a later claim).
const MAX_CLAIM_PAGES: usize = 16;

/// Done events deleted per statement by `prune_done`, so that a large prune never holds many
/// row locks or a long transaction.
const PRUNE_CHUNK: i64 = 500;

impl PostgresQueue {
    /// After a fenced change matched no row: [`QueueError::NotFound`] for an unknown id,
    /// [`QueueError::LeaseLost`] when the event is pending under another claim, else `Ok`
    /// (no longer pending: a no-op, as for unfenced changes).
    async fn ensure_not_fenced(
        &self,
        op: &'static str,
        id: EventId,
        token: Option<i64>,
    ) -> Result<(), QueueError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT state, lease_token FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(pg(op))?;
        match row {
            None => Err(QueueError::NotFound { op, id }),
            Some((state, current)) if state == "pending" && token.is_some_and(|t| t != current) => {
                Err(QueueError::LeaseLost { op, id })
            }
            Some(_) => Ok(()),
        }
    }

    async fn ack_inner(&self, id: EventId, token: Option<i64>) -> Result<(), QueueError> {
        let op = "ack";
        let changed: i64 = sqlx::query_scalar(
            "WITH e AS (
                 UPDATE events SET state = 'done', done_at = $2, locked_until = NULL
                 WHERE id = $1 AND state = 'pending' AND ($3::BIGINT IS NULL OR lease_token = $3)
                 RETURNING id, serial_key),
             l AS (
                 UPDATE serial_locks s SET locked_until = 0, event_id = NULL
                 FROM e WHERE s.serial_key = e.serial_key AND s.event_id = e.id
                 RETURNING 1)
             SELECT (SELECT COUNT(*) FROM e) + 0 * (SELECT COUNT(*) FROM l)",
        )
        .bind(id)
        .bind(self.now())
        .bind(token)
        .fetch_one(&self.pool)
        .await
        .map_err(pg(op))?;
        if changed == 0 {
            self.ensure_not_fenced(op, id, token).await?;
        }
        Ok(())
    }

    async fn release_inner(&self, id: EventId, token: Option<i64>) -> Result<(), QueueError> {
        let op = "release";
        let changed: i64 = sqlx::query_scalar(
            "WITH e AS (
                 UPDATE events SET attempts = GREATEST(attempts - 1, 0), locked_until = NULL
                 WHERE id = $1 AND state = 'pending' AND ($2::BIGINT IS NULL OR lease_token = $2)
                 RETURNING id, serial_key),
             l AS (
                 UPDATE serial_locks s SET locked_until = 0, event_id = NULL
                 FROM e WHERE s.serial_key = e.serial_key AND s.event_id = e.id
                 RETURNING 1)
             SELECT (SELECT COUNT(*) FROM e) + 0 * (SELECT COUNT(*) FROM l)",
        )
        .bind(id)
        .bind(token)
        .fetch_one(&self.pool)
        .await
        .map_err(pg(op))?;
        if changed == 0 {
            self.ensure_not_fenced(op, id, token).await?;
        }
        Ok(())
    }

    async fn fail_inner(
        &self,
        id: EventId,
        token: Option<i64>,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError> {
        let op = "fail";
        let error = super::pg_text(&self.redactor.text(error)).into_owned();
        let now = self.now();
        let mut tx = self.pool.begin().await.map_err(pg(op))?;
        let row: Option<(i32, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT attempts, state, lease_token, serial_key FROM events WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg(op))?;
        let Some((attempts, state, current, serial_key)) = row else {
            return Err(QueueError::NotFound { op, id });
        };
        if state == "pending" && token.is_some_and(|t| t != current) {
            return Err(QueueError::LeaseLost { op, id });
        }
        if state != "pending" {
            tracing::debug!(
                id,
                state,
                "queue fail on an event that is no longer pending; ignored"
            );
            return Ok(());
        }
        sqlx::query("INSERT INTO attempts (event_id, attempt, at, error) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(attempts)
            .bind(now)
            .bind(&error)
            .execute(&mut *tx)
            .await
            .map_err(pg(op))?;
        match retry_in.map(|d| now.saturating_add(duration_ms(d))) {
            Some(retry_at) => sqlx::query(
                "UPDATE events SET last_error = $2, next_attempt_at = $3, locked_until = NULL
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&error)
            .bind(retry_at),
            None => sqlx::query(
                "UPDATE events SET last_error = $2, state = 'dead', dead_at = $3,
                        locked_until = NULL
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&error)
            .bind(now),
        }
        .execute(&mut *tx)
        .await
        .map_err(pg(op))?;
        if let Some(key) = serial_key {
            sqlx::query(
                "UPDATE serial_locks SET locked_until = 0, event_id = NULL
                 WHERE serial_key = $1 AND event_id = $2",
            )
            .bind(key)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(pg(op))?;
        }
        tx.commit().await.map_err(pg(op))
    }
}

/// The claim's transaction: lock candidates, take their keys' lock rows, lease the chosen.
async fn claim_in(
    tx: &mut Transaction<'_, Postgres>,
    now: i64,
    max: i64,
    locked_until: i64,
) -> Result<Vec<ClaimedEvent>, QueueError> {
    let op = "claim";
    let page = max.saturating_mul(CANDIDATES_PER_CLAIM);
    // Keys decided so far: taken by this claim (`Some(true)` until used) or busy.
    let mut decided: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut chosen: Vec<EventId> = Vec::new();
    let mut after: EventId = 0;
    for _ in 0..MAX_CLAIM_PAGES {
        let candidates: Vec<(EventId, Option<String>)> = sqlx::query_as(
            "SELECT id, serial_key FROM events
             WHERE state = 'pending' AND next_attempt_at <= $1
               AND (locked_until IS NULL OR locked_until <= $1) AND id > $3
             ORDER BY id
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(page)
        .bind(after)
        .fetch_all(&mut **tx)
        .await
        .map_err(pg(op))?;
        let full_page = candidates.len() as i64 >= page;
        let Some(&(last, _)) = candidates.last() else {
            break;
        };
        after = last;
        let mut keys: Vec<String> = candidates
            .iter()
            .filter_map(|(_, key)| key.clone())
            .filter(|key| !decided.contains_key(key))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        keys.sort();
        if !keys.is_empty() {
            // Lock rows are made on first use, in key order: two claims making rows for the
            // same keys wait for each other in the same order, so they cannot deadlock.
            sqlx::query(
                "INSERT INTO serial_locks (serial_key)
                 SELECT k FROM unnest($1::TEXT[]) AS k ORDER BY k
                 ON CONFLICT (serial_key) DO NOTHING",
            )
            .bind(&keys)
            .execute(&mut **tx)
            .await
            .map_err(pg(op))?;
            let free: HashSet<String> = sqlx::query_scalar(
                "SELECT serial_key FROM serial_locks
                 WHERE serial_key = ANY($1) AND locked_until <= $2
                 ORDER BY serial_key
                 FOR UPDATE SKIP LOCKED",
            )
            .bind(&keys)
            .bind(now)
            .fetch_all(&mut **tx)
            .await
            .map_err(pg(op))?
            .into_iter()
            .collect();
            for key in keys {
                let is_free = free.contains(&key);
                decided.insert(key, is_free);
            }
        }
        for (id, key) in candidates {
            if chosen.len() as i64 >= max {
                break;
            }
            match key {
                Some(key) => {
                    // A free key is used once; its later events wait for the next claim.
                    if decided.get(&key) == Some(&true) {
                        decided.insert(key, false);
                        chosen.push(id);
                    }
                }
                None => chosen.push(id),
            }
        }
        if chosen.len() as i64 >= max || !full_page {
            break;
        }
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "UPDATE events SET
             attempts = attempts + (CASE WHEN locked_until IS NULL THEN 1 ELSE 0 END),
             lease_token = lease_token + 1,
             locked_until = $1
         WHERE id = ANY($2)
         RETURNING id, kind, headers, body, attempts, received_at, lease_token, serial_key",
    )
    .bind(locked_until)
    .bind(&chosen)
    .fetch_all(&mut **tx)
    .await
    .map_err(pg(op))?;
    let mut claimed = Vec::with_capacity(rows.len());
    let (mut lock_keys, mut lock_ids, mut lock_tokens) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        let id: EventId = row.try_get(0).map_err(pg(op))?;
        let headers: String = row.try_get(2).map_err(pg(op))?;
        let attempts: i32 = row.try_get(4).map_err(pg(op))?;
        let lease_token: i64 = row.try_get(6).map_err(pg(op))?;
        let serial_key: Option<String> = row.try_get(7).map_err(pg(op))?;
        match serde_json::from_str::<Vec<(String, String)>>(&headers) {
            Ok(headers) => {
                if let Some(key) = serial_key {
                    lock_keys.push(key);
                    lock_ids.push(id);
                    lock_tokens.push(lease_token);
                }
                claimed.push(ClaimedEvent {
                    id,
                    kind: row.try_get(1).map_err(pg(op))?,
                    headers,
                    body: row.try_get(3).map_err(pg(op))?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX).max(1),
                    received_at_ms: row.try_get(5).map_err(pg(op))?,
                    lease_token,
                })
            }
            Err(error) => {
                // Only this program writes the column, so this is damage; move the event out of
                // the way instead of failing every claim from now on.
                tracing::error!(id, %error, "queue event has corrupt headers; moving it to the dead letters");
                let message = format!("corrupt stored headers: {error}");
                sqlx::query(
                    "INSERT INTO attempts (event_id, attempt, at, error) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(attempts)
                .bind(now)
                .bind(&message)
                .execute(&mut **tx)
                .await
                .map_err(pg(op))?;
                sqlx::query(
                    "UPDATE events SET state = 'dead', dead_at = $2, locked_until = NULL,
                            last_error = $3
                     WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(&message)
                .execute(&mut **tx)
                .await
                .map_err(pg(op))?;
            }
        }
    }
    if !lock_keys.is_empty() {
        sqlx::query(
            "UPDATE serial_locks s SET event_id = u.id, lease_token = u.token, locked_until = $1
             FROM unnest($2::TEXT[], $3::BIGINT[], $4::BIGINT[]) AS u(key, id, token)
             WHERE s.serial_key = u.key",
        )
        .bind(locked_until)
        .bind(&lock_keys)
        .bind(&lock_ids)
        .bind(&lock_tokens)
        .execute(&mut **tx)
        .await
        .map_err(pg(op))?;
    }
    claimed.sort_by_key(|event| event.id);
    Ok(claimed)
}

#[async_trait::async_trait]
impl Queue for PostgresQueue {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        self.enqueuer.enqueue(event).await
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<ClaimedEvent>, QueueError> {
        let op = "claim";
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let now = self.now();
        let locked_until = now.saturating_add(duration_ms(lease));
        let mut tx = self.pool.begin().await.map_err(pg(op))?;
        let claimed = claim_in(&mut tx, now, max, locked_until).await?;
        tx.commit().await.map_err(pg(op))?;
        Ok(claimed)
    }

    async fn ack(&self, id: EventId) -> Result<(), QueueError> {
        self.ack_inner(id, None).await
    }

    async fn fail(
        &self,
        id: EventId,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError> {
        self.fail_inner(id, None, error, retry_in).await
    }

    async fn release(&self, id: EventId) -> Result<(), QueueError> {
        self.release_inner(id, None).await
    }

    async fn renew(&self, lease: Lease, duration: Duration) -> Result<(), QueueError> {
        let op = "renew";
        let until = self.now().saturating_add(duration_ms(duration));
        let changed: i64 = sqlx::query_scalar(
            "WITH e AS (
                 UPDATE events SET locked_until = $3
                 WHERE id = $1 AND state = 'pending' AND lease_token = $2
                 RETURNING id, serial_key),
             l AS (
                 UPDATE serial_locks s SET locked_until = $3
                 FROM e WHERE s.serial_key = e.serial_key AND s.event_id = e.id
                   AND s.lease_token = $2
                 RETURNING 1)
             SELECT (SELECT COUNT(*) FROM e) + 0 * (SELECT COUNT(*) FROM l)",
        )
        .bind(lease.id)
        .bind(lease.token)
        .bind(until)
        .fetch_one(&self.pool)
        .await
        .map_err(pg(op))?;
        if changed == 0 {
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM events WHERE id = $1")
                .bind(lease.id)
                .fetch_optional(&self.pool)
                .await
                .map_err(pg(op))?;
            if exists.is_none() {
                return Err(QueueError::NotFound { op, id: lease.id });
            }
            return Err(QueueError::LeaseLost { op, id: lease.id });
        }
        Ok(())
    }

    async fn ack_leased(&self, lease: Lease) -> Result<(), QueueError> {
        self.ack_inner(lease.id, Some(lease.token)).await
    }

    async fn fail_leased(
        &self,
        lease: Lease,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError> {
        self.fail_inner(lease.id, Some(lease.token), error, retry_in)
            .await
    }

    async fn release_leased(&self, lease: Lease) -> Result<(), QueueError> {
        self.release_inner(lease.id, Some(lease.token)).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        read_stats(&self.pool, self.now()).await
    }

    async fn ping(&self, bytes: usize) -> Result<(), QueueError> {
        let op = "ping";
        let mut tx = self.pool.begin().await.map_err(pg(op))?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('last_ping_at', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(self.now().to_string().into_bytes())
        .execute(&mut *tx)
        .await
        .map_err(pg(op))?;
        if bytes > 0 {
            // Random bytes, so that the write cannot be compressed away (TOAST).
            let mut probe = vec![0u8; bytes];
            rand::rng().fill_bytes(&mut probe);
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ('probe', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(probe)
            .execute(&mut *tx)
            .await
            .map_err(pg(op))?;
        } else {
            sqlx::query("DELETE FROM meta WHERE key = 'probe'")
                .execute(&mut *tx)
                .await
                .map_err(pg(op))?;
        }
        tx.commit().await.map_err(pg(op))
    }

    async fn prune_done(&self, retention: Duration) -> Result<u64, QueueError> {
        let op = "prune_done";
        let now = self.now();
        let cutoff = now.saturating_sub(duration_ms(retention));
        let mut deleted = 0u64;
        loop {
            let n = sqlx::query(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events WHERE state = 'done' AND done_at < $1
                     ORDER BY id LIMIT $2)",
            )
            .bind(cutoff)
            .bind(PRUNE_CHUNK)
            .execute(&self.pool)
            .await
            .map_err(pg(op))?
            .rows_affected();
            deleted += n;
            if (n as i64) < PRUNE_CHUNK {
                break;
            }
        }
        // Lock rows of keys with nothing pending (a claim holding one keeps it: the delete
        // waits for its row lock, then sees the new lease).
        sqlx::query(
            "DELETE FROM serial_locks s
             WHERE s.locked_until <= $1
               AND NOT EXISTS (SELECT 1 FROM events e
                               WHERE e.serial_key = s.serial_key AND e.state = 'pending')",
        )
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(pg(op))?;
        Ok(deleted)
    }
}

/// Counts of events by state at `now`.
pub(super) async fn read_stats(pool: &sqlx::PgPool, now: i64) -> Result<QueueStats, QueueError> {
    let op = "stats";
    // Each count reads only its state's partial index (pending events are few; done and dead
    // are counted from their own indexes), never the whole table.
    let (pending, in_flight, dead, done, oldest): (i64, i64, i64, i64, Option<i64>) =
        sqlx::query_as(
            "SELECT p.pending, p.in_flight,
                    (SELECT COUNT(*) FROM events WHERE state = 'dead'),
                    (SELECT COUNT(*) FROM events WHERE state = 'done'),
                    p.oldest
             FROM (SELECT COUNT(*) AS pending,
                          COUNT(*) FILTER (WHERE locked_until > $1) AS in_flight,
                          MIN(received_at) AS oldest
                   FROM events WHERE state = 'pending') AS p",
        )
        .bind(now)
        .fetch_one(pool)
        .await
        .map_err(pg(op))?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(QueueStats {
        pending: count(pending).saturating_sub(count(in_flight)),
        in_flight: count(in_flight),
        dead: count(dead),
        done: count(done),
        oldest_pending_age_ms: oldest.map(|received_at| now.saturating_sub(received_at)),
    })
}

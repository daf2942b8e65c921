//! The SQL of each queue operation (enqueue batch, claim, ack, renew, fail, release, ping,
//! prune), run by the writer thread inside its own transactions.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::schema::{duration_ms, sql};
use super::writer::{EnqueueItem, PendingEnqueue, Writer};
use crate::queue::{ClaimedEvent, Enqueued, EventId, Lease, QueueError};

/// Done events deleted per transaction by `prune_done`, so that a large prune
/// does not stall enqueues.
pub(super) const PRUNE_CHUNK: i64 = 500;

impl Writer {
    /// Group commit: insert the whole batch in one transaction, commit once,
    /// then answer every caller. If anything fails, the transaction is rolled
    /// back and every caller gets the error.
    pub(super) fn enqueue_batch(&mut self, batch: Vec<PendingEnqueue>) {
        let now = self.now();
        let durable = self.fsync_commits(true);
        let inserted = durable
            .and_then(|()| insert_events(&mut self.conn, now, batch.iter().map(|(item, _)| item)));
        match inserted {
            Ok(results) => {
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(source) => {
                let batch_size = batch.len();
                tracing::error!(error = %source, batch_size, "queue group commit failed");
                if batch_size == 1 {
                    if let Some((_, reply)) = batch.into_iter().next() {
                        let _ = reply.send(Err(QueueError::Sqlite {
                            op: "enqueue",
                            source,
                        }));
                    }
                } else {
                    let source = Arc::new(source);
                    for (_, reply) in batch {
                        let _ = reply.send(Err(QueueError::GroupCommit {
                            batch_size,
                            source: Arc::clone(&source),
                        }));
                    }
                }
            }
        }
    }

    pub(super) fn claim(
        &mut self,
        max: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedEvent>, QueueError> {
        let op = "claim";
        let now = self.now();
        let locked_until = now.saturating_add(lease_ms);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        let chosen = choose_claimable(&tx, now, max).map_err(sql(op))?;
        let mut rows = Vec::with_capacity(chosen.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE events SET
                         attempts = attempts + (CASE WHEN locked_until IS NULL THEN 1 ELSE 0 END),
                         lease_token = lease_token + 1,
                         locked_until = ?1
                     WHERE id = ?2
                     RETURNING id, kind, headers, body, attempts, received_at, lease_token",
                )
                .map_err(sql(op))?;
            for id in chosen {
                let row = stmt
                    .query_row(params![locked_until, id], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, Vec<u8>>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, i64>(5)?,
                            row.get::<_, i64>(6)?,
                        ))
                    })
                    .map_err(sql(op))?;
                rows.push(row);
            }
        }

        let mut claimed = Vec::with_capacity(rows.len());
        for (id, kind, headers, body, attempts, received_at_ms, lease_token) in rows {
            match serde_json::from_str::<Vec<(String, String)>>(&headers) {
                Ok(headers) => claimed.push(ClaimedEvent {
                    id,
                    kind,
                    headers,
                    body,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX).max(1),
                    received_at_ms,
                    lease_token,
                }),
                Err(error) => {
                    // Only this program writes the column, so this is damage;
                    // move the event out of the way instead of failing every
                    // claim from now on.
                    tracing::error!(id, %error, "queue event has corrupt headers; moving it to the dead letters");
                    let message = format!("corrupt stored headers: {error}");
                    tx.execute(
                        "INSERT INTO attempts (event_id, attempt, at, error) VALUES (?1, ?2, ?3, ?4)",
                        params![id, attempts, now, message],
                    )
                    .map_err(sql(op))?;
                    tx.execute(
                        "UPDATE events SET state = 'dead', dead_at = ?2, locked_until = NULL,
                                last_error = ?3
                         WHERE id = ?1",
                        params![id, now, message],
                    )
                    .map_err(sql(op))?;
                }
            }
        }
        tx.commit().map_err(sql(op))?;
        claimed.sort_by_key(|event| event.id);
        Ok(claimed)
    }

    pub(super) fn ack(&mut self, id: EventId, token: Option<i64>) -> Result<(), QueueError> {
        let op = "ack";
        let now = self.now();
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE events SET state = 'done', done_at = ?2, locked_until = NULL
                 WHERE id = ?1 AND state = 'pending' AND (?3 IS NULL OR lease_token = ?3)",
            )
            .and_then(|mut stmt| stmt.execute(params![id, now, token]))
            .map_err(sql(op))?;
        if changed == 0 {
            self.ensure_not_fenced(op, id, token)?;
        }
        Ok(())
    }

    pub(super) fn renew(&mut self, lease: Lease, lease_ms: i64) -> Result<(), QueueError> {
        let op = "renew";
        let until = self.now().saturating_add(lease_ms);
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE events SET locked_until = ?3
                 WHERE id = ?1 AND state = 'pending' AND lease_token = ?2",
            )
            .and_then(|mut stmt| stmt.execute(params![lease.id, lease.token, until]))
            .map_err(sql(op))?;
        if changed == 0 {
            self.ensure_exists(op, lease.id)?;
            return Err(QueueError::LeaseLost { op, id: lease.id });
        }
        Ok(())
    }

    /// After a fenced change matched no row: [`QueueError::NotFound`] for an unknown id,
    /// [`QueueError::LeaseLost`] when the event is pending under another claim, else `Ok`
    /// (no longer pending: a no-op, as for unfenced changes).
    pub(super) fn ensure_not_fenced(
        &self,
        op: &'static str,
        id: EventId,
        token: Option<i64>,
    ) -> Result<(), QueueError> {
        let row: Option<(String, i64)> = self
            .conn
            .prepare_cached("SELECT state, lease_token FROM events WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(sql(op))?;
        match row {
            None => Err(QueueError::NotFound { op, id }),
            Some((state, current)) if state == "pending" && token.is_some_and(|t| t != current) => {
                Err(QueueError::LeaseLost { op, id })
            }
            Some(_) => Ok(()),
        }
    }

    pub(super) fn fail(
        &mut self,
        id: EventId,
        token: Option<i64>,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError> {
        let op = "fail";
        let now = self.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        let row: Option<(i64, String, i64)> = tx
            .prepare_cached("SELECT attempts, state, lease_token FROM events WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .optional()
            })
            .map_err(sql(op))?;
        let Some((attempts, state, current)) = row else {
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
        tx.prepare_cached(
            "INSERT INTO attempts (event_id, attempt, at, error) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut stmt| stmt.execute(params![id, attempts, now, error]))
        .map_err(sql(op))?;
        match retry_in.map(|d| now.saturating_add(duration_ms(d))) {
            Some(retry_at) => tx
                .prepare_cached(
                    "UPDATE events SET last_error = ?2, next_attempt_at = ?3, locked_until = NULL
                     WHERE id = ?1",
                )
                .and_then(|mut stmt| stmt.execute(params![id, error, retry_at])),
            None => tx
                .prepare_cached(
                    "UPDATE events SET last_error = ?2, state = 'dead', dead_at = ?3,
                            locked_until = NULL
                     WHERE id = ?1",
                )
                .and_then(|mut stmt| stmt.execute(params![id, error, now])),
        }
        .map_err(sql(op))?;
        tx.commit().map_err(sql(op))
    }

    pub(super) fn release(&mut self, id: EventId, token: Option<i64>) -> Result<(), QueueError> {
        let op = "release";
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE events SET attempts = MAX(attempts - 1, 0), locked_until = NULL
                 WHERE id = ?1 AND state = 'pending' AND (?2 IS NULL OR lease_token = ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![id, token]))
            .map_err(sql(op))?;
        if changed == 0 {
            self.ensure_not_fenced(op, id, token)?;
        }
        Ok(())
    }

    pub(super) fn ping(&mut self, bytes: i64) -> Result<(), QueueError> {
        let now = self.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("ping"))?;
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('last_ping_at', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut stmt| stmt.execute([now.to_string()]))
        .map_err(sql("ping"))?;
        // The scratch row: as large as asked (a random blob, so the write cannot be
        // compressed away by the file system), or gone.
        if bytes > 0 {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('probe', randomblob(?1))
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute([bytes]))
            .map_err(sql("ping"))?;
        } else {
            tx.execute("DELETE FROM meta WHERE key = 'probe'", [])
                .map_err(sql("ping"))?;
        }
        tx.commit().map_err(sql("ping"))
    }

    /// Delete one chunk for the oldest prune job; answer it when it is done.
    pub(super) fn prune_step(&mut self) {
        let Some(job) = self.prunes.front_mut() else {
            return;
        };
        let result = self
            .conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events
                     WHERE state = 'done' AND done_at < ?1
                     ORDER BY id
                     LIMIT ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![job.cutoff, PRUNE_CHUNK]));
        match result {
            Ok(deleted) => {
                job.deleted += deleted as u64;
                if (deleted as i64) < PRUNE_CHUNK {
                    if let Some(job) = self.prunes.pop_front() {
                        let _ = job.reply.send(Ok(job.deleted));
                    }
                }
            }
            Err(source) => {
                if let Some(job) = self.prunes.pop_front() {
                    let _ = job.reply.send(Err(QueueError::Sqlite {
                        op: "prune_done",
                        source,
                    }));
                }
            }
        }
    }

    pub(super) fn ensure_exists(&self, op: &'static str, id: EventId) -> Result<(), QueueError> {
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM events WHERE id = ?1")
            .and_then(|mut stmt| stmt.exists([id]))
            .map_err(sql(op))?;
        if exists {
            Ok(())
        } else {
            Err(QueueError::NotFound { op, id })
        }
    }
}

/// The ids of up to `max` claimable events, oldest first, skipping events whose
/// serialization key is held by an event in flight or by an earlier event of this claim.
/// Reads only the two indexes of [`SCHEMA_V4`](super::schema::SCHEMA_V4); stops as soon as `max` are found.
pub(super) fn choose_claimable(
    conn: &Connection,
    now: i64,
    max: i64,
) -> rusqlite::Result<Vec<EventId>> {
    let mut busy: std::collections::HashSet<String> = conn
        .prepare_cached(
            "SELECT serial_key FROM events INDEXED BY events_state_lease
             WHERE state = 'pending' AND locked_until > ?1 AND serial_key IS NOT NULL",
        )?
        .query_map([now], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, serial_key FROM events INDEXED BY events_pending_claim
         WHERE state = 'pending'
           AND next_attempt_at <= ?1
           AND (locked_until IS NULL OR locked_until <= ?1)
         ORDER BY id",
    )?;
    let mut rows = stmt.query([now])?;
    let mut chosen = Vec::new();
    while let Some(row) = rows.next()? {
        if chosen.len() as i64 >= max {
            break;
        }
        let id: EventId = row.get(0)?;
        match row.get::<_, Option<String>>(1)? {
            Some(key) if busy.contains(&key) => continue,
            Some(key) => {
                busy.insert(key);
                chosen.push(id);
            }
            None => chosen.push(id),
        }
    }
    Ok(chosen)
}

/// Insert a batch of events in one transaction and commit it. Duplicates (of
/// stored events or of earlier events of the same batch) store nothing and
/// report the existing id.
pub(super) fn insert_events<'a>(
    conn: &mut Connection,
    now: i64,
    items: impl Iterator<Item = &'a EnqueueItem>,
) -> rusqlite::Result<Vec<Enqueued>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events
                 (dedupe_key, kind, headers, body, received_at, state, attempts, next_attempt_at,
                  serial_key)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7)
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING id",
        )?;
        let mut existing = tx.prepare_cached("SELECT id FROM events WHERE dedupe_key = ?1")?;
        for item in items {
            let inserted: Option<EventId> = insert
                .query_row(
                    params![
                        item.dedupe_key,
                        item.kind,
                        item.headers,
                        item.body,
                        item.received_at_ms,
                        now,
                        item.serial_key
                    ],
                    |row| row.get(0),
                )
                .optional()?;
            results.push(match inserted {
                Some(id) => Enqueued::New(id),
                None => {
                    Enqueued::Duplicate(existing.query_row([&item.dedupe_key], |row| row.get(0))?)
                }
            });
        }
    }
    tx.commit()?;
    Ok(results)
}

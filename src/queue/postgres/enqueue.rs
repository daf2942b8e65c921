//! Group commit of enqueues on PostgreSQL: the receiver's enqueues wait in a channel, one task
//! takes every enqueue waiting there (up to [`MAX_BATCH`]) and stores them with one multi-row
//! `INSERT … ON CONFLICT (dedupe_key) DO NOTHING` (one statement), then answers each caller
//! after the commit. One commit (one WAL flush, one notification) per batch instead of per
//! delivery, as the SQLite writer does (`src/queue/sqlite/writer.rs`).
//!
//! Nothing waits on purpose: while one batch commits, the next collects, so a lone delivery is
//! stored at once and a burst fills batches by itself. The batch keeps the arrival order (ids
//! are given in it). A batch that fails is retried once when PostgreSQL says the transaction may
//! succeed again (a deadlock with another replica's batch over the same dedupe keys, a
//! serialization failure); otherwise every caller of the batch gets the error and nothing of the
//! batch is stored.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{pg_text, NOTIFY_CHANNEL};
use crate::clock::Clock;
use crate::queue::{Enqueued, EventId, NewEvent, QueueError};

/// Most enqueues in one group commit.
pub(super) const MAX_BATCH: usize = 256;

/// Batches committing at once: while one waits for its WAL flush, the next is sent (two
/// batches of one replica touch the same dedupe key only for a repeated delivery; if they
/// deadlock over it, PostgreSQL aborts one, which is tried again).
const BATCHES_IN_FLIGHT: usize = 2;

/// Longest a batch may take to be stored before its callers are answered with an error.
const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Enqueues waiting for the batcher at most; further callers wait for room (back-pressure
/// instead of unbounded memory).
const CHANNEL_CAPACITY: usize = 4 * MAX_BATCH;

/// An enqueue waiting for its group commit.
struct Pending {
    event: NewEvent,
    headers: String,
    reply: oneshot::Sender<Result<Enqueued, QueueError>>,
}

/// The receiving end's handle: cheap to clone, shared by the queue's clones.
#[derive(Clone)]
pub(super) struct Enqueuer {
    tx: mpsc::Sender<Pending>,
}

impl Enqueuer {
    /// Starts the batching task on the current runtime; it ends when every handle is dropped.
    pub(super) fn start(pool: PgPool, clock: Clock) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(run(pool, clock, rx));
        Self { tx }
    }

    /// Stores `event` (or finds its duplicate) and answers after the commit.
    pub(super) async fn enqueue(&self, mut event: NewEvent) -> Result<Enqueued, QueueError> {
        let op = "enqueue";
        for text in [&mut event.dedupe_key, &mut event.kind] {
            if let Cow::Owned(storable) = pg_text(text) {
                *text = storable;
            }
        }
        if let Some(Cow::Owned(storable)) = event.serial_key.as_deref().map(pg_text) {
            event.serial_key = Some(storable);
        }
        let headers = serde_json::to_string(&event.headers)
            .map_err(|source| QueueError::Encode { source })?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                event,
                headers,
                reply,
            })
            .await
            .map_err(|_| QueueError::WriterGone { op })?;
        answer.await.map_err(|_| QueueError::WriterGone { op })?
    }
}

async fn run(pool: PgPool, clock: Clock, mut rx: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        // Wait for room first, so that the enqueues arriving meanwhile join the next batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (pool, clock) = (pool.clone(), clock.clone());
        tokio::spawn(async move {
            commit_batch(&pool, &clock, batch).await;
            drop(permit);
        });
    }
}

/// Stores one batch (trying once more after a transient conflict) and answers its callers.
async fn commit_batch(pool: &PgPool, clock: &Clock, batch: Vec<Pending>) {
    let mut result = store_within(pool, clock.now_ms(), &batch).await;
    if matches!(&result, Err(error) if is_transient(error)) {
        tracing::debug!("queue group commit conflicted with another; trying it again");
        result = store_within(pool, clock.now_ms(), &batch).await;
    }
    match result {
        Ok(outcomes) => {
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let _ = pending.reply.send(outcome.ok_or(QueueError::Postgres {
                    op: "enqueue",
                    source: sqlx::Error::RowNotFound,
                }));
            }
        }
        Err(error) => {
            let batch_size = batch.len();
            let source = Arc::new(error);
            for pending in batch {
                let _ = pending.reply.send(Err(QueueError::PostgresGroupCommit {
                    batch_size,
                    source: source.clone(),
                }));
            }
        }
    }
}

/// [`store`], given up after [`STORE_TIMEOUT`] (a database that stopped answering must not hold
/// the receivers' answers for ever; what it still commits later is a duplicate for GitLab's
/// resend).
async fn store_within(
    pool: &PgPool,
    now: i64,
    batch: &[Pending],
) -> Result<Vec<Option<Enqueued>>, sqlx::Error> {
    match tokio::time::timeout(STORE_TIMEOUT, store(pool, now, batch)).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "PostgreSQL did not answer within {} s",
                STORE_TIMEOUT.as_secs()
            ),
        ))),
    }
}

/// `true` for errors after which the same transaction may well succeed: a deadlock (40P01) or
/// a serialization failure (40001).
fn is_transient(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Inserts the batch in one transaction; returns each item's outcome, in the batch's order
/// (`None`: a duplicate whose stored event was pruned between the insert and the read).
async fn store(
    pool: &PgPool,
    now: i64,
    batch: &[Pending],
) -> Result<Vec<Option<Enqueued>>, sqlx::Error> {
    let mut keys = Vec::with_capacity(batch.len());
    let mut kinds = Vec::with_capacity(batch.len());
    let mut headers = Vec::with_capacity(batch.len());
    let mut bodies = Vec::with_capacity(batch.len());
    let mut received = Vec::with_capacity(batch.len());
    let mut serial_keys = Vec::with_capacity(batch.len());
    for p in batch {
        keys.push(p.event.dedupe_key.as_str());
        kinds.push(p.event.kind.as_str());
        headers.push(p.headers.as_str());
        bodies.push(p.event.body.as_slice());
        received.push(p.event.received_at_ms);
        serial_keys.push(p.event.serial_key.as_deref());
    }
    // One statement, so one round trip and one (implicit) transaction. `WITH ORDINALITY …
    // ORDER BY` keeps the arrival order for the ids; a key twice in the batch is stored once
    // (the second row conflicts with the first and is skipped). The notification, sent at the
    // commit, is made once for the batch and only when something was stored.
    let inserted: Vec<(String, EventId)> = sqlx::query_as(
        "WITH ins AS (
             INSERT INTO events
                 (dedupe_key, kind, headers, body, received_at, state, attempts,
                  next_attempt_at, serial_key)
             SELECT u.dedupe_key, u.kind, u.headers, u.body, u.received_at, 'pending', 0, $7,
                    u.serial_key
             FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::BIGINT[],
                         $6::TEXT[])
                  WITH ORDINALITY AS u(dedupe_key, kind, headers, body, received_at,
                                       serial_key, n)
             ORDER BY u.n
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING dedupe_key, id),
         note AS (
             SELECT pg_notify($8, '') FROM (SELECT 1) AS one WHERE EXISTS (SELECT 1 FROM ins))
         SELECT ins.dedupe_key, ins.id FROM ins CROSS JOIN (SELECT COUNT(*) FROM note) AS n",
    )
    .bind(&keys)
    .bind(&kinds)
    .bind(&headers)
    .bind(&bodies)
    .bind(&received)
    .bind(&serial_keys)
    .bind(now)
    .bind(NOTIFY_CHANNEL)
    .fetch_all(pool)
    .await?;
    let mut new: HashMap<String, EventId> = inserted.into_iter().collect();
    // Keys not inserted were there already (committed before, or by a concurrent batch that
    // the insert waited for): read their ids after the commit, when both are visible.
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !new.contains_key(*k))
        .collect();
    let existing: HashMap<String, EventId> = if missing.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (String, EventId)>(
            "SELECT dedupe_key, id FROM events WHERE dedupe_key = ANY($1)",
        )
        .bind(&missing)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect()
    };
    let mut out: Vec<Option<Enqueued>> = Vec::with_capacity(batch.len());
    for (i, key) in keys.iter().enumerate() {
        let outcome = match new.remove(*key) {
            Some(id) => Some(Enqueued::New(id)),
            None => existing
                .get(*key)
                .map(|&id| Enqueued::Duplicate(id))
                .or_else(|| {
                    // A key twice in the batch: the later item is a duplicate of the earlier.
                    keys[..i]
                        .iter()
                        .position(|k| k == key)
                        .and_then(|j| out[j])
                        .map(|first| Enqueued::Duplicate(first.id()))
                }),
        };
        out.push(outcome);
    }
    Ok(out)
}

//! `cocreate queue migrate --from DIR --to postgres://…`: moves a SQLite queue into PostgreSQL so
//! that an operator can switch without losing or repeating work.
//!
//! Copied: pending events (due when they were due, their attempts kept, no lease), dead letters,
//! and done events still in retention (their dedupe keys, so that GitLab's retries of deliveries
//! already processed stay duplicates), each with its failed-attempt history. Safe to run again:
//! an event whose dedupe key is already in PostgreSQL is skipped. Refused while an event is in
//! flight (a `serve` still works on the SQLite queue: stop it first). The recover cursors come
//! along (never moving one back), so `recover --queue` continues where `recover --data` stopped.

use std::path::Path;

use rusqlite::OptionalExtension;
use serde::Serialize;

use super::postgres::pg_text;
use super::sqlite::{migrate, open_connection, sql, DB_FILE};
use super::{EventId, PostgresQueue, QueueError};

/// What a migration moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Migrated {
    pub pending: u64,
    pub dead: u64,
    pub done: u64,
    /// Events whose dedupe key PostgreSQL already had (an earlier run, or a replica's delivery).
    pub skipped: u64,
    /// Recover cursors (one per webhook) carried over.
    pub cursors: u64,
}

/// One SQLite row to copy.
struct Row {
    id: EventId,
    dedupe_key: String,
    kind: String,
    headers: String,
    body: Vec<u8>,
    received_at: i64,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    done_at: Option<i64>,
    dead_at: Option<i64>,
    replays: i64,
    replayed_at: Option<i64>,
    serial_key: Option<String>,
    history: Vec<(i64, i64, String)>,
}

/// What is read from the SQLite queue: its events and its recover cursors.
type Read = (Vec<Row>, Vec<(String, i64)>);

/// Reads every event and recover cursor of the SQLite queue in `dir` (refusing while an event
/// is in flight at `now`).
fn read_sqlite(dir: &Path, now: i64) -> Result<Read, QueueError> {
    let op = "migrate";
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(QueueError::NoDatabase { path });
    }
    let mut conn = open_connection(&path, false)?;
    migrate(&mut conn, &path)?;
    let tx = conn.transaction().map_err(sql(op))?;
    let in_flight: Option<(EventId, i64)> = tx
        .query_row(
            "SELECT id, locked_until FROM events WHERE state = 'pending' AND locked_until > ?1
             LIMIT 1",
            [now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql(op))?;
    if let Some((id, locked_until_ms)) = in_flight {
        return Err(QueueError::InFlight {
            op: "migrate (stop `serve` on the SQLite queue first)",
            id,
            locked_until_ms,
        });
    }
    let mut rows = Vec::new();
    {
        let mut stmt = tx
            .prepare(
                "SELECT id, dedupe_key, kind, headers, body, received_at, state, attempts,
                        next_attempt_at, last_error, done_at, dead_at, replays, replayed_at,
                        serial_key
                 FROM events ORDER BY id",
            )
            .map_err(sql(op))?;
        let mut found = stmt.query([]).map_err(sql(op))?;
        while let Some(r) = found.next().map_err(sql(op))? {
            rows.push(Row {
                id: r.get(0).map_err(sql(op))?,
                dedupe_key: r.get(1).map_err(sql(op))?,
                kind: r.get(2).map_err(sql(op))?,
                headers: r.get(3).map_err(sql(op))?,
                body: r.get(4).map_err(sql(op))?,
                received_at: r.get(5).map_err(sql(op))?,
                state: r.get(6).map_err(sql(op))?,
                attempts: r.get(7).map_err(sql(op))?,
                next_attempt_at: r.get(8).map_err(sql(op))?,
                last_error: r.get(9).map_err(sql(op))?,
                done_at: r.get(10).map_err(sql(op))?,
                dead_at: r.get(11).map_err(sql(op))?,
                replays: r.get(12).map_err(sql(op))?,
                replayed_at: r.get(13).map_err(sql(op))?,
                serial_key: r.get(14).map_err(sql(op))?,
                history: Vec::new(),
            });
        }
        let mut history = tx
            .prepare(
                "SELECT attempt, at, error FROM attempts WHERE event_id = ?1 ORDER BY at, rowid",
            )
            .map_err(sql(op))?;
        for row in &mut rows {
            let mut found = history.query([row.id]).map_err(sql(op))?;
            while let Some(r) = found.next().map_err(sql(op))? {
                row.history.push((
                    r.get(0).map_err(sql(op))?,
                    r.get(1).map_err(sql(op))?,
                    r.get(2).map_err(sql(op))?,
                ));
            }
        }
    }
    let cursors = super::cursor::read_sqlite(&tx).map_err(sql(op))?;
    tx.commit().map_err(sql(op))?;
    Ok((rows, cursors))
}

/// Copies the SQLite queue in `from` into `to` (see the module docs).
pub async fn migrate_sqlite_to_postgres(
    from: &Path,
    to: &PostgresQueue,
) -> Result<Migrated, QueueError> {
    let op = "migrate";
    let pg = |source| QueueError::Postgres { op, source };
    let now = to.now();
    let dir = from.to_path_buf();
    let (rows, cursors) = tokio::task::spawn_blocking(move || read_sqlite(&dir, now))
        .await
        .map_err(|_| QueueError::Blocking { op })??;
    let mut moved = Migrated::default();
    // One transaction per event: a run stopped half-way is completed by the next one.
    for row in rows {
        let mut tx = to.pool.begin().await.map_err(pg)?;
        let id: Option<EventId> = sqlx::query_scalar(
            "INSERT INTO events
                 (dedupe_key, kind, headers, body, received_at, state, attempts, next_attempt_at,
                  last_error, done_at, dead_at, replays, replayed_at, serial_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING id",
        )
        // Text as PostgreSQL stores it (a NUL, which SQLite keeps, becomes U+FFFD).
        .bind(pg_text(&row.dedupe_key))
        .bind(pg_text(&row.kind))
        .bind(&row.headers)
        .bind(&row.body)
        .bind(row.received_at)
        .bind(&row.state)
        .bind(i32::try_from(row.attempts).unwrap_or(i32::MAX))
        .bind(row.next_attempt_at)
        .bind(row.last_error.as_deref().map(pg_text))
        .bind(row.done_at)
        .bind(row.dead_at)
        .bind(i32::try_from(row.replays).unwrap_or(i32::MAX))
        .bind(row.replayed_at)
        .bind(row.serial_key.as_deref().map(pg_text))
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg)?;
        let Some(id) = id else {
            moved.skipped += 1;
            continue;
        };
        for (attempt, at, error) in &row.history {
            sqlx::query(
                "INSERT INTO attempts (event_id, attempt, at, error) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(i32::try_from(*attempt).unwrap_or(i32::MAX))
            .bind(at)
            .bind(pg_text(error))
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        match row.state.as_str() {
            "pending" => moved.pending += 1,
            "dead" => moved.dead += 1,
            _ => moved.done += 1,
        }
    }
    // After the events: a cursor never points past a delivery that is not in PostgreSQL.
    for (hook, last_event_id) in &cursors {
        super::cursor::advance_postgres(&to.pool, hook, *last_event_id, now)
            .await
            .map_err(pg)?;
        moved.cursors += 1;
    }
    Ok(moved)
}

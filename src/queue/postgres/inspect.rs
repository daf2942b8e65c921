//! [`QueueInspect`] for the PostgreSQL queue: status, list, show, replay and purge, safe next to
//! running replicas (each change is one short transaction that locks only the rows it changes,
//! and an event a worker holds is never changed).

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::queue::read_stats;
use super::{duration_ms, pg, PostgresQueue};
use crate::queue::{
    AttemptRecord, EventDetail, EventId, EventState, EventSummary, KindCount, ListFilter,
    QueueError, QueueInspect, QueueStatus, Replayed, StorageSize,
};

/// Columns of [`EventSummary`], in the order [`summary_from_row`] reads them.
const SUMMARY_COLUMNS: &str = "id, state, kind, received_at, attempts, last_error, \
     next_attempt_at, locked_until, dead_at, done_at, replays, replayed_at, body";

/// Sets an event back to pending, due now, attempts reset, and counts the replay.
const RESET: &str = "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = $2,
        locked_until = NULL, dead_at = NULL, done_at = NULL,
        replays = replays + 1, replayed_at = $2
    WHERE id = $1";

#[async_trait::async_trait]
impl QueueInspect for PostgresQueue {
    async fn status(&self, window: Duration) -> Result<QueueStatus, QueueError> {
        let op = "status";
        let now = self.now();
        let window_ms = duration_ms(window);
        let stats = read_stats(&self.pool, now).await?;
        let received = sqlx::query_as::<_, (String, i64)>(
            "SELECT kind, COUNT(*) FROM events WHERE received_at >= $1
             GROUP BY kind ORDER BY 2 DESC, 1",
        )
        .bind(now.saturating_sub(window_ms))
        .fetch_all(&self.pool)
        .await
        .map_err(pg(op))?
        .into_iter()
        .map(|(kind, count)| KindCount {
            kind,
            count: u64::try_from(count).unwrap_or(0),
        })
        .collect();
        let database_bytes: i64 = sqlx::query_scalar(
            "SELECT (pg_total_relation_size('events') + pg_total_relation_size('attempts'))::BIGINT",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(pg(op))?;
        Ok(QueueStatus {
            stats,
            window_ms,
            received,
            storage: Some(StorageSize {
                database_bytes: u64::try_from(database_bytes).unwrap_or(0),
                // The server's write-ahead log is shared by every database; not ours to count.
                wal_bytes: 0,
            }),
        })
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<EventSummary>, QueueError> {
        let op = "list";
        let now = self.now();
        let state = match filter.dead_older_than {
            Some(_) => Some(EventState::Dead),
            None => filter.state,
        };
        let condition = match state {
            None => "TRUE",
            Some(EventState::Pending) => {
                "state = 'pending' AND (locked_until IS NULL OR locked_until <= $1)"
            }
            Some(EventState::InFlight) => "state = 'pending' AND locked_until > $1",
            Some(EventState::Dead) => "state = 'dead' AND dead_at < $2",
            Some(EventState::Done) => "state = 'done'",
        };
        let cutoff = filter
            .dead_older_than
            .map_or(i64::MAX, |age| now.saturating_sub(duration_ms(age)));
        let limit = match filter.limit {
            0 => i64::MAX,
            n => i64::try_from(n).unwrap_or(i64::MAX),
        };
        // Every parameter is bound; a condition that does not use one still types it here.
        let text = format!(
            "SELECT {SUMMARY_COLUMNS} FROM events
             WHERE {condition} AND $1::BIGINT IS NOT NULL AND $2::BIGINT IS NOT NULL
             ORDER BY id DESC LIMIT $3"
        );
        // Built only from the constant conditions above; values are bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(text))
            .bind(now)
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(pg(op))?;
        rows.iter()
            .map(|row| summary_from_row(row, now).map_err(pg(op)))
            .collect()
    }

    async fn show(&self, id: EventId) -> Result<EventDetail, QueueError> {
        let op = "show";
        let now = self.now();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, dedupe_key, headers FROM events WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg(op))?;
        let Some(row) = row else {
            return Err(QueueError::NotFound { op, id });
        };
        let summary = summary_from_row(&row, now).map_err(pg(op))?;
        let dedupe_key: String = row.try_get(13).map_err(pg(op))?;
        let headers: String = row.try_get(14).map_err(pg(op))?;
        let history = sqlx::query_as::<_, (i32, i64, String)>(
            "SELECT attempt, at, error FROM attempts WHERE event_id = $1 ORDER BY at, seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(pg(op))?
        .into_iter()
        .map(|(attempt, at_ms, error)| AttemptRecord {
            attempt: to_u32(i64::from(attempt)),
            at_ms,
            error,
        })
        .collect();
        let (headers, headers_error) = match serde_json::from_str::<Vec<(String, String)>>(&headers)
        {
            Ok(h) => (h, None),
            Err(e) => (
                Vec::new(),
                Some(format!("stored headers are unreadable: {e}")),
            ),
        };
        Ok(EventDetail {
            summary,
            dedupe_key,
            headers,
            headers_error,
            history,
        })
    }

    async fn replay(&self, id: EventId) -> Result<Replayed, QueueError> {
        let op = "replay";
        let now = self.now();
        let mut tx = self.pool.begin().await.map_err(pg(op))?;
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT state, locked_until FROM events WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg(op))?;
        let Some((state, locked_until)) = row else {
            return Err(QueueError::NotFound { op, id });
        };
        let from = state_of(&state, locked_until, now);
        if let (EventState::InFlight, Some(locked_until_ms)) = (from, locked_until) {
            return Err(QueueError::InFlight {
                op,
                id,
                locked_until_ms,
            });
        }
        sqlx::query(RESET)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(pg(op))?;
        tx.commit().await.map_err(pg(op))?;
        Ok(Replayed { id, from })
    }

    async fn replay_all_dead(&self) -> Result<Vec<EventId>, QueueError> {
        let op = "replay";
        let now = self.now();
        // Only what is dead now: an event that dies again meanwhile is not replayed twice.
        sqlx::query_scalar(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = $1,
                    locked_until = NULL, dead_at = NULL, done_at = NULL,
                    replays = replays + 1, replayed_at = $1
             WHERE state = 'dead'
             RETURNING id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(pg(op))
        .map(|mut ids: Vec<EventId>| {
            ids.sort_unstable();
            ids
        })
    }

    async fn purge_dead(&self, age: Duration) -> Result<Vec<EventId>, QueueError> {
        let op = "purge";
        let cutoff = self.now().saturating_sub(duration_ms(age));
        // Attempt history goes with it (ON DELETE CASCADE).
        sqlx::query_scalar("DELETE FROM events WHERE state = 'dead' AND dead_at < $1 RETURNING id")
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await
            .map_err(pg(op))
            .map(|mut ids: Vec<EventId>| {
                ids.sort_unstable();
                ids
            })
    }
}

fn state_of(state: &str, locked_until: Option<i64>, now: i64) -> EventState {
    match state {
        "dead" => EventState::Dead,
        "done" => EventState::Done,
        _ if locked_until.is_some_and(|t| t > now) => EventState::InFlight,
        _ => EventState::Pending,
    }
}

/// Reads the [`SUMMARY_COLUMNS`] (columns 0..=12).
fn summary_from_row(row: &PgRow, now: i64) -> Result<EventSummary, sqlx::Error> {
    let state: String = row.try_get(1)?;
    let locked_until: Option<i64> = row.try_get(7)?;
    let state = state_of(&state, locked_until, now);
    Ok(EventSummary {
        id: row.try_get(0)?,
        state,
        kind: row.try_get(2)?,
        received_at_ms: row.try_get(3)?,
        attempts: to_u32(i64::from(row.try_get::<i32, _>(4)?)),
        last_error: row.try_get(5)?,
        next_attempt_at_ms: match state {
            EventState::Pending => row.try_get(6)?,
            _ => None,
        },
        locked_until_ms: match state {
            EventState::InFlight => locked_until,
            _ => None,
        },
        dead_at_ms: row.try_get(8)?,
        done_at_ms: row.try_get(9)?,
        replays: to_u32(i64::from(row.try_get::<i32, _>(10)?)),
        replayed_at_ms: row.try_get(11)?,
        body: row.try_get(12)?,
    })
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

//! The recover cursors in the PostgreSQL queue's database (`recover_cursor`, migration 0004):
//! every replica and every `recover` run given the same `--queue` shares them.

use super::{from_db, to_db, CursorError, RecoverCursors};
use crate::queue::PostgresQueue;

#[async_trait::async_trait]
impl RecoverCursors for PostgresQueue {
    async fn get(&self, hook: &str) -> Result<Option<u64>, CursorError> {
        sqlx::query_scalar::<_, i64>("SELECT last_event_id FROM recover_cursor WHERE hook = $1")
            .bind(hook)
            .fetch_optional(&self.pool)
            .await
            .map(|v| v.map(from_db))
            .map_err(|e| CursorError::new(self.target(), "read", e))
    }

    async fn set(&self, hook: &str, event_id: u64, now_ms: i64) -> Result<(), CursorError> {
        advance(&self.pool, hook, to_db(event_id), now_ms)
            .await
            .map_err(|e| CursorError::new(self.target(), "write", e))
    }
}

/// Moves `hook`'s cursor to `event_id` (never backwards); also used by `queue migrate`, which
/// carries the SQLite queue's cursors over.
pub(in crate::queue) async fn advance<'e>(
    db: impl sqlx::PgExecutor<'e>,
    hook: &str,
    event_id: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recover_cursor (hook, last_event_id, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (hook) DO UPDATE SET
             last_event_id = GREATEST(recover_cursor.last_event_id, excluded.last_event_id),
             updated_at = excluded.updated_at",
    )
    .bind(hook)
    .bind(event_id)
    .bind(now_ms)
    .execute(db)
    .await
    .map(|_| ())
}

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
        sqlx::query(
            "INSERT INTO recover_cursor (hook, last_event_id, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (hook) DO UPDATE SET
                 last_event_id = GREATEST(recover_cursor.last_event_id, excluded.last_event_id),
                 updated_at = excluded.updated_at",
        )
        .bind(hook)
        .bind(to_db(event_id))
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| CursorError::new(self.target(), "write", e))
    }
}

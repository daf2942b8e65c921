//! Where `cocreate recover` left off, per webhook: the newest GitLab hook-event id it has
//! handed to the queue. The cursor lives with the queue it fills, so that `serve`, the job and
//! a backup see one state: in the SQLite queue's database file ([`Cursors`], its own table made
//! on open) or in the PostgreSQL queue's database ([`PostgresQueue`](crate::queue::PostgresQueue),
//! table `recover_cursor` of `migrations/0004_recover_cursor.sql`).

mod postgres;
mod sqlite;

pub(in crate::queue) use postgres::advance as advance_postgres;
pub(in crate::queue) use sqlite::read_all as read_sqlite;

pub use sqlite::Cursors;

/// Errors reading or moving a recover cursor.
#[derive(Debug, thiserror::Error)]
#[error("recover cursor in {at}: {step}: {source}")]
pub struct CursorError {
    /// The database file, or host, port and database (never credentials).
    at: String,
    step: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl CursorError {
    fn new(
        at: impl Into<String>,
        step: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            at: at.into(),
            step,
            source: Box::new(source),
        }
    }
}

/// The recover cursors kept next to one queue, per hook (e.g. `groups/50/hooks/7`).
#[async_trait::async_trait]
pub trait RecoverCursors: Send + Sync {
    /// The newest event id handed on for `hook`, if any.
    async fn get(&self, hook: &str) -> Result<Option<u64>, CursorError>;

    /// Moves `hook`'s cursor to `event_id` (never backwards).
    async fn set(&self, hook: &str, event_id: u64, now_ms: i64) -> Result<(), CursorError>;
}

/// A GitLab event id as the databases store it (they have no unsigned 64-bit integers).
fn to_db(event_id: u64) -> i64 {
    i64::try_from(event_id).unwrap_or(i64::MAX)
}

fn from_db(id: i64) -> u64 {
    id.max(0).unsigned_abs()
}

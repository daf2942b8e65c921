//! The recover cursors in the SQLite queue's database file (its own table, created on open), so
//! a `serve` and the job share one data directory and one backup.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{from_db, to_db, CursorError, RecoverCursors};
use crate::queue::sqlite::DB_FILE;

/// The recover cursors of one data directory.
#[derive(Debug)]
pub struct Cursors {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Cursors {
    /// Opens the queue database in `dir` (the queue must have been opened there first, so
    /// its file and journal mode exist) and creates the cursor table when missing.
    pub fn open(dir: &Path) -> Result<Self, CursorError> {
        let path = dir.join(DB_FILE);
        let at = path.display().to_string();
        let err = |step| {
            let at = at.clone();
            move |source| CursorError::new(at, step, source)
        };
        let conn = Connection::open(&path).map_err(err("open"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(err("set busy timeout"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS recover_cursor (
                 hook TEXT PRIMARY KEY NOT NULL,
                 last_event_id INTEGER NOT NULL,
                 updated_at_ms INTEGER NOT NULL
             ) STRICT;",
        )
        .map_err(err("create table"))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    fn err(&self, step: &'static str) -> impl FnOnce(rusqlite::Error) -> CursorError + '_ {
        move |source| CursorError::new(self.path.display().to_string(), step, source)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// One short statement on a local file each, run in place (tests/queue_contract.rs holds the
// cursor contract for both stores).
#[async_trait::async_trait]
impl RecoverCursors for Cursors {
    async fn get(&self, hook: &str) -> Result<Option<u64>, CursorError> {
        self.conn()
            .query_row(
                "SELECT last_event_id FROM recover_cursor WHERE hook = ?1",
                [hook],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.map(from_db))
            .map_err(self.err("read"))
    }

    async fn set(&self, hook: &str, event_id: u64, now_ms: i64) -> Result<(), CursorError> {
        self.conn()
            .execute(
                "INSERT INTO recover_cursor (hook, last_event_id, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(hook) DO UPDATE SET
                     last_event_id = max(last_event_id, excluded.last_event_id),
                     updated_at_ms = excluded.updated_at_ms",
                params![hook, to_db(event_id), now_ms],
            )
            .map(|_| ())
            .map_err(self.err("write"))
    }
}

/// Every cursor of the SQLite queue open on `tx` as `(hook, last event id)`; none when `recover`
/// never ran there (no table). For `queue migrate`.
pub(in crate::queue) fn read_all(
    tx: &rusqlite::Transaction<'_>,
) -> rusqlite::Result<Vec<(String, i64)>> {
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'recover_cursor'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt = tx.prepare("SELECT hook, last_event_id FROM recover_cursor ORDER BY hook")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

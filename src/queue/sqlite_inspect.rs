//! [`QueueInspect`] for the SQLite queue: its own connection to `DIR/queue.sqlite3`, safe next
//! to a running `serve`.
//!
//! Safety with a live `serve`: the database is in WAL mode, so reads never block the writer
//! and see one consistent snapshot; each write here is one short `BEGIN IMMEDIATE` transaction
//! of at most [`CHUNK`] events, so `serve`'s writer waits at most a few milliseconds (both sides
//! have a 5 s busy timeout). Events a worker holds (in flight) are never changed. A replayed
//! event is picked up by the running worker at its next poll (within a second by default).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::inspect::{
    AttemptRecord, EventDetail, EventState, EventSummary, KindCount, ListFilter, QueueInspect,
    QueueStatus, Replayed, StorageSize,
};
use super::sqlite::{duration_ms, migrate, open_connection, read_stats, sql, DB_FILE};
use super::{EventId, QueueError};
use crate::clock::Clock;

/// Events changed per write transaction.
const CHUNK: usize = 200;

/// Columns of [`EventSummary`], in the order [`summary_from_row`] reads them.
const SUMMARY_COLUMNS: &str = "id, state, kind, received_at, attempts, last_error, \
     next_attempt_at, locked_until, dead_at, done_at, replays, replayed_at, body";

/// The operator's connection to a SQLite queue.
pub struct SqliteInspector {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    clock: Clock,
}

impl std::fmt::Debug for SqliteInspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteInspector")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteInspector {
    /// Opens the queue in `dir` (the `serve --data` directory). Never creates it: a missing
    /// database is [`QueueError::NoDatabase`]. Brings an older schema up to date, as `serve`
    /// does when it starts.
    pub fn open(dir: &Path) -> Result<Self, QueueError> {
        Self::open_with_clock(dir, Clock::system())
    }

    /// Like [`SqliteInspector::open`], with a clock returning unix milliseconds (for tests).
    pub fn open_with_clock(dir: &Path, clock: Clock) -> Result<Self, QueueError> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(QueueError::NoDatabase { path });
        }
        let mut conn = open_connection(&path, false)?;
        migrate(&mut conn, &path)?;
        Ok(Self {
            path,
            conn: Arc::new(Mutex::new(conn)),
            clock,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection and the current time on the blocking thread pool.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, i64) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let now = self.clock.now_ms();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn, now)
        })
        .await
        .map_err(|_| QueueError::Blocking { op })?
    }
}

#[async_trait::async_trait]
impl QueueInspect for SqliteInspector {
    async fn status(&self, window: Duration) -> Result<QueueStatus, QueueError> {
        let window_ms = duration_ms(window);
        let path = self.path.clone();
        self.run("status", move |conn, now| {
            let op = "status";
            let tx = conn.transaction().map_err(sql(op))?;
            let stats = read_stats(&tx, now)?;
            let received = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT kind, COUNT(*) FROM events WHERE received_at >= ?1
                         GROUP BY kind ORDER BY 2 DESC, 1",
                    )
                    .map_err(sql(op))?;
                let rows = stmt
                    .query_map([now.saturating_sub(window_ms)], |row| {
                        Ok(KindCount {
                            kind: row.get(0)?,
                            count: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                        })
                    })
                    .map_err(sql(op))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sql(op))?
            };
            tx.commit().map_err(sql(op))?;
            Ok(QueueStatus {
                stats,
                window_ms,
                received,
                storage: Some(storage_size(&path)),
            })
        })
        .await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<EventSummary>, QueueError> {
        self.run("list", move |conn, now| {
            let op = "list";
            let state = match filter.dead_older_than {
                Some(_) => Some(EventState::Dead),
                None => filter.state,
            };
            let condition = match state {
                None => "1",
                Some(EventState::Pending) => {
                    "state = 'pending' AND (locked_until IS NULL OR locked_until <= ?1)"
                }
                Some(EventState::InFlight) => "state = 'pending' AND locked_until > ?1",
                Some(EventState::Dead) => "state = 'dead' AND dead_at < ?2",
                Some(EventState::Done) => "state = 'done'",
            };
            let cutoff = filter
                .dead_older_than
                .map_or(i64::MAX, |age| now.saturating_sub(duration_ms(age)));
            let limit = match filter.limit {
                0 => -1,
                n => i64::try_from(n).unwrap_or(i64::MAX),
            };
            let text = format!(
                "SELECT {SUMMARY_COLUMNS} FROM events WHERE {condition} ORDER BY id DESC LIMIT ?3"
            );
            let mut stmt = conn.prepare(&text).map_err(sql(op))?;
            // Not every condition uses every parameter.
            stmt.raw_bind_parameter(3, limit).map_err(sql(op))?;
            if text.contains("?1") {
                stmt.raw_bind_parameter(1, now).map_err(sql(op))?;
            }
            if text.contains("?2") {
                stmt.raw_bind_parameter(2, cutoff).map_err(sql(op))?;
            }
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(sql(op))? {
                out.push(summary_from_row(row, now).map_err(sql(op))?);
            }
            Ok(out)
        })
        .await
    }

    async fn show(&self, id: EventId) -> Result<EventDetail, QueueError> {
        self.run("show", move |conn, now| {
            let op = "show";
            let tx = conn.transaction().map_err(sql(op))?;
            let found = tx
                .query_row(
                    &format!(
                        "SELECT {SUMMARY_COLUMNS}, dedupe_key, headers FROM events WHERE id = ?1"
                    ),
                    [id],
                    |row| {
                        Ok((
                            summary_from_row(row, now)?,
                            row.get::<_, String>(13)?,
                            row.get::<_, String>(14)?,
                        ))
                    },
                )
                .optional()
                .map_err(sql(op))?;
            let Some((summary, dedupe_key, headers)) = found else {
                return Err(QueueError::NotFound { op, id });
            };
            let history = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT attempt, at, error FROM attempts WHERE event_id = ?1
                         ORDER BY at, rowid",
                    )
                    .map_err(sql(op))?;
                let rows = stmt
                    .query_map([id], |row| {
                        Ok(AttemptRecord {
                            attempt: to_u32(row.get(0)?),
                            at_ms: row.get(1)?,
                            error: row.get(2)?,
                        })
                    })
                    .map_err(sql(op))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sql(op))?
            };
            tx.commit().map_err(sql(op))?;
            let (headers, headers_error) =
                match serde_json::from_str::<Vec<(String, String)>>(&headers) {
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
        })
        .await
    }

    async fn replay(&self, id: EventId) -> Result<Replayed, QueueError> {
        self.run("replay", move |conn, now| {
            let op = "replay";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let row: Option<(String, Option<i64>)> = tx
                .query_row(
                    "SELECT state, locked_until FROM events WHERE id = ?1",
                    [id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(sql(op))?;
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
            reset(&tx, id, now).map_err(sql(op))?;
            tx.commit().map_err(sql(op))?;
            Ok(Replayed { id, from })
        })
        .await
    }

    async fn replay_all_dead(&self) -> Result<Vec<EventId>, QueueError> {
        self.run("replay", move |conn, now| {
            let op = "replay";
            // Only what is dead now: an event that dies again meanwhile is not replayed twice.
            let ids = ids_where(conn, "state = 'dead'", i64::MAX).map_err(sql(op))?;
            in_chunks(conn, &ids, op, |tx, id| {
                let dead: bool = tx
                    .query_row(
                        "SELECT state = 'dead' FROM events WHERE id = ?1",
                        [id],
                        |row| row.get(0),
                    )
                    .optional()?
                    .unwrap_or(false);
                if dead {
                    reset(tx, id, now)?;
                }
                Ok(dead)
            })
        })
        .await
    }

    async fn purge_dead(&self, age: Duration) -> Result<Vec<EventId>, QueueError> {
        let age_ms = duration_ms(age);
        self.run("purge", move |conn, now| {
            let op = "purge";
            let cutoff = now.saturating_sub(age_ms);
            let ids =
                ids_where(conn, "state = 'dead' AND dead_at < ?1", cutoff).map_err(sql(op))?;
            in_chunks(conn, &ids, op, |tx, id| {
                // Attempt history goes with it (ON DELETE CASCADE).
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM events WHERE id = ?1 AND state = 'dead' AND dead_at < ?2",
                    )?
                    .execute(params![id, cutoff])?;
                Ok(deleted > 0)
            })
        })
        .await
    }
}

/// Sets an event back to pending, due now, attempts reset, and counts the replay.
fn reset(conn: &Connection, id: EventId, now: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                locked_until = NULL, dead_at = NULL, done_at = NULL,
                replays = replays + 1, replayed_at = ?2
         WHERE id = ?1",
    )?
    .execute(params![id, now])
}

/// Ids of the events matching `condition` (which may use `?1` = `arg`), oldest first.
fn ids_where(conn: &Connection, condition: &str, arg: i64) -> rusqlite::Result<Vec<EventId>> {
    let text = format!("SELECT id FROM events WHERE {condition} ORDER BY id");
    let mut stmt = conn.prepare(&text)?;
    if text.contains("?1") {
        stmt.raw_bind_parameter(1, arg)?;
    }
    let mut rows = stmt.raw_query();
    let mut ids = Vec::new();
    while let Some(row) = rows.next()? {
        ids.push(row.get(0)?);
    }
    Ok(ids)
}

/// Applies `change` to each id, [`CHUNK`] ids per short write transaction; returns the ids for
/// which it reported a change.
fn in_chunks(
    conn: &mut Connection,
    ids: &[EventId],
    op: &'static str,
    change: impl Fn(&Connection, EventId) -> rusqlite::Result<bool>,
) -> Result<Vec<EventId>, QueueError> {
    let mut changed = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        for &id in chunk {
            if change(&tx, id).map_err(sql(op))? {
                changed.push(id);
            }
        }
        tx.commit().map_err(sql(op))?;
    }
    Ok(changed)
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
fn summary_from_row(row: &Row<'_>, now: i64) -> rusqlite::Result<EventSummary> {
    let state: String = row.get(1)?;
    let locked_until: Option<i64> = row.get(7)?;
    let state = state_of(&state, locked_until, now);
    Ok(EventSummary {
        id: row.get(0)?,
        state,
        kind: row.get(2)?,
        received_at_ms: row.get(3)?,
        attempts: to_u32(row.get(4)?),
        last_error: row.get(5)?,
        next_attempt_at_ms: match state {
            EventState::Pending => row.get(6)?,
            _ => None,
        },
        locked_until_ms: match state {
            EventState::InFlight => locked_until,
            _ => None,
        },
        dead_at_ms: row.get(8)?,
        done_at_ms: row.get(9)?,
        replays: to_u32(row.get(10)?),
        replayed_at_ms: row.get(11)?,
        body: row.get(12)?,
    })
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Sizes of the database file and its WAL (0 when a file is absent).
fn storage_size(path: &Path) -> StorageSize {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    StorageSize {
        database_bytes: size(path),
        wal_bytes: size(Path::new(&wal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{NewEvent, Queue, QueueStats, SqliteQueue};

    const T0: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;
    const LEASE: Duration = Duration::from_secs(30);

    struct World {
        _dir: tempfile::TempDir,
        now: Clock,
        queue: SqliteQueue,
        inspector: SqliteInspector,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let now = Clock::manual(T0);
            let queue = SqliteQueue::open_with_clock(dir.path(), now.clone()).expect("queue");
            let inspector =
                SqliteInspector::open_with_clock(dir.path(), now.clone()).expect("inspector");
            Self {
                _dir: dir,
                now,
                queue,
                inspector,
            }
        }

        fn advance(&self, ms: i64) {
            self.now.advance(ms);
        }

        async fn add(&self, key: &str, kind: &str) -> EventId {
            let event = NewEvent {
                dedupe_key: key.to_owned(),
                serial_key: None,
                kind: kind.to_owned(),
                headers: vec![("x-gitlab-event".to_owned(), kind.to_owned())],
                body: b"{}".to_vec(),
                received_at_ms: self.now.now_ms(),
            };
            self.queue.enqueue(event).await.expect("enqueue").id()
        }

        /// Claims everything due and fails `id` for good (the others go back at once).
        async fn kill(&self, id: EventId, error: &str) {
            for e in self.queue.claim(100, LEASE).await.expect("claim") {
                if e.id == id {
                    self.queue.fail(id, error, None).await.expect("fail");
                } else {
                    self.queue.release(e.id).await.expect("release");
                }
            }
        }
    }

    #[test]
    fn a_missing_database_is_an_error_not_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = SqliteInspector::open(dir.path()).expect_err("no database yet");
        assert!(matches!(err, QueueError::NoDatabase { .. }), "{err}");
        assert!(!dir.path().join(DB_FILE).exists());
    }

    #[tokio::test]
    async fn status_counts_states_and_kinds_in_the_window() {
        let w = World::new();
        let old = w.add("old", "Merge Request Hook").await;
        w.advance(2 * HOUR);
        let a = w.add("a", "Merge Request Hook").await;
        let b = w.add("b", "Merge Request Hook").await;
        w.add("c", "System Hook").await;
        let claimed = w.queue.claim(2, LEASE).await.expect("claim");
        assert_eq!(
            claimed.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![old, a]
        );
        w.queue.ack(old).await.expect("ack");
        w.queue
            .fail(a, "GitLab answered 500", None)
            .await
            .expect("fail");
        w.queue.claim(1, LEASE).await.expect("claim b"); // b in flight
        w.advance(1000);

        let status = w
            .inspector
            .status(Duration::from_secs(3600))
            .await
            .expect("status");
        assert_eq!(
            status.stats,
            QueueStats {
                pending: 1,
                in_flight: 1,
                dead: 1,
                done: 1,
                oldest_pending_age_ms: Some(1000),
            }
        );
        assert_eq!(
            status.received,
            vec![
                KindCount {
                    kind: "Merge Request Hook".into(),
                    count: 2
                },
                KindCount {
                    kind: "System Hook".into(),
                    count: 1
                },
            ]
        );
        let storage = status.storage.expect("sqlite knows its size");
        assert!(storage.database_bytes > 0);
        let _ = b;
    }

    #[tokio::test]
    async fn list_filters_by_state_newest_first_with_errors() {
        let w = World::new();
        let a = w.add("a", "Merge Request Hook").await;
        let b = w.add("b", "Merge Request Hook").await;
        let c = w.add("c", "Merge Request Hook").await;
        w.kill(a, "first error").await;
        w.kill(c, "second error").await;

        let all = w.inspector.list(ListFilter::default()).await.expect("list");
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![c, b, a]);
        let dead = w
            .inspector
            .list(ListFilter {
                state: Some(EventState::Dead),
                limit: 1,
                ..ListFilter::default()
            })
            .await
            .expect("list dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, c);
        assert_eq!(dead[0].state, EventState::Dead);
        assert_eq!(dead[0].last_error.as_deref(), Some("second error"));
        assert_eq!(dead[0].attempts, 1);
        assert_eq!(dead[0].body, b"{}");
        let pending = w
            .inspector
            .list(ListFilter {
                state: Some(EventState::Pending),
                ..ListFilter::default()
            })
            .await
            .expect("list pending");
        assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b]);
        assert_eq!(pending[0].next_attempt_at_ms, Some(T0));
    }

    #[tokio::test]
    async fn show_has_headers_and_every_attempt() {
        let w = World::new();
        let a = w.add("a", "Merge Request Hook").await;
        w.queue.claim(1, LEASE).await.expect("claim");
        w.queue
            .fail(a, "first", Some(Duration::ZERO))
            .await
            .expect("fail");
        w.advance(5);
        w.kill(a, "second").await;

        let d = w.inspector.show(a).await.expect("show");
        assert_eq!(d.dedupe_key, "a");
        assert_eq!(
            d.headers,
            vec![("x-gitlab-event".into(), "Merge Request Hook".into())]
        );
        assert_eq!(
            d.history,
            vec![
                AttemptRecord {
                    attempt: 1,
                    at_ms: T0,
                    error: "first".into()
                },
                AttemptRecord {
                    attempt: 2,
                    at_ms: T0 + 5,
                    error: "second".into()
                },
            ]
        );
        assert_eq!(d.summary.dead_at_ms, Some(T0 + 5));
        assert!(matches!(
            w.inspector.show(a + 100).await,
            Err(QueueError::NotFound { op: "show", .. })
        ));
    }

    #[tokio::test]
    async fn replay_resets_dead_and_done_but_refuses_in_flight() {
        let w = World::new();
        let a = w.add("a", "Merge Request Hook").await;
        let b = w.add("b", "Merge Request Hook").await;
        w.kill(a, "boom").await;
        w.advance(10);

        assert_eq!(
            w.inspector.replay(a).await.expect("replay"),
            Replayed {
                id: a,
                from: EventState::Dead
            }
        );
        let claimed = w.queue.claim(10, LEASE).await.expect("claim");
        assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(claimed[0].attempts, 1, "attempts were reset");
        // Both are in flight now: a replay would run them twice at once.
        assert!(matches!(
            w.inspector.replay(b).await,
            Err(QueueError::InFlight { id, .. }) if id == b
        ));
        w.queue.ack(a).await.expect("ack");
        assert_eq!(
            w.inspector.replay(a).await.expect("replay done").from,
            EventState::Done
        );
        let d = w.inspector.show(a).await.expect("show");
        assert_eq!(
            (d.summary.state, d.summary.replays),
            (EventState::Pending, 2)
        );
        assert_eq!(d.summary.replayed_at_ms, Some(T0 + 10));
        assert_eq!(d.history.len(), 1, "history is kept");
        assert!(matches!(
            w.inspector.replay(999).await,
            Err(QueueError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn replay_all_dead_and_purge_touch_only_dead_letters() {
        let w = World::new();
        let old_dead = w.add("old-dead", "Merge Request Hook").await;
        let done = w.add("done", "Merge Request Hook").await;
        let pending = w.add("pending", "Merge Request Hook").await;
        w.kill(old_dead, "old").await;
        w.queue.claim(1, LEASE).await.expect("claim done");
        w.queue.ack(done).await.expect("ack");
        w.advance(8 * 24 * HOUR);
        let new_dead = w.add("new-dead", "Merge Request Hook").await;
        w.kill(new_dead, "new").await;

        let week = Duration::from_secs(7 * 24 * 3600);
        let preview = w
            .inspector
            .list(ListFilter {
                dead_older_than: Some(week),
                ..ListFilter::default()
            })
            .await
            .expect("preview");
        assert_eq!(
            preview.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![old_dead]
        );
        assert_eq!(
            w.inspector.purge_dead(week).await.expect("purge"),
            vec![old_dead]
        );
        assert!(w
            .inspector
            .purge_dead(week)
            .await
            .expect("again")
            .is_empty());
        assert!(matches!(
            w.inspector.show(old_dead).await,
            Err(QueueError::NotFound { .. })
        ));
        let history: i64 = w
            .inspector
            .conn
            .lock()
            .expect("lock")
            .query_row(
                "SELECT COUNT(*) FROM attempts WHERE event_id = ?1",
                [old_dead],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(history, 0, "history went with it");

        assert_eq!(
            w.inspector.replay_all_dead().await.expect("replay all"),
            vec![new_dead]
        );
        let stats = w.queue.stats().await.expect("stats");
        assert_eq!((stats.pending, stats.dead, stats.done), (2, 0, 1));
        let _ = pending;
    }
}

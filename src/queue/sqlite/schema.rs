//! The database file: schema versions and their migrations, opening a connection, the
//! directory and file checks, and the small SQL helpers every part shares.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::queue::QueueError;

/// Name of the database file inside the queue directory.
pub(in crate::queue) const DB_FILE: &str = "queue.sqlite3";

/// Schema version stored in `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 4;

/// Size the WAL file is truncated back to after a reset, if it grew past it
/// (e.g. while a long-lived reader blocked checkpoints).
pub(super) const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Schema version 1.
pub(super) const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key      TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    headers         TEXT    NOT NULL, -- JSON array of [name, value]
    body            BLOB    NOT NULL,
    received_at     INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    last_error      TEXT,
    done_at         INTEGER,
    dead_at         INTEGER
);
CREATE INDEX IF NOT EXISTS events_state_next_attempt ON events (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS events_done_at ON events (done_at) WHERE state = 'done';
CREATE TABLE IF NOT EXISTS attempts (
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempt  INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    error    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts (event_id);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE VIEW IF NOT EXISTS dead_letters AS
    SELECT id, dedupe_key, kind, headers, body, received_at, attempts, last_error, dead_at
    FROM events
    WHERE state = 'dead';
";

/// Schema version 2: operator replays, and indexes that keep `stats` and
/// `queue status` cheap on a large table (the body sits before `received_at`
/// and `locked_until` in each row, so reading those from the table means
/// reading every body).
pub(super) const SCHEMA_V2: &str = "
ALTER TABLE events ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN replayed_at INTEGER;
CREATE INDEX IF NOT EXISTS events_received_kind ON events (received_at, kind);
CREATE INDEX IF NOT EXISTS events_state_lease ON events (state, locked_until, received_at);
";

/// Schema version 3: an index of the pending events in id order that also
/// holds the claim's filter columns, so a claim reads the first due events
/// of the index and stops, instead of reading every due pending row and
/// sorting them (9 ms per claim at 20,000 pending, on the writer thread that
/// also commits the receiver's batches; 0.02 ms with this index).
///
/// It replaces `events_state_next_attempt`, which only claims used: one index
/// less to update on every enqueue and ack (the counts by state read
/// `events_state_lease`).
pub(super) const SCHEMA_V3: &str = "
CREATE INDEX IF NOT EXISTS events_pending_id ON events (id, next_attempt_at, locked_until)
    WHERE state = 'pending';
DROP INDEX IF EXISTS events_state_next_attempt;
";

/// Schema version 4: fencing tokens. Each claim increments `lease_token`; renewals, acks,
/// failures and releases by a worker name the token of their claim and are refused once the
/// event was claimed again.
///
/// And serialization keys (`serial_key`, e.g. one MR): a claim skips events whose key is
/// held by an event in flight, so one MR's burst never fills the worker slots. The claim's
/// index holds the key (reading it from each candidate row would read past the body); it
/// replaces `events_pending_id`, so an insert updates as many indexes as before. The keys in
/// flight (a handful of rows) are read from the rows found by `events_state_lease`.
pub(super) const SCHEMA_V4: &str = "
ALTER TABLE events ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN serial_key TEXT;
CREATE INDEX IF NOT EXISTS events_pending_claim
    ON events (id, next_attempt_at, locked_until, serial_key) WHERE state = 'pending';
DROP INDEX IF EXISTS events_pending_id;
";

/// The WAL file next to the database file `db`.
pub(super) fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Fails with the path and the operating system's word when the queue directory does not
/// take new files or an existing database file (or its WAL or shared-memory file) cannot be
/// opened for writing. SQLite would otherwise open such a database read-only and fail every
/// write later, without saying why.
pub(super) fn check_writable(dir: &Path, db: &Path) -> Result<(), QueueError> {
    let not_writable = |path: &Path| {
        let path = path.to_path_buf();
        move |source| QueueError::NotWritable { path, source }
    };
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(not_writable(dir))?;
    std::fs::remove_file(&probe).map_err(not_writable(dir))?;
    for file in [db.to_path_buf(), wal_path(db), shm_path(db)] {
        match std::fs::OpenOptions::new().write(true).open(&file) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(not_writable(&file)(e)),
        }
    }
    Ok(())
}

/// The shared-memory file next to the database file `db`.
pub(super) fn shm_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-shm");
    PathBuf::from(name)
}

/// Open the database file (creating it if `create`) and set the connection's
/// pragmas.
pub(in crate::queue) fn open_connection(
    path: &Path,
    create: bool,
) -> Result<Connection, QueueError> {
    let err = |step: &'static str| {
        let path = path.to_path_buf();
        move |source| QueueError::Open { path, step, source }
    };
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(err("open"))?;
    conn.busy_timeout(Duration::from_millis(5000))
        .map_err(err("set busy_timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(err("set journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "queue database is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err("set synchronous=FULL"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err("set foreign_keys=ON"))?;
    conn.set_prepared_statement_cache_capacity(32);
    grow_in_chunks(&conn);
    Ok(conn)
}

/// Bytes by which the database file grows at a time (`SQLITE_FCNTL_CHUNK_SIZE`).
pub(super) const CHUNK_BYTES: i32 = 32 * 1024 * 1024;

/// Make checkpoints grow the database file in [`CHUNK_BYTES`] steps instead of page by page.
///
/// Measured (BENCHMARKS.md §1): on ext4 (`data=ordered`), a checkpoint that appends pages to
/// the database allocates blocks, and the next fsync of the WAL, the one every acknowledgement
/// waits for, must then wait until those new data blocks are on disk: acknowledgements stalled
/// for 50-250 ms a few times per 20,000. Writing into blocks allocated beforehand involves no
/// new metadata, so the WAL's fsync does not wait for the checkpoint's data.
pub(super) fn grow_in_chunks(conn: &Connection) {
    let mut chunk: std::os::raw::c_int = CHUNK_BYTES;
    // SAFETY: `handle()` is the live connection's pointer, used only for this call on this
    // thread; SQLITE_FCNTL_CHUNK_SIZE reads one `int` through the pointer, which outlives
    // the call. "main" is a NUL-terminated C string.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_CHUNK_SIZE,
            (&mut chunk as *mut std::os::raw::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        // Only slower: the file then grows page by page.
        tracing::debug!(rc, "SQLITE_FCNTL_CHUNK_SIZE not supported by this VFS");
    }
}

/// Bring the schema to [`SCHEMA_VERSION`].
pub(in crate::queue) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), QueueError> {
    let err = |step: &'static str| {
        let path = path.to_path_buf();
        move |source| QueueError::Open { path, step, source }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("begin migration"))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err("read user_version"))?;
    if version > SCHEMA_VERSION {
        return Err(QueueError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(err("create schema version 1"))?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)
            .map_err(err("migrate to schema version 2"))?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)
            .map_err(err("migrate to schema version 3"))?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4)
            .map_err(err("migrate to schema version 4"))?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err("write user_version"))?;
        tracing::info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "queue schema migrated");
    }
    tx.commit().map_err(err("commit migration"))
}

/// Maps a SQLite error to [`QueueError::Sqlite`] for operation `op`.
pub(in crate::queue) fn sql(op: &'static str) -> impl Fn(rusqlite::Error) -> QueueError {
    move |source| QueueError::Sqlite { op, source }
}

pub(in crate::queue) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

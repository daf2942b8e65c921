//! SQLite implementation of [`Queue`], with group commit.
//!
//! One dedicated OS thread owns the only writing connection and receives
//! commands over a bounded channel. Enqueues that are waiting together are
//! written in one transaction and committed once (one fsync for the whole
//! batch); each caller is answered only after that commit succeeded. Every
//! other write goes through the same thread, so there is a single writer and
//! never any `SQLITE_BUSY` between our own operations.
//!
//! Durability: only enqueues are committed with `synchronous=FULL` (fsync of
//! the WAL before anyone is answered). Claims, acks, failures, releases,
//! pings and prunes are committed with `synchronous=NORMAL`: they survive a
//! crash of the process at once (the OS holds the WAL pages) and reach the
//! disk with the next enqueue's fsync, which covers every earlier frame of the
//! append-only WAL. A power loss can undo the last of them; that only makes an
//! event be processed once more, which the level-triggered rules make
//! harmless. Without this every ack cost an fsync on the thread that commits
//! the receiver's batches.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;

use super::{ClaimedEvent, Enqueued, EventId, Lease, NewEvent, Queue, QueueError, QueueStats};

/// Name of the database file inside the queue directory.
pub(super) const DB_FILE: &str = "queue.sqlite3";
/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 4;
/// Most commands the writer takes from the channel for one group commit.
const MAX_BATCH: usize = 512;
/// Commands that may wait in the channel before senders are made to wait.
const CHANNEL_CAPACITY: usize = 4096;
/// Longest the writer waits for more enqueues to join a batch.
const COALESCE_WAIT: Duration = Duration::from_millis(1);
/// How often it looks for them meanwhile.
const COALESCE_POLL: Duration = Duration::from_micros(50);
/// How often the checkpoint thread looks whether to copy the WAL into the
/// database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);
/// The checkpoint thread copies the WAL into the database once no enqueue has
/// been committed for this long, or when the WAL file passes
/// [`WAL_BURST_BYTES`], or [`CHECKPOINT_MAX_GAP`] after the last copy. A checkpoint's fsync of the database file delays the
/// WAL fsyncs that acknowledgements wait for (measured: enqueue p99 9 ms
/// without checkpoints, 30-90 ms with one every 50 ms during a burst, stalls
/// up to 250 ms), so during a burst the WAL absorbs the writes and the copy
/// happens when the burst is over.
const CHECKPOINT_QUIET: Duration = Duration::from_millis(100);
/// WAL size past which the checkpoint thread copies even during a burst.
const WAL_BURST_BYTES: u64 = 256 * 1024 * 1024;
/// Longest time between two checkpoints under steady traffic that never
/// pauses for [`CHECKPOINT_QUIET`] (keeps the WAL, and the time to recover it
/// after a crash, small when events arrive at a few hundred per second).
const CHECKPOINT_MAX_GAP: Duration = Duration::from_secs(10);
/// WAL size (pages) past which the writer checkpoints by itself inside a
/// commit: the last safety valve, past [`WAL_BURST_BYTES`], for when the
/// checkpoint thread cannot keep up (such a checkpoint stalls every caller).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 131_072;
/// WAL size (pages) past which the writer finishes the checkpoint thread's
/// work right after answering a batch. Under a steady stream of commits the
/// checkpoint thread never sees the WAL fully copied, so the WAL is never
/// rewound and grows; the writer, between two commits, can copy the last few
/// frames (the thread already copied the rest) so that its next commit
/// rewinds the WAL. Small and frequent: a few ms, after the callers of the
/// batch have their answer.
const WRITER_CHECKPOINT_PAGES: i64 = 1_024;
/// Size the WAL file is truncated back to after a reset, if it grew past it
/// (e.g. while a long-lived reader blocked checkpoints).
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;
/// Done events deleted per transaction by `prune_done`, so that a large prune
/// does not stall enqueues.
const PRUNE_CHUNK: i64 = 500;

/// Where the writer thread sends the result of a command.
type Reply<T> = oneshot::Sender<Result<T, QueueError>>;
/// An enqueue waiting for the next group commit.
type PendingEnqueue = (EnqueueItem, Reply<Enqueued>);

/// Schema version 1.
const SCHEMA_V1: &str = "
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
const SCHEMA_V2: &str = "
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
const SCHEMA_V3: &str = "
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
const SCHEMA_V4: &str = "
ALTER TABLE events ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN serial_key TEXT;
CREATE INDEX IF NOT EXISTS events_pending_claim
    ON events (id, next_attempt_at, locked_until, serial_key) WHERE state = 'pending';
DROP INDEX IF EXISTS events_pending_id;
";

/// Durable queue stored in `DIR/queue.sqlite3` (SQLite in WAL mode,
/// `synchronous=FULL`).
///
/// Threads: one writer thread owns the only writing connection (group commit,
/// see the module docs); a second thread runs passive WAL checkpoints with its
/// own connection every 50 ms, so that copying the WAL into the database does
/// not delay commits (the writer checkpoints by itself only if the WAL grows
/// past 64 MiB).
///
/// Dropping the queue closes the command channel; the writer thread finishes
/// the commands already queued, closes the database and exits, and the drop
/// waits for both threads (briefly blocking the dropping thread).
///
/// Cancellation: once a command has been sent, dropping the caller's future
/// does not undo it. A cancelled `claim` leaves its events leased until the
/// lease expires, after which they are claimed again.
pub struct SqliteQueue {
    path: PathBuf,
    /// Scrubs secrets from error texts before they are stored (see [`SqliteQueue::redacting`]).
    redactor: crate::redact::Redactor,
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Option<Checkpointer>,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteQueue {
    /// Open (creating if needed) the queue in `dir`, using the system clock.
    ///
    /// Creates the directory if it is missing; the database file is
    /// `dir/queue.sqlite3`.
    pub fn open(dir: &Path) -> Result<Self, QueueError> {
        Self::open_with_clock(dir, Clock::system())
    }

    /// Like [`SqliteQueue::open`], with the given clock (tests move a manual one). Every "now"
    /// of the queue (claims, leases, retries, `done_at`, pruning, stats) comes from this clock.
    pub fn open_with_clock(dir: &Path, clock: Clock) -> Result<Self, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        check_writable(dir, &path)?;
        let mut conn = open_connection(&path, true)?;
        migrate(&mut conn, &path)?;
        // Checkpoints normally run on their own thread; the writer only
        // checkpoints itself if the WAL grows past this many pages.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .and_then(|()| conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES))
            .map_err(|source| QueueError::Open {
                path: path.clone(),
                step: "set wal_autocheckpoint",
                source,
            })?;
        let wal_frames = Arc::new(AtomicI64::new(0));
        let activity = Activity::new();
        let checkpointer = Checkpointer::start(
            open_connection(&path, true)?,
            wal_path(&path),
            Arc::clone(&wal_frames),
            activity.clone(),
        )?;

        let (commands, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let writer = Writer {
            conn,
            clock,
            commands: receiver,
            prunes: VecDeque::new(),
            last_batch: 0,
            fsync_commits: true,
            wal_frames,
            activity,
        };
        let handle = std::thread::Builder::new()
            .name("queue-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|source| QueueError::Spawn { source })?;
        tracing::debug!(path = %path.display(), "queue opened");
        Ok(Self {
            path,
            redactor: crate::redact::Redactor::default(),
            commands: Some(commands),
            writer: Some(handle),
            checkpointer: Some(checkpointer),
        })
    }

    /// Scrub the error texts of failed attempts with `redactor` before they are stored
    /// (`last_error` and the attempt history): the configured secrets, and token-shaped
    /// strings, never reach the database even when a GitLab error body echoes them. Without
    /// it, token-shaped strings are still cut.
    pub fn redacting(mut self, redactor: crate::redact::Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Send a command to the writer thread and wait for its answer.
    async fn request<T>(
        &self,
        op: &'static str,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, QueueError> {
        let sender = self
            .commands
            .as_ref()
            .ok_or(QueueError::WriterGone { op })?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(command(reply))
            .await
            .map_err(|_| QueueError::WriterGone { op })?;
        answer.await.map_err(|_| QueueError::WriterGone { op })?
    }
}

impl Drop for SqliteQueue {
    fn drop(&mut self) {
        // Closing the channel makes the writer finish what is queued and exit.
        drop(self.commands.take());
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "queue writer thread panicked");
            }
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
    }
}

#[async_trait::async_trait]
impl Queue for SqliteQueue {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        let headers = serde_json::to_string(&event.headers)
            .map_err(|source| QueueError::Encode { source })?;
        let item = EnqueueItem {
            dedupe_key: event.dedupe_key,
            serial_key: event.serial_key,
            kind: event.kind,
            headers,
            body: event.body,
            received_at_ms: event.received_at_ms,
        };
        self.request("enqueue", |reply| Command::Enqueue { item, reply })
            .await
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<ClaimedEvent>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let lease_ms = duration_ms(lease);
        self.request("claim", |reply| Command::Claim {
            max,
            lease_ms,
            reply,
        })
        .await
    }

    async fn ack(&self, id: EventId) -> Result<(), QueueError> {
        self.request("ack", |reply| Command::Ack {
            id,
            token: None,
            reply,
        })
        .await
    }

    async fn renew(&self, lease: Lease, duration: Duration) -> Result<(), QueueError> {
        let lease_ms = duration_ms(duration);
        self.request("renew", |reply| Command::Renew {
            lease,
            lease_ms,
            reply,
        })
        .await
    }

    async fn ack_leased(&self, lease: Lease) -> Result<(), QueueError> {
        self.request("ack", |reply| Command::Ack {
            id: lease.id,
            token: Some(lease.token),
            reply,
        })
        .await
    }

    async fn fail_leased(
        &self,
        lease: Lease,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError> {
        let error = self.redactor.text(error);
        self.request("fail", |reply| Command::Fail {
            id: lease.id,
            token: Some(lease.token),
            error,
            retry_in,
            reply,
        })
        .await
    }

    async fn release_leased(&self, lease: Lease) -> Result<(), QueueError> {
        self.request("release", |reply| Command::Release {
            id: lease.id,
            token: Some(lease.token),
            reply,
        })
        .await
    }

    async fn fail(
        &self,
        id: EventId,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), QueueError> {
        let error = self.redactor.text(error);
        self.request("fail", |reply| Command::Fail {
            id,
            token: None,
            error,
            retry_in,
            reply,
        })
        .await
    }

    async fn release(&self, id: EventId) -> Result<(), QueueError> {
        self.request("release", |reply| Command::Release {
            id,
            token: None,
            reply,
        })
        .await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.request("stats", |reply| Command::Stats { reply })
            .await
    }

    async fn ping(&self, bytes: usize) -> Result<(), QueueError> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.request("ping", |reply| Command::Ping { bytes, reply })
            .await
    }

    async fn prune_done(&self, retention: Duration) -> Result<u64, QueueError> {
        let retention_ms = duration_ms(retention);
        self.request("prune_done", |reply| Command::Prune {
            retention_ms,
            reply,
        })
        .await
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: copy what it can of the WAL into the
/// database. Returns the number of WAL frames still to copy before the WAL
/// can be rewound: 0 once everything is copied (the next commit rewinds it),
/// else the WAL's length.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    let (frames, copied): (i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })?;
    Ok(if copied >= frames { 0 } else { frames })
}

/// The WAL file next to the database file `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// When the writer last committed enqueues, shared with the checkpoint thread.
#[derive(Clone)]
struct Activity {
    origin: Instant,
    /// Milliseconds after `origin`.
    last_enqueue_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_enqueue_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enqueued(&self) {
        self.last_enqueue_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn since_last_enqueue(&self) -> Duration {
        let last = self.last_enqueue_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }
}

/// Background thread that copies the WAL back into the database file
/// (`PRAGMA wal_checkpoint(PASSIVE)`) with its own connection, so that the
/// writer thread does not pay for checkpoints while callers wait on it.
struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Checkpointer {
    /// `wal_frames` receives the result of each [`checkpoint`]; `activity`
    /// says when the writer last committed enqueues.
    fn start(
        conn: Connection,
        wal: PathBuf,
        wal_frames: Arc<AtomicI64>,
        activity: Activity,
    ) -> Result<Self, QueueError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("queue-checkpoint".to_owned())
            .spawn(move || {
                let mut failing = false;
                let mut last = Instant::now();
                // Runs until the sender is dropped (or sends).
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    let due = activity.since_last_enqueue() >= CHECKPOINT_QUIET
                        || last.elapsed() >= CHECKPOINT_MAX_GAP
                        || std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_BURST_BYTES);
                    if !due {
                        continue;
                    }
                    last = Instant::now();
                    match checkpoint(&conn) {
                        Ok(frames) => {
                            wal_frames.store(frames, Ordering::Relaxed);
                            failing = false;
                        }
                        Err(error) if !failing => {
                            failing = true;
                            tracing::warn!(%error, "queue WAL checkpoint failed");
                        }
                        Err(_) => {}
                    }
                }
                if let Err((_, error)) = conn.close() {
                    tracing::warn!(%error, "closing the queue checkpoint connection failed");
                }
            })
            .map_err(|source| QueueError::Spawn { source })?;
        Ok(Self { stop, handle })
    }

    fn stop(self) {
        drop(self.stop);
        if self.handle.join().is_err() {
            tracing::error!("queue checkpoint thread panicked");
        }
    }
}

/// An event ready to be inserted (headers already encoded).
struct EnqueueItem {
    dedupe_key: String,
    serial_key: Option<String>,
    kind: String,
    headers: String,
    body: Vec<u8>,
    received_at_ms: i64,
}

/// Work for the writer thread.
enum Command {
    Enqueue {
        item: EnqueueItem,
        reply: Reply<Enqueued>,
    },
    Claim {
        max: i64,
        lease_ms: i64,
        reply: Reply<Vec<ClaimedEvent>>,
    },
    Ack {
        id: EventId,
        token: Option<i64>,
        reply: Reply<()>,
    },
    Renew {
        lease: Lease,
        lease_ms: i64,
        reply: Reply<()>,
    },
    Fail {
        id: EventId,
        token: Option<i64>,
        error: String,
        retry_in: Option<Duration>,
        reply: Reply<()>,
    },
    Release {
        id: EventId,
        token: Option<i64>,
        reply: Reply<()>,
    },
    Stats {
        reply: Reply<QueueStats>,
    },
    Ping {
        bytes: i64,
        reply: Reply<()>,
    },
    Prune {
        retention_ms: i64,
        reply: Reply<u64>,
    },
}

/// A `prune_done` in progress, done in chunks between other commands.
struct PruneJob {
    cutoff: i64,
    deleted: u64,
    reply: Reply<u64>,
}

/// The writer thread's state: the only connection that writes.
struct Writer {
    conn: Connection,
    clock: Clock,
    commands: mpsc::Receiver<Command>,
    prunes: VecDeque<PruneJob>,
    /// Number of enqueues in the previous group commit (a load estimate).
    last_batch: usize,
    /// Whether the connection is at `synchronous=FULL` (see the module docs).
    fsync_commits: bool,
    /// The WAL's length in frames while some are not yet copied, as last seen
    /// by a checkpoint (see [`checkpoint`]).
    wal_frames: Arc<AtomicI64>,
    activity: Activity,
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = if self.prunes.is_empty() {
                match self.commands.blocking_recv() {
                    Some(command) => command,
                    None => break,
                }
            } else {
                match self.commands.try_recv() {
                    Ok(command) => command,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.prune_step();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            };

            let (enqueues, others) = self.gather(first);
            if !enqueues.is_empty() {
                self.last_batch = enqueues.len();
                self.enqueue_batch(enqueues);
                self.activity.enqueued();
                self.finish_checkpoint();
            }
            for command in others {
                self.handle(command);
            }
            if !self.prunes.is_empty() {
                self.prune_step();
            }
        }
        if !self.prunes.is_empty() {
            tracing::debug!(
                "queue closing with unfinished prune; it will resume on the next prune"
            );
        }
        if let Err((_, error)) = self.conn.close() {
            tracing::warn!(%error, "closing the queue database failed");
        }
    }

    /// Take `first` and everything already waiting (up to [`MAX_BATCH`]
    /// commands), split into enqueues and other commands.
    ///
    /// Under load, callers answered by the previous commit are still coming
    /// back when the writer looks again, so it would alternate between full and
    /// tiny batches (one fsync each). When the previous batch was larger than
    /// what is waiting now, it waits briefly (at most [`COALESCE_WAIT`]) while
    /// more enqueues keep arriving. At low load (previous batch of one) it
    /// never waits.
    fn gather(&mut self, first: Command) -> (Vec<PendingEnqueue>, Vec<Command>) {
        let mut enqueues = Vec::new();
        let mut others = Vec::new();
        sort_command(first, &mut enqueues, &mut others);
        take_waiting(&mut self.commands, &mut enqueues, &mut others);
        if !enqueues.is_empty() && self.last_batch > 1 {
            let target = (self.last_batch * 3 / 4).min(MAX_BATCH);
            let deadline = Instant::now() + COALESCE_WAIT;
            while enqueues.len() < target
                && enqueues.len() + others.len() < MAX_BATCH
                && Instant::now() < deadline
            {
                std::thread::sleep(COALESCE_POLL);
                let got = take_waiting(&mut self.commands, &mut enqueues, &mut others);
                if got == 0 && enqueues.len() > target / 2 {
                    break;
                }
            }
        }
        (enqueues, others)
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// See [`WRITER_CHECKPOINT_PAGES`].
    fn finish_checkpoint(&mut self) {
        if self.wal_frames.load(Ordering::Relaxed) < WRITER_CHECKPOINT_PAGES {
            return;
        }
        match checkpoint(&self.conn) {
            Ok(frames) => self.wal_frames.store(frames, Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "queue WAL checkpoint by the writer failed"),
        }
    }

    /// Switch between `synchronous=FULL` (enqueues) and `NORMAL` (every
    /// other write), see the module docs. A no-op when already there.
    fn fsync_commits(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.fsync_commits != full {
            self.conn
                .pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.fsync_commits = full;
        }
        Ok(())
    }

    fn handle(&mut self, command: Command) {
        if !matches!(command, Command::Enqueue { .. }) {
            if let Err(error) = self.fsync_commits(false) {
                // Staying at FULL is slower but loses nothing.
                tracing::warn!(%error, "could not set synchronous=NORMAL for queue bookkeeping");
            }
        }
        match command {
            Command::Enqueue { item, reply } => self.enqueue_batch(vec![(item, reply)]),
            Command::Claim {
                max,
                lease_ms,
                reply,
            } => respond(reply, self.claim(max, lease_ms)),
            Command::Ack { id, token, reply } => respond(reply, self.ack(id, token)),
            Command::Renew {
                lease,
                lease_ms,
                reply,
            } => respond(reply, self.renew(lease, lease_ms)),
            Command::Fail {
                id,
                token,
                error,
                retry_in,
                reply,
            } => respond(reply, self.fail(id, token, &error, retry_in)),
            Command::Release { id, token, reply } => respond(reply, self.release(id, token)),
            Command::Stats { reply } => respond(reply, self.stats()),
            Command::Ping { bytes, reply } => respond(reply, self.ping(bytes)),
            Command::Prune {
                retention_ms,
                reply,
            } => {
                let cutoff = self.now().saturating_sub(retention_ms);
                self.prunes.push_back(PruneJob {
                    cutoff,
                    deleted: 0,
                    reply,
                });
            }
        }
    }

    /// Group commit: insert the whole batch in one transaction, commit once,
    /// then answer every caller. If anything fails, the transaction is rolled
    /// back and every caller gets the error.
    fn enqueue_batch(&mut self, batch: Vec<PendingEnqueue>) {
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

    fn claim(&mut self, max: i64, lease_ms: i64) -> Result<Vec<ClaimedEvent>, QueueError> {
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

    fn ack(&mut self, id: EventId, token: Option<i64>) -> Result<(), QueueError> {
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

    fn renew(&mut self, lease: Lease, lease_ms: i64) -> Result<(), QueueError> {
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
    fn ensure_not_fenced(
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

    fn fail(
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

    fn release(&mut self, id: EventId, token: Option<i64>) -> Result<(), QueueError> {
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

    fn stats(&mut self) -> Result<QueueStats, QueueError> {
        let now = self.now();
        let tx = self.conn.transaction().map_err(sql("stats"))?;
        let stats = read_stats(&tx, now)?;
        tx.commit().map_err(sql("stats"))?;
        Ok(stats)
    }

    fn ping(&mut self, bytes: i64) -> Result<(), QueueError> {
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
    fn prune_step(&mut self) {
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

    fn ensure_exists(&self, op: &'static str, id: EventId) -> Result<(), QueueError> {
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
/// Reads only the two indexes of [`SCHEMA_V4`]; stops as soon as `max` are found.
fn choose_claimable(conn: &Connection, now: i64, max: i64) -> rusqlite::Result<Vec<EventId>> {
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

/// Put a command on the enqueue list or the list of other commands.
fn sort_command(command: Command, enqueues: &mut Vec<PendingEnqueue>, others: &mut Vec<Command>) {
    match command {
        Command::Enqueue { item, reply } => enqueues.push((item, reply)),
        other => others.push(other),
    }
}

/// Take the commands already waiting in the channel, without blocking, until
/// the batch holds [`MAX_BATCH`] commands. Returns how many were taken.
fn take_waiting(
    commands: &mut mpsc::Receiver<Command>,
    enqueues: &mut Vec<PendingEnqueue>,
    others: &mut Vec<Command>,
) -> usize {
    let mut taken = 0;
    while enqueues.len() + others.len() < MAX_BATCH {
        match commands.try_recv() {
            Ok(command) => {
                sort_command(command, enqueues, others);
                taken += 1;
            }
            Err(_) => break,
        }
    }
    taken
}

/// Insert a batch of events in one transaction and commit it. Duplicates (of
/// stored events or of earlier events of the same batch) store nothing and
/// report the existing id.
fn insert_events<'a>(
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

/// Fails with the path and the operating system's word when the queue directory does not
/// take new files or an existing database file (or its WAL or shared-memory file) cannot be
/// opened for writing. SQLite would otherwise open such a database read-only and fail every
/// write later, without saying why.
fn check_writable(dir: &Path, db: &Path) -> Result<(), QueueError> {
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
fn shm_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-shm");
    PathBuf::from(name)
}

/// Open the database file (creating it if `create`) and set the connection's
/// pragmas.
pub(super) fn open_connection(path: &Path, create: bool) -> Result<Connection, QueueError> {
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
const CHUNK_BYTES: i32 = 32 * 1024 * 1024;

/// Make checkpoints grow the database file in [`CHUNK_BYTES`] steps instead of page by page.
///
/// Measured (BENCHMARKS.md §1): on ext4 (`data=ordered`), a checkpoint that appends pages to
/// the database allocates blocks, and the next fsync of the WAL, the one every acknowledgement
/// waits for, must then wait until those new data blocks are on disk: acknowledgements stalled
/// for 50-250 ms a few times per 20,000. Writing into blocks allocated beforehand involves no
/// new metadata, so the WAL's fsync does not wait for the checkpoint's data.
fn grow_in_chunks(conn: &Connection) {
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
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), QueueError> {
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

/// Counts of events by state at `now`. Every query is answered from an index
/// (see [`SCHEMA_V2`]), so this stays cheap however many events are kept.
pub(super) fn read_stats(conn: &Connection, now: i64) -> Result<QueueStats, QueueError> {
    let op = "stats";
    let count = |sql_text: &str, args: &[&dyn rusqlite::ToSql]| -> Result<u64, QueueError> {
        let n: i64 = conn
            .prepare_cached(sql_text)
            .and_then(|mut stmt| stmt.query_row(args, |row| row.get(0)))
            .map_err(sql(op))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let pending = count("SELECT COUNT(*) FROM events WHERE state = 'pending'", &[])?;
    let in_flight = count(
        "SELECT COUNT(*) FROM events INDEXED BY events_state_lease
         WHERE state = 'pending' AND locked_until > ?1",
        &[&now],
    )?;
    let dead = count("SELECT COUNT(*) FROM events WHERE state = 'dead'", &[])?;
    let done = count("SELECT COUNT(*) FROM events WHERE state = 'done'", &[])?;
    let oldest: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(received_at) FROM events INDEXED BY events_state_lease
             WHERE state = 'pending'",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(sql(op))?;
    Ok(QueueStats {
        pending: pending.saturating_sub(in_flight),
        in_flight,
        dead,
        done,
        oldest_pending_age_ms: oldest.map(|received_at| now.saturating_sub(received_at)),
    })
}

/// Maps a SQLite error to [`QueueError::Sqlite`] for operation `op`.
pub(super) fn sql(op: &'static str) -> impl Fn(rusqlite::Error) -> QueueError {
    move |source| QueueError::Sqlite { op, source }
}

fn respond<T>(reply: Reply<T>, result: Result<T, QueueError>) {
    // The caller may have gone away (cancelled); its command still ran.
    let _ = reply.send(result);
}

pub(super) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const LEASE: Duration = Duration::from_secs(30);

    fn open(dir: &Path, clock: &Clock) -> SqliteQueue {
        SqliteQueue::open_with_clock(dir, clock.clone()).expect("open queue")
    }

    fn event(key: &str) -> NewEvent {
        NewEvent {
            dedupe_key: key.to_owned(),
            serial_key: None,
            kind: "Merge Request Hook".to_owned(),
            headers: vec![
                ("x-gitlab-event".to_owned(), "Merge Request Hook".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            body: format!("{{\"key\":\"{key}\"}}").into_bytes(),
            received_at_ms: T0 - 5,
        }
    }

    async fn enqueue_new(queue: &SqliteQueue, key: &str) -> EventId {
        match queue.enqueue(event(key)).await.expect("enqueue") {
            Enqueued::New(id) => id,
            other => panic!("expected New for {key}, got {other:?}"),
        }
    }

    fn ids(events: &[ClaimedEvent]) -> Vec<EventId> {
        events.iter().map(|e| e.id).collect()
    }

    /// A second, read-only look at the database file, as an operator would have.
    fn inspect(dir: &Path) -> Connection {
        Connection::open(dir.join(DB_FILE)).expect("open for inspection")
    }

    /// Events in the database file itself, ignoring the WAL (`immutable=1`).
    fn events_in_database_file(dir: &Path) -> i64 {
        let uri = format!("file:{}?immutable=1", dir.join(DB_FILE).display());
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .expect("open the database file alone");
        conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn once_quiet_the_wal_is_copied_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        for key in ["a", "b", "c"] {
            queue.enqueue(event(key)).await.unwrap();
        }
        // Checked every 50 ms once enqueues have stopped for 100 ms.
        let deadline = Instant::now() + Duration::from_secs(10);
        while events_in_database_file(dir.path()) < 3 {
            assert!(Instant::now() < deadline, "the WAL was never checkpointed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And the queue keeps working on a rewound WAL.
        queue.enqueue(event("d")).await.unwrap();
        assert_eq!(queue.stats().await.unwrap().pending, 4);
    }

    #[tokio::test]
    async fn enqueue_then_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);

        let first = queue.enqueue(event("a")).await.unwrap();
        let Enqueued::New(id) = first else {
            panic!("first enqueue should be new: {first:?}")
        };
        let other = enqueue_new(&queue, "b").await;
        assert_ne!(id, other);

        let mut again = event("a");
        again.body = b"different body".to_vec();
        assert_eq!(queue.enqueue(again).await.unwrap(), Enqueued::Duplicate(id));

        let stats = queue.stats().await.unwrap();
        assert_eq!(stats.pending, 2, "the duplicate stored nothing: {stats:?}");
        let body: Vec<u8> = inspect(dir.path())
            .query_row("SELECT body FROM events WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(body, event("a").body, "the original body is kept");

        let claimed = queue.claim(10, LEASE).await.unwrap();
        assert_eq!(ids(&claimed), vec![id, other]);
        assert_eq!(claimed[0].kind, "Merge Request Hook");
        assert_eq!(claimed[0].headers, event("a").headers);
        assert_eq!(claimed[0].body, event("a").body);
        assert_eq!(claimed[0].received_at_ms, T0 - 5);
        assert_eq!(claimed[0].attempts, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enqueue_answers_only_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = Arc::new(open(dir.path(), &clock));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let queue = Arc::clone(&queue);
            tasks.push(tokio::spawn(async move {
                queue.enqueue(event(&format!("k{i}"))).await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_new());
        }
        // Another connection sees every acknowledged event while the queue is
        // still open: each was committed before its caller was answered.
        let stored: i64 = inspect(dir.path())
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 50);
    }

    #[tokio::test]
    async fn claim_respects_lease_max_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;
        let b = enqueue_new(&queue, "b").await;
        let c = enqueue_new(&queue, "c").await;

        assert!(queue.claim(0, LEASE).await.unwrap().is_empty());
        assert_eq!(ids(&queue.claim(2, LEASE).await.unwrap()), vec![a, b]);
        // a and b are leased: only c is left.
        assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![c]);
        assert!(queue.claim(10, LEASE).await.unwrap().is_empty());

        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.pending, stats.in_flight), (0, 3), "{stats:?}");

        // Just before the lease ends nothing is claimable.
        clock.advance(LEASE.as_millis() as i64 - 1);
        assert!(queue.claim(10, LEASE).await.unwrap().is_empty());

        let locked_until: i64 = inspect(dir.path())
            .query_row("SELECT locked_until FROM events WHERE id = ?1", [a], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(locked_until, T0 + LEASE.as_millis() as i64);
    }

    #[tokio::test]
    async fn claim_respects_next_attempt_at() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;
        let b = enqueue_new(&queue, "b").await;

        let claimed = queue.claim(10, LEASE).await.unwrap();
        assert_eq!(ids(&claimed), vec![a, b]);
        queue
            .fail(a, "boom", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        queue.ack(b).await.unwrap();

        // The lease was cleared but the retry time has not come.
        assert!(queue.claim(10, LEASE).await.unwrap().is_empty());
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.pending, stats.in_flight, stats.done), (1, 0, 1));

        clock.advance(59_999);
        assert!(queue.claim(10, LEASE).await.unwrap().is_empty());
        clock.advance(1);
        let again = queue.claim(10, LEASE).await.unwrap();
        assert_eq!(ids(&again), vec![a]);
        assert_eq!(again[0].attempts, 2);

        let conn = inspect(dir.path());
        let (last_error, next): (String, i64) = conn
            .query_row(
                "SELECT last_error, next_attempt_at FROM events WHERE id = ?1",
                [a],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((last_error.as_str(), next), ("boom", T0 + 60_000));
        let history: Vec<(i64, i64, String)> = conn
            .prepare("SELECT attempt, at, error FROM attempts WHERE event_id = ?1")
            .unwrap()
            .query_map([a], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(history, vec![(1, T0, "boom".to_owned())]);
    }

    #[tokio::test]
    async fn expired_lease_makes_event_claimable_again() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;

        let first = queue.claim(1, LEASE).await.unwrap();
        assert_eq!(ids(&first), vec![a]);
        assert_eq!(first[0].attempts, 1);
        // The worker "crashes" (or stalls past its lease): neither ack nor fail.
        clock.advance(LEASE.as_millis() as i64);
        let second = queue.claim(1, LEASE).await.unwrap();
        assert_eq!(ids(&second), vec![a]);
        assert_eq!(
            second[0].attempts, 1,
            "a lost lease is not a failed attempt"
        );
        assert!(second[0].lease_token > first[0].lease_token);
        assert!(queue.claim(1, LEASE).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_busy_serialization_key_never_takes_the_worker_slots() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let keyed = |key: &str, serial: &str| NewEvent {
            serial_key: Some(serial.to_owned()),
            ..event(key)
        };
        // A burst of 20 comments on one MR, then one event of another MR, then one without key.
        let mut burst = Vec::new();
        for i in 0..20 {
            burst.push(
                queue
                    .enqueue(keyed(&format!("c{i}"), "mr:2:16"))
                    .await
                    .unwrap()
                    .id(),
            );
        }
        let other = queue.enqueue(keyed("o", "mr:2:17")).await.unwrap().id();
        let unkeyed = enqueue_new(&queue, "u").await;
        // Eight free slots: one of the burst, the other MR, the unkeyed one.
        let first = queue.claim(8, LEASE).await.unwrap();
        assert_eq!(ids(&first), vec![burst[0], other, unkeyed]);
        // While the burst's first is in flight, nothing else of its key is claimed.
        assert!(queue.claim(8, LEASE).await.unwrap().is_empty());
        for done in &first {
            queue.ack_leased(done.lease()).await.unwrap();
        }
        assert_eq!(ids(&queue.claim(8, LEASE).await.unwrap()), vec![burst[1]]);
        // An expired lease frees the key as well (the event is claimable again, first).
        clock.advance(LEASE.as_millis() as i64);
        assert_eq!(ids(&queue.claim(8, LEASE).await.unwrap()), vec![burst[1]]);
    }

    #[tokio::test]
    async fn only_the_latest_claim_may_renew_ack_fail_or_release() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;
        let first = queue.claim(1, LEASE).await.unwrap().remove(0);
        // Renewing keeps the event from being claimed past the first lease.
        clock.advance(LEASE.as_millis() as i64 - 1);
        queue.renew(first.lease(), LEASE).await.unwrap();
        clock.advance(LEASE.as_millis() as i64 - 1);
        assert!(queue.claim(1, LEASE).await.unwrap().is_empty());
        // The first worker stalls past its lease; a second claims the event.
        clock.advance(1);
        let second = queue.claim(1, LEASE).await.unwrap().remove(0);
        assert_eq!(second.id, a);
        let stale = first.lease();
        for refused in [
            queue.renew(stale, LEASE).await,
            queue.ack_leased(stale).await,
            queue.fail_leased(stale, "late", None).await,
            queue.release_leased(stale).await,
        ] {
            assert!(
                matches!(refused, Err(QueueError::LeaseLost { id, .. }) if id == a),
                "{refused:?}"
            );
        }
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.in_flight, stats.done, stats.dead), (1, 0, 0));
        // The current holder finishes the event; afterwards a stale ack is a no-op.
        queue.ack_leased(second.lease()).await.unwrap();
        queue.ack_leased(stale).await.unwrap();
        assert_eq!(queue.stats().await.unwrap().done, 1);
        assert!(matches!(
            queue.renew(second.lease(), LEASE).await,
            Err(QueueError::LeaseLost { .. })
        ));
    }

    #[tokio::test]
    async fn fail_without_retry_is_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;
        let b = enqueue_new(&queue, "b").await;
        queue.claim(10, LEASE).await.unwrap();
        clock.advance(10);
        queue.fail(a, "permanent: 404", None).await.unwrap();

        let stats = queue.stats().await.unwrap();
        assert_eq!(
            stats,
            QueueStats {
                pending: 0,
                in_flight: 1,
                dead: 1,
                done: 0,
                oldest_pending_age_ms: Some(15),
            }
        );
        // Dead events are never claimed again, even after the lease.
        clock.advance(LEASE.as_millis() as i64);
        assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![b]);

        let (id, key, error, dead_at, attempts): (i64, String, String, i64, i64) =
            inspect(dir.path())
                .query_row(
                    "SELECT id, dedupe_key, last_error, dead_at, attempts FROM dead_letters",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .unwrap();
        assert_eq!(
            (id, key.as_str(), error.as_str(), dead_at, attempts),
            (a, "a", "permanent: 404", T0 + 10, 1)
        );

        // Later outcomes for a dead event change nothing.
        queue.ack(a).await.unwrap();
        queue.fail(a, "again", Some(Duration::ZERO)).await.unwrap();
        assert_eq!(queue.stats().await.unwrap().dead, 1);
    }

    #[tokio::test]
    async fn release_does_not_count_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;

        assert_eq!(queue.claim(1, LEASE).await.unwrap()[0].attempts, 1);
        queue.release(a).await.unwrap();
        // Claimable at once (lease cleared), still on its first attempt.
        let again = queue.claim(1, LEASE).await.unwrap();
        assert_eq!(ids(&again), vec![a]);
        assert_eq!(again[0].attempts, 1);
        queue.release(a).await.unwrap();
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.pending, stats.in_flight), (1, 0));
        let attempts: i64 = inspect(dir.path())
            .query_row("SELECT attempts FROM events WHERE id = ?1", [a], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(attempts, 0);
    }

    #[tokio::test]
    async fn reopen_keeps_pending_events() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let (a, b, c) = {
            let queue = open(dir.path(), &clock);
            let a = enqueue_new(&queue, "a").await;
            let b = enqueue_new(&queue, "b").await;
            let c = enqueue_new(&queue, "c").await;
            assert_eq!(ids(&queue.claim(1, LEASE).await.unwrap()), vec![a]);
            queue.ack(a).await.unwrap();
            (a, b, c)
        }; // dropped: writer thread exits, database closed

        let queue = open(dir.path(), &clock);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.pending, stats.done), (2, 1), "{stats:?}");
        assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![b, c]);
        assert_eq!(
            queue.enqueue(event("a")).await.unwrap(),
            Enqueued::Duplicate(a),
            "dedupe survives a restart"
        );
        let d = enqueue_new(&queue, "d").await;
        assert!(d > c, "ids are not reused");

        let version: i64 = inspect(dir.path())
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = inspect(dir.path())
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn open_creates_missing_directories_and_rejects_newer_schema() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("x").join("y");
        let clock = Clock::manual(T0);
        drop(open(&nested, &clock));
        assert!(nested.join(DB_FILE).is_file());

        inspect(&nested)
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match SqliteQueue::open_with_clock(&nested, clock.clone()) {
            Err(QueueError::SchemaTooNew { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_version_1_database_is_migrated_with_its_events() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO events (dedupe_key, kind, headers, body, received_at, state,
                                     attempts, next_attempt_at)
                 VALUES ('old', 'Merge Request Hook', '[]', x'7b7d', ?1, 'pending', 0, ?1)",
                [T0 - 5],
            )
            .unwrap();
        }
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.pending, stats.oldest_pending_age_ms), (1, Some(5)));
        let claimed = queue.claim(10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let conn = inspect(dir.path());
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        let replays: i64 = conn
            .query_row("SELECT replays FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!((version, replays), (SCHEMA_VERSION, 0));
    }

    #[tokio::test]
    async fn acked_events_are_not_claimed_again() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;
        queue.claim(1, LEASE).await.unwrap();
        clock.advance(7);
        queue.ack(a).await.unwrap();
        queue.ack(a).await.unwrap(); // idempotent

        clock.advance(10 * LEASE.as_millis() as i64);
        assert!(queue.claim(10, LEASE).await.unwrap().is_empty());
        let stats = queue.stats().await.unwrap();
        assert_eq!(
            stats,
            QueueStats {
                done: 1,
                ..QueueStats::default()
            }
        );
        let (done_at, locked): (i64, Option<i64>) = inspect(dir.path())
            .query_row(
                "SELECT done_at, locked_until FROM events WHERE id = ?1",
                [a],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((done_at, locked), (T0 + 7, None));
    }

    #[tokio::test]
    async fn unknown_ids_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        assert!(matches!(
            queue.ack(42).await,
            Err(QueueError::NotFound { op: "ack", id: 42 })
        ));
        assert!(matches!(
            queue.fail(42, "x", None).await,
            Err(QueueError::NotFound { op: "fail", id: 42 })
        ));
        assert!(matches!(
            queue.release(42).await,
            Err(QueueError::NotFound {
                op: "release",
                id: 42
            })
        ));
    }

    #[tokio::test]
    async fn prune_done_deletes_only_old_done_events() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let retention = Duration::from_secs(3600);

        let old_done = enqueue_new(&queue, "old-done").await;
        let old_dead = enqueue_new(&queue, "old-dead").await;
        let old_pending = enqueue_new(&queue, "old-pending").await;
        queue.claim(2, LEASE).await.unwrap();
        queue.ack(old_done).await.unwrap();
        queue.fail(old_dead, "nope", None).await.unwrap();

        clock.advance(retention.as_millis() as i64 - 1000);
        let new_done = enqueue_new(&queue, "new-done").await;
        let claimed = queue.claim(10, LEASE).await.unwrap();
        assert_eq!(ids(&claimed), vec![old_pending, new_done]);
        queue.ack(new_done).await.unwrap();
        queue.release(old_pending).await.unwrap();

        clock.advance(1001);
        assert_eq!(queue.prune_done(retention).await.unwrap(), 1);
        assert_eq!(queue.prune_done(retention).await.unwrap(), 0);

        let conn = inspect(dir.path());
        let remaining: Vec<i64> = conn
            .prepare("SELECT id FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(remaining, vec![old_dead, old_pending, new_done]);
        let dead_history: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM attempts WHERE event_id = ?1",
                [old_dead],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dead_history, 1, "history of kept events stays");

        clock.advance(retention.as_millis() as i64);
        assert_eq!(queue.prune_done(retention).await.unwrap(), 1);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.pending, stats.done, stats.dead), (1, 0, 1));
    }

    #[tokio::test]
    async fn prune_done_works_in_chunks_and_removes_history() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = Arc::new(open(dir.path(), &clock));
        let total = (PRUNE_CHUNK as usize) * 2 + 37;
        let mut tasks = Vec::new();
        for i in 0..total {
            let queue = Arc::clone(&queue);
            tasks.push(tokio::spawn(async move {
                queue.enqueue(event(&format!("e{i}"))).await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_new());
        }
        let claimed = queue.claim(total, LEASE).await.unwrap();
        assert_eq!(claimed.len(), total);
        for e in &claimed {
            queue
                .fail(e.id, "transient", Some(Duration::ZERO))
                .await
                .unwrap();
        }
        let claimed = queue.claim(total, LEASE).await.unwrap();
        for e in &claimed {
            queue.ack(e.id).await.unwrap();
        }
        clock.advance(10);
        let deleted = queue.prune_done(Duration::from_millis(5)).await.unwrap();
        assert_eq!(deleted, total as u64);
        let history: i64 = inspect(dir.path())
            .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(history, 0, "attempt history is deleted with its event");
    }

    #[tokio::test]
    async fn stored_errors_never_hold_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock).redacting(crate::redact::Redactor::with_known([
            "configured-secret-4f9a2c7e".to_owned(),
        ]));
        let a = enqueue_new(&queue, "a").await;
        let claimed = queue.claim(1, LEASE).await.unwrap().remove(0);
        let echoed = "gitlab server error (500): {\"message\":\"bad token configured-secret-4f9a2c7e or glpat-AbCdEf123456\"}";
        queue
            .fail_leased(claimed.lease(), echoed, Some(Duration::ZERO))
            .await
            .unwrap();
        let conn = inspect(dir.path());
        let (last_error,): (String,) = conn
            .query_row("SELECT last_error FROM events WHERE id = ?1", [a], |r| {
                Ok((r.get(0)?,))
            })
            .unwrap();
        let history: String = conn
            .query_row("SELECT error FROM attempts WHERE event_id = ?1", [a], |r| {
                r.get(0)
            })
            .unwrap();
        for stored in [&last_error, &history] {
            assert!(!stored.contains("configured-secret-4f9a2c7e"), "{stored}");
            assert!(!stored.contains("AbCdEf123456"), "{stored}");
            assert!(stored.contains("gitlab server error (500)"), "{stored}");
        }
    }

    #[test]
    fn errors_keep_their_cause() {
        let full = QueueError::Sqlite {
            op: "claim",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        };
        assert_eq!(
            full.to_string(),
            "queue claim failed: Error code 13: Insertion failed because database is full"
        );
    }

    #[tokio::test]
    async fn ping_writes() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        queue.ping(0).await.unwrap();
        queue.ping(4096).await.unwrap();
        let probe: i64 = inspect(dir.path())
            .query_row(
                "SELECT length(value) FROM meta WHERE key = 'probe'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(probe, 4096);
        queue.ping(0).await.unwrap();
        let value: String = inspect(dir.path())
            .query_row(
                "SELECT value FROM meta WHERE key = 'last_ping_at'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(value, clock.now_ms().to_string());
    }

    #[tokio::test]
    async fn corrupt_headers_go_to_dead_letters_instead_of_blocking_claims() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;
        let b = enqueue_new(&queue, "b").await;
        inspect(dir.path())
            .execute("UPDATE events SET headers = 'not json' WHERE id = ?1", [a])
            .unwrap();
        assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![b]);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.dead, stats.in_flight, stats.pending), (1, 1, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_enqueues_get_distinct_ids_then_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = Arc::new(open(dir.path(), &clock));

        let round = |queue: Arc<SqliteQueue>| async move {
            let mut tasks = Vec::new();
            for i in 0..200 {
                let queue = Arc::clone(&queue);
                tasks.push(tokio::spawn(async move {
                    (i, queue.enqueue(event(&format!("key-{i}"))).await)
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                let (i, result) = task.await.expect("task");
                results.push((i, result.expect("enqueue")));
            }
            results
        };

        let first = round(Arc::clone(&queue)).await;
        let mut by_key = std::collections::HashMap::new();
        for (i, result) in &first {
            let Enqueued::New(id) = result else {
                panic!("key-{i}: expected New, got {result:?}")
            };
            by_key.insert(*i, *id);
        }
        let distinct: HashSet<EventId> = by_key.values().copied().collect();
        assert_eq!(distinct.len(), 200);

        let second = round(Arc::clone(&queue)).await;
        for (i, result) in &second {
            assert_eq!(*result, Enqueued::Duplicate(by_key[i]), "key-{i}");
        }
        assert_eq!(queue.stats().await.unwrap().pending, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn same_key_in_one_batch_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = Arc::new(open(dir.path(), &clock));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let queue = Arc::clone(&queue);
            tasks.push(tokio::spawn(
                async move { queue.enqueue(event("same")).await },
            ));
        }
        let mut new = Vec::new();
        let mut duplicate_of = HashSet::new();
        for task in tasks {
            match task.await.unwrap().unwrap() {
                Enqueued::New(id) => new.push(id),
                Enqueued::Duplicate(id) => {
                    duplicate_of.insert(id);
                }
            }
        }
        assert_eq!(new.len(), 1, "exactly one caller stored it");
        assert!(duplicate_of.iter().all(|id| *id == new[0]));
        assert_eq!(queue.stats().await.unwrap().pending, 1);
    }

    #[tokio::test]
    async fn dropping_the_queue_stops_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let queue = open(dir.path(), &clock);
        enqueue_new(&queue, "a").await;
        drop(queue); // joins the writer; would hang if it did not exit
                     // With the writer gone and the connection closed, the WAL was
                     // checkpointed and removed.
        assert!(!dir.path().join("queue.sqlite3-wal").exists());
    }

    /// Throughput check: `cargo test --release -- --ignored throughput --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark; run in release mode"]
    async fn throughput() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(SqliteQueue::open(dir.path()).unwrap());
        let per_task: usize = std::env::var("PER_TASK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400);
        let body_size: usize = std::env::var("BODY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4096);
        let concurrency = 64;
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let queue = Arc::clone(&queue);
            tasks.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let mut e = event(&format!("{t}-{i}"));
                    e.body = vec![b'x'; body_size];
                    queue.enqueue(e).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed();
        let rate = (per_task * concurrency) as f64 / elapsed.as_secs_f64();
        let wal = std::fs::metadata(dir.path().join("queue.sqlite3-wal")).map_or(0, |m| m.len());
        println!(
            "{} enqueues of {body_size} bytes in {elapsed:?}: {rate:.0}/s (WAL now {} KiB)",
            per_task * concurrency,
            wal / 1024
        );
        assert!(rate >= 5000.0, "{rate:.0}/s");
    }
}

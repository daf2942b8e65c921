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
//!
//! Files: `schema` (versions, migrations, connections), `writer` (the writer thread and group
//! commit), `checkpoint` (the checkpoint thread), `ops` (each operation's SQL), `stats`.

mod checkpoint;
mod ops;
mod schema;
mod stats;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use self::checkpoint::{Activity, Checkpointer};
use self::schema::{check_writable, wal_path, WAL_SIZE_LIMIT_BYTES};
use self::writer::{Command, EnqueueItem, Reply, Writer, WRITER_AUTOCHECKPOINT_PAGES};
use crate::clock::Clock;
use crate::queue::{
    ClaimedEvent, Enqueued, EventId, Lease, NewEvent, Queue, QueueError, QueueStats,
};

pub(super) use schema::{duration_ms, migrate, open_connection, sql, DB_FILE};
pub(super) use stats::read_stats;

/// Commands that may wait in the channel before senders are made to wait.
const CHANNEL_CAPACITY: usize = 4096;

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

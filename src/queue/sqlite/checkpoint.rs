//! The checkpoint thread: copies the WAL back into the database file between bursts, so the
//! writer does not pay for checkpoints while callers wait on it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::queue::QueueError;

/// How often the checkpoint thread looks whether to copy the WAL into the
/// database.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// The checkpoint thread copies the WAL into the database once no enqueue has
/// been committed for this long, or when the WAL file passes
/// [`WAL_BURST_BYTES`], or [`CHECKPOINT_MAX_GAP`] after the last copy. A checkpoint's fsync of the database file delays the
/// WAL fsyncs that acknowledgements wait for (measured: enqueue p99 9 ms
/// without checkpoints, 30-90 ms with one every 50 ms during a burst, stalls
/// up to 250 ms), so during a burst the WAL absorbs the writes and the copy
/// happens when the burst is over.
pub(super) const CHECKPOINT_QUIET: Duration = Duration::from_millis(100);

/// WAL size past which the checkpoint thread copies even during a burst.
pub(super) const WAL_BURST_BYTES: u64 = 256 * 1024 * 1024;

/// Longest time between two checkpoints under steady traffic that never
/// pauses for [`CHECKPOINT_QUIET`] (keeps the WAL, and the time to recover it
/// after a crash, small when events arrive at a few hundred per second).
pub(super) const CHECKPOINT_MAX_GAP: Duration = Duration::from_secs(10);

/// `PRAGMA wal_checkpoint(PASSIVE)`: copy what it can of the WAL into the
/// database. Returns the number of WAL frames still to copy before the WAL
/// can be rewound: 0 once everything is copied (the next commit rewinds it),
/// else the WAL's length.
pub(super) fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    let (frames, copied): (i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })?;
    Ok(if copied >= frames { 0 } else { frames })
}

/// When the writer last committed enqueues, shared with the checkpoint thread.
#[derive(Clone)]
pub(super) struct Activity {
    pub(super) origin: Instant,
    /// Milliseconds after `origin`.
    pub(super) last_enqueue_ms: Arc<AtomicU64>,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_enqueue_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn enqueued(&self) {
        self.last_enqueue_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub(super) fn since_last_enqueue(&self) -> Duration {
        let last = self.last_enqueue_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }
}

/// Background thread that copies the WAL back into the database file
/// (`PRAGMA wal_checkpoint(PASSIVE)`) with its own connection, so that the
/// writer thread does not pay for checkpoints while callers wait on it.
pub(super) struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Checkpointer {
    /// `wal_frames` receives the result of each [`checkpoint`]; `activity`
    /// says when the writer last committed enqueues.
    pub(super) fn start(
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

    pub(super) fn stop(self) {
        drop(self.stop);
        if self.handle.join().is_err() {
            tracing::error!("queue checkpoint thread panicked");
        }
    }
}

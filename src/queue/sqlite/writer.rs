//! The writer thread: the only connection that writes. It takes commands from the channel,
//! gathers waiting enqueues into one group commit, and answers each caller.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{checkpoint, Activity};
use crate::clock::Clock;
use crate::queue::{ClaimedEvent, Enqueued, EventId, Lease, QueueError, QueueStats};

/// Most commands the writer takes from the channel for one group commit.
pub(super) const MAX_BATCH: usize = 512;

/// Longest the writer waits for more enqueues to join a batch.
pub(super) const COALESCE_WAIT: Duration = Duration::from_millis(1);

/// How often it looks for them meanwhile.
pub(super) const COALESCE_POLL: Duration = Duration::from_micros(50);

/// WAL size (pages) past which the writer checkpoints by itself inside a
/// commit: the last safety valve, past [`WAL_BURST_BYTES`](super::checkpoint::WAL_BURST_BYTES), for when the
/// checkpoint thread cannot keep up (such a checkpoint stalls every caller).
pub(super) const WRITER_AUTOCHECKPOINT_PAGES: i64 = 131_072;

/// WAL size (pages) past which the writer finishes the checkpoint thread's
/// work right after answering a batch. Under a steady stream of commits the
/// checkpoint thread never sees the WAL fully copied, so the WAL is never
/// rewound and grows; the writer, between two commits, can copy the last few
/// frames (the thread already copied the rest) so that its next commit
/// rewinds the WAL. Small and frequent: a few ms, after the callers of the
/// batch have their answer.
pub(super) const WRITER_CHECKPOINT_PAGES: i64 = 1_024;

/// Where the writer thread sends the result of a command.
pub(super) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// An enqueue waiting for the next group commit.
pub(super) type PendingEnqueue = (EnqueueItem, Reply<Enqueued>);

/// An event ready to be inserted (headers already encoded).
pub(super) struct EnqueueItem {
    pub(super) dedupe_key: String,
    pub(super) serial_key: Option<String>,
    pub(super) kind: String,
    pub(super) headers: String,
    pub(super) body: Vec<u8>,
    pub(super) received_at_ms: i64,
}

/// Work for the writer thread.
pub(super) enum Command {
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
pub(super) struct PruneJob {
    pub(super) cutoff: i64,
    pub(super) deleted: u64,
    pub(super) reply: Reply<u64>,
}

/// The writer thread's state: the only connection that writes.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) clock: Clock,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) prunes: VecDeque<PruneJob>,
    /// Number of enqueues in the previous group commit (a load estimate).
    pub(super) last_batch: usize,
    /// Whether the connection is at `synchronous=FULL` (see the module docs).
    pub(super) fsync_commits: bool,
    /// The WAL's length in frames while some are not yet copied, as last seen
    /// by a checkpoint (see [`checkpoint`]).
    pub(super) wal_frames: Arc<AtomicI64>,
    pub(super) activity: Activity,
}

impl Writer {
    pub(super) fn run(mut self) {
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
    pub(super) fn gather(&mut self, first: Command) -> (Vec<PendingEnqueue>, Vec<Command>) {
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

    pub(super) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// See [`WRITER_CHECKPOINT_PAGES`].
    pub(super) fn finish_checkpoint(&mut self) {
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
    pub(super) fn fsync_commits(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.fsync_commits != full {
            self.conn
                .pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.fsync_commits = full;
        }
        Ok(())
    }

    pub(super) fn handle(&mut self, command: Command) {
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
}

/// Put a command on the enqueue list or the list of other commands.
pub(super) fn sort_command(
    command: Command,
    enqueues: &mut Vec<PendingEnqueue>,
    others: &mut Vec<Command>,
) {
    match command {
        Command::Enqueue { item, reply } => enqueues.push((item, reply)),
        other => others.push(other),
    }
}

/// Take the commands already waiting in the channel, without blocking, until
/// the batch holds [`MAX_BATCH`] commands. Returns how many were taken.
pub(super) fn take_waiting(
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

pub(super) fn respond<T>(reply: Reply<T>, result: Result<T, QueueError>) {
    // The caller may have gone away (cancelled); its command still ran.
    let _ = reply.send(result);
}

//! What the receiver knows about its storage, for `/readyz` and `/metrics` without a database
//! write per request and without waiting on a stalled disk.
//!
//! Two sources: the outcome of every enqueue (the writes that matter), and a probe that writes
//! once every [`PROBE_EVERY`] in the background with a deadline of [`ANSWER_WITHIN`]. The latest
//! outcome of either decides, except that after an event was refused (e.g. a full disk) only a
//! probe that wrote as many bytes (up to [`MAX_PROBE_BYTES`]) or a stored event clears it; a
//! probe that does not answer in time reads as "stalled".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::queue::Queue;

/// How often the background probe writes.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Longest a health page waits for the queue.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(800);

/// The storage's state as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// No write has been tried yet.
    Unknown,
    Writable,
    /// The last write failed; the cause, as the database said it.
    Failing(String),
    /// A write did not finish within [`ANSWER_WITHIN`].
    Stalled,
}

/// Largest write the probe makes to check that space is back after a refused event.
pub const MAX_PROBE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct StorageHealth {
    last: Arc<Mutex<(Instant, Storage)>>,
    /// Size of the last event that could not be stored (0: none since the last success); the
    /// probe writes as much, so a nearly full disk is not reported writable because a tiny
    /// write still fits.
    refused_bytes: Arc<AtomicUsize>,
}

impl Default for StorageHealth {
    fn default() -> Self {
        Self {
            last: Arc::new(Mutex::new((Instant::now(), Storage::Unknown))),
            refused_bytes: Arc::default(),
        }
    }
}

impl StorageHealth {
    /// The outcome of storing an event of `bytes`.
    pub fn record_enqueue(&self, bytes: usize, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.refused_bytes.store(0, Ordering::Relaxed);
                self.record(Storage::Writable);
            }
            Err(cause) => {
                self.refused_bytes
                    .store(bytes.min(MAX_PROBE_BYTES), Ordering::Relaxed);
                self.record(Storage::Failing(cause));
            }
        }
    }

    /// How many bytes the probe must write to vouch for the storage.
    fn probe_bytes(&self) -> usize {
        self.refused_bytes.load(Ordering::Relaxed)
    }

    /// The outcome of a probe that wrote `bytes`. A successful one clears a refusal only if
    /// it wrote at least as much as the refused event.
    fn record_probe(&self, bytes: usize, state: Storage) {
        if state == Storage::Writable {
            let _ =
                self.refused_bytes
                    .compare_exchange(bytes, 0, Ordering::Relaxed, Ordering::Relaxed);
            if self.probe_bytes() > bytes {
                return;
            }
        }
        self.record(state);
    }

    pub fn record(&self, state: Storage) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(state, Storage::Failing(_) | Storage::Stalled) && last.1 != state {
            tracing::error!(storage = ?state, "queue storage is not writable");
        } else if state == Storage::Writable
            && matches!(last.1, Storage::Failing(_) | Storage::Stalled)
        {
            tracing::info!("queue storage is writable again");
        }
        *last = (Instant::now(), state);
    }

    pub fn current(&self) -> Storage {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// `Ok` with a word for the page, or `Err` with what is wrong.
    pub fn verdict(&self) -> Result<&'static str, String> {
        match self.current() {
            Storage::Writable => Ok("writable"),
            Storage::Unknown => Ok("not yet probed"),
            Storage::Failing(cause) => Err(format!("queue not writable: {cause}")),
            Storage::Stalled => Err(format!(
                "queue storage stalled: a write did not finish within {} ms",
                ANSWER_WITHIN.as_millis()
            )),
        }
    }
}

/// The cause of a queue error, with its whole chain (e.g. "queue enqueue failed: database or
/// disk is full").
pub fn cause(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Writes a probe now and every [`PROBE_EVERY`] until `stop`.
pub async fn probe(queue: Arc<dyn Queue>, health: StorageHealth, mut stop: watch::Receiver<bool>) {
    loop {
        let bytes = health.probe_bytes();
        let state = match tokio::time::timeout(ANSWER_WITHIN, queue.ping(bytes)).await {
            Ok(Ok(())) => Storage::Writable,
            Ok(Err(e)) => Storage::Failing(cause(&e)),
            Err(_) => Storage::Stalled,
        };
        health.record_probe(bytes, state);
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_cleared_only_by_a_write_as_large_or_a_stored_event() {
        let h = StorageHealth::default();
        assert_eq!(h.verdict(), Ok("not yet probed"));
        h.record_enqueue(700_000, Err("database or disk is full".into()));
        assert!(h.verdict().unwrap_err().contains("disk is full"));
        assert_eq!(h.probe_bytes(), 700_000);
        // A probe smaller than the refused event proves nothing.
        h.record_probe(4096, Storage::Writable);
        assert!(h.verdict().is_err());
        h.record_probe(700_000, Storage::Writable);
        assert_eq!(h.verdict(), Ok("writable"));
        assert_eq!(h.probe_bytes(), 0);
        // Events larger than the cap are vouched for by a probe of the cap.
        h.record_enqueue(25 << 20, Err("full".into()));
        assert_eq!(h.probe_bytes(), MAX_PROBE_BYTES);
        h.record_enqueue(10, Ok(()));
        assert_eq!(h.verdict(), Ok("writable"));
        h.record_probe(0, Storage::Stalled);
        assert!(h.verdict().unwrap_err().contains("stalled"));
    }
}

//! What the receiver knows about its storage, for `/readyz` and `/metrics` without a database
//! write per request and without waiting on a stalled disk.
//!
//! Two sources: the outcome of every enqueue (the writes that matter), and a probe that writes
//! once every [`PROBE_EVERY`] in the background with a deadline of [`ANSWER_WITHIN`]. The latest
//! outcome of either decides; a probe that does not answer in time reads as "stalled".

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

#[derive(Debug, Clone)]
pub struct StorageHealth {
    last: Arc<Mutex<(Instant, Storage)>>,
}

impl Default for StorageHealth {
    fn default() -> Self {
        Self {
            last: Arc::new(Mutex::new((Instant::now(), Storage::Unknown))),
        }
    }
}

impl StorageHealth {
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
        self.last.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
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
        let state = match tokio::time::timeout(ANSWER_WITHIN, queue.ping()).await {
            Ok(Ok(())) => Storage::Writable,
            Ok(Err(e)) => Storage::Failing(cause(&e)),
            Err(_) => Storage::Stalled,
        };
        health.record(state);
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

//! Scheduled pipeline jobs: the same facts → decide → executor path as `serve`, over sweeps of
//! GitLab lists instead of single events.

pub mod cca_check;
pub mod cca_engagements;
pub mod mr_sweep;
pub mod nudge;
pub mod plan;
pub mod reconcile;
pub mod recover;
pub mod recover_sweep;
pub mod report;
pub mod score;
pub mod setup;
pub mod site;
pub mod stalls;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use crate::gitlab::{CallCounter, GitlabClient};

/// What a job spends: GitLab calls and wall time from [`Spend::start`] on.
pub struct Spend {
    counter: Arc<CallCounter>,
    before: (u64, u64),
    started: Instant,
}

/// The calls and time spent so far.
#[derive(Debug, Clone, Copy)]
pub struct Spent {
    pub reads: u64,
    pub writes: u64,
    pub elapsed_ms: u128,
}

impl Spend {
    pub fn start(client: &GitlabClient) -> Self {
        let counter = client.counter();
        let before = counter.snapshot();
        Self {
            counter,
            before,
            started: Instant::now(),
        }
    }

    pub fn so_far(&self) -> Spent {
        let (reads, writes) = self.counter.snapshot();
        Spent {
            reads: reads - self.before.0,
            writes: writes - self.before.1,
            elapsed_ms: self.started.elapsed().as_millis(),
        }
    }
}

/// A one-line progress indicator on a terminal (stderr); silent in CI logs.
pub struct Progress {
    total: usize,
    done: usize,
    enabled: bool,
    label: &'static str,
}

impl Progress {
    pub fn new(label: &'static str, total: usize) -> Self {
        Self {
            total,
            done: 0,
            enabled: std::io::stderr().is_terminal(),
            label,
        }
    }

    pub fn tick(&mut self) {
        self.done += 1;
        if self.enabled && (self.done % 10 == 0 || self.done == self.total) {
            eprint!("\r{}: {}/{}", self.label, self.done, self.total);
            if self.done == self.total {
                eprintln!();
            }
        }
    }
}

//! Scheduled pipeline jobs: the same facts → decide → executor path as `serve`, over sweeps of
//! GitLab lists instead of single events.

pub mod cca_check;
pub mod nudge;
pub mod reconcile;
pub mod report;
pub mod score;
pub mod setup;

use std::io::IsTerminal;

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

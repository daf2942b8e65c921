//! The one clock: the time the rules see, the receiver stamps on a delivery and the queue
//! schedules by. Real time in production; tests and `--now` fix it, and queue tests move it by
//! hand, so expiry dates, `--since` windows, leases and retries are reproducible.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    source: Source,
}

#[derive(Debug, Clone, Default)]
enum Source {
    #[default]
    System,
    Fixed(DateTime<Utc>),
    /// Unix milliseconds, moved by [`Clock::advance`] (shared by every clone).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn system() -> Self {
        Self {
            source: Source::System,
        }
    }

    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self {
            source: Source::Fixed(at),
        }
    }

    /// A clock that stands at `start_ms` (unix milliseconds) until [`Clock::advance`] moves it;
    /// clones share the same time.
    pub fn manual(start_ms: i64) -> Self {
        Self {
            source: Source::Manual(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// Moves a manual clock forward by `ms` (a system or fixed clock is not moved).
    pub fn advance(&self, ms: i64) {
        if let Source::Manual(cell) = &self.source {
            cell.fetch_add(ms, Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.source {
            Source::System => Utc::now(),
            Source::Fixed(at) => *at,
            Source::Manual(_) => {
                DateTime::from_timestamp_millis(self.now_ms()).unwrap_or(DateTime::UNIX_EPOCH)
            }
        }
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.source {
            Source::Manual(cell) => cell.load(Ordering::SeqCst),
            _ => self.now().timestamp_millis(),
        }
    }

    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = Clock::manual(1_700_000_000_000);
        let clone = clock.clone();
        clock.advance(1_500);
        assert_eq!(clone.now_ms(), 1_700_000_001_500);
        assert_eq!(clone.now().timestamp_millis(), 1_700_000_001_500);
    }

    #[test]
    fn a_fixed_clock_gives_the_same_time_in_both_units() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let clock = Clock::fixed(at);
        clock.advance(10);
        assert_eq!(clock.now(), at);
        assert_eq!(clock.now_ms(), 1_700_000_000_000);
    }
}

//! Readiness limits: how much backlog the queue may hold before `/readyz` reports it unhealthy.

use std::time::Duration;

use super::QueueStats;

/// Limits on the worker's backlog past which `/readyz` answers 503 (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadyLimits {
    /// More dead letters than this.
    pub max_dead: Option<u64>,
    /// The oldest pending event (waiting or in flight) older than this.
    pub max_pending_age: Option<Duration>,
}

impl ReadyLimits {
    /// What is past its limit in `stats`, in words; empty when within every limit.
    pub fn problems(&self, stats: &QueueStats) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(max) = self.max_dead.filter(|max| stats.dead > *max) {
            problems.push(format!("dead letters: {} (limit {max})", stats.dead));
        }
        let age = Duration::from_millis(
            u64::try_from(stats.oldest_pending_age_ms.unwrap_or(0)).unwrap_or(0),
        );
        if let Some(max) = self.max_pending_age.filter(|max| age > *max) {
            problems.push(format!(
                "oldest pending event: {}s old (limit {}s)",
                age.as_secs(),
                max.as_secs()
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_limits_name_what_is_past_them() {
        let stats = QueueStats {
            dead: 3,
            oldest_pending_age_ms: Some(90_500),
            ..QueueStats::default()
        };
        assert!(ReadyLimits::default().problems(&stats).is_empty());
        let within = ReadyLimits {
            max_dead: Some(3),
            max_pending_age: Some(Duration::from_secs(91)),
        };
        assert!(within.problems(&stats).is_empty());
        let past = ReadyLimits {
            max_dead: Some(2),
            max_pending_age: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            past.problems(&stats),
            vec![
                "dead letters: 3 (limit 2)".to_owned(),
                "oldest pending event: 90s old (limit 60s)".to_owned()
            ]
        );
    }
}

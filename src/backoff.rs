//! Retry delays: capped exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Delay before retrying after failed attempt number `attempt` (1-based; 0 is
/// treated as 1).
///
/// The ceiling grows as `base * 2^(attempt - 1)` and is capped at `cap`; the
/// delay is drawn uniformly ("full jitter") between a floor of `base / 2` and
/// that ceiling, so it is never zero (the floor is at least one millisecond)
/// and never above `cap`. When `cap` is below the floor, `cap` wins.
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exponent = attempt.max(1) - 1;
    let ceiling = 2u32
        .checked_pow(exponent)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(cap, |d| d.min(cap));
    let floor = (base / 2).max(Duration::from_millis(1)).min(cap);
    let ceiling = ceiling.max(floor);
    let lo = duration_nanos(floor);
    let hi = duration_nanos(ceiling);
    Duration::from_nanos(rand::rng().random_range(lo..=hi))
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_floor_and_ceiling() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(600);
        for attempt in 0..=40 {
            let ceiling = if attempt <= 1 {
                base
            } else {
                base.saturating_mul(1u32 << (attempt - 1).min(31)).min(cap)
            };
            for _ in 0..200 {
                let d = backoff_delay(attempt, base, cap);
                assert!(d >= base / 2, "attempt {attempt}: {d:?} below base/2");
                assert!(d <= ceiling, "attempt {attempt}: {d:?} above {ceiling:?}");
                assert!(d <= cap, "attempt {attempt}: {d:?} above cap");
            }
        }
    }

    #[test]
    fn huge_attempt_numbers_hit_the_cap_without_overflow() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(3600);
        let mut max_seen = Duration::ZERO;
        for _ in 0..500 {
            let d = backoff_delay(u32::MAX, base, cap);
            assert!(d >= base / 2 && d <= cap, "{d:?}");
            max_seen = max_seen.max(d);
        }
        // Full jitter over [0.5s, 3600s]: 500 draws all below 1000s is
        // practically impossible, so the ceiling really is the cap.
        assert!(max_seen > Duration::from_secs(1000), "{max_seen:?}");
    }

    #[test]
    fn grows_with_attempts() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(3600);
        let mean = |attempt| {
            (0..400)
                .map(|_| backoff_delay(attempt, base, cap).as_secs_f64())
                .sum::<f64>()
                / 400.0
        };
        let (m1, m5, m10) = (mean(1), mean(5), mean(10));
        assert!(m1 < m5 && m5 < m10, "{m1} {m5} {m10}");
    }

    #[test]
    fn never_zero_even_with_zero_base() {
        for attempt in 0..5 {
            let d = backoff_delay(attempt, Duration::ZERO, Duration::from_secs(1));
            assert!(d >= Duration::from_millis(1), "{d:?}");
            assert!(d <= Duration::from_secs(1), "{d:?}");
        }
    }

    #[test]
    fn cap_below_base_wins() {
        let cap = Duration::from_millis(300);
        for attempt in 0..10 {
            let d = backoff_delay(attempt, Duration::from_secs(10), cap);
            assert_eq!(d, cap, "floor and ceiling both clamp to the cap");
        }
    }
}

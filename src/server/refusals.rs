//! Log lines for refused requests: with the client's address, at most one per reason per
//! second; the next line says how many were refused meanwhile without a line of their own.
//! (`cocreate_webhooks_rejected_total` counts every one.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time between two log lines of one reason.
const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct RefusalLog {
    reasons: Mutex<HashMap<&'static str, Window>>,
}

#[derive(Debug)]
struct Window {
    logged_at: Instant,
    unlogged: u64,
}

impl RefusalLog {
    /// Records one refusal; returns whether it was logged.
    pub fn refused(&self, reason: &'static str, client: Option<SocketAddr>) -> bool {
        let now = Instant::now();
        let unlogged = {
            let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
            match reasons.get_mut(reason) {
                Some(w) if now.duration_since(w.logged_at) < EVERY => {
                    w.unlogged += 1;
                    return false;
                }
                Some(w) => {
                    let unlogged = w.unlogged;
                    *w = Window {
                        logged_at: now,
                        unlogged: 0,
                    };
                    unlogged
                }
                None => {
                    reasons.insert(
                        reason,
                        Window {
                            logged_at: now,
                            unlogged: 0,
                        },
                    );
                    0
                }
            }
        };
        let client = client.map_or_else(|| "unknown".to_owned(), |c| c.ip().to_string());
        tracing::warn!(
            reason,
            %client,
            refused_since_last_line = unlogged,
            "webhook refused"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_second() {
        let log = RefusalLog::default();
        let client = Some("192.0.2.7:4000".parse().expect("addr"));
        assert!(log.refused("bad_token", client));
        for _ in 0..1000 {
            assert!(!log.refused("bad_token", client));
        }
        // Another reason has its own line.
        assert!(log.refused("missing_token", client));
        std::thread::sleep(EVERY);
        assert!(log.refused("bad_token", client));
        let reasons = log.reasons.lock().expect("lock");
        assert_eq!(reasons["bad_token"].unlogged, 0);
    }
}

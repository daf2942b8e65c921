//! Whether GitLab accepts the bot's token right now. The worker marks it refused on a 401 and
//! stops taking events (they stay pending, none is spent); it checks the token again now and
//! then (`GET /user`) and resumes by itself once it works. `/readyz` answers 503 meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared between the worker and `/readyz`; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TokenHealth(Arc<AtomicBool>);

impl TokenHealth {
    /// Records a 401; `true` when the token was accepted until now (log it once).
    pub fn refuse(&self) -> bool {
        let was_refused = self.0.swap(true, Ordering::SeqCst);
        metrics::gauge!("cocreate_gitlab_token_refused").set(1.0);
        !was_refused
    }

    /// Records that the token works; `true` when it was refused until now.
    pub fn accept(&self) -> bool {
        let was_refused = self.0.swap(false, Ordering::SeqCst);
        metrics::gauge!("cocreate_gitlab_token_refused").set(0.0);
        was_refused
    }

    pub fn is_refused(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

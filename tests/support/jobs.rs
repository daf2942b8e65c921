//! Jobs (`nudge`, `score`, `report`, `cca-check`, `reconcile`) run in process against the fake
//! GitLab: the one way test files build a job's [`Context`].

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cocreate::app::{self, GitlabSettings, StartError};
use cocreate::clock::Clock;
use cocreate::gitlab::RetryPolicy;
use cocreate::handlers::Context;
use cocreate::jobs::JobContext;
use cocreate::messages::Messages;
use cocreate::policy::Policies;

use super::fake_gitlab::FakeGitLab;

/// Retries fast enough for tests that inject faults.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(20),
        max_retry_after: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

/// Settings that point at the fake with `token`.
pub fn gitlab_settings(gitlab: &FakeGitLab, token: String) -> GitlabSettings {
    GitlabSettings {
        url: gitlab.url(),
        token: Some(token),
        retry: fast_retries(),
    }
}

/// A fixed clock at an RFC 3339 time.
pub fn at(rfc3339: &str) -> Clock {
    Clock::fixed(
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .with_timezone(&Utc),
    )
}

/// Policies from `(file name, YAML)` pairs, e.g. the embedded ones with one file changed.
pub fn policies(files: &[(&str, &str)]) -> Policies {
    let sources: Vec<(PathBuf, &str)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), *text))
        .collect();
    Policies::from_sources(&sources, "test".into()).expect("policies")
}

/// A live job context against the fake, as `cocreate <job>` builds it, or why it did not start.
pub async fn try_context(
    gitlab: &FakeGitLab,
    token: String,
    policies: Policies,
    clock: Clock,
) -> Result<Context, StartError> {
    app::build_context(
        &gitlab_settings(gitlab, token),
        policies,
        Messages::embedded().expect("templates"),
        clock,
    )
    .await
}

/// A live job context against the fake with its token and the embedded templates (it derefs
/// to the handlers' `Context`).
pub async fn context(gitlab: &FakeGitLab, policies: Policies, clock: Clock) -> JobContext {
    let ctx = try_context(gitlab, gitlab.token(), policies, clock)
        .await
        .expect("context");
    JobContext::new(ctx).expect("a token makes a connected context")
}

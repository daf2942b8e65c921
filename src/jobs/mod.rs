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
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use crate::gitlab::Context as _;
use crate::gitlab::{path_id, ApiIssue, CallCounter, Get, GitlabClient, GitlabError};
use crate::handlers::{Context, Live, Mode};
use crate::policy::Policies;

/// The open tracking issues (`tracking.project`, label `labels.engagement`), all pages; `None`
/// when GitLab says the project is not there (engagement tracking is off, or the bot has no
/// access): the caller says what that leaves undone.
pub async fn open_tracking_issues(
    policies: &Policies,
    client: &GitlabClient,
) -> Result<Option<Vec<ApiIssue>>, GitlabError> {
    let project = &policies.routing.tracking.project;
    let listed = Get::new(format!("projects/{}/issues", path_id(project)))
        .param("state", "opened")
        .param("labels", policies.routing.labels.engagement.clone())
        .all::<ApiIssue>(client)
        .await
        .doing(|| format!("listing the open tracking issues in {project}"));
    match listed {
        Ok(issues) => Ok(Some(issues)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What every scheduled job runs with: a handler context that reaches GitLab — live, or a dry
/// run that reads and writes nothing. An offline context cannot become one, so no job has a
/// "no GitLab" case to report; it reads its context as a [`Context`] (`Deref`) and its GitLab
/// as [`JobContext::live`].
#[derive(Debug, Clone)]
pub struct JobContext {
    ctx: Context,
    /// The `Live` of `ctx.mode` (the same client and fact cache).
    live: Live,
}

/// [`JobContext::new`] was given an offline context (no GitLab token).
#[derive(Debug, thiserror::Error)]
#[error("this job reads GitLab: set GITLAB_TOKEN (add --dry-run to write nothing)")]
pub struct Offline;

impl JobContext {
    /// The job context around `ctx`, when it reaches GitLab.
    pub fn new(ctx: Context) -> Result<Self, Offline> {
        match &ctx.mode {
            Mode::Live(live) | Mode::DryRun(live) => Ok(Self {
                live: live.clone(),
                ctx,
            }),
            Mode::Offline => Err(Offline),
        }
    }

    /// The connected GitLab (reads; writes go through [`Context::executor`]).
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// The same GitLab read, nothing written.
    pub fn dry_run(self) -> Self {
        let mut ctx = self.ctx;
        ctx.mode = ctx.mode.dry_run();
        Self {
            ctx,
            live: self.live,
        }
    }

    /// The handler context inside.
    pub fn context(&self) -> &Context {
        &self.ctx
    }
}

impl Deref for JobContext {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::JobContext;
    use crate::messages::Messages;
    use crate::policy::Policies;

    #[tokio::test]
    async fn an_offline_context_cannot_become_a_job_context() {
        let ctx = crate::app::context_with(
            None,
            Arc::new(Policies::embedded().unwrap()),
            Arc::new(Messages::embedded().unwrap()),
            crate::clock::Clock::system(),
        )
        .await
        .unwrap();
        let err = JobContext::new(ctx).unwrap_err();
        assert!(err.to_string().contains("set GITLAB_TOKEN"), "{err}");
    }
}

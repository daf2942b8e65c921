//! Push Hook: a push to the policy project's branch reloads `serve`'s policies at once, so a
//! merged `agreements.yml` change is in force within seconds (the same commit `cca-check` reads).

use super::{Context, HandleError, Outcome};
use crate::decide::Skip;
use crate::events::Event;
use crate::reload::{LiveConfig, Reloaded};

/// A push that moves the branch the live policies follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPush {
    pub project: String,
    pub after: String,
}

/// `Some` only for a push to the watched project and branch (a branch deletion moves nothing).
pub fn parse(event: &Event, live: Option<&LiveConfig>) -> Option<PolicyPush> {
    let Event::Push(push) = event else {
        return None;
    };
    let (project, branch) = live?.watched_repo()?;
    let same_project = push
        .project
        .path_with_namespace
        .eq_ignore_ascii_case(project)
        || push.project.id.to_string() == project;
    let same_branch = push.git_ref.strip_prefix("refs/heads/") == Some(branch);
    let deleted = push.after.chars().all(|c| c == '0');
    (same_project && same_branch && !deleted).then(|| PolicyPush {
        project: push.project.path_with_namespace.clone(),
        after: push.after.clone(),
    })
}

pub async fn handle(ctx: &Context, push: PolicyPush) -> Result<Outcome, HandleError> {
    let Some(live) = &ctx.live else {
        return Ok(Outcome::Skipped(Skip::NoLivePolicies));
    };
    let why = format!("push to {} ({})", push.project, push.after);
    match live.reload(&why).await? {
        Reloaded::Swapped { .. } => Ok(Outcome::Done {
            writes: 0,
            planned: 0,
        }),
        Reloaded::Unchanged => Ok(Outcome::Skipped(Skip::PoliciesUnchanged)),
        Reloaded::Rejected { version } => Ok(Outcome::Skipped(Skip::PoliciesRejected {
            version: version.to_string(),
        })),
    }
}

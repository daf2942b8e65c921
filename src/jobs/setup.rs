//! `cocreate setup`: create the tool's labels (colors, descriptions) and register its webhook on
//! the watched groups and projects. Idempotent: a second run writes nothing.

use serde::Serialize;

use crate::decide::setup::{
    plan_hook, plan_labels, wanted_labels, ExistingHook, ExistingLabel, Secret,
};
use crate::gitlab::{path_id, ExecuteError, Get, GitlabError};
use crate::handlers::Context;

#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// One line per write (made, or planned in a dry run).
    pub changes: Vec<String>,
    pub api_reads: u64,
    pub api_writes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("setup needs GitLab: set GITLAB_TOKEN (add --dry-run to write nothing)")]
    NoGitlab,
    #[error("routing.yml watches no groups or projects: add `watch.groups` or `watch.projects` so setup knows where to create labels and hooks")]
    NothingWatched,
    #[error("{0} (group webhooks need GitLab Premium; on Free, list the projects under `watch.projects` instead)")]
    GroupHook(GitlabError),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

pub async fn run(
    ctx: &Context,
    webhook_url: Option<&str>,
    secret: Option<Secret>,
) -> Result<SetupReport, SetupError> {
    let live = ctx.gitlab.as_ref().ok_or(SetupError::NoGitlab)?;
    let watch = &ctx.policies.routing.watch;
    let owners: Vec<(String, bool)> = watch
        .groups
        .iter()
        .map(|g| (format!("groups/{}", path_id(g)), true))
        .chain(
            watch
                .projects
                .iter()
                .map(|p| (format!("projects/{}", path_id(p)), false)),
        )
        .collect();
    if owners.is_empty() {
        return Err(SetupError::NothingWatched);
    }
    let spend = super::Spend::start(&live.client);
    let wanted = wanted_labels(&ctx.policies);
    let mut changes = Vec::new();
    for (owner, is_group) in &owners {
        let existing: Vec<ExistingLabel> = Get::new(format!("{owner}/labels"))
            .all(&live.client)
            .await
            .map_err(|e| GitlabError::new(format!("listing labels of {owner}"), e))?;
        let mut actions = plan_labels(owner, &existing, &wanted);
        if let Some(url) = webhook_url {
            let hooks: Vec<ExistingHook> =
                match Get::new(format!("{owner}/hooks")).all(&live.client).await {
                    Ok(h) => h,
                    Err(e) => {
                        let e = GitlabError::new(format!("listing webhooks of {owner}"), e);
                        return Err(if *is_group {
                            SetupError::GroupHook(e)
                        } else {
                            e.into()
                        });
                    }
                };
            actions.extend(plan_hook(owner, &hooks, url, secret.as_ref()));
        }
        ctx.executor.run(Some(&live.client), &actions).await?;
        changes.extend(actions.iter().map(|a| a.summary()));
    }
    let spent = spend.so_far();
    Ok(SetupReport {
        changes,
        api_reads: spent.reads,
        api_writes: spent.writes,
    })
}

//! `setup`: labels, webhooks and issue templates the program needs.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{job_context, JobArgs, WebhookSecretArgs};
use crate::app::ConfigSource;

#[derive(Args, Debug)]
pub(super) struct SetupArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The public URL of `cocreate serve`'s /webhook; without it no webhook is registered.
    #[arg(long, env = "COCREATE_WEBHOOK_URL")]
    webhook_url: Option<String>,

    #[command(flatten)]
    secret: WebhookSecretArgs,

    /// The GitLab project holding the policies (`group/project[@branch]`, default branch when
    /// no `@`): its webhook also sends pushes to that branch, so `serve` reloads them.
    #[arg(long, env = "COCREATE_POLICY_PROJECT", value_name = "PATH[@REF]")]
    policy_project: Option<crate::jobs::setup::PolicyRepo>,
}

pub(super) async fn run(
    args: SetupArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let secret = args
        .secret
        .webhook_secret
        .into_iter()
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .map(crate::decide::setup::Secret);
    if args.webhook_url.is_some() && secret.is_none() {
        bail!("--webhook-url needs a secret: set COCREATE_WEBHOOK_SECRET (GitLab sends it as X-Gitlab-Token)");
    }
    if args.policy_project.is_some() && args.webhook_url.is_none() {
        bail!("--policy-project registers push events on a webhook: set --webhook-url (COCREATE_WEBHOOK_URL) too");
    }
    let dry = args.job.dry_run;
    let policy_repo = match &policies {
        ConfigSource::Gitlab(repo) => Some(repo.clone()),
        _ => None,
    };
    let issue_templates = crate::jobs::setup::issue_templates(&templates)?;
    let ctx = job_context(args.job, policies, templates, "setup").await?;
    let report = crate::jobs::setup::run(
        &ctx,
        crate::jobs::setup::SetupOptions {
            webhook_url: args.webhook_url,
            secret,
            // Policies read from a GitLab project: that project's hook sends its pushes.
            policy_repo: args.policy_project.or(policy_repo),
            templates: issue_templates,
        },
    )
    .await?;
    print!("{}", report.summary(dry));
    Ok(ExitCode::SUCCESS)
}

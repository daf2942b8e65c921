//! `plan`: what the bot would do for one webhook payload, from the payload alone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use crate::app::{self, ConfigSource};
use crate::jobs::plan;

#[derive(Args, Debug)]
pub(super) struct PlanArgs {
    /// A webhook body (JSON), as GitLab sends it.
    #[arg(long)]
    event: PathBuf,

    /// The X-Gitlab-Event header value; inferred from `object_kind` when omitted.
    #[arg(long)]
    event_type: Option<String>,

    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(
    args: PlanArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(&args.event)
        .with_context(|| format!("cannot read {}", args.event.display()))?;
    let event_type = match args.event_type {
        Some(k) => k,
        None => plan::event_type(&body)
            .map_err(|e| match e {
                plan::PlanError::NotJson(e) => {
                    anyhow::Error::new(e).context(format!("{} is not JSON", args.event.display()))
                }
                other => other.into(),
            })?
            .to_owned(),
    };
    let policies =
        app::load_policies(&policies).map_err(|e| anyhow::anyhow!("policies are invalid:\n{e}"))?;
    let messages = app::load_messages(&templates)?;
    // The jobs' context builder without a GitLab client: offline, payload facts only.
    let ctx = app::context_with(
        None,
        Arc::new(policies),
        Arc::new(messages),
        crate::clock::Clock::system(),
    )
    .await?;
    let planned = plan::run(&ctx, &event_type, &body)?;
    print!("{}", plan::render(&planned, args.json)?);
    Ok(ExitCode::SUCCESS)
}

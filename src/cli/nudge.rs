//! `nudge`: review-SLO pings, escalations and author reminders.

use std::process::ExitCode;

use clap::Args;

use super::{job_context, JobArgs};
use crate::app::ConfigSource;

#[derive(Args, Debug)]
pub(super) struct NudgeArgs {
    #[command(flatten)]
    job: JobArgs,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(
    args: NudgeArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let dry = args.job.dry_run;
    let ctx = job_context(args.job, policies, templates, "nudge").await?;
    let report = crate::jobs::nudge::run(&ctx).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary(dry));
    }
    Ok(
        if report.errors.is_empty() && report.stalls.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

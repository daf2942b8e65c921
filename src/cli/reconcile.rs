//! `reconcile`: re-applies the routing rules to open MRs (repairs missed events).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{job_context, JobArgs};
use crate::app::ConfigSource;

#[derive(Args, Debug)]
pub(super) struct ReconcileArgs {
    #[command(flatten)]
    job: JobArgs,

    /// How far back to look, e.g. `2h`, `1d`, `90m`.
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    since: Duration,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(
    args: ReconcileArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let ctx = job_context(args.job, policies, templates, "reconcile").await?;
    let report = crate::jobs::reconcile::run(&ctx, args.since).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

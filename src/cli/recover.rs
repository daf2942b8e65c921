//! `recover`: webhook deliveries GitLab failed to make, stored into serve's queue.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{job_context, JobArgs, JobOutput, SigningKeyArgs};
use crate::app::ConfigSource;
use crate::jobs::recover::{self, RecoverOptions};

#[derive(Args, Debug)]
pub(super) struct RecoverArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The URL `setup` registered (serve's public /webhook): it identifies our hooks.
    #[arg(long, env = "COCREATE_WEBHOOK_URL")]
    webhook_url: String,

    /// serve's data directory (its queue, and the job's cursor), unless --queue names the
    /// PostgreSQL queue.
    #[arg(long, env = "COCREATE_DATA", default_value = "./data")]
    data: PathBuf,

    #[command(flatten)]
    queue: crate::ops::QueueUrlArg,

    /// Look this far back (e.g. `2h`, `1d`) instead of from the last run's cursor.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,

    /// Handle the recovered events here and now (when no serve works on this queue).
    #[arg(long)]
    process: bool,

    #[command(flatten)]
    signing: SigningKeyArgs,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// Write a JUnit XML report (one test case per hook).
    #[arg(long)]
    junit: Option<PathBuf>,
}

/// Runs, writes the JUnit file, prints JSON or the summary; exit 1 when a hook is disabled or
/// the run had problems.
pub(super) async fn run(
    args: RecoverArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let opts = RecoverOptions {
        webhook_url: args.webhook_url,
        data_dir: args.data,
        queue_url: args.queue.url,
        since: args.since,
        signed: args.signing.any(),
        process: args.process,
        dry_run: args.job.dry_run,
        mr_sweep: true,
        window: None,
    };
    let ctx = job_context(args.job, policies, templates, "recover").await?;
    let report = recover::run(&ctx, &opts).await?;
    let out = JobOutput {
        command: "recover",
        json: args.json,
        junit: args.junit.as_deref(),
    };
    out.finish(
        &report,
        recover::junit,
        recover::summary,
        &report.disabled,
        report.failed(),
    )
}

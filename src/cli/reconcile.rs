//! `reconcile`: first `recover` (deliveries GitLab failed to make), then re-applies the routing
//! rules to open MRs (repairs missed events).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{job_context, JobArgs, JobOutput, SigningKeyArgs};
use crate::app::ConfigSource;
use crate::jobs::reconcile::{self, ReconcileOptions};
use crate::jobs::recover::RecoverOptions;

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

    /// Write a JUnit XML report (one test case per MR, then one per hook of the recover step).
    #[arg(long)]
    junit: Option<PathBuf>,

    /// The URL `setup` registered (serve's public /webhook): with it, reconcile first runs
    /// `recover` (see `cocreate recover --help`); without it that step is skipped.
    #[arg(long, env = "COCREATE_WEBHOOK_URL")]
    webhook_url: Option<String>,

    /// serve's data directory: the recover step's queue and cursor, unless --queue names the
    /// PostgreSQL queue.
    #[arg(long, env = "COCREATE_DATA", default_value = "./data")]
    data: PathBuf,

    #[command(flatten)]
    queue: crate::ops::QueueUrlArg,

    /// Handle the recovered events here and now (when no serve works on this queue).
    #[arg(long)]
    process: bool,

    #[command(flatten)]
    signing: SigningKeyArgs,
}

/// Runs, writes the JUnit file, prints JSON or the summary; exit 1 on problems.
pub(super) async fn run(
    args: ReconcileArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let opts = ReconcileOptions {
        since: args.since,
        recover: args.webhook_url.map(|url| RecoverOptions {
            webhook_url: url,
            data_dir: args.data,
            queue_url: args.queue.url,
            since: None,
            signed: args.signing.any(),
            process: args.process,
            dry_run: args.job.dry_run,
            mr_sweep: false,
            window: None,
        }),
    };
    let ctx = job_context(args.job, policies, templates, "reconcile").await?;
    let run = reconcile::run_all(&ctx, &opts).await?;
    let problems = run.problems();
    let out = JobOutput {
        command: "reconcile",
        json: args.json,
        junit: args.junit.as_deref(),
    };
    out.finish(
        &run,
        reconcile::junit,
        reconcile::summary,
        &problems,
        !problems.is_empty(),
    )
}

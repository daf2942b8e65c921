//! `recover`: webhook deliveries GitLab failed to make, stored into serve's queue.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{job_context, JobArgs, SigningKeyArgs};
use crate::app::ConfigSource;
use crate::jobs::recover::{self, RecoverOptions};

#[derive(Args, Debug)]
pub(super) struct RecoverArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The URL `setup` registered (serve's public /webhook): it identifies our hooks.
    #[arg(long, env = "COCREATE_WEBHOOK_URL")]
    webhook_url: String,

    /// serve's data directory (its queue, and the job's cursor).
    #[arg(long, env = "COCREATE_DATA", default_value = "./data")]
    data: PathBuf,

    /// Look this far back (e.g. `2h`, `1d`) instead of from the last run's cursor.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,

    /// Handle the recovered events here and now (no serve running on this data directory).
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
        since: args.since,
        signed: args.signing.any(),
        process: args.process,
        dry_run: args.job.dry_run,
        mr_sweep: true,
        window: None,
    };
    let ctx = job_context(args.job, policies, templates, "recover").await?;
    let report = recover::run(&ctx, &opts).await?;
    if let Some(path) = &args.junit {
        std::fs::write(path, recover::junit(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", recover::summary(&report));
    }
    if !report.disabled.is_empty() {
        eprintln!("recover: {}", report.disabled.join("; "));
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

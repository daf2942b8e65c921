//! `cca-check`: agreement status of open Co-Create MRs, as a summary, JSON or JUnit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{job_context, JobArgs};
use crate::app::ConfigSource;

#[derive(Args, Debug)]
pub(super) struct CcaCheckArgs {
    #[command(flatten)]
    job: JobArgs,

    /// Write a JUnit XML report (one test case per MR) for `artifacts:reports:junit`.
    #[arg(long)]
    junit: Option<PathBuf>,

    /// Write a Markdown summary.
    #[arg(long)]
    summary: Option<PathBuf>,

    /// Print the report as JSON on stdout (default: the Markdown summary).
    #[arg(long)]
    json: bool,

    /// Exit with code 1 when any MR's organization has no valid CCA.
    #[arg(long)]
    fail_on_missing: bool,
}

pub(super) async fn run(
    args: CcaCheckArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use crate::jobs::cca_check;
    let ctx = job_context(args.job, policies, templates, "cca-check").await?;
    let report = cca_check::run(&ctx).await?;
    if let Some(path) = &args.junit {
        std::fs::write(path, cca_check::junit(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let summary = cca_check::summary(&report);
    if let Some(path) = &args.summary {
        std::fs::write(path, &summary)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{summary}");
    }
    Ok(if args.fail_on_missing && report.failures() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

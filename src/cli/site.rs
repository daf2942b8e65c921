//! `site`: the program's static pages for GitLab Pages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{job_context, JobArgs};
use crate::app::ConfigSource;

#[derive(Args, Debug)]
pub(super) struct SiteArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The directory to write the site to (created when missing).
    #[arg(long, default_value = "public")]
    out: PathBuf,

    /// Also build the program dashboard and the per-organization pages. They hold customer
    /// data: publish them only behind GitLab Pages access control (project members).
    #[arg(long)]
    internal: bool,

    /// Fiscal quarter of the dashboard, e.g. FY26Q1 (default: the current one).
    #[arg(long)]
    quarter: Option<String>,
}

pub(super) async fn run(
    args: SiteArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use crate::jobs::{report::Quarter, site};
    let ctx = job_context(args.job, policies, templates, "site").await?;
    let quarter = match &args.quarter {
        Some(q) => Quarter::parse(q)?,
        None => Quarter::containing(
            ctx.clock.today(),
            ctx.policies.segmentation.fiscal_year_start_month,
        ),
    };
    let built = site::run(&ctx, quarter, args.internal).await?;
    built.write(&args.out)?;
    print!("{}", built.summary(&args.out, args.internal));
    Ok(ExitCode::SUCCESS)
}

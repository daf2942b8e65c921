//! `report`: the program report (quarter, dashboard).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

use super::{job_context, JobArgs};
use crate::app::ConfigSource;

#[derive(Args, Debug)]
pub(super) struct ReportArgs {
    #[command(flatten)]
    job: JobArgs,

    /// Fiscal quarter, e.g. FY26Q1 (default: the current one).
    #[arg(long)]
    quarter: Option<String>,

    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,

    /// Write the Markdown (or JSON with --json) to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,

    /// Also write the JSON to this file (for artifacts).
    #[arg(long)]
    json_out: Option<PathBuf>,

    /// Create or update the quarter's dashboard issue in the tracking project.
    #[arg(long)]
    publish: bool,

    /// The account export of `score` (CSV): its `arr` column gives the influenced ARR of the
    /// quarter's contributing customers.
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,

    /// Print one organization's page for a business review (its slug) instead of the report.
    #[arg(long, value_name = "SLUG")]
    org: Option<String>,
}

pub(super) async fn run(
    args: ReportArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use crate::jobs::report;
    let arr = match &args.accounts {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let arr = crate::jobs::score::parse_arr(&text)
                .with_context(|| format!("cannot read the ARR of {}", path.display()))?;
            if arr.is_none() {
                bail!("{} has no `arr` column", path.display());
            }
            arr
        }
        None => None,
    };
    let ctx = job_context(args.job, policies, templates, "report").await?;
    let quarter = match &args.quarter {
        Some(q) => report::Quarter::parse(q)?,
        None => report::Quarter::containing(
            ctx.clock.today(),
            ctx.policies.segmentation.fiscal_year_start_month,
        ),
    };
    let mut result = report::run_with(&ctx, quarter, arr).await?;
    if args.publish {
        result.dashboard = Some(report::publish(&ctx, &result).await?);
    }
    let json = serde_json::to_string_pretty(&result)? + "\n";
    let output = match (&args.org, args.json) {
        (Some(slug), _) => match report::org_page(&result, slug) {
            Some(page) => page,
            None => bail!(
                "`{slug}` has no line in the report: use an organization slug from organizations.yml or a `Co-Create org::` label"
            ),
        },
        (None, true) => json.clone(),
        (None, false) => report::markdown(&result),
    };
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    match &args.out {
        Some(path) => std::fs::write(path, &output)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{output}"),
    }
    Ok(ExitCode::SUCCESS)
}

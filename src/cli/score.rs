//! `score`: prospect scoring of an account list, as Markdown, CSV or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use super::{job_context, JobArgs};
use crate::app::{self, ConfigSource};

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(super) enum ScoreFormat {
    Markdown,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub(super) struct ScoreArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The account export (CSV; columns in the README).
    #[arg(long)]
    accounts: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ScoreFormat::Markdown)]
    format: ScoreFormat,

    /// Write the output to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,

    /// Score the valid rows even when some rows are bad (they are listed).
    #[arg(long)]
    skip_bad_rows: bool,

    /// Do not read GitLab: issue/MR counts come from the CSV's `issues_mrs` column.
    #[arg(long)]
    offline: bool,

    /// Plan `stage::prospect` tracking issues for the top N organizations that have none.
    /// A dry run unless --yes is given.
    #[arg(long, value_name = "N")]
    open_prospects: Option<usize>,

    /// With --open-prospects: really open the issues.
    #[arg(long)]
    yes: bool,
}

pub(super) async fn run(
    args: ScoreArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use crate::jobs::score;
    let text = std::fs::read_to_string(&args.accounts)
        .with_context(|| format!("cannot read {}", args.accounts.display()))?;
    if args.open_prospects.is_some() && args.offline {
        bail!("--open-prospects needs GitLab: drop --offline");
    }
    let mut ctx = None;
    let report = if args.offline {
        let policies = app::load_policies(&policies)
            .map_err(|e| anyhow::anyhow!("policies are invalid:\n{e}"))?;
        score::run(&policies, None, &text, args.skip_bad_rows).await
    } else {
        let c = ctx
            .insert(job_context(args.job, policies, templates, "score (or pass --offline)").await?);
        score::run(&c.policies, Some(c.live()), &text, args.skip_bad_rows).await
    }
    .with_context(|| format!("cannot score {}", args.accounts.display()))?;
    if let (Some(n), Some(ctx)) = (args.open_prospects, ctx.take()) {
        let ctx = if args.yes { ctx } else { ctx.dry_run() };
        let opened = score::open_prospects(&ctx, &report, n).await?;
        eprint!("{}", score::prospects_text(&opened, args.yes));
    }
    let output = match args.format {
        ScoreFormat::Markdown => score::markdown(&report),
        ScoreFormat::Csv => score::to_csv(&report)?,
        ScoreFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    match &args.out {
        Some(path) => std::fs::write(path, &output)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{output}"),
    }
    Ok(ExitCode::SUCCESS)
}

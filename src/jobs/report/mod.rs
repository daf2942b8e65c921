//! `cocreate report --quarter FY26Q1`: the action plan's success metrics for one fiscal quarter,
//! against the targets of `segmentation.yml`, as of the quarter's end.
//!
//! - [`quarter`]: fiscal quarters and their bounds;
//! - [`gather`]: the facts, read from GitLab's history through the outermost watched scopes,
//!   each item once;
//! - [`crate::decide::metrics`]: the numbers, a pure function of the facts and the quarter
//!   (every definition and its boundary rule is documented there and in the README);
//! - [`markdown`]: the Markdown with Mermaid charts (JSON is the [`Report`] itself);
//! - [`dashboard`]: the quarter's dashboard issue (`--publish`).

pub mod dashboard;
pub mod gather;
pub mod markdown;
pub mod org_page;
pub mod quarter;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

pub use crate::decide::metrics::{
    at_midnight, compute, mean, median, Engagement, Facts, FirstResponse, Metrics, OrgLine,
    OtherEngagement, ResponseTimes, Window,
};
pub use dashboard::{dashboard_actions, marker, publish};
pub use gather::gather;
pub use markdown::{distribution, markdown, markdown_body};
pub use org_page::org_page;
pub use quarter::Quarter;

use crate::gitlab::{ExecuteError, GitlabError};
use crate::jobs::JobContext;
use crate::policy::Targets;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("`{0}` is not a fiscal quarter like FY26Q1 or FY2026Q3")]
    BadQuarter(String),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

/// What `--publish` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    /// `created`, `updated` or `unchanged` (`would create`/`would update` in a dry run).
    pub outcome: String,
    pub issue: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub quarter: String,
    pub start: NaiveDate,
    /// The day after the quarter's last day.
    pub end: NaiveDate,
    /// The instant every number is taken at: the quarter's end, or now while it runs.
    pub as_of: DateTime<Utc>,
    pub targets: Targets,
    pub metrics: Metrics,
    /// Metrics this run cannot measure, and why.
    pub not_measured: Vec<String>,
    pub api_reads: u64,
    pub api_writes: u64,
    pub elapsed_ms: u128,
    pub dashboard: Option<Dashboard>,
}

/// What this run cannot measure: influenced ARR needs an account export with `arr`.
pub fn not_measured(arr: Option<&BTreeMap<String, f64>>) -> Vec<String> {
    match arr {
        Some(_) => Vec::new(),
        None => vec![
            "influenced ARR: pass --accounts FILE (the account export of `score`) with an `arr` column"
                .to_owned(),
        ],
    }
}

/// Gathers the facts and computes the quarter's report.
pub async fn run(ctx: &JobContext, quarter: Quarter) -> Result<Report, ReportError> {
    run_with(ctx, quarter, None).await
}

/// [`run`], with the ARR of each organization (by slug) for the influenced ARR.
pub async fn run_with(
    ctx: &JobContext,
    quarter: Quarter,
    arr: Option<BTreeMap<String, f64>>,
) -> Result<Report, ReportError> {
    Ok(run_with_facts(ctx, quarter, arr).await?.0)
}

/// [`run_with`], also returning the facts it was computed from (for `cocreate site`, which
/// shows the same numbers and more of the same facts).
pub async fn run_with_facts(
    ctx: &JobContext,
    quarter: Quarter,
    arr: Option<BTreeMap<String, f64>>,
) -> Result<(Report, Facts), ReportError> {
    let live = ctx.live();
    let spend = super::Spend::start(&live.client);
    let seg = &ctx.policies.segmentation;
    let (start, end) = quarter.bounds(seg.fiscal_year_start_month);
    let window = Window::new(start, end, ctx.clock.now());
    let mut facts = gather(live, &ctx.policies, &ctx.bot_username, &window).await?;
    let not_measured = not_measured(arr.as_ref());
    facts.arr = arr;
    let metrics = compute(&facts, &window);
    let spent = spend.so_far();
    let report = Report {
        quarter: quarter.label(),
        start,
        end,
        as_of: window.as_of,
        targets: seg.targets.clone(),
        metrics,
        not_measured,
        api_reads: spent.reads,
        api_writes: spent.writes,
        elapsed_ms: spent.elapsed_ms,
        dashboard: None,
    };
    Ok((report, facts))
}

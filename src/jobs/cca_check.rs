//! `cocreate cca-check`: is a valid Corporate Contributor Agreement on file for every open
//! Co-Create MR's organization? Labels, `cocreate/cca` statuses and notes follow the answer.
//!
//! Then the engagements: the CLA managers' worklist ([`super::cca_engagements`]).
//!
//! Cost: the pages of the open-MR list (100 per page) plus, per MR whose state changes, one read
//! of its notes (only when a note may be due) and its writes. An MR already in its wanted state
//! costs nothing beyond its share of a page.

use serde::Serialize;

use super::cca_engagements::EngagementCheck;
use super::{Progress, Spend};
use crate::decide::{
    cca_actions, cca_state, plan_cca, recognize, CcaMrFacts, CcaNeed, CcaState, Step,
};
use crate::domain::{MrRef, OrgSlug};
use crate::gitlab::{ApiMergeRequest, ExecuteError, GitlabError};
use crate::handlers::{Context, Live};
use crate::jobs::JobContext;
use crate::messages::TemplateError;

/// One MR's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct MrCheck {
    pub mr: MrRef,
    pub title: String,
    pub org: Option<OrgSlug>,
    pub state: Option<CcaState>,
    /// Writes made (or, in a dry run, planned).
    pub changes: Vec<String>,
    pub error: Option<String>,
}

impl MrCheck {
    /// Fails the JUnit test case: no valid CCA, or the MR could not be checked.
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.state.as_ref().is_some_and(|s| !s.is_valid())
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct CcaReport {
    pub checked: Vec<MrCheck>,
    /// The open tracking issues: the CLA managers' worklist.
    pub engagements: Vec<EngagementCheck>,
    pub dry_run: bool,
    pub api_reads: u64,
    pub api_writes: u64,
    pub elapsed_ms: u128,
}

impl CcaReport {
    pub fn count(&self, name: &str) -> usize {
        self.checked
            .iter()
            .filter(|c| c.state.as_ref().is_some_and(|s| s.name() == name))
            .count()
    }

    pub fn failures(&self) -> usize {
        self.checked.iter().filter(|c| c.failed()).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CcaCheckError {
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
}

/// Runs the check over every open Co-Create MR in the watched scope.
pub async fn run(ctx: &JobContext) -> Result<CcaReport, CcaCheckError> {
    let live = ctx.live();
    let spend = Spend::start(&live.client);
    let mrs = live
        .facts
        .open_cocreate_mrs(&live.client, &ctx.policies)
        .await?;
    let mut progress = Progress::new("cca-check", mrs.len());
    let mut checked = Vec::with_capacity(mrs.len());
    for (mr_ref, mr) in &mrs {
        let result = check_one(ctx, live, *mr_ref, mr).await;
        checked.push(match result {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(mr = %mr_ref, error = %e, "cca-check could not update this MR; the next run retries");
                MrCheck {
                    mr: *mr_ref,
                    title: mr.title.clone(),
                    org: None,
                    state: None,
                    changes: vec![],
                    error: Some(e.to_string()),
                }
            }
        });
        progress.tick();
    }
    let mut open_mrs = std::collections::BTreeMap::new();
    for org in checked.iter().filter_map(|c| c.org.clone()) {
        *open_mrs.entry(org).or_insert(0) += 1;
    }
    let engagements = super::cca_engagements::run(ctx, live, &open_mrs).await?;
    let spent = spend.so_far();
    Ok(CcaReport {
        checked,
        engagements,
        dry_run: ctx.mode.is_dry_run(),
        api_reads: spent.reads,
        api_writes: spent.writes,
        elapsed_ms: spent.elapsed_ms,
    })
}

#[derive(Debug, thiserror::Error)]
enum OneError {
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

async fn check_one(
    ctx: &Context,
    live: &Live,
    mr_ref: MrRef,
    mr: &ApiMergeRequest,
) -> Result<MrCheck, OneError> {
    let labels = &ctx.policies.routing.labels;
    // The organization label is on the MR already (no user read); else recognise the author.
    let org = match ctx
        .policies
        .organizations
        .all()
        .iter()
        .find(|o| mr.labels.contains(&labels.org(&o.slug)))
    {
        Some(o) => Some(o.slug.clone()),
        None => {
            let author = live
                .facts
                .user(&live.client, mr.author.id, &ctx.policies)
                .await?;
            recognize(&author, &ctx.policies.organizations).map(|r| r.slug)
        }
    };
    let Some(org) = org else {
        return Ok(MrCheck {
            mr: mr_ref,
            title: mr.title.clone(),
            org: None,
            state: None,
            changes: vec![],
            error: None,
        });
    };
    let state = cca_state(&org, &ctx.policies.agreements, ctx.clock.today());
    let mut facts = CcaMrFacts {
        mr: mr_ref,
        head_sha: mr.sha.as_deref(),
        labels: &mr.labels,
        head_status: None,
        markers: None,
    };
    let guard = ctx.locks.lock(org.as_str()).await;
    let markers;
    let plan = match plan_cca(&facts, &state, labels) {
        Step::Act(plan) => plan,
        Step::Need(CcaNeed::BotMarkers) => {
            markers = live.facts.bot_markers(&live.client, mr_ref).await?;
            facts.markers = Some(&markers);
            // Given the markers, the plan acts.
            plan_cca(&facts, &state, labels).act().unwrap_or_default()
        }
    };
    let actions = cca_actions(
        &facts,
        &plan,
        &state,
        &mr.author.username,
        &ctx.policies,
        &ctx.messages,
    )?;
    ctx.execute(Some(&guard), Some(&live.client), &actions)
        .await?;
    Ok(MrCheck {
        mr: mr_ref,
        title: mr.title.clone(),
        org: Some(org),
        state: Some(state),
        changes: actions.iter().map(|a| a.summary()).collect(),
        error: None,
    })
}

/// JUnit XML for `artifacts:reports:junit`: one test case per MR, failed without a valid CCA;
/// then one per engaged organization, failed while it is on the CLA managers' worklist.
pub fn junit(report: &CcaReport) -> Result<String, quick_junit::SerializeError> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("cca-check");
    for c in &report.checked {
        let name = format!("{} {}", c.mr, c.title);
        let status = if c.failed() {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let message = match (&c.error, &c.state) {
                (Some(e), _) => format!("could not be checked: {e}"),
                (None, Some(state)) => state.status_description(),
                (None, None) => String::new(),
            };
            s.set_message(message);
            s
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new(name, status);
        case.set_classname(
            c.org
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_else(|| "unrecognised".into()),
        );
        suite.add_test_case(case);
    }
    let mut worklist = TestSuite::new("cca-check engagements");
    for e in report.engagements.iter().filter(|e| e.engaged) {
        let status = if e.listed {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(match &e.error {
                Some(err) => format!("could not be checked: {err}"),
                None => format!(
                    "agreement {}: on the CLA managers' worklist",
                    e.state.name()
                ),
            });
            s
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new(format!("{} {}", e.org, e.issue), status);
        case.set_classname(e.org.to_string());
        worklist.add_test_case(case);
    }
    let mut r = Report::new("cocreate");
    r.add_test_suite(suite);
    r.add_test_suite(worklist);
    r.to_string()
}

/// A Markdown summary for the pipeline page or an artifact.
pub fn summary(report: &CcaReport) -> String {
    let mut out = String::from("# CCA check\n\n");
    if report.dry_run {
        out.push_str("_Dry run: nothing was written._\n\n");
    }
    out.push_str("| state | MRs |\n|---|---|\n");
    for name in ["signed", "expiring", "missing", "expired"] {
        out.push_str(&format!("| {name} | {} |\n", report.count(name)));
    }
    let errors = report.checked.iter().filter(|c| c.error.is_some()).count();
    out.push_str(&format!("| could not be checked | {errors} |\n\n"));
    let flagged: Vec<&MrCheck> = report.checked.iter().filter(|c| c.failed()).collect();
    if !flagged.is_empty() {
        out.push_str("## Without a valid CCA\n\n| MR | organization | state |\n|---|---|---|\n");
        for c in flagged {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                c.mr,
                c.org.as_ref().map(|o| o.as_str()).unwrap_or("?"),
                c.state.as_ref().map(|s| s.name()).unwrap_or("error"),
            ));
        }
        out.push('\n');
    }
    let worklist: Vec<&EngagementCheck> = report.engagements.iter().filter(|e| e.listed).collect();
    if !worklist.is_empty() {
        out.push_str(
            "## CLA managers' worklist: engagements without a valid CCA

| organization | tracking issue | stage | open Co-Create MRs | agreement |
|---|---|---|---|---|
",
        );
        for e in worklist {
            let state = match (&e.error, &e.state) {
                (Some(_), _) => "could not be checked".to_string(),
                (None, CcaState::Expired { on }) => format!("expired {on}"),
                (
                    None,
                    CcaState::Signed {
                        expires: Some(d), ..
                    },
                ) => format!("expiring {d}"),
                (None, s) => s.name().to_string(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {state} |\n",
                e.org,
                e.issue,
                e.stage.map(|s| s.name()).unwrap_or("—"),
                e.open_mrs,
            ));
        }
        out.push('\n');
    }
    let changed = report
        .checked
        .iter()
        .filter(|c| !c.changes.is_empty())
        .count();
    out.push_str(&format!(
        "{} MRs checked, {changed} changed; {} API reads, {} writes, {} ms.\n",
        report.checked.len(),
        report.api_reads,
        report.api_writes,
        report.elapsed_ms
    ));
    out
}

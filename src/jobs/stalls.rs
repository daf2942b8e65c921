//! `cocreate nudge`, second walk: the open tracking issues. An engagement unchanged at
//! `contacted` or `meeting` (or `aligned` without onboarding) past the policy's business days
//! gets one note (rules: [`crate::decide::stall`]).
//!
//! Cost: the pages of the open tracking-issue list, one label-history read per issue at one of
//! those three stages, and one notes read per issue whose note is due (were we there already?).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decide::engagement::{parse_intake, IssueRef};
use crate::decide::funnel::Stage;
use crate::decide::stall::{decide_stall, StallFacts, StallNeed, StallOutcome};
use crate::decide::Step;
use crate::gitlab::Context as _;
use crate::gitlab::{path_id, ApiIssue, ExecuteError, Get, GitlabError};
use crate::handlers::{Context, Live};
use crate::messages::TemplateError;

#[derive(Debug, Clone, Serialize)]
pub struct Stalled {
    pub issue: IssueRef,
    pub outcome: StallOutcome,
    pub changes: Vec<String>,
}

/// What the walk over the tracking issues found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StallReport {
    pub engagements: Vec<Stalled>,
    pub errors: Vec<(IssueRef, String)>,
}

impl StallReport {
    pub fn stalled(&self) -> usize {
        self.engagements
            .iter()
            .filter(|s| s.outcome.stalled.is_some())
            .count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StallError {
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error("the stall rule still needs {0:?} after it was read")]
    StillNeeds(StallNeed),
}

#[derive(Deserialize)]
struct ApiLabelEvent {
    created_at: DateTime<Utc>,
    #[serde(default)]
    label: Option<ApiLabelName>,
    action: String,
}

#[derive(Deserialize)]
struct ApiLabelName {
    name: String,
}

/// Walks the open tracking issues. A missing tracking project is logged and walks nothing
/// (engagement tracking is off); any other listing error fails the run.
pub async fn run(ctx: &Context, live: &Live) -> Result<StallReport, GitlabError> {
    let c = &live.client;
    let policies = &ctx.policies;
    let project = &policies.routing.tracking.project;
    let Some(issues) = super::open_tracking_issues(policies, c).await? else {
        tracing::error!(%project, "tracking project not found: stalled engagements are not checked; fix `tracking.project` in routing.yml or give the bot access");
        return Ok(StallReport::default());
    };
    let mut report = StallReport::default();
    let now = ctx.clock.now();
    for issue in &issues {
        let at = IssueRef {
            project: project.clone(),
            iid: issue.iid,
        };
        match one(ctx, live, issue, &at, now).await {
            Ok(s) => report.engagements.push(s),
            Err(e) => {
                tracing::warn!(issue = %at, error = %e, "nudge could not check this engagement; the next run retries");
                report.errors.push((at, e.to_string()));
            }
        }
    }
    Ok(report)
}

async fn one(
    ctx: &Context,
    live: &Live,
    issue: &ApiIssue,
    at: &IssueRef,
    now: DateTime<Utc>,
) -> Result<Stalled, StallError> {
    let c = &live.client;
    let labels = &ctx.policies.routing.labels;
    let stage_label = issue
        .labels
        .iter()
        .find(|l| l.starts_with(&labels.stage_prefix));
    let stage = stage_label
        .and_then(|l| l.strip_prefix(&labels.stage_prefix))
        .and_then(Stage::parse);
    let created = issue.created_at.unwrap_or(now);
    // The label history only where a stall is possible.
    let since = match (stage, stage_label) {
        (Some(Stage::Contacted | Stage::Meeting | Stage::Aligned), Some(label)) => {
            let events: Vec<ApiLabelEvent> = Get::new(format!(
                "projects/{}/issues/{}/resource_label_events",
                path_id(&at.project),
                at.iid
            ))
            .all(c)
            .await
            .doing(|| format!("reading the label history of {at}"))?;
            events
                .iter()
                .filter(|e| e.action == "add")
                .filter(|e| e.label.as_ref().is_some_and(|n| &n.name == label))
                .map(|e| e.created_at)
                .max()
                .unwrap_or(created)
        }
        _ => created,
    };
    let intake = parse_intake(issue.description.as_deref().unwrap_or(""));
    let org_csm = crate::decide::org_from_labels(&issue.labels, &labels.org_prefix)
        .and_then(|slug| {
            ctx.policies
                .organizations
                .all()
                .iter()
                .find(|o| o.slug.as_str() == slug)
        })
        .and_then(|o| o.account_team.csm.clone());
    let csm = intake
        .csm
        .map(|c| c.trim().trim_start_matches('@').to_owned())
        .or(org_csm);
    let assignees: Vec<String> = issue.assignees.iter().map(|a| a.username.clone()).collect();
    let mut facts = StallFacts {
        issue: at.clone(),
        stage,
        since,
        csm: csm.as_deref(),
        assignees: &assignees,
        markers: None,
        now,
    };
    let markers;
    let (outcome, actions) = match decide_stall(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(decided) => decided,
        Step::Need(StallNeed::Markers) => {
            markers = live.facts.issue_markers(c, at).await?;
            facts.markers = Some(&markers);
            match decide_stall(&facts, &ctx.policies, &ctx.messages)? {
                Step::Act(decided) => decided,
                Step::Need(need) => return Err(StallError::StillNeeds(need)),
            }
        }
    };
    ctx.executor().run(Some(c), &actions).await?;
    Ok(Stalled {
        issue: at.clone(),
        outcome,
        changes: actions.iter().map(|a| a.summary()).collect(),
    })
}

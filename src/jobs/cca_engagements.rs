//! `cocreate cca-check`, second walk: the engagements. Every open tracking issue whose
//! organization is engaged (at `aligned` or later, or with open Co-Create MRs) and whose
//! agreement is missing, expired or expiring soon is on the CLA managers' worklist and gets one
//! note per state (rules: [`crate::decide::cca_worklist`]).
//!
//! Cost: the pages of the open tracking-issue list, and one notes read per listed engagement
//! (was its note written already?). The open MRs come from the MR walk.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::cca_worklist::{decide_worklist, engaged, WorklistFacts, WorklistNeed};
use crate::decide::engagement::IssueRef;
use crate::decide::funnel::Stage;
use crate::decide::{cca_state, CcaState, Step};
use crate::domain::OrgSlug;
use crate::gitlab::{ExecuteError, GitlabError};
use crate::handlers::{Context, Live};
use crate::messages::TemplateError;

/// One engagement's agreement, as the CLA managers see it.
#[derive(Debug, Clone, Serialize)]
pub struct EngagementCheck {
    pub issue: IssueRef,
    pub org: OrgSlug,
    pub stage: Option<Stage>,
    pub open_mrs: usize,
    /// At `aligned` or later, or with open Co-Create MRs: its agreement matters now.
    pub engaged: bool,
    pub state: CcaState,
    /// On the worklist (engaged, and the agreement missing, expired or expiring soon).
    pub listed: bool,
    pub changes: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum OneError {
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error("the worklist rule still needs {0:?} after it was read")]
    StillNeeds(WorklistNeed),
}

/// Walks the open tracking issues of known organizations. `open_mrs`: open Co-Create MRs per
/// organization. A missing tracking project is logged and walks nothing.
pub async fn run(
    ctx: &Context,
    live: &Live,
    open_mrs: &BTreeMap<OrgSlug, usize>,
) -> Result<Vec<EngagementCheck>, GitlabError> {
    let c = &live.client;
    let policies = &ctx.policies;
    let labels = &policies.routing.labels;
    let project = &policies.routing.tracking.project;
    let Some(issues) = super::open_tracking_issues(policies, c).await? else {
        tracing::error!(%project, "tracking project not found: the CLA managers' worklist is empty; fix `tracking.project` in routing.yml or give the bot access");
        return Ok(vec![]);
    };
    let today = ctx.clock.today();
    let mut out = Vec::new();
    for issue in &issues {
        let Some(org) = policies
            .organizations
            .all()
            .iter()
            .find(|o| issue.labels.contains(&labels.org(&o.slug)))
        else {
            continue;
        };
        let at = IssueRef {
            project: project.clone(),
            iid: issue.iid,
        };
        let stage = issue
            .labels
            .iter()
            .find_map(|l| l.strip_prefix(&labels.stage_prefix))
            .and_then(Stage::parse);
        let state = cca_state(&org.slug, &policies.agreements, today);
        let mrs = open_mrs.get(&org.slug).copied().unwrap_or(0);
        let result: Result<(bool, Vec<String>), OneError> = async {
            let mut facts = WorklistFacts {
                issue: at.clone(),
                org,
                stage,
                open_mrs: mrs,
                state: &state,
                confidential: issue.confidential,
                markers: None,
            };
            let markers;
            let (listed, actions) = match decide_worklist(&facts, policies, &ctx.messages)? {
                Step::Act(decided) => decided,
                Step::Need(WorklistNeed::Markers) => {
                    markers = live.facts.issue_markers(c, &at).await?;
                    facts.markers = Some(&markers);
                    match decide_worklist(&facts, policies, &ctx.messages)? {
                        Step::Act(decided) => decided,
                        Step::Need(need) => return Err(OneError::StillNeeds(need)),
                    }
                }
            };
            ctx.executor().run(Some(c), &actions).await?;
            Ok((listed, actions.iter().map(|a| a.summary()).collect()))
        }
        .await;
        let (listed, changes, error) = match result {
            Ok((listed, changes)) => (listed, changes, None),
            Err(e) => {
                tracing::warn!(issue = %at, error = %e, "cca-check could not update this engagement; the next run retries");
                (true, vec![], Some(e.to_string()))
            }
        };
        out.push(EngagementCheck {
            issue: at,
            org: org.slug.clone(),
            stage,
            open_mrs: mrs,
            engaged: engaged(stage, mrs),
            state: state.clone(),
            listed,
            changes,
            error,
        });
    }
    Ok(out)
}

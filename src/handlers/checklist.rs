//! Gathers what GitLab shows about an engagement for its checklist (the rule is
//! `decide::checklist`): the organization's meeting-notes and onboarding issues and its
//! Co-Create MRs, read concurrently; the tracking issue's own state comes from the caller.

use super::{HandleError, Live};
use crate::decide::checklist::{proven, tick, ChecklistFacts, Item};
use crate::decide::engagement::IssueRef;
use crate::decide::follow_through::{org_of, tracking_team};
use crate::decide::Action;
use crate::domain::UserId;
use crate::gitlab::{path_id, ApiIssue, Context as _, Get, GitlabClient};
use crate::messages::Marker;
use crate::policy::Policies;

/// A tracking issue as it is now.
#[derive(Debug, Clone)]
pub struct TrackingNow<'a> {
    pub issue: &'a IssueRef,
    pub labels: &'a [String],
    pub description: &'a str,
    pub assignees: &'a [(UserId, String)],
    /// The bot's markers in its notes on the issue.
    pub markers: &'a [Marker],
}

/// The one edit that ticks what GitLab proves (and `also`: items the caller's own plan makes
/// true before this edit runs), if any box changes; no reads when the issue has no unticked
/// keyed line.
pub async fn refresh(
    live: &Live,
    c: &GitlabClient,
    policies: &Policies,
    today: chrono::NaiveDate,
    t: &TrackingNow<'_>,
    also: &[Item],
) -> Result<Vec<Action>, HandleError> {
    let Some(org) = org_of(t.labels, policies) else {
        return Ok(vec![]);
    };
    if !t.description.contains("- [ ] ") || !t.description.contains("<!-- cocreate:check:") {
        return Ok(vec![]);
    }
    let l = &policies.routing.labels;
    let org_label = l.org(&org.slug);
    let project = &policies.routing.tracking.project;
    let docs = async {
        Get::new(format!("projects/{}/issues", path_id(project)))
            .param("state", "all")
            .param("labels", org_label.clone())
            .all::<ApiIssue>(c)
            .await
            .doing(|| format!("listing the issues of `{}` in {project}", org.slug))
    };
    let params = [("labels", org_label.clone()), ("state", "all".into())];
    let mrs = live.facts.mrs_in_scope(c, policies, &params);
    let (docs, mrs) = futures_util::future::try_join(docs, mrs).await?;
    let filed = |label: &str| docs.iter().any(|i| i.labels.iter().any(|x| x == label));
    let team: Vec<String> = tracking_team(t.description, Some(org))
        .into_iter()
        .map(|(_, u)| u)
        .collect();
    let facts = ChecklistFacts {
        org: &org.slug,
        today,
        assignees: t.assignees,
        account_team: &team,
        account_team_noted: t.markers.contains(&Marker::AccountTeam),
        labels: t.labels,
        meeting_notes_filed: filed(&l.meeting_notes),
        onboarding_filed: filed(&l.onboarding),
        mrs_opened: !mrs.is_empty(),
        mr_merged: mrs.values().any(|m| m.state == "merged"),
    };
    let mut items = proven(&facts, policies);
    items.extend_from_slice(also);
    Ok(tick(t.description, &items)
        .map(|description| {
            vec![Action::EditIssue {
                issue: t.issue.clone(),
                add_labels: vec![],
                remove_labels: vec![],
                assignee_ids: None,
                description: Some(description),
                confidential: None,
            }]
        })
        .unwrap_or_default())
}

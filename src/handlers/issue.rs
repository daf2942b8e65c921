//! Engagement issues in the tracking project: an account team's intake issue becomes the
//! organization's tracking issue (or is linked to the existing one); tracking issues keep one
//! stage and one pathway label.

use super::{Context, HandleError, Outcome};
use crate::decide::engagement::{
    classify_issue, decide_intake, decide_stage, issue_event_kind, IntakeFacts, IssueKind, IssueRef,
};
use crate::decide::{Action, Skip, Step};
use crate::events::{Event, IssueEvent};
use crate::gitlab::GitlabClient;

#[derive(Debug, Clone)]
pub struct IssueInput {
    pub issue: IssueRef,
    pub project_path: String,
    pub actor: String,
    pub labels: Vec<String>,
    pub added_labels: Vec<String>,
    pub description: String,
    /// Whether the issue is confidential (as GitLab has it now, when connected).
    pub confidential: bool,
}

/// Routed actions: open, update, reopen (and events without an action).
pub fn parse(event: &Event) -> Option<IssueInput> {
    let Event::Issue(ev) = event else { return None };
    match ev.object_attributes.action.as_deref() {
        None | Some("open") | Some("update") | Some("reopen") => Some(input(ev)),
        Some(_) => None,
    }
}

fn input(ev: &IssueEvent) -> IssueInput {
    IssueInput {
        issue: IssueRef {
            project: ev.project_id().to_string(),
            iid: ev.object_attributes.iid,
        },
        project_path: ev.project.path_with_namespace.clone(),
        actor: ev.user.username.clone(),
        labels: ev.labels.iter().map(|l| l.title.clone()).collect(),
        added_labels: ev.added_labels(),
        description: ev.object_attributes.description.clone().unwrap_or_default(),
        confidential: ev.object_attributes.confidential,
    }
}

pub async fn handle(
    ctx: &Context,
    mut input: IssueInput,
    event_uuid: Option<&str>,
) -> Result<Outcome, HandleError> {
    let policies = &ctx.policies;
    if let Err(skip) = issue_event_kind(
        &input.actor,
        &input.project_path,
        &input.labels,
        policies,
        &ctx.bot_username,
    ) {
        return Ok(Outcome::Skipped(skip));
    }
    let live = ctx.gitlab();
    let client = live.map(|l| l.client.for_event(event_uuid));
    // Level-triggered: work on the issue as it is now, not as the payload saw it.
    if let (Some(l), Some(c)) = (live, &client) {
        match l.facts.issue(c, &input.issue).await? {
            None => {
                return Ok(Outcome::Skipped(Skip::IssueGone {
                    issue: input.issue.clone(),
                }))
            }
            Some(now) if now.state != "opened" => return Ok(Outcome::Skipped(Skip::IssueClosed)),
            Some(now) => {
                input.labels = now.labels;
                input.description = now.description.unwrap_or_default();
                input.confidential = now.confidential;
            }
        }
    }
    let markers = match (live, &client) {
        (Some(l), Some(c)) => l.facts.issue_markers(c, &input.issue).await?,
        _ => Vec::new(),
    };
    // Classified again on the labels as they are now.
    let kind = classify_issue(&input.labels, &policies.routing.labels);
    let actions = if kind == Some(IssueKind::Intake) {
        intake(ctx, &input, markers, client.as_ref()).await?
    } else {
        decide_stage(
            &input.issue,
            input.confidential,
            &input.labels,
            &input.added_labels,
            &markers,
            policies,
            &ctx.messages,
        )?
    };
    let report = ctx.executor().run(client.as_ref(), &actions).await?;
    tracing::info!(issue = %input.issue, planned = actions.len(), writes = report.writes, "engagement issue handled");
    Ok(Outcome::Done {
        writes: report.writes,
        planned: actions.len(),
    })
}

/// An intake: decided on the issue; a valid one asks for its organization's other tracking
/// issues and the roster, read concurrently under the organization's lock, then decided again.
async fn intake(
    ctx: &Context,
    input: &IssueInput,
    markers: Vec<crate::messages::Marker>,
    client: Option<&GitlabClient>,
) -> Result<Vec<Action>, HandleError> {
    let mut facts = IntakeFacts {
        issue: input.issue.clone(),
        confidential: input.confidential,
        description: input.description.clone(),
        labels: input.labels.clone(),
        markers,
        other_tracking: None,
        roster: None,
        today: ctx.clock.today(),
    };
    let needs = match decide_intake(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(actions) => return Ok(actions),
        Step::Need(needs) => needs,
    };
    // A valid intake: the rest is decided under the organization's lock.
    let org = &needs.org;
    let _guard = ctx.locks.lock(org.as_str()).await;
    match (ctx.gitlab(), client) {
        (Some(live), Some(c)) => {
            let (others, roster) = tokio::try_join!(
                live.facts.tracking_issues(c, &ctx.policies, org),
                live.facts.roster(c, &ctx.policies, Some(org)),
            )?;
            let mut others = others.unwrap_or_default();
            others.retain(|t| t.issue.iid != input.issue.iid);
            facts.other_tracking = Some(others);
            facts.roster = Some(roster);
        }
        // A dry run without a token: no other tracking issue is known, no DRI assigned.
        _ => facts.other_tracking = Some(Vec::new()),
    }
    match decide_intake(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(actions) => Ok(actions),
        Step::Need(needs) => Err(HandleError::StillNeeds {
            rule: "intake",
            needs: format!("{needs:?}"),
        }),
    }
}

//! Engagement issues in the tracking project: an account team's intake issue becomes the
//! organization's tracking issue (or is linked to the existing one); tracking issues keep one
//! stage and one pathway label.

use super::{Context, HandleError, KeyGuard, Outcome};
use crate::decide::checklist::Item;
use crate::decide::engagement::{
    classify_issue, decide_intake, decide_stage, issue_event_kind, IntakeFacts, IssueKind, IssueRef,
};
use crate::decide::follow_through::{
    decide_engagement_doc, decide_meeting_request, DocFacts, TrackingFacts,
};
use crate::decide::{Action, Skip, Step};
use crate::events::{Event, IssueEvent};
use crate::gitlab::GitlabClient;
use crate::handlers::checklist::{refresh, TrackingNow};

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
    /// Its address in GitLab (when read).
    pub web_url: Option<String>,
    /// Its assignees (when read).
    pub assignees: Vec<(crate::domain::UserId, String)>,
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
        web_url: None,
        assignees: Vec::new(),
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
                input.web_url = (!now.web_url.is_empty()).then_some(now.web_url);
                input.assignees = now
                    .assignees
                    .into_iter()
                    .map(|a| (a.id, a.username))
                    .collect();
            }
        }
    }
    let markers = match (live, &client) {
        (Some(l), Some(c)) => l.facts.issue_markers(c, &input.issue).await?,
        _ => Vec::new(),
    };
    // Classified again on the labels as they are now.
    let kind = classify_issue(&input.labels, &policies.routing.labels);
    // The organization's lock (when the rule took one) is held until the actions are written.
    let (actions, lock) = match kind {
        Some(IssueKind::Intake) => intake(ctx, &input, markers, client.as_ref()).await?,
        Some(IssueKind::Doc) => doc(ctx, &input, markers, client.as_ref()).await?,
        _ => {
            let mut actions = decide_stage(
                &input.issue,
                input.confidential,
                &input.labels,
                &input.added_labels,
                &markers,
                policies,
                &ctx.messages,
            )?;
            actions.extend(decide_meeting_request(
                &TrackingFacts {
                    issue: &input.issue,
                    labels: &input.labels,
                    description: &input.description,
                    markers: &markers,
                    web_url: input.web_url.as_deref(),
                },
                policies,
                &ctx.messages,
            )?);
            if let (Some(l), Some(c)) = (live, &client) {
                actions.extend(
                    refresh(
                        l,
                        c,
                        policies,
                        ctx.clock.today(),
                        &TrackingNow {
                            issue: &input.issue,
                            labels: &input.labels,
                            description: &input.description,
                            assignees: &input.assignees,
                            markers: &markers,
                        },
                        &[],
                    )
                    .await?,
                );
            }
            (actions, None)
        }
    };
    let report = ctx
        .execute(lock.as_ref(), client.as_ref(), &actions)
        .await?;
    tracing::info!(issue = %input.issue, planned = actions.len(), writes = report.writes, "engagement issue handled");
    Ok(Outcome::Done {
        writes: report.writes,
        planned: actions.len(),
    })
}

/// An intake: decided on the issue; a valid one asks for its organization's other tracking
/// issues and the roster, read concurrently under the organization's lock, then decided again
/// (the actions come back with the lock, for their writes).
async fn intake(
    ctx: &Context,
    input: &IssueInput,
    markers: Vec<crate::messages::Marker>,
    client: Option<&GitlabClient>,
) -> Result<(Vec<Action>, Option<KeyGuard>), HandleError> {
    let mut facts = IntakeFacts {
        issue: input.issue.clone(),
        confidential: input.confidential,
        description: input.description.clone(),
        labels: input.labels.clone(),
        markers,
        other_tracking: None,
        roster: None,
        today: ctx.clock.today(),
        account_team: Vec::new(),
    };
    let needs = match decide_intake(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(actions) => return Ok((actions, None)),
        Step::Need(needs) => needs,
    };
    // A valid intake: the rest is decided under the organization's lock.
    let org = &needs.org;
    let guard = ctx.locks.lock(org.as_str()).await;
    match (ctx.gitlab(), client) {
        (Some(live), Some(c)) => {
            let team = futures_util::future::try_join_all(needs.account_team.iter().map(
                |u| async move {
                    let id = live.facts.user_id(c, u).await?;
                    if id.is_none() {
                        tracing::warn!(issue = %input.issue, "an intake's account team member is not a GitLab user; not assigned");
                    }
                    Ok::<_, crate::gitlab::GitlabError>(id.map(|id| (u.clone(), id)))
                },
            ));
            let (others, roster, team) = tokio::try_join!(
                live.facts.tracking_issues(c, &ctx.policies, org),
                live.facts.roster(c, &ctx.policies, Some(org)),
                team,
            )?;
            let mut others = others.unwrap_or_default();
            others.retain(|t| t.issue.iid != input.issue.iid);
            facts.other_tracking = Some(others);
            facts.roster = Some(roster);
            facts.account_team = team.into_iter().flatten().collect();
        }
        // A dry run without a token: no other tracking issue is known, no DRI assigned.
        _ => facts.other_tracking = Some(Vec::new()),
    }
    match decide_intake(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(actions) => Ok((actions, Some(guard))),
        Step::Need(needs) => Err(HandleError::StillNeeds {
            rule: "intake",
            needs: format!("{needs:?}"),
        }),
    }
}

/// A meeting-notes or onboarding issue: decided on the issue; one naming a known organization
/// asks for that organization's tracking issues, read under its lock, then decided again (the
/// actions come back with the lock).
async fn doc(
    ctx: &Context,
    input: &IssueInput,
    markers: Vec<crate::messages::Marker>,
    client: Option<&GitlabClient>,
) -> Result<(Vec<Action>, Option<KeyGuard>), HandleError> {
    let mut facts = DocFacts {
        issue: input.issue.clone(),
        confidential: input.confidential,
        labels: input.labels.clone(),
        description: input.description.clone(),
        markers,
        tracking: None,
    };
    let needs = match decide_engagement_doc(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(actions) => return Ok((actions, None)),
        Step::Need(needs) => needs,
    };
    let guard = ctx.locks.lock(needs.org.as_str()).await;
    facts.tracking = Some(match (ctx.gitlab(), client) {
        (Some(live), Some(c)) => live
            .facts
            .tracking_list(c, &ctx.policies, &needs.org)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.0)
            .collect(),
        _ => Vec::new(),
    });
    let mut actions = match decide_engagement_doc(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(actions) => actions,
        Step::Need(needs) => {
            return Err(HandleError::StillNeeds {
                rule: "engagement-doc",
                needs: format!("{needs:?}"),
            })
        }
    };
    // The engagement's checklist counts the issue once it carries the organization's label:
    // ticked in the same run, after the edit that labels it.
    let tracking = facts
        .tracking
        .iter()
        .flatten()
        .min_by_key(|t| t.issue.iid)
        .map(|t| t.issue.clone());
    if let (Some(live), Some(c), Some(t)) = (ctx.gitlab(), client, tracking) {
        actions.extend(tracking_checklist(ctx, live, c, &t, &input.labels).await?);
    }
    Ok((actions, Some(guard)))
}

/// The checklist edit of tracking issue `t`, read as it is now, counting this doc issue
/// (`doc_labels` plus the organization's label, which the doc's own edit adds first).
async fn tracking_checklist(
    ctx: &Context,
    live: &super::Live,
    c: &GitlabClient,
    t: &crate::decide::engagement::IssueRef,
    doc_labels: &[String],
) -> Result<Vec<Action>, HandleError> {
    let Some(now) = live.facts.issue(c, t).await? else {
        return Ok(vec![]);
    };
    if now.state != "opened" {
        return Ok(vec![]);
    }
    let markers = live.facts.issue_markers(c, t).await?;
    let assignees: Vec<_> = now
        .assignees
        .into_iter()
        .map(|a| (a.id, a.username))
        .collect();
    let description = now.description.unwrap_or_default();
    // The doc's label edit runs before this one in the same plan: it counts as filed even
    // though the listing, read before that edit, may not show it yet.
    let l = &ctx.policies.routing.labels;
    let also: Vec<Item> = [
        (&l.meeting_notes, Item::MeetingNotes),
        (&l.onboarding, Item::Onboarding),
    ]
    .into_iter()
    .filter(|(label, _)| doc_labels.contains(label))
    .map(|(_, item)| item)
    .collect();
    refresh(
        live,
        c,
        &ctx.policies,
        ctx.clock.today(),
        &TrackingNow {
            issue: t,
            labels: &now.labels,
            description: &description,
            assignees: &assignees,
            markers: &markers,
        },
        &also,
    )
    .await
}

//! Co-Create merge request routing: labels, a Contributor Success reviewer, one welcome note.

use super::{Context, HandleError, Outcome};
use crate::decide::engagement::{decide_mr_engagement, MrEngagementFacts};
use crate::decide::{
    cca_state, decide_merge_request, engagement_dri, preferred_reviewer, Decision, MrFacts,
    MrState, RosterFacts, RosterMember, Skip,
};
use crate::domain::{Availability, MrRef, UserFacts, UserId};
use crate::events::{
    Event, MergeRequestAttributes, MergeRequestEvent, PayloadCommit, PayloadLabel, PayloadProject,
    PayloadReviewer, PayloadUser,
};
use crate::gitlab::ApiMergeRequest;
use crate::gitlab::GitlabClient;
use crate::messages::Marker;

/// What this handler needs from an event.
#[derive(Debug, Clone)]
pub struct MrInput {
    pub mr: MrRef,
    pub author_id: UserId,
    /// Who caused the event; `None` for sweeps (`reconcile`).
    pub actor: Option<String>,
    pub payload: MergeRequestEvent,
}

impl MrInput {
    /// An MR found by a sweep rather than a webhook: the same handling, without an actor.
    pub fn from_api(mr: &ApiMergeRequest) -> Self {
        let payload = MergeRequestEvent {
            object_kind: "merge_request".into(),
            user: PayloadUser {
                id: Some(mr.author.id),
                username: mr.author.username.clone(),
                name: String::new(),
                email: None,
            },
            project: PayloadProject {
                id: mr.project_id,
                path_with_namespace: String::new(),
                web_url: String::new(),
            },
            object_attributes: MergeRequestAttributes {
                id: 0,
                iid: mr.iid,
                title: mr.title.clone(),
                author_id: mr.author.id,
                state: mr.state.clone(),
                action: None,
                draft: false,
                url: String::new(),
                target_project_id: Some(mr.project_id),
                reviewer_ids: mr.reviewers.iter().map(|r| r.id).collect(),
                last_commit: mr.sha.clone().map(|id| PayloadCommit { id }),
            },
            labels: mr
                .labels
                .iter()
                .map(|l| PayloadLabel { title: l.clone() })
                .collect(),
            reviewers: mr
                .reviewers
                .iter()
                .map(|r| PayloadReviewer {
                    id: r.id,
                    username: r.username.clone(),
                })
                .collect(),
        };
        Self {
            mr: MrRef {
                project_id: mr.project_id,
                iid: mr.iid,
            },
            author_id: mr.author.id,
            actor: None,
            payload,
        }
    }
}

/// Routed actions: `open`, `reopen`, `update` (and system hooks, which carry no action).
pub fn parse(event: &Event) -> Option<MrInput> {
    let Event::MergeRequest(ev) = event else {
        return None;
    };
    match ev.object_attributes.action.as_deref() {
        None | Some("open") | Some("reopen") | Some("update") => Some(MrInput {
            mr: ev.mr(),
            author_id: ev.object_attributes.author_id,
            actor: Some(ev.user.username.clone()),
            payload: ev.clone(),
        }),
        Some(_) => None,
    }
}

/// Facts taken from the payload alone: what a dry run and `plan` can know without a token.
pub fn payload_facts(input: &MrInput, ctx: &Context) -> MrFacts {
    let ev = &input.payload;
    let author_is_actor = ev.user.id.is_none_or(|id| id == input.author_id);
    MrFacts {
        mr: input.mr,
        state: MrState::parse(&ev.object_attributes.state),
        title: ev.object_attributes.title.clone(),
        author: UserFacts {
            id: input.author_id,
            username: if author_is_actor {
                ev.user.username.clone()
            } else {
                String::new()
            },
            name: if author_is_actor {
                ev.user.name.clone()
            } else {
                String::new()
            },
            ..UserFacts::default()
        },
        actor: input.actor.clone(),
        labels: ev.labels.iter().map(|l| l.title.clone()).collect(),
        reviewers: ev
            .reviewers
            .iter()
            .map(|r| (r.id, r.username.clone()))
            .collect(),
        markers: Vec::new(),
        head_sha: ev
            .object_attributes
            .last_commit
            .as_ref()
            .map(|c| c.id.clone()),
        head_status: None,
        today: ctx.clock.today(),
        bot_username: ctx.bot_username.clone(),
        roster: Some(RosterFacts {
            members: ctx
                .policies
                .routing
                .roster
                .reviewers
                .iter()
                .map(|u| RosterMember {
                    username: u.clone(),
                    id: None,
                    availability: Availability::Available,
                    open_reviews: 0,
                    org_reviews: 0,
                })
                .collect(),
            preferred: None,
        }),
    }
}

/// Decides and acts on one MR event.
pub async fn handle(
    ctx: &Context,
    input: MrInput,
    event_uuid: Option<&str>,
) -> Result<Outcome, HandleError> {
    let Some(live) = &ctx.gitlab else {
        let facts = payload_facts(&input, ctx);
        let decision = decide_merge_request(&facts, &ctx.policies, &ctx.messages)?;
        return finish(ctx, None, input.mr, decision).await;
    };
    let client = live.client.for_event(event_uuid);

    // First pass on cheap facts (payload + cached author): most events stop here.
    let mut facts = payload_facts(&input, ctx);
    facts.author = live
        .facts
        .user(&client, input.author_id, &ctx.policies)
        .await?;
    // Unknown yet; "all posted" keeps this pass from planning notes.
    facts.markers = Marker::ALL.to_vec();
    facts.roster = None;
    let first = decide_merge_request(&facts, &ctx.policies, &ctx.messages)?;
    let (Some(org), None) = (&first.org, &first.skip) else {
        return finish(ctx, Some(&client), input.mr, first).await;
    };

    // The organization's work is serialized: read the current state, decide, write.
    let _guard = ctx.locks.lock(org.slug.as_str()).await;
    let Some(current) = live.facts.merge_request(&client, input.mr).await? else {
        return Ok(Outcome::Skipped(Skip::MrGone { mr: input.mr }));
    };
    facts.state = MrState::parse(&current.state);
    facts.title = current.title.clone();
    facts.labels = current.labels.clone();
    facts.reviewers = current
        .reviewers
        .iter()
        .map(|r| (r.id, r.username.clone()))
        .collect();
    facts.head_sha = current.sha.clone();
    if facts.state == MrState::Opened {
        facts.markers = live.facts.bot_markers(&client, input.mr).await?;
        if let Some(sha) = &facts.head_sha {
            facts.head_status = Some(
                live.facts
                    .cca_status(&client, input.mr.project_id, sha)
                    .await?,
            );
        }
    }
    let tracking = match facts.state {
        MrState::Opened => {
            live.facts
                .tracking_issues(&client, &ctx.policies, &org.slug)
                .await?
        }
        _ => None,
    };
    if facts.state == MrState::Opened && !facts.has_roster_reviewer(&ctx.policies) {
        let mut roster = live
            .facts
            .roster(&client, &ctx.policies, Some(&org.slug))
            .await?;
        // Sticky to the engagement's Contributor Success DRI.
        roster.preferred = tracking
            .as_deref()
            .and_then(|t| preferred_reviewer(&ctx.policies.routing.roster, t));
        facts.roster = Some(roster);
    }
    let mut decision = decide_merge_request(&facts, &ctx.policies, &ctx.messages)?;
    if let (None, Some(tracking)) = (&decision.skip, &tracking) {
        if let Some(o) = ctx.policies.organizations.get(&org.slug) {
            let dri = engagement_dri(&facts, &decision, &ctx.policies);
            let cca = cca_state(&o.slug, &ctx.policies.agreements, facts.today);
            decision.actions.extend(decide_mr_engagement(
                &MrEngagementFacts {
                    org: o,
                    mr: input.mr,
                    mr_url: &current.web_url,
                    title: &facts.title,
                    tracking,
                    dri: dri.as_ref().map(|(id, u)| (*id, u.as_str())),
                    cca: cca.name(),
                },
                &ctx.policies,
                &ctx.messages,
            )?);
        }
    }
    finish(ctx, Some(&client), input.mr, decision).await
}

async fn finish(
    ctx: &Context,
    client: Option<&GitlabClient>,
    mr: MrRef,
    decision: Decision,
) -> Result<Outcome, HandleError> {
    if let Some(skip) = decision.skip {
        tracing::debug!(%mr, ?skip, "nothing to do");
        return Ok(Outcome::Skipped(skip));
    }
    let org = decision
        .org
        .as_ref()
        .map(|o| o.slug.to_string())
        .unwrap_or_default();
    let report = ctx.executor.run(client, &decision.actions).await?;
    tracing::info!(%mr, %org, planned = decision.actions.len(), writes = report.writes, "merge request routed");
    Ok(Outcome::Done {
        writes: report.writes,
        planned: decision.actions.len(),
    })
}

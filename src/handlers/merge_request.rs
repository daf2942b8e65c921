//! Co-Create merge request routing: labels, a Contributor Success reviewer, one welcome note.

use super::{Context, HandleError, Outcome};
use crate::decide::{decide_merge_request, Decision, MrFacts, MrState, RosterFacts, RosterMember};
use crate::domain::{Availability, MrRef, UserFacts, UserId};
use crate::events::{Event, MergeRequestEvent};
use crate::gitlab::GitlabClient;
use crate::messages::Marker;

/// What this handler needs from an event.
#[derive(Debug, Clone)]
pub struct MrInput {
    pub mr: MrRef,
    pub author_id: UserId,
    pub actor: String,
    pub payload: MergeRequestEvent,
}

/// Routed actions: `open`, `reopen`, `update` (and system hooks, which carry no action).
pub fn parse(event: &Event) -> Option<MrInput> {
    let Event::MergeRequest(ev) = event;
    match ev.object_attributes.action.as_deref() {
        None | Some("open") | Some("reopen") | Some("update") => Some(MrInput {
            mr: ev.mr(),
            author_id: ev.object_attributes.author_id,
            actor: ev.user.username.clone(),
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
        actor: Some(input.actor.clone()),
        labels: ev.labels.iter().map(|l| l.title.clone()).collect(),
        reviewers: ev
            .reviewers
            .iter()
            .map(|r| (r.id, r.username.clone()))
            .collect(),
        welcome_posted: false,
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
    facts.welcome_posted = true;
    facts.roster = None;
    let first = decide_merge_request(&facts, &ctx.policies, &ctx.messages)?;
    let (Some(org), None) = (&first.org, &first.skip) else {
        return finish(ctx, Some(&client), input.mr, first).await;
    };

    // The organization's work is serialized: read the current state, decide, write.
    let _guard = ctx.locks.lock(org.slug.as_str()).await;
    let Some(current) = live.facts.merge_request(&client, input.mr).await? else {
        return Ok(Outcome::Skipped(format!("{} no longer exists", input.mr)));
    };
    facts.state = MrState::parse(&current.state);
    facts.title = current.title.clone();
    facts.labels = current.labels.clone();
    facts.reviewers = current
        .reviewers
        .iter()
        .map(|r| (r.id, r.username.clone()))
        .collect();
    if facts.state == MrState::Opened {
        facts.welcome_posted = live
            .facts
            .has_marked_note(&client, input.mr, Marker::Welcome)
            .await?;
        if !facts.has_roster_reviewer(&ctx.policies) {
            facts.roster = Some(live.facts.roster(&client, &ctx.policies, &org.slug).await?);
        }
    }
    let decision = decide_merge_request(&facts, &ctx.policies, &ctx.messages)?;
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
        return Ok(Outcome::Skipped(format!("{skip:?}")));
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

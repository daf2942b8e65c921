//! Co-Create merge request routing: labels, a Contributor Success reviewer, one welcome note.

use super::{Context, HandleError, Outcome};
use crate::decide::engagement::TrackingIssue;
use crate::decide::engagement::{decide_mr_engagement, MrEngagementFacts};
use crate::decide::{
    cca_state, decide_merge_request, engagement_dri, preferred_reviewer, Decision, MrFacts,
    MrNeeds, MrState, RosterFacts, RosterMember, Rounds, Skip, Source, Step,
};
use crate::domain::{Availability, MrRef, UserFacts, UserId};
use crate::events::{
    Event, MergeRequestAttributes, MergeRequestEvent, PayloadCommit, PayloadLabel, PayloadProject,
    PayloadReviewer, PayloadUser,
};
use crate::gitlab::{ApiMergeRequest, GitlabClient, ListedTracking};

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
        source: Source::Payload,
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
        markers: None,
        head_sha: ev
            .object_attributes
            .last_commit
            .as_ref()
            .map(|c| c.id.clone()),
        head_status: None,
        today: ctx.clock.today(),
        bot_username: ctx.bot_username.clone(),
        roster: None,
    }
}

/// The payload's facts for a dry run without a token: the roster as the policies name it
/// (no ids, no load), nothing more to read.
pub fn offline_facts(input: &MrInput, ctx: &Context) -> MrFacts {
    MrFacts {
        source: Source::Offline,
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
        ..payload_facts(input, ctx)
    }
}

/// Decides and acts on one MR event: a first pass on the payload and the (cached) author,
/// then, under the organization's lock, at most two rounds of the reads the rule asks for,
/// each round's reads concurrent.
pub async fn handle(
    ctx: &Context,
    input: MrInput,
    event_uuid: Option<&str>,
) -> Result<Outcome, HandleError> {
    let Some(live) = ctx.gitlab() else {
        let facts = offline_facts(&input, ctx);
        let decision = match decide_merge_request(&facts, &ctx.policies, &ctx.messages)? {
            Step::Act(decision) => decision,
            Step::Need(needs) => return Err(still_needs(&needs)),
        };
        return finish(ctx, None, None, input.mr, decision).await;
    };
    let client = live.client.for_event(event_uuid);

    // First pass on cheap facts (payload + cached author): most events stop here.
    let mut facts = payload_facts(&input, ctx);
    facts.author = live
        .facts
        .user(&client, input.author_id, &ctx.policies)
        .await?;
    let mut needs = match decide_merge_request(&facts, &ctx.policies, &ctx.messages)? {
        Step::Act(decision) => return finish(ctx, None, Some(&client), input.mr, decision).await,
        Step::Need(needs) => needs,
    };

    // The organization's work is serialized: read the current state, decide, write.
    let org = needs.org.clone();
    let guard = ctx.locks.lock(org.slug.as_str()).await;
    let mut engagement = Engagement::Unread;
    let mut web_url = String::new();
    let mut rounds = Rounds::default();
    let decision = loop {
        if !rounds.start_round() {
            return Err(still_needs(&needs));
        }
        let round = Round {
            ctx,
            live,
            client: &client,
            needs: &needs,
        };
        match round.read(&mut facts, &mut engagement).await? {
            Read::Gone => return Ok(Outcome::Skipped(Skip::MrGone { mr: input.mr })),
            Read::Mr(url) => web_url = url,
            Read::Done => {}
        }
        match decide_merge_request(&facts, &ctx.policies, &ctx.messages)? {
            Step::Act(decision) => break decision,
            Step::Need(more) => needs = more,
        }
    };
    let mut decision = decision;
    if decision.skip.is_some() {
        return finish(ctx, Some(&guard), Some(&client), input.mr, decision).await;
    }
    // The engagement rule needs the MRs its tracking issues link; read them if no second
    // round did.
    let tracking = match engagement {
        Engagement::Unread | Engagement::NoProject => None,
        Engagement::Listed(listed) => Some(live.facts.tracking_links(&client, listed).await?),
        Engagement::Linked(tracking) => Some(tracking),
    };
    if let (Some(tracking), Some(o)) = (&tracking, ctx.policies.organizations.get(&org.slug)) {
        let dri = engagement_dri(&facts, &decision, &ctx.policies);
        let cca = cca_state(&o.slug, &ctx.policies.agreements, facts.today);
        decision.actions.extend(decide_mr_engagement(
            &MrEngagementFacts {
                org: o,
                mr: input.mr,
                mr_url: &web_url,
                title: &facts.title,
                tracking,
                dri: dri.as_ref().map(|(id, u)| (*id, u.as_str())),
                cca: cca.name(),
            },
            &ctx.policies,
            &ctx.messages,
        )?);
    }
    finish(ctx, Some(&guard), Some(&client), input.mr, decision).await
}

/// The organization's tracking issues, for the reviewer preference and the engagement rule.
enum Engagement {
    Unread,
    /// The tracking project is missing: engagement tracking is skipped (logged by the read).
    NoProject,
    /// Listed (assignees known); the links in the bot's notes not read yet.
    Listed(Vec<ListedTracking>),
    Linked(Vec<TrackingIssue>),
}

impl Engagement {
    fn issues(&self) -> Vec<TrackingIssue> {
        match self {
            Engagement::Unread | Engagement::NoProject => Vec::new(),
            Engagement::Listed(l) => l.iter().map(|t| t.issue().clone()).collect(),
            Engagement::Linked(t) => t.clone(),
        }
    }
}

/// What a round of reads found.
enum Read {
    /// The MR no longer exists.
    Gone,
    /// The MR as it is now was read (its web URL, for the tracking issue).
    Mr(String),
    Done,
}

/// One round of the reads routing asked for, all concurrently.
struct Round<'a> {
    ctx: &'a Context,
    live: &'a super::Live,
    client: &'a GitlabClient,
    needs: &'a MrNeeds,
}

impl Round<'_> {
    async fn read(
        &self,
        facts: &mut MrFacts,
        engagement: &mut Engagement,
    ) -> Result<Read, HandleError> {
        let Round {
            ctx,
            live,
            client: c,
            needs,
        } = *self;
        let mr = facts.mr;
        let current = async {
            match needs.current {
                true => live.facts.merge_request(c, mr).await.map(Some),
                false => Ok(None),
            }
        };
        let markers = async {
            match needs.current {
                true => live.facts.bot_markers(c, mr).await.map(Some),
                false => Ok(None),
            }
        };
        // The tracking issues: listed with the MR (the reviewer preference needs their
        // assignees), their links read in the next round, beside the status and the roster.
        let tracking = async {
            match engagement {
                Engagement::Unread => Ok(Some(
                    match live
                        .facts
                        .tracking_list(c, &ctx.policies, &needs.org.slug)
                        .await?
                    {
                        None => Engagement::NoProject,
                        Some(listed) => Engagement::Listed(listed),
                    },
                )),
                Engagement::Listed(listed) => Ok(Some(Engagement::Linked(
                    live.facts.tracking_links(c, listed.clone()).await?,
                ))),
                Engagement::NoProject | Engagement::Linked(_) => Ok(None),
            }
        };
        let status = async {
            match &needs.head_status {
                Some(sha) => live
                    .facts
                    .cca_status(c, mr.project_id, sha)
                    .await
                    .map(|s| Some((sha.clone(), s))),
                None => Ok(None),
            }
        };
        let roster = async {
            match needs.roster {
                true => live
                    .facts
                    .roster(c, &ctx.policies, Some(&needs.org.slug))
                    .await
                    .map(Some),
                false => Ok(None),
            }
        };
        let (current, markers, tracking, status, roster) =
            tokio::try_join!(current, markers, tracking, status, roster)?;
        if let Some(t) = tracking {
            *engagement = t;
        }
        let mut read = Read::Done;
        if needs.current {
            let Some(current) = current.flatten() else {
                return Ok(Read::Gone);
            };
            facts.source = Source::Current;
            facts.state = MrState::parse(&current.state);
            facts.title = current.title.clone();
            facts.labels = current.labels.clone();
            facts.reviewers = current
                .reviewers
                .iter()
                .map(|r| (r.id, r.username.clone()))
                .collect();
            facts.head_sha = current.sha.clone();
            facts.markers = markers;
            read = Read::Mr(current.web_url);
        }
        if let Some((sha, status)) = status {
            // A status read for another commit than the head says nothing about the head.
            if facts.head_sha.as_deref() == Some(sha.as_str()) {
                facts.head_status = Some(status);
            }
        }
        if let Some(mut roster) = roster {
            // Sticky to the engagement's Contributor Success DRI.
            roster.preferred =
                preferred_reviewer(&ctx.policies.routing.roster, &engagement.issues());
            facts.roster = Some(roster);
        }
        Ok(read)
    }
}

fn still_needs(needs: &MrNeeds) -> HandleError {
    HandleError::StillNeeds {
        rule: "merge request routing",
        needs: format!("{needs:?}"),
    }
}

async fn finish(
    ctx: &Context,
    lock: Option<&super::KeyGuard>,
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
    let report = ctx.execute(lock, client, &decision.actions).await?;
    tracing::info!(%mr, %org, planned = decision.actions.len(), writes = report.writes, "merge request routed");
    Ok(Outcome::Done {
        writes: report.writes,
        planned: decision.actions.len(),
    })
}

//! Contributor commands in MR comments (`@<bot> help | ready | recheck`).
//!
//! The webhook only says that a comment may hold a command. Everything the answer depends on
//! is read from GitLab: the MR (its author and reviewers decide who may command), the comment
//! itself (author, text, internal or not) and the bot's own earlier replies.

use super::{Context, HandleError, Outcome};
use crate::decide::commands::{
    decide_command, parse_command, Command, CommandFacts, CommandNeeds, CommandNote,
};
use crate::decide::{cca_state, is_own_event, recognize, RosterFacts, Rounds, Skip, Step};
use crate::domain::MrRef;
use crate::events::Event;

#[derive(Debug, Clone)]
pub struct NoteInput {
    pub mr: MrRef,
    pub note_id: u64,
    /// What the webhook says; the handler decides on the note as GitLab has it.
    pub issuer: String,
    pub command: Command,
    /// The command was written in an internal note.
    pub internal: bool,
}

/// A comment on an MR that addresses the bot.
pub fn parse(event: &Event, bot: &str) -> Option<NoteInput> {
    let Event::Note(n) = event else { return None };
    let mr = n.merge_request.as_ref()?;
    if n.object_attributes.noteable_type != "MergeRequest" || n.object_attributes.system {
        return None;
    }
    if is_own_event(&n.user.username, bot) {
        return None;
    }
    let command = parse_command(&n.object_attributes.note, bot)?;
    Some(NoteInput {
        mr: MrRef {
            project_id: mr.target_project_id.unwrap_or(n.project.id),
            iid: mr.iid,
        },
        note_id: n.object_attributes.id,
        issuer: n.user.username.clone(),
        command,
        internal: n.is_internal(),
    })
}

pub async fn handle(
    ctx: &Context,
    input: NoteInput,
    event_uuid: Option<&str>,
) -> Result<Outcome, HandleError> {
    let Some(live) = ctx.gitlab() else {
        tracing::info!(mr = %input.mr, command = ?input.command, "dry run: a command would be answered");
        return Ok(Outcome::Skipped(Skip::DryRun));
    };
    let c = live.client.for_event(event_uuid);
    // Who may command is decided from the MR as GitLab has it, not from the webhook's claim.
    let Some(mr) = live.facts.merge_request(&c, input.mr).await? else {
        return Ok(Outcome::Skipped(Skip::MrGone { mr: input.mr }));
    };
    let author = live.facts.user(&c, mr.author.id, &ctx.policies).await?;
    let org = recognize(&author, &ctx.policies.organizations);
    // Serialize with the organization's other work (or per MR for everyone else).
    let key = org
        .as_ref()
        .map(|o| o.slug.to_string())
        .unwrap_or_else(|| input.mr.to_string());
    let guard = ctx.locks.lock(&key).await;
    let notes = live.facts.mr_notes(&c, input.mr).await?;
    // The comment as GitLab has it now: its author, text and visibility (an edited or deleted
    // comment is answered as it is, or not at all).
    let Some(note) = notes.iter().find(|n| n.id == input.note_id) else {
        return Ok(Outcome::Skipped(Skip::CommentGone {
            note_id: input.note_id,
            mr: input.mr,
        }));
    };
    let Some(command) = parse_command(&note.body, &ctx.bot_username) else {
        return Ok(Outcome::Skipped(Skip::NoCommand));
    };
    let note = CommandNote {
        id: note.id,
        command,
        issuer_id: note.author.id,
        issuer: note.author.username.clone(),
        internal: note.is_internal() || input.internal,
        at: note.created_at,
    };
    let bot_notes = live.facts.bot_notes_in(&notes);
    // `ready` may add a reviewer: decide on the reviewers as they are under the lock.
    let mr = match note.command {
        Command::Ready => match live.facts.merge_request(&c, input.mr).await? {
            Some(now) => now,
            None => return Ok(Outcome::Skipped(Skip::MrGone { mr: input.mr })),
        },
        _ => mr,
    };
    let reviewers: Vec<(u64, String)> = mr
        .reviewers
        .iter()
        .map(|r| (r.id, r.username.clone()))
        .collect();
    let cca = org
        .as_ref()
        .map(|o| cca_state(&o.slug, &ctx.policies.agreements, ctx.clock.today()));
    let mut head_status: Option<Option<String>> = None;
    let mut roster: Option<RosterFacts> = None;
    let mut rounds = Rounds::default();
    let actions = loop {
        let facts = CommandFacts {
            mr: input.mr,
            note: &note,
            author: &mr.author.username,
            reviewers: &reviewers,
            cocreate: org.is_some(),
            bot_notes: &bot_notes,
            cca: cca.clone(),
            labels: &mr.labels,
            head_sha: mr.sha.as_deref(),
            head_status: head_status.as_ref().map(|s| s.as_deref()),
            roster: roster.as_ref(),
            bot: &ctx.bot_username,
        };
        let needs = match decide_command(&facts, &ctx.policies, &ctx.messages)? {
            Step::Act(actions) => break actions,
            Step::Need(needs) => needs,
        };
        if !rounds.start_round() {
            return Err(HandleError::StillNeeds {
                rule: "commands",
                needs: format!("{needs:?}"),
            });
        }
        match (needs, &org) {
            (CommandNeeds::HeadStatus(sha), _) => {
                head_status = Some(live.facts.cca_status(&c, input.mr.project_id, &sha).await?);
            }
            (CommandNeeds::Roster, o) => {
                let slug = o.as_ref().map(|o| &o.slug);
                roster = Some(live.facts.roster(&c, &ctx.policies, slug).await?);
            }
        }
    };
    let report = ctx.execute(Some(&guard), Some(&c), &actions).await?;
    tracing::info!(mr = %input.mr, command = ?note.command, writes = report.writes, "command handled");
    Ok(Outcome::Done {
        writes: report.writes,
        planned: actions.len(),
    })
}

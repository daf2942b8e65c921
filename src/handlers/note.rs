//! Contributor commands in MR comments (`@<bot> help | ready | recheck`).

use super::{Context, HandleError, Outcome};
use crate::decide::commands::{decide_command, parse_command, Command, CommandFacts};
use crate::decide::{cca_state, recognize, RosterFacts};
use crate::domain::MrRef;
use crate::events::Event;

#[derive(Debug, Clone)]
pub struct NoteInput {
    pub mr: MrRef,
    pub note_id: u64,
    pub author_id: u64,
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
    if n.user.username.eq_ignore_ascii_case(bot) {
        return None;
    }
    let command = parse_command(&n.object_attributes.note, bot)?;
    Some(NoteInput {
        mr: MrRef {
            project_id: mr.target_project_id.unwrap_or(n.project.id),
            iid: mr.iid,
        },
        note_id: n.object_attributes.id,
        author_id: mr.author_id,
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
    let Some(live) = &ctx.gitlab else {
        tracing::info!(mr = %input.mr, command = ?input.command, "dry run: a command would be answered");
        return Ok(Outcome::Skipped("dry run".into()));
    };
    let c = live.client.for_event(event_uuid);
    let author = live.facts.user(&c, input.author_id, &ctx.policies).await?;
    let org = recognize(&author, &ctx.policies.organizations);
    // Serialize with the organization's other work (or per MR for everyone else).
    let key = org
        .as_ref()
        .map(|o| o.slug.to_string())
        .unwrap_or_else(|| input.mr.to_string());
    let _guard = ctx.locks.lock(&key).await;
    let Some(mr) = live.facts.merge_request(&c, input.mr).await? else {
        return Ok(Outcome::Skipped(format!("{} no longer exists", input.mr)));
    };
    let markers = live.facts.bot_marker_strings(&c, input.mr).await?;
    let reviewers: Vec<(u64, String)> = mr
        .reviewers
        .iter()
        .map(|r| (r.id, r.username.clone()))
        .collect();
    let head_status = match (&input.command, &mr.sha) {
        (Command::Recheck, Some(sha)) => {
            Some(live.facts.cca_status(&c, input.mr.project_id, sha).await?)
        }
        _ => None,
    };
    let roster: Option<RosterFacts> = match (&input.command, &org) {
        (Command::Ready, Some(o)) => {
            Some(live.facts.roster(&c, &ctx.policies, Some(&o.slug)).await?)
        }
        _ => None,
    };
    let facts = CommandFacts {
        mr: input.mr,
        note_id: input.note_id,
        command: input.command.clone(),
        issuer: &input.issuer,
        author: &author.username,
        reviewers: &reviewers,
        markers: &markers,
        cca: org
            .as_ref()
            .map(|o| cca_state(&o.slug, &ctx.policies.agreements, ctx.clock.today())),
        labels: &mr.labels,
        head_sha: mr.sha.as_deref(),
        head_status: head_status.as_ref().map(|s| s.as_deref()),
        roster: roster.as_ref(),
        bot: &ctx.bot_username,
        internal: input.internal,
    };
    let actions = decide_command(&facts, &ctx.policies, &ctx.messages)?;
    let report = ctx.executor.run(Some(&c), &actions).await?;
    tracing::info!(mr = %input.mr, command = ?input.command, writes = report.writes, "command answered");
    Ok(Outcome::Done {
        writes: report.writes,
        planned: actions.len(),
    })
}

//! Contributor commands in MR comments: `@<bot> help`, `@<bot> ready`, `@<bot> recheck`.
//!
//! The parser is pure and strict about where a command may appear: text in code blocks, inline
//! code and quotes never triggers one (people quote the bot's own help).

use serde::Serialize;

use super::{
    cca_actions, choose_reviewer, plan_cca, Action, CcaMrFacts, CcaState, NoteTarget, RosterFacts,
};
use crate::domain::{MrRef, UserId};
use crate::messages::{keyed_marker, Marker, Messages, TemplateError};
use crate::neutralize;
use crate::policy::Policies;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", content = "word", rename_all = "snake_case")]
pub enum Command {
    Help,
    Ready,
    Recheck,
    /// Mentioned the bot with a word it does not know (or none).
    Unknown(String),
}

/// Text outside fenced code blocks, inline code and quote lines.
fn visible_text(body: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    for line in body.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || t.starts_with('>') || line.starts_with("    ") || line.starts_with('\t') {
            continue;
        }
        // Drop inline code spans.
        let mut inside = false;
        for c in line.chars() {
            if c == '`' {
                inside = !inside;
            } else if !inside {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The first command addressed to `bot` in a comment, if any.
pub fn parse_command(body: &str, bot: &str) -> Option<Command> {
    let text = visible_text(body);
    let lower = text.to_ascii_lowercase();
    let needle = format!("@{}", bot.to_ascii_lowercase());
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&needle) {
        let start = from + pos;
        let end = start + needle.len();
        from = end;
        // `@bot` must stand alone: not part of an e-mail address or a longer username.
        let before_ok = start == 0
            || !lower[..start]
                .ends_with(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
        let after_ok = !lower[end..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !before_ok || !after_ok {
            continue;
        }
        let word: String = lower[end..]
            .trim_start_matches([' ', ',', ':'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        return Some(match word.as_str() {
            "help" => Command::Help,
            "ready" => Command::Ready,
            "recheck" => Command::Recheck,
            other => Command::Unknown(other.to_owned()),
        });
    }
    None
}

/// What a command's answer depends on.
#[derive(Debug, Clone)]
pub struct CommandFacts<'a> {
    pub mr: MrRef,
    pub note_id: u64,
    pub command: Command,
    pub issuer: &'a str,
    pub author: &'a str,
    pub reviewers: &'a [(UserId, String)],
    /// Markers of the bot's notes on the MR (fixed and keyed).
    pub markers: &'a [String],
    /// The organization's CCA state, when the author is recognised.
    pub cca: Option<CcaState>,
    pub labels: &'a [String],
    pub head_sha: Option<&'a str>,
    pub head_status: Option<Option<&'a str>>,
    pub roster: Option<&'a RosterFacts>,
    pub bot: &'a str,
    /// The command was written in an internal note: the reply is internal too.
    pub internal: bool,
}

/// The answer to one command: each command note is answered once (keyed by its note id).
pub fn decide_command(
    f: &CommandFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Vec<Action>, TemplateError> {
    let marker = keyed_marker("cmd", &f.note_id.to_string());
    if f.markers.contains(&marker) {
        return Ok(vec![]);
    }
    let roster = &policies.routing.roster.reviewers;
    let issuer = f.issuer.to_ascii_lowercase();
    let authorized = issuer == f.author.to_ascii_lowercase()
        || f.reviewers
            .iter()
            .any(|(_, u)| u.eq_ignore_ascii_case(&issuer))
        || roster.contains(&issuer);
    // A reply has the visibility of what it answers: what was said in an internal note is
    // never quoted, or even acknowledged, where the public can read it.
    let target = if f.internal {
        NoteTarget::MergeRequestInternal(f.mr)
    } else {
        NoteTarget::MergeRequest(f.mr)
    };
    let reply = |text: String| Action::PostNote {
        target: target.clone(),
        marker: Marker::Command,
        body: format!("{marker}\n{text}"),
    };
    let who = neutralize::mention(f.issuer);
    if !authorized {
        return Ok(vec![reply(messages.command_reply(
            "command_denied.md",
            &who,
            f.bot,
            None,
        )?)]);
    }
    let mut actions = Vec::new();
    match &f.command {
        Command::Help => actions.push(reply(messages.command_reply(
            "command_help.md",
            &who,
            f.bot,
            None,
        )?)),
        Command::Unknown(word) => actions.push(reply(messages.command_reply(
            "command_unknown.md",
            &who,
            f.bot,
            Some(&neutralize::inline(word)),
        )?)),
        Command::Ready => {
            let existing = f
                .reviewers
                .iter()
                .find(|(_, u)| roster.contains(&u.to_ascii_lowercase()))
                .map(|(_, u)| u.clone());
            let reviewer = match existing {
                Some(r) => Some(r),
                None => {
                    let choice = f
                        .roster
                        .and_then(|r| choose_reviewer(&policies.routing.roster, r));
                    if let Some(c) = &choice {
                        let mut ids: Vec<UserId> = f.reviewers.iter().map(|(id, _)| *id).collect();
                        ids.extend(c.id);
                        actions.push(Action::EditMergeRequest {
                            mr: f.mr,
                            add_labels: vec![],
                            remove_labels: vec![],
                            reviewer_ids: Some(ids),
                            added_reviewer: Some(c.username.clone()),
                        });
                    }
                    choice.map(|c| c.username)
                }
            };
            let ping = reviewer.map(|r| neutralize::mention(&r));
            actions.push(reply(messages.command_reply(
                "command_ready.md",
                &who,
                f.bot,
                ping.as_deref(),
            )?));
        }
        Command::Recheck => {
            let state_name = match &f.cca {
                None => "not applicable (the author is not recognised as a Co-Create organization member)".to_owned(),
                Some(state) => {
                    let fixed: Vec<Marker> = f.markers.iter().flat_map(|m| Marker::found_in(m)).collect();
                    let facts = CcaMrFacts {
                        mr: f.mr,
                        head_sha: f.head_sha,
                        labels: f.labels,
                        head_status: f.head_status,
                        markers: Some(&fixed),
                    };
                    let plan = plan_cca(&facts, state, &policies.routing.labels);
                    actions.extend(cca_actions(&facts, &plan, state, f.author, policies, messages)?);
                    state.public_summary().to_owned()
                }
            };
            actions.push(reply(messages.command_reply(
                "command_recheck.md",
                &who,
                f.bot,
                Some(&state_name),
            )?));
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_table() {
        let bot = "cocreate-bot";
        let rows: &[(&str, Option<Command>)] = &[
            ("@cocreate-bot help", Some(Command::Help)),
            ("@CoCreate-Bot HELP please", Some(Command::Help)),
            ("Thanks! @cocreate-bot ready", Some(Command::Ready)),
            ("@cocreate-bot: recheck", Some(Command::Recheck)),
            (
                "@cocreate-bot, ready for another look",
                Some(Command::Ready),
            ),
            (
                "@cocreate-bot merge it",
                Some(Command::Unknown("merge".into())),
            ),
            ("@cocreate-bot", Some(Command::Unknown(String::new()))),
            ("no mention here: help ready", None),
            ("`@cocreate-bot ready`", None),
            ("```\n@cocreate-bot ready\n```", None),
            ("> @cocreate-bot ready\nquoted", None),
            ("    @cocreate-bot ready", None),
            ("mail me at x@cocreate-bot.example.com", None),
            ("@cocreate-bot-2 ready", None),
            ("@cocreate-botty ready", None),
            (
                "```\ncode\n```\n@cocreate-bot recheck",
                Some(Command::Recheck),
            ),
        ];
        for (body, want) in rows {
            assert_eq!(&parse_command(body, bot), want, "{body:?}");
        }
    }
}

//! Contributor commands in MR comments: `@<bot> help`, `@<bot> ready`, `@<bot> recheck`.
//!
//! The parser is pure and strict about where a command may appear: text in code blocks, inline
//! code and quotes never triggers one (people quote the bot's own help).

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{
    cca_actions, choose_reviewer, plan_cca, Action, CcaMrFacts, CcaState, NoteTarget, RosterFacts,
    Step,
};
use crate::domain::{MrRef, UserId};
use crate::messages::{Marker, Messages, Note, TemplateError};
use crate::neutralize;
use crate::policy::Policies;

/// At most one reply per person per MR in this window, whatever they post.
pub const REPLY_WINDOW: TimeDelta = TimeDelta::seconds(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", content = "word", rename_all = "snake_case")]
pub enum Command {
    Help,
    Ready,
    Recheck,
    /// Mentioned the bot with a word it does not know (or none).
    Unknown(String),
}

/// The body without HTML comments (`<!-- … -->`, also across lines, and an unclosed one to
/// the end): GitLab renders nothing of them, so nobody reading the thread sees a command there.
fn without_html_comments(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i + 4..].find("-->") {
            Some(j) => rest = &rest[i + 4 + j + 3..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Text outside HTML comments, fenced code blocks, indented code, inline code (also
/// `<code>`/`<pre>`), quote lines and GitLab's multi-line `>>>` quotes.
fn visible_text(body: &str) -> String {
    let body = without_html_comments(body);
    let mut out = String::new();
    let mut in_fence = false;
    let mut in_quote = false;
    let mut in_pre = false;
    for line in body.lines() {
        let t = line.trim_start();
        if !in_quote && (t.starts_with("```") || t.starts_with("~~~")) {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence && t.starts_with(">>>") {
            in_quote = !in_quote;
            continue;
        }
        let lower = t.to_ascii_lowercase();
        if lower.contains("<pre>") || lower.contains("<pre ") {
            in_pre = !lower.contains("</pre>");
            continue;
        }
        if in_pre {
            in_pre = !lower.contains("</pre>");
            continue;
        }
        if in_fence
            || in_quote
            || t.starts_with('>')
            || line.starts_with("    ")
            || line.starts_with('\t')
        {
            continue;
        }
        // Drop inline code spans, backticks and <code>…</code> alike.
        let mut inside = false;
        let mut rest = line;
        while !rest.is_empty() {
            let lower = rest.to_ascii_lowercase();
            if !inside && lower.starts_with("<code") {
                match lower.find("</code>") {
                    Some(end) => rest = &rest[end + "</code>".len()..],
                    None => rest = "",
                }
                continue;
            }
            let Some(c) = rest.chars().next() else { break };
            if c == '`' {
                inside = !inside;
            } else if !inside {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
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

/// One note the bot's own user wrote on the MR: its markers and when GitLab saved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotNote {
    pub markers: Vec<Marker>,
    pub at: Option<DateTime<Utc>>,
}

/// The command comment as GitLab has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandNote {
    pub id: u64,
    pub command: Command,
    pub issuer_id: UserId,
    pub issuer: String,
    /// Internal note (only project members see it): the answer is internal too.
    pub internal: bool,
    pub at: Option<DateTime<Utc>>,
}

/// What a command's answer depends on, all as read from GitLab.
#[derive(Debug, Clone)]
pub struct CommandFacts<'a> {
    pub mr: MrRef,
    pub note: &'a CommandNote,
    /// The MR's author and reviewers as GitLab has them (never the webhook's claim).
    pub author: &'a str,
    pub reviewers: &'a [(UserId, String)],
    /// The MR is a Co-Create MR: its author is recognised as a Co-Create organization member.
    pub cocreate: bool,
    /// The bot's own notes on the MR (notes by anyone else carry no markers that count).
    pub bot_notes: &'a [BotNote],
    /// The organization's CCA state, when the author is recognised.
    pub cca: Option<CcaState>,
    pub labels: &'a [String],
    pub head_sha: Option<&'a str>,
    pub head_status: Option<Option<&'a str>>,
    pub roster: Option<&'a RosterFacts>,
    pub bot: &'a str,
}

/// Markers of a reply: which command note it answers, and to whom.
fn reply_markers(note_id: u64, to: UserId) -> (Marker, Marker) {
    (Marker::Cmd(note_id), Marker::CmdTo(to))
}

/// Who may give commands on an MR: its author, its reviewers, the Contributor Success roster.
pub fn may_command(f: &CommandFacts<'_>, policies: &Policies) -> bool {
    let issuer = f.note.issuer.to_ascii_lowercase();
    issuer == f.author.to_ascii_lowercase()
        || f.reviewers
            .iter()
            .any(|(id, u)| *id == f.note.issuer_id || u.eq_ignore_ascii_case(&issuer))
        || super::is_roster_reviewer(&policies.routing.roster, &issuer)
}

/// The reads a command's answer asks for ([`Step::Need`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandNeeds {
    /// `ready` may have to choose a reviewer: the roster's load.
    Roster,
    /// `recheck` repairs the `cocreate/cca` status of this head commit.
    HeadStatus(String),
}

/// The answer to one command.
///
/// - Not on a Co-Create MR: no answer at all (the bot has nothing to offer there); nor to
///   the bot's own notes.
/// - Each command note is answered once (keyed by its note id), even when redelivered.
/// - At most one reply per person per MR per [`REPLY_WINDOW`], whatever they post.
/// - Someone who may not command gets one polite refusal per MR, then silence.
/// - The reply has the visibility of the command: internal for an internal note.
pub fn decide_command(
    f: &CommandFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Step<Vec<Action>, CommandNeeds>, TemplateError> {
    if !f.cocreate || f.note.issuer.eq_ignore_ascii_case(f.bot) {
        return Ok(Step::Act(vec![]));
    }
    let (marker, to_marker) = reply_markers(f.note.id, f.note.issuer_id);
    let has = |m: &Marker| f.bot_notes.iter().any(|n| n.markers.contains(m));
    if has(&marker) {
        return Ok(Step::Act(vec![]));
    }
    let recently_answered = f.bot_notes.iter().any(|n| {
        n.markers.contains(&to_marker)
            && match (n.at, f.note.at) {
                (Some(reply), Some(asked)) => reply >= asked - REPLY_WINDOW,
                // Without times, a reply to the same person counts as recent.
                _ => true,
            }
    });
    if recently_answered {
        return Ok(Step::Act(vec![]));
    }
    // A reply has the visibility of what it answers: what was said in an internal note is
    // never quoted, or even acknowledged, where the public can read it.
    let target = if f.note.internal {
        NoteTarget::MergeRequestInternal(f.mr)
    } else {
        NoteTarget::MergeRequest(f.mr)
    };
    let reply = |extra_marker: Option<&Marker>, text: String| Action::PostNote {
        target: target.clone(),
        note: Note {
            markers: [marker.clone(), to_marker.clone()]
                .into_iter()
                .chain(extra_marker.cloned())
                .collect(),
            body: text,
        },
    };
    let who = neutralize::mention(&f.note.issuer);
    if !may_command(f, policies) {
        let denied = Marker::CmdDenied(f.note.issuer_id);
        if has(&denied) {
            return Ok(Step::Act(vec![]));
        }
        return Ok(Step::Act(vec![reply(
            Some(&denied),
            messages.command_reply("command_denied.md", &who, f.bot, None)?,
        )]));
    }
    // What the answer still needs: the roster's load for a `ready` without a roster reviewer,
    // the head commit's status for a `recheck` of a Co-Create MR.
    let needs = match &f.note.command {
        Command::Ready
            if f.roster.is_none()
                && super::roster_reviewer(&policies.routing.roster, f.reviewers).is_none() =>
        {
            Some(CommandNeeds::Roster)
        }
        Command::Recheck if f.cca.is_some() && f.head_status.is_none() => f
            .head_sha
            .map(|sha| CommandNeeds::HeadStatus(sha.to_owned())),
        _ => None,
    };
    if let Some(needs) = needs {
        return Ok(Step::Need(needs));
    }
    let mut actions = Vec::new();
    match &f.note.command {
        Command::Help => actions.push(reply(
            None,
            messages.command_reply("command_help.md", &who, f.bot, None)?,
        )),
        Command::Unknown(word) => actions.push(reply(
            None,
            messages.command_reply(
                "command_unknown.md",
                &who,
                f.bot,
                Some(&neutralize::inline(word)),
            )?,
        )),
        Command::Ready => {
            let existing = super::roster_reviewer(&policies.routing.roster, f.reviewers)
                .map(|(_, u)| u.clone());
            let reviewer = match existing {
                Some(r) => Some(r),
                None => {
                    let choice = f
                        .roster
                        .and_then(|r| choose_reviewer(&policies.routing.roster, r))
                        .filter(|c| c.id.is_some());
                    if let Some(c) = &choice {
                        actions.push(Action::EditMergeRequest {
                            mr: f.mr,
                            add_labels: vec![],
                            remove_labels: vec![],
                            reviewer_ids: Some(super::append_reviewer(f.reviewers, c.id)),
                            added_reviewer: Some(c.username.clone()),
                        });
                    }
                    choice.map(|c| c.username)
                }
            };
            // Only promise what happens: a named reviewer is pinged by this very note; without
            // one, the lead is (when there is one), and the note says nobody was assigned.
            let text = match reviewer {
                Some(r) => messages.command_reply(
                    "command_ready.md",
                    &who,
                    f.bot,
                    Some(&neutralize::mention(&r)),
                )?,
                None => messages.command_reply(
                    "command_ready_unassigned.md",
                    &who,
                    f.bot,
                    policies
                        .routing
                        .roster
                        .lead
                        .as_deref()
                        .map(neutralize::mention)
                        .as_deref(),
                )?,
            };
            actions.push(reply(None, text));
        }
        Command::Recheck => {
            let state_name = match &f.cca {
                None => "not applicable".to_owned(),
                Some(state) => {
                    let fixed: Vec<Marker> = f
                        .bot_notes
                        .iter()
                        .flat_map(|n| n.markers.iter())
                        .filter(|m| Marker::ALL.contains(m))
                        .cloned()
                        .collect();
                    let facts = CcaMrFacts {
                        mr: f.mr,
                        head_sha: f.head_sha,
                        labels: f.labels,
                        head_status: f.head_status,
                        markers: Some(&fixed),
                    };
                    // The bot's markers are given, so the plan never asks for them.
                    let plan = plan_cca(&facts, state, &policies.routing.labels)
                        .act()
                        .unwrap_or_default();
                    actions.extend(cca_actions(
                        &facts, &plan, state, f.author, policies, messages,
                    )?);
                    state.public_summary().to_owned()
                }
            };
            actions.push(reply(
                None,
                messages.command_reply("command_recheck.md", &who, f.bot, Some(&state_name))?,
            ));
        }
    }
    Ok(Step::Act(actions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    /// What the bot writes for one command, as (internal, body) of its notes plus other writes.
    fn answer(
        note: &CommandNote,
        cocreate: bool,
        bot_notes: &[BotNote],
        reviewers: &[(UserId, String)],
        roster: Option<&RosterFacts>,
        policies: &Policies,
    ) -> (Vec<(bool, String)>, usize) {
        let m = Messages::embedded().expect("templates");
        let f = CommandFacts {
            mr: MrRef {
                project_id: 2,
                iid: 16,
            },
            note,
            author: "aero-dev-1",
            reviewers,
            cocreate,
            bot_notes,
            cca: None,
            labels: &[],
            head_sha: None,
            head_status: None,
            roster,
            bot: "cocreate-bot",
        };
        let actions = decide_command(&f, policies, &m)
            .expect("renders")
            .act()
            .expect("all facts given");
        let notes = actions
            .iter()
            .filter_map(|a| match a {
                Action::PostNote { target, note } => Some((target.is_internal(), note.render())),
                _ => None,
            })
            .collect::<Vec<_>>();
        let others = actions.len() - notes.len();
        (notes, others)
    }

    fn note(id: u64, issuer: (UserId, &str), command: Command, internal: bool) -> CommandNote {
        CommandNote {
            id,
            command,
            issuer_id: issuer.0,
            issuer: issuer.1.into(),
            internal,
            at: Some(t("2026-11-23T12:00:00Z")),
        }
    }

    fn reply(to: UserId, at: &str, denied: bool) -> BotNote {
        let mut markers = vec![Marker::Cmd(1), Marker::CmdTo(to)];
        if denied {
            markers.push(Marker::CmdDenied(to));
        }
        BotNote {
            markers,
            at: Some(t(at)),
        }
    }

    #[test]
    fn who_is_answered_table() {
        let p = Policies::embedded().expect("examples");
        let dev = (501, "aero-dev-1");
        let stranger = (600, "outsider");
        let reviewer = vec![(25, "maintainer".to_string())];
        // (case, command note, Co-Create MR, earlier bot notes, notes written, internal, text)
        type Row = (
            &'static str,
            CommandNote,
            bool,
            Vec<BotNote>,
            usize,
            bool,
            &'static str,
        );
        let rows: Vec<Row> = vec![
            (
                "the author's help",
                note(7, dev, Command::Help, false),
                true,
                vec![],
                1,
                false,
                "here is what you can ask",
            ),
            (
                "internal in, internal out",
                note(7, dev, Command::Unknown("secret".into()), true),
                true,
                vec![],
                1,
                true,
                "secret",
            ),
            (
                "a reviewer may command",
                note(7, (25, "maintainer"), Command::Help, false),
                true,
                vec![],
                1,
                false,
                "here is what",
            ),
            (
                "not a Co-Create MR: silence",
                note(7, dev, Command::Help, false),
                false,
                vec![],
                0,
                false,
                "",
            ),
            (
                "not a Co-Create MR: no refusal either",
                note(7, stranger, Command::Help, false),
                false,
                vec![],
                0,
                false,
                "",
            ),
            (
                "answered already",
                note(1, dev, Command::Help, false),
                true,
                vec![reply(501, "2026-11-23T11:00:00Z", false)],
                0,
                false,
                "",
            ),
            (
                "answered 30 s ago",
                note(7, dev, Command::Help, false),
                true,
                vec![reply(501, "2026-11-23T11:59:30Z", false)],
                0,
                false,
                "",
            ),
            (
                "answered after it was asked",
                note(7, dev, Command::Help, false),
                true,
                vec![reply(501, "2026-11-23T12:00:05Z", false)],
                0,
                false,
                "",
            ),
            (
                "answered 2 min ago",
                note(7, dev, Command::Help, false),
                true,
                vec![reply(501, "2026-11-23T11:58:00Z", false)],
                1,
                false,
                "here is what",
            ),
            (
                "someone else was answered",
                note(7, dev, Command::Help, false),
                true,
                vec![reply(25, "2026-11-23T11:59:59Z", false)],
                1,
                false,
                "here is what",
            ),
            (
                "a stranger: one refusal",
                note(7, stranger, Command::Ready, false),
                true,
                vec![],
                1,
                false,
                "only the author",
            ),
            (
                "a stranger refused before",
                note(7, stranger, Command::Ready, false),
                true,
                vec![reply(600, "2026-11-23T09:00:00Z", true)],
                0,
                false,
                "",
            ),
        ];
        for (case, n, cocreate, bot_notes, count, internal, text) in rows {
            let (notes, _) = answer(&n, cocreate, &bot_notes, &reviewer, None, &p);
            assert_eq!(notes.len(), count, "{case}: {notes:#?}");
            if let Some((i, body)) = notes.first() {
                assert_eq!(*i, internal, "{case}");
                assert!(body.contains(text), "{case}: {body}");
            }
        }
    }

    /// The protocol: `ready` without a roster reviewer asks for the roster's load, `recheck`
    /// of a Co-Create MR for its head commit's status; other commands, a stranger and an MR
    /// that is not Co-Create ask for nothing.
    #[test]
    fn needs_table() {
        let p = Policies::embedded().expect("examples");
        let m = Messages::embedded().expect("templates");
        let dev = (501, "aero-dev-1");
        let with_cs = vec![(101, "cs-reviewer-1".to_string())];
        // (case, command, issuer, reviewers, Co-Create, what it asks for)
        type Row<'a> = (
            &'a str,
            Command,
            (UserId, &'a str),
            &'a [(UserId, String)],
            bool,
            Option<CommandNeeds>,
        );
        let rows: Vec<Row> = vec![
            (
                "ready, no roster reviewer",
                Command::Ready,
                dev,
                &[],
                true,
                Some(CommandNeeds::Roster),
            ),
            (
                "ready, a roster reviewer",
                Command::Ready,
                dev,
                &with_cs,
                true,
                None,
            ),
            (
                "ready from a stranger",
                Command::Ready,
                (9, "stranger"),
                &[],
                true,
                None,
            ),
            (
                "ready, not Co-Create",
                Command::Ready,
                dev,
                &[],
                false,
                None,
            ),
            (
                "recheck",
                Command::Recheck,
                dev,
                &[],
                true,
                Some(CommandNeeds::HeadStatus("abc".into())),
            ),
            ("help", Command::Help, dev, &[], true, None),
        ];
        for (case, command, issuer, reviewers, cocreate, want) in rows {
            let n = note(7, issuer, command, false);
            let f = CommandFacts {
                mr: MrRef {
                    project_id: 2,
                    iid: 16,
                },
                note: &n,
                author: "aero-dev-1",
                reviewers,
                cocreate,
                bot_notes: &[],
                cca: cocreate.then_some(CcaState::Missing),
                labels: &[],
                head_sha: Some("abc"),
                head_status: None,
                roster: None,
                bot: "cocreate-bot",
            };
            let step = decide_command(&f, &p, &m).expect("renders");
            assert_eq!(step.need().cloned(), want, "{case}");
        }
    }

    #[test]
    fn ready_promises_only_what_happens() {
        let p = Policies::embedded().expect("examples");
        let dev = (501, "aero-dev-1");
        let ready = note(7, dev, Command::Ready, false);
        // A roster reviewer already: pinged by the reply itself.
        let with_cs = vec![(101, "cs-reviewer-1".to_string())];
        let (notes, writes) = answer(&ready, true, &[], &with_cs, None, &p);
        assert!(
            notes[0].1.contains("@cs-reviewer-1, @aero-dev-1 says"),
            "{notes:?}"
        );
        assert_eq!(writes, 0);
        // Nobody can be assigned: the lead is asked, and nobody is promised.
        let empty = RosterFacts::default();
        let (notes, writes) = answer(&ready, true, &[], &[], Some(&empty), &p);
        assert_eq!(writes, 0);
        assert!(
            notes[0].1.contains("@cs-lead") && notes[0].1.contains("could you pick one"),
            "{notes:?}"
        );
        assert!(!notes[0].1.contains("shortly"), "{notes:?}");
        let mut no_lead = p.clone();
        no_lead.routing.roster.lead = None;
        let (notes, _) = answer(&ready, true, &[], &[], Some(&empty), &no_lead);
        assert!(
            notes[0].1.contains("nobody has been asked yet"),
            "{notes:?}"
        );
    }

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
            ("<!-- @cocreate-bot recheck -->", None),
            ("<!--\n@cocreate-bot recheck\n-->", None),
            ("<!-- never closed\n@cocreate-bot recheck", None),
            ("<!-- x --> @cocreate-bot help", Some(Command::Help)),
            (">>>\n@cocreate-bot ready\n>>>", None),
            (">>>\nquoted\n>>>\n@cocreate-bot help", Some(Command::Help)),
            ("<code>@cocreate-bot ready</code>", None),
            (
                "see <CODE>@cocreate-bot ready</CODE> then @cocreate-bot help",
                Some(Command::Help),
            ),
            ("<pre>\n@cocreate-bot ready\n</pre>", None),
        ];
        for (body, want) in rows {
            assert_eq!(&parse_command(body, bot), want, "{body:?}");
        }
    }
}

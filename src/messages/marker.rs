//! The hidden markers that make the bot's notes and descriptions findable, and the one note
//! type that carries them.
//!
//! Every marker is one HTML comment, `<!-- cocreate:<kind>[:<key>] -->`. This file is the only
//! place that spells that format: [`Marker`]'s `Display` writes it and [`Marker::parse`] reads
//! it back, so a marker written by one rule is always found by another.

use std::fmt;

use serde::Serialize;

use crate::domain::{MrRef, UserId};

/// What a note (or a description the bot wrote) is, by purpose; keyed variants say for what.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "key", rename_all = "kebab-case")]
pub enum Marker {
    /// The welcome note on a Co-Create MR.
    Welcome,
    /// The CCA notes on an MR, one per state.
    CcaMissing,
    CcaExpired,
    CcaSigned,
    /// An answer to the command comment with this note id.
    Cmd(u64),
    /// ... addressed to this user.
    CmdTo(UserId),
    /// ... refusing this user (one refusal per user and MR).
    CmdDenied(UserId),
    /// A nudge for the wait that began at `period`.
    NudgePing(String),
    NudgeAuthor(String),
    NudgeEscalate(String),
    /// The note on an intake issue naming what is missing (keyed by a digest of the problems).
    IntakeInvalid(String),
    /// The note on an intake issue whose organization already has this tracking issue (iid).
    IntakeDuplicate(u64),
    /// The link of one MR on its organization's tracking issue.
    MrLink(MrRef),
    /// The description of an organization's tracking issue (its slug).
    Engagement(String),
    /// The note on a tracking issue whose stage skipped a step (keyed by the transition).
    StageSkip(String),
    /// The checklist appended to an intake issue (its version).
    Checklist(String),
    /// The quarter's dashboard issue.
    Dashboard(String),
    /// The note on a tracking issue listing and pinging its account team (`account_team: mention`).
    AccountTeam,
    /// The note asking the account team to hold the alignment meeting (stage `meeting`).
    MeetingRequest,
    /// The note on a meeting-notes or onboarding issue linking it to this tracking issue (iid).
    EngagementDoc(u64),
    /// The note on a tracking issue that stayed at one stage too long (`<stage>:<since>`).
    EngagementStall(String),
    /// The thank-you note on a merged Co-Create MR.
    Thanks(MrRef),
    /// The note on a tracking issue that one of its MRs was merged.
    MrMerged(MrRef),
    /// The CLA managers' note on a tracking issue for one agreement state (`<state>:<key>`).
    CcaWorklist(String),
    /// A marker this version does not know (written by another version): kept as read, so it
    /// still counts as ours, never written.
    Other(String),
}

const OPEN: &str = "<!-- cocreate:";

/// `<project id>!<iid>`, as MR markers key it.
fn mr_ref(v: &str) -> Option<MrRef> {
    v.split_once('!').and_then(|(p, i)| {
        Some(MrRef {
            project_id: p.parse().ok()?,
            iid: i.parse().ok()?,
        })
    })
}
const CLOSE: &str = " -->";

impl Marker {
    /// The fixed MR markers (welcome and CCA notes), in their order.
    pub const ALL: [Marker; 4] = [
        Marker::Welcome,
        Marker::CcaMissing,
        Marker::CcaExpired,
        Marker::CcaSigned,
    ];

    fn kind_and_key(&self) -> (&str, Option<String>) {
        match self {
            Marker::Welcome => ("welcome", None),
            Marker::CcaMissing => ("cca-missing", None),
            Marker::CcaExpired => ("cca-expired", None),
            Marker::CcaSigned => ("cca-signed", None),
            Marker::Cmd(id) => ("cmd", Some(id.to_string())),
            Marker::CmdTo(id) => ("cmd-to", Some(id.to_string())),
            Marker::CmdDenied(id) => ("cmd-denied", Some(id.to_string())),
            Marker::NudgePing(p) => ("nudge-ping", Some(p.clone())),
            Marker::NudgeAuthor(p) => ("nudge-author", Some(p.clone())),
            Marker::NudgeEscalate(p) => ("nudge-escalate", Some(p.clone())),
            Marker::IntakeInvalid(d) => ("intake-invalid", Some(d.clone())),
            Marker::IntakeDuplicate(iid) => ("intake-duplicate", Some(iid.to_string())),
            Marker::MrLink(mr) => ("mr-link", Some(format!("{}!{}", mr.project_id, mr.iid))),
            Marker::Engagement(slug) => ("engagement", Some(slug.clone())),
            Marker::StageSkip(k) => ("stage-skip", Some(k.clone())),
            Marker::Checklist(v) => ("checklist", Some(v.clone())),
            Marker::Dashboard(q) => ("dashboard", Some(q.clone())),
            Marker::AccountTeam => ("account-team", None),
            Marker::MeetingRequest => ("meeting-request", None),
            Marker::EngagementDoc(iid) => ("engagement-doc", Some(iid.to_string())),
            Marker::EngagementStall(k) => ("engagement-stall", Some(k.clone())),
            Marker::Thanks(mr) => ("thanks", Some(format!("{}!{}", mr.project_id, mr.iid))),
            Marker::MrMerged(mr) => ("mr-merged", Some(format!("{}!{}", mr.project_id, mr.iid))),
            Marker::CcaWorklist(k) => ("cca-worklist", Some(k.clone())),
            Marker::Other(inner) => (inner.as_str(), None),
        }
    }

    /// Reads one marker, `<!-- cocreate:… -->` exactly. A well-formed marker of a kind this
    /// version does not know is [`Marker::Other`]; anything else is `None`.
    pub fn parse(s: &str) -> Option<Marker> {
        let inner = s.strip_prefix(OPEN)?.strip_suffix(CLOSE)?;
        if inner.is_empty() || inner.contains("-->") || inner.contains('\n') {
            return None;
        }
        let (kind, key) = match inner.split_once(':') {
            Some((k, v)) => (k, Some(v)),
            None => (inner, None),
        };
        let other = || Some(Marker::Other(inner.to_owned()));
        let num = |v: &str| v.parse::<u64>().ok();
        Some(match (kind, key) {
            ("welcome", None) => Marker::Welcome,
            ("cca-missing", None) => Marker::CcaMissing,
            ("cca-expired", None) => Marker::CcaExpired,
            ("cca-signed", None) => Marker::CcaSigned,
            ("cmd", Some(v)) => return num(v).map(Marker::Cmd).or_else(other),
            ("cmd-to", Some(v)) => return num(v).map(Marker::CmdTo).or_else(other),
            ("cmd-denied", Some(v)) => return num(v).map(Marker::CmdDenied).or_else(other),
            ("nudge-ping", Some(v)) => Marker::NudgePing(v.to_owned()),
            ("nudge-author", Some(v)) => Marker::NudgeAuthor(v.to_owned()),
            ("nudge-escalate", Some(v)) => Marker::NudgeEscalate(v.to_owned()),
            ("intake-invalid", Some(v)) => Marker::IntakeInvalid(v.to_owned()),
            ("intake-duplicate", Some(v)) => {
                return num(v).map(Marker::IntakeDuplicate).or_else(other)
            }
            ("mr-link", Some(v)) => return mr_ref(v).map(Marker::MrLink).or_else(other),
            ("thanks", Some(v)) => return mr_ref(v).map(Marker::Thanks).or_else(other),
            ("mr-merged", Some(v)) => return mr_ref(v).map(Marker::MrMerged).or_else(other),
            ("engagement-stall", Some(v)) => Marker::EngagementStall(v.to_owned()),
            ("cca-worklist", Some(v)) => Marker::CcaWorklist(v.to_owned()),
            ("engagement", Some(v)) => Marker::Engagement(v.to_owned()),
            ("stage-skip", Some(v)) => Marker::StageSkip(v.to_owned()),
            ("checklist", Some(v)) => Marker::Checklist(v.to_owned()),
            ("dashboard", Some(v)) => Marker::Dashboard(v.to_owned()),
            ("account-team", None) => Marker::AccountTeam,
            ("meeting-request", None) => Marker::MeetingRequest,
            ("engagement-doc", Some(v)) => return num(v).map(Marker::EngagementDoc).or_else(other),
            _ => return other(),
        })
    }

    /// Every marker in a text, in order of appearance.
    pub fn all_in(text: &str) -> Vec<Marker> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            let tail = &rest[start..];
            let Some(end) = tail.find("-->") else { break };
            out.extend(Marker::parse(&tail[..end + 3]));
            rest = &tail[end + 3..];
        }
        out
    }

    /// Whether this marker is in a text.
    pub fn is_in(&self, text: &str) -> bool {
        Marker::all_in(text).contains(self)
    }

    /// The fixed MR markers found in a text.
    pub fn found_in(text: &str) -> impl Iterator<Item = Marker> + '_ {
        Marker::ALL.into_iter().filter(move |m| m.is_in(text))
    }

    /// The marker without its comment delimiters (`cocreate:kind[:key]`): what GitLab's issue
    /// search is given to find a description that carries it.
    pub fn search_term(&self) -> String {
        let full = self.to_string();
        full.trim_start_matches("<!-- ")
            .trim_end_matches(CLOSE)
            .to_owned()
    }

    /// The marker as written: `<!-- cocreate:kind[:key] -->`.
    pub fn html(&self) -> String {
        self.to_string()
    }

    /// Prefixed to a text: the marker line, then the text.
    pub fn before(&self, text: &str) -> String {
        format!("{self}\n{}", text.trim_end())
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind_and_key() {
            (kind, Some(key)) => write!(f, "{OPEN}{kind}:{key}{CLOSE}"),
            (kind, None) => write!(f, "{OPEN}{kind}{CLOSE}"),
        }
    }
}

/// A note the bot writes: its markers (what it is, so the next run finds it) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The note's marker first; further markers record what it answers or to whom.
    pub markers: Vec<Marker>,
    /// The visible text (rendered from a template, user text neutralized).
    pub body: String,
}

impl Note {
    pub fn new(marker: Marker, body: impl Into<String>) -> Self {
        Self {
            markers: vec![marker],
            body: body.into(),
        }
    }

    /// This note also carrying `marker`, written after the ones it has.
    pub fn and(mut self, marker: Marker) -> Self {
        self.markers.push(marker);
        self
    }

    /// The marker that says what the note is (its first).
    pub fn marker(&self) -> Option<&Marker> {
        self.markers.first()
    }

    /// The text posted to GitLab: one marker per line, then the body.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for m in &self.markers {
            out.push_str(&m.to_string());
            out.push('\n');
        }
        out.push_str(self.body.trim_end());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marker_reads_back_as_written() {
        let mr = MrRef {
            project_id: 2,
            iid: 16,
        };
        let all = vec![
            Marker::Welcome,
            Marker::CcaMissing,
            Marker::CcaExpired,
            Marker::CcaSigned,
            Marker::Cmd(41),
            Marker::CmdTo(7),
            Marker::CmdDenied(7),
            Marker::NudgePing("2026-11-23T12:00".into()),
            Marker::NudgeAuthor("2026-11-23T12:00".into()),
            Marker::NudgeEscalate("2026-11-23T12:00".into()),
            Marker::IntakeInvalid("0a1b2c".into()),
            Marker::IntakeDuplicate(12),
            Marker::MrLink(mr),
            Marker::Engagement("example-org".into()),
            Marker::StageSkip("contacted-aligned".into()),
            Marker::Checklist("v1".into()),
            Marker::Dashboard("FY26Q1".into()),
            Marker::EngagementStall("contacted:2026-11-02T10:00".into()),
            Marker::Thanks(mr),
            Marker::MrMerged(mr),
            Marker::CcaWorklist("missing:none".into()),
            Marker::Other("from-a-later-version".into()),
        ];
        for m in &all {
            assert_eq!(Marker::parse(&m.to_string()).as_ref(), Some(m), "{m}");
        }
        assert_eq!(
            Marker::MrLink(mr).to_string(),
            "<!-- cocreate:mr-link:2!16 -->"
        );
        assert_eq!(Marker::Welcome.to_string(), "<!-- cocreate:welcome -->");
        assert_eq!(Marker::Cmd(41).to_string(), "<!-- cocreate:cmd:41 -->");
        assert_eq!(
            Marker::Dashboard("FY26Q1".into()).search_term(),
            "cocreate:dashboard:FY26Q1"
        );
    }

    #[test]
    fn text_that_only_looks_like_a_marker_is_not_one() {
        for s in [
            "<!-- cocreate: -->",
            "<!-- cocreate:welcome-->",
            "<!-- cocreate:welcome -->x",
            "<!-- other:welcome -->",
            "<!-- cocreate:mr-link:2 -->",
        ] {
            let parsed = Marker::parse(s);
            assert!(
                !matches!(parsed, Some(Marker::Welcome | Marker::MrLink(_))),
                "{s}: {parsed:?}"
            );
        }
        // A malformed key of a known kind is kept as unknown, not misread.
        assert_eq!(
            Marker::parse("<!-- cocreate:cmd:x -->"),
            Some(Marker::Other("cmd:x".into()))
        );
    }

    #[test]
    fn markers_are_found_in_order_in_a_body() {
        let body = "<!-- cocreate:cca-missing -->\n<!-- cocreate:welcome -->\nHello <!-- cocreate:cmd:3 -->";
        assert_eq!(
            Marker::all_in(body),
            vec![Marker::CcaMissing, Marker::Welcome, Marker::Cmd(3)]
        );
        assert!(Marker::Welcome.is_in(body));
        assert!(!Marker::CcaSigned.is_in(body));
        assert_eq!(
            Marker::found_in(body).collect::<Vec<_>>(),
            vec![Marker::Welcome, Marker::CcaMissing]
        );
    }

    #[test]
    fn a_note_renders_its_markers_then_its_text() {
        let note = Note::new(Marker::Cmd(3), "Hi @someone\n\n").and(Marker::CmdTo(7));
        assert_eq!(
            note.render(),
            "<!-- cocreate:cmd:3 -->\n<!-- cocreate:cmd-to:7 -->\nHi @someone"
        );
        assert_eq!(note.marker(), Some(&Marker::Cmd(3)));
    }
}

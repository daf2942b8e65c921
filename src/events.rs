//! Typed webhook payloads: only the fields we use; unknown fields are ignored.
//!
//! Parsing errors name the JSON path (`object_attributes.iid: missing field`), so an operator
//! can tell a GitLab change from a broken sender.

use serde::Deserialize;

use crate::domain::{MrRef, UserId};

/// The `X-Gitlab-Event` header values we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    MergeRequest,
    /// Instance-wide system hook; only its `merge_request` events are handled.
    System,
    Issue,
    ConfidentialIssue,
    Note,
    ConfidentialNote,
    /// Pushes; only those to the policy project's branch matter (they reload the policies).
    Push,
    Other,
}

impl EventKind {
    pub fn from_header(value: &str) -> Self {
        match value {
            "Merge Request Hook" => Self::MergeRequest,
            "System Hook" => Self::System,
            "Issue Hook" => Self::Issue,
            "Confidential Issue Hook" => Self::ConfidentialIssue,
            "Note Hook" => Self::Note,
            "Confidential Note Hook" => Self::ConfidentialNote,
            "Push Hook" => Self::Push,
            _ => Self::Other,
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Self::MergeRequest => "Merge Request Hook",
            Self::System => "System Hook",
            Self::Issue => "Issue Hook",
            Self::ConfidentialIssue => "Confidential Issue Hook",
            Self::Note => "Note Hook",
            Self::ConfidentialNote => "Confidential Note Hook",
            Self::Push => "Push Hook",
            Self::Other => "Other",
        }
    }
}

/// An error in a payload, with the JSON path where it happened.
#[derive(Debug, thiserror::Error)]
#[error("{kind} payload: at `{path}`: {message}")]
pub struct PayloadError {
    pub kind: &'static str,
    pub path: String,
    pub message: String,
}

/// A webhook we act on, parsed from its body.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    MergeRequest(MergeRequestEvent),
    Issue(IssueEvent),
    Note(NoteEvent),
    Push(PushEvent),
}

/// Why a delivery is accepted but not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    UnsupportedKind(String),
    SystemHookObject(String),
}

/// What an event is about, independent of how it reached us: `note:<id>` for a new comment,
/// `issue-open:<project>:<iid>` for an opened issue. A webhook delivery and the same thing
/// found later by `recover`'s fallback sweep share it, so the queue stores it once. Other
/// events (MR updates, issue edits, pushes) have none: each delivery is its own.
pub fn identity(event: &Event) -> Option<String> {
    match event {
        Event::Note(n)
            if matches!(n.object_attributes.action.as_deref(), None | Some("create")) =>
        {
            Some(format!("note:{}", n.object_attributes.id))
        }
        Event::Issue(i) if i.object_attributes.action.as_deref() == Some("open") => Some(format!(
            "issue-open:{}:{}",
            i.project_id(),
            i.object_attributes.iid
        )),
        _ => None,
    }
}

/// Parses a delivery: `Ok(Ok(event))` to act on, `Ok(Err(ignored))` for kinds we skip,
/// `Err` for a supported kind whose body is malformed.
pub fn parse(kind: EventKind, body: &[u8]) -> Result<Result<Event, Ignored>, PayloadError> {
    match kind {
        EventKind::MergeRequest => parse_as(kind, body).map(|e| Ok(Event::MergeRequest(e))),
        EventKind::System => {
            #[derive(Deserialize)]
            struct Probe {
                object_kind: Option<String>,
                event_name: Option<String>,
            }
            let probe: Probe = parse_as(kind, body)?;
            match probe.object_kind.as_deref() {
                Some("merge_request") => parse_as(kind, body).map(|e| Ok(Event::MergeRequest(e))),
                other => Ok(Err(Ignored::SystemHookObject(
                    other
                        .or(probe.event_name.as_deref())
                        .unwrap_or("unknown")
                        .to_owned(),
                ))),
            }
        }
        EventKind::Issue | EventKind::ConfidentialIssue => {
            parse_as(kind, body).map(|e| Ok(Event::Issue(e)))
        }
        EventKind::Note => parse_as(kind, body).map(|e| Ok(Event::Note(e))),
        // GitLab sends internal notes (and notes on confidential issues) as this kind.
        EventKind::ConfidentialNote => parse_as(kind, body).map(|mut e: NoteEvent| {
            e.confidential_hook = true;
            Ok(Event::Note(e))
        }),
        EventKind::Push => parse_as(kind, body).map(|e| Ok(Event::Push(e))),
        other => Ok(Err(Ignored::UnsupportedKind(other.header().to_owned()))),
    }
}

fn parse_as<T: for<'de> Deserialize<'de>>(kind: EventKind, body: &[u8]) -> Result<T, PayloadError> {
    // Fast path; the JSON path of an error is worked out only when there is one.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| PayloadError {
        kind: kind.header(),
        path: excerpt(&match e.path().to_string() {
            p if p == "?" => "(document)".to_owned(),
            p => p,
        }),
        message: excerpt(&e.inner().to_string()),
    })?;
    // The fast path failed: if only for data after the document, say so (not accepted).
    de.end().map_err(|e| PayloadError {
        kind: kind.header(),
        path: "(document)".to_owned(),
        message: excerpt(&e.to_string()),
    })?;
    Ok(value)
}

/// Longest piece of a payload quoted in an error (serde quotes bad values in full; a 1 MB
/// field must not come back in the 400 body and the log).
const EXCERPT_CHARS: usize = 160;

/// `text` cut to [`EXCERPT_CHARS`] characters, marked with `…` when cut.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PayloadUser {
    #[serde(default)]
    pub id: Option<UserId>,
    pub username: String,
    #[serde(default)]
    pub name: String,
    /// Usually `[REDACTED]` in recent GitLab versions; never trusted for recognition.
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PayloadProject {
    pub id: u64,
    #[serde(default)]
    pub path_with_namespace: String,
    #[serde(default)]
    pub web_url: String,
}

/// `Push Hook`: a branch or tag of a project moved.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PushEvent {
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The new head (all zeros when the branch was deleted).
    pub after: String,
    pub project: PayloadProject,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PayloadLabel {
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PayloadReviewer {
    pub id: UserId,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MergeRequestAttributes {
    pub id: u64,
    pub iid: u64,
    pub title: String,
    pub author_id: UserId,
    pub state: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub target_project_id: Option<u64>,
    #[serde(default)]
    pub reviewer_ids: Vec<UserId>,
    #[serde(default)]
    pub last_commit: Option<PayloadCommit>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PayloadCommit {
    pub id: String,
}

/// `Merge Request Hook` (and the `merge_request` system hook).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MergeRequestEvent {
    pub object_kind: String,
    pub user: PayloadUser,
    pub project: PayloadProject,
    pub object_attributes: MergeRequestAttributes,
    #[serde(default)]
    pub labels: Vec<PayloadLabel>,
    #[serde(default)]
    pub reviewers: Vec<PayloadReviewer>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IssueAttributes {
    pub id: u64,
    pub iid: u64,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub author_id: UserId,
    #[serde(default)]
    pub project_id: Option<u64>,
    pub state: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub confidential: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LabelChange {
    #[serde(default)]
    pub previous: Vec<PayloadLabel>,
    #[serde(default)]
    pub current: Vec<PayloadLabel>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct IssueChanges {
    #[serde(default)]
    pub labels: Option<LabelChange>,
}

/// `Issue Hook` and `Confidential Issue Hook` (work item events of type issue).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IssueEvent {
    pub object_kind: String,
    pub user: PayloadUser,
    pub project: PayloadProject,
    pub object_attributes: IssueAttributes,
    #[serde(default)]
    pub labels: Vec<PayloadLabel>,
    #[serde(default)]
    pub changes: IssueChanges,
}

impl IssueEvent {
    pub fn project_id(&self) -> u64 {
        self.object_attributes.project_id.unwrap_or(self.project.id)
    }

    /// Labels added by the change this event reports (empty when it reports none).
    pub fn added_labels(&self) -> Vec<String> {
        match &self.changes.labels {
            Some(c) => c
                .current
                .iter()
                .filter(|l| !c.previous.iter().any(|p| p.title == l.title))
                .map(|l| l.title.clone())
                .collect(),
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NoteAttributes {
    pub id: u64,
    pub note: String,
    pub noteable_type: String,
    #[serde(default)]
    pub system: bool,
    /// An internal note: only project members (Reporter and up) see it.
    #[serde(default)]
    pub internal: bool,
    /// The older name of `internal`, still sent by some GitLab versions.
    #[serde(default)]
    pub confidential: Option<bool>,
    /// `create` or `update` (an edit) on GitLab 16.11+; absent on older versions (a new note).
    #[serde(default)]
    pub action: Option<String>,
}

/// The MR a note was written on (only present for MR notes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NoteMergeRequest {
    pub iid: u64,
    pub author_id: UserId,
    #[serde(default)]
    pub target_project_id: Option<u64>,
}

/// `Note Hook` (comments).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NoteEvent {
    pub object_kind: String,
    pub user: PayloadUser,
    pub project: PayloadProject,
    pub object_attributes: NoteAttributes,
    #[serde(default)]
    pub merge_request: Option<NoteMergeRequest>,
    /// Delivered as `Confidential Note Hook` (set by [`parse`], not part of the body).
    #[serde(skip)]
    pub confidential_hook: bool,
}

impl NoteEvent {
    /// Whether the note is visible only to project members: anything GitLab marks internal or
    /// confidential, or delivers through the confidential note hook, counts.
    pub fn is_internal(&self) -> bool {
        self.object_attributes.internal
            || self.object_attributes.confidential.unwrap_or(false)
            || self.confidential_hook
    }
}

impl MergeRequestEvent {
    /// The MR this event is about (the target project holds it).
    pub fn mr(&self) -> MrRef {
        MrRef {
            project_id: self
                .object_attributes
                .target_project_id
                .unwrap_or(self.project.id),
            iid: self.object_attributes.iid,
        }
    }
}

impl Event {
    /// The object the event is about, for logs: `group/project!16`, `group/project#3`, or
    /// the pushed ref.
    pub fn reference(&self) -> String {
        let path = |p: &PayloadProject, id: u64| {
            if p.path_with_namespace.is_empty() {
                format!("project {id}")
            } else {
                p.path_with_namespace.clone()
            }
        };
        match self {
            Event::MergeRequest(e) => {
                let mr = e.mr();
                format!("{}!{}", path(&e.project, mr.project_id), mr.iid)
            }
            Event::Issue(e) => format!(
                "{}#{}",
                path(&e.project, e.project_id()),
                e.object_attributes.iid
            ),
            Event::Note(e) => match &e.merge_request {
                Some(mr) => format!("{}!{} (comment)", path(&e.project, e.project.id), mr.iid),
                None => format!(
                    "{} ({} comment)",
                    path(&e.project, e.project.id),
                    e.object_attributes.noteable_type
                ),
            },
            Event::Push(e) => format!("{} {}", path(&e.project, e.project.id), e.git_ref),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gitlab_documented_push() {
        let Event::Push(push) = parse(EventKind::Push, &fixture("push.json"))
            .expect("valid")
            .expect("supported")
        else {
            panic!("a push event")
        };
        assert_eq!(push.git_ref, "refs/heads/master");
        assert_eq!(push.after, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
        assert_eq!(push.project.path_with_namespace, "mike/diaspora");
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/gitlab/payloads/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn parses_gitlab_documented_merge_request_open() {
        let ev = parse(EventKind::MergeRequest, &fixture("merge_request_open.json"))
            .expect("valid")
            .expect("supported");
        let Event::MergeRequest(mr) = ev else {
            panic!("MR expected")
        };
        assert_eq!(
            mr.mr(),
            MrRef {
                project_id: 2,
                iid: 16
            }
        );
        assert_eq!(mr.object_attributes.action.as_deref(), Some("open"));
        assert_eq!(mr.object_attributes.author_id, 1);
        assert_eq!(mr.labels[0].title, "enhancement");
        assert_eq!(mr.reviewers[0].username, "sjones");
    }

    #[test]
    fn parses_system_hook_merge_request_and_ignores_other_system_events() {
        let ev = parse(
            EventKind::System,
            &fixture("system_hook_merge_request.json"),
        )
        .expect("valid")
        .expect("supported");
        let Event::MergeRequest(mr) = ev else {
            panic!("MR expected")
        };
        assert_eq!(
            mr.mr(),
            MrRef {
                project_id: 14,
                iid: 1
            }
        );
        let ignored =
            parse(EventKind::System, br#"{"event_name":"project_create"}"#).expect("valid JSON");
        assert_eq!(
            ignored,
            Err(Ignored::SystemHookObject("project_create".into()))
        );
    }

    #[test]
    fn parses_gitlab_documented_issue_event_with_label_changes() {
        let ev = parse(EventKind::Issue, &fixture("issue_open.json"))
            .expect("valid")
            .expect("supported");
        let Event::Issue(issue) = ev else {
            panic!("issue expected")
        };
        assert_eq!(issue.object_attributes.action.as_deref(), Some("open"));
        assert!(issue.project_id() > 0);
        let _ = issue.added_labels();
    }

    #[test]
    fn parses_gitlab_documented_merge_request_note() {
        let ev = parse(EventKind::Note, &fixture("note_merge_request.json"))
            .expect("valid")
            .expect("supported");
        let Event::Note(n) = ev else {
            panic!("note expected")
        };
        assert_eq!(n.object_attributes.noteable_type, "MergeRequest");
        assert!(n.merge_request.is_some());
        let commit = parse(EventKind::Note, &fixture("note_commit.json"))
            .expect("valid")
            .expect("supported");
        let Event::Note(c) = commit else {
            panic!("note expected")
        };
        assert!(c.merge_request.is_none());
    }

    #[test]
    fn internal_notes_are_recognised_by_flag_or_hook() {
        let internal = |kind, edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value =
                serde_json::from_slice(&fixture("note_merge_request.json")).expect("json");
            edit(&mut v);
            let body = serde_json::to_vec(&v).expect("json");
            match parse(kind, &body).expect("valid").expect("supported") {
                Event::Note(n) => n.is_internal(),
                other => panic!("{other:?}"),
            }
        };
        assert!(!internal(EventKind::Note, &|_| {}));
        assert!(internal(EventKind::Note, &|v| v["object_attributes"]
            ["internal"] =
            true.into()));
        assert!(internal(EventKind::Note, &|v| v["object_attributes"]
            ["confidential"] =
            true.into()));
        assert!(internal(EventKind::ConfidentialNote, &|_| {}));
    }

    #[test]
    fn unsupported_kinds_are_ignored_even_with_garbage_bodies() {
        let r = parse(EventKind::Other, b"not json").expect("not parsed at all");
        assert!(matches!(r, Err(Ignored::UnsupportedKind(_))));
    }

    #[test]
    fn malformed_payload_errors_name_the_json_path() {
        let err = parse(
            EventKind::MergeRequest,
            br#"{"object_kind":"merge_request","user":{"username":"a"},"project":{"id":1},"object_attributes":{"id":1,"title":"t","author_id":1,"state":"opened"}}"#,
        )
        .expect_err("iid missing");
        assert_eq!(err.path, "object_attributes");
        assert!(err.message.contains("iid"), "{err}");
        let err = parse(
            EventKind::MergeRequest,
            br#"{"object_kind":"merge_request","user":{"username":"a"},"project":{"id":"x"}}"#,
        )
        .expect_err("bad type");
        assert_eq!(err.path, "project.id");
        let err = parse(EventKind::MergeRequest, b"{").expect_err("truncated");
        assert!(
            err.to_string().contains("Merge Request Hook payload"),
            "{err}"
        );
    }
}

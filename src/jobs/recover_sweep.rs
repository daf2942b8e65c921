//! `recover`'s fallback where GitLab has no webhook events API for us (404 before 17.3, 403
//! without the Maintainer / Owner role): besides `reconcile`'s sweep of open MRs (MR state),
//! the two event kinds that sweep cannot re-derive are found by reading GitLab:
//!
//! - the tracking project's issues opened in the window (an intake issue's Issue Hook), and
//! - comments in the window on open Co-Create MRs that address the bot with a command (their
//!   Note Hook).
//!
//! Each is stored as the delivery GitLab would have made, through the receiver's own parse
//! and dedupe path ([`crate::server::admit`]). Its dedupe key is what the event is about
//! ([`crate::events::identity`]: `note:<id>`, `issue-open:<project>:<iid>`), the same key the
//! delivered hook got, so a comment or issue that did reach `serve` is "already had" and a
//! second sweep stores nothing.

use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::decide::commands::parse_command;
use crate::decide::is_own_event;
use crate::gitlab::{path_id, ApiUserRef, Get};
use crate::jobs::JobContext;
use crate::queue::{Enqueued, Queue};
use crate::server::{admit, Admission};

/// Why the sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading {call}: {cause}")]
    Read { call: String, cause: String },
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// What the sweep found and stored.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Issues of the tracking project opened in the window.
    pub issues_found: usize,
    /// Open Co-Create MRs updated in the window whose comments were read.
    pub mrs_read: usize,
    /// Comments in the window that carry a command for the bot.
    pub commands_found: usize,
    pub enqueued: usize,
    pub already_had: usize,
}

/// An issue as the list API returns it (the fields a webhook payload needs).
#[derive(Debug, Deserialize)]
struct ListedIssue {
    id: u64,
    iid: u64,
    project_id: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
    state: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    confidential: bool,
    author: ApiUserRef,
}

/// A note as the notes API returns it.
#[derive(Debug, Deserialize)]
struct ListedNote {
    id: u64,
    body: String,
    author: ApiUserRef,
    #[serde(default)]
    system: bool,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    confidential: Option<bool>,
}

/// The Issue Hook GitLab sends when `issue` is opened (`Confidential Issue Hook` for a
/// confidential one), with the fields cocreate reads.
fn issue_delivery(project_path: &str, issue: &ListedIssue) -> (&'static str, serde_json::Value) {
    let kind = if issue.confidential {
        "Confidential Issue Hook"
    } else {
        "Issue Hook"
    };
    let body = json!({
        "object_kind": "issue",
        "event_type": if issue.confidential { "confidential_issue" } else { "issue" },
        "user": {"id": issue.author.id, "username": issue.author.username},
        "project": {"id": issue.project_id, "path_with_namespace": project_path},
        "object_attributes": {
            "id": issue.id,
            "iid": issue.iid,
            "title": issue.title,
            "description": issue.description,
            "author_id": issue.author.id,
            "project_id": issue.project_id,
            "state": issue.state,
            "action": "open",
            "confidential": issue.confidential,
        },
        "labels": issue.labels.iter().map(|l| json!({"title": l})).collect::<Vec<_>>(),
    });
    (kind, body)
}

/// The Note Hook GitLab sends for a new comment on an MR (`Confidential Note Hook` for an
/// internal one).
fn note_delivery(
    mr: &crate::gitlab::ApiMergeRequest,
    project_path: &str,
    note: &ListedNote,
) -> (&'static str, serde_json::Value) {
    let internal = note.internal || note.confidential.unwrap_or(false);
    let kind = if internal {
        "Confidential Note Hook"
    } else {
        "Note Hook"
    };
    let body = json!({
        "object_kind": "note",
        "event_type": if internal { "confidential_note" } else { "note" },
        "user": {"id": note.author.id, "username": note.author.username},
        "project_id": mr.project_id,
        "project": {"id": mr.project_id, "path_with_namespace": project_path},
        "object_attributes": {
            "id": note.id,
            "note": note.body,
            "noteable_type": "MergeRequest",
            "author_id": note.author.id,
            "system": false,
            "internal": internal,
            "action": "create",
        },
        "merge_request": {
            "iid": mr.iid,
            "author_id": mr.author.id,
            "target_project_id": mr.project_id,
        },
    });
    (kind, body)
}

/// `group/project` from an MR's `web_url` (`https://host/group/project/-/merge_requests/7`).
fn project_path_of(web_url: &str) -> String {
    let path = web_url
        .split_once("://")
        .map_or(web_url, |(_, rest)| rest)
        .split_once('/')
        .map_or("", |(_, path)| path);
    path.split_once("/-/").map_or(path, |(p, _)| p).to_owned()
}

/// Sweeps the window from `after` and stores what it finds in `queue` (nothing in a dry run).
pub async fn run(
    ctx: &JobContext,
    queue: &dyn Queue,
    after: DateTime<Utc>,
    signed: bool,
    dry_run: bool,
) -> Result<SweepReport, SweepError> {
    let live = ctx.live();
    let client = &live.client;
    let policies = &ctx.policies;
    let since = after.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut report = SweepReport::default();
    let mut found: Vec<(&'static str, serde_json::Value)> = Vec::new();

    // Issues of the tracking project opened in the window.
    let tracking = &policies.routing.tracking.project;
    let path = format!("projects/{}/issues", path_id(tracking));
    let issues: Vec<ListedIssue> = Get::new(path.clone())
        .param("created_after", since.clone())
        .param("order_by", "created_at")
        .param("sort", "asc")
        .all(client)
        .await
        .map_err(|e| SweepError::Read {
            call: format!("GET {path}"),
            cause: e.to_string(),
        })?;
    report.issues_found = issues.len();
    found.extend(issues.iter().map(|i| issue_delivery(tracking, i)));

    // Comments with a command on open Co-Create MRs updated in the window (a comment
    // updates its MR).
    let mrs = live
        .facts
        .mrs_in_scope(
            client,
            policies,
            &[
                ("state", "opened".into()),
                ("updated_after", since.clone()),
                ("labels", policies.routing.labels.cocreate.clone()),
            ],
        )
        .await
        .map_err(|e| SweepError::Read {
            call: "GET merge_requests".into(),
            cause: e.to_string(),
        })?;
    report.mrs_read = mrs.len();
    let mut notes_found = Vec::new();
    for (mr_ref, mr) in &mrs {
        let path = format!(
            "projects/{}/merge_requests/{}/notes",
            mr_ref.project_id, mr_ref.iid
        );
        let older = |n: &ListedNote| n.created_at.is_some_and(|t| t < after);
        let notes: Vec<ListedNote> = Get::new(path.clone())
            .param("order_by", "created_at")
            .param("sort", "desc")
            .pages_until(client, 1, older)
            .await
            .map_err(|e| SweepError::Read {
                call: format!("GET {path}"),
                cause: e.to_string(),
            })?;
        let project_path = project_path_of(&mr.web_url);
        for n in notes.iter().filter(|n| {
            !n.system
                && !older(n)
                && !is_own_event(&n.author.username, &ctx.bot_username)
                && parse_command(&n.body, &ctx.bot_username).is_some()
        }) {
            notes_found.push((n.created_at, n.id, note_delivery(mr, &project_path, n)));
        }
    }
    // In the order they were written.
    notes_found.sort_by_key(|(t, id, _)| (*t, *id));
    report.commands_found = notes_found.len();
    found.extend(notes_found.into_iter().map(|(_, _, d)| d));

    if dry_run {
        return Ok(report);
    }
    let now = ctx.clock.now().timestamp_millis();
    for (kind, body) in found {
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-event", HeaderValue::from_static(kind));
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let event = match admit(&headers, bytes, signed, now) {
            Ok(Admission::Event(ev)) => ev,
            // Built here from what GitLab listed; a kind the receiver ignores is not stored.
            Ok(Admission::Ignored(_)) | Err(_) => continue,
        };
        match queue.enqueue(event).await? {
            Enqueued::New(_) => report.enqueued += 1,
            Enqueued::Duplicate(_) => report.already_had += 1,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mr_url_names_its_project() {
        for (url, want) in [
            (
                "https://gitlab.example.com/vendor/product/-/merge_requests/7",
                "vendor/product",
            ),
            ("http://127.0.0.1:9/a/b/c/-/merge_requests/1", "a/b/c"),
            ("", ""),
        ] {
            assert_eq!(project_path_of(url), want, "{url}");
        }
    }

    #[test]
    fn a_swept_comment_and_issue_parse_and_key_like_their_deliveries() {
        let mr: crate::gitlab::ApiMergeRequest = serde_json::from_value(json!({
            "iid": 7, "project_id": 42, "state": "opened",
            "author": {"id": 5, "username": "aero-dev-1"},
            "web_url": "https://gitlab.example.com/vendor/product/-/merge_requests/7"
        }))
        .expect("mr");
        let note = ListedNote {
            id: 900,
            body: "@cocreate-bot help".into(),
            author: ApiUserRef {
                id: 5,
                username: "aero-dev-1".into(),
            },
            system: false,
            created_at: None,
            internal: true,
            confidential: None,
        };
        let (kind, body) = note_delivery(&mr, "vendor/product", &note);
        assert_eq!(kind, "Confidential Note Hook");
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-event", HeaderValue::from_static(kind));
        headers.insert("x-gitlab-event-uuid", HeaderValue::from_static("u-1"));
        let bytes = serde_json::to_vec(&body).expect("json");
        match admit(&headers, bytes, false, 0) {
            Ok(Admission::Event(ev)) => assert_eq!(ev.dedupe_key, "note:900"),
            other => panic!("{other:?}"),
        }
        let issue = ListedIssue {
            id: 1,
            iid: 701,
            project_id: 60,
            title: "Co-Create engagement request: Example Aero".into(),
            description: Some("- Organization: example-aero".into()),
            state: "opened".into(),
            labels: vec!["Co-Create intake".into()],
            confidential: false,
            author: ApiUserRef {
                id: 6,
                username: "csm-aero".into(),
            },
        };
        let (kind, body) = issue_delivery("cocreate/engagements", &issue);
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-event", HeaderValue::from_static(kind));
        let bytes = serde_json::to_vec(&body).expect("json");
        match admit(&headers, bytes, false, 0) {
            Ok(Admission::Event(ev)) => assert_eq!(ev.dedupe_key, "issue-open:60:701"),
            other => panic!("{other:?}"),
        }
    }
}

//! An in-process fake of the parts of the GitLab REST API (`/api/v4`) that `cocreate` talks to.
//!
//! Modelled on rust-lang/bors's fake GitHub: one [`wiremock::MockServer`] with a single
//! catch-all mock whose responder locks a shared [`World`] and dispatches the request to a
//! small handler per endpoint. Tests set up the world (users, groups, merge requests, issues,
//! notes), point the code under test at [`FakeGitLab::host`] / [`FakeGitLab::url`], and then
//! read the world back ([`FakeGitLab::mr`], [`FakeGitLab::notes`], [`FakeGitLab::issue`],
//! [`FakeGitLab::issue_label_events`]) or inspect the recorded calls
//! ([`FakeGitLab::calls`], [`FakeGitLab::writes`], [`FakeGitLab::count`]).
//!
//! Responses follow the shapes in `tests/fixtures/gitlab/api/*.json` (real GitLab responses),
//! filled from the world state.
//!
//! # Adding an endpoint
//!
//! The fake is split along its sections: this file holds the public setup and read-back
//! types and [`FakeGitLab`]; `world.rs` the state, `http.rs` the request plumbing, `router.rs`
//! the router and lookups, one file of handlers per resource (`users.rs`, `merge_requests.rs`,
//! `issues.rs`, `events.rs`, `labels_hooks.rs`, `statuses.rs`, `repository.rs`, `deliveries.rs`),
//! and `pagination.rs`, `render.rs` (JSON shapes) and `util.rs`.
//!
//! 1. Write a handler `fn verb_thing(w: &mut World, ctx: &Ctx, ...path args) -> HandlerResult`
//!    in the file of its resource (items are `pub(super)`, so siblings see each other).
//!    Look objects up with the `lookup_*` / `find_*` helpers (they return the right 404 as
//!    `Err`), validate *everything* before mutating the world, render with the shared
//!    `*_json` renderers, and use [`paginate`] for list endpoints.
//! 2. Add one arm to `route` (`router.rs`) matching the method and the (percent-decoded) path segments.
//!
//! Faults, authentication and call recording are handled before the router runs, so new
//! endpoints get them for free.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod deliveries;
mod events;
mod hook_events;
mod hook_test;
mod http;
mod issues;
mod labels_hooks;
mod merge_requests;
mod pagination;
mod render;
mod repository;
mod router;
mod statuses;
mod users;
mod util;
mod world;
pub use deliveries::Delivery;
use events::*;
use http::*;
use issues::*;
use labels_hooks::*;
pub use labels_hooks::{HookState, LabelState};
use merge_requests::*;
use pagination::*;
use render::*;
use router::*;
pub use statuses::CommitStatus;
use statuses::*;
use users::*;
use util::*;
use world::*;

/// The token [`FakeGitLab::start`] expects in the `PRIVATE-TOKEN` header.
pub const DEFAULT_TOKEN: &str = "test-token";
/// Id of the default token user (the bot), returned by `GET /api/v4/user`.
pub const BOT_USER_ID: u64 = 9000;
/// Username of the default token user.
pub const BOT_USERNAME: &str = "cocreate-bot";
/// Base of the `web_url`s rendered in responses (never contacted).
pub const WEB_BASE: &str = "http://gitlab.example.com";

const API_PREFIX: &str = "/api/v4/";
const DEFAULT_PER_PAGE: u64 = 20;
const MAX_PER_PAGE: u64 = 100;
const DEFAULT_ACCESS_LEVEL: u64 = 30;
/// Global ids of issues count up from here (distinct from iids and MR ids in tests).
const FIRST_ISSUE_ID: u64 = 2001;
/// GitLab's default label color.
const DEFAULT_LABEL_COLOR: &str = "#6699cc";

// ---------------------------------------------------------------------------------------------
// Public setup / read-back types
// ---------------------------------------------------------------------------------------------

/// A user to add to the world.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSpec {
    pub id: u64,
    pub username: String,
    pub name: String,
    pub public_email: Option<String>,
    pub organization: Option<String>,
    pub bot: bool,
}

impl UserSpec {
    /// A human user whose display name is the username.
    pub fn new(id: u64, username: &str) -> Self {
        Self {
            id,
            username: username.to_owned(),
            name: username.to_owned(),
            ..Self::default()
        }
    }
}

/// A merge request to add to the world. `state` is `"opened"`, `"closed"` or `"merged"`.
///
/// `Default` gives a plausible opened MR (`group/project!1`) so tests can write
/// `MrSpec { iid: 7, labels: vec![..], ..MrSpec::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MrSpec {
    pub project_id: u64,
    pub iid: u64,
    /// Global id.
    pub id: u64,
    pub title: String,
    pub description: String,
    pub author_id: u64,
    pub state: String,
    pub draft: bool,
    pub labels: Vec<String>,
    pub reviewer_ids: Vec<u64>,
    pub sha: String,
    pub source_branch: String,
    pub target_branch: String,
    /// Full path of the project, e.g. `group/sub/project`.
    pub project_path: String,
}

impl Default for MrSpec {
    fn default() -> Self {
        Self {
            project_id: 1,
            iid: 1,
            id: 1001,
            title: "Update contributor guide".to_owned(),
            description: "Describes the review process.".to_owned(),
            author_id: BOT_USER_ID,
            state: "opened".to_owned(),
            draft: false,
            labels: Vec::new(),
            reviewer_ids: Vec::new(),
            sha: "e82eb4a098e32c796079ca3915e07487fc4db24c".to_owned(),
            source_branch: "feature".to_owned(),
            target_branch: "main".to_owned(),
            project_path: "group/project".to_owned(),
        }
    }
}

/// Read-back of a merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MrState {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub title: String,
    pub description: String,
    pub state: String,
    pub draft: bool,
    /// Sorted and de-duplicated (GitLab returns labels sorted by title).
    pub labels: Vec<String>,
    /// In the order they were set.
    pub reviewer_ids: Vec<u64>,
    pub sha: String,
    pub updated_at: String,
    /// Oldest first.
    pub notes: Vec<NoteState>,
}

/// Read-back of a note (comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteState {
    pub id: u64,
    pub body: String,
    pub author_id: u64,
    pub author_username: String,
    pub created_at: String,
    pub system: bool,
    /// An internal note (GitLab's `internal`, formerly `confidential`): only project members
    /// with the Reporter role or higher see it.
    pub internal: bool,
}

/// A project issue to add to the world. `state` is `"opened"` or `"closed"`.
///
/// `Default` gives an opened issue in project 1 (`group/project`) authored by the bot, with
/// the next free iid (`iid: 0`), so tests can write
/// `IssueSpec { title: "..".into(), labels: vec![..], ..IssueSpec::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueSpec {
    pub project_id: u64,
    /// `0` = the next free iid of the project.
    pub iid: u64,
    pub title: String,
    pub description: String,
    pub author_id: u64,
    pub state: String,
    pub confidential: bool,
    pub labels: Vec<String>,
    pub assignee_ids: Vec<u64>,
    /// Full path of the project; only used if the project is not registered yet.
    pub project_path: String,
}

impl Default for IssueSpec {
    fn default() -> Self {
        Self {
            project_id: 1,
            iid: 0,
            title: "Engagement request".to_owned(),
            description: String::new(),
            author_id: BOT_USER_ID,
            state: "opened".to_owned(),
            confidential: false,
            labels: Vec::new(),
            assignee_ids: Vec::new(),
            project_path: "group/project".to_owned(),
        }
    }
}

/// Read-back of a project issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueState {
    /// Global id.
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub title: String,
    /// Verbatim; empty if the issue was created through the API without one (GitLab
    /// answers `null` then).
    pub description: String,
    pub state: String,
    pub confidential: bool,
    /// Sorted and de-duplicated.
    pub labels: Vec<String>,
    /// In the order they were set.
    pub assignee_ids: Vec<u64>,
    /// Oldest first.
    pub notes: Vec<NoteState>,
    /// Linked issues as `(project id, iid)`, in the order the links were made.
    pub links: Vec<(u64, u64)>,
    pub updated_at: String,
}

/// Read-back of one entry of an issue's label history (`resource_label_events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEventState {
    pub id: u64,
    pub user_id: u64,
    /// Label name.
    pub label: String,
    /// `"add"` or `"remove"`.
    pub action: String,
    pub created_at: String,
}

/// What a note is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteOn {
    MergeRequest { project_id: u64, iid: u64 },
    Issue { project_id: u64, iid: u64 },
}

/// A note created through the API (by the code under test), as opposed to one a test seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedNote {
    /// The note's id (unique across MRs and issues of one fake).
    pub id: u64,
    pub on: NoteOn,
    pub body: String,
}

/// A request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path as received (still percent-encoded), e.g. `/api/v4/projects/group%2Fproject/...`.
    pub path: String,
    /// Raw query string without `?` (empty if none).
    pub query: String,
    /// Request body, lossily decoded as UTF-8.
    pub body: String,
    /// The `X-Gitlab-Event-UUID` request header, if sent.
    pub event_uuid: Option<String>,
    /// Status the fake answered with (including injected faults and 401s).
    pub status: u16,
}

/// A fault applied to one request instead of (or on top of) the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and `{"message": "<status> <reason>"}`; the world is untouched.
    Status(u16),
    /// Answer 429 like GitLab's Rack::Attack throttle (`Retry-After`, `RateLimit-*` headers,
    /// `Retry later` body); the world is untouched.
    RateLimited { retry_after_secs: u64 },
    /// Apply the request normally but send the answer this much later.
    Delay(Duration),
}

// ---------------------------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------------------------

/// A running fake GitLab. Dropping it shuts the server down.
pub struct FakeGitLab {
    server: MockServer,
    world: Arc<Mutex<World>>,
}

impl FakeGitLab {
    /// Starts a fake on a random port of 127.0.0.1 expecting `PRIVATE-TOKEN: test-token`.
    pub async fn start() -> FakeGitLab {
        Self::start_with_token(DEFAULT_TOKEN).await
    }

    /// Starts a fake expecting `PRIVATE-TOKEN: <token>`.
    pub async fn start_with_token(token: &str) -> FakeGitLab {
        let server = MockServer::builder().start().await;
        let world = Arc::new(Mutex::new(World::new(token, &server.uri())));
        Mock::given(any())
            .respond_with(Responder {
                world: Arc::clone(&world),
            })
            .mount(&server)
            .await;
        FakeGitLab { server, world }
    }

    /// `127.0.0.1:PORT` (no scheme), as the `gitlab` crate's `GitlabBuilder::new` wants it
    /// (together with `.insecure()`).
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// The token requests must carry in `PRIVATE-TOKEN`.
    pub fn token(&self) -> String {
        self.world().token.clone()
    }

    /// Changes the token the fake accepts, as revoking the bot's token and issuing a new one
    /// does: requests with any other token get GitLab's `401 {"message":"401 Unauthorized"}`.
    pub fn set_token(&self, token: &str) {
        self.world().token = token.to_owned();
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    // --- world setup -------------------------------------------------------------------------

    /// Adds (or replaces) a user.
    pub fn add_user(&self, spec: UserSpec) {
        let mut w = self.world();
        let created_at = w.clock.peek();
        let availability = w
            .users
            .get(&spec.id)
            .map_or_else(|| "not_set".to_owned(), |u| u.availability.clone());
        w.users.insert(
            spec.id,
            User {
                spec,
                availability,
                created_at,
            },
        );
    }

    /// Makes the existing user `username` the token's user (returned by `GET /user`, author of
    /// notes created through the API). Panics if the user does not exist.
    pub fn set_bot(&self, username: &str) {
        let mut w = self.world();
        let id = w
            .user_by_username(username)
            .unwrap_or_else(|| panic!("set_bot: no user {username:?}"))
            .spec
            .id;
        w.bot_id = id;
    }

    /// Id of the token's user.
    pub fn bot_user_id(&self) -> u64 {
        self.world().bot_id
    }

    /// Labels of a group (`"groups/<id>"`) or project (`"projects/<id>"`).
    pub fn labels_of(&self, owner: &str) -> Vec<LabelState> {
        self.world().labels.get(owner).cloned().unwrap_or_default()
    }

    /// Webhooks of a group (`"groups/<id>"`) or project (`"projects/<id>"`).
    pub fn hooks_of(&self, owner: &str) -> Vec<HookState> {
        self.world().hooks.get(owner).cloned().unwrap_or_default()
    }

    /// Commit statuses of a commit, oldest first.
    pub fn commit_statuses(&self, project_id: u64, sha: &str) -> Vec<CommitStatus> {
        self.world()
            .statuses
            .get(&(project_id, sha.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Sets a user's status availability (`"busy"` or `"not_set"`). Panics on unknown users.
    pub fn set_status(&self, username: &str, availability: &str) {
        let mut w = self.world();
        let id = w
            .user_by_username(username)
            .unwrap_or_else(|| panic!("set_status: no user {username:?}"))
            .spec
            .id;
        if let Some(user) = w.users.get_mut(&id) {
            user.availability = availability.to_owned();
        }
    }

    /// Adds (or replaces) a group. `members/all` also lists members of ancestor groups.
    pub fn add_group(&self, id: u64, full_path: &str, member_ids: &[u64]) {
        let mut w = self.world();
        w.groups.insert(
            id,
            Group {
                id,
                full_path: full_path.to_owned(),
                members: member_ids
                    .iter()
                    .map(|&user_id| (user_id, DEFAULT_ACCESS_LEVEL))
                    .collect(),
            },
        );
    }

    /// A project's `visibility` (`private`, `internal` or `public`); `private` unless set.
    pub fn set_project_visibility(&self, id: u64, visibility: &str) {
        self.world().visibility.insert(id, visibility.to_owned());
    }

    /// Registers a project path without adding a merge request (`add_mr` does this too).
    pub fn add_project(&self, id: u64, path_with_namespace: &str) {
        self.world()
            .projects
            .insert(id, path_with_namespace.to_owned());
    }

    /// Adds (or replaces, keeping its notes) a merge request; `created_at` and `updated_at`
    /// are the fake clock's current time.
    pub fn add_mr(&self, spec: MrSpec) {
        let mut w = self.world();
        let now = w.clock.tick();
        w.projects
            .insert(spec.project_id, spec.project_path.clone());
        let key = (spec.project_id, spec.iid);
        let notes = w.mrs.remove(&key).map(|mr| mr.notes).unwrap_or_default();
        let mut labels = spec.labels;
        normalize_labels(&mut labels);
        let mut reviewer_ids = spec.reviewer_ids;
        dedup_keep_order(&mut reviewer_ids);
        w.mrs.insert(
            key,
            Mr {
                id: spec.id,
                iid: spec.iid,
                project_id: spec.project_id,
                project_path: spec.project_path,
                title: spec.title,
                description: spec.description,
                author_id: spec.author_id,
                state: spec.state,
                draft: spec.draft,
                labels,
                reviewer_ids,
                sha: spec.sha,
                source_branch: spec.source_branch,
                target_branch: spec.target_branch,
                created_at: now,
                updated_at: now,
                notes,
            },
        );
    }

    /// Overrides a merge request's `updated_at` (RFC 3339), e.g. to test `updated_after`.
    pub fn set_mr_updated_at(&self, project_id: u64, iid: u64, updated_at: &str) {
        let t = parse_time(updated_at)
            .unwrap_or_else(|| panic!("set_mr_updated_at: bad time {updated_at:?}"));
        let mut w = self.world();
        w.mr_mut_or_panic(project_id, iid).updated_at = t;
    }

    /// Reads a merge request back. Panics if it does not exist.
    pub fn mr(&self, project_id: u64, iid: u64) -> MrState {
        let w = self.world();
        let mr = w
            .mrs
            .get(&(project_id, iid))
            .unwrap_or_else(|| panic!("no merge request {project_id}!{iid}"));
        MrState {
            id: mr.id,
            iid: mr.iid,
            project_id: mr.project_id,
            title: mr.title.clone(),
            description: mr.description.clone(),
            state: mr.state.clone(),
            draft: mr.draft,
            labels: mr.labels.clone(),
            reviewer_ids: mr.reviewer_ids.clone(),
            sha: mr.sha.clone(),
            updated_at: fmt_time(mr.updated_at),
            notes: mr.notes.iter().map(|n| w.note_state(n)).collect(),
        }
    }

    /// Notes of a merge request, oldest first. Panics if the MR does not exist.
    pub fn notes(&self, project_id: u64, iid: u64) -> Vec<NoteState> {
        self.mr(project_id, iid).notes
    }

    /// Adds a (non-system) note as if `author_id` commented in the UI; bumps the MR's
    /// `updated_at`. Returns the note id.
    pub fn add_note(&self, project_id: u64, iid: u64, author_id: u64, body: &str) -> u64 {
        self.world()
            .create_mr_note(project_id, iid, author_id, body, false, false)
    }

    /// Adds an internal note (`internal: true`) as if `author_id` ticked "Make this an
    /// internal note" in the UI. Returns the note id.
    pub fn add_internal_note(&self, project_id: u64, iid: u64, author_id: u64, body: &str) -> u64 {
        self.world()
            .create_mr_note(project_id, iid, author_id, body, false, true)
    }

    /// Adds a system note ("requested review from @x", ...). Returns the note id.
    pub fn add_system_note(&self, project_id: u64, iid: u64, author_id: u64, body: &str) -> u64 {
        self.world()
            .create_mr_note(project_id, iid, author_id, body, true, false)
    }

    // --- issues ------------------------------------------------------------------------------

    /// Adds an issue and returns its iid. `created_at`/`updated_at` are the fake clock's
    /// current time; each initial label is recorded as added by the author (as GitLab records
    /// label events on creation). Registers the project under `spec.project_path` unless it
    /// is registered already (then it keeps its path). An existing issue with the same iid is
    /// replaced, keeping its id, notes, links and label history; label differences are
    /// recorded as the author's.
    pub fn add_issue(&self, spec: IssueSpec) -> u64 {
        let mut w = self.world();
        let now = w.clock.tick();
        let project_id = spec.project_id;
        w.projects
            .entry(project_id)
            .or_insert_with(|| spec.project_path.clone());
        let iid = if spec.iid == 0 {
            w.next_issue_iid(project_id)
        } else {
            spec.iid
        };
        let key = (project_id, iid);
        let old = w.issues.remove(&key);
        let before = old.as_ref().map(|i| i.labels.clone()).unwrap_or_default();
        let mut labels = spec.labels;
        normalize_labels(&mut labels);
        let mut assignee_ids = spec.assignee_ids;
        dedup_keep_order(&mut assignee_ids);
        let closed = spec.state == "closed";
        let mut issue = match old {
            Some(old) => old,
            None => {
                let id = w.alloc_issue_id();
                Issue::new(id, key, spec.author_id, now)
            }
        };
        let was_closed = issue.state == "closed";
        issue.title = spec.title;
        issue.description = Some(spec.description);
        issue.author_id = spec.author_id;
        issue.state = spec.state;
        issue.confidential = spec.confidential;
        issue.labels = labels.clone();
        issue.assignee_ids = assignee_ids;
        issue.updated_at = now;
        issue.closed_at = closed.then_some(now);
        issue.closed_by = closed.then_some(spec.author_id);
        if closed != was_closed {
            let id = w.alloc_object_id();
            issue.state_events.push(StateEvent {
                id,
                user_id: spec.author_id,
                created_at: now,
                state: if closed { "closed" } else { "reopened" },
            });
        }
        w.issues.insert(key, issue);
        w.record_label_changes(key, &before, &labels, spec.author_id, now);
        iid
    }

    /// Reads an issue back. Panics if it does not exist.
    pub fn issue(&self, project_id: u64, iid: u64) -> IssueState {
        let w = self.world();
        let issue = w
            .issues
            .get(&(project_id, iid))
            .unwrap_or_else(|| panic!("no issue {project_id}#{iid}"));
        w.issue_state(issue)
    }

    /// All issues of a project, by iid.
    pub fn issues(&self, project_id: u64) -> Vec<IssueState> {
        let w = self.world();
        w.issues
            .range((project_id, 0)..=(project_id, u64::MAX))
            .map(|(_, issue)| w.issue_state(issue))
            .collect()
    }

    /// Notes of an issue, oldest first. Panics if the issue does not exist.
    pub fn issue_notes(&self, project_id: u64, iid: u64) -> Vec<NoteState> {
        self.issue(project_id, iid).notes
    }

    /// Adds a (non-system) note to an issue as if `author_id` commented in the UI; bumps the
    /// issue's `updated_at`. Returns the note id.
    pub fn add_issue_note(&self, project_id: u64, iid: u64, author_id: u64, body: &str) -> u64 {
        self.world()
            .create_issue_note(project_id, iid, author_id, body, false, false)
    }

    /// Label history of an issue, oldest first. Panics if the issue does not exist.
    pub fn issue_label_events(&self, project_id: u64, iid: u64) -> Vec<LabelEventState> {
        let w = self.world();
        let issue = w
            .issues
            .get(&(project_id, iid))
            .unwrap_or_else(|| panic!("no issue {project_id}#{iid}"));
        issue
            .label_events
            .iter()
            .map(|e| LabelEventState {
                id: e.id,
                user_id: e.user_id,
                label: e.label.name.clone(),
                action: e.action.to_owned(),
                created_at: fmt_time(e.created_at),
            })
            .collect()
    }

    /// Adds and removes labels as if `user_id` edited them in the UI: records the label
    /// events and bumps `updated_at` (if anything changed). Panics if the issue does not exist.
    pub fn change_issue_labels(
        &self,
        project_id: u64,
        iid: u64,
        user_id: u64,
        add: &[&str],
        remove: &[&str],
    ) {
        let mut w = self.world();
        let key = (project_id, iid);
        let before = w.issue_mut_or_panic(project_id, iid).labels.clone();
        let mut after: Vec<String> = before
            .iter()
            .cloned()
            .chain(add.iter().map(|l| (*l).to_owned()))
            .filter(|l| !remove.contains(&l.as_str()))
            .collect();
        normalize_labels(&mut after);
        if after == before {
            return;
        }
        let now = w.clock.tick();
        let issue = w.issue_mut_or_panic(project_id, iid);
        issue.labels = after.clone();
        issue.updated_at = now;
        w.record_label_changes(key, &before, &after, user_id, now);
    }

    /// A maintainer merges an MR in the UI: `state` becomes `merged` and `updated_at` moves;
    /// labels, reviewers and notes stay. (No webhook is queued: tests deliver the event.)
    pub fn merge_mr(&self, project_id: u64, iid: u64) {
        let mut w = self.world();
        let now = w.clock.tick();
        let mr = w.mr_mut_or_panic(project_id, iid);
        mr.state = "merged".to_owned();
        mr.updated_at = now;
    }

    /// A person edits an issue's description in the UI (e.g. ticks a checklist box): the text
    /// is replaced and `updated_at` moves; labels, assignees and notes stay.
    pub fn edit_issue_description(&self, project_id: u64, iid: u64, description: &str) {
        let mut w = self.world();
        let now = w.clock.tick();
        let issue = w.issue_mut_or_panic(project_id, iid);
        issue.description = Some(description.to_owned());
        issue.updated_at = now;
    }

    /// Overrides an issue's `updated_at` (RFC 3339), e.g. to test `updated_after`.
    pub fn set_issue_updated_at(&self, project_id: u64, iid: u64, updated_at: &str) {
        let t = parse_time(updated_at)
            .unwrap_or_else(|| panic!("set_issue_updated_at: bad time {updated_at:?}"));
        let mut w = self.world();
        w.issue_mut_or_panic(project_id, iid).updated_at = t;
    }

    // --- clock -------------------------------------------------------------------------------

    /// Freezes the fake clock at `rfc3339`. Each new timestamp is then 1 ms after the previous.
    /// (By default the clock follows real time, still strictly increasing per timestamp.)
    pub fn set_time(&self, rfc3339: &str) {
        let t = parse_time(rfc3339).unwrap_or_else(|| panic!("set_time: bad time {rfc3339:?}"));
        let mut w = self.world();
        w.clock.frozen = Some(t);
        w.clock.last = None;
    }

    /// Moves the fake clock forward (freezing it at now + `by` if it followed real time).
    pub fn advance_time(&self, by: Duration) {
        let by = TimeDelta::from_std(by).expect("duration fits");
        let mut w = self.world();
        let base = w.clock.peek();
        w.clock.frozen = Some(base + by);
    }

    // --- call recording ----------------------------------------------------------------------

    /// Every request received so far, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.world().calls.clone()
    }

    /// Every note created through the API, oldest first (not forgotten by [`Self::clear_calls`]).
    pub fn posted_notes(&self) -> Vec<PostedNote> {
        self.world().posted_notes.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.world().calls.clear();
    }

    /// Recorded non-GET calls.
    pub fn writes(&self) -> Vec<RecordedCall> {
        self.world()
            .calls
            .iter()
            .filter(|c| c.method != "GET" && c.method != "HEAD")
            .cloned()
            .collect()
    }

    /// Number of recorded calls with this method (case-insensitive) whose raw path starts with
    /// `path_prefix`, e.g. `count("PUT", "/api/v4/projects/1/merge_requests/")`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.world()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method) && c.path.starts_with(path_prefix))
            .count()
    }

    // --- fault injection ---------------------------------------------------------------------

    /// Queues a fault for the next authenticated `/api/v4` request (faults apply in order).
    pub fn push_fault(&self, fault: Fault) {
        self.world().faults.push_back(FaultRule {
            method: None,
            path_prefix: None,
            event_uuid: None,
            fault,
        });
    }

    /// Queues a fault for the next request with this method (case-insensitive) whose raw path
    /// starts with `path_prefix`.
    pub fn push_fault_for(&self, method: &str, path_prefix: &str, fault: Fault) {
        self.world().faults.push_back(FaultRule {
            method: Some(method.to_ascii_uppercase()),
            path_prefix: Some(path_prefix.to_owned()),
            event_uuid: None,
            fault,
        });
    }

    /// Queues a fault for the next request made on behalf of the event `uuid` (carrying
    /// `X-Gitlab-Event-UUID: uuid`, as cocreate's client sends it), whatever its path: a
    /// background call of the service (a gauge refresh, a hook check) cannot take it.
    pub fn push_fault_for_event(&self, uuid: &str, fault: Fault) {
        self.world().faults.push_back(FaultRule {
            method: None,
            path_prefix: None,
            event_uuid: Some(uuid.to_owned()),
            fault,
        });
    }

    /// Makes every answer (API, errors and faults alike) take at least `latency`, as from a
    /// GitLab far away; a queued `Fault::Delay` that is longer wins. Calls in flight at the
    /// same time wait concurrently. `None` answers at once again.
    pub fn set_latency(&self, latency: Option<Duration>) {
        self.world().latency = latency;
    }

    /// Drops queued faults (not the failure rate).
    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    /// Makes a deterministic pseudo-random fraction `rate` (0.0..=1.0) of the authenticated
    /// `/api/v4` requests without a queued fault fail, alternately with 500 and with 429
    /// (`Retry-After: 0`). A failed request does not change the world. `rate <= 0` disables.
    pub fn set_failure_rate(&self, rate: f64, seed: u64) {
        self.world().failure = (rate > 0.0).then_some(FailureRate {
            rate,
            state: seed,
            failures: 0,
        });
    }
}

/// Reads `tests/fixtures/gitlab/<name>` (e.g. `"api/user_single.json"`) as JSON.
pub fn fixture(name: &str) -> Value {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "gitlab",
        name,
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("parsing fixture {}: {e}", path.display()))
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    // A panicking test must not wedge the server for others sharing the world.
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
//! 1. Write a handler `fn verb_thing(w: &mut World, ctx: &Ctx, ...path args) -> HandlerResult`.
//!    Look objects up with the `lookup_*` / `find_*` helpers (they return the right 404 as
//!    `Err`), validate *everything* before mutating the world, render with the shared
//!    `*_json` renderers, and use [`paginate`] for list endpoints.
//! 2. Add one arm to [`route`] matching the method and the (percent-decoded) path segments.
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
mod hook_events;
mod repository;
pub use deliveries::Delivery;

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
            fault,
        });
    }

    /// Queues a fault for the next request with this method (case-insensitive) whose raw path
    /// starts with `path_prefix`.
    pub fn push_fault_for(&self, method: &str, path_prefix: &str, fault: Fault) {
        self.world().faults.push_back(FaultRule {
            method: Some(method.to_ascii_uppercase()),
            path_prefix: Some(path_prefix.to_owned()),
            fault,
        });
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

// ---------------------------------------------------------------------------------------------
// World state
// ---------------------------------------------------------------------------------------------

struct User {
    spec: UserSpec,
    availability: String,
    created_at: DateTime<Utc>,
}

struct Group {
    id: u64,
    full_path: String,
    /// `(user id, access level)`.
    members: Vec<(u64, u64)>,
}

struct Mr {
    id: u64,
    iid: u64,
    project_id: u64,
    project_path: String,
    title: String,
    description: String,
    author_id: u64,
    state: String,
    draft: bool,
    labels: Vec<String>,
    reviewer_ids: Vec<u64>,
    sha: String,
    source_branch: String,
    target_branch: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    notes: Vec<Note>,
}

struct Issue {
    id: u64,
    iid: u64,
    project_id: u64,
    title: String,
    /// `None` if never given (GitLab renders `null`).
    description: Option<String>,
    author_id: u64,
    state: String,
    confidential: bool,
    labels: Vec<String>,
    assignee_ids: Vec<u64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    closed_by: Option<u64>,
    notes: Vec<Note>,
    links: Vec<IssueLink>,
    label_events: Vec<LabelEvent>,
    /// Closings and reopenings, oldest first (`resource_state_events`; the initial "opened"
    /// is not recorded, as in GitLab).
    state_events: Vec<StateEvent>,
}

impl Issue {
    /// An opened issue without title, labels or notes.
    fn new(id: u64, (project_id, iid): (u64, u64), author_id: u64, now: DateTime<Utc>) -> Self {
        Issue {
            id,
            iid,
            project_id,
            title: String::new(),
            description: None,
            author_id,
            state: "opened".to_owned(),
            confidential: false,
            labels: Vec::new(),
            assignee_ids: Vec::new(),
            created_at: now,
            updated_at: now,
            closed_at: None,
            closed_by: None,
            notes: Vec::new(),
            links: Vec::new(),
            label_events: Vec::new(),
            state_events: Vec::new(),
        }
    }
}

/// One entry of an issue's state history.
struct StateEvent {
    id: u64,
    user_id: u64,
    created_at: DateTime<Utc>,
    /// `"closed"` or `"reopened"`.
    state: &'static str,
}

/// One side of an issue link (each linked issue holds one, with the same id).
struct IssueLink {
    id: u64,
    /// The other issue, `(project id, iid)`.
    target: (u64, u64),
    /// From this issue's point of view: `relates_to`, `blocks` or `is_blocked_by`.
    link_type: String,
    created_at: DateTime<Utc>,
}

struct LabelEvent {
    id: u64,
    user_id: u64,
    created_at: DateTime<Utc>,
    /// The label as it was when the event was recorded.
    label: LabelState,
    /// `"add"` or `"remove"`.
    action: &'static str,
}

struct Note {
    id: u64,
    author_id: u64,
    body: String,
    system: bool,
    internal: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Strictly increasing millisecond timestamps; real time unless frozen.
struct Clock {
    frozen: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Clock {
    fn peek(&self) -> DateTime<Utc> {
        let now = self.frozen.unwrap_or_else(Utc::now);
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }

    fn tick(&mut self) -> DateTime<Utc> {
        let base = self.peek();
        let t = match self.last {
            Some(last) if base <= last => last + TimeDelta::milliseconds(1),
            _ => base,
        };
        self.last = Some(t);
        t
    }
}

struct FaultRule {
    method: Option<String>,
    path_prefix: Option<String>,
    fault: Fault,
}

impl FaultRule {
    fn matches(&self, ctx: &Ctx<'_>) -> bool {
        self.method.as_deref().is_none_or(|m| m == ctx.method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| ctx.path.starts_with(p))
    }
}

struct FailureRate {
    rate: f64,
    state: u64,
    failures: u64,
}

impl FailureRate {
    fn roll(&mut self) -> Option<Fault> {
        // splitmix64
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        if unit >= self.rate {
            return None;
        }
        self.failures += 1;
        Some(if self.failures % 2 == 1 {
            Fault::Status(500)
        } else {
            Fault::RateLimited {
                retry_after_secs: 0,
            }
        })
    }
}

struct World {
    token: String,
    /// `http://127.0.0.1:PORT`, for absolute `Link` URLs.
    base_url: String,
    bot_id: u64,
    users: BTreeMap<u64, User>,
    groups: BTreeMap<u64, Group>,
    /// Project id -> `path_with_namespace`.
    projects: BTreeMap<u64, String>,
    mrs: BTreeMap<(u64, u64), Mr>,
    /// Issues by (project id, iid).
    issues: BTreeMap<(u64, u64), Issue>,
    next_issue_id: u64,
    /// Ids given to labels used on issues that exist neither in the project nor in an
    /// ancestor group (GitLab would create them), by name.
    implicit_label_ids: BTreeMap<String, u64>,
    /// Commit statuses by (project id, sha), oldest first.
    statuses: BTreeMap<(u64, String), Vec<CommitStatus>>,
    next_status_id: u64,
    /// Labels and webhooks by owner ("groups/<id>" or "projects/<id>").
    labels: BTreeMap<String, Vec<LabelState>>,
    hooks: BTreeMap<String, Vec<HookState>>,
    next_object_id: u64,
    next_note_id: u64,
    clock: Clock,
    calls: Vec<RecordedCall>,
    faults: VecDeque<FaultRule>,
    failure: Option<FailureRate>,
    /// Git repositories by project id (see `repository`).
    repos: BTreeMap<u64, repository::Repo>,
    /// Webhook calls not yet sent (see `deliveries`).
    deliveries: Vec<Delivery>,
    next_delivery: u64,
    /// Calls made and hook states (see `hook_events`).
    hook_log: hook_events::HookLog,
}

impl World {
    fn new(token: &str, base_url: &str) -> World {
        let clock = Clock {
            frozen: None,
            last: None,
        };
        let bot = User {
            spec: UserSpec {
                id: BOT_USER_ID,
                username: BOT_USERNAME.to_owned(),
                name: "Co-Create Bot".to_owned(),
                public_email: None,
                organization: None,
                bot: true,
            },
            availability: "not_set".to_owned(),
            created_at: clock.peek(),
        };
        World {
            token: token.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            bot_id: BOT_USER_ID,
            users: BTreeMap::from([(BOT_USER_ID, bot)]),
            groups: BTreeMap::new(),
            projects: BTreeMap::new(),
            mrs: BTreeMap::new(),
            issues: BTreeMap::new(),
            next_issue_id: FIRST_ISSUE_ID,
            implicit_label_ids: BTreeMap::new(),
            statuses: BTreeMap::new(),
            next_status_id: 1,
            labels: BTreeMap::new(),
            hooks: BTreeMap::new(),
            next_object_id: 1,
            next_note_id: 1,
            clock,
            calls: Vec::new(),
            faults: VecDeque::new(),
            failure: None,
            repos: BTreeMap::new(),
            deliveries: Vec::new(),
            next_delivery: 0,
            hook_log: Default::default(),
        }
    }

    fn user_by_username(&self, username: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.spec.username.eq_ignore_ascii_case(username))
    }

    /// The user, or a placeholder for ids that were never added (so rendering never fails).
    fn user_or_placeholder(&self, id: u64) -> User {
        match self.users.get(&id) {
            Some(u) => User {
                spec: u.spec.clone(),
                availability: u.availability.clone(),
                created_at: u.created_at,
            },
            None => User {
                spec: UserSpec {
                    id,
                    username: format!("user{id}"),
                    name: format!("User {id}"),
                    ..UserSpec::default()
                },
                availability: "not_set".to_owned(),
                created_at: self.clock.peek(),
            },
        }
    }

    fn mr_mut_or_panic(&mut self, project_id: u64, iid: u64) -> &mut Mr {
        self.mrs
            .get_mut(&(project_id, iid))
            .unwrap_or_else(|| panic!("no merge request {project_id}!{iid}"))
    }

    /// A new note stamped with the clock's next tick.
    fn new_note(&mut self, author_id: u64, body: &str, system: bool, internal: bool) -> Note {
        let now = self.clock.tick();
        let id = self.next_note_id;
        self.next_note_id += 1;
        Note {
            id,
            author_id,
            body: body.to_owned(),
            system,
            internal,
            created_at: now,
            updated_at: now,
        }
    }

    fn create_mr_note(
        &mut self,
        project_id: u64,
        iid: u64,
        author_id: u64,
        body: &str,
        system: bool,
        internal: bool,
    ) -> u64 {
        let note = self.new_note(author_id, body, system, internal);
        let (id, now) = (note.id, note.created_at);
        let mr = self.mr_mut_or_panic(project_id, iid);
        mr.notes.push(note);
        // GitLab touches the noteable when a note is saved.
        mr.updated_at = now;
        id
    }

    fn issue_mut_or_panic(&mut self, project_id: u64, iid: u64) -> &mut Issue {
        self.issues
            .get_mut(&(project_id, iid))
            .unwrap_or_else(|| panic!("no issue {project_id}#{iid}"))
    }

    fn create_issue_note(
        &mut self,
        project_id: u64,
        iid: u64,
        author_id: u64,
        body: &str,
        system: bool,
        internal: bool,
    ) -> u64 {
        let note = self.new_note(author_id, body, system, internal);
        let (id, now) = (note.id, note.created_at);
        let issue = self.issue_mut_or_panic(project_id, iid);
        issue.notes.push(note);
        issue.updated_at = now;
        id
    }

    fn alloc_issue_id(&mut self) -> u64 {
        let id = self.next_issue_id;
        self.next_issue_id += 1;
        id
    }

    fn alloc_object_id(&mut self) -> u64 {
        let id = self.next_object_id;
        self.next_object_id += 1;
        id
    }

    /// One more than the project's highest issue iid.
    fn next_issue_iid(&self, project_id: u64) -> u64 {
        self.issues
            .range((project_id, 0)..=(project_id, u64::MAX))
            .next_back()
            .map_or(1, |(&(_, iid), _)| iid + 1)
    }

    fn project_path(&self, project_id: u64) -> String {
        self.projects
            .get(&project_id)
            .cloned()
            .unwrap_or_else(|| format!("project-{project_id}"))
    }

    /// The label `name` as seen from a project: the project's own label, else the nearest
    /// ancestor group's, else a stand-in with a stable id and GitLab's default color.
    fn label_for_project(&mut self, project_id: u64, name: &str) -> LabelState {
        let path = self.project_path(project_id);
        let mut groups: Vec<&Group> = self
            .groups
            .values()
            .filter(|g| path.starts_with(&format!("{}/", g.full_path)))
            .collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.full_path.len()));
        let owners = std::iter::once(format!("projects/{project_id}"))
            .chain(groups.iter().map(|g| format!("groups/{}", g.id)));
        for owner in owners {
            if let Some(label) = self
                .labels
                .get(&owner)
                .and_then(|ls| ls.iter().find(|l| l.name == name))
            {
                return label.clone();
            }
        }
        let id = match self.implicit_label_ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.alloc_object_id();
                self.implicit_label_ids.insert(name.to_owned(), id);
                id
            }
        };
        LabelState {
            id,
            name: name.to_owned(),
            color: DEFAULT_LABEL_COLOR.to_owned(),
            description: String::new(),
        }
    }

    /// Records an `add` event per label in `after` but not `before`, then a `remove` event per
    /// label in `before` but not `after` (GitLab's order).
    fn record_label_changes(
        &mut self,
        (project_id, iid): (u64, u64),
        before: &[String],
        after: &[String],
        user_id: u64,
        at: DateTime<Utc>,
    ) {
        let added = after
            .iter()
            .filter(|l| !before.contains(l))
            .map(|l| (l, "add"));
        let removed = before
            .iter()
            .filter(|l| !after.contains(l))
            .map(|l| (l, "remove"));
        let changes: Vec<(&String, &'static str)> = added.chain(removed).collect();
        let mut events = Vec::with_capacity(changes.len());
        for (name, action) in changes {
            let label = self.label_for_project(project_id, name);
            events.push(LabelEvent {
                id: self.alloc_object_id(),
                user_id,
                created_at: at,
                label,
                action,
            });
        }
        self.issue_mut_or_panic(project_id, iid)
            .label_events
            .extend(events);
    }

    fn issue_state(&self, issue: &Issue) -> IssueState {
        IssueState {
            id: issue.id,
            iid: issue.iid,
            project_id: issue.project_id,
            title: issue.title.clone(),
            description: issue.description.clone().unwrap_or_default(),
            state: issue.state.clone(),
            confidential: issue.confidential,
            labels: issue.labels.clone(),
            assignee_ids: issue.assignee_ids.clone(),
            notes: issue.notes.iter().map(|n| self.note_state(n)).collect(),
            links: issue.links.iter().map(|l| l.target).collect(),
            updated_at: fmt_time(issue.updated_at),
        }
    }

    fn note_state(&self, note: &Note) -> NoteState {
        NoteState {
            id: note.id,
            body: note.body.clone(),
            author_id: note.author_id,
            author_username: self.user_or_placeholder(note.author_id).spec.username,
            created_at: fmt_time(note.created_at),
            system: note.system,
            internal: note.internal,
        }
    }

    /// Records the call and answers it.
    fn handle(&mut self, ctx: &Ctx<'_>) -> Reply {
        let reply = self.answer(ctx);
        self.calls.push(RecordedCall {
            method: ctx.method.clone(),
            path: ctx.path.clone(),
            query: ctx.raw_query.clone(),
            body: String::from_utf8_lossy(&ctx.req.body).into_owned(),
            event_uuid: ctx.header("x-gitlab-event-uuid").map(str::to_owned),
            status: reply.status,
        });
        reply
    }

    fn answer(&mut self, ctx: &Ctx<'_>) -> Reply {
        let Some(rest) = ctx.path.strip_prefix(API_PREFIX) else {
            return Reply::error(404, "404 Not Found");
        };
        if ctx.header("private-token") != Some(self.token.as_str()) {
            return Reply::message(401, "401 Unauthorized");
        }
        let mut delay = None;
        match self.next_fault(ctx) {
            Some(Fault::Status(status)) => return Reply::status_fault(status),
            Some(Fault::RateLimited { retry_after_secs }) => {
                return Reply::rate_limited(retry_after_secs, self.clock.peek());
            }
            Some(Fault::Delay(d)) => delay = Some(d),
            None => {}
        }
        let decoded: Vec<String> = rest.split('/').map(percent_decode).collect();
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let mut reply = route(self, ctx, &segments).unwrap_or_else(|err| err);
        reply.delay = delay;
        reply
    }

    fn next_fault(&mut self, ctx: &Ctx<'_>) -> Option<Fault> {
        if let Some(pos) = self.faults.iter().position(|rule| rule.matches(ctx)) {
            return self.faults.remove(pos).map(|rule| rule.fault);
        }
        self.failure.as_mut().and_then(FailureRate::roll)
    }
}

// ---------------------------------------------------------------------------------------------
// Request plumbing
// ---------------------------------------------------------------------------------------------

struct Responder {
    world: Arc<Mutex<World>>,
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let ctx = Ctx::new(req);
        let reply = lock(&self.world).handle(&ctx);
        reply.into_template()
    }
}

/// One incoming request, pre-digested for handlers.
struct Ctx<'a> {
    req: &'a Request,
    method: String,
    /// Raw (percent-encoded) path.
    path: String,
    raw_query: String,
    query: Params,
}

impl<'a> Ctx<'a> {
    fn new(req: &'a Request) -> Self {
        let raw_query = req.url.query().unwrap_or_default().to_owned();
        Ctx {
            req,
            method: req.method.as_str().to_ascii_uppercase(),
            path: req.url.path().to_owned(),
            query: Params::from_form(raw_query.as_bytes()),
            raw_query,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Query parameters followed by body parameters (form or JSON), like Grape merges them.
    fn params(&self) -> Result<Params, Reply> {
        let mut params = self.query.clone();
        let body = &self.req.body;
        let is_json = self
            .header("content-type")
            .is_some_and(|ct| ct.contains("json"))
            || body.trim_ascii_start().first() == Some(&b'{');
        let from_body = if body.is_empty() {
            Params::default()
        } else if is_json {
            Params::from_json(body)?
        } else {
            Params::from_form(body)
        };
        params.0.extend(from_body.0);
        Ok(params)
    }
}

/// Ordered key/value pairs (repeated keys allowed, `key[]` for arrays).
#[derive(Debug, Clone, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn from_form(bytes: &[u8]) -> Self {
        Params(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn from_json(bytes: &[u8]) -> Result<Self, Reply> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|_| Reply::error(400, "400 Bad request - invalid JSON body"))?;
        let Value::Object(map) = value else {
            return Err(Reply::error(
                400,
                "400 Bad request - JSON body must be an object",
            ));
        };
        let mut pairs = Vec::new();
        for (key, value) in map {
            match value {
                Value::Null => {}
                Value::Array(items) if items.is_empty() => pairs.push((key, String::new())),
                Value::Array(items) => {
                    let array_key = format!("{key}[]");
                    pairs.extend(items.iter().map(|v| (array_key.clone(), scalar_string(v))));
                }
                other => pairs.push((key, scalar_string(&other))),
            }
        }
        Ok(Params(pairs))
    }

    /// Last value of `key` (Rack semantics for repeated scalar keys).
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key[]=a&key[]=b` or `key=a,b`; `None` if the key is absent. Empty items are dropped.
    fn list(&self, key: &str) -> Option<Vec<String>> {
        let array_key = format!("{key}[]");
        let items: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| *k == array_key)
            .map(|(_, v)| v.as_str())
            .collect();
        let raw = if items.is_empty() {
            vec![self.get(key)?]
        } else {
            items
        };
        Some(
            raw.iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, Reply> {
        self.get(key)
            .map(|v| v.trim().parse().map_err(|_| invalid_param(key)))
            .transpose()
    }

    fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>, Reply> {
        self.get(key)
            .map(|v| parse_time(v).ok_or_else(|| invalid_param(key)))
            .transpose()
    }

    /// Grape's Boolean coercion: `true`/`false` (also `1`/`0`, `yes`/`no`, `t`/`f`), else 400.
    fn bool(&self, key: &str) -> Result<Option<bool>, Reply> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "t" => Ok(Some(true)),
                "false" | "0" | "no" | "f" => Ok(Some(false)),
                _ => Err(invalid_param(key)),
            },
        }
    }

    /// The value if it is one of `allowed`, else 400.
    fn one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<String>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(_) => Err(Reply::error(
                400,
                &format!("{key} does not have a valid value"),
            )),
        }
    }
}

fn scalar_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn invalid_param(key: &str) -> Reply {
    Reply::error(400, &format!("{key} is invalid"))
}

enum Body {
    Json(Value),
    Text(String),
}

/// A response before it becomes a wiremock `ResponseTemplate`.
struct Reply {
    status: u16,
    body: Body,
    headers: Vec<(String, String)>,
    delay: Option<Duration>,
}

/// Handlers return `Err` for early exits (404, 400, ...); both sides are sent as is.
type HandlerResult = Result<Reply, Reply>;

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Body::Json(body),
            headers: Vec::new(),
            delay: None,
        }
    }

    /// `{"message": msg}`, GitLab's usual error shape.
    fn message(status: u16, msg: &str) -> Reply {
        Reply::json(status, json!({ "message": msg }))
    }

    /// `{"error": msg}`, the shape of Grape validation errors and unknown routes.
    fn error(status: u16, msg: &str) -> Reply {
        Reply::json(status, json!({ "error": msg }))
    }

    fn status_fault(status: u16) -> Reply {
        Reply::message(status, &format!("{status} {}", reason_phrase(status)))
    }

    fn rate_limited(retry_after_secs: u64, now: DateTime<Utc>) -> Reply {
        let reset = now + TimeDelta::seconds(i64::try_from(retry_after_secs).unwrap_or(i64::MAX));
        Reply {
            status: 429,
            body: Body::Text("Retry later\n".to_owned()),
            headers: vec![
                ("Retry-After".to_owned(), retry_after_secs.to_string()),
                (
                    "RateLimit-Name".to_owned(),
                    "throttle_authenticated_api".to_owned(),
                ),
                ("RateLimit-Limit".to_owned(), "2000".to_owned()),
                ("RateLimit-Observed".to_owned(), "2001".to_owned()),
                ("RateLimit-Remaining".to_owned(), "0".to_owned()),
                ("RateLimit-Reset".to_owned(), reset.timestamp().to_string()),
                (
                    "RateLimit-ResetTime".to_owned(),
                    reset.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                ),
            ],
            delay: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn into_template(self) -> ResponseTemplate {
        let mut template = ResponseTemplate::new(self.status);
        template = match self.body {
            Body::Json(value) => template.set_body_json(value),
            Body::Text(text) => template.set_body_raw(text, "text/plain"),
        };
        for (name, value) in self.headers {
            template = template.append_header(name.as_str(), value.as_str());
        }
        if let Some(delay) = self.delay {
            template = template.set_delay(delay);
        }
        template
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

// ---------------------------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------------------------

/// Dispatches on method + percent-decoded path segments below `/api/v4/`.
fn route(w: &mut World, ctx: &Ctx<'_>, segments: &[&str]) -> HandlerResult {
    match (ctx.method.as_str(), segments) {
        ("GET", ["user"]) => get_current_user(w),
        ("GET", ["users"]) => list_users(w, ctx),
        ("GET", ["users", id]) => get_user(w, id),
        ("GET", ["users", id_or_username, "status"]) => get_user_status(w, id_or_username),
        ("GET", ["users", id_or_username, "events"]) => list_user_events(w, ctx, id_or_username),
        ("GET", ["groups", group, "members", "all"]) => list_group_members_all(w, ctx, group),
        ("GET", ["merge_requests"]) => list_mrs(w, ctx, ListScope::Instance),
        ("GET", ["groups", group, "merge_requests"]) => {
            let full_path = lookup_group(w, group)?.full_path.clone();
            list_mrs(w, ctx, ListScope::Group(full_path))
        }
        ("GET", ["projects", project, "merge_requests"]) => {
            let project_id = lookup_project(w, project)?;
            list_mrs(w, ctx, ListScope::Project(project_id))
        }
        ("GET", ["projects", project, "merge_requests", iid]) => get_mr(w, project, iid),
        ("PUT", ["projects", project, "merge_requests", iid]) => put_mr(w, ctx, project, iid),
        ("GET", ["projects", project, "merge_requests", iid, "notes"]) => {
            list_mr_notes(w, ctx, project, iid)
        }
        ("POST", ["projects", project, "merge_requests", iid, "notes"]) => {
            post_mr_note(w, ctx, project, iid)
        }
        ("GET", ["issues"]) => list_issues(w, ctx, ListScope::Instance),
        ("GET", ["groups", group, "issues"]) => {
            let full_path = lookup_group(w, group)?.full_path.clone();
            list_issues(w, ctx, ListScope::Group(full_path))
        }
        ("GET", ["projects", project, "issues"]) => {
            let project_id = lookup_project(w, project)?;
            list_issues(w, ctx, ListScope::Project(project_id))
        }
        ("POST", ["projects", project, "issues"]) => post_issue(w, ctx, project),
        ("GET", ["projects", project, "issues", iid]) => get_issue(w, project, iid),
        ("PUT", ["projects", project, "issues", iid]) => put_issue(w, ctx, project, iid),
        ("GET", ["projects", project, "issues", iid, "notes"]) => {
            list_issue_notes(w, ctx, project, iid)
        }
        ("POST", ["projects", project, "issues", iid, "notes"]) => {
            post_issue_note(w, ctx, project, iid)
        }
        ("GET", ["projects", project, "issues", iid, "links"]) => list_issue_links(w, project, iid),
        ("POST", ["projects", project, "issues", iid, "links"]) => {
            post_issue_link(w, ctx, project, iid)
        }
        ("GET", ["projects", project, "issues", iid, "resource_label_events"]) => {
            list_issue_label_events(w, ctx, project, iid)
        }
        ("GET", ["projects", project, "issues", iid, "resource_state_events"]) => {
            list_issue_state_events(w, ctx, project, iid)
        }
        ("POST", ["projects", project, "statuses", sha]) => post_status(w, ctx, project, sha),
        ("GET", [kind @ ("groups" | "projects"), owner, "labels"]) => {
            let key = owner_key(w, kind, owner)?;
            list_labels(w, ctx, &key)
        }
        ("POST", [kind @ ("groups" | "projects"), owner, "labels"]) => {
            let key = owner_key(w, kind, owner)?;
            create_label(w, ctx, &key)
        }
        ("PUT", [kind @ ("groups" | "projects"), owner, "labels", id]) => {
            let key = owner_key(w, kind, owner)?;
            update_label(w, ctx, &key, id)
        }
        ("GET", [kind @ ("groups" | "projects"), owner, "hooks"]) => {
            let key = owner_key(w, kind, owner)?;
            hook_events::list_hooks(w, ctx, &key)
        }
        ("GET", [kind @ ("groups" | "projects"), owner, "hooks", id, "events"]) => {
            let key = owner_key(w, kind, owner)?;
            hook_events::list_events(w, ctx, &key, id)
        }
        ("POST", [kind @ ("groups" | "projects"), owner, "hooks"]) => {
            let key = owner_key(w, kind, owner)?;
            create_hook(w, ctx, &key)
        }
        ("PUT", [kind @ ("groups" | "projects"), owner, "hooks", id]) => {
            let key = owner_key(w, kind, owner)?;
            update_hook(w, ctx, &key, id)
        }
        ("GET", ["projects", project, "repository", "commits", sha, "statuses"]) => {
            list_statuses(w, ctx, project, sha)
        }
        _ => repository::route(w, ctx, segments)
            .unwrap_or_else(|| Err(Reply::error(404, "404 Not Found"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Lookups (return the 404 GitLab would send)
// ---------------------------------------------------------------------------------------------

fn lookup_user<'w>(w: &'w World, id: &str) -> Result<&'w User, Reply> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| w.users.get(&id))
        .ok_or_else(|| Reply::message(404, "404 User Not Found"))
}

fn lookup_user_by_id_or_username<'w>(w: &'w World, key: &str) -> Result<&'w User, Reply> {
    lookup_user(w, key).or_else(|_| {
        w.user_by_username(key)
            .ok_or_else(|| Reply::message(404, "404 User Not Found"))
    })
}

/// Numeric id or full path (already percent-decoded).
fn lookup_group<'w>(w: &'w World, key: &str) -> Result<&'w Group, Reply> {
    let found = match key.parse::<u64>() {
        Ok(id) => w.groups.get(&id),
        Err(_) => w
            .groups
            .values()
            .find(|g| g.full_path.eq_ignore_ascii_case(key)),
    };
    found.ok_or_else(|| Reply::message(404, "404 Group Not Found"))
}

/// Numeric id or `path_with_namespace` (already percent-decoded) -> project id.
fn lookup_project(w: &World, key: &str) -> Result<u64, Reply> {
    let found = match key.parse::<u64>() {
        Ok(id) => w.projects.contains_key(&id).then_some(id),
        Err(_) => w
            .projects
            .iter()
            .find(|(_, path)| path.eq_ignore_ascii_case(key))
            .map(|(id, _)| *id),
    };
    found.ok_or_else(|| Reply::message(404, "404 Project Not Found"))
}

fn find_issue_key(w: &World, project: &str, iid: &str) -> Result<(u64, u64), Reply> {
    let project_id = lookup_project(w, project)?;
    let iid: u64 = iid.parse().map_err(|_| invalid_param("issue_iid"))?;
    if w.issues.contains_key(&(project_id, iid)) {
        Ok((project_id, iid))
    } else {
        Err(Reply::message(404, "404 Not found"))
    }
}

fn find_mr_key(w: &World, project: &str, iid: &str) -> Result<(u64, u64), Reply> {
    let project_id = lookup_project(w, project)?;
    let iid: u64 = iid
        .parse()
        .map_err(|_| invalid_param("merge_request_iid"))?;
    if w.mrs.contains_key(&(project_id, iid)) {
        Ok((project_id, iid))
    } else {
        Err(Reply::message(404, "404 Not found"))
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers: users and groups
// ---------------------------------------------------------------------------------------------

/// `GET /user`
fn get_current_user(w: &mut World) -> HandlerResult {
    let bot = w.user_or_placeholder(w.bot_id);
    Ok(Reply::json(200, current_user_json(&bot)))
}

/// `GET /users?username=..&search=..`
fn list_users(w: &mut World, ctx: &Ctx<'_>) -> HandlerResult {
    let username = ctx.query.get("username").map(str::to_lowercase);
    let search = ctx.query.get("search").map(str::to_lowercase);
    // GitLab's default order is id desc.
    let users: Vec<&User> = w
        .users
        .values()
        .rev()
        .filter(|u| {
            username
                .as_deref()
                .is_none_or(|name| u.spec.username.to_lowercase() == name)
        })
        .filter(|u| {
            search.as_deref().is_none_or(|s| {
                u.spec.username.to_lowercase().contains(s) || u.spec.name.to_lowercase().contains(s)
            })
        })
        .collect();
    paginate(w, ctx, &users, |u| user_basic_json(u))
}

/// `GET /users/:id`
fn get_user(w: &mut World, id: &str) -> HandlerResult {
    let user = lookup_user(w, id)?;
    Ok(Reply::json(200, user_json(user)))
}

/// `GET /users/:id_or_username/status`
fn get_user_status(w: &mut World, id_or_username: &str) -> HandlerResult {
    let user = lookup_user_by_id_or_username(w, id_or_username)?;
    Ok(Reply::json(
        200,
        json!({
            "emoji": null,
            "availability": user.availability,
            "message": null,
            "message_html": "",
            "clear_status_at": null,
        }),
    ))
}

/// `GET /groups/:id/members/all` (direct plus inherited members, each user once).
fn list_group_members_all(w: &mut World, ctx: &Ctx<'_>, group: &str) -> HandlerResult {
    let group = lookup_group(w, group)?;
    let mut lineage: Vec<&Group> = w
        .groups
        .values()
        .filter(|g| {
            g.full_path == group.full_path
                || group.full_path.starts_with(&format!("{}/", g.full_path))
        })
        .collect();
    // The group itself first, then its ancestors from nearest to farthest.
    lineage.sort_by_key(|g| std::cmp::Reverse(g.full_path.len()));
    let mut members: Vec<(u64, u64)> = Vec::new();
    for g in lineage {
        for &(user_id, access_level) in &g.members {
            if !members.iter().any(|(id, _)| *id == user_id) {
                members.push((user_id, access_level));
            }
        }
    }
    paginate(w, ctx, &members, |&(user_id, access_level)| {
        member_json(w, user_id, access_level)
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers: merge requests
// ---------------------------------------------------------------------------------------------

/// Where a merge request or issue list endpoint looks.
enum ListScope {
    /// `GET /merge_requests`, `GET /issues` (default `scope=created_by_me`).
    Instance,
    /// `GET /groups/:id/{merge_requests,issues}`: projects under this full path.
    Group(String),
    /// `GET /projects/:id/{merge_requests,issues}`.
    Project(u64),
}

/// One filter of a listing.
type Predicate<T> = Box<dyn Fn(&T) -> bool>;
type MrPredicate = Predicate<Mr>;

/// Builds the filters of the merge request list endpoints from the query.
fn mr_list_filters(w: &World, q: &Params, scope: &ListScope) -> Result<Vec<MrPredicate>, Reply> {
    let mut preds: Vec<MrPredicate> = Vec::new();
    match scope {
        ListScope::Instance => {}
        ListScope::Group(full_path) => {
            let prefix = format!("{full_path}/");
            preds.push(Box::new(move |mr| mr.project_path.starts_with(&prefix)));
        }
        ListScope::Project(project_id) => {
            let project_id = *project_id;
            preds.push(Box::new(move |mr| mr.project_id == project_id));
        }
    }

    let default_scope = match scope {
        ListScope::Instance => "created_by_me",
        _ => "all",
    };
    let user_scope = q
        .one_of(
            "scope",
            &[
                "created_by_me",
                "created-by-me",
                "assigned_to_me",
                "assigned-to-me",
                "reviews_for_me",
                "all",
            ],
        )?
        .unwrap_or_else(|| default_scope.to_owned());
    let bot = w.bot_id;
    match user_scope.replace('-', "_").as_str() {
        "created_by_me" => preds.push(Box::new(move |mr| mr.author_id == bot)),
        // The fake has no assignees.
        "assigned_to_me" => preds.push(Box::new(|_| false)),
        "reviews_for_me" => preds.push(Box::new(move |mr| mr.reviewer_ids.contains(&bot))),
        _ => {}
    }

    shared_list_filters(
        w,
        q,
        &["opened", "closed", "locked", "merged", "all"],
        &mut preds,
    )?;
    match q.get("reviewer_id") {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("none") => {
            preds.push(Box::new(|mr| mr.reviewer_ids.is_empty()));
        }
        Some(v) if v.eq_ignore_ascii_case("any") => {
            preds.push(Box::new(|mr| !mr.reviewer_ids.is_empty()));
        }
        Some(_) => {
            let reviewer = q.u64("reviewer_id")?.unwrap_or_default();
            preds.push(Box::new(move |mr| mr.reviewer_ids.contains(&reviewer)));
        }
    }
    if let Some(username) = q.get("reviewer_username") {
        let reviewer = w.user_by_username(username).map(|u| u.spec.id);
        preds.push(Box::new(move |mr| {
            reviewer.is_some_and(|id| mr.reviewer_ids.contains(&id))
        }));
    }
    for (key, is_source) in [("source_branch", true), ("target_branch", false)] {
        if let Some(branch) = q.get(key).map(str::to_owned) {
            preds.push(Box::new(move |mr| {
                let actual = if is_source {
                    &mr.source_branch
                } else {
                    &mr.target_branch
                };
                *actual == branch
            }));
        }
    }
    if let Some(wip) = q.one_of("wip", &["yes", "no"])? {
        let want_draft = wip == "yes";
        preds.push(Box::new(move |mr| mr.draft == want_draft));
    }
    Ok(preds)
}

/// What the MR and issue listings filter alike.
trait Listed: 'static {
    fn iid(&self) -> u64;
    fn author_id(&self) -> u64;
    fn state(&self) -> &str;
    fn labels(&self) -> &[String];
    fn created_at(&self) -> DateTime<Utc>;
    fn updated_at(&self) -> DateTime<Utc>;
}

macro_rules! listed {
    ($t:ty) => {
        impl Listed for $t {
            fn iid(&self) -> u64 {
                self.iid
            }
            fn author_id(&self) -> u64 {
                self.author_id
            }
            fn state(&self) -> &str {
                &self.state
            }
            fn labels(&self) -> &[String] {
                &self.labels
            }
            fn created_at(&self) -> DateTime<Utc> {
                self.created_at
            }
            fn updated_at(&self) -> DateTime<Utc> {
                self.updated_at
            }
        }
    };
}
listed!(Mr);
listed!(Issue);

/// The filters both listings share: `state` (one of `states`), `labels`, `author_id`,
/// `author_username`, the `created_*`/`updated_*` windows and `iids`.
fn shared_list_filters<T: Listed>(
    w: &World,
    q: &Params,
    states: &[&str],
    preds: &mut Vec<Predicate<T>>,
) -> Result<(), Reply> {
    if let Some(state) = q.one_of("state", states)? {
        if state != "all" {
            preds.push(Box::new(move |x| x.state() == state));
        }
    }
    if let Some(labels) = q.list("labels") {
        match labels.as_slice() {
            [only] if only.eq_ignore_ascii_case("none") => {
                preds.push(Box::new(|x| x.labels().is_empty()));
            }
            [only] if only.eq_ignore_ascii_case("any") => {
                preds.push(Box::new(|x| !x.labels().is_empty()));
            }
            _ => preds.push(Box::new(move |x| {
                labels.iter().all(|l| x.labels().contains(l))
            })),
        }
    }
    if let Some(author_id) = q.u64("author_id")? {
        preds.push(Box::new(move |x| x.author_id() == author_id));
    }
    if let Some(username) = q.get("author_username") {
        let author = w.user_by_username(username).map(|u| u.spec.id);
        preds.push(Box::new(move |x| Some(x.author_id()) == author));
    }
    // GitLab's finders compare inclusively.
    if let Some(t) = q.time("updated_after")? {
        preds.push(Box::new(move |x| x.updated_at() >= t));
    }
    if let Some(t) = q.time("updated_before")? {
        preds.push(Box::new(move |x| x.updated_at() <= t));
    }
    if let Some(t) = q.time("created_after")? {
        preds.push(Box::new(move |x| x.created_at() >= t));
    }
    if let Some(t) = q.time("created_before")? {
        preds.push(Box::new(move |x| x.created_at() <= t));
    }
    if let Some(iids) = q.list("iids") {
        let iids: Vec<u64> = iids
            .iter()
            .map(|v| v.parse().map_err(|_| invalid_param("iids")))
            .collect::<Result<_, _>>()?;
        preds.push(Box::new(move |x| iids.contains(&x.iid())));
    }
    Ok(())
}

/// GitLab's list order: `order_by=created_at|updated_at` (default created_at), `sort=asc|desc`
/// (default desc), ties broken by id. `times` gives (created_at, updated_at, id).
fn sort_listing<T>(
    q: &Params,
    items: &mut [&T],
    times: impl Fn(&T) -> (DateTime<Utc>, DateTime<Utc>, u64),
) -> Result<(), Reply> {
    let by_updated = q
        .one_of("order_by", &["created_at", "updated_at"])?
        .as_deref()
        == Some("updated_at");
    let ascending = q.one_of("sort", &["asc", "desc"])?.as_deref() == Some("asc");
    items.sort_by_key(|x| {
        let (created, updated, id) = times(x);
        (if by_updated { updated } else { created }, id)
    });
    if !ascending {
        items.reverse();
    }
    Ok(())
}

/// `GET /merge_requests`, `GET /groups/:id/merge_requests`, `GET /projects/:id/merge_requests`
fn list_mrs(w: &mut World, ctx: &Ctx<'_>, scope: ListScope) -> HandlerResult {
    let preds = mr_list_filters(w, &ctx.query, &scope)?;
    let mut mrs: Vec<&Mr> = w
        .mrs
        .values()
        .filter(|mr| preds.iter().all(|p| p(mr)))
        .collect();
    sort_listing(&ctx.query, &mut mrs, |mr| {
        (mr.created_at, mr.updated_at, mr.id)
    })?;
    paginate(w, ctx, &mrs, |mr| mr_json(w, mr))
}

/// `GET /projects/:id/merge_requests/:iid`
fn get_mr(w: &mut World, project: &str, iid: &str) -> HandlerResult {
    let key = find_mr_key(w, project, iid)?;
    Ok(Reply::json(200, mr_json(w, &w.mrs[&key])))
}

/// `PUT /projects/:id/merge_requests/:iid`
///
/// Supports `labels`, `add_labels`, `remove_labels` (comma lists or arrays), `reviewer_ids`
/// (`reviewer_ids[]=..` repeated, comma list, or `0`/empty for none), `state_event`
/// (`close`/`reopen`), `title`, `description`, `target_branch`. `updated_at` is bumped only
/// if something changed.
fn put_mr(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    const KEYS: [&str; 8] = [
        "labels",
        "add_labels",
        "remove_labels",
        "reviewer_ids",
        "state_event",
        "title",
        "description",
        "target_branch",
    ];
    let key = find_mr_key(w, project, iid)?;
    let params = ctx.params()?;

    // Validate everything before touching the world.
    let provided = KEYS
        .iter()
        .any(|k| params.get(k).is_some() || params.get(&format!("{k}[]")).is_some());
    if !provided {
        return Err(Reply::error(
            400,
            &format!(
                "{}, {} are missing, at least one parameter must be provided",
                KEYS[..KEYS.len() - 1].join(", "),
                KEYS[KEYS.len() - 1]
            ),
        ));
    }
    let set_labels = params.list("labels");
    let add_labels = params.list("add_labels");
    let remove_labels = params.list("remove_labels");
    let reviewer_ids = match params.list("reviewer_ids") {
        None => None,
        Some(raw) => {
            let mut ids = Vec::new();
            for v in raw {
                let id: u64 = v.parse().map_err(|_| invalid_param("reviewer_ids"))?;
                // 0 means "nobody"; GitLab silently drops ids of unknown users.
                if id != 0 && w.users.contains_key(&id) {
                    ids.push(id);
                }
            }
            dedup_keep_order(&mut ids);
            Some(ids)
        }
    };
    let state_event = params.one_of("state_event", &["close", "reopen"])?;
    let title = params.get("title").map(str::to_owned);
    let description = params.get("description").map(str::to_owned);
    let target_branch = params.get("target_branch").map(str::to_owned);

    let World { mrs, clock, .. } = &mut *w;
    let mr = mrs.get_mut(&key).expect("looked up above");
    let before = (
        mr.labels.clone(),
        mr.reviewer_ids.clone(),
        mr.state.clone(),
        mr.title.clone(),
        mr.description.clone(),
        mr.target_branch.clone(),
    );
    if let Some(labels) = set_labels {
        mr.labels = labels;
    }
    if let Some(add) = add_labels {
        mr.labels.extend(add);
    }
    if let Some(remove) = remove_labels {
        mr.labels.retain(|l| !remove.contains(l));
    }
    normalize_labels(&mut mr.labels);
    if let Some(ids) = reviewer_ids {
        mr.reviewer_ids = ids;
    }
    match (state_event.as_deref(), mr.state.as_str()) {
        (Some("close"), "opened") => mr.state = "closed".to_owned(),
        (Some("reopen"), "closed") => mr.state = "opened".to_owned(),
        _ => {}
    }
    if let Some(title) = title {
        mr.draft = is_draft_title(&title);
        mr.title = title;
    }
    if let Some(description) = description {
        mr.description = description;
    }
    if let Some(target_branch) = target_branch {
        mr.target_branch = target_branch;
    }
    let after = (
        mr.labels.clone(),
        mr.reviewer_ids.clone(),
        mr.state.clone(),
        mr.title.clone(),
        mr.description.clone(),
        mr.target_branch.clone(),
    );
    if before != after {
        mr.updated_at = clock.tick();
    }

    let mr = &w.mrs[&key];
    let mut body = mr_json(w, mr);
    body["diverged_commits_count"] = json!(0);
    Ok(Reply::json(200, body))
}

/// `GET /projects/:id/merge_requests/:iid/notes` (`sort=asc|desc`, `order_by=created_at|updated_at`)
fn list_mr_notes(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    let key = find_mr_key(w, project, iid)?;
    let mr = &w.mrs[&key];
    let notes = sorted_notes(ctx, &mr.notes)?;
    let noteable = Noteable::of_mr(mr);
    paginate(w, ctx, &notes, |n| note_json(w, &noteable, n))
}

/// Notes ordered by the query's `order_by` (`created_at`|`updated_at`) and `sort`
/// (`asc`|`desc`, default `desc` as in GitLab).
fn sorted_notes<'n>(ctx: &Ctx<'_>, notes: &'n [Note]) -> Result<Vec<&'n Note>, Reply> {
    let order_by = ctx
        .query
        .one_of("order_by", &["created_at", "updated_at"])?
        .unwrap_or_else(|| "created_at".to_owned());
    let ascending = ctx.query.one_of("sort", &["asc", "desc"])?.as_deref() == Some("asc");
    let mut notes: Vec<&Note> = notes.iter().collect();
    notes.sort_by_key(|n| {
        let t = if order_by == "updated_at" {
            n.updated_at
        } else {
            n.created_at
        };
        (t, n.id)
    });
    if !ascending {
        notes.reverse();
    }
    Ok(notes)
}

/// The `body` of a note creation request (400 if missing or blank).
fn note_body_param(params: &Params) -> Result<String, Reply> {
    let body = params
        .get("body")
        .ok_or_else(|| Reply::error(400, "body is missing"))?;
    if body.trim().is_empty() {
        return Err(Reply::error(400, "body is empty"));
    }
    Ok(body.to_owned())
}

/// The `internal` flag of a note creation request: `internal`, else the deprecated
/// `confidential` ("`internal` overrides `confidential` when both parameters are submitted";
/// default false), as in doc/api/notes.md.
fn note_internal_param(params: &Params) -> Result<bool, Reply> {
    Ok(match params.bool("internal")? {
        Some(v) => v,
        None => params.bool("confidential")?.unwrap_or(false),
    })
}

/// `POST /projects/:id/merge_requests/:iid/notes` with `body` and optional `internal` (or the
/// deprecated `confidential`), form or JSON; authored by the token's user.
fn post_mr_note(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    let (project_id, iid) = find_mr_key(w, project, iid)?;
    let params = ctx.params()?;
    let body = note_body_param(&params)?;
    let internal = note_internal_param(&params)?;
    let note_id = w.create_mr_note(project_id, iid, w.bot_id, &body, false, internal);
    let mr = &w.mrs[&(project_id, iid)];
    let note = mr
        .notes
        .iter()
        .find(|n| n.id == note_id)
        .expect("just created");
    Ok(Reply::json(201, note_json(w, &Noteable::of_mr(mr), note)))
}

// ---------------------------------------------------------------------------------------------
// Handlers: issues
// ---------------------------------------------------------------------------------------------

type IssuePredicate = Predicate<Issue>;

/// Builds the filters of the issue list endpoints from the query.
fn issue_list_filters(
    w: &World,
    q: &Params,
    scope: &ListScope,
) -> Result<Vec<IssuePredicate>, Reply> {
    let mut preds: Vec<IssuePredicate> = Vec::new();
    match scope {
        ListScope::Instance => {}
        ListScope::Group(full_path) => {
            let prefix = format!("{full_path}/");
            let project_ids: Vec<u64> = w
                .projects
                .iter()
                .filter(|(_, path)| path.starts_with(&prefix))
                .map(|(&id, _)| id)
                .collect();
            preds.push(Box::new(move |i| project_ids.contains(&i.project_id)));
        }
        ListScope::Project(project_id) => {
            let project_id = *project_id;
            preds.push(Box::new(move |i| i.project_id == project_id));
        }
    }

    let default_scope = match scope {
        ListScope::Instance => "created_by_me",
        _ => "all",
    };
    let user_scope = q
        .one_of(
            "scope",
            &[
                "created_by_me",
                "created-by-me",
                "assigned_to_me",
                "assigned-to-me",
                "all",
            ],
        )?
        .unwrap_or_else(|| default_scope.to_owned());
    let bot = w.bot_id;
    match user_scope.replace('-', "_").as_str() {
        "created_by_me" => preds.push(Box::new(move |i| i.author_id == bot)),
        "assigned_to_me" => preds.push(Box::new(move |i| i.assignee_ids.contains(&bot))),
        _ => {}
    }

    shared_list_filters(w, q, &["opened", "closed", "all"], &mut preds)?;
    if let Some(search) = q.get("search").map(str::to_lowercase) {
        preds.push(Box::new(move |i| {
            i.title.to_lowercase().contains(&search)
                || i.description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(&search))
        }));
    }
    if let Some(confidential) = q.bool("confidential")? {
        preds.push(Box::new(move |i| i.confidential == confidential));
    }
    match q.get("assignee_id") {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("none") => {
            preds.push(Box::new(|i| i.assignee_ids.is_empty()));
        }
        Some(v) if v.eq_ignore_ascii_case("any") => {
            preds.push(Box::new(|i| !i.assignee_ids.is_empty()));
        }
        Some(_) => {
            let assignee = q.u64("assignee_id")?.unwrap_or_default();
            preds.push(Box::new(move |i| i.assignee_ids.contains(&assignee)));
        }
    }
    if let Some(usernames) = q.list("assignee_username") {
        let ids: Vec<Option<u64>> = usernames
            .iter()
            .map(|name| w.user_by_username(name).map(|u| u.spec.id))
            .collect();
        preds.push(Box::new(move |i| {
            ids.iter()
                .all(|id| id.is_some_and(|id| i.assignee_ids.contains(&id)))
        }));
    }
    Ok(preds)
}

/// `GET /issues`, `GET /groups/:id/issues`, `GET /projects/:id/issues`
fn list_issues(w: &mut World, ctx: &Ctx<'_>, scope: ListScope) -> HandlerResult {
    let preds = issue_list_filters(w, &ctx.query, &scope)?;
    let mut issues: Vec<&Issue> = w
        .issues
        .values()
        .filter(|i| preds.iter().all(|p| p(i)))
        .collect();
    sort_listing(&ctx.query, &mut issues, |i| {
        (i.created_at, i.updated_at, i.id)
    })?;
    paginate(w, ctx, &issues, |i| issue_json(w, i))
}

/// `assignee_ids` (`assignee_ids[]=..` repeated, JSON array, comma list; `0` or empty for
/// nobody) or the older scalar `assignee_id`. Ids of unknown users are dropped, as GitLab
/// drops users who cannot be assigned. `None` if neither is given.
fn assignee_ids_param(w: &World, params: &Params) -> Result<Option<Vec<u64>>, Reply> {
    let (key, raw) = match params.list("assignee_ids") {
        Some(raw) => ("assignee_ids", raw),
        None => match params.get("assignee_id") {
            Some(v) => ("assignee_id", vec![v.trim().to_owned()]),
            None => return Ok(None),
        },
    };
    let mut ids = Vec::new();
    for v in raw.iter().filter(|v| !v.is_empty()) {
        let id: u64 = v.parse().map_err(|_| invalid_param(key))?;
        if id != 0 && w.users.contains_key(&id) {
            ids.push(id);
        }
    }
    dedup_keep_order(&mut ids);
    Ok(Some(ids))
}

fn blank_title() -> Reply {
    Reply::json(400, json!({ "message": { "title": ["can't be blank"] } }))
}

/// `POST /projects/:id/issues` with `title` (required), `description`, `labels`,
/// `confidential`, `assignee_ids`/`assignee_id` (form or JSON); authored by the token's user.
fn post_issue(w: &mut World, ctx: &Ctx<'_>, project: &str) -> HandlerResult {
    let project_id = lookup_project(w, project)?;
    let params = ctx.params()?;
    let title = params
        .get("title")
        .ok_or_else(|| Reply::message(400, "400 (Bad request) \"title\" not given"))?
        .to_owned();
    if title.trim().is_empty() {
        return Err(blank_title());
    }
    let description = params.get("description").map(str::to_owned);
    let mut labels = params.list("labels").unwrap_or_default();
    normalize_labels(&mut labels);
    let confidential = params.bool("confidential")?.unwrap_or(false);
    let assignee_ids = assignee_ids_param(w, &params)?.unwrap_or_default();

    let now = w.clock.tick();
    let id = w.alloc_issue_id();
    let key = (project_id, w.next_issue_iid(project_id));
    let bot = w.bot_id;
    let mut issue = Issue::new(id, key, bot, now);
    issue.title = title;
    issue.description = description;
    issue.confidential = confidential;
    issue.labels = labels.clone();
    issue.assignee_ids = assignee_ids;
    w.issues.insert(key, issue);
    w.record_label_changes(key, &[], &labels, bot, now);
    Ok(Reply::json(201, issue_json(w, &w.issues[&key])))
}

/// `GET /projects/:id/issues/:iid`
fn get_issue(w: &mut World, project: &str, iid: &str) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    Ok(Reply::json(200, issue_json(w, &w.issues[&key])))
}

/// `PUT /projects/:id/issues/:iid`
///
/// Supports `title`, `description` (stored verbatim), `labels` (replace), `add_labels`,
/// `remove_labels`, `assignee_ids`/`assignee_id` (`0`/empty for nobody), `confidential` and
/// `state_event` (`close`/`reopen`). Every label actually added or removed is recorded as a
/// label event by the token's user; `updated_at` is bumped only if something changed.
fn put_issue(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    const KEYS: [&str; 10] = [
        "title",
        "description",
        "labels",
        "add_labels",
        "remove_labels",
        "assignee_id",
        "assignee_ids",
        "confidential",
        "state_event",
        "discussion_locked",
    ];
    let key = find_issue_key(w, project, iid)?;
    let params = ctx.params()?;

    // Validate everything before touching the world.
    let provided = KEYS
        .iter()
        .any(|k| params.get(k).is_some() || params.get(&format!("{k}[]")).is_some());
    if !provided {
        return Err(Reply::error(
            400,
            &format!(
                "{}, {} are missing, at least one parameter must be provided",
                KEYS[..KEYS.len() - 1].join(", "),
                KEYS[KEYS.len() - 1]
            ),
        ));
    }
    let title = params.get("title").map(str::to_owned);
    if title.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(blank_title());
    }
    let description = params.get("description").map(str::to_owned);
    let set_labels = params.list("labels");
    let add_labels = params.list("add_labels");
    let remove_labels = params.list("remove_labels");
    let assignee_ids = assignee_ids_param(w, &params)?;
    let confidential = params.bool("confidential")?;
    // Accepted (and validated) but not modelled.
    params.bool("discussion_locked")?;
    let state_event = params.one_of("state_event", &["close", "reopen"])?;

    let bot = w.bot_id;
    let World { issues, clock, .. } = &mut *w;
    let issue = issues.get_mut(&key).expect("looked up above");
    let before = (
        issue.title.clone(),
        issue.description.clone(),
        issue.labels.clone(),
        issue.assignee_ids.clone(),
        issue.confidential,
        issue.state.clone(),
    );
    if let Some(title) = title {
        issue.title = title;
    }
    if let Some(description) = description {
        issue.description = Some(description);
    }
    if let Some(labels) = set_labels {
        issue.labels = labels;
    }
    if let Some(add) = add_labels {
        issue.labels.extend(add);
    }
    if let Some(remove) = remove_labels {
        issue.labels.retain(|l| !remove.contains(l));
    }
    normalize_labels(&mut issue.labels);
    if let Some(ids) = assignee_ids {
        issue.assignee_ids = ids;
    }
    if let Some(confidential) = confidential {
        issue.confidential = confidential;
    }
    match (state_event.as_deref(), issue.state.as_str()) {
        (Some("close"), "opened") => issue.state = "closed".to_owned(),
        (Some("reopen"), "closed") => issue.state = "opened".to_owned(),
        _ => {}
    }
    let after = (
        issue.title.clone(),
        issue.description.clone(),
        issue.labels.clone(),
        issue.assignee_ids.clone(),
        issue.confidential,
        issue.state.clone(),
    );
    if before != after {
        let now = clock.tick();
        issue.updated_at = now;
        if before.5 != after.5 {
            let closed = issue.state == "closed";
            issue.closed_at = closed.then_some(now);
            issue.closed_by = closed.then_some(bot);
        }
        let labels_after = issue.labels.clone();
        let closed = (before.5 != after.5).then_some(after.5 == "closed");
        w.record_label_changes(key, &before.2, &labels_after, bot, now);
        if let Some(closed) = closed {
            let id = w.alloc_object_id();
            w.issue_mut_or_panic(key.0, key.1)
                .state_events
                .push(StateEvent {
                    id,
                    user_id: bot,
                    created_at: now,
                    state: if closed { "closed" } else { "reopened" },
                });
        }
    }
    Ok(Reply::json(200, issue_json(w, &w.issues[&key])))
}

/// `GET /projects/:id/issues/:iid/notes` (`sort=asc|desc`, `order_by=created_at|updated_at`)
fn list_issue_notes(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let issue = &w.issues[&key];
    let notes = sorted_notes(ctx, &issue.notes)?;
    let noteable = Noteable::of_issue(issue);
    paginate(w, ctx, &notes, |n| note_json(w, &noteable, n))
}

/// `POST /projects/:id/issues/:iid/notes` with `body` and optional `internal` (or the
/// deprecated `confidential`), form or JSON; authored by the token's user.
fn post_issue_note(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    let (project_id, iid) = find_issue_key(w, project, iid)?;
    let params = ctx.params()?;
    let body = note_body_param(&params)?;
    let internal = note_internal_param(&params)?;
    let note_id = w.create_issue_note(project_id, iid, w.bot_id, &body, false, internal);
    let issue = &w.issues[&(project_id, iid)];
    let note = issue
        .notes
        .iter()
        .find(|n| n.id == note_id)
        .expect("just created");
    Ok(Reply::json(
        201,
        note_json(w, &Noteable::of_issue(issue), note),
    ))
}

/// `GET /projects/:id/issues/:iid/links`: the linked issues (not paginated, as in GitLab),
/// each with `issue_link_id`, `link_type`, `link_created_at` and `link_updated_at`.
fn list_issue_links(w: &mut World, project: &str, iid: &str) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let body: Vec<Value> = w.issues[&key]
        .links
        .iter()
        .filter_map(|link| {
            let target = w.issues.get(&link.target)?;
            let mut v = issue_json(w, target);
            v["issue_link_id"] = json!(link.id);
            v["link_type"] = json!(link.link_type);
            v["link_created_at"] = json!(fmt_time(link.created_at));
            v["link_updated_at"] = json!(fmt_time(link.created_at));
            Some(v)
        })
        .collect();
    Ok(Reply::json(200, Value::Array(body)))
}

/// `POST /projects/:id/issues/:iid/links` with `target_project_id` (id or path),
/// `target_issue_iid` and optional `link_type` (`relates_to`, `blocks`, `is_blocked_by`).
/// Links both issues; 409 if they are linked already.
fn post_issue_link(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    let source = find_issue_key(w, project, iid)?;
    let params = ctx.params()?;
    let target_project = params
        .get("target_project_id")
        .ok_or_else(|| Reply::error(400, "target_project_id is missing"))?;
    let target_iid = params
        .get("target_issue_iid")
        .ok_or_else(|| Reply::error(400, "target_issue_iid is missing"))?;
    let link_type = params
        .one_of("link_type", &["relates_to", "blocks", "is_blocked_by"])?
        .unwrap_or_else(|| "relates_to".to_owned());
    let target = find_issue_key(w, target_project, target_iid)?;
    if target == source {
        return Err(Reply::message(
            404,
            "No matching issue found. Make sure that you are adding a valid issue URL.",
        ));
    }
    if w.issues[&source].links.iter().any(|l| l.target == target) {
        return Err(Reply::message(409, "Issue(s) already assigned"));
    }
    let reverse_type = match link_type.as_str() {
        "blocks" => "is_blocked_by",
        "is_blocked_by" => "blocks",
        other => other,
    }
    .to_owned();

    let id = w.alloc_object_id();
    let now = w.clock.tick();
    for (from, to, link_type) in [
        (source, target, link_type.clone()),
        (target, source, reverse_type),
    ] {
        w.issue_mut_or_panic(from.0, from.1).links.push(IssueLink {
            id,
            target: to,
            link_type,
            created_at: now,
        });
    }
    Ok(Reply::json(
        201,
        json!({
            "source_issue": issue_json(w, &w.issues[&source]),
            "target_issue": issue_json(w, &w.issues[&target]),
            "link_type": link_type,
        }),
    ))
}

/// `GET /users/:id/events` (id or username): the user's contribution events, newest first
/// (`sort=asc` for oldest first). Only `commented` events are modelled (one per non-system
/// note the user wrote on an MR or issue); `after`/`before` are `YYYY-MM-DD` and exclusive, as
/// in GitLab.
fn list_user_events(w: &mut World, ctx: &Ctx<'_>, id_or_username: &str) -> HandlerResult {
    let user_id = lookup_user_by_id_or_username(w, id_or_username)?.spec.id;
    let action = ctx.query.get("action");
    if action.is_some_and(|a| a != "commented") {
        return Err(Reply::error(
            400,
            "only action=commented is modelled by the fake GitLab",
        ));
    }
    let day = |key: &str| -> Result<Option<chrono::NaiveDate>, Reply> {
        ctx.query
            .get(key)
            .map(|v| {
                chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| invalid_param(key))
            })
            .transpose()
    };
    let (after, before) = (day("after")?, day("before")?);
    let ascending = ctx.query.one_of("sort", &["asc", "desc"])?.as_deref() == Some("asc");
    let mut events: Vec<(Noteable, &Note)> = w
        .mrs
        .values()
        .flat_map(|mr| mr.notes.iter().map(move |n| (Noteable::of_mr(mr), n)))
        .chain(
            w.issues
                .values()
                .flat_map(|i| i.notes.iter().map(move |n| (Noteable::of_issue(i), n))),
        )
        .filter(|(_, n)| n.author_id == user_id && !n.system)
        .filter(|(_, n)| after.is_none_or(|d| n.created_at.date_naive() > d))
        .filter(|(_, n)| before.is_none_or(|d| n.created_at.date_naive() < d))
        .collect();
    events.sort_by_key(|(_, n)| (n.created_at, n.id));
    if !ascending {
        events.reverse();
    }
    paginate(w, ctx, &events, |(noteable, note)| {
        let author = w.user_or_placeholder(note.author_id);
        json!({
            "id": note.id,
            "title": null,
            "project_id": noteable.project_id,
            "action_name": "commented on",
            "target_id": note.id,
            "target_iid": note.id,
            "target_type": "Note",
            "author_id": note.author_id,
            "target_title": null,
            "created_at": fmt_time(note.created_at),
            "note": note_json(w, noteable, note),
            "author": user_basic_json(&author),
            "author_username": author.spec.username,
            "imported": false,
            "imported_from": "none",
        })
    })
}

/// `GET /projects/:id/issues/:iid/resource_label_events`, oldest first.
fn list_issue_label_events(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let issue = &w.issues[&key];
    paginate(w, ctx, &issue.label_events, |e| {
        label_event_json(w, issue, e)
    })
}

/// `GET /projects/:id/issues/:iid/resource_state_events`: closings and reopenings, oldest
/// first (an issue never closed has none: the initial state is not an event).
fn list_issue_state_events(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let issue = &w.issues[&key];
    paginate(w, ctx, &issue.state_events, |e| {
        json!({
            "id": e.id,
            "user": user_basic_json(&w.user_or_placeholder(e.user_id)),
            "created_at": fmt_time(e.created_at),
            "resource_type": "Issue",
            "resource_id": issue.id,
            "state": e.state,
        })
    })
}

/// A label of a group or project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelState {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: String,
}

/// A webhook of a group or project (the secret token is write-only, as in GitLab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookState {
    pub id: u64,
    pub url: String,
    pub token: Option<String>,
    pub events: BTreeMap<String, bool>,
    /// Project hooks: only pushes to matching branches are sent (`*` wildcards).
    pub push_events_branch_filter: Option<String>,
}

const HOOK_EVENTS: &[&str] = &[
    "push_events",
    "merge_requests_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "tag_push_events",
    "pipeline_events",
    "job_events",
    "wiki_page_events",
];

fn owner_key(w: &World, kind: &str, owner: &str) -> Result<String, Reply> {
    let id = if kind == "groups" {
        lookup_group(w, owner)?.id
    } else {
        lookup_project(w, owner)?
    };
    Ok(format!("{kind}/{id}"))
}

fn label_json(l: &LabelState) -> Value {
    json!({"id": l.id, "name": l.name, "color": l.color, "text_color": "#FFFFFF",
           "description": l.description, "description_html": l.description,
           "open_issues_count": 0, "closed_issues_count": 0, "open_merge_requests_count": 0,
           "subscribed": false, "priority": null, "is_project_label": false})
}

/// `GET /<owner>/labels`: the owner's labels, then (unless `include_ancestor_groups=false`,
/// GitLab's default being true) those of its ancestor groups, nearest first.
fn list_labels(w: &mut World, ctx: &Ctx<'_>, key: &str) -> HandlerResult {
    let own: Vec<(LabelState, bool)> = w
        .labels
        .get(key)
        .into_iter()
        .flatten()
        .map(|l| (l.clone(), key.starts_with("projects/")))
        .collect();
    let mut items = own;
    if ctx.query.bool("include_ancestor_groups")?.unwrap_or(true) {
        let path = match key.split_once('/') {
            Some(("projects", id)) => id.parse().map(|id| w.project_path(id)).unwrap_or_default(),
            Some(("groups", id)) => id
                .parse::<u64>()
                .ok()
                .and_then(|id| w.groups.get(&id))
                .map(|g| g.full_path.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let mut ancestors: Vec<&Group> = w
            .groups
            .values()
            .filter(|g| path.starts_with(&format!("{}/", g.full_path)))
            .collect();
        ancestors.sort_by_key(|g| std::cmp::Reverse(g.full_path.len()));
        for g in ancestors {
            items.extend(
                w.labels
                    .get(&format!("groups/{}", g.id))
                    .into_iter()
                    .flatten()
                    .map(|l| (l.clone(), false)),
            );
        }
    }
    paginate(w, ctx, &items, |(l, is_project_label)| {
        let mut v = label_json(l);
        v["is_project_label"] = json!(*is_project_label);
        v
    })
}

fn create_label(w: &mut World, ctx: &Ctx<'_>, key: &str) -> HandlerResult {
    let p = ctx.params()?;
    let name = p
        .get("name")
        .ok_or_else(|| Reply::error(400, "name is missing"))?
        .to_owned();
    let color = p
        .get("color")
        .ok_or_else(|| Reply::error(400, "color is missing"))?
        .to_owned();
    if w.labels
        .get(key)
        .is_some_and(|ls| ls.iter().any(|l| l.name == name))
    {
        return Err(Reply::message(409, "Label already exists"));
    }
    let id = w.next_object_id;
    w.next_object_id += 1;
    let l = LabelState {
        id,
        name,
        color,
        description: p.get("description").unwrap_or("").to_owned(),
    };
    w.labels.entry(key.to_owned()).or_default().push(l.clone());
    Ok(Reply::json(201, label_json(&l)))
}

fn update_label(w: &mut World, ctx: &Ctx<'_>, key: &str, id: &str) -> HandlerResult {
    let p = ctx.params()?;
    let l = w
        .labels
        .get_mut(key)
        .and_then(|ls| {
            ls.iter_mut()
                .find(|l| l.id.to_string() == id || l.name == id)
        })
        .ok_or_else(|| Reply::message(404, "404 Label Not Found"))?;
    if let Some(c) = p.get("new_color").or(p.get("color")) {
        l.color = c.to_owned();
    }
    if let Some(d) = p.get("description") {
        l.description = d.to_owned();
    }
    let l = l.clone();
    Ok(Reply::json(200, label_json(&l)))
}

fn hook_json(h: &HookState) -> Value {
    let mut v = json!({"id": h.id, "url": h.url, "enable_ssl_verification": true,
                       "created_at": "2026-01-01T00:00:00.000Z", "alert_status": "executable",
                       "push_events_branch_filter": h.push_events_branch_filter.clone().unwrap_or_default(),
                       "branch_filter_strategy": "wildcard"});
    for e in HOOK_EVENTS {
        v[*e] = json!(h.events.get(*e).copied().unwrap_or(false));
    }
    v
}

fn hook_events(p: &Params, base: &BTreeMap<String, bool>) -> BTreeMap<String, bool> {
    let mut events = base.clone();
    for e in HOOK_EVENTS {
        if let Ok(Some(v)) = p.bool(e) {
            events.insert(e.to_string(), v);
        } else if !events.contains_key(*e) {
            // GitLab's default: push events on, the rest off.
            events.insert(e.to_string(), *e == "push_events");
        }
    }
    events
}

fn create_hook(w: &mut World, ctx: &Ctx<'_>, key: &str) -> HandlerResult {
    let p = ctx.params()?;
    let url = p
        .get("url")
        .ok_or_else(|| Reply::error(400, "url is missing"))?
        .to_owned();
    let id = w.next_object_id;
    w.next_object_id += 1;
    let h = HookState {
        id,
        url,
        token: p.get("token").map(str::to_owned),
        events: hook_events(&p, &BTreeMap::new()),
        push_events_branch_filter: p
            .get("push_events_branch_filter")
            .filter(|f| !f.is_empty())
            .map(str::to_owned),
    };
    w.hooks.entry(key.to_owned()).or_default().push(h.clone());
    Ok(Reply::json(201, hook_json(&h)))
}

fn update_hook(w: &mut World, ctx: &Ctx<'_>, key: &str, id: &str) -> HandlerResult {
    let p = ctx.params()?;
    let h = w
        .hooks
        .get_mut(key)
        .and_then(|hs| hs.iter_mut().find(|h| h.id.to_string() == id))
        .ok_or_else(|| Reply::message(404, "404 Not found"))?;
    if let Some(u) = p.get("url") {
        h.url = u.to_owned();
    }
    if let Some(t) = p.get("token") {
        h.token = Some(t.to_owned());
    }
    h.events = hook_events(&p, &h.events);
    if let Some(f) = p.get("push_events_branch_filter") {
        h.push_events_branch_filter = Some(f.to_owned()).filter(|f| !f.is_empty());
    }
    let h = h.clone();
    Ok(Reply::json(200, hook_json(&h)))
}

/// A commit status (`POST /projects/:id/statuses/:sha`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub id: u64,
    pub sha: String,
    pub name: String,
    pub status: String,
    pub description: String,
    pub created_at: String,
}

fn status_json(w: &World, project_id: u64, st: &CommitStatus) -> Value {
    let mut v = fixture("api/commit_status_create_response.json");
    let bot = &w.users[&w.bot_id].spec;
    v["id"] = json!(st.id);
    v["sha"] = json!(st.sha);
    v["name"] = json!(st.name);
    v["status"] = json!(st.status);
    v["description"] = json!(st.description);
    v["created_at"] = json!(st.created_at);
    v["author"]["id"] = json!(bot.id);
    v["author"]["username"] = json!(bot.username);
    v["author"]["name"] = json!(bot.name);
    v["target_url"] = json!(format!("{WEB_BASE}/projects/{project_id}"));
    v
}

fn post_status(w: &mut World, ctx: &Ctx<'_>, project: &str, sha: &str) -> HandlerResult {
    let project_id = lookup_project(w, project)?;
    let params = ctx.params()?;
    let state = params
        .get("state")
        .ok_or_else(|| Reply::error(400, "state is missing"))?
        .to_owned();
    if ![
        "pending", "running", "success", "failed", "canceled", "skipped",
    ]
    .contains(&state.as_str())
    {
        return Err(Reply::error(400, "state does not have a valid value"));
    }
    let name = params
        .get("name")
        .or(params.get("context"))
        .unwrap_or("default")
        .to_owned();
    let list = w.statuses.entry((project_id, sha.to_owned())).or_default();
    if list
        .iter()
        .rev()
        .find(|s| s.name == name)
        .is_some_and(|s| s.status == state)
    {
        // GitLab refuses a transition to the state the status already has.
        return Err(Reply::message(
            400,
            &format!("Cannot transition status via :{state} from :{state}"),
        ));
    }
    let id = w.next_status_id;
    w.next_status_id += 1;
    let created_at = w.clock.tick().to_rfc3339_opts(SecondsFormat::Millis, true);
    let st = CommitStatus {
        id,
        sha: sha.to_owned(),
        name,
        status: state,
        description: params.get("description").unwrap_or("").to_owned(),
        created_at,
    };
    w.statuses
        .entry((project_id, sha.to_owned()))
        .or_default()
        .push(st.clone());
    Ok(Reply::json(201, status_json(w, project_id, &st)))
}

fn list_statuses(w: &mut World, ctx: &Ctx<'_>, project: &str, sha: &str) -> HandlerResult {
    let project_id = lookup_project(w, project)?;
    let name = ctx.query.get("name").map(str::to_owned);
    let mut items: Vec<CommitStatus> = w
        .statuses
        .get(&(project_id, sha.to_owned()))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| name.as_deref().is_none_or(|n| n == s.name))
        .collect();
    items.reverse();
    paginate(w, ctx, &items, |s| status_json(w, project_id, s))
}

// ---------------------------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------------------------

/// Offset pagination exactly like GitLab: `page`/`per_page` (default 20, max 100), the
/// `x-*` headers and a `Link` header with absolute URLs (the `gitlab` crate follows
/// `rel="next"` for keyset endpoints).
fn paginate<T>(
    w: &World,
    ctx: &Ctx<'_>,
    items: &[T],
    render: impl Fn(&T) -> Value,
) -> HandlerResult {
    let per_page = ctx
        .query
        .u64("per_page")?
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(MAX_PER_PAGE);
    let page = ctx.query.u64("page")?.filter(|&n| n > 0).unwrap_or(1);
    let total = items.len() as u64;
    let total_pages = total.div_ceil(per_page).max(1);
    let start = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let body: Vec<Value> = items
        .iter()
        .skip(start)
        .take(per_page as usize)
        .map(render)
        .collect();

    let link = |p: u64| page_url(w, ctx, p, per_page);
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
    }
    if page < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link(1)));
    links.push(format!("<{}>; rel=\"last\"", link(total_pages)));

    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    Ok(Reply::json(200, Value::Array(body))
        .header("Link", links.join(", "))
        .header("x-next-page", next)
        .header("x-page", page.to_string())
        .header("x-per-page", per_page.to_string())
        .header("x-prev-page", prev)
        .header("x-total", total.to_string())
        .header("x-total-pages", total_pages.to_string()))
}

/// The request's URL with `page`/`per_page` replaced; parameters sorted by name like Rails'
/// `to_query`.
fn page_url(w: &World, ctx: &Ctx<'_>, page: u64, per_page: u64) -> String {
    let page = page.to_string();
    let per_page = per_page.to_string();
    let mut pairs: Vec<(&str, &str)> = ctx
        .query
        .0
        .iter()
        .filter(|(k, _)| k != "page" && k != "per_page")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("page", &page));
    pairs.push(("per_page", &per_page));
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{}{}?{query}", w.base_url, ctx.path)
}

// ---------------------------------------------------------------------------------------------
// JSON renderers (shapes from tests/fixtures/gitlab/api)
// ---------------------------------------------------------------------------------------------

fn avatar_url(user_id: u64) -> String {
    format!("{WEB_BASE}/uploads/-/system/user/avatar/{user_id}/avatar.png")
}

/// `UserBasic`: users_list.json entries, MR `author` / `reviewers`.
fn user_basic_json(user: &User) -> Value {
    let u = &user.spec;
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "locked": false,
        "avatar_url": avatar_url(u.id),
        "web_url": format!("{WEB_BASE}/{}", u.username),
    })
}

/// user_single.json (`GET /users/:id`).
fn user_json(user: &User) -> Value {
    let u = &user.spec;
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "locked": false,
        "avatar_url": avatar_url(u.id),
        "web_url": format!("{WEB_BASE}/{}", u.username),
        "created_at": user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "bio": "",
        "bot": u.bot,
        "location": null,
        "public_email": u.public_email.clone().unwrap_or_default(),
        "linkedin": "",
        "twitter": "",
        "discord": "",
        "github": "",
        "website_url": "",
        "organization": u.organization.clone().unwrap_or_default(),
        "job_title": "",
        "pronouns": null,
        "work_information": u.organization,
        "followers": 0,
        "following": 0,
        "local_time": null,
        "is_followed": false,
    })
}

/// `GET /user`: user_single.json plus the private fields GitLab adds for the token's user.
fn current_user_json(user: &User) -> Value {
    let body = user_json(user);
    let email = user
        .spec
        .public_email
        .clone()
        .unwrap_or_else(|| format!("{}@example.com", user.spec.username));
    let created_at = body["created_at"].clone();
    let extra = json!({
        "last_sign_in_at": created_at,
        "confirmed_at": created_at,
        "last_activity_on": null,
        "email": email,
        "commit_email": email,
        "theme_id": 1,
        "color_scheme_id": 1,
        "projects_limit": 100000,
        "current_sign_in_at": created_at,
        "identities": [],
        "can_create_group": true,
        "can_create_project": true,
        "two_factor_enabled": false,
        "external": false,
        "private_profile": false,
    });
    merge_objects([body, extra])
}

/// group_members_all.json entries.
fn member_json(w: &World, user_id: u64, access_level: u64) -> Value {
    let user = w.user_or_placeholder(user_id);
    let body = user_basic_json(&user);
    let extra = json!({
        "created_at": user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "created_by": user_basic_json(&w.user_or_placeholder(w.bot_id)),
        "expires_at": null,
        "access_level": access_level,
        "group_saml_identity": null,
        "membership_state": "active",
    });
    merge_objects([body, extra])
}

/// Note author as in note_merge_request_single.json (UserBasic plus `email`, `created_at`).
fn note_author_json(user: &User) -> Value {
    let mut body = user_basic_json(user);
    body["email"] = json!(user.spec.public_email.clone().unwrap_or_default());
    body["created_at"] = json!(user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true));
    body
}

/// What a note belongs to.
struct Noteable {
    /// `"MergeRequest"` or `"Issue"`.
    kind: &'static str,
    id: u64,
    iid: u64,
    project_id: u64,
}

impl Noteable {
    fn of_mr(mr: &Mr) -> Self {
        Noteable {
            kind: "MergeRequest",
            id: mr.id,
            iid: mr.iid,
            project_id: mr.project_id,
        }
    }

    fn of_issue(issue: &Issue) -> Self {
        Noteable {
            kind: "Issue",
            id: issue.id,
            iid: issue.iid,
            project_id: issue.project_id,
        }
    }
}

/// note_merge_request_single.json / notes_issue_list.json entries.
fn note_json(w: &World, noteable: &Noteable, note: &Note) -> Value {
    json!({
        "id": note.id,
        "type": null,
        "body": note.body,
        "author": note_author_json(&w.user_or_placeholder(note.author_id)),
        "created_at": fmt_time(note.created_at),
        "updated_at": fmt_time(note.updated_at),
        "system": note.system,
        "noteable_id": noteable.id,
        "noteable_type": noteable.kind,
        "project_id": noteable.project_id,
        "noteable_iid": noteable.iid,
        "commands_changes": {},
        "resolvable": false,
        "confidential": note.internal,
        "internal": note.internal,
        "imported": false,
        "imported_from": "none",
    })
}

/// merge_request_single.json (also used for list entries and the PUT answer).
fn mr_json(w: &World, mr: &Mr) -> Value {
    let author = user_basic_json(&w.user_or_placeholder(mr.author_id));
    let reviewers: Vec<Value> = mr
        .reviewer_ids
        .iter()
        .map(|&id| user_basic_json(&w.user_or_placeholder(id)))
        .collect();
    let merged = mr.state == "merged";
    let closed = mr.state == "closed";
    let detailed_merge_status = match (mr.state.as_str(), mr.draft) {
        ("opened", true) => "draft_status",
        ("opened", false) => "mergeable",
        _ => "not_open",
    };
    let updated_at = fmt_time(mr.updated_at);
    let when = |yes: bool, value: Value| if yes { value } else { Value::Null };
    let user_notes_count = mr.notes.iter().filter(|n| !n.system).count();
    let base_sha = format!("{:040x}", mr.id);
    let reference = format!("!{}", mr.iid);
    // Several `json!` calls: one this large exceeds the default macro recursion limit.
    merge_objects([
        json!({
            "id": mr.id,
            "iid": mr.iid,
            "project_id": mr.project_id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "imported": false,
            "imported_from": "none",
            "created_at": fmt_time(mr.created_at),
            "updated_at": updated_at,
            "merged_by": when(merged, author.clone()),
            "merge_user": when(merged, author.clone()),
            "merged_at": when(merged, json!(updated_at)),
            "merge_after": null,
            "prepared_at": fmt_time(mr.created_at),
            "closed_by": when(closed, author.clone()),
            "closed_at": when(closed, json!(updated_at)),
        }),
        json!({
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": user_notes_count,
            "upvotes": 0,
            "downvotes": 0,
            "author": author,
            "assignees": [],
            "assignee": null,
            "reviewers": reviewers,
            "source_project_id": mr.project_id,
            "target_project_id": mr.project_id,
            "labels": mr.labels,
            "draft": mr.draft,
            "work_in_progress": mr.draft,
            "milestone": null,
            "merge_when_pipeline_succeeds": false,
            "merge_status": "can_be_merged",
            "detailed_merge_status": detailed_merge_status,
        }),
        json!({
            "sha": mr.sha,
            "merge_commit_sha": null,
            "squash_commit_sha": null,
            "discussion_locked": null,
            "should_remove_source_branch": null,
            "force_remove_source_branch": true,
            "allow_collaboration": false,
            "allow_maintainer_to_push": false,
            "reference": reference,
            "references": {
                "short": reference,
                "relative": reference,
                "full": format!("{}!{}", mr.project_path, mr.iid),
            },
            "web_url": format!("{WEB_BASE}/{}/-/merge_requests/{}", mr.project_path, mr.iid),
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": null,
                "human_total_time_spent": null,
            },
        }),
        json!({
            "squash": false,
            "task_completion_status": { "count": 0, "completed_count": 0 },
            "has_conflicts": false,
            "blocking_discussions_resolved": true,
            "approvals_before_merge": null,
            "subscribed": false,
            "changes_count": "1",
            "latest_build_started_at": null,
            "latest_build_finished_at": null,
            "first_deployed_to_production_at": null,
            "pipeline": null,
            "head_pipeline": null,
            "diff_refs": {
                "base_sha": base_sha,
                "head_sha": mr.sha,
                "start_sha": base_sha,
            },
            "merge_error": null,
            "first_contribution": false,
            "user": { "can_merge": true },
        }),
    ])
}

/// issue_single.json (also list entries, the POST and PUT answers and link targets).
fn issue_json(w: &World, issue: &Issue) -> Value {
    let project_path = w.project_path(issue.project_id);
    let author = user_basic_json(&w.user_or_placeholder(issue.author_id));
    let assignees: Vec<Value> = issue
        .assignee_ids
        .iter()
        .map(|&id| user_basic_json(&w.user_or_placeholder(id)))
        .collect();
    let assignee = assignees.first().cloned().unwrap_or(Value::Null);
    let closed_by = issue.closed_by.map_or(Value::Null, |id| {
        user_basic_json(&w.user_or_placeholder(id))
    });
    let user_notes_count = issue.notes.iter().filter(|n| !n.system).count();
    let reference = format!("#{}", issue.iid);
    let api = format!(
        "{WEB_BASE}/api/v4/projects/{}/issues/{}",
        issue.project_id, issue.iid
    );
    merge_objects([
        json!({
            "id": issue.id,
            "iid": issue.iid,
            "project_id": issue.project_id,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": fmt_time(issue.created_at),
            "updated_at": fmt_time(issue.updated_at),
            "closed_at": issue.closed_at.map(fmt_time),
            "closed_by": closed_by,
            "labels": issue.labels,
            "milestone": null,
            "assignees": assignees,
            "assignee": assignee,
            "author": author,
            "type": "ISSUE",
            "upvotes": 0,
            "downvotes": 0,
            "merge_requests_count": 0,
            "user_notes_count": user_notes_count,
        }),
        json!({
            "subscribed": false,
            "moved_to_id": null,
            "start_date": null,
            "due_date": null,
            "imported": false,
            "imported_from": "none",
            "web_url": format!("{WEB_BASE}/{project_path}/-/issues/{}", issue.iid),
            "references": {
                "short": reference,
                "relative": reference,
                "full": format!("{project_path}#{}", issue.iid),
            },
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": null,
                "human_total_time_spent": null,
            },
            "has_tasks": false,
            "task_status": "",
            "confidential": issue.confidential,
            "discussion_locked": false,
            "issue_type": "issue",
            "severity": "UNKNOWN",
            "_links": {
                "self": api,
                "notes": format!("{api}/notes"),
                "award_emoji": format!("{api}/award_emoji"),
                "project": format!("{WEB_BASE}/api/v4/projects/{}", issue.project_id),
                "closed_as_duplicate_of": null,
            },
            "task_completion_status": { "count": 0, "completed_count": 0 },
        }),
    ])
}

/// resource_label_events_issue.json entries.
fn label_event_json(w: &World, issue: &Issue, event: &LabelEvent) -> Value {
    json!({
        "id": event.id,
        "user": user_basic_json(&w.user_or_placeholder(event.user_id)),
        "created_at": fmt_time(event.created_at),
        "resource_type": "Issue",
        "resource_id": issue.id,
        "label": {
            "id": event.label.id,
            "name": event.label.name,
            "color": event.label.color,
            "description": event.label.description,
        },
        "action": event.action,
    })
}

/// Concatenates JSON objects (later keys win).
fn merge_objects<const N: usize>(parts: [Value; N]) -> Value {
    let mut out = serde_json::Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            out.extend(map);
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// GitLab's timestamp format: `2022-05-14T03:38:31.354Z`.
fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339, a naive `YYYY-MM-DDTHH:MM:SS[.fff]` (UTC) or a plain date.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}

/// Decodes `%XX` escapes (leaves `+` alone, as in paths).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn normalize_labels(labels: &mut Vec<String>) {
    labels.sort();
    labels.dedup();
}

fn dedup_keep_order(ids: &mut Vec<u64>) {
    let mut seen = Vec::new();
    ids.retain(|id| {
        if seen.contains(id) {
            return false;
        }
        seen.push(*id);
        true
    });
}

fn is_draft_title(title: &str) -> bool {
    let lower = title.trim_start().to_ascii_lowercase();
    ["draft:", "[draft]", "(draft)", "draft -"]
        .iter()
        .any(|p| lower.starts_with(p))
}

//! The executor: the only code that writes to GitLab. It turns the actions `decide` computed into
//! API calls, or, in a dry run, into log lines.
//!
//! Actions decided under an organization's lock run with [`Executor::run_locked`]: before each
//! write the lock must still be surely held ([`WriteLock::held`]: with replicas, its lease), else
//! nothing more is written and the event is retried. With replicas, a tracking issue is created
//! only after its reservation is taken (`reservation.rs`, [`crate::queue::tracking`]).

use gitlab::api::projects::merge_requests::notes::CreateMergeRequestNote;
use gitlab::api::projects::merge_requests::EditMergeRequest;
use gitlab::api::projects::repository::commits::{
    CommitAction, CommitActionType, CommitStatusState, CreateCommit, CreateCommitStatus,
};
use gitlab::api::projects::repository::files::Encoding;
use gitlab::api::{self, AsyncQuery};

use super::endpoints::{path_id, Write};
use super::{Context, GitlabClient, GitlabError};
use crate::decide::setup::{FileAction, HookEvent};
use crate::decide::{Action, NoteTarget, StatusState, STATUS_NAME};

/// Where actions go.
#[derive(Debug, Clone)]
pub enum Executor {
    Live,
    /// No token: log what would be written.
    DryRun,
}

/// The answer to `POST /projects/:id/issues`: the fields we use.
#[derive(Debug, serde::Deserialize)]
struct CreatedIssue {
    iid: u64,
}

/// What was written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecutionReport {
    pub writes: usize,
}

/// An action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    /// GitLab refused the write for good (403, 404, 400/422, …): what to fix, for the operator.
    #[error("{source}: {hint}")]
    Refused {
        #[source]
        source: Box<GitlabError>,
        hint: String,
    },
    #[error("cannot {0}: building the request failed: {1}")]
    Build(String, String),
    /// The lock the writes were made under is no longer surely held (its lease ran out):
    /// nothing more is written; trying again re-reads GitLab under a fresh lock.
    #[error("not written: {what}: the shared lock on `{key}` is no longer surely held (its lease ran out); the event is retried")]
    LockLost { key: String, what: String },
    /// The organization's tracking issue is not created now: an earlier attempt's creation
    /// may still land, or it was found and recorded (the event is decided again).
    #[error("tracking issue of `{key}` not created: {why}; the event is retried")]
    TrackingPending {
        key: String,
        why: String,
        /// Not worth trying again before this (an earlier creation may land until then).
        wait: Option<std::time::Duration>,
    },
    /// The reservation store (the shared queue's database) failed.
    #[error("cannot reserve the tracking issue of `{key}`: {source}")]
    Reservation {
        key: String,
        #[source]
        source: Box<crate::queue::QueueError>,
    },
}

/// The lock an organization's writes are made under (the handlers' `KeyGuard`): asked before
/// each write, so that a holder whose shared lease ran out writes nothing.
pub trait WriteLock: Send + Sync {
    /// The locked key (an organization's slug, or an MR's reference).
    fn key(&self) -> &str;
    /// Whether the lock is surely still held.
    fn held(&self) -> bool;
    /// The key's tracking-issue reservations when replicas share them (`None` with the
    /// in-process lock alone: nothing to reserve).
    fn reservations(&self) -> Option<&dyn crate::queue::TrackingReservations>;
}

impl ExecuteError {
    /// The error as GitLab gave it, without the hint for the worker's operator.
    pub fn without_hint(self) -> ExecuteError {
        match self {
            ExecuteError::Refused { source, .. } => ExecuteError::Gitlab(*source),
            other => other,
        }
    }

    /// How to treat the failure (writes: a 404 means the target is gone or hidden).
    pub fn retry(&self) -> super::Retry {
        match self {
            ExecuteError::Gitlab(e) => e.retry(true),
            ExecuteError::Refused { source, .. } => source.retry(true),
            ExecuteError::Build(..) => super::Retry::Permanent,
            ExecuteError::LockLost { .. }
            | ExecuteError::TrackingPending { .. }
            | ExecuteError::Reservation { .. } => super::Retry::Transient,
        }
    }

    /// How long a retry is pointless (the worker waits at least this long before it).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ExecuteError::TrackingPending { wait, .. } => *wait,
            _ => None,
        }
    }
}

/// What the bot account needs for a write, and where: named in the error of a refused write.
fn role_needed(action: &Action) -> String {
    let project = |id: &dyn std::fmt::Display| format!("project {id}");
    let (role, place, why) = match action {
        Action::EditMergeRequest { mr, .. } => (
            "Developer",
            project(&mr.project_id),
            "to set labels and reviewers on merge requests",
        ),
        Action::SetCommitStatus { project_id, .. } => (
            "Developer",
            project(project_id),
            "to set the cocreate/cca commit status",
        ),
        Action::PostNote {
            target: NoteTarget::MergeRequest(mr) | NoteTarget::MergeRequestInternal(mr),
            ..
        } => (
            "Reporter",
            project(&mr.project_id),
            "to comment on merge requests",
        ),
        Action::CreateLabel { owner, .. } | Action::UpdateLabel { owner, .. } => {
            ("Reporter", owner.replace('/', " "), "to manage labels")
        }
        Action::CreateHook { owner, .. }
        | Action::UpdateHook { owner, .. }
        | Action::TestHook { owner, .. } => (
            if owner.starts_with("groups/") {
                "Owner"
            } else {
                "Maintainer"
            },
            owner.replace('/', " "),
            "to manage webhooks",
        ),
        Action::CreateIssue { project: p, .. } => (
            "Reporter",
            project(p),
            "to open confidential tracking issues",
        ),
        Action::EditIssue { issue, .. }
        | Action::LinkIssues { issue, .. }
        | Action::PostNote {
            target: NoteTarget::Issue(issue),
            ..
        } => (
            "Reporter",
            project(&issue.project),
            "to edit and comment on confidential tracking issues",
        ),
        Action::CommitFiles { project: p, .. } => (
            "Developer",
            project(p),
            "to commit the issue templates (Maintainer when the branch is protected)",
        ),
    };
    format!("the bot account needs the {role} role (or higher) in {place} {why}; grant it, then `cocreate queue replay` the event")
}

impl Executor {
    /// Runs the actions in order; stops at the first failure (the event is retried, and the
    /// level-triggered rules then skip what already succeeded). A write GitLab refuses for good
    /// comes back as [`ExecuteError::Refused`], naming the role the bot lacks.
    pub async fn run(
        &self,
        client: Option<&GitlabClient>,
        actions: &[Action],
    ) -> Result<ExecutionReport, ExecuteError> {
        self.run_checked(None, client, actions).await
    }

    /// Like [`Executor::run`], for writes decided under `lock`: each write happens only while
    /// the lock is surely held; once it is not, the run stops with [`ExecuteError::LockLost`].
    pub async fn run_locked(
        &self,
        lock: &dyn WriteLock,
        client: Option<&GitlabClient>,
        actions: &[Action],
    ) -> Result<ExecutionReport, ExecuteError> {
        self.run_checked(Some(lock), client, actions).await
    }

    async fn run_checked(
        &self,
        lock: Option<&dyn WriteLock>,
        client: Option<&GitlabClient>,
        actions: &[Action],
    ) -> Result<ExecutionReport, ExecuteError> {
        match self.run_in_order(lock, client, actions).await {
            Err(ExecuteError::Gitlab(e)) if e.retry(true) == super::Retry::Permanent => {
                let status = e.status();
                let hint = match actions.iter().find(|a| a.summary() == e.what) {
                    Some(a) if status == Some(http::StatusCode::FORBIDDEN) => role_needed(a),
                    Some(a) if status == Some(http::StatusCode::NOT_FOUND) => format!(
                        "the target is gone or the bot cannot see it ({})",
                        role_needed(a)
                    ),
                    _ => "GitLab refused the request as invalid; retrying will not help (the event is kept as a dead letter for `cocreate queue show`)".to_owned(),
                };
                Err(ExecuteError::Refused {
                    source: Box::new(e),
                    hint,
                })
            }
            other => other,
        }
    }

    async fn run_in_order(
        &self,
        lock: Option<&dyn WriteLock>,
        client: Option<&GitlabClient>,
        actions: &[Action],
    ) -> Result<ExecutionReport, ExecuteError> {
        let mut report = ExecutionReport::default();
        let client = match (self, client) {
            (Executor::Live, Some(c)) => c,
            _ => {
                for a in actions {
                    tracing::info!(action = %a.summary(), "dry run: would write to GitLab");
                }
                return Ok(report);
            }
        };
        for action in actions {
            let what = action.summary();
            if let Some(lock) = lock.filter(|l| !l.held()) {
                tracing::warn!(action = %what, key = lock.key(), "shared lock no longer surely held: not written");
                return Err(ExecuteError::LockLost {
                    key: lock.key().to_owned(),
                    what,
                });
            }
            match action {
                Action::EditMergeRequest {
                    mr,
                    add_labels,
                    remove_labels,
                    reviewer_ids,
                    ..
                } => {
                    let mut b = EditMergeRequest::builder();
                    b.project(mr.project_id).merge_request(mr.iid);
                    for l in add_labels {
                        b.add_label(l.as_str());
                    }
                    for l in remove_labels {
                        b.remove_label(l.as_str());
                    }
                    if let Some(ids) = reviewer_ids {
                        if ids.is_empty() {
                            b.without_reviewer();
                        } else {
                            b.reviewers(ids.iter().copied());
                        }
                    }
                    let endpoint = b
                        .build()
                        .map_err(|e| ExecuteError::Build(what.clone(), e.to_string()))?;
                    api::ignore(endpoint)
                        .query_async(client)
                        .await
                        .doing(|| what.clone())?;
                }
                Action::SetCommitStatus {
                    project_id,
                    sha,
                    state,
                    description,
                } => {
                    let endpoint = CreateCommitStatus::builder()
                        .project(*project_id)
                        .commit(sha.as_str())
                        .state(match state {
                            StatusState::Success => CommitStatusState::Success,
                            StatusState::Failed => CommitStatusState::Failed,
                        })
                        .name(STATUS_NAME)
                        .description(description.as_str())
                        .build()
                        .map_err(|e| ExecuteError::Build(what.clone(), e.to_string()))?;
                    match api::ignore(endpoint)
                        .query_async(client)
                        .await
                        .doing(|| what.clone())
                    {
                        Ok(()) => {}
                        // GitLab refuses a transition to the state the status already has:
                        // the wanted state is there, which is all we want.
                        Err(e)
                            if e.status() == Some(http::StatusCode::BAD_REQUEST)
                                && e.to_string().contains("Cannot transition status") =>
                        {
                            tracing::debug!(action = %what, "status already in place");
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Action::CreateLabel {
                    owner,
                    name,
                    color,
                    description,
                } => {
                    write(
                        client,
                        &what,
                        http::Method::POST,
                        format!("{owner}/labels"),
                        vec![
                            ("name", name.clone()),
                            ("color", color.clone()),
                            ("description", description.clone()),
                        ],
                    )
                    .await?;
                }
                Action::UpdateLabel {
                    owner,
                    id,
                    color,
                    description,
                    ..
                } => {
                    write(
                        client,
                        &what,
                        http::Method::PUT,
                        format!("{owner}/labels/{id}"),
                        vec![
                            ("new_color", color.clone()),
                            ("description", description.clone()),
                        ],
                    )
                    .await?;
                }
                Action::CreateHook {
                    owner,
                    url,
                    token,
                    events,
                    push_branch,
                } => {
                    let mut params = hook_params(url, events, push_branch.as_deref());
                    if let Some(t) = token {
                        params.push(("token", t.0.clone()));
                    }
                    write(
                        client,
                        &what,
                        http::Method::POST,
                        format!("{owner}/hooks"),
                        params,
                    )
                    .await?;
                }
                Action::UpdateHook {
                    owner,
                    id,
                    url,
                    events,
                    push_branch,
                } => {
                    write(
                        client,
                        &what,
                        http::Method::PUT,
                        format!("{owner}/hooks/{id}"),
                        hook_params(url, events, push_branch.as_deref()),
                    )
                    .await?;
                }
                Action::TestHook {
                    owner, id, trigger, ..
                } => {
                    // 201 once serve answered the test 2xx (GitLab then re-enables the hook);
                    // 422 with GitLab's reason when it did not.
                    write(
                        client,
                        &what,
                        http::Method::POST,
                        format!("{owner}/hooks/{id}/test/{trigger}"),
                        vec![],
                    )
                    .await?;
                }
                Action::CommitFiles {
                    project,
                    branch,
                    message,
                    files,
                } => {
                    let mut actions = Vec::with_capacity(files.len());
                    for f in files {
                        let mut a = CommitAction::builder();
                        a.action(match f.action {
                            FileAction::Create => CommitActionType::Create,
                            FileAction::Update => CommitActionType::Update,
                        })
                        .file_path(f.path.as_str())
                        .content(f.content.as_bytes())
                        .encoding(Encoding::Text);
                        if let Some(c) = &f.last_commit_id {
                            a.last_commit_id(c.as_str());
                        }
                        actions.push(
                            a.build()
                                .map_err(|e| ExecuteError::Build(what.clone(), e.to_string()))?,
                        );
                    }
                    let endpoint = CreateCommit::builder()
                        .project(project.as_str())
                        .branch(branch.as_str())
                        .commit_message(message.as_str())
                        .actions(actions)
                        .build()
                        .map_err(|e| ExecuteError::Build(what.clone(), e.to_string()))?;
                    api::ignore(endpoint)
                        .query_async(client)
                        .await
                        .doing(|| what.clone())?;
                }
                Action::CreateIssue {
                    project,
                    title,
                    description,
                    labels,
                    confidential,
                    assignee_ids,
                } => {
                    let mut params = vec![
                        ("title", title.clone()),
                        ("description", description.clone()),
                        ("labels", labels.join(",")),
                        ("confidential", confidential.to_string()),
                    ];
                    params.extend(
                        assignee_ids
                            .iter()
                            .map(|id| ("assignee_ids[]", id.to_string())),
                    );
                    // On a shared queue the organization's tracking issue is reserved first.
                    let reserved = lock.and_then(|l| l.reservations().map(|r| (l, r)));
                    if let Some((l, r)) = reserved {
                        super::reservation::reserve(client, l.key(), r, project, description)
                            .await
                            .map_err(|e| not_now(l.key(), what.clone(), e))?;
                        if !l.held() {
                            let _ = r.release(project).await;
                            return Err(ExecuteError::LockLost {
                                key: l.key().to_owned(),
                                what,
                            });
                        }
                    }
                    let created: Result<CreatedIssue, GitlabError> = Write {
                        method: http::Method::POST,
                        path: format!("projects/{}/issues", path_id(project)),
                        params,
                    }
                    .query_async(client)
                    .await
                    .doing(|| what.clone());
                    match (created, reserved) {
                        (Ok(issue), Some((l, r))) => {
                            if let Err(error) = r.record(project, issue.iid).await {
                                // The next creation finds it by its marker.
                                tracing::warn!(%error, org = l.key(), iid = issue.iid, "tracking issue created but not recorded");
                            }
                        }
                        (Ok(_), None) => {}
                        (Err(e), Some((_, r)))
                            if e.status().is_some_and(|s| s.is_client_error()) =>
                        {
                            // GitLab answered 4xx: nothing was created.
                            let _ = r.release(project).await;
                            return Err(e.into());
                        }
                        (Err(e), Some((_, r))) if e.status().is_some() => {
                            // Answered (5xx): created or not, nothing is in flight any more;
                            // the next attempt looks for it by its marker at once.
                            let _ = r.settle(project).await;
                            return Err(e.into());
                        }
                        (Err(e), _) => return Err(e.into()),
                    }
                }
                Action::EditIssue {
                    issue,
                    add_labels,
                    remove_labels,
                    assignee_ids,
                    description,
                    confidential,
                } => {
                    let mut params = Vec::new();
                    if let Some(c) = confidential {
                        params.push(("confidential", c.to_string()));
                    }
                    if !add_labels.is_empty() {
                        params.push(("add_labels", add_labels.join(",")));
                    }
                    if !remove_labels.is_empty() {
                        params.push(("remove_labels", remove_labels.join(",")));
                    }
                    match assignee_ids.as_deref() {
                        Some([]) => params.push(("assignee_ids", "0".to_owned())),
                        Some(ids) => {
                            params.extend(ids.iter().map(|id| ("assignee_ids[]", id.to_string())))
                        }
                        None => {}
                    }
                    if let Some(d) = description {
                        params.push(("description", d.clone()));
                    }
                    write(
                        client,
                        &what,
                        http::Method::PUT,
                        format!("projects/{}/issues/{}", path_id(&issue.project), issue.iid),
                        params,
                    )
                    .await?;
                }
                Action::LinkIssues { issue, target } => {
                    write(
                        client,
                        &what,
                        http::Method::POST,
                        format!(
                            "projects/{}/issues/{}/links",
                            path_id(&issue.project),
                            issue.iid
                        ),
                        vec![
                            ("target_project_id", target.project.clone()),
                            ("target_issue_iid", target.iid.to_string()),
                        ],
                    )
                    .await?;
                }
                Action::PostNote {
                    target: NoteTarget::Issue(issue),
                    note,
                } => {
                    write(
                        client,
                        &what,
                        http::Method::POST,
                        format!(
                            "projects/{}/issues/{}/notes",
                            path_id(&issue.project),
                            issue.iid
                        ),
                        vec![("body", note.render())],
                    )
                    .await?;
                }
                Action::PostNote {
                    target:
                        target @ (NoteTarget::MergeRequest(mr) | NoteTarget::MergeRequestInternal(mr)),
                    note,
                } => {
                    let body = note.render();
                    let mut b = CreateMergeRequestNote::builder();
                    b.project(mr.project_id)
                        .merge_request(mr.iid)
                        .body(body.as_str());
                    if target.is_internal() {
                        b.internal(true);
                    }
                    let endpoint = b
                        .build()
                        .map_err(|e| ExecuteError::Build(what.clone(), e.to_string()))?;
                    api::ignore(endpoint)
                        .query_async(client)
                        .await
                        .doing(|| what.clone())?;
                }
            }
            tracing::info!(action = %what, "wrote to GitLab");
            report.writes += 1;
        }
        Ok(report)
    }
}

/// The executor's error for a tracking issue that is not created now.
fn not_now(key: &str, what: String, e: super::reservation::NotNow) -> ExecuteError {
    use super::reservation::NotNow;
    let key = key.to_owned();
    match e {
        NotNow::LockLost => ExecuteError::LockLost { key, what },
        NotNow::Pending { why, wait } => ExecuteError::TrackingPending { key, why, wait },
        NotNow::Store(e) => ExecuteError::Reservation {
            key,
            source: Box::new(e),
        },
        NotNow::Gitlab(e) => ExecuteError::Gitlab(e),
    }
}

fn hook_params(
    url: &str,
    events: &std::collections::BTreeMap<String, bool>,
    push_branch: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("url", url.to_owned()),
        ("enable_ssl_verification", "true".to_owned()),
    ];
    for e in HookEvent::ALL {
        let on = events.get(e.param()).copied().unwrap_or(false);
        p.push((e.param(), on.to_string()));
    }
    if let Some(b) = push_branch {
        p.push(("push_events_branch_filter", b.to_owned()));
        p.push(("branch_filter_strategy", "wildcard".to_owned()));
    }
    p
}

async fn write(
    client: &GitlabClient,
    what: &str,
    method: http::Method,
    path: String,
    params: Vec<(&'static str, String)>,
) -> Result<(), GitlabError> {
    api::ignore(Write {
        method,
        path,
        params,
    })
    .query_async(client)
    .await
    .doing(|| what.to_owned())
}

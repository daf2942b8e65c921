//! The program's rules, as pure functions: facts and policies in, actions out.
//!
//! Nothing here does IO. The rules are level-triggered: they compute the wanted state of a merge
//! request (labels present, a Contributor Success reviewer, one welcome note) and emit only the
//! difference from what the facts say is there, so a redelivered or replayed event yields no
//! action at all.

mod cca;
pub mod cca_worklist;
pub mod celebrate;
pub mod checklist;
pub mod commands;
pub mod engagement;
pub mod follow_through;
pub mod funnel;
pub mod metrics;
pub mod nudge;
mod recognize;
pub mod response;
mod reviewer;
mod routing;
pub mod score;
pub mod setup;
mod skip;
pub mod stall;
mod step;
pub mod timeline;

use serde::Serialize;

pub use cca::{
    cca_actions, cca_state, plan_cca, CcaMrFacts, CcaNeed, CcaPlan, CcaState, StatusState,
    STATUS_NAME,
};
pub use recognize::{org_from_labels, recognize, Evidence, Recognition};
pub use reviewer::{
    append_reviewer, choose_reviewer, is_roster_reviewer, preferred_reviewer, roster_reviewer,
    ReviewerChoice, RosterFacts, RosterMember,
};
pub use routing::{decide_merge_request, engagement_dri, MrFacts, MrNeeds, MrState, Source};
pub use skip::{is_own_event, Skip};
pub use step::{Rounds, Step};

use crate::domain::{MrRef, UserId};
use crate::messages::Note;

/// Where a note goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoteTarget {
    /// A note on the MR that everyone who can see the MR can read (public on a public project).
    MergeRequest(MrRef),
    /// An internal note on the MR (`internal: true`): only project members with the Reporter
    /// role or higher read it. The answer to anything said in an internal note goes here.
    MergeRequestInternal(MrRef),
    /// A note on an issue (the tracking project's issues are confidential by default).
    Issue(engagement::IssueRef),
}

impl NoteTarget {
    /// The MR the note goes on, when it goes on one.
    pub fn mr(&self) -> Option<MrRef> {
        match self {
            NoteTarget::MergeRequest(mr) | NoteTarget::MergeRequestInternal(mr) => Some(*mr),
            NoteTarget::Issue(_) => None,
        }
    }

    /// Whether the note is internal.
    pub fn is_internal(&self) -> bool {
        matches!(self, NoteTarget::MergeRequestInternal(_))
    }
}

/// One write to GitLab. The executor is the only code that turns these into API calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// One `PUT /projects/:id/merge_requests/:iid`: labels are added (never overwritten) and,
    /// when `reviewer_ids` is set, the whole reviewer list is replaced by it (it already holds
    /// the reviewers people chose, plus ours).
    EditMergeRequest {
        mr: MrRef,
        add_labels: Vec<String>,
        remove_labels: Vec<String>,
        reviewer_ids: Option<Vec<UserId>>,
        /// For humans reading a plan: who we add as reviewer.
        added_reviewer: Option<String>,
    },
    /// `POST /projects/:id/statuses/:sha` with the `cocreate/cca` context.
    SetCommitStatus {
        project_id: u64,
        sha: String,
        state: StatusState,
        description: String,
    },
    /// `POST /<owner>/labels` (owner: `groups/<id>` or `projects/<id>`).
    CreateLabel {
        owner: String,
        name: String,
        color: String,
        description: String,
    },
    /// `PUT /<owner>/labels/:id`: color and description back to the tool's.
    UpdateLabel {
        owner: String,
        id: u64,
        name: String,
        color: String,
        description: String,
    },
    /// `POST /<owner>/hooks` with the tool's events (each on or off) and secret token.
    CreateHook {
        owner: String,
        url: String,
        token: Option<setup::Secret>,
        events: std::collections::BTreeMap<String, bool>,
        /// `push_events_branch_filter`, with push events on.
        push_branch: Option<String>,
    },
    /// `PUT /<owner>/hooks/:id`: the tool's events back to what it wants.
    UpdateHook {
        owner: String,
        id: u64,
        url: String,
        events: std::collections::BTreeMap<String, bool>,
        push_branch: Option<String>,
    },
    /// `POST /<owner>/hooks/:id/test/:trigger`: GitLab's test delivery of a hook it disabled
    /// after failed deliveries; GitLab re-enables the hook when the test is answered 2xx.
    TestHook {
        owner: String,
        id: u64,
        url: String,
        /// One of the hook's events, e.g. `merge_requests_events`.
        trigger: String,
    },
    /// `POST /projects/:id/repository/commits`: one commit creating or updating the files.
    CommitFiles {
        project: String,
        branch: String,
        message: String,
        files: Vec<setup::FileChange>,
    },
    /// `POST /projects/:id/issues` (a tracking issue).
    CreateIssue {
        project: String,
        title: String,
        description: String,
        labels: Vec<String>,
        confidential: bool,
        assignee_ids: Vec<UserId>,
    },
    /// `PUT /projects/:id/issues/:iid`: labels added/removed, assignees set, description
    /// replaced, and (when `confidential` is set) the issue made confidential in the same edit.
    EditIssue {
        issue: engagement::IssueRef,
        add_labels: Vec<String>,
        remove_labels: Vec<String>,
        assignee_ids: Option<Vec<UserId>>,
        description: Option<String>,
        confidential: Option<bool>,
    },
    /// `POST /projects/:id/issues/:iid/links`.
    LinkIssues {
        issue: engagement::IssueRef,
        target: engagement::IssueRef,
    },
    /// `POST .../notes`: one note (its markers, then its text) on an MR or an issue.
    PostNote { target: NoteTarget, note: Note },
}

impl Action {
    /// One line for logs and `plan` output.
    pub fn summary(&self) -> String {
        match self {
            Action::EditMergeRequest {
                mr,
                add_labels,
                remove_labels,
                reviewer_ids,
                added_reviewer,
            } => {
                let mut parts = Vec::new();
                if !add_labels.is_empty() {
                    parts.push(format!("add labels {add_labels:?}"));
                }
                if !remove_labels.is_empty() {
                    parts.push(format!("remove labels {remove_labels:?}"));
                }
                if let Some(ids) = reviewer_ids {
                    match added_reviewer {
                        Some(name) => {
                            parts.push(format!("add reviewer @{name} (reviewer_ids {ids:?})"))
                        }
                        None => parts.push(format!("set reviewer_ids {ids:?}")),
                    }
                }
                format!("edit {mr}: {}", parts.join(", "))
            }
            Action::SetCommitStatus {
                project_id,
                sha,
                state,
                ..
            } => {
                format!(
                    "set status {STATUS_NAME}={} on project {project_id} commit {sha}",
                    state.as_str()
                )
            }
            Action::CreateLabel { owner, name, .. } => format!("create label {name:?} in {owner}"),
            Action::UpdateLabel { owner, name, .. } => {
                format!("update color/description of label {name:?} in {owner}")
            }
            Action::CreateHook {
                owner,
                url,
                token,
                events,
                push_branch,
            } => format!(
                "register webhook {url} on {owner} ({}; {})",
                setup::describe_events(events, push_branch.as_deref()),
                if token.is_some() {
                    "with secret token"
                } else {
                    "WITHOUT a secret token"
                }
            ),
            Action::UpdateHook {
                owner,
                url,
                events,
                push_branch,
                ..
            } => format!(
                "set the events of webhook {url} on {owner} to {}",
                setup::describe_events(events, push_branch.as_deref())
            ),
            Action::TestHook {
                owner,
                url,
                trigger,
                ..
            } => format!(
                "re-enable webhook {url} on {owner}, which GitLab disabled (its test delivery of {trigger})"
            ),
            Action::CommitFiles {
                project,
                branch,
                files,
                ..
            } => format!(
                "commit to {project} branch {branch}: {}",
                files
                    .iter()
                    .map(|f| format!(
                        "{} {}",
                        match f.action {
                            setup::FileAction::Create => "create",
                            setup::FileAction::Update => "update",
                        },
                        f.path
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Action::CreateIssue { project, title, .. } => {
                format!("open issue {title:?} in {project}")
            }
            Action::EditIssue {
                issue,
                add_labels,
                remove_labels,
                assignee_ids,
                description,
                confidential,
            } => format!(
                "edit issue {issue}: add {add_labels:?}, remove {remove_labels:?}{}{}{}",
                assignee_ids
                    .as_ref()
                    .map(|a| format!(", assignees {a:?}"))
                    .unwrap_or_default(),
                if description.is_some() {
                    ", append the checklist"
                } else {
                    ""
                },
                match confidential {
                    Some(true) => ", make it confidential",
                    Some(false) => ", make it public",
                    None => "",
                }
            ),
            Action::LinkIssues { issue, target } => format!("link issue {issue} to {target}"),
            Action::PostNote { target, note } => {
                let marker = note.marker();
                match target {
                    NoteTarget::Issue(issue) => match marker {
                        Some(m) => format!("post note {m} on issue {issue}"),
                        None => format!("post note on issue {issue}"),
                    },
                    NoteTarget::MergeRequest(mr) | NoteTarget::MergeRequestInternal(mr) => {
                        let visibility = if target.is_internal() {
                            "internal "
                        } else {
                            ""
                        };
                        match marker {
                            Some(m) => format!("post {visibility}{m:?} note on {mr}"),
                            None => format!("post {visibility}note on {mr}"),
                        }
                    }
                }
            }
        }
    }
}

/// The outcome of deciding on one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The organization the MR belongs to, when recognised.
    pub org: Option<Recognition>,
    pub skip: Option<Skip>,
    pub actions: Vec<Action>,
}

impl Decision {
    pub fn skipped(skip: Skip, org: Option<Recognition>) -> Self {
        Self {
            org,
            skip: Some(skip),
            actions: Vec::new(),
        }
    }
}

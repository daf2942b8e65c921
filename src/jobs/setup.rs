//! `cocreate setup`: reads what GitLab has (labels, webhooks, the tracking project's issue
//! templates), lets `decide::setup` plan the difference and hands it to the executor. Every
//! step that fails names the role it needs. Idempotent: a second run writes nothing.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use crate::decide::setup::{
    hooks_role, labels_role, plan_hook, plan_labels, plan_templates, read_repository_role,
    role_needed, wanted_hooks, wanted_labels, ExistingFile, ExistingHook, ExistingLabel,
    IssueTemplate, PolicySource, Secret,
};
use crate::decide::Action;
use crate::gitlab::{path_id, ExecuteError, Get, GitlabClient, GitlabError};
use crate::handlers::Context;
use crate::jobs::JobContext;
use crate::reload::ConfigSource;

/// A GitLab project whose repository holds the policies, at a branch (`PATH[@REF]`): the same
/// source `serve --policies gitlab:PATH[@REF]` follows.
pub use crate::reload::RepoSource as PolicyRepo;

/// What `setup` is asked to do besides the labels.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// The public URL of `serve`'s `/webhook`; without it no webhook is registered.
    pub webhook_url: Option<String>,
    pub secret: Option<Secret>,
    /// When policies come from a GitLab project: its hook also sends that branch's pushes.
    pub policy_repo: Option<PolicyRepo>,
    /// The issue templates to put in the tracking project ([`issue_templates`]).
    pub templates: Vec<IssueTemplate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// One line per write (made, or planned in a dry run).
    pub changes: Vec<String>,
    pub api_reads: u64,
    pub api_writes: u64,
}

impl SetupReport {
    /// The operator's text: one line per write (`would` in a dry run), or that all is in place.
    pub fn summary(&self, dry_run: bool) -> String {
        if self.changes.is_empty() {
            return format!(
                "setup: everything is in place ({} API reads)\n",
                self.api_reads
            );
        }
        let verb = if dry_run { "would" } else { "did" };
        self.changes
            .iter()
            .map(|c| format!("{verb}: {c}\n"))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("routing.yml watches no groups or projects: add `watch.groups` or `watch.projects` so setup knows where to create labels and hooks")]
    NothingWatched,
    /// (`cause` is shown in the message, not chained: it already carries its own causes.)
    #[error("{}", explain(cause.status(), call, need, cause))]
    Read {
        call: String,
        need: String,
        cause: Box<GitlabError>,
    },
    #[error("{}", explain(execute_status(cause), call, need, cause))]
    Write {
        call: String,
        need: String,
        cause: Box<ExecuteError>,
    },
    #[error("project {project} has no default branch (GitLab offers issue templates only from it, and `--policy-project` without `@REF` means it): initialise the repository or set a default branch")]
    NoDefaultBranch { project: String },
    #[error("{path} in {project} is not valid base64/UTF-8 text as GitLab sent it")]
    BadFile { project: String, path: String },
    #[error("cannot read the issue templates at {path}: {message}")]
    Templates { path: String, message: String },
}

/// "403 Forbidden on POST …/hooks: setup needs the Maintainer role in project X to register
/// webhooks"; an answer that is not about permissions leads with GitLab's reason instead, and
/// still names the role the step needs.
fn explain(
    status: Option<http::StatusCode>,
    call: &str,
    need: &str,
    cause: &dyn std::fmt::Display,
) -> String {
    let outcome = match status {
        Some(s) => format!(
            "{} {} on {call}",
            s.as_u16(),
            s.canonical_reason().unwrap_or("")
        ),
        None => format!("{call} failed"),
    };
    if matches!(status.map(|s| s.as_u16()), Some(401 | 403 | 404)) {
        format!("{outcome}: setup needs {need}\n  ({cause})")
    } else {
        format!("{outcome}: {cause}\n  (this step needs {need})")
    }
}

fn execute_status(e: &ExecuteError) -> Option<http::StatusCode> {
    match e {
        ExecuteError::Gitlab(g) => g.status(),
        ExecuteError::Refused { source, .. } => source.status(),
        ExecuteError::Build(..)
        | ExecuteError::LockLost { .. }
        | ExecuteError::TrackingPending { .. }
        | ExecuteError::Reservation { .. } => None,
    }
}

/// The issue templates of the configured template source: the embedded ones, or the `.md` files
/// of `<dir>/issue_templates/` (a shipped template missing there falls back to the embedded
/// copy, like the message templates do).
pub fn issue_templates(src: &ConfigSource) -> Result<Vec<IssueTemplate>, SetupError> {
    let mut out: Vec<IssueTemplate> = crate::messages::ISSUE_TEMPLATES
        .iter()
        .map(|(n, c)| IssueTemplate {
            name: (*n).to_owned(),
            content: (*c).to_owned(),
        })
        .collect();
    let ConfigSource::Dir(dir) = src else {
        return Ok(out);
    };
    let dir = dir.join("issue_templates");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(SetupError::Templates {
                path: dir.display().to_string(),
                message: e.to_string(),
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SetupError::Templates {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".md") || !entry.path().is_file() {
            continue;
        }
        let content = std::fs::read_to_string(entry.path()).map_err(|e| SetupError::Templates {
            path: entry.path().display().to_string(),
            message: e.to_string(),
        })?;
        found.push(IssueTemplate { name, content });
    }
    for f in found {
        match out.iter_mut().find(|t| t.name == f.name) {
            Some(t) => *t = f,
            None => out.push(f),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub async fn run(ctx: &JobContext, opts: SetupOptions) -> Result<SetupReport, SetupError> {
    let live = ctx.live();
    let client = &live.client;
    let routing = &ctx.policies.routing;
    if routing.watch.groups.is_empty() && routing.watch.projects.is_empty() {
        return Err(SetupError::NothingWatched);
    }
    let spend = super::Spend::start(client);
    let mut changes = Vec::new();
    // Test deliveries re-enabling hooks GitLab disabled: last, once everything else is set.
    let mut reenable = Vec::new();

    // Labels: the watched scope's MR labels, the tracking project's engagement labels.
    for (owner, wanted) in wanted_labels(&ctx.policies, &opts.templates) {
        let existing: Vec<ExistingLabel> = read(
            Get::new(format!("{owner}/labels")).param("include_ancestor_groups", "true"),
            client,
            labels_role(&owner),
        )
        .await?;
        let actions = plan_labels(&owner, &existing, &wanted);
        execute(ctx, client, &actions, &mut changes).await?;
    }

    // Webhooks.
    if let Some(url) = opts.webhook_url.as_deref() {
        let policy_branch = match &opts.policy_repo {
            Some(PolicyRepo {
                reference: Some(branch),
                ..
            }) => Some(branch.clone()),
            Some(p) => Some(default_branch(client, &p.project).await?),
            None => None,
        };
        let policy =
            opts.policy_repo
                .as_ref()
                .zip(policy_branch.as_deref())
                .map(|(p, reference)| PolicySource {
                    project: &p.project,
                    reference,
                });
        for wanted in wanted_hooks(&routing.watch, &routing.tracking.project, policy.as_ref()) {
            let hooks: Vec<ExistingHook> = read(
                Get::new(format!("{}/hooks", wanted.owner)),
                client,
                hooks_role(&wanted.owner),
            )
            .await?;
            let (tests, actions): (Vec<Action>, Vec<Action>) =
                plan_hook(&wanted, &hooks, url, opts.secret.as_ref())
                    .into_iter()
                    .partition(|a| matches!(a, Action::TestHook { .. }));
            execute(ctx, client, &actions, &mut changes).await?;
            reenable.extend(tests);
        }
    }

    // Issue templates, in the tracking project's default branch.
    if !opts.templates.is_empty() {
        let project = &routing.tracking.project;
        let branch = default_branch(client, project).await?;
        let mut existing = BTreeMap::new();
        for t in &opts.templates {
            if let Some(f) = read_file(client, project, &t.path(), &branch).await? {
                existing.insert(t.path(), f);
            }
        }
        if let Some(commit) = plan_templates(project, &branch, &opts.templates, &existing) {
            execute(ctx, client, std::slice::from_ref(&commit), &mut changes).await?;
        }
    }

    execute(ctx, client, &reenable, &mut changes).await?;

    let spent = spend.so_far();
    Ok(SetupReport {
        changes,
        api_reads: spent.reads,
        api_writes: spent.writes,
    })
}

/// Runs the actions one by one, so a failure names the role its step needs.
async fn execute(
    ctx: &Context,
    client: &GitlabClient,
    actions: &[Action],
    changes: &mut Vec<String>,
) -> Result<(), SetupError> {
    for a in actions {
        ctx.executor()
            .run(Some(client), std::slice::from_ref(a))
            .await
            .map_err(|source| SetupError::Write {
                call: call_of(a),
                need: role_needed(a).unwrap_or_else(|| "the right role".to_owned()),
                // setup names the role itself; the worker's "grant it, then replay" is not for it.
                cause: Box::new(source.without_hint()),
            })?;
        changes.push(a.summary());
    }
    Ok(())
}

/// "POST projects/…/hooks", for error messages.
fn call_of(a: &Action) -> String {
    match a {
        Action::CreateLabel { owner, .. } => format!("POST {owner}/labels"),
        Action::UpdateLabel { owner, id, .. } => format!("PUT {owner}/labels/{id}"),
        Action::CreateHook { owner, .. } => format!("POST {owner}/hooks"),
        Action::UpdateHook { owner, id, .. } => format!("PUT {owner}/hooks/{id}"),
        Action::TestHook {
            owner, id, trigger, ..
        } => format!("POST {owner}/hooks/{id}/test/{trigger}"),
        Action::CommitFiles { project, .. } => {
            format!("POST projects/{}/repository/commits", path_id(project))
        }
        other => other.summary(),
    }
}

async fn read<T: serde::de::DeserializeOwned + Send + 'static>(
    get: Get,
    client: &GitlabClient,
    need: String,
) -> Result<Vec<T>, SetupError> {
    let call = format!("GET {}", get_path(&get));
    get.all(client).await.map_err(|e| SetupError::Read {
        cause: Box::new(GitlabError::new(format!("reading {call}"), e)),
        call,
        need,
    })
}

fn get_path(get: &Get) -> String {
    use gitlab::api::Endpoint;
    get.endpoint().into_owned()
}

#[derive(serde::Deserialize)]
struct ApiProject {
    #[serde(default)]
    default_branch: Option<String>,
}

/// `GET /projects/:id`'s `default_branch`.
async fn default_branch(client: &GitlabClient, project: &str) -> Result<String, SetupError> {
    let get = Get::new(format!("projects/{}", path_id(project)));
    let call = format!("GET {}", get_path(&get));
    let p: ApiProject = get.one(client).await.map_err(|e| SetupError::Read {
        cause: Box::new(GitlabError::new(format!("reading project {project}"), e)),
        call,
        need: read_repository_role(project),
    })?;
    p.default_branch
        .filter(|b| !b.is_empty())
        .ok_or_else(|| SetupError::NoDefaultBranch {
            project: project.to_owned(),
        })
}

#[derive(serde::Deserialize)]
struct ApiFile {
    content: String,
    #[serde(default)]
    encoding: Option<String>,
    last_commit_id: String,
}

/// `GET /projects/:id/repository/files/:path?ref=`: `None` when the file (or the branch of
/// an empty repository) is not there.
async fn read_file(
    client: &GitlabClient,
    project: &str,
    path: &str,
    branch: &str,
) -> Result<Option<ExistingFile>, SetupError> {
    let get = Get::new(format!(
        "projects/{}/repository/files/{}",
        path_id(project),
        encode_segment(path)
    ))
    .param("ref", branch);
    let call = format!("GET {}", get_path(&get));
    let file: ApiFile = match get.one(client).await {
        Ok(f) => f,
        Err(e) => {
            let e = GitlabError::new(format!("reading {path} in {project}"), e);
            if e.is_not_found() {
                return Ok(None);
            }
            return Err(SetupError::Read {
                cause: Box::new(e),
                call,
                need: read_repository_role(project),
            });
        }
    };
    let bad = || SetupError::BadFile {
        project: project.to_owned(),
        path: path.to_owned(),
    };
    let content = match file.encoding.as_deref() {
        Some("text") => file.content,
        _ => {
            let compact: String = file
                .content
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| bad())?;
            String::from_utf8(bytes).map_err(|_| bad())?
        }
    };
    Ok(Some(ExistingFile {
        content,
        last_commit_id: file.last_commit_id,
    }))
}

/// Percent-encodes a file path as one URL path segment (`/` too, spaces as `%20`), as the
/// Repository Files API wants it.
fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 3);
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_project_is_a_path_with_an_optional_ref() {
        let cases: [(&str, Option<(&str, &str)>); 6] = [
            ("cocreate/policies", Some(("cocreate/policies", ""))),
            (
                "cocreate/policies@main",
                Some(("cocreate/policies", "main")),
            ),
            (
                "org/sub/policies@release/2026",
                Some(("org/sub/policies", "release/2026")),
            ),
            ("cocreate/policies@", None),
            ("policies", None),
            ("", None),
        ];
        for (raw, want) in cases {
            let got = raw.parse::<PolicyRepo>().ok();
            assert_eq!(
                got.as_ref()
                    .map(|p| (p.project.as_str(), p.reference.as_deref().unwrap_or(""))),
                want,
                "{raw}"
            );
        }
    }

    #[test]
    fn file_paths_are_one_encoded_segment() {
        assert_eq!(
            encode_segment(".gitlab/issue_templates/Co-Create engagement request.md"),
            ".gitlab%2Fissue_templates%2FCo-Create%20engagement%20request.md"
        );
    }

    #[test]
    fn shipped_templates_are_the_embedded_ones_or_the_directory_copy() {
        let embedded = issue_templates(&ConfigSource::Embedded).expect("embedded");
        assert_eq!(embedded.len(), crate::messages::ISSUE_TEMPLATES.len());
        let dir = std::env::temp_dir().join(format!("cocreate-setup-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("issue_templates")).expect("mkdir");
        std::fs::write(
            dir.join("issue_templates/Co-Create engagement request.md"),
            "custom\n",
        )
        .expect("write");
        std::fs::write(dir.join("issue_templates/Extra.md"), "extra\n").expect("write");
        std::fs::write(dir.join("issue_templates/notes.txt"), "not a template").expect("write");
        let from_dir = issue_templates(&ConfigSource::Dir(dir.clone())).expect("dir");
        std::fs::remove_dir_all(&dir).ok();
        let names: Vec<(&str, &str)> = from_dir
            .iter()
            .map(|t| (t.name.as_str(), t.content.as_str()))
            .collect();
        assert_eq!(
            names.len(),
            crate::messages::ISSUE_TEMPLATES.len() + 1,
            "{names:?}"
        );
        assert!(names.contains(&("Co-Create engagement request.md", "custom\n")));
        assert!(names.contains(&("Extra.md", "extra\n")));
        assert!(names
            .iter()
            .any(|(n, c)| *n == "Co-Create pathway decision.md" && c.contains("/label")));
        for shipped in [
            "Co-Create alignment meeting notes.md",
            "Co-Create onboarding session.md",
        ] {
            assert!(names.iter().any(|(n, _)| *n == shipped), "{shipped}");
        }
    }
}

//! Projects and their Git repositories: `GET /projects/:id`, the Repository Tree, Repository
//! Files and Commits APIs, and seeding files from a test ([`FakeGitLab::commit_files`]).
//!
//! Model: per project, commits holding a full snapshot of their tree (tests keep repositories
//! tiny) and branches pointing at commits. Ids are 40 hex digits derived with SHA-256 (GitLab
//! uses Git's SHA-1; nothing in the tool recomputes them). A project's repository starts empty
//! with GitLab's default initial branch `main` as its `default_branch` (as GitLab shows it);
//! the first branch committed to becomes the default branch.
//! Every commit, through the API or [`FakeGitLab::commit_files`], sends a Push Hook to the
//! project's webhooks (see `deliveries`).

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{
    fmt_time, lookup_project, paginate, Ctx, FakeGitLab, HandlerResult, Reply, World, WEB_BASE,
};

/// The repository of one project.
pub(super) struct Repo {
    pub(super) default_branch: String,
    /// Branch name -> head commit id.
    pub(super) branches: BTreeMap<String, String>,
    pub(super) commits: BTreeMap<String, Commit>,
}

impl Default for Repo {
    fn default() -> Self {
        Repo {
            default_branch: "main".to_owned(),
            branches: BTreeMap::new(),
            commits: BTreeMap::new(),
        }
    }
}

pub(super) struct Commit {
    pub(super) id: String,
    pub(super) parent_ids: Vec<String>,
    pub(super) message: String,
    pub(super) author_name: String,
    pub(super) author_email: String,
    pub(super) created_at: DateTime<Utc>,
    /// Path -> content: the whole tree at this commit.
    pub(super) tree: BTreeMap<String, Vec<u8>>,
}

/// One change of a commit, as the Commits API takes it.
#[derive(Debug, Clone)]
pub(super) struct FileAction {
    action: String,
    file_path: String,
    previous_path: Option<String>,
    content: Option<Vec<u8>>,
    last_commit_id: Option<String>,
}

fn hex_id(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())[..40].to_owned()
}

/// The id of a file's content (like a Git blob id: equal contents, equal ids).
pub(super) fn blob_id(content: &[u8]) -> String {
    hex_id(&[b"blob", content])
}

impl Repo {
    fn is_empty(&self) -> bool {
        self.branches.is_empty()
    }

    /// A branch name, a full commit id or a unique prefix of at least 7 hex digits.
    pub(super) fn resolve(&self, reference: &str) -> Option<&Commit> {
        if let Some(id) = self.branches.get(reference) {
            return self.commits.get(id);
        }
        if reference.len() >= 7 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
            let lower = reference.to_ascii_lowercase();
            let mut found = self.commits.values().filter(|c| c.id.starts_with(&lower));
            if let (Some(c), None) = (found.next(), found.next()) {
                return Some(c);
            }
        }
        None
    }

    /// The last commit reachable from `from` (first parents) that changed `path`.
    fn last_commit_of(&self, from: &Commit, path: &str) -> String {
        let mut at = from;
        loop {
            let parent = at.parent_ids.first().and_then(|p| self.commits.get(p));
            match parent {
                Some(p) if p.tree.get(path) == at.tree.get(path) => at = p,
                _ => return at.id.clone(),
            }
        }
    }

    /// Applies the actions on top of the branch (or `start` for a new branch); validates
    /// everything first, like GitLab (nothing is written on an error).
    pub(super) fn commit(
        &mut self,
        branch: &str,
        start: Option<&str>,
        message: &str,
        author: (&str, &str),
        actions: &[FileAction],
        now: DateTime<Utc>,
    ) -> Result<String, Reply> {
        let base_id = match (self.branches.get(branch), start) {
            (Some(head), _) => Some(head.clone()),
            (None, Some(s)) => Some(
                self.resolve(s)
                    .map(|c| c.id.clone())
                    .ok_or_else(|| Reply::message(400, "Invalid start branch"))?,
            ),
            (None, None) if self.is_empty() => None,
            (None, None) => {
                return Err(Reply::message(
                    400,
                    "You can only create or edit files when you are on a branch",
                ))
            }
        };
        let base = base_id.as_ref().and_then(|id| self.commits.get(id));
        let mut tree = base.map(|c| c.tree.clone()).unwrap_or_default();
        for a in actions {
            let exists = tree.contains_key(&a.file_path);
            if let (Some(expected), Some(b)) = (&a.last_commit_id, base) {
                if exists && self.last_commit_of(b, &a.file_path) != *expected {
                    return Err(Reply::message(
                        400,
                        &format!(
                            "The file has changed since you started editing it: {}",
                            a.file_path
                        ),
                    ));
                }
            }
            match a.action.as_str() {
                "create" if exists => {
                    return Err(Reply::message(400, "A file with this name already exists"))
                }
                "create" | "update" if a.content.is_none() => {
                    return Err(Reply::error(400, "actions[content] is missing"))
                }
                "update" | "delete" | "chmod" if !exists => {
                    return Err(Reply::message(400, "A file with this name doesn't exist"))
                }
                "create" | "update" => {
                    tree.insert(a.file_path.clone(), a.content.clone().unwrap_or_default());
                }
                "delete" => {
                    tree.remove(&a.file_path);
                }
                "chmod" => {}
                "move" => {
                    let from = a
                        .previous_path
                        .as_deref()
                        .ok_or_else(|| Reply::error(400, "actions[previous_path] is missing"))?;
                    if exists {
                        return Err(Reply::message(400, "A file with this name already exists"));
                    }
                    let old = tree.remove(from).ok_or_else(|| {
                        Reply::message(400, "A file with this name doesn't exist")
                    })?;
                    tree.insert(a.file_path.clone(), a.content.clone().unwrap_or(old));
                }
                _ => {
                    return Err(Reply::error(
                        400,
                        "actions[action] does not have a valid value",
                    ))
                }
            }
        }
        let parent_ids: Vec<String> = base_id.into_iter().collect();
        let seq = self.commits.len().to_string();
        let id = hex_id(&[
            b"commit",
            parent_ids.join(",").as_bytes(),
            message.as_bytes(),
            seq.as_bytes(),
        ]);
        self.commits.insert(
            id.clone(),
            Commit {
                id: id.clone(),
                parent_ids,
                message: message.to_owned(),
                author_name: author.0.to_owned(),
                author_email: author.1.to_owned(),
                created_at: now,
                tree,
            },
        );
        if self.is_empty() {
            // The first branch pushed to an empty repository becomes its default branch.
            self.default_branch = branch.to_owned();
        }
        self.branches.insert(branch.to_owned(), id.clone());
        Ok(id)
    }
}

impl World {
    pub(super) fn repo(&mut self, project_id: u64) -> &mut Repo {
        self.repos.entry(project_id).or_default()
    }

    /// Commits and queues the Push Hook; `before` is the branch head before (zeros if new).
    pub(super) fn commit_and_push(
        &mut self,
        project_id: u64,
        branch: &str,
        start: Option<&str>,
        message: &str,
        actions: &[FileAction],
    ) -> Result<String, Reply> {
        let now = self.clock.tick();
        let bot = self.user_or_placeholder(self.bot_id).spec;
        let author = (bot.name.clone(), format!("{}@example.com", bot.username));
        let repo = self.repo(project_id);
        let before = repo
            .branches
            .get(branch)
            .cloned()
            .unwrap_or_else(|| "0".repeat(40));
        let id = repo.commit(branch, start, message, (&author.0, &author.1), actions, now)?;
        self.queue_push(project_id, branch, &before, &id);
        Ok(id)
    }
}

impl FakeGitLab {
    /// Commits `files` (created or replaced) to `branch` of the project's repository as the
    /// bot would (the branch is created when the repository is empty), sends the Push Hook,
    /// and returns the new commit id. Panics on unknown projects.
    pub fn commit_files(&self, project_id: u64, branch: &str, files: &[(&str, &str)]) -> String {
        let mut w = self.world();
        assert!(
            w.projects.contains_key(&project_id),
            "commit_files: no project {project_id}"
        );
        // A new branch starts from the default branch (when there is one).
        let repo = w.repo(project_id);
        let start = (!repo.branches.contains_key(branch) && !repo.is_empty())
            .then(|| repo.default_branch.clone());
        let tree = repo
            .resolve(start.as_deref().unwrap_or(branch))
            .map(|c| c.tree.clone())
            .unwrap_or_default();
        let actions: Vec<FileAction> = files
            .iter()
            .map(|(path, content)| FileAction {
                action: if tree.contains_key(*path) {
                    "update"
                } else {
                    "create"
                }
                .to_owned(),
                file_path: (*path).to_owned(),
                previous_path: None,
                content: Some(content.as_bytes().to_vec()),
                last_commit_id: None,
            })
            .collect();

        w.commit_and_push(
            project_id,
            branch,
            start.as_deref(),
            "Test commit",
            &actions,
        )
        .unwrap_or_else(|r| panic!("commit_files: {}", r.status))
    }

    /// A file at a ref (branch or commit id), if present.
    pub fn file_at(&self, project_id: u64, reference: &str, path: &str) -> Option<String> {
        let mut w = self.world();
        w.repo(project_id)
            .resolve(reference)
            .and_then(|c| c.tree.get(path))
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// How many commits the project's repository has.
    pub fn commit_count(&self, project_id: u64) -> usize {
        self.world().repo(project_id).commits.len()
    }

    /// The head commit of a branch.
    pub fn branch_head(&self, project_id: u64, branch: &str) -> Option<String> {
        self.world().repo(project_id).branches.get(branch).cloned()
    }

    /// Sets the branch GitLab reports as `default_branch`.
    pub fn set_default_branch(&self, project_id: u64, branch: &str) {
        self.world().repo(project_id).default_branch = branch.to_owned();
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Routes `GET /projects/:id` and `/projects/:id/repository/{tree,files,commits}`.
pub(super) fn route(w: &mut World, ctx: &Ctx<'_>, segments: &[&str]) -> Option<HandlerResult> {
    Some(match (ctx.method.as_str(), segments) {
        ("GET", ["projects", project]) => get_project(w, project),
        ("GET", ["projects", project, "repository", "tree"]) => get_tree(w, ctx, project),
        ("GET", ["projects", project, "repository", "files", path]) => {
            get_file(w, ctx, project, path)
        }
        ("GET", ["projects", project, "repository", "files", path, "raw"]) => {
            get_raw_file(w, ctx, project, path)
        }
        ("POST", ["projects", project, "repository", "commits"]) => post_commit(w, ctx, project),
        ("GET", ["projects", project, "repository", "commits", reference]) => {
            get_commit(w, project, reference)
        }
        _ => return None,
    })
}

fn project_json(w: &mut World, id: u64) -> Value {
    let path = w.project_path(id);
    let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let namespace = path
        .rsplit_once('/')
        .map(|(n, _)| n.to_owned())
        .unwrap_or_default();
    let repo = w.repo(id);
    json!({
        "id": id,
        "name": name,
        "path": name,
        "name_with_namespace": path.replace('/', " / "),
        "path_with_namespace": path,
        "description": "",
        "default_branch": repo.default_branch,
        "empty_repo": repo.is_empty(),
        "visibility": w.visibility.get(&id).map_or("private", String::as_str),
        "archived": false,
        "web_url": format!("{WEB_BASE}/{path}"),
        "http_url_to_repo": format!("{WEB_BASE}/{path}.git"),
        "namespace": {"full_path": namespace, "kind": "group"},
        "created_at": "2026-01-01T00:00:00.000Z",
        "issues_enabled": true,
        "merge_requests_enabled": true,
    })
}

/// `GET /projects/:id`
fn get_project(w: &mut World, project: &str) -> HandlerResult {
    let id = lookup_project(w, project)?;
    Ok(Reply::json(200, project_json(w, id)))
}

fn resolve_ref<'r>(
    repo: &'r Repo,
    reference: Option<&str>,
    what: &str,
) -> Result<&'r Commit, Reply> {
    let reference = reference.unwrap_or(&repo.default_branch);
    repo.resolve(reference)
        .ok_or_else(|| Reply::message(404, &format!("404 {what} Not Found")))
}

/// `GET /projects/:id/repository/tree` (`path`, `ref`, `recursive`, offset pagination):
/// directories first, then files, by name; recursive lists every entry below `path`.
fn get_tree(w: &mut World, ctx: &Ctx<'_>, project: &str) -> HandlerResult {
    let id = lookup_project(w, project)?;
    let q = &ctx.query;
    let recursive = q.bool("recursive")?.unwrap_or(false);
    let dir = q.get("path").unwrap_or("").trim_matches('/').to_owned();
    let repo = w.repo(id);
    let commit = resolve_ref(repo, q.get("ref"), "Tree")?;
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    // (path, is a directory)
    let mut entries: BTreeMap<String, bool> = BTreeMap::new();
    for path in commit.tree.keys() {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let depth = if recursive { parts.len() } else { 1 };
        for i in 0..depth.min(parts.len()) {
            let p = format!("{prefix}{}", parts[..=i].join("/"));
            entries.insert(p, i + 1 < parts.len());
        }
    }
    if entries.is_empty() && !dir.is_empty() {
        return Err(Reply::message(404, "404 Tree Not Found"));
    }
    let mut items: Vec<(String, bool)> = entries.into_iter().collect();
    if !recursive {
        items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    let tree = commit.tree.clone();
    let rendered: Vec<Value> = items
        .iter()
        .map(|(path, is_dir)| {
            let name = path.rsplit('/').next().unwrap_or(path);
            let id = if *is_dir {
                let below: Vec<u8> = tree
                    .iter()
                    .filter(|(p, _)| p.starts_with(&format!("{path}/")))
                    .flat_map(|(p, c)| [p.as_bytes(), c.as_slice()].concat())
                    .collect();
                hex_id(&[b"tree", &below])
            } else {
                blob_id(&tree[path])
            };
            json!({
                "id": id,
                "name": name,
                "type": if *is_dir { "tree" } else { "blob" },
                "path": path,
                "mode": if *is_dir { "040000" } else { "100644" },
            })
        })
        .collect();
    paginate(w, ctx, &rendered, Clone::clone)
}

/// `GET /projects/:id/repository/files/:file_path?ref=` (`ref` required): base64 content.
fn get_file(w: &mut World, ctx: &Ctx<'_>, project: &str, path: &str) -> HandlerResult {
    let id = lookup_project(w, project)?;
    let reference = ctx
        .query
        .get("ref")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Reply::error(400, "ref is missing"))?
        .to_owned();
    let repo = w.repo(id);
    let commit = resolve_ref(repo, Some(&reference), "Commit")?;
    let content = commit
        .tree
        .get(path)
        .ok_or_else(|| Reply::message(404, "404 File Not Found"))?;
    let last = repo.last_commit_of(commit, path);
    Ok(Reply::json(
        200,
        json!({
            "file_name": path.rsplit('/').next().unwrap_or(path),
            "file_path": path,
            "size": content.len(),
            "encoding": "base64",
            "content": base64::engine::general_purpose::STANDARD.encode(content),
            "content_sha256": hex::encode(Sha256::digest(content)),
            "ref": reference,
            "blob_id": blob_id(content),
            "commit_id": commit.id,
            "last_commit_id": last,
            "execute_filemode": false,
        }),
    ))
}

/// `GET /projects/:id/repository/files/:file_path/raw` (`ref` defaults to the default branch).
fn get_raw_file(w: &mut World, ctx: &Ctx<'_>, project: &str, path: &str) -> HandlerResult {
    let id = lookup_project(w, project)?;
    let repo = w.repo(id);
    let commit = resolve_ref(
        repo,
        ctx.query.get("ref").filter(|r| !r.is_empty()),
        "Commit",
    )?;
    let content = commit
        .tree
        .get(path)
        .ok_or_else(|| Reply::message(404, "404 File Not Found"))?;
    let last = repo.last_commit_of(commit, path);
    let blob = blob_id(content);
    Ok(
        Reply::text(200, String::from_utf8_lossy(content).into_owned())
            .header("X-Gitlab-Blob-Id", blob)
            .header("X-Gitlab-Commit-Id", commit.id.clone())
            .header("X-Gitlab-Last-Commit-Id", last)
            .header("X-Gitlab-File-Path", path),
    )
}

fn commit_json(project_path: &str, c: &Commit) -> Value {
    let title = c.message.lines().next().unwrap_or("").to_owned();
    json!({
        "id": c.id,
        "short_id": &c.id[..8],
        "title": title,
        "message": c.message,
        "author_name": c.author_name,
        "author_email": c.author_email,
        "authored_date": fmt_time(c.created_at),
        "committer_name": c.author_name,
        "committer_email": c.author_email,
        "committed_date": fmt_time(c.created_at),
        "created_at": fmt_time(c.created_at),
        "parent_ids": c.parent_ids,
        "web_url": format!("{WEB_BASE}/{project_path}/-/commit/{}", c.id),
    })
}

/// `GET /projects/:id/repository/commits/:sha` (a branch name, commit id or unique prefix).
fn get_commit(w: &mut World, project: &str, reference: &str) -> HandlerResult {
    let id = lookup_project(w, project)?;
    let path = w.project_path(id);
    let repo = w.repo(id);
    let c = repo
        .resolve(reference)
        .ok_or_else(|| Reply::message(404, "404 Commit Not Found"))?;
    Ok(Reply::json(200, commit_json(&path, c)))
}

/// The `actions` of a commit: a JSON array of objects, or Rack's form encoding
/// (`actions[][action]=…&actions[][file_path]=…`, a repeated key starts the next action).
fn parse_actions(ctx: &Ctx<'_>) -> Result<Vec<BTreeMap<String, String>>, Reply> {
    let body = &ctx.req.body;
    let is_json = ctx
        .header("content-type")
        .is_some_and(|ct| ct.contains("json"))
        || body.trim_ascii_start().first() == Some(&b'{');
    let mut out: Vec<BTreeMap<String, String>> = Vec::new();
    if is_json {
        let v: Value = serde_json::from_slice(body)
            .map_err(|_| Reply::error(400, "400 Bad request - invalid JSON body"))?;
        let Some(items) = v.get("actions").and_then(Value::as_array) else {
            return Err(Reply::error(400, "actions is missing"));
        };
        for item in items {
            let Some(map) = item.as_object() else {
                return Err(Reply::error(400, "actions is invalid"));
            };
            out.push(
                map.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), super::scalar_string(v)))
                    .collect(),
            );
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            let Some(key) = k
                .strip_prefix("actions[][")
                .and_then(|k| k.strip_suffix(']'))
            else {
                continue;
            };
            match out.last_mut() {
                Some(last) if !last.contains_key(key) => {
                    last.insert(key.to_owned(), v.into_owned());
                }
                _ => out.push(BTreeMap::from([(key.to_owned(), v.into_owned())])),
            }
        }
    }
    if out.is_empty() {
        return Err(Reply::error(400, "actions is missing"));
    }
    Ok(out)
}

fn file_action(raw: &BTreeMap<String, String>) -> Result<FileAction, Reply> {
    let action = raw
        .get("action")
        .ok_or_else(|| Reply::error(400, "actions[action] is missing"))?;
    if !["create", "delete", "move", "update", "chmod"].contains(&action.as_str()) {
        return Err(Reply::error(
            400,
            "actions[action] does not have a valid value",
        ));
    }
    let file_path = raw
        .get("file_path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Reply::error(400, "actions[file_path] is missing"))?
        .trim_start_matches('/')
        .to_owned();
    let content = match (raw.get("content"), raw.get("encoding").map(String::as_str)) {
        (None, _) => None,
        (Some(c), None | Some("text")) => Some(c.as_bytes().to_vec()),
        (Some(c), Some("base64")) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(c.trim())
                .map_err(|_| Reply::message(400, "Invalid base64 content"))?,
        ),
        (Some(_), Some(_)) => {
            return Err(Reply::error(
                400,
                "actions[encoding] does not have a valid value",
            ))
        }
    };
    Ok(FileAction {
        action: action.clone(),
        file_path,
        previous_path: raw.get("previous_path").cloned(),
        content,
        last_commit_id: raw.get("last_commit_id").filter(|c| !c.is_empty()).cloned(),
    })
}

/// `POST /projects/:id/repository/commits` (`branch`, `commit_message`, `actions`,
/// `start_branch`/`start_sha`): 201 with the commit; 400 when a create meets an existing file,
/// an update/delete a missing one, or `last_commit_id` is stale.
fn post_commit(w: &mut World, ctx: &Ctx<'_>, project: &str) -> HandlerResult {
    let id = lookup_project(w, project)?;
    let params = ctx.params()?;
    let branch = params
        .get("branch")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Reply::error(400, "branch is missing"))?
        .to_owned();
    let message = params
        .get("commit_message")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Reply::error(400, "commit_message is missing"))?
        .to_owned();
    let start = params
        .get("start_branch")
        .or(params.get("start_sha"))
        .map(str::to_owned);
    let actions = parse_actions(ctx)?
        .iter()
        .map(file_action)
        .collect::<Result<Vec<_>, _>>()?;
    if params.get("force").is_some() {
        params.bool("force")?;
    }
    let sha = w.commit_and_push(id, &branch, start.as_deref(), &message, &actions)?;
    let path = w.project_path(id);
    let c = &w.repo(id).commits[&sha];
    Ok(Reply::json(201, commit_json(&path, c)))
}

impl Reply {
    /// A `text/plain` answer (raw files).
    fn text(status: u16, text: String) -> Reply {
        Reply {
            status,
            body: super::Body::Text(text),
            headers: Vec::new(),
            delay: None,
        }
    }
}

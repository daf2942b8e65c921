//! Webhooks the fake sends, and the user actions that cause them.
//!
//! GitLab calls every webhook of a project and of its ancestor groups that subscribes to an
//! event. The fake queues those deliveries (the registered URL, secret token, event header and
//! a payload shaped like the fixtures in `tests/fixtures/gitlab/payloads`, filled from the
//! world) and [`FakeGitLab::send_deliveries`] POSTs them, so a test exercises what `setup`
//! registered: no hook, or a hook without the event, means no delivery.
//!
//! Causes: [`FakeGitLab::issue_from_template`] (an issue opened in the UI from a template, with
//! GitLab's quick actions), [`FakeGitLab::open_mr`], and every commit (Push Hook). Writes made
//! through the API by the bot do not trigger deliveries here.

use serde_json::{json, Value};

use super::{fixture, fmt_time, normalize_labels, FakeGitLab, Issue, MrSpec, World, WEB_BASE};

/// One webhook call the fake will make.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub url: String,
    /// Sent as `X-Gitlab-Token`.
    pub token: Option<String>,
    /// The `X-Gitlab-Event` header, e.g. `Confidential Issue Hook`.
    pub event: String,
    /// `X-Gitlab-Event-UUID`.
    pub uuid: String,
    pub body: Value,
    /// The hook called, `groups/50/hooks/7` (see `hook_events`).
    pub hook: String,
    /// GitLab's name of the event in the hook's log, e.g. `merge_request_hooks`.
    pub trigger: String,
}

/// `*` matches any run of characters (GitLab's `wildcard` branch filter strategy); an empty
/// filter matches every branch.
fn branch_matches(filter: &str, branch: &str) -> bool {
    let filter = filter.trim();
    if filter.is_empty() {
        return true;
    }
    let parts: Vec<&str> = filter.split('*').collect();
    if parts.len() == 1 {
        return filter == branch;
    }
    let mut rest = branch;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

impl World {
    /// `projects/<id>` and `groups/<id>` of every ancestor group, nearest first.
    fn hook_owners(&self, project_id: u64) -> Vec<String> {
        let path = self.project_path(project_id);
        let mut groups: Vec<(usize, u64)> = self
            .groups
            .values()
            .filter(|g| path.starts_with(&format!("{}/", g.full_path)))
            .map(|g| (g.full_path.len(), g.id))
            .collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.0));
        std::iter::once(format!("projects/{project_id}"))
            .chain(groups.into_iter().map(|(_, id)| format!("groups/{id}")))
            .collect()
    }

    /// Queues `body` for every hook of the project and its groups with `flag` on (and, for
    /// pushes, whose branch filter matches `branch`).
    pub(super) fn queue_delivery(
        &mut self,
        project_id: u64,
        flag: &str,
        event: &str,
        body: Value,
        branch: Option<&str>,
    ) {
        let mut out = Vec::new();
        let now = self.clock.peek();
        for owner in self.hook_owners(project_id) {
            for h in self.hooks.get(&owner).into_iter().flatten() {
                if h.events.get(flag) != Some(&true) {
                    continue;
                }
                let hook = format!("{owner}/hooks/{}", h.id);
                // GitLab does not call a hook it has disabled (nor records a call).
                if self.hook_log.is_disabled(&hook, now) {
                    continue;
                }
                // Branch filters apply to project hooks' push events.
                if let (Some(b), true) = (branch, owner.starts_with("projects/")) {
                    if !branch_matches(h.push_events_branch_filter.as_deref().unwrap_or(""), b) {
                        continue;
                    }
                }
                out.push((h.url.clone(), h.token.clone(), hook));
            }
        }
        for (url, token, hook) in out {
            self.next_delivery += 1;
            self.deliveries.push(Delivery {
                url,
                token,
                event: event.to_owned(),
                uuid: format!("00000000-0000-4000-9000-{:012}", self.next_delivery),
                body: body.clone(),
                hook,
                trigger: super::hook_events::trigger_of(flag),
            });
        }
    }

    pub(super) fn payload_project(&mut self, project_id: u64) -> Value {
        let path = self.project_path(project_id);
        let default_branch = self.repo(project_id).default_branch.clone();
        let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
        json!({
            "id": project_id,
            "name": name,
            "description": "",
            "web_url": format!("{WEB_BASE}/{path}"),
            "avatar_url": null,
            "git_ssh_url": format!("git@gitlab.example.com:{path}.git"),
            "git_http_url": format!("{WEB_BASE}/{path}.git"),
            "namespace": path.rsplit_once('/').map(|(n, _)| n).unwrap_or(""),
            "visibility_level": 0,
            "path_with_namespace": path,
            "default_branch": default_branch,
            "ci_config_path": null,
        })
    }

    pub(super) fn payload_user(&self, user_id: u64) -> Value {
        let u = self.user_or_placeholder(user_id).spec;
        json!({
            "id": u.id,
            "name": u.name,
            "username": u.username,
            "avatar_url": null,
            "email": "[REDACTED]",
        })
    }

    fn payload_labels(&mut self, project_id: u64, names: &[String]) -> Value {
        let own: Vec<String> = self
            .labels
            .get(&format!("projects/{project_id}"))
            .into_iter()
            .flatten()
            .map(|l| l.name.clone())
            .collect();
        names
            .iter()
            .map(|n| {
                let l = self.label_for_project(project_id, n);
                json!({
                    "id": l.id,
                    "title": l.name,
                    "color": l.color,
                    "project_id": project_id,
                    "template": false,
                    "description": l.description,
                    "type": if own.contains(n) { "ProjectLabel" } else { "GroupLabel" },
                })
            })
            .collect()
    }

    fn queue_issue_hook(&mut self, key: (u64, u64), action: &str) {
        let (flag, event, v) = self.issue_hook_body(key, action);
        self.queue_delivery(key.0, flag, event, v, None);
    }

    /// The Issue Hook (or Confidential Issue Hook) of issue `key`: its flag, event and body.
    pub(super) fn issue_hook_body(
        &mut self,
        key: (u64, u64),
        action: &str,
    ) -> (&'static str, &'static str, Value) {
        let issue = &self.issues[&key];
        let (author, title, description, confidential, labels, id, state) = (
            issue.author_id,
            issue.title.clone(),
            issue.description.clone(),
            issue.confidential,
            issue.labels.clone(),
            issue.id,
            issue.state.clone(),
        );
        let (created, updated) = (fmt_time(issue.created_at), fmt_time(issue.updated_at));
        let mut v = fixture("payloads/issue_open.json");
        v["user"] = self.payload_user(author);
        v["project"] = self.payload_project(key.0);
        let labels_json = self.payload_labels(key.0, &labels);
        let path = self.project_path(key.0);
        let a = &mut v["object_attributes"];
        a["id"] = id.into();
        a["iid"] = key.1.into();
        a["project_id"] = key.0.into();
        a["title"] = title.into();
        a["description"] = description.into();
        a["author_id"] = author.into();
        a["confidential"] = confidential.into();
        a["state"] = state.into();
        a["action"] = action.into();
        a["created_at"] = created.into();
        a["updated_at"] = updated.into();
        a["assignee_ids"] = json!([]);
        a["assignee_id"] = Value::Null;
        a["url"] = format!("{WEB_BASE}/{path}/-/issues/{}", key.1).into();
        a["labels"] = labels_json.clone();
        v["labels"] = labels_json;
        v["assignees"] = json!([]);
        v["changes"] = json!({});
        let (flag, event) = if confidential {
            ("confidential_issues_events", "Confidential Issue Hook")
        } else {
            ("issues_events", "Issue Hook")
        };
        v["event_type"] = if confidential {
            "confidential_issue"
        } else {
            "issue"
        }
        .into();
        (flag, event, v)
    }

    pub(super) fn queue_mr_hook(&mut self, key: (u64, u64), action: &str) {
        let v = self.mr_hook_body(key, action);
        self.queue_delivery(
            key.0,
            "merge_requests_events",
            "Merge Request Hook",
            v,
            None,
        );
    }

    /// The Merge Request Hook body of MR `key`.
    pub(super) fn mr_hook_body(&mut self, key: (u64, u64), action: &str) -> Value {
        let mr = &self.mrs[&key];
        let (author, labels, reviewers) =
            (mr.author_id, mr.labels.clone(), mr.reviewer_ids.clone());
        let mut v = fixture("payloads/merge_request_open.json");
        let attrs = json!({
            "id": mr.id,
            "iid": mr.iid,
            "title": mr.title,
            "description": mr.description,
            "author_id": mr.author_id,
            "state": mr.state,
            "draft": mr.draft,
            "source_branch": mr.source_branch,
            "target_branch": mr.target_branch,
            "source_project_id": key.0,
            "target_project_id": key.0,
            "reviewer_ids": reviewers,
            "created_at": fmt_time(mr.created_at),
            "updated_at": fmt_time(mr.updated_at),
            "url": format!("{WEB_BASE}/{}/-/merge_requests/{}", mr.project_path, mr.iid),
            "action": action,
        });
        let sha = mr.sha.clone();
        v["user"] = self.payload_user(author);
        v["project"] = self.payload_project(key.0);
        for (k, val) in attrs.as_object().into_iter().flatten() {
            v["object_attributes"][k] = val.clone();
        }
        v["object_attributes"]["last_commit"]["id"] = sha.into();
        let labels_json = self.payload_labels(key.0, &labels);
        v["object_attributes"]["labels"] = labels_json.clone();
        v["labels"] = labels_json;
        v["reviewers"] = reviewers
            .iter()
            .map(|id| {
                let mut u = self.payload_user(*id);
                u["state"] = "unreviewed".into();
                u["re_requested"] = false.into();
                u
            })
            .collect();
        v["changes"] = json!({});
        v
    }

    /// A Push Hook for a commit to `branch` (`before` is all zeros for a new branch).
    pub(super) fn queue_push(&mut self, project_id: u64, branch: &str, before: &str, after: &str) {
        let bot = self.bot_id;
        let user = self.payload_user(bot);
        let project = self.payload_project(project_id);
        let path = self.project_path(project_id);
        let commit = self.repo(project_id).commits.get(after).map(|c| {
            json!({
                "id": c.id,
                "message": c.message,
                "title": c.message.lines().next().unwrap_or(""),
                "timestamp": fmt_time(c.created_at),
                "url": format!("{WEB_BASE}/{path}/-/commit/{}", c.id),
                "author": {"name": c.author_name, "email": c.author_email},
                "added": [], "modified": [], "removed": [],
            })
        });
        let body = json!({
            "object_kind": "push",
            "event_name": "push",
            "before": before,
            "after": after,
            "ref": format!("refs/heads/{branch}"),
            "ref_protected": true,
            "checkout_sha": after,
            "user_id": bot,
            "user_name": user["name"],
            "user_username": user["username"],
            "user_email": "",
            "project_id": project_id,
            "project": project,
            "commits": commit.into_iter().collect::<Vec<_>>(),
            "total_commits_count": 1,
            "repository": {
                "name": path.rsplit('/').next().unwrap_or(&path),
                "homepage": format!("{WEB_BASE}/{path}"),
            },
        });
        self.queue_delivery(project_id, "push_events", "Push Hook", body, Some(branch));
    }

    /// Does the label exist in the project or one of its ancestor groups?
    fn label_exists_for(&self, project_id: u64, name: &str) -> bool {
        self.hook_owners(project_id).iter().any(|owner| {
            self.labels
                .get(owner)
                .is_some_and(|ls| ls.iter().any(|l| l.name == name))
        })
    }
}

/// GitLab's quick actions in a new issue's description: `/label` (`/labels`) with `~"a b"`,
/// `~x` or bare names, and `/confidential`. Returns (description without the quick action
/// lines, label names, confidential).
fn quick_actions(text: &str) -> (String, Vec<String>, bool) {
    let mut kept = Vec::new();
    let mut labels = Vec::new();
    let mut confidential = false;
    for line in text.lines() {
        let t = line.trim();
        let command = t.split_whitespace().next().unwrap_or("");
        match command {
            "/confidential" => confidential = true,
            "/label" | "/labels" => {
                let mut rest = t[command.len()..].trim_start();
                while !rest.is_empty() {
                    let token = rest.strip_prefix('~').unwrap_or(rest);
                    let (name, tail) = if let Some(q) = token.strip_prefix('"') {
                        match q.find('"') {
                            Some(end) => (&q[..end], &q[end + 1..]),
                            None => (q, ""),
                        }
                    } else {
                        let end = token.find(char::is_whitespace).unwrap_or(token.len());
                        (&token[..end], &token[end..])
                    };
                    if !name.is_empty() {
                        labels.push(name.to_owned());
                    }
                    rest = tail.trim_start();
                }
            }
            _ => kept.push(line),
        }
    }
    (kept.join("\n").trim_end().to_owned(), labels, confidential)
}

impl FakeGitLab {
    /// The webhook calls queued so far, oldest first; they are removed from the queue.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut self.world().deliveries)
    }

    /// POSTs every queued delivery as GitLab does (JSON body, `X-Gitlab-Event`,
    /// `X-Gitlab-Token`, `X-Gitlab-Event-UUID`, `X-Gitlab-Instance`) and records each call in
    /// the hook's event log (see `hook_events`); returns each event header with the status the
    /// receiver answered (0: no answer).
    pub async fn send_deliveries(&self) -> Vec<(String, u16)> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest client");
        let mut out = Vec::new();
        for d in self.take_deliveries() {
            // GitLab checks at call time whether the hook is still executable.
            {
                let w = self.world();
                if w.hook_log.is_disabled(&d.hook, w.clock.peek()) {
                    continue;
                }
            }
            let mut headers: Vec<(String, String)> = vec![
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), "GitLab/18.6.0".into()),
                ("X-Gitlab-Event".into(), d.event.clone()),
                ("X-Gitlab-Event-UUID".into(), d.uuid.clone()),
                ("X-Gitlab-Instance".into(), WEB_BASE.into()),
            ];
            if let Some(t) = &d.token {
                headers.push(("X-Gitlab-Token".into(), t.clone()));
            }
            let mut req = http
                .post(&d.url)
                .body(serde_json::to_vec(&d.body).expect("json"));
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let started = std::time::Instant::now();
            let answer = match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    Some((status, r.text().await.unwrap_or_default()))
                }
                Err(_) => None,
            };
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let status = answer.as_ref().map(|a| a.0).unwrap_or(0);
            self.world().record_hook_call(&d, &headers, answer, ms);
            out.push((d.event, status));
        }
        out
    }

    /// A user opens a new issue in the UI from the project's issue template `template` (the
    /// file name without `.md`): the description starts as that file's text on the default
    /// branch, `fill` edits it as the user does, and GitLab runs the quick actions on create:
    /// `/label` adds only labels that exist in the project or its groups, `/confidential`
    /// makes the issue confidential, and both lines leave the description. Queues the Issue
    /// Hook (or Confidential Issue Hook). `Err` when the template is not in the repository.
    pub fn issue_from_template(
        &self,
        project_id: u64,
        author_id: u64,
        title: &str,
        template: &str,
        fill: impl FnOnce(&str) -> String,
    ) -> Result<u64, String> {
        let mut w = self.world();
        let branch = w.repo(project_id).default_branch.clone();
        let path = format!(".gitlab/issue_templates/{template}.md");
        let text = w
            .repo(project_id)
            .resolve(&branch)
            .and_then(|c| c.tree.get(&path))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| {
                format!("GitLab offers no template {template:?}: {path} is not on branch {branch}")
            })?;
        let (description, names, confidential) = quick_actions(&fill(&text));
        let mut labels: Vec<String> = names
            .into_iter()
            .filter(|n| w.label_exists_for(project_id, n))
            .collect();
        normalize_labels(&mut labels);
        let now = w.clock.tick();
        let id = w.alloc_issue_id();
        let key = (project_id, w.next_issue_iid(project_id));
        let mut issue = Issue::new(id, key, author_id, now);
        issue.title = title.to_owned();
        issue.description = Some(description);
        issue.confidential = confidential;
        issue.labels = labels.clone();
        w.issues.insert(key, issue);
        w.record_label_changes(key, &[], &labels, author_id, now);
        w.queue_issue_hook(key, "open");
        Ok(key.1)
    }

    /// [`FakeGitLab::add_mr`], then the Merge Request Hook (`action: open`) GitLab sends.
    pub fn open_mr(&self, spec: MrSpec) {
        let key = (spec.project_id, spec.iid);
        self.add_mr(spec);
        self.world().queue_mr_hook(key, "open");
    }
}

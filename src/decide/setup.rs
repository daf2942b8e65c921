//! `cocreate setup`: everything the README's flows need in GitLab. Pure planning: existing state
//! in, the missing writes out, so a second run plans nothing.
//!
//! - the MR labels in the watched groups and projects;
//! - the engagement labels in the tracking project (including every label an issue template's
//!   `/label` quick action names: GitLab ignores a quick action whose label does not exist);
//! - the webhook on the watched scope, on the tracking project and, when policies are read from
//!   a GitLab project, push events of that project's policy branch;
//! - the account teams' issue templates in the tracking project's `.gitlab/issue_templates/`,
//!   in one commit of the files missing or different.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::funnel::{Pathway, Stage};
use super::Action;
use crate::domain::path_id;
use crate::policy::{Policies, Watch};

/// The label the "Co-Create pathway decision" issue template puts on its issue.
pub const PATHWAY_DECISION: &str = "Co-Create pathway decision";

/// Where GitLab looks for a project's issue templates.
pub const TEMPLATE_DIR: &str = ".gitlab/issue_templates";

/// A label the tool wants to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelSpec {
    pub name: String,
    pub color: String,
    pub description: String,
}

/// A label as GitLab lists it (project lists include the ancestor groups' labels).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ExistingLabel {
    pub id: u64,
    pub name: String,
    pub color: String,
    #[serde(default)]
    pub description: Option<String>,
    /// In a project's list: `false` for a label inherited from a group.
    #[serde(default)]
    pub is_project_label: Option<bool>,
}

/// A webhook as GitLab has it (its secret token cannot be read back).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
pub struct ExistingHook {
    pub id: u64,
    pub url: String,
    #[serde(default)]
    pub push_events: bool,
    #[serde(default)]
    pub push_events_branch_filter: Option<String>,
    #[serde(default)]
    pub merge_requests_events: bool,
    #[serde(default)]
    pub issues_events: bool,
    #[serde(default)]
    pub confidential_issues_events: bool,
    #[serde(default)]
    pub note_events: bool,
    #[serde(default)]
    pub confidential_note_events: bool,
    /// `executable`, `temporarily_disabled` or `disabled` (GitLab stopped calling it after
    /// failed deliveries); absent before GitLab 15.1.
    #[serde(default)]
    pub alert_status: Option<String>,
}

/// An event a webhook can subscribe to (the ones the tool uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    MergeRequests,
    Issues,
    ConfidentialIssues,
    Notes,
    ConfidentialNotes,
    Push,
}

impl HookEvent {
    pub const ALL: [HookEvent; 6] = [
        HookEvent::MergeRequests,
        HookEvent::Issues,
        HookEvent::ConfidentialIssues,
        HookEvent::Notes,
        HookEvent::ConfidentialNotes,
        HookEvent::Push,
    ];

    /// The hook API's parameter (and field) name.
    pub fn param(self) -> &'static str {
        match self {
            HookEvent::MergeRequests => "merge_requests_events",
            HookEvent::Issues => "issues_events",
            HookEvent::ConfidentialIssues => "confidential_issues_events",
            HookEvent::Notes => "note_events",
            HookEvent::ConfidentialNotes => "confidential_note_events",
            HookEvent::Push => "push_events",
        }
    }

    fn is_on(self, h: &ExistingHook) -> bool {
        match self {
            HookEvent::MergeRequests => h.merge_requests_events,
            HookEvent::Issues => h.issues_events,
            HookEvent::ConfidentialIssues => h.confidential_issues_events,
            HookEvent::Notes => h.note_events,
            HookEvent::ConfidentialNotes => h.confidential_note_events,
            HookEvent::Push => h.push_events,
        }
    }
}

/// The events of issues and their comments (confidential ones included).
const ISSUE_EVENTS: [HookEvent; 4] = [
    HookEvent::Issues,
    HookEvent::ConfidentialIssues,
    HookEvent::Notes,
    HookEvent::ConfidentialNotes,
];

/// The webhook one owner should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookSpec {
    /// `groups/<id or encoded path>` or `projects/<id or encoded path>`.
    pub owner: String,
    /// Every event the tool wants on; the other events of [`HookEvent::ALL`] are turned off.
    pub events: BTreeSet<HookEvent>,
    /// With [`HookEvent::Push`]: the only branch whose pushes are sent.
    pub push_branch: Option<String>,
}

/// A project whose repository holds the policies (`serve --policies gitlab:<project>@<ref>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource<'a> {
    pub project: &'a str,
    pub reference: &'a str,
}

/// A secret carried by an action: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// An issue template: its file name under [`TEMPLATE_DIR`] and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueTemplate {
    pub name: String,
    pub content: String,
}

impl IssueTemplate {
    pub fn path(&self) -> String {
        format!("{TEMPLATE_DIR}/{}", self.name)
    }
}

/// A file as the repository has it at the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingFile {
    pub content: String,
    /// The last commit that changed it (sent back so GitLab refuses a concurrent change).
    pub last_commit_id: String,
}

/// Create or update, in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    Create,
    Update,
}

/// One file of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub action: FileAction,
    pub path: String,
    pub content: String,
    /// For updates: the commit the file was read at.
    pub last_commit_id: Option<String>,
}

fn spec(name: &str, color: &str, description: &str) -> LabelSpec {
    LabelSpec {
        name: name.to_owned(),
        color: color.to_owned(),
        description: description.to_owned(),
    }
}

/// The labels the tool puts on merge requests (the watched groups and projects).
pub fn mr_labels(policies: &Policies) -> Vec<LabelSpec> {
    let l = &policies.routing.labels;
    let mut out = vec![
        spec(
            &l.cocreate,
            "#6699cc",
            "Merge request from a Co-Create organization (set by cocreate)",
        ),
        spec(
            &l.community,
            "#a8d695",
            "Contribution from outside the company (set by cocreate)",
        ),
        spec(
            &l.cca_signed,
            "#009966",
            "A Corporate Contributor Agreement is on file (set by cocreate)",
        ),
        spec(
            &l.cca_missing,
            "#dc143c",
            "No Corporate Contributor Agreement on file: not mergeable yet (set by cocreate)",
        ),
        spec(
            &l.cca_expired,
            "#ed9121",
            "The Corporate Contributor Agreement expired (set by cocreate)",
        ),
        spec(
            &l.overdue,
            "#cc338b",
            "The Contributor Success review is overdue (set by cocreate nudge)",
        ),
    ];
    out.extend(org_labels(policies));
    out
}

fn org_labels(policies: &Policies) -> Vec<LabelSpec> {
    let l = &policies.routing.labels;
    policies
        .organizations
        .all()
        .iter()
        .map(|o| {
            spec(
                &l.org(&o.slug),
                "#8fbc8f",
                &format!("Co-Create organization `{}` (set by cocreate)", o.slug),
            )
        })
        .collect()
}

/// The labels of engagement issues (the tracking project), with every label the issue
/// templates' quick actions name; a template label the tool does not know gets a plain
/// description.
pub fn tracking_labels(policies: &Policies, templates: &[IssueTemplate]) -> Vec<LabelSpec> {
    let l = &policies.routing.labels;
    let mut out = vec![
        spec(
            &l.intake,
            "#d9f0ff",
            "Engagement request from an account team, opened from the issue template (read by cocreate)",
        ),
        spec(
            &l.engagement,
            "#1f78d1",
            "Tracking issue of one Co-Create organization (set by cocreate)",
        ),
        spec(
            PATHWAY_DECISION,
            "#7f8c8d",
            "Triage outcome recorded with the product managers, from the issue template (cocreate)",
        ),
        spec(
            &l.meeting_notes,
            "#a8d695",
            "Alignment-meeting notes, from the issue template (linked to the engagement by cocreate)",
        ),
        spec(
            &l.onboarding,
            "#a8d695",
            "Onboarding session with the customer's engineers, from the issue template (linked by cocreate)",
        ),
        spec(
            &l.onsite,
            "#e6a700",
            "The engagement plans an on-site week (major pathway only; checked by cocreate)",
        ),
        spec(
            &l.case_study,
            "#f1c40f",
            "The engagement reached the recognition threshold: a case-study candidate (set by cocreate)",
        ),
        spec(
            &l.spiff,
            "#16a085",
            "A SPIFF target account (set by cocreate score --open-prospects)",
        ),
    ];
    out.extend(Stage::ALL.map(Stage::name).iter().map(|s| {
        spec(
            &l.stage(s),
            "#5cb85c",
            &format!("Engagement funnel stage `{s}`: one at a time (kept by cocreate)"),
        )
    }));
    out.extend(Pathway::ALL.map(Pathway::name).iter().map(|p| {
        spec(
            &l.pathway(p),
            "#8e44ad",
            &format!("Engagement pathway `{p}`: at most one (kept by cocreate)"),
        )
    }));
    out.extend(org_labels(policies));
    for t in templates {
        for name in quick_action_labels(&t.content) {
            if !out.iter().any(|s| s.name == name) {
                out.push(spec(
                    &name,
                    "#6699cc",
                    &format!(
                        "Set by the issue template `{}` (created by cocreate setup)",
                        t.name
                    ),
                ));
            }
        }
    }
    out
}

/// The label names of a text's `/label` (or `/labels`) quick actions: `~"two words"`,
/// `~word` or a bare `word`, several per line.
pub fn quick_action_labels(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let rest = match line
            .strip_prefix("/labels")
            .or_else(|| line.strip_prefix("/label"))
        {
            Some(r) if r.is_empty() || r.starts_with(char::is_whitespace) => r,
            _ => continue,
        };
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let token = rest.strip_prefix('~').unwrap_or(rest);
            let (name, tail) = match token.strip_prefix('"') {
                Some(quoted) => match quoted.find('"') {
                    Some(end) => (&quoted[..end], &quoted[end + 1..]),
                    None => (quoted, ""),
                },
                None => match token.find(char::is_whitespace) {
                    Some(end) => (&token[..end], &token[end..]),
                    None => (token, ""),
                },
            };
            if !name.is_empty() && !out.iter().any(|n| n == name) {
                out.push(name.to_owned());
            }
            rest = tail.trim_start();
        }
    }
    out
}

/// Every label of every owner, merged when an owner is both watched and the tracking project.
pub fn wanted_labels(
    policies: &Policies,
    templates: &[IssueTemplate],
) -> Vec<(String, Vec<LabelSpec>)> {
    let watch = &policies.routing.watch;
    let mut out: Vec<(String, Vec<LabelSpec>)> = Vec::new();
    let mut add = |owner: String, specs: Vec<LabelSpec>| {
        let at = match out.iter().position(|(o, _)| o.eq_ignore_ascii_case(&owner)) {
            Some(i) => i,
            None => {
                out.push((owner, Vec::new()));
                out.len() - 1
            }
        };
        for s in specs {
            if !out[at].1.iter().any(|have| have.name == s.name) {
                out[at].1.push(s);
            }
        }
    };
    let mr = mr_labels(policies);
    for g in &watch.groups {
        add(format!("groups/{}", path_id(g)), mr.clone());
    }
    for p in &watch.projects {
        add(format!("projects/{}", path_id(p)), mr.clone());
    }
    add(
        format!("projects/{}", path_id(&policies.routing.tracking.project)),
        tracking_labels(policies, templates),
    );
    out
}

/// Creates missing labels and repairs color or description drift of the owner's own labels
/// (a label inherited from a group counts as present and is left to the group); never deletes.
pub fn plan_labels(owner: &str, existing: &[ExistingLabel], wanted: &[LabelSpec]) -> Vec<Action> {
    wanted
        .iter()
        .filter_map(|w| match existing.iter().find(|e| e.name == w.name) {
            None => Some(Action::CreateLabel {
                owner: owner.to_owned(),
                name: w.name.clone(),
                color: w.color.clone(),
                description: w.description.clone(),
            }),
            Some(e) if owner.starts_with("projects/") && e.is_project_label == Some(false) => None,
            Some(e)
                if !e.color.eq_ignore_ascii_case(&w.color)
                    || e.description.as_deref().unwrap_or("") != w.description =>
            {
                Some(Action::UpdateLabel {
                    owner: owner.to_owned(),
                    id: e.id,
                    name: w.name.clone(),
                    color: w.color.clone(),
                    description: w.description.clone(),
                })
            }
            Some(_) => None,
        })
        .collect()
}

/// The webhooks the tool needs: MR, issue and comment events on the watched groups and
/// projects; issue and comment events on the tracking project unless a watched group's hook
/// already covers it; push events of the policy branch on the policy project.
pub fn wanted_hooks(
    watch: &Watch,
    tracking_project: &str,
    policy: Option<&PolicySource<'_>>,
) -> Vec<HookSpec> {
    let mut out: Vec<(String, HookSpec)> = Vec::new();
    let mut add = |path: &str, kind: &str, events: &[HookEvent], branch: Option<&str>| {
        let key = format!("{kind}/{}", path.to_ascii_lowercase());
        let at = match out.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                out.push((
                    key,
                    HookSpec {
                        owner: format!("{kind}/{}", path_id(path)),
                        events: BTreeSet::new(),
                        push_branch: None,
                    },
                ));
                out.len() - 1
            }
        };
        out[at].1.events.extend(events.iter().copied());
        if let Some(b) = branch {
            out[at].1.push_branch = Some(b.to_owned());
        }
    };
    let mut scope = vec![HookEvent::MergeRequests];
    scope.extend(ISSUE_EVENTS);
    for g in &watch.groups {
        add(g, "groups", &scope, None);
    }
    for p in &watch.projects {
        add(p, "projects", &scope, None);
    }
    if !under_a_group(watch, tracking_project) {
        add(tracking_project, "projects", &ISSUE_EVENTS, None);
    }
    if let Some(p) = policy {
        add(p.project, "projects", &[HookEvent::Push], Some(p.reference));
    }
    out.into_iter().map(|(_, s)| s).collect()
}

/// A group hook fires for every project below the group.
fn under_a_group(watch: &Watch, project: &str) -> bool {
    let project = project.to_ascii_lowercase();
    watch.groups.iter().any(|g| {
        let g = g.trim_end_matches('/').to_ascii_lowercase();
        !g.chars().all(|c| c.is_ascii_digit()) && project.starts_with(&format!("{g}/"))
    })
}

/// Registers the webhook (with the secret), or sets the events of the existing one (found by
/// URL) when they differ from the wanted ones.
pub fn plan_hook(
    wanted: &HookSpec,
    existing: &[ExistingHook],
    url: &str,
    token: Option<&Secret>,
) -> Vec<Action> {
    let events = hook_event_params(wanted);
    match existing.iter().find(|h| h.url == url) {
        None => vec![Action::CreateHook {
            owner: wanted.owner.clone(),
            url: url.to_owned(),
            token: token.cloned(),
            events,
            push_branch: wanted.push_branch.clone(),
        }],
        Some(h) => {
            let events_differ = HookEvent::ALL
                .iter()
                .any(|e| e.is_on(h) != wanted.events.contains(e));
            let filter_differs = wanted.events.contains(&HookEvent::Push)
                && h.push_events_branch_filter.as_deref().unwrap_or("")
                    != wanted.push_branch.as_deref().unwrap_or("");
            let mut out = Vec::new();
            if events_differ || filter_differs {
                out.push(Action::UpdateHook {
                    owner: wanted.owner.clone(),
                    id: h.id,
                    url: url.to_owned(),
                    events,
                    push_branch: wanted.push_branch.clone(),
                });
            }
            // GitLab re-enables a hook it disabled when a test delivery is answered 2xx.
            let disabled = !matches!(h.alert_status.as_deref(), None | Some("executable" | ""));
            if let (true, Some(trigger)) = (disabled, test_trigger(wanted)) {
                out.push(Action::TestHook {
                    owner: wanted.owner.clone(),
                    id: h.id,
                    url: url.to_owned(),
                    trigger: trigger.param().to_owned(),
                });
            }
            out
        }
    }
}

/// The event a re-enabling test delivery samples: one the hook sends (GitLab builds the sample
/// from the project's first MR or issue, or its last push).
fn test_trigger(wanted: &HookSpec) -> Option<HookEvent> {
    [HookEvent::MergeRequests, HookEvent::Issues, HookEvent::Push]
        .into_iter()
        .find(|e| wanted.events.contains(e))
}

/// "merge_requests_events, …, push_events (branch main)" for plans and logs.
pub fn describe_events(events: &BTreeMap<String, bool>, push_branch: Option<&str>) -> String {
    let on: Vec<String> = events
        .iter()
        .filter(|(_, on)| **on)
        .map(|(e, _)| match (e.as_str(), push_branch) {
            ("push_events", Some(b)) => format!("push_events of branch {b}"),
            _ => e.clone(),
        })
        .collect();
    if on.is_empty() {
        "no events".to_owned()
    } else {
        on.join(", ")
    }
}

/// Every event of [`HookEvent::ALL`], on or off.
fn hook_event_params(wanted: &HookSpec) -> BTreeMap<String, bool> {
    HookEvent::ALL
        .iter()
        .map(|e| (e.param().to_owned(), wanted.events.contains(e)))
        .collect()
}

/// One commit of the templates that are missing or different at the branch; nothing when all
/// are in place. `existing` holds the files found, by path.
pub fn plan_templates(
    project: &str,
    branch: &str,
    templates: &[IssueTemplate],
    existing: &BTreeMap<String, ExistingFile>,
) -> Option<Action> {
    let files: Vec<FileChange> = templates
        .iter()
        .filter_map(|t| {
            let path = t.path();
            match existing.get(&path) {
                None => Some(FileChange {
                    action: FileAction::Create,
                    path,
                    content: t.content.clone(),
                    last_commit_id: None,
                }),
                Some(f) if f.content != t.content => Some(FileChange {
                    action: FileAction::Update,
                    path,
                    content: t.content.clone(),
                    last_commit_id: Some(f.last_commit_id.clone()),
                }),
                Some(_) => None,
            }
        })
        .collect();
    if files.is_empty() {
        return None;
    }
    Some(Action::CommitFiles {
        project: project.to_owned(),
        branch: branch.to_owned(),
        message: format!(
            "Co-Create issue templates for account teams\n\nWritten by `cocreate setup`: {}.",
            files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        files,
    })
}

/// What a write (or the read before it) needs, for the error a failed step shows: "setup needs
/// the Maintainer role in project X to register webhooks".
pub fn role_needed(action: &Action) -> Option<String> {
    Some(match action {
        Action::CreateLabel { owner, .. } | Action::UpdateLabel { owner, .. } => labels_role(owner),
        Action::CreateHook { owner, .. }
        | Action::UpdateHook { owner, .. }
        | Action::TestHook { owner, .. } => hooks_role(owner),
        Action::CommitFiles {
            project, branch, ..
        } => commit_role(project, branch),
        _ => return None,
    })
}

fn place(owner: &str) -> String {
    let (kind, id) = owner.split_once('/').unwrap_or(("projects", owner));
    let id: String = url::form_urlencoded::parse(format!("x={id}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .next()
        .unwrap_or_else(|| id.to_owned());
    match kind {
        "groups" => format!("group {id}"),
        _ => format!("project {id}"),
    }
}

/// The role to read and write labels.
pub fn labels_role(owner: &str) -> String {
    format!("the Reporter role in {} to manage labels", place(owner))
}

/// The role to list and register webhooks.
pub fn hooks_role(owner: &str) -> String {
    if owner.starts_with("groups/") {
        format!(
            "the Owner role in {} to register webhooks (group webhooks also need GitLab Premium; on Free, list the projects under `watch.projects` instead)",
            place(owner)
        )
    } else {
        format!(
            "the Maintainer role in {} to register webhooks",
            place(owner)
        )
    }
}

/// The role to read the repository.
pub fn read_repository_role(project: &str) -> String {
    format!(
        "the Reporter role in {} to read its repository",
        place(&format!("projects/{project}"))
    )
}

/// The role to commit to the default branch.
pub fn commit_role(project: &str, branch: &str) -> String {
    format!(
        "the Developer role in {} and the right to push to `{branch}` (Maintainer while the branch is protected, GitLab's default) to commit the issue templates",
        place(&format!("projects/{project}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(id: u64, name: &str, color: &str, description: &str) -> ExistingLabel {
        ExistingLabel {
            id,
            name: name.into(),
            color: color.into(),
            description: Some(description.into()),
            is_project_label: None,
        }
    }

    #[test]
    fn labels_are_created_repaired_and_left_alone() {
        let wanted = vec![
            spec("A", "#111111", "a"),
            spec("B", "#222222", "b"),
            spec("C", "#333333", "c"),
            spec("D", "#444444", "d"),
        ];
        let existing = vec![
            label(1, "B", "#222222", "b"),
            label(2, "C", "#FF0000", "c"),
            label(3, "people's", "#000000", ""),
            ExistingLabel {
                is_project_label: Some(false),
                ..label(4, "D", "#000000", "from the group")
            },
        ];
        // (owner, expected plan)
        let cases: [(&str, Vec<&str>); 2] = [
            // A group: D is its own label and drifted.
            ("groups/vendor", vec!["create A", "update 2", "update 4"]),
            // A project: D comes from a group and is the group's business.
            ("projects/9", vec!["create A", "update 2"]),
        ];
        for (owner, want) in cases {
            let plan: Vec<String> = plan_labels(owner, &existing, &wanted)
                .iter()
                .map(|a| match a {
                    Action::CreateLabel { name, .. } => format!("create {name}"),
                    Action::UpdateLabel { id, .. } => format!("update {id}"),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(plan, want, "{owner}");
        }
    }

    fn example() -> Policies {
        Policies::embedded().expect("embedded policies")
    }

    fn embedded_templates() -> Vec<IssueTemplate> {
        crate::messages::ISSUE_TEMPLATES
            .iter()
            .map(|(n, c)| IssueTemplate {
                name: n.to_string(),
                content: c.to_string(),
            })
            .collect()
    }

    #[test]
    fn every_label_a_shipped_template_sets_is_a_known_tracking_label() {
        let known = tracking_labels(&example(), &[]);
        let mut seen = 0;
        for t in embedded_templates() {
            for name in quick_action_labels(&t.content) {
                seen += 1;
                let s = known.iter().find(|s| s.name == name).unwrap_or_else(|| {
                    panic!("{}: /label ~{name:?} is not created by setup", t.name)
                });
                assert!(!s.description.contains("issue template `"), "{name}");
            }
        }
        assert!(seen >= 2, "the templates set labels");
    }

    #[test]
    fn tracking_labels_cover_every_label_the_engagement_rules_write() {
        let p = example();
        let l = &p.routing.labels;
        let names: Vec<String> = tracking_labels(&p, &[])
            .into_iter()
            .map(|s| s.name)
            .collect();
        let mut want = vec![
            l.intake.clone(),
            l.engagement.clone(),
            l.onsite.clone(),
            l.meeting_notes.clone(),
            l.onboarding.clone(),
            PATHWAY_DECISION.to_owned(),
            "Co-Create stage::contacted".into(),
            "Co-Create stage::sustaining".into(),
            "Co-Create pathway::not-aligned".into(),
            "Co-Create pathway::major".into(),
        ];
        want.extend(p.organizations.all().iter().map(|o| l.org(&o.slug)));
        for w in want {
            assert!(names.contains(&w), "{w} missing from {names:?}");
        }
        let mr: Vec<String> = mr_labels(&p).into_iter().map(|s| s.name).collect();
        assert!(
            mr.contains(&"Co-Create review::overdue".to_string()),
            "{mr:?}"
        );
        assert!(mr.contains(&"CCA::missing".to_string()));
    }

    #[test]
    fn a_custom_template_label_is_created_with_a_plain_description() {
        let t = IssueTemplate {
            name: "Custom.md".into(),
            content: "text\n/label ~\"Team review\" ~urgent\n".into(),
        };
        let labels = tracking_labels(&example(), &[t]);
        for name in ["Team review", "urgent"] {
            let s = labels.iter().find(|s| s.name == name).expect(name);
            assert!(s.description.contains("`Custom.md`"), "{s:?}");
        }
    }

    #[test]
    fn quick_action_labels_are_parsed_like_gitlab() {
        let cases: [(&str, &[&str]); 7] = [
            ("/label ~\"Co-Create intake\"", &["Co-Create intake"]),
            (
                "/label ~bug ~\"two words\" plain",
                &["bug", "two words", "plain"],
            ),
            ("  /labels ~a\n/label ~b", &["a", "b"]),
            ("/label ~\"scoped::x\"\n/confidential", &["scoped::x"]),
            ("text /label ~x (not at the start of a line)", &[]),
            ("/labelling ~x", &[]),
            ("/label ~\"unterminated", &["unterminated"]),
        ];
        for (text, want) in cases {
            assert_eq!(quick_action_labels(text), want, "{text:?}");
        }
    }

    #[test]
    fn labels_go_to_the_watched_scope_and_the_tracking_project() {
        let p = example();
        let owners: Vec<(String, usize)> = wanted_labels(&p, &embedded_templates())
            .into_iter()
            .map(|(o, l)| (o, l.len()))
            .collect();
        let mr = mr_labels(&p).len();
        let tracking = tracking_labels(&p, &[]).len();
        assert_eq!(
            owners,
            vec![
                ("groups/vendor".to_string(), mr),
                ("projects/cocreate%2Fengagements".to_string(), tracking),
            ]
        );
    }

    fn watch(groups: &[&str], projects: &[&str]) -> Watch {
        Watch {
            groups: groups.iter().map(|s| s.to_string()).collect(),
            projects: projects.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn hook_table(specs: &[HookSpec]) -> Vec<String> {
        specs
            .iter()
            .map(|s| {
                let events: Vec<&str> = s.events.iter().map(|e| e.param()).collect();
                format!(
                    "{} {}{}",
                    s.owner,
                    events.join(","),
                    s.push_branch
                        .as_deref()
                        .map(|b| format!(" @{b}"))
                        .unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn hooks_cover_the_scope_the_tracking_project_and_the_policy_branch() {
        const SCOPE: &str =
            "merge_requests_events,issues_events,confidential_issues_events,note_events,confidential_note_events";
        const ISSUES: &str =
            "issues_events,confidential_issues_events,note_events,confidential_note_events";
        let policy = PolicySource {
            project: "cocreate/policies",
            reference: "main",
        };
        let tracking_as_policy = PolicySource {
            project: "cocreate/engagements",
            reference: "prod",
        };
        // (watch, tracking project, policy source, expected hooks)
        let cases: Vec<(Watch, &str, Option<&PolicySource<'_>>, Vec<String>)> = vec![
            (
                watch(&["vendor"], &[]),
                "cocreate/engagements",
                None,
                vec![
                    format!("groups/vendor {SCOPE}"),
                    format!("projects/cocreate%2Fengagements {ISSUES}"),
                ],
            ),
            // A watched group's hook already delivers the tracking project's events.
            (
                watch(&["cocreate"], &[]),
                "cocreate/engagements",
                None,
                vec![format!("groups/cocreate {SCOPE}")],
            ),
            // The tracking project is watched too: one hook with everything.
            (
                watch(&[], &["Cocreate/Engagements"]),
                "cocreate/engagements",
                None,
                vec![format!("projects/Cocreate%2FEngagements {SCOPE}")],
            ),
            (
                watch(&["vendor"], &[]),
                "cocreate/engagements",
                Some(&policy),
                vec![
                    format!("groups/vendor {SCOPE}"),
                    format!("projects/cocreate%2Fengagements {ISSUES}"),
                    "projects/cocreate%2Fpolicies push_events @main".to_string(),
                ],
            ),
            // Policies in the tracking project: its hook also gets the pushes.
            (
                watch(&["vendor"], &[]),
                "cocreate/engagements",
                Some(&tracking_as_policy),
                vec![
                    format!("groups/vendor {SCOPE}"),
                    format!("projects/cocreate%2Fengagements {ISSUES},push_events @prod"),
                ],
            ),
            // The group hook has no push events: the policy project gets its own hook.
            (
                watch(&["cocreate"], &[]),
                "cocreate/engagements",
                Some(&policy),
                vec![
                    format!("groups/cocreate {SCOPE}"),
                    "projects/cocreate%2Fpolicies push_events @main".to_string(),
                ],
            ),
        ];
        for (w, tracking, policy, want) in cases {
            assert_eq!(
                hook_table(&wanted_hooks(&w, tracking, policy)),
                want,
                "{w:?} {tracking} {policy:?}"
            );
        }
    }

    fn ours() -> ExistingHook {
        ExistingHook {
            id: 7,
            url: "https://bot.example.com/webhook".into(),
            push_events: false,
            push_events_branch_filter: None,
            merge_requests_events: true,
            issues_events: true,
            confidential_issues_events: true,
            note_events: true,
            confidential_note_events: true,
            alert_status: Some("executable".into()),
        }
    }

    #[test]
    fn a_hook_gitlab_disabled_is_re_enabled_by_a_test_delivery_of_an_event_it_sends() {
        let w = watch(&[], &["2"]);
        let hooks = wanted_hooks(&w, "cocreate/engagements", None);
        let (scope, tracking) = (&hooks[0], &hooks[1]);
        let tracking_hook = ExistingHook {
            merge_requests_events: false,
            ..ours()
        };
        let with = |h: &ExistingHook, status: Option<&str>| ExistingHook {
            alert_status: status.map(str::to_owned),
            ..h.clone()
        };
        // (wanted, existing, the actions planned: kinds and the test's trigger)
        let cases: [(&HookSpec, ExistingHook, &[&str]); 7] = [
            (scope, with(&ours(), Some("executable")), &[]),
            (scope, with(&ours(), None), &[]),
            (
                scope,
                with(&ours(), Some("temporarily_disabled")),
                &["test merge_requests_events"],
            ),
            (
                scope,
                with(&ours(), Some("disabled")),
                &["test merge_requests_events"],
            ),
            (
                scope,
                ExistingHook {
                    note_events: false,
                    ..with(&ours(), Some("disabled"))
                },
                &["update", "test merge_requests_events"],
            ),
            (
                tracking,
                with(&tracking_hook, Some("disabled")),
                &["test issues_events"],
            ),
            (tracking, with(&tracking_hook, Some("executable")), &[]),
        ];
        for (wanted, existing, want) in cases {
            let plan = plan_hook(wanted, std::slice::from_ref(&existing), &existing.url, None);
            let got: Vec<String> = plan
                .iter()
                .map(|a| match a {
                    Action::UpdateHook { .. } => "update".to_owned(),
                    Action::TestHook { id: 7, trigger, .. } => format!("test {trigger}"),
                    other => format!("{other:?}"),
                })
                .collect();
            assert_eq!(got, want, "{wanted:?} {existing:?}");
        }
    }

    #[test]
    fn hook_is_created_once_and_repaired() {
        let secret = Secret("s3cret".into());
        let scope = wanted_hooks(&watch(&[], &["2"]), "cocreate/engagements", None).remove(0);
        let plan = plan_hook(
            &scope,
            &[],
            "https://bot.example.com/webhook",
            Some(&secret),
        );
        assert!(
            matches!(plan.as_slice(), [Action::CreateHook { events, push_branch: None, .. }]
                if events["merge_requests_events"] && !events["push_events"]),
            "{plan:?}"
        );
        assert!(!format!("{plan:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&plan)
            .expect("json")
            .contains("s3cret"));

        let policy_hook = HookSpec {
            owner: "projects/2".into(),
            events: scope
                .events
                .iter()
                .copied()
                .chain([HookEvent::Push])
                .collect(),
            push_branch: Some("main".into()),
        };
        let pushing = ExistingHook {
            push_events: true,
            push_events_branch_filter: Some("main".into()),
            ..ours()
        };
        // (wanted, existing, planned an update?)
        let cases = [
            (&scope, ours(), false),
            (
                &scope,
                ExistingHook {
                    note_events: false,
                    ..ours()
                },
                true,
            ),
            // GitLab turns push events on by default: ours are off unless wanted.
            (
                &scope,
                ExistingHook {
                    push_events: true,
                    ..ours()
                },
                true,
            ),
            (&policy_hook, pushing.clone(), false),
            (&policy_hook, ours(), true),
            (
                &policy_hook,
                ExistingHook {
                    push_events_branch_filter: Some("develop".into()),
                    ..pushing.clone()
                },
                true,
            ),
            (
                &policy_hook,
                ExistingHook {
                    push_events_branch_filter: None,
                    ..pushing
                },
                true,
            ),
        ];
        for (wanted, existing, update) in cases {
            let plan = plan_hook(
                wanted,
                std::slice::from_ref(&existing),
                &existing.url,
                Some(&secret),
            );
            match (update, plan.as_slice()) {
                (false, []) => {}
                (
                    true,
                    [Action::UpdateHook {
                        id: 7,
                        events,
                        push_branch,
                        ..
                    }],
                ) => {
                    assert_eq!(events.len(), HookEvent::ALL.len());
                    assert_eq!(push_branch, &wanted.push_branch);
                }
                _ => panic!("{existing:?} -> {plan:?}"),
            }
        }
        // Another tool's hook on the same owner is not ours.
        let other = ExistingHook {
            url: "https://ci.example.com/hook".into(),
            ..ours()
        };
        assert!(matches!(
            plan_hook(&scope, &[other], "https://bot.example.com/webhook", None).as_slice(),
            [Action::CreateHook { token: None, .. }]
        ));
    }

    /// (action, path, last commit) of one file of the planned commit.
    type Planned<'a> = (FileAction, &'a str, Option<&'a str>);

    #[test]
    fn templates_are_committed_once_only_when_missing_or_different() {
        let templates = vec![
            IssueTemplate {
                name: "A.md".into(),
                content: "a\n".into(),
            },
            IssueTemplate {
                name: "B.md".into(),
                content: "b\n".into(),
            },
        ];
        let file = |content: &str| ExistingFile {
            content: content.into(),
            last_commit_id: "c0ffee".into(),
        };
        let a = ".gitlab/issue_templates/A.md".to_string();
        let b = ".gitlab/issue_templates/B.md".to_string();
        // (existing files, expected (action, path, last commit) per file of the one commit)
        let cases: Vec<(BTreeMap<String, ExistingFile>, Vec<Planned<'_>>)> = vec![
            (
                BTreeMap::new(),
                vec![
                    (FileAction::Create, &a, None),
                    (FileAction::Create, &b, None),
                ],
            ),
            (
                BTreeMap::from([(a.clone(), file("a\n")), (b.clone(), file("old b\n"))]),
                vec![(FileAction::Update, &b, Some("c0ffee"))],
            ),
            (
                BTreeMap::from([(b.clone(), file("b\n"))]),
                vec![(FileAction::Create, &a, None)],
            ),
            (
                BTreeMap::from([(a.clone(), file("a\n")), (b.clone(), file("b\n"))]),
                vec![],
            ),
        ];
        for (existing, want) in cases {
            let plan = plan_templates("cocreate/engagements", "main", &templates, &existing);
            let got: Vec<Planned<'_>> = match &plan {
                None => vec![],
                Some(Action::CommitFiles { files, branch, .. }) => {
                    assert_eq!(branch, "main");
                    files
                        .iter()
                        .map(|f| (f.action, f.path.as_str(), f.last_commit_id.as_deref()))
                        .collect()
                }
                Some(other) => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{existing:?}");
        }
    }

    #[test]
    fn each_write_names_the_role_it_needs() {
        let hook = |owner: &str| Action::CreateHook {
            owner: owner.into(),
            url: "u".into(),
            token: None,
            events: BTreeMap::new(),
            push_branch: None,
        };
        let cases = [
            (
                hook("projects/cocreate%2Fengagements"),
                "the Maintainer role in project cocreate/engagements to register webhooks",
            ),
            (hook("groups/vendor"), "the Owner role in group vendor"),
            (
                Action::CreateLabel {
                    owner: "groups/vendor".into(),
                    name: "x".into(),
                    color: "#000000".into(),
                    description: String::new(),
                },
                "the Reporter role in group vendor to manage labels",
            ),
            (
                Action::CommitFiles {
                    project: "cocreate/engagements".into(),
                    branch: "main".into(),
                    message: String::new(),
                    files: vec![],
                },
                "the Developer role in project cocreate/engagements and the right to push to `main`",
            ),
        ];
        for (action, want) in cases {
            let got = role_needed(&action).expect("a role");
            assert!(got.contains(want), "{got}");
        }
    }
}

//! `cocreate setup` through the real binary against the fake GitLab, from an empty GitLab (no
//! labels, no webhooks, no issue templates): afterwards the account team's flow and the MR
//! flow work through webhooks alone (the fake calls what setup registered); a second run writes
//! nothing; a dry run lists each write and makes none; a refused step names the role it needs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::process::Command;

use support::fake_gitlab::{FakeGitLab, Fault, MrSpec};
use support::harness::*;

const WEBHOOK_URL: &str = "https://cocreate.example.com/webhook";
const TEMPLATE_DIR: &str = ".gitlab/issue_templates";

fn setup(gitlab: &FakeGitLab, url: &str, extra: &[&str]) -> (bool, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .arg("setup")
        .args(extra)
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", format!("{SECRET},older-secret"))
        .env("COCREATE_WEBHOOK_URL", url)
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env_remove("COCREATE_POLICY_PROJECT")
        .env("RUST_LOG", "debug")
        .output()
        .expect("run cocreate setup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn shipped_templates() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/issue_templates");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("templates/issue_templates")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).expect("template"),
            )
        })
        .collect();
    out.sort();
    out
}

fn label_names(gitlab: &FakeGitLab, owner: &str) -> Vec<String> {
    gitlab
        .labels_of(owner)
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// The account team fills in the engagement request template as the README says.
fn fill_intake(template: &str) -> String {
    template
        .lines()
        .map(|l| match l.split_once(':') {
            Some(("- Organization", _)) => "- Organization: example-aero".to_owned(),
            Some(("- CSM", _)) => "- CSM: @csm-aero".to_owned(),
            Some(("- SA", _)) => "- SA: @sa-aero".to_owned(),
            Some(("- Opportunity", _)) => {
                "- Opportunity: Faster pipelines for large monorepos".to_owned()
            }
            Some(("- Customer contacts", _)) => "- Customer contacts: @aero-dev-1".to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_setup_the_account_team_and_mr_flows_work_through_webhooks_alone() {
    let h = Harness::start().await;
    let gitlab = &h.gitlab;
    let url = format!("{}/webhook", h.url());
    let request = "Co-Create engagement request";
    assert!(
        gitlab
            .issue_from_template(TRACKING_PROJECT_ID, 701, "x", request, |t| t.to_owned())
            .is_err(),
        "an empty GitLab offers no template"
    );

    gitlab.clear_calls();
    let (ok, out) = tokio::task::block_in_place(|| setup(gitlab, &url, &[]));
    assert!(ok, "{out}");
    assert!(!out.contains(SECRET), "the secret is never printed:\n{out}");
    let calls = gitlab.calls();
    let writes = gitlab.writes().len();
    println!(
        "setup on an empty GitLab: {} reads, {writes} writes",
        calls.len() - writes
    );

    // Labels: MR labels in the watched group, engagement labels in the tracking project.
    let group = label_names(gitlab, "groups/50");
    for want in [
        "Co-Create",
        "Community contribution",
        "CCA::signed",
        "CCA::missing",
        "CCA::expired",
        "Co-Create review::overdue",
        "Co-Create org::example-aero",
    ] {
        assert!(
            group.contains(&want.to_string()),
            "{want} missing from {group:?}"
        );
    }
    let tracking = label_names(gitlab, &format!("projects/{TRACKING_PROJECT_ID}"));
    for want in [
        "Co-Create intake",
        "Co-Create engagement",
        "Co-Create pathway decision",
        "Co-Create on-site",
        "Co-Create stage::prospect",
        "Co-Create stage::contacted",
        "Co-Create stage::sustaining",
        "Co-Create pathway::not-aligned",
        "Co-Create pathway::minor",
        "Co-Create pathway::major",
        "Co-Create org::example-aero",
    ] {
        assert!(
            tracking.contains(&want.to_string()),
            "{want} missing from {tracking:?}"
        );
    }
    assert!(gitlab
        .labels_of(&format!("projects/{TRACKING_PROJECT_ID}"))
        .iter()
        .all(|l| l.color.starts_with('#') && !l.description.is_empty()));

    // Webhooks: the group (MR, issue and comment events) and the tracking project.
    for (owner, mr_events) in [
        ("groups/50".to_string(), true),
        (format!("projects/{TRACKING_PROJECT_ID}"), false),
    ] {
        let hooks = gitlab.hooks_of(&owner);
        assert_eq!(hooks.len(), 1, "{owner}: {hooks:#?}");
        assert_eq!(hooks[0].url, url);
        assert_eq!(hooks[0].token.as_deref(), Some(SECRET), "the first secret");
        for e in [
            "issues_events",
            "confidential_issues_events",
            "note_events",
            "confidential_note_events",
        ] {
            assert_eq!(hooks[0].events.get(e), Some(&true), "{owner} {e}");
        }
        assert_eq!(
            hooks[0].events.get("merge_requests_events"),
            Some(&mr_events)
        );
        assert_eq!(hooks[0].events.get("push_events"), Some(&false), "{owner}");
    }

    // Issue templates: on the default branch, in one commit.
    assert_eq!(gitlab.commit_count(TRACKING_PROJECT_ID), 1);
    for (name, text) in shipped_templates() {
        assert_eq!(
            gitlab
                .file_at(
                    TRACKING_PROJECT_ID,
                    "main",
                    &format!("{TEMPLATE_DIR}/{name}")
                )
                .as_deref(),
            Some(text.as_str()),
            "{name}"
        );
    }
    assert!(
        gitlab.take_deliveries().is_empty(),
        "no hook asked for the templates' push"
    );

    // The account team opens an engagement request from the template ...
    let iid = gitlab
        .issue_from_template(
            TRACKING_PROJECT_ID,
            701,
            "Co-Create engagement request: Example Aero",
            request,
            fill_intake,
        )
        .expect("GitLab offers the template");
    let intake = gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert!(intake.confidential, "the template's /confidential");
    assert_eq!(intake.labels, ["Co-Create intake"], "the template's /label");
    // ... GitLab calls the webhook setup registered ...
    assert_eq!(
        gitlab.send_deliveries().await,
        [("Confidential Issue Hook".to_string(), 200)]
    );
    h.wait_idle().await;
    // ... and the request is now the organization's tracking issue.
    let t = gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert_eq!(
        t.labels,
        [
            "Co-Create engagement",
            "Co-Create org::example-aero",
            "Co-Create stage::contacted"
        ]
    );
    assert!(
        t.description.contains("## Co-Create checklist"),
        "{}",
        t.description
    );
    assert_eq!(
        t.assignee_ids,
        [101, 701, 702],
        "the Contributor Success DRI, the CSM and the SA"
    );
    assert!(h.take_issue_notes(iid).is_empty());

    // The CSM files the alignment meeting's notes from the template setup installed: the
    // bot links them to the engagement and labels them.
    let notes_iid = gitlab
        .issue_from_template(
            TRACKING_PROJECT_ID,
            701,
            "Alignment meeting: Example Aero",
            "Co-Create alignment meeting notes",
            |t| t.replace("- Organization: <!--", "- Organization: example-aero <!--"),
        )
        .expect("setup installed the meeting-notes template");
    assert_eq!(
        gitlab.send_deliveries().await,
        [("Confidential Issue Hook".to_string(), 200)]
    );
    h.wait_idle().await;
    let filed = gitlab.issue(TRACKING_PROJECT_ID, notes_iid);
    assert!(filed.confidential);
    assert_eq!(
        filed.labels,
        ["Co-Create meeting notes", "Co-Create org::example-aero"]
    );
    assert_eq!(filed.links, [(TRACKING_PROJECT_ID, iid)]);
    let linked = h.take_issue_notes(notes_iid);
    assert_eq!(linked.len(), 1, "{linked:#?}");
    assert!(linked[0].contains(&format!("#{iid}")), "{}", linked[0]);

    // An engineer of the organization opens an MR: routed through the group's webhook.
    gitlab.open_mr(MrSpec {
        project_id: PROJECT_ID,
        iid: 30,
        id: 1030,
        title: "Speed up the booking search".into(),
        author_id: AERO_DEV.0,
        sha: format!("{:040x}", 30),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
    assert_eq!(
        gitlab.send_deliveries().await,
        [("Merge Request Hook".to_string(), 200)]
    );
    h.wait_idle().await;
    let mr = gitlab.mr(PROJECT_ID, 30);
    for want in ["Co-Create", "Co-Create org::example-aero", "CCA::signed"] {
        assert!(
            mr.labels.contains(&want.to_string()),
            "{want}: {:?}",
            mr.labels
        );
    }
    assert!(
        mr.reviewer_ids.contains(&101),
        "the engagement's DRI reviews"
    );
    let welcome = h.take_notes(30);
    assert_eq!(welcome.len(), 1, "{welcome:#?}");
    let links = h.take_issue_notes(iid);
    assert_eq!(links.len(), 1, "{links:#?}");
    assert!(links[0].contains("cocreate:mr-link:2!30"), "{}", links[0]);

    // A second run writes nothing.
    gitlab.clear_calls();
    let (ok, again) = tokio::task::block_in_place(|| setup(gitlab, &url, &[]));
    assert!(ok, "{again}");
    assert!(again.contains("everything is in place"), "{again}");
    assert!(gitlab.writes().is_empty(), "{:#?}", gitlab.writes());
    println!("setup again: {} reads, 0 writes", gitlab.calls().len());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_lists_each_write_and_makes_none() {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    let (ok, dry) = tokio::task::block_in_place(|| setup(&gitlab, WEBHOOK_URL, &["--dry-run"]));
    assert!(ok, "{dry}");
    for want in [
        "would: create label \"Co-Create\" in groups/vendor",
        "would: create label \"Co-Create review::overdue\" in groups/vendor",
        "would: create label \"Co-Create intake\" in projects/cocreate%2Fengagements",
        "would: create label \"Co-Create pathway decision\" in projects/cocreate%2Fengagements",
        "would: register webhook https://cocreate.example.com/webhook on groups/vendor (confidential_issues_events, confidential_note_events, issues_events, merge_requests_events, note_events; with secret token)",
        "would: register webhook https://cocreate.example.com/webhook on projects/cocreate%2Fengagements (confidential_issues_events, confidential_note_events, issues_events, note_events; with secret token)",
        "would: commit to cocreate/engagements branch main: create .gitlab/issue_templates/Co-Create alignment meeting notes.md, create .gitlab/issue_templates/Co-Create engagement request.md, create .gitlab/issue_templates/Co-Create onboarding session.md, create .gitlab/issue_templates/Co-Create pathway decision.md",
    ] {
        assert!(dry.contains(want), "{want}\nnot in:\n{dry}");
    }
    assert!(gitlab.writes().is_empty(), "{:#?}", gitlab.writes());
    assert!(gitlab.labels_of("groups/50").is_empty());

    // A template changed in the repository is updated, the others are left alone.
    let shipped = shipped_templates();
    let request = "Co-Create engagement request.md";
    let files: Vec<(String, &str)> = shipped
        .iter()
        .map(|(name, text)| {
            let text = if name == request {
                "an old copy\n"
            } else {
                text.as_str()
            };
            (format!("{TEMPLATE_DIR}/{name}"), text)
        })
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    gitlab.commit_files(TRACKING_PROJECT_ID, "main", &files);
    let (ok, dry) = tokio::task::block_in_place(|| setup(&gitlab, WEBHOOK_URL, &["--dry-run"]));
    assert!(ok, "{dry}");
    assert!(
        dry.contains("would: commit to cocreate/engagements branch main: update .gitlab/issue_templates/Co-Create engagement request.md\n"),
        "{dry}"
    );
    let (ok, done) = tokio::task::block_in_place(|| setup(&gitlab, WEBHOOK_URL, &[]));
    assert!(ok, "{done}");
    assert_eq!(gitlab.commit_count(TRACKING_PROJECT_ID), 2);
    assert_eq!(
        gitlab
            .file_at(
                TRACKING_PROJECT_ID,
                "main",
                ".gitlab/issue_templates/Co-Create engagement request.md"
            )
            .as_deref(),
        shipped
            .iter()
            .find(|(n, _)| n == request)
            .map(|(_, t)| t.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_step_names_the_role_it_needs() {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    gitlab.push_fault_for(
        "POST",
        "/api/v4/projects/cocreate%2Fengagements/hooks",
        Fault::Status(403),
    );
    let (ok, out) = tokio::task::block_in_place(|| setup(&gitlab, WEBHOOK_URL, &[]));
    assert!(!ok, "{out}");
    assert!(
        out.contains("403 Forbidden on POST projects/cocreate%2Fengagements/hooks: setup needs the Maintainer role in project cocreate/engagements to register webhooks"),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");

    // Listing a group's webhooks needs its Owner (and Premium).
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    gitlab.push_fault_for("GET", "/api/v4/groups/vendor/hooks", Fault::Status(403));
    let (ok, out) = tokio::task::block_in_place(|| setup(&gitlab, WEBHOOK_URL, &[]));
    assert!(!ok, "{out}");
    assert!(
        out.contains("403 Forbidden on GET groups/vendor/hooks: setup needs the Owner role in group vendor to register webhooks (group webhooks also need GitLab Premium"),
        "{out}"
    );

    // A refusal that is not about roles (here: the template changed meanwhile) says so first.
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    gitlab.push_fault_for(
        "POST",
        "/api/v4/projects/cocreate%2Fengagements/repository/commits",
        Fault::Status(400),
    );
    let (ok, out) = tokio::task::block_in_place(|| setup(&gitlab, WEBHOOK_URL, &[]));
    assert!(!ok, "{out}");
    assert!(
        out.contains("400 Bad Request on POST projects/cocreate%2Fengagements/repository/commits: commit to cocreate/engagements branch main"),
        "{out}"
    );
    assert!(
        out.contains("(this step needs the Developer role in project cocreate/engagements and the right to push to `main`"),
        "{out}"
    );

    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    gitlab.push_fault_for("POST", "/api/v4/groups/vendor/labels", Fault::Status(403));
    let (ok, out) = tokio::task::block_in_place(|| setup(&gitlab, WEBHOOK_URL, &[]));
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "403 Forbidden on POST groups/vendor/labels: setup needs the Reporter role in group vendor to manage labels"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_project_hook_sends_pushes_of_the_policy_branch() {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    gitlab.add_project(950, "cocreate/policies");
    gitlab.commit_files(950, "main", &[("agreements.yml", "agreements: []\n")]);
    let (ok, out) = tokio::task::block_in_place(|| {
        setup(
            &gitlab,
            WEBHOOK_URL,
            &["--policy-project", "cocreate/policies@production"],
        )
    });
    assert!(ok, "{out}");
    let hooks = gitlab.hooks_of("projects/950");
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(hooks[0].events.get("push_events"), Some(&true));
    assert_eq!(hooks[0].events.get("merge_requests_events"), Some(&false));
    assert_eq!(
        hooks[0].push_events_branch_filter.as_deref(),
        Some("production")
    );
    gitlab.take_deliveries();
    gitlab.commit_files(950, "production", &[("agreements.yml", "agreements: []\n")]);
    gitlab.commit_files(950, "feature", &[("agreements.yml", "x\n")]);
    let pushes = gitlab.take_deliveries();
    assert_eq!(pushes.len(), 1, "{pushes:#?}");
    assert_eq!(pushes[0].event, "Push Hook");
    assert_eq!(pushes[0].body["ref"], "refs/heads/production");

    // Without @REF: the project's default branch; the existing hook is updated, once.
    gitlab.clear_calls();
    let (ok, out) = tokio::task::block_in_place(|| {
        setup(
            &gitlab,
            WEBHOOK_URL,
            &["--policy-project", "cocreate/policies"],
        )
    });
    assert!(ok, "{out}");
    assert!(
        out.contains("did: set the events of webhook https://cocreate.example.com/webhook on projects/cocreate%2Fpolicies to push_events of branch main"),
        "{out}"
    );
    assert_eq!(gitlab.writes().len(), 1, "{:#?}", gitlab.writes());
    assert_eq!(
        gitlab.hooks_of("projects/950")[0]
            .push_events_branch_filter
            .as_deref(),
        Some("main")
    );
}

//! `serve` in a real deployment: policies that change while it runs, and GitLab refusing a
//! write or the token. Each test runs the real receiver and worker against the fake GitLab over
//! 127.0.0.1 and changes the world the way an operator, a CLA manager or GitLab would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::Path;
use std::time::Duration;

use cocreate::queue::{EventState, ListFilter, QueueInspect, SqliteInspector};
use serde_json::Value;
use support::fake_gitlab::Fault;
use support::harness::*;

const TELCO_SIGNED: &str = "  - organization: example-telco\n    signed: 2026-11-20\n    version: \"CCA 2.1\"\n    reference: \"contracts/cca/example-telco-2026-11-20\"\n";

/// A policy directory the test may edit: a copy of the repository's `policies/`.
fn policy_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&root).expect("policies/") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

async fn readyz(h: &Harness) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", h.url()))
        .await
        .expect("readyz");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

/// Waits until `/readyz` satisfies `want` (at most 10 s: the reload poll is 200 ms here).
async fn until_ready(h: &Harness, what: &str, want: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(h).await;
        if want(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: /readyz is {status} {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cca_labels(h: &Harness, iid: u64) -> Vec<String> {
    h.gitlab
        .mr(PROJECT_ID, iid)
        .labels
        .into_iter()
        .filter(|l| l.starts_with("CCA::"))
        .collect()
}

/// The telco engineer opens `!17`; example-telco's agreement has expired, so the MR is flagged
/// and welcomed with the signing instructions. Returns the welcome note.
async fn open_telco_mr(h: &Harness) -> Vec<String> {
    add_mr(&h.gitlab, 17, TELCO_DEV.0, "Support eSIM profiles");
    h.deliver_mr(mr_event(17, TELCO_DEV, TELCO_DEV, "open"))
        .await;
    h.wait_idle().await;
    assert_eq!(cca_labels(h, 17), ["CCA::expired"]);
    let welcome = h.take_notes(17);
    assert_eq!(welcome.len(), 1, "{welcome:#?}");
    welcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_agreement_is_in_force_for_the_next_event_and_its_note_survives_a_failed_post() {
    let dir = policy_copy();
    let policies = dir.path().to_owned();
    let h = Harness::start_with(|s| s.policies = cocreate::app::ConfigSource::Dir(policies)).await;
    // Day 1: example-telco's agreement expired in March. The MR is flagged.
    let welcome = open_telco_mr(&h).await;
    assert!(
        welcome[0].contains("<!-- cocreate:cca-expired -->"),
        "{}",
        welcome[0]
    );
    let v1 = until_ready(&h, "started", |s, _| s == 200).await["policies_version"].clone();

    // The CLA managers merge the new agreement; serve picks it up without a restart.
    let agreements = dir.path().join("agreements.yml");
    let text = std::fs::read_to_string(&agreements).expect("read");
    std::fs::write(&agreements, format!("{text}{TELCO_SIGNED}")).expect("write");
    until_ready(&h, "reloaded", |_, b| b["policies_version"] != v1).await;

    // The thank-you note's first POST fails; the retry posts it, then swaps the label.
    h.gitlab.push_fault_for(
        "POST",
        &format!("/api/v4/projects/{PROJECT_ID}/merge_requests/17/notes"),
        Fault::Status(500),
    );
    h.deliver_mr(mr_event(17, TELCO_DEV, TELCO_DEV, "update"))
        .await;
    h.wait_idle().await;
    assert_eq!(cca_labels(&h, 17), ["CCA::signed"], "never swapped back");
    let notes = h.take_notes(17);
    let thanks: Vec<&String> = notes
        .iter()
        .filter(|n| n.contains("<!-- cocreate:cca-signed -->"))
        .collect();
    assert_eq!(thanks.len(), 1, "exactly one note: {notes:#?}");
    let statuses = h
        .gitlab
        .commit_statuses(PROJECT_ID, &format!("{:040x}", 17));
    assert_eq!(
        statuses.last().map(|s| s.status.as_str()),
        Some("success"),
        "{statuses:#?}"
    );

    // Another event: nothing changes, nothing is posted.
    h.deliver_mr(mr_event(17, TELCO_DEV, TELCO_DEV, "update"))
        .await;
    h.wait_idle().await;
    assert_eq!(cca_labels(&h, 17), ["CCA::signed"]);
    assert_eq!(h.take_notes(17).len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_file_keeps_the_last_good_policies_and_says_where() {
    let dir = policy_copy();
    let policies = dir.path().to_owned();
    let h = Harness::start_with(|s| s.policies = cocreate::app::ConfigSource::Dir(policies)).await;
    let v1 = until_ready(&h, "started", |s, _| s == 200).await["policies_version"].clone();

    // A typo in organizations.yml: rejected, with file, line and column, in /readyz.
    let orgs = dir.path().join("organizations.yml");
    let good = std::fs::read_to_string(&orgs).expect("read");
    std::fs::write(&orgs, good.replacen("usernames:", "usernmes:", 1)).expect("write");
    let body = until_ready(&h, "rejected", |_, b| {
        b["policies_reload_error"].is_string()
    })
    .await;
    let error = body["policies_reload_error"].as_str().unwrap_or_default();
    assert!(error.contains("organizations.yml:"), "{error}");
    assert!(error.contains("usernmes"), "{error}");
    assert_eq!(body["policies_version"], v1, "the last good version stays");
    let metrics = reqwest::get(format!("{}/metrics", h.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cocreate_policies_reload_failures_total") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Events are still decided with the last good policies.
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    assert!(h
        .gitlab
        .mr(PROJECT_ID, 16)
        .labels
        .contains(&"Co-Create org::example-aero".to_string()));
    assert_eq!(h.take_notes(16).len(), 1);

    // Fixed: the error is gone and a new version is in force.
    std::fs::write(&orgs, format!("{good}\n# fixed\n")).expect("write");
    let body = until_ready(&h, "fixed", |_, b| b["policies_reload_error"].is_null()).await;
    assert_ne!(body["policies_version"], v1);
    h.stop().await;
}

fn dead_letters(h: &Harness) -> Vec<cocreate::queue::EventSummary> {
    let inspector = SqliteInspector::open(&h.settings.data_dir).expect("inspector");
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        rt.block_on(inspector.list(ListFilter {
            state: Some(EventState::Dead),
            dead_older_than: None,
            limit: 0,
        }))
    })
    .expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_is_a_dead_letter_at_once_naming_the_role_to_grant() {
    let h = Harness::start().await;
    h.gitlab.push_fault_for(
        "PUT",
        &format!("/api/v4/projects/{PROJECT_ID}/merge_requests/16"),
        Fault::Status(403),
    );
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    let stats = h.wait_idle().await;
    assert_eq!(stats.dead, 1, "{stats:?}");
    let dead = dead_letters(&h);
    assert_eq!(dead[0].attempts, 1, "not retried: {:?}", dead[0]);
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("403"), "{error}");
    assert!(
        error.contains("needs the Developer role")
            && error.contains(&format!("project {PROJECT_ID}")),
        "{error}"
    );
    assert_eq!(
        h.gitlab
            .count("PUT", "/api/v4/projects/2/merge_requests/16"),
        1,
        "one try"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_pauses_the_worker_and_work_resumes_once_it_is_fixed() {
    let h = Harness::start().await;
    let good = h.gitlab.token();
    h.gitlab.set_token("rotated-and-not-yet-configured");
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    let body = until_ready(&h, "token refused", |s, _| s == 503).await;
    assert!(
        body["problems"]
            .to_string()
            .contains("GitLab refused the token"),
        "{body:#}"
    );
    // The event waits, unspent: not failed, not dead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queue = &h.app.as_ref().expect("running").queue;
    let stats = queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.dead), (1, 0), "{stats:?}");

    // The operator fixes the token: the worker notices by itself.
    h.gitlab.set_token(&good);
    h.wait_idle().await;
    until_ready(&h, "token accepted", |s, _| s == 200).await;
    assert!(h
        .gitlab
        .mr(PROJECT_ID, 16)
        .labels
        .contains(&"Co-Create".to_string()));
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
}

const POLICY_PROJECT: (u64, &str) = (950, "cocreate/policies");

/// The repository's policies and templates as files of the policy project, with a welcome
/// template of its own (so the test sees that templates follow the same source).
fn policy_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for f in ["organizations.yml", "routing.yml", "agreements.yml"] {
        let text = std::fs::read_to_string(root.join("policies").join(f)).expect("read");
        files.push((format!("policies/{f}"), text));
    }
    let welcome = std::fs::read_to_string(root.join("templates/welcome.md")).expect("read");
    files.push((
        "templates/welcome.md".into(),
        welcome.replace(
            "We are glad you are here.",
            "Served from the policy project.",
        ),
    ));
    files
}

fn commit(h: &support::fake_gitlab::FakeGitLab, files: &[(String, String)]) -> String {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    h.commit_files(POLICY_PROJECT.0, "main", &refs)
}

/// GitLab's documented Push Hook, for a push of `after` to `branch` of the policy project.
fn push_event(branch: &str, after: &str) -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gitlab/payloads/push.json");
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    v["ref"] = format!("refs/heads/{branch}").into();
    v["after"] = after.into();
    v["checkout_sha"] = after.into();
    v["project_id"] = POLICY_PROJECT.0.into();
    v["project"]["id"] = POLICY_PROJECT.0.into();
    v["project"]["path_with_namespace"] = POLICY_PROJECT.1.into();
    serde_json::to_vec(&v).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_in_a_gitlab_project_follow_its_pushes() {
    let repo = cocreate::app::RepoSource {
        project: POLICY_PROJECT.1.into(),
        reference: Some("main".into()),
    };
    let mut first = String::new();
    let h = Harness::start_in(
        |g| {
            g.add_project(POLICY_PROJECT.0, POLICY_PROJECT.1);
            first = commit(g, &policy_files());
        },
        |s| {
            s.policies = cocreate::app::ConfigSource::Gitlab(repo.clone());
            s.templates = cocreate::app::ConfigSource::Gitlab(repo);
        },
    )
    .await;
    let body = until_ready(&h, "started", |s, _| s == 200).await;
    assert_eq!(body["policies_version"], first.as_str(), "{body:#}");
    assert!(
        body["policies"]
            .as_str()
            .is_some_and(|p| p.contains("gitlab:cocreate/policies")),
        "{body:#}"
    );

    let welcome = open_telco_mr(&h).await;
    assert!(
        welcome[0].contains("Served from the policy project."),
        "{}",
        welcome[0]
    );

    // A push to another branch changes nothing.
    h.deliver(
        "Push Hook",
        push_event("draft", &"1".repeat(40)),
        Some(&new_uuid()),
    )
    .await;
    h.wait_idle().await;
    assert_eq!(readyz(&h).await.1["policies_version"], first.as_str());

    // The CLA managers' merge lands on main; its Push Hook reloads at once.
    let mut files = policy_files();
    files[2].1.push_str(TELCO_SIGNED);
    let merged = commit(&h.gitlab, &files);
    let r = h
        .deliver("Push Hook", push_event("main", &merged), Some(&new_uuid()))
        .await;
    assert_eq!(r.status(), 200);
    h.wait_idle().await;
    assert_eq!(readyz(&h).await.1["policies_version"], merged.as_str());
    h.deliver_mr(mr_event(17, TELCO_DEV, TELCO_DEV, "update"))
        .await;
    h.wait_idle().await;
    assert_eq!(cca_labels(&h, 17), ["CCA::signed"]);
    let notes = h.take_notes(17);
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.contains("<!-- cocreate:cca-signed -->"))
            .count(),
        1,
        "{notes:#?}"
    );

    // A broken commit is rejected; the merged version stays in force.
    files[0].1 = files[0].1.replacen("usernames:", "usernmes:", 1);
    let broken = commit(&h.gitlab, &files);
    h.deliver("Push Hook", push_event("main", &broken), Some(&new_uuid()))
        .await;
    h.wait_idle().await;
    let body = readyz(&h).await.1;
    assert_eq!(body["policies_version"], merged.as_str(), "{body:#}");
    assert!(
        body["policies_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("policies/organizations.yml:") && e.contains("usernmes")),
        "{body:#}"
    );
    h.stop().await;
}

/// A scheduled job reads the same source once: `cca-check --policies gitlab:…` through the
/// binary checks an MR with the agreements of the policy project's branch head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_reads_policies_from_the_gitlab_project() {
    let gitlab = support::fake_gitlab::FakeGitLab::start().await;
    seed(&gitlab);
    gitlab.add_project(POLICY_PROJECT.0, POLICY_PROJECT.1);
    let mut files = policy_files();
    files[2].1.push_str(TELCO_SIGNED);
    commit(&gitlab, &files);
    gitlab.add_mr(support::fake_gitlab::MrSpec {
        labels: vec![
            "Co-Create".into(),
            "Co-Create org::example-telco".into(),
            "CCA::expired".into(),
        ],
        ..support::fake_gitlab::MrSpec {
            project_id: PROJECT_ID,
            iid: 17,
            id: 1017,
            title: "Support eSIM profiles".into(),
            author_id: TELCO_DEV.0,
            sha: format!("{:040x}", 17),
            project_path: PROJECT_PATH.into(),
            ..Default::default()
        }
    });
    let out = tokio::task::spawn_blocking({
        let (url, token) = (gitlab.url(), gitlab.token());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
                .args(["cca-check", "--json", "--now", "2026-11-23T12:00:00Z"])
                .env("GITLAB_URL", url)
                .env("GITLAB_TOKEN", token)
                .env(
                    "COCREATE_POLICIES",
                    format!("gitlab:{}@main", POLICY_PROJECT.1),
                )
                .env_remove("COCREATE_TEMPLATES")
                .output()
                .expect("run")
        }
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let labels = gitlab.mr(PROJECT_ID, 17).labels;
    assert!(
        labels.contains(&"CCA::signed".to_string()),
        "{labels:?}\n{stderr}"
    );
    assert!(!labels.contains(&"CCA::expired".to_string()), "{labels:?}");
    let thanks = gitlab
        .notes(PROJECT_ID, 17)
        .into_iter()
        .filter(|n| n.body.contains("<!-- cocreate:cca-signed -->"))
        .count();
    assert_eq!(thanks, 1);
}

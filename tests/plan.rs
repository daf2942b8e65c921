//! `cocreate plan` through the real binary: what the bot would do for one webhook payload, from
//! the payload alone, with the repository's example policies and templates. Nothing is read
//! from GitLab (no GITLAB_URL is reachable) and nothing is written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cocreate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn payload(name: &str) -> Value {
    let path = Path::new(ROOT)
        .join("tests/fixtures/gitlab/payloads")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn plan(event: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(ROOT)
        .args([
            "--policies",
            "policies",
            "--templates",
            "templates",
            "plan",
            "--event",
        ])
        .arg(event)
        .args(extra)
        // A GitLab that would refuse every connection: plan must not need it.
        .env("GITLAB_URL", "http://127.0.0.1:9")
        .env_remove("GITLAB_TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn a_member_of_an_organization_is_routed_with_labels_a_reviewer_and_the_welcome_note() {
    let dir = tempfile::tempdir().unwrap();
    let mut mr = payload("merge_request_open.json");
    mr["user"]["username"] = "aero-dev-1".into();
    let path = write(dir.path(), "mr.json", mr.to_string().as_bytes());

    let text = stdout(&plan(&path, &[]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "plan for project 2 !16 (payload facts only; nothing is written)"
    );
    assert_eq!(lines[1], "organization: example-aero (Username)");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("- edit project 2 !16: add labels")
                && l.contains("\"Co-Create org::example-aero\"")
                && l.contains("add reviewer @cs-reviewer-1")),
        "{text}"
    );
    let welcome = lines
        .iter()
        .position(|l| *l == "- post Welcome note on project 2 !16")
        .unwrap_or_else(|| panic!("no welcome note: {text}"));
    // The note's text follows, quoted line by line.
    assert_eq!(lines[welcome + 1], "    | <!-- cocreate:welcome -->");
    assert!(
        lines[welcome + 2].starts_with("    | Hi @aero-dev-1, thank you"),
        "{text}"
    );

    let json: Value = serde_json::from_str(&stdout(&plan(&path, &["--json"]))).unwrap();
    assert_eq!(json["org"]["slug"], "example-aero");
    assert_eq!(json["skip"], Value::Null);
    assert_eq!(json["actions"].as_array().unwrap().len(), 3, "{json:#}");
}

#[test]
fn an_author_outside_the_organizations_is_skipped_and_other_events_are_explained() {
    let fixtures = Path::new(ROOT).join("tests/fixtures/gitlab/payloads");
    let text = stdout(&plan(&fixtures.join("merge_request_open.json"), &[]));
    assert_eq!(
        text,
        "plan for project 2 !16 (payload facts only; nothing is written)\nskip: NotCoCreate\n"
    );
    let json: Value = serde_json::from_str(&stdout(&plan(
        &fixtures.join("merge_request_open.json"),
        &["--json"],
    )))
    .unwrap();
    assert_eq!(json["skip"]["reason"], "not_co_create");
    assert_eq!(json["actions"], serde_json::json!([]));

    let issue = stdout(&plan(&fixtures.join("issue_open.json"), &[]));
    assert_eq!(
        issue,
        "plan shows merge request routing only; issue events need GitLab (run serve)\n"
    );
}

#[test]
fn a_body_that_is_not_json_or_of_an_unknown_kind_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.json", b"not json");
    let o = plan(&bad, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{} is not JSON: ", bad.display())),
        "{err}"
    );

    let pipeline = write(dir.path(), "p.json", br#"{"object_kind":"pipeline"}"#);
    let o = plan(&pipeline, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "cannot tell the event type from object_kind Some(\"pipeline\"); pass --event-type"
        ),
        "{err}"
    );
}

//! `cocreate serve` as the real binary: what an operator sees in its log, and what SIGHUP does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::Path;
use std::time::Duration;

use support::load::{tail, ServeCommand};

async fn readyz(url: &str) -> serde_json::Value {
    reqwest::get(format!("{url}/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json")
}

async fn until(what: &str, log: &Path, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}; log:\n{}",
            tail(log, 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The README's first walk-through: the sample MR's author is in no organization, and the log
/// says so at the default level, naming the MR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sample_mr_is_logged_as_skipped_with_its_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("serve.log");
    let root = env!("CARGO_MANIFEST_DIR");
    let serve = ServeCommand::new(env!("CARGO_BIN_EXE_cocreate"), &log)
        .env(
            "COCREATE_DATA",
            dir.path().join("data").display().to_string(),
        )
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .start(1)
        .await;
    let body = std::fs::read(format!(
        "{root}/tests/fixtures/gitlab/payloads/merge_request_open.json"
    ))
    .expect("fixture");
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", serve.url))
        .header("X-Gitlab-Event", "Merge Request Hook")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    until("no `event skipped` line", &log, async || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("event skipped"))
    })
    .await;
    let text = std::fs::read_to_string(&log).expect("log");
    let line = text
        .lines()
        .find(|l| l.contains("event skipped"))
        .expect("line");
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no terminal colors in a log file: {line:?}"
    );
    assert!(
        line.contains("reference=flightjs/flight-management!16"),
        "{line}"
    );
    assert!(line.contains("not in any Co-Create organization"), "{line}");
}

/// SIGHUP reloads at once, even when the poll interval is long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policies_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["organizations.yml", "routing.yml", "agreements.yml"] {
        std::fs::copy(root.join("policies").join(f), policies.join(f)).expect("copy");
    }
    let log = dir.path().join("serve.log");
    let serve = ServeCommand::new(env!("CARGO_BIN_EXE_cocreate"), &log)
        .env(
            "COCREATE_DATA",
            dir.path().join("data").display().to_string(),
        )
        .env("COCREATE_POLICIES", policies.display().to_string())
        .env("COCREATE_POLICY_POLL", "1h")
        .start(1)
        .await;
    let v1 = readyz(&serve.url).await["policies_version"].clone();
    assert!(
        v1.as_str().is_some_and(|v| v.starts_with("sha256:")),
        "{v1}"
    );
    std::fs::write(
        policies.join("agreements.yml"),
        "signing_contact: cla-managers@example.com\nagreements: []\n",
    )
    .expect("write");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &serve.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    until("SIGHUP did not reload", &log, async || {
        readyz(&serve.url).await["policies_version"] != v1
    })
    .await;
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("policies reloaded") && text.contains("SIGHUP"),
        "{text}"
    );
}

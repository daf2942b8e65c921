//! `cocreate setup` through the real binary against the fake GitLab: labels and webhook are
//! created once; a second run changes nothing; the secret is sent but never printed.

mod support;

use std::process::Command;

use support::fake_gitlab::FakeGitLab;
use support::harness::seed;

fn setup(gitlab: &FakeGitLab, extra: &[&str]) -> (bool, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .arg("setup")
        .args(extra)
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", "setup-secret-value,older-secret")
        .env(
            "COCREATE_WEBHOOK_URL",
            "https://cocreate.example.com/webhook",
        )
        .env("COCREATE_POLICIES", format!("{root}/policies"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_twice_changes_nothing_the_second_time() {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);

    let (ok, dry) = tokio::task::block_in_place(|| setup(&gitlab, &["--dry-run"]));
    assert!(ok, "{dry}");
    assert!(
        dry.contains("would: create label \"Co-Create\" in groups/vendor"),
        "{dry}"
    );
    assert!(gitlab.writes().is_empty(), "a dry run writes nothing");

    let (ok, first) = tokio::task::block_in_place(|| setup(&gitlab, &[]));
    assert!(ok, "{first}");
    let labels = gitlab.labels_of("groups/50");
    let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    for want in [
        "Co-Create",
        "Community contribution",
        "CCA::signed",
        "CCA::missing",
        "CCA::expired",
        "Co-Create org::example-aero",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(labels
        .iter()
        .all(|l| l.color.starts_with('#') && l.description.contains("cocreate")));
    let hooks = gitlab.hooks_of("groups/50");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].url, "https://cocreate.example.com/webhook");
    assert_eq!(hooks[0].token.as_deref(), Some("setup-secret-value"));
    for e in [
        "merge_requests_events",
        "issues_events",
        "confidential_issues_events",
        "note_events",
        "confidential_note_events",
    ] {
        assert_eq!(hooks[0].events.get(e), Some(&true), "{e}");
    }
    assert_eq!(hooks[0].events.get("push_events"), Some(&false));
    assert!(
        !first.contains("setup-secret-value"),
        "the secret must never be printed:\n{first}"
    );

    gitlab.clear_calls();
    let (ok, second) = tokio::task::block_in_place(|| setup(&gitlab, &[]));
    assert!(ok, "{second}");
    assert!(second.contains("everything is in place"), "{second}");
    assert!(gitlab.writes().is_empty(), "{:#?}", gitlab.writes());
}

//! Hook health through the real binaries against the fake GitLab: GitLab disabled our hook
//! while `serve` was down; the running `serve` finds it on its periodic check and says so in
//! `/readyz`'s body (still ready) and in `cocreate_webhook_disabled`; `setup` re-enables it
//! with GitLab's test delivery (answered by that `serve`), and the warning goes away.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::fake_gitlab::FakeGitLab;
use support::harness::*;
use support::load::{tail, ServeCommand};

fn setup(gitlab: &FakeGitLab, url: &str) -> (i32, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .arg("setup")
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_WEBHOOK_URL", url)
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env_remove("COCREATE_POLICY_PROJECT")
        .output()
        .expect("run cocreate setup");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("get");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

async fn until(what: &str, log: &Path, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}; log:\n{}",
            tail(log, 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_hook_shows_in_readyz_and_metrics_and_setup_re_enables_it() {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("serve.log");
    let root = env!("CARGO_MANIFEST_DIR");
    let serve = ServeCommand::new(env!("CARGO_BIN_EXE_cocreate"), &log)
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env(
            "COCREATE_DATA",
            dir.path().join("data").display().to_string(),
        )
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env("COCREATE_HOOK_CHECK", "200ms");
    let hook_url = format!("{}/webhook", serve.url());
    let serve = serve.env("COCREATE_WEBHOOK_URL", hook_url.clone());
    let (code, out) = tokio::task::block_in_place(|| setup(&gitlab, &hook_url));
    assert_eq!(code, 0, "{out}");

    // serve is down: four failed deliveries and GitLab disables the group hook.
    gitlab.set_auto_disable_hooks(true);
    for iid in 30..34 {
        open_mr_delivered(&gitlab, iid);
    }
    assert_eq!(gitlab.send_deliveries().await.len(), 4);
    let hook = gitlab
        .hook_events()
        .first()
        .map(|e| e.hook.clone())
        .expect("a recorded call");
    let id: u64 = hook
        .rsplit('/')
        .next()
        .and_then(|i| i.parse().ok())
        .expect("id");
    let owner = hook
        .rsplit_once("/hooks/")
        .map(|(o, _)| o.to_owned())
        .expect("owner");
    let (status, until_time) = gitlab.hook_alert(&owner, id);
    assert_eq!(status, "temporarily_disabled");
    let until_time = until_time.expect("disabled_until");
    // The owner as cocreate names it (`groups/vendor`, the path it reads).
    let named = format!("groups/vendor/hooks/{id}");

    let serve = serve.start(1).await;
    let readyz = format!("{}/readyz", serve.url);
    until("/readyz warns about the disabled hook", &log, async || {
        let (_, body) = get(&readyz).await;
        body.contains(&named) && body.contains("temporarily disabled")
    })
    .await;
    let (status, body) = get(&readyz).await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        status, 200,
        "a disabled hook does not make serve unready: {v:#}"
    );
    assert_eq!(v["status"], "ready", "{v:#}");
    let warning = v["warnings"][0].as_str().expect("a warning");
    assert!(warning.contains(&until_time), "names until when: {warning}");
    assert!(
        warning.contains("cocreate setup"),
        "says how to fix it: {warning}"
    );
    assert_eq!(
        v["webhooks"][0]["alert_status"], "temporarily_disabled",
        "{v:#}"
    );
    let (_, metrics) = get(&format!("{}/metrics", serve.url)).await;
    assert!(
        metrics.contains(&format!("cocreate_webhook_disabled{{hook=\"{named}\"}} 1")),
        "{metrics}"
    );
    let logged = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        logged
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("temporarily disabled"))
            .count(),
        1,
        "one WARN line for the change, not one per check:\n{logged}"
    );

    // setup re-enables it: GitLab's test delivery reaches serve, which answers 200.
    let (code, out) = tokio::task::block_in_place(|| setup(&gitlab, &hook_url));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("re-enable webhook"), "{out}");
    assert_eq!(
        gitlab.hook_alert(&owner, id),
        ("executable".to_owned(), None)
    );
    until("the warning is gone", &log, async || {
        let (_, body) = get(&readyz).await;
        serde_json::from_str::<Value>(&body)
            .is_ok_and(|v| v["warnings"].as_array().is_some_and(|w| w.is_empty()))
    })
    .await;
    let (_, metrics) = get(&format!("{}/metrics", serve.url)).await;
    assert!(
        metrics.contains(&format!("cocreate_webhook_disabled{{hook=\"{named}\"}} 0")),
        "{metrics}"
    );
    // And nothing left to do.
    let (code, out) = tokio::task::block_in_place(|| setup(&gitlab, &hook_url));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("re-enable webhook"), "{out}");
}

//! The real binary is killed with SIGKILL after acknowledging an event and before finishing it;
//! after a restart the event is processed, exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::fake_gitlab::{FakeGitLab, Fault};
use support::harness::*;

struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    /// A failing assertion must not leave a server running after the test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn spawn_serve(gitlab: &FakeGitLab, data: &std::path::Path) -> Serve {
    let port = free_port();
    let root = env!("CARGO_MANIFEST_DIR");
    #[allow(clippy::zombie_processes)] // waited for by the test, or killed and waited below
    let child = Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .arg("serve")
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_DATA", data)
        .env("COCREATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env("COCREATE_LEASE_SECS", "1")
        .env("COCREATE_RETRY_BASE", "0.05")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cocreate serve");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = child;
    for _ in 0..200 {
        if http.get(format!("{url}/healthz")).send().await.is_ok() {
            return Serve { child, url };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cocreate serve did not come up on {url}");
}

#[tokio::test]
async fn an_event_acknowledged_before_a_kill_is_processed_after_restart() {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    let data = tempfile::tempdir().expect("tempdir");
    let mut serve = spawn_serve(&gitlab, data.path()).await;

    // GitLab is slow to answer the event's first request, so the worker is mid-event when
    // the process dies. The delay is for a request made on the event's behalf: the service's
    // own background calls at start (the overdue gauge, the hook check) cannot take it.
    let uuid = new_uuid();
    gitlab.push_fault_for_event(&uuid, Fault::Delay(Duration::from_secs(20)));
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", serve.url))
        .header("X-Gitlab-Event", "Merge Request Hook")
        .header("X-Gitlab-Token", SECRET)
        .header("X-Gitlab-Event-UUID", &uuid)
        .body(mr_event(16, AERO_DEV, AERO_DEV, "open"))
        .send()
        .await
        .expect("deliver");
    assert_eq!(r.status(), 200, "acknowledged = durably stored");
    // Kill once the worker is inside the event (its first GitLab request is waiting).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !gitlab
        .calls()
        .iter()
        .any(|c| c.event_uuid.as_deref() == Some(uuid.as_str()))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not start the event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    serve.child.kill().expect("SIGKILL");
    let _ = serve.child.wait();
    assert!(
        gitlab.writes().is_empty(),
        "nothing was written before the kill"
    );

    gitlab.clear_faults();
    let mut serve = spawn_serve(&gitlab, data.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while gitlab.notes(PROJECT_ID, 16).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "event was not processed after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate a chance to appear, then check there is none.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let notes = gitlab.notes(PROJECT_ID, 16);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].body.starts_with("<!-- cocreate:welcome -->"));
    assert!(gitlab
        .mr(PROJECT_ID, 16)
        .labels
        .contains(&"Co-Create org::example-aero".to_string()));
    serve.child.kill().expect("kill");
    let _ = serve.child.wait();
}

//! `cocreate queue migrate --from DIR --to postgres://…` (the real binary): an operator switching
//! from the SQLite queue to PostgreSQL loses no pending event or dead letter, and deliveries
//! already processed stay duplicates. And every `queue` command works with `--queue`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cocreate::queue::{
    EventState, ListFilter, NewEvent, PostgresQueue, Queue, QueueInspect, SqliteQueue,
};

fn event(key: &str, serial: Option<&str>) -> NewEvent {
    NewEvent {
        dedupe_key: key.to_owned(),
        kind: "Merge Request Hook".to_owned(),
        serial_key: serial.map(str::to_owned),
        headers: vec![("X-Gitlab-Event-UUID".to_owned(), key.to_owned())],
        body: format!("{{\"delivery\":\"{key}\"}}").into_bytes(),
        received_at_ms: 1_700_000_000_000,
    }
}

fn cocreate(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .args(args)
        .env_remove("COCREATE_QUEUE_URL")
        .output()
        .expect("run cocreate")
}

fn migrate(from: &Path, to: &str) -> Output {
    cocreate(&[
        "queue",
        "migrate",
        "--from",
        &from.display().to_string(),
        "--to",
        to,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_pending_dead_and_dedupe_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::postgres::fresh_database().await;
    {
        let sqlite = SqliteQueue::open(dir.path()).unwrap();
        for key in ["done", "dead", "retried", "waiting-1", "waiting-2"] {
            let serial = key.starts_with("waiting").then_some("mr:7");
            sqlite.enqueue(event(key, serial)).await.unwrap();
        }
        let claimed = sqlite.claim(3, Duration::from_secs(30)).await.unwrap();
        sqlite.ack_leased(claimed[0].lease()).await.unwrap();
        sqlite
            .fail_leased(claimed[1].lease(), "gone for good", None)
            .await
            .unwrap();
        sqlite
            .fail_leased(claimed[2].lease(), "GitLab 502", Some(Duration::ZERO))
            .await
            .unwrap();
    }

    let out = migrate(dir.path(), &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("moved 3 pending, 1 dead letters, 1 done"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("postgres@"),
        "no credentials printed: {stdout}"
    );

    let pg = PostgresQueue::connect(&url).await.unwrap();
    let stats = pg.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.in_flight, stats.dead, stats.done),
        (3, 0, 1, 1),
        "{stats:?}"
    );
    // A delivery already processed stays a duplicate after the switch.
    assert!(!pg.enqueue(event("done", None)).await.unwrap().is_new());
    // The dead letter keeps its error; the retried event its attempt and history.
    let dead = pg
        .list(ListFilter {
            state: Some(EventState::Dead),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("gone for good"));
    let claimed = pg.claim(10, Duration::from_secs(30)).await.unwrap();
    let bodies: Vec<String> = claimed
        .iter()
        .map(|c| String::from_utf8(c.body.clone()).unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![
            "{\"delivery\":\"retried\"}".to_owned(),
            "{\"delivery\":\"waiting-1\"}".to_owned()
        ],
        "oldest first, and the serialization key still holds waiting-2 back"
    );
    assert_eq!(claimed[0].attempts, 2, "the failed attempt still counts");
    let shown = pg.show(claimed[0].id).await.unwrap();
    assert_eq!(shown.history.len(), 1);
    assert_eq!(shown.history[0].error, "GitLab 502");

    // Running it again moves nothing twice.
    let again = migrate(dir.path(), &url);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains("moved 0 pending, 0 dead letters, 0 done"),
        "{stdout}"
    );
    assert!(stdout.contains("5 already there"), "{stdout}");

    // The operator commands read the PostgreSQL queue with --queue.
    let status = cocreate(&["queue", "--queue", &url, "status", "--json"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["dead"], 1, "{v}");
    assert_eq!(v["done"], 1, "{v}");
    let replay = cocreate(&["queue", "--queue", &url, "replay", "--all-dead"]);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert_eq!(pg.stats().await.unwrap().dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_while_a_serve_holds_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::postgres::fresh_database().await;
    let sqlite = SqliteQueue::open(dir.path()).unwrap();
    sqlite.enqueue(event("a", None)).await.unwrap();
    let _held = sqlite.claim(1, Duration::from_secs(600)).await.unwrap();
    let out = migrate(dir.path(), &url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("stop `serve`"), "{stderr}");
    let pg = PostgresQueue::connect(&url).await.unwrap();
    assert_eq!(pg.stats().await.unwrap().pending, 0, "nothing was copied");
}

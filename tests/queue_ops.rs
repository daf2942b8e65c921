//! The operator's `cocreate queue …` commands, run as the real binary on the data directory of a
//! real `serve` (the harness) while it runs, with the fake GitLab failing and then recovering.
//! Also `/readyz` and `/metrics` under dead letters and an old backlog.
//!
//! `cargo test --test queue_ops -- --nocapture` prints every command's output (the README's
//! "Operating the queue" shows one such run).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cocreate::queue::NewEvent;
use cocreate::queue::ReadyLimits;
use serde_json::Value;
use support::harness::*;

const WELCOME_MARKER: &str = "<!-- cocreate:welcome -->";
/// A GitLab token shape, planted in a stored event to check that `show` cuts it.
const PLANTED_TOKEN: &str = "glpat-Zx9Yw8Vu7Ts6Rq5Po4Nm";

/// Output and exit code of one `cocreate queue …` run.
struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

/// Runs the real binary on `data`, with the secrets a deployment would have in its environment.
async fn queue(data: &Path, args: &[&str]) -> Run {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cocreate"));
    cmd.arg("queue")
        .args(args)
        .env("COCREATE_DATA", data)
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("GITLAB_TOKEN", "test-token")
        .env_remove("COCREATE_SIGNING_KEY")
        .env("RUST_LOG", "warn");
    let label = format!("cocreate queue {}", args.join(" "));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run cocreate");
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    };
    println!("$ {label}\n{}(exit {})\n", run.stdout, run.code);
    run
}

async fn queue_ok(data: &Path, args: &[&str]) -> String {
    let run = queue(data, args).await;
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    run.stdout
}

async fn queue_json(data: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = queue_ok(data, &all).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

/// Moves a stored event's timestamps back, as if it had happened `days` ago.
fn age_event(data: &Path, id: i64, days: i64) {
    let conn = rusqlite::Connection::open(data.join("queue.sqlite3")).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let ms = days * 24 * 3600 * 1000;
    conn.execute(
        "UPDATE events SET received_at = received_at - ?2, dead_at = dead_at - ?2,
                done_at = done_at - ?2
         WHERE id = ?1",
        rusqlite::params![id, ms],
    )
    .expect("age event");
}

async fn get(h: &Harness, path: &str) -> (u16, String) {
    let r = h
        .http
        .get(format!("{}{path}", h.url()))
        .send()
        .await
        .expect("get");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// The wanted state of an `example-aero` MR (which has a signed CCA): the Co-Create labels next
/// to the one a person set, the organization's Contributor Success reviewer next to the one a
/// person chose, and exactly one welcome note.
fn assert_routed(h: &Harness, iid: u64) {
    let mr = h.gitlab.mr(PROJECT_ID, iid);
    assert_eq!(
        mr.labels,
        vec![
            "CCA::signed",
            "Co-Create",
            "Co-Create org::example-aero",
            "Community contribution",
            "enhancement"
        ],
        "!{iid}"
    );
    assert_eq!(mr.reviewer_ids, vec![25, 101], "!{iid}");
    let notes = h.take_notes(iid);
    assert_eq!(
        notes.len(),
        1,
        "!{iid}: exactly one welcome note: {notes:#?}"
    );
    assert!(notes[0].starts_with(WELCOME_MARKER), "{}", notes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_and_purged_while_serve_runs() {
    let h = Harness::start_with(|s| s.worker.max_attempts = 2).await;
    let data = h.settings.data_dir.clone();
    add_mr(&h.gitlab, 17, AERO_DEV.0, "Support metric units");
    h.gitlab.set_failure_rate(1.0, 7);
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.deliver_mr(mr_event(17, AERO_DEV, AERO_DEV, "open")).await;
    assert_eq!(h.wait_idle().await.dead, 2);

    // A stored event whose headers and body carry secrets (the receiver never stores
    // X-Gitlab-Token, but whatever is stored must not be printed).
    let planted = h
        .app
        .as_ref()
        .expect("running")
        .queue
        .enqueue(NewEvent {
            dedupe_key: "planted".into(),
            serial_key: None,
            kind: "Pipeline Hook".into(),
            headers: vec![
                ("x-gitlab-event".into(), "Pipeline Hook".into()),
                ("x-gitlab-token".into(), SECRET.into()),
                ("authorization".into(), format!("Bearer {PLANTED_TOKEN}")),
            ],
            body: serde_json::to_vec(&serde_json::json!({
                "object_kind": "pipeline",
                "secret_token": SECRET,
                "commit": {"message": format!("oops, pasted {SECRET} and {PLANTED_TOKEN}")},
            }))
            .expect("json"),
            received_at_ms: chrono::Utc::now().timestamp_millis(),
        })
        .await
        .expect("enqueue")
        .id();
    h.app
        .as_ref()
        .expect("running")
        .queue
        .ack(planted)
        .await
        .ok();
    h.wait_idle().await;

    // list: the two dead letters, newest first, with their errors.
    let dead = queue_json(&data, &["list", "--dead"]).await;
    let dead_ids = ids(&dead);
    assert_eq!(dead_ids.len(), 2, "{dead:#}");
    let (id16, id17) = (dead_ids[1], dead_ids[0]);
    for (event, subject) in dead
        .as_array()
        .expect("array")
        .iter()
        .zip(["vendor/product!17", "vendor/product!16"])
    {
        assert_eq!(event["state"], "dead");
        assert_eq!(event["subject"], subject);
        assert_eq!(event["attempts"], 2);
        let error = event["last_error"].as_str().expect("an error");
        assert!(error.contains("gitlab"), "{error}");
    }
    let table = queue_ok(&data, &["list", "--dead"]).await;
    assert!(table.starts_with("ID  STATE"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.contains("vendor/product!16") && table.contains("gitlab"),
        "{table}"
    );

    // show: every attempt with its error; no secret anywhere.
    let shown = queue_ok(&data, &["show", &id16.to_string()]).await;
    assert!(shown.contains("x-gitlab-event-uuid: "), "{shown}");
    assert!(
        shown.contains("  #1  ") && shown.contains("  #2  "),
        "{shown}"
    );
    assert!(shown.contains("\"iid\": 16"), "{shown}");
    for secret_run in [
        queue(&data, &["show", &planted.to_string()]).await,
        queue(&data, &["show", &planted.to_string(), "--json"]).await,
        queue(&data, &["show", &id16.to_string(), "--json"]).await,
    ] {
        assert_eq!(secret_run.code, 0, "{}", secret_run.stderr);
        for secret in [SECRET, PLANTED_TOKEN, "test-token"] {
            assert!(
                !secret_run.stdout.contains(secret),
                "`show` printed {secret}:\n{}",
                secret_run.stdout
            );
        }
    }
    let planted_shown = queue_ok(&data, &["show", &planted.to_string()]).await;
    assert!(
        planted_shown.contains("x-gitlab-token: [redacted]"),
        "{planted_shown}"
    );
    assert!(
        planted_shown.contains("authorization: [redacted]"),
        "{planted_shown}"
    );
    assert!(
        planted_shown.contains("\"secret_token\": \"[redacted]\""),
        "{planted_shown}"
    );
    assert!(
        planted_shown.contains("pasted [redacted] and glpat-[redacted]"),
        "{planted_shown}"
    );

    // status: the numbers.
    let status = queue_json(&data, &["status"]).await;
    assert_eq!(
        (
            &status["pending"],
            &status["in_flight"],
            &status["dead"],
            &status["done"]
        ),
        (&0.into(), &0.into(), &2.into(), &1.into()),
        "{status:#}"
    );
    assert_eq!(
        status["received"],
        serde_json::json!([
            {"kind": "Merge Request Hook", "count": 2},
            {"kind": "Pipeline Hook", "count": 1},
        ])
    );
    let text = queue_ok(&data, &["status"]).await;
    assert!(
        text.contains("dead letters    2 (failed for good"),
        "{text}"
    );

    // GitLab recovers; replaying every dead letter leads to exactly the wanted state.
    h.gitlab.set_failure_rate(0.0, 0);
    let replayed = queue_ok(&data, &["replay", "--all-dead"]).await;
    assert!(
        replayed.starts_with("replayed 2 dead letters: "),
        "{replayed}"
    );
    let stats = h.wait_idle().await;
    assert_eq!((stats.dead, stats.done), (0, 3), "{stats:?}");
    assert_routed(&h, 16);
    assert_routed(&h, 17);
    let shown = queue_json(&data, &["show", &id16.to_string()]).await;
    assert_eq!(shown["event"]["state"], "done");
    assert_eq!(shown["event"]["replays"], 1);
    assert_eq!(
        shown["attempts"].as_array().map(Vec::len),
        Some(2),
        "history kept"
    );

    // Replaying a processed event again writes nothing (the rules are level-triggered).
    let writes = h.gitlab.writes().len();
    queue_ok(&data, &["replay", &id16.to_string()]).await;
    h.wait_idle().await;
    assert_eq!(h.gitlab.writes().len(), writes, "{:#?}", h.gitlab.writes());
    assert!(h.take_notes(16).len() == 1);
    // The two replayed MRs reached their organization's tracking issue once each: the one the
    // worker took first opened it, the other got one link note (which is which depends on the
    // order the replays were claimed in); replaying !16 again added none.
    let links = h.take_issue_notes(1);
    let link_notes: Vec<&String> = links
        .iter()
        .filter(|n| {
            n.starts_with("<!-- cocreate:mr-link:2!16 -->")
                || n.starts_with("<!-- cocreate:mr-link:2!17 -->")
        })
        .collect();
    assert_eq!(link_notes.len(), 1, "{links:#?}");

    // Two new dead letters, one of them (and a processed event) from eight days ago.
    h.gitlab.set_failure_rate(1.0, 11);
    add_mr(&h.gitlab, 18, AERO_DEV.0, "Old failure");
    add_mr(&h.gitlab, 19, AERO_DEV.0, "New failure");
    h.deliver_mr(mr_event(18, AERO_DEV, AERO_DEV, "open")).await;
    h.deliver_mr(mr_event(19, AERO_DEV, AERO_DEV, "open")).await;
    assert_eq!(h.wait_idle().await.dead, 2);
    let dead_ids = ids(&queue_json(&data, &["list", "--dead"]).await);
    let (id18, id19) = (dead_ids[1], dead_ids[0]);
    age_event(&data, id18, 8);
    age_event(&data, id17, 8);

    // Without --yes: what would go, exit 2, nothing deleted.
    let dry = queue(&data, &["purge", "--dead", "--older-than", "7d"]).await;
    assert_eq!(dry.code, 2, "{}", dry.stderr);
    assert!(
        dry.stdout
            .starts_with("would purge 1 dead letter older than 7d:"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("vendor/product!18") && !dry.stdout.contains("!19"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("not purged: run again with --yes"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        ids(&queue_json(&data, &["list", "--dead"]).await),
        vec![id19, id18]
    );

    let purged = queue_ok(&data, &["purge", "--dead", "--older-than", "7d", "--yes"]).await;
    assert_eq!(
        purged,
        format!("purged 1 dead letter older than 7d: {id18}\n")
    );
    assert_eq!(
        ids(&queue_json(&data, &["list", "--dead"]).await),
        vec![id19]
    );
    let gone = queue(&data, &["show", &id18.to_string()]).await;
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains(&format!("no event with id {id18}")),
        "{}",
        gone.stderr
    );
    let status = queue_json(&data, &["status"]).await;
    assert_eq!(
        (&status["dead"], &status["done"]),
        (&1.into(), &3.into()),
        "the old processed event is the worker's to prune, not purge's: {status:#}"
    );
    let again = queue(&data, &["purge", "--dead", "--older-than", "7d"]).await;
    assert_eq!(again.code, 0, "nothing left to purge");

    h.gitlab.set_failure_rate(0.0, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_past_the_dead_letter_limit_and_metrics_show_it() {
    let h = Harness::start_with(|s| {
        s.worker.max_attempts = 1;
        s.worker.ready = ReadyLimits {
            max_dead: Some(0),
            max_pending_age: None,
        };
    })
    .await;
    assert_eq!(get(&h, "/readyz").await.0, 200);

    h.gitlab.set_failure_rate(1.0, 3);
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    assert_eq!(h.wait_idle().await.dead, 1);
    let (status, body) = get(&h, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        body["problems"],
        serde_json::json!(["dead letters: 1 (limit 0)"])
    );
    assert_eq!(
        (&body["dead"], &body["limits"]["max_dead"]),
        (&1.into(), &0.into())
    );
    let (_, metrics) = get(&h, "/metrics").await;
    for name in [
        "cocreate_queue_dead ",
        "cocreate_queue_oldest_pending_age_seconds ",
        "cocreate_queue_healthy ",
        "cocreate_queue_dead_limit 0",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    h.gitlab.set_failure_rate(0.0, 0);
    queue_ok(&h.settings.data_dir, &["replay", "--all-dead"]).await;
    h.wait_idle().await;
    assert_eq!(get(&h, "/readyz").await.0, 200);
    assert_routed(&h, 16);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_when_the_oldest_pending_event_is_too_old() {
    let h = Harness::start_with(|s| {
        s.worker.max_attempts = 1000;
        s.worker.ready = ReadyLimits {
            max_dead: None,
            max_pending_age: Some(Duration::from_secs(1)),
        };
    })
    .await;
    h.gitlab.set_failure_rate(1.0, 5);
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = get(&h, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("oldest pending event: "), "{body}");

    h.gitlab.set_failure_rate(0.0, 0);
    h.wait_idle().await;
    assert_eq!(get(&h, "/readyz").await.0, 200);
    assert_routed(&h, 16);
    h.stop().await;
}

/// The closing measurement of the operator issue: database size after 100,000 realistic MR
/// events (GitLab's documented 6.5 KB payload), mostly processed, and how long
/// `cocreate queue status` takes on it. Writes ~1 GB to a temporary directory.
///
/// `cargo test --release --test queue_ops -- --ignored --nocapture measure`
/// (`MEASURE_EVENTS=N` for another count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release mode"]
async fn measure_size_and_status_time_after_100k_events() {
    use std::sync::Arc;
    use std::time::Instant;

    use cocreate::queue::{Queue, SqliteQueue};
    use futures_util::future::join_all;

    let n: usize = std::env::var("MEASURE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gitlab/payloads/merge_request_open.json"
    ))
    .expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteQueue::open(dir.path()).expect("open"));
    let now = chrono::Utc::now().timestamp_millis();
    let week_ms: i64 = 7 * 24 * 3600 * 1000;

    // Receive: n events spread over the last 7 days (the retention window), 32 senders.
    let started = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let (store, body) = (Arc::clone(&store), body.clone());
            tokio::spawn(async move {
                for i in (t..n).step_by(32) {
                    let uuid = format!("00000000-0000-4000-8000-{i:012}");
                    let event = NewEvent {
                        dedupe_key: format!("uuid:{uuid}"),
                        serial_key: None,
                        kind: "Merge Request Hook".into(),
                        headers: vec![
                            ("x-gitlab-event".into(), "Merge Request Hook".into()),
                            ("x-gitlab-event-uuid".into(), uuid),
                            (
                                "x-gitlab-webhook-uuid".into(),
                                "2b5a9a62-9c7b-4b52-8f5e-1a4c0c2b7e11".into(),
                            ),
                            (
                                "x-gitlab-instance".into(),
                                "https://gitlab.example.com".into(),
                            ),
                            ("user-agent".into(), "GitLab/18.6.0".into()),
                            ("content-type".into(), "application/json".into()),
                        ],
                        body: body.clone(),
                        received_at_ms: now - week_ms + (i as i64) * week_ms / (n as i64),
                    };
                    store.enqueue(event).await.expect("enqueue");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    let receive = started.elapsed();

    // Process: every event acknowledged, one in a thousand parked as a dead letter.
    let started = Instant::now();
    loop {
        let claimed = store
            .claim(512, Duration::from_secs(300))
            .await
            .expect("claim");
        if claimed.is_empty() {
            break;
        }
        join_all(claimed.into_iter().map(|e| {
            let store = Arc::clone(&store);
            async move {
                if e.id % 1000 == 0 {
                    store.fail(e.id, "gitlab server error (500)", None).await
                } else {
                    store.ack(e.id).await
                }
            }
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("record outcome");
    }
    let process = started.elapsed();
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.done + stats.dead) as usize, n, "{stats:?}");

    let size = |name: &str| std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len());
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (db, wal) = (size("queue.sqlite3"), size("queue.sqlite3-wal"));

    // `queue status` as an operator runs it, next to the open queue (as next to `serve`).
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = queue(dir.path(), &["status"]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        times.push(started.elapsed());
    }
    times.sort();
    let started = Instant::now();
    let dead = queue(dir.path(), &["list", "--dead"]).await;
    let list_dead = started.elapsed();
    assert_eq!(dead.code, 0);
    let started = Instant::now();
    store.stats().await.expect("stats");
    let stats_call = started.elapsed();

    drop(store);
    let closed = size("queue.sqlite3") + size("queue.sqlite3-wal");
    println!(
        "MEASURE {n} events of {} bytes: received in {receive:.1?} ({:.0}/s), processed in {process:.1?} ({:.0}/s)\n\
         MEASURE database {:.1} MiB + WAL {:.1} MiB = {:.1} MiB while open; {:.1} MiB after close ({:.0} bytes/event)\n\
         MEASURE `cocreate queue status`: min {:.0?}, median {:.0?}, max {:.0?} (whole process); \
         `queue list --dead` {:.0?}; Queue::stats() {:.1?}",
        body.len(),
        n as f64 / receive.as_secs_f64(),
        n as f64 / process.as_secs_f64(),
        mib(db),
        mib(wal),
        mib(db + wal),
        mib(closed),
        closed as f64 / n as f64,
        times[0],
        times[2],
        times[4],
        list_dead,
        stats_call,
    );
}

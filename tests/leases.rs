//! Leases: an event that takes longer than its lease (a slow GitLab) is renewed by its worker,
//! not claimed and run a second time, and its attempt count stays 1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::time::Duration;

use cocreate::queue::{QueueInspect, SqliteInspector};
use support::fake_gitlab::Fault;
use support::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_slower_than_its_lease_runs_once_and_burns_no_attempt() {
    let h = Harness::start_with(|s| s.worker.lease = Duration::from_millis(300)).await;
    // Every GitLab answer takes 400 ms: the event needs several leases' time.
    for _ in 0..12 {
        h.gitlab
            .push_fault(Fault::Delay(Duration::from_millis(400)));
    }
    let r = h
        .http
        .post(format!("{}/webhook", h.url()))
        .header("X-Gitlab-Event", "Merge Request Hook")
        .header("X-Gitlab-Token", SECRET)
        .header("X-Gitlab-Event-UUID", new_uuid())
        .body(mr_event(16, AERO_DEV, AERO_DEV, "open"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let stats = h.wait_idle().await;
    assert_eq!((stats.done, stats.dead), (1, 0), "{stats:?}");
    let inspector = SqliteInspector::open(&h.settings.data_dir).expect("inspector");
    let event = inspector.show(1).await.expect("show");
    assert_eq!(
        event.summary.attempts, 1,
        "the event was claimed again while its worker was still on it"
    );
    assert!(event.history.is_empty(), "{:?}", event.history);
    // One run: the MR was read once, one welcome note.
    let mr_reads = h
        .gitlab
        .count("GET", "/api/v4/projects/2/merge_requests/16");
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
    assert!(mr_reads >= 1);
    eprintln!("MR reads: {mr_reads}");
}

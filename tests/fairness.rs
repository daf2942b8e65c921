//! Fairness: a burst of comments on one MR takes one worker slot, not all of them, so an
//! unrelated MR's event waits for the events ahead of it, not for the burst.
//!
//! `FAIRNESS_BURST` (default 120) sets the burst's size; the unrelated MR's delay is printed
//! (BENCHMARKS.md §6 runs it with `--release -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::time::Duration;

use cocreate::queue::{EventState, QueueInspect, SqliteInspector};
use support::fake_gitlab::Fault;
use support::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mrs_comment_burst_does_not_hold_up_other_mrs() {
    let burst: u64 = std::env::var("FAIRNESS_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let h = Harness::start().await;
    add_mr(&h.gitlab, 17, TELCO_DEV.0, "Unrelated change");
    // Every read of the busy MR takes 50 ms (a slow GitLab); the other MR's reads do not.
    for _ in 0..burst * 4 {
        h.gitlab.push_fault_for(
            "GET",
            "/api/v4/projects/2/merge_requests/16",
            Fault::Delay(Duration::from_millis(50)),
        );
    }
    let post = |kind: &'static str, body: Vec<u8>| {
        h.http
            .post(format!("{}/webhook", h.url()))
            .header("X-Gitlab-Event", kind)
            .header("X-Gitlab-Token", SECRET)
            .header("X-Gitlab-Event-UUID", new_uuid())
            .body(body)
            .send()
    };
    for i in 0..burst {
        let body = note_event(16, AERO_DEV.0, 7000 + i, AERO_DEV, "@cocreate-bot help");
        assert_eq!(post("Note Hook", body).await.expect("send").status(), 200);
    }
    let r = post(
        "Merge Request Hook",
        mr_event(17, TELCO_DEV, TELCO_DEV, "open"),
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 200);
    let unrelated_id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    let stats = h.wait_idle().await;
    assert_eq!(stats.dead, 0, "{stats:?}");

    let inspector = SqliteInspector::open(&h.settings.data_dir).expect("inspector");
    let unrelated = inspector.show(unrelated_id).await.expect("show").summary;
    assert_eq!(unrelated.state, EventState::Done);
    let done_at = unrelated.done_at_ms.expect("done");
    let mut burst_done_before = 0;
    for id in 1..=burst as i64 {
        let e = inspector.show(id).await.expect("show").summary;
        if e.done_at_ms.is_some_and(|t| t < done_at) {
            burst_done_before += 1;
        }
    }
    eprintln!(
        "unrelated MR event done {} ms after it was received; {burst_done_before} of {burst} burst comments were done before it",
        done_at - unrelated.received_at_ms
    );
    assert!(
        burst_done_before < burst / 2,
        "the unrelated MR's event waited for {burst_done_before} of the {burst} burst comments"
    );
    let _ = h.take_notes(16);
    let _ = h.take_notes(17);
    h.stop().await;
}

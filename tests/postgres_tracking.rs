//! Tracking issues on a shared (PostgreSQL) queue: the writes made under an organization's
//! shared lock are fenced by its lease, and each organization's tracking issue is reserved by a
//! row, so that two replicas never open two (even after a crash between the reservation and the
//! creation). In process: two "replicas" are two handler contexts with their own key locks on
//! one real PostgreSQL database, against the fake GitLab.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::sync::Arc;
use std::time::Duration;

use cocreate::handlers::{Context, KeyedLocks};
use cocreate::queue::{EventState, NewEvent, PostgresQueue, Queue, QueueInspect, SharedKeyLocks};
use cocreate::worker::{self, WorkerConfig};

use support::fake_gitlab::{FakeGitLab, Fault};
use support::harness::{self, AERO_DEV, TRACKING_PROJECT_ID};
use support::postgres::fresh_database;

/// The organization of `AERO_DEV` in the example policies.
const AERO: &str = "example-aero";
/// The tracking issues listing of the example policies' tracking project, as requested.
const TRACKING_LIST: &str = "/api/v4/projects/cocreate%2Fengagements/issues";

async fn world() -> FakeGitLab {
    let gitlab = FakeGitLab::start().await;
    harness::seed(&gitlab);
    gitlab
}

/// One replica's handler context: live against the fake, the example policies, and the key
/// locks of `queue` (as `serve --queue postgres://…` builds it).
async fn replica(gitlab: &FakeGitLab, queue: &PostgresQueue) -> Context {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ctx = support::jobs::try_context(
        gitlab,
        gitlab.token(),
        cocreate::policy::Policies::load(&root.join("policies")).expect("policies"),
        cocreate::clock::Clock::system(),
    )
    .await
    .expect("context");
    ctx.locks = KeyedLocks::shared(Arc::new(queue.key_locks()));
    ctx
}

fn mr_opened(uuid: &str, iid: u64) -> NewEvent {
    NewEvent {
        dedupe_key: uuid.to_owned(),
        kind: "Merge Request Hook".to_owned(),
        serial_key: Some(format!("mr:{iid}")),
        headers: vec![
            ("X-Gitlab-Event".to_owned(), "Merge Request Hook".to_owned()),
            ("X-Gitlab-Event-UUID".to_owned(), uuid.to_owned()),
        ],
        body: harness::mr_event(iid, AERO_DEV, AERO_DEV, "open"),
        received_at_ms: cocreate::clock::Clock::system().now_ms(),
    }
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_secs(60),
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(1),
        ..WorkerConfig::default()
    }
}

/// Claims the one due event and processes it with `ctx`, as the worker does.
async fn process_next(ctx: &Context, queue: &PostgresQueue) {
    let cfg = worker_config();
    let mut claimed = Vec::new();
    for _ in 0..200 {
        claimed = queue.claim(1, cfg.lease).await.expect("claim");
        if !claimed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ev = claimed.pop().expect("an event is due");
    worker::process(ctx, queue, &cfg, ev).await;
}

/// The engagement tracking issues in the tracking project.
fn tracking_issues(gitlab: &FakeGitLab) -> Vec<u64> {
    gitlab
        .issues(TRACKING_PROJECT_ID)
        .into_iter()
        .filter(|i| i.labels.iter().any(|l| l == "Co-Create org::example-aero"))
        .map(|i| i.iid)
        .collect()
}

#[tokio::test]
async fn a_guard_knows_when_its_lease_is_gone() {
    let url = fresh_database().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let locks = queue.key_locks();
    let guard = locks.acquire(AERO).await;
    assert!(guard.held(), "a fresh lease is held");

    // Another replica takes the row over (as after an expiry): the next renewal finds the
    // token changed and the guard stops vouching for the lease.
    sqlx::query("UPDATE key_locks SET owner = 'other', token = token + 1 WHERE key = $1")
        .bind(AERO)
        .execute(&sqlx::PgPool::connect(&url).await.expect("pool"))
        .await
        .expect("take over");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while guard.held() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the guard still claims a lease another replica holds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Lost stays lost, even though the row still exists.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!guard.held());
}

#[tokio::test]
async fn a_passed_deadline_means_lost() {
    let url = fresh_database().await;
    let clock = cocreate::clock::Clock::manual(1_000_000);
    let queue = PostgresQueue::connect_with_clock(&url, clock.clone())
        .await
        .expect("connect");
    let guard = queue.key_locks().acquire(AERO).await;
    assert!(guard.held());
    // No renewal ran (the clock jumped, as in a long pause): the deadline has passed.
    clock.advance(15_000);
    assert!(!guard.held(), "a lease past its deadline is not held");
}

#[tokio::test]
async fn a_lost_lease_writes_nothing_and_the_event_is_retried() {
    let url = fresh_database().await;
    let gitlab = world().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let ctx = replica(&gitlab, &queue).await;
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");

    queue
        .enqueue(mr_opened("fence-1", 16))
        .await
        .expect("enqueue");
    // The read of the organization's tracking issues (under its lock) stalls for longer than
    // a renewal period; meanwhile the lease is expired by SQL and another replica takes it.
    gitlab.push_fault_for("GET", TRACKING_LIST, Fault::Delay(Duration::from_secs(7)));
    let other = queue.key_locks();
    let takeover = async {
        loop {
            let row: Option<i64> = sqlx::query_scalar("SELECT token FROM key_locks WHERE key = $1")
                .bind(AERO)
                .fetch_optional(&pool)
                .await
                .expect("read key_locks");
            if row.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::query("UPDATE key_locks SET locked_until = 0 WHERE key = $1")
            .bind(AERO)
            .execute(&pool)
            .await
            .expect("expire");
        other.acquire(AERO).await
    };
    let ((), other_guard) = tokio::join!(process_next(&ctx, &queue), takeover);

    assert!(
        gitlab.writes().is_empty(),
        "a replica that lost the lease wrote to GitLab: {:?}",
        gitlab.writes()
    );
    let events = queue.list(Default::default()).await.expect("list");
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(
        ev.state,
        EventState::Pending,
        "the event is retried, not dead"
    );
    assert_eq!(ev.attempts, 1);
    let error = ev.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("no longer surely held"),
        "the failure says why: {error}"
    );

    // Once the other replica lets go, the retry reads GitLab again and writes.
    drop(other_guard);
    process_next(&ctx, &queue).await;
    let events = queue.list(Default::default()).await.expect("list");
    assert_eq!(events[0].state, EventState::Done, "{:?}", events[0]);
    assert_eq!(tracking_issues(&gitlab).len(), 1, "one tracking issue");
    assert!(
        !gitlab.notes(harness::PROJECT_ID, 16).is_empty(),
        "the MR is welcomed"
    );
}

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

// ---------------------------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------------------------

/// The tracking project of the example policies, as the reservation rows name it.
const TRACKING: &str = harness::TRACKING_PROJECT;

/// The reservation row of the example organization: (iid, reserved_by, reserved_at).
async fn reservation(pool: &sqlx::PgPool) -> Option<(Option<i64>, String, i64)> {
    sqlx::query_as(
        "SELECT iid, reserved_by, reserved_at FROM tracking_reservations
         WHERE org = $1 AND project = $2",
    )
    .bind(AERO)
    .bind(TRACKING)
    .fetch_optional(pool)
    .await
    .expect("read tracking_reservations")
}

/// A reservation without an issue, left by a replica that crashed `age` ago.
async fn crashed_reservation(pool: &sqlx::PgPool, age: Duration) {
    let at = cocreate::clock::Clock::system().now_ms() - age.as_millis() as i64;
    sqlx::query(
        "INSERT INTO tracking_reservations (org, project, iid, reserved_by, reserved_at, settles_at)
         VALUES ($1, $2, NULL, 'crashed-replica#1', $3, $3 + 60000)",
    )
    .bind(AERO)
    .bind(TRACKING)
    .bind(at)
    .execute(pool)
    .await
    .expect("insert a reservation");
}

/// The example organization's tracking issue as the bot opens it (its hidden marker first).
fn engagement_body() -> String {
    cocreate::messages::Marker::Engagement(AERO.to_owned())
        .before("Co-Create engagement of Example Aero (opened just before a crash).")
}

fn engagement_labels() -> Vec<String> {
    vec![
        "Co-Create engagement".to_owned(),
        "Co-Create org::example-aero".to_owned(),
        "Co-Create stage::active".to_owned(),
    ]
}

/// The MR link markers the bot wrote on tracking issue `iid` (description and notes).
fn links_on(gitlab: &FakeGitLab, iid: u64) -> Vec<String> {
    let issue = gitlab.issue(TRACKING_PROJECT_ID, iid);
    std::iter::once(issue.description)
        .chain(
            gitlab
                .issue_notes(TRACKING_PROJECT_ID, iid)
                .into_iter()
                .map(|n| n.body),
        )
        .flat_map(|t| {
            t.lines()
                .filter(|l| l.contains("cocreate:mr-link:"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn an_unfinished_reservation_without_an_issue_opens_exactly_one() {
    let url = fresh_database().await;
    let gitlab = world().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    crashed_reservation(&pool, Duration::from_secs(600)).await;
    let ctx = replica(&gitlab, &queue).await;

    queue
        .enqueue(mr_opened("unfinished-1", 16))
        .await
        .expect("enqueue");
    process_next(&ctx, &queue).await;

    let issues = tracking_issues(&gitlab);
    assert_eq!(issues.len(), 1, "exactly one tracking issue");
    let (iid, by, _) = reservation(&pool).await.expect("the reservation stays");
    assert_eq!(iid, Some(issues[0] as i64), "the created issue is recorded");
    assert_ne!(
        by, "crashed-replica#1",
        "taken over by the replica that created it"
    );
    let events = queue.list(Default::default()).await.expect("list");
    assert_eq!(events[0].state, EventState::Done, "{:?}", events[0]);
    assert_eq!(
        links_on(&gitlab, issues[0]).len(),
        1,
        "the MR is linked once"
    );
}

#[tokio::test]
async fn an_unfinished_reservation_whose_issue_exists_records_it_and_creates_none() {
    let url = fresh_database().await;
    let gitlab = world().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    crashed_reservation(&pool, Duration::from_secs(600)).await;
    // The crashed replica's creation landed just before it died.
    let existing = gitlab.add_issue(support::fake_gitlab::IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        project_path: TRACKING.into(),
        title: "Co-Create engagement: Example Aero".into(),
        description: engagement_body(),
        confidential: true,
        labels: engagement_labels(),
        ..Default::default()
    });
    let ctx = replica(&gitlab, &queue).await;

    // A decision made without seeing it (read before the creation landed) reaches the
    // executor: the reservation makes it look for the issue first.
    let guard = ctx.locks.lock(AERO).await;
    let create = cocreate::decide::Action::CreateIssue {
        project: TRACKING.into(),
        title: "Co-Create engagement: Example Aero".into(),
        description: engagement_body(),
        labels: engagement_labels(),
        confidential: true,
        assignee_ids: vec![],
    };
    let client = ctx.gitlab().map(|l| l.client.clone());
    let error = ctx
        .execute(Some(&guard), client.as_ref(), &[create])
        .await
        .expect_err("not created");
    drop(guard);
    assert_eq!(error.retry(), cocreate::gitlab::Retry::Transient, "{error}");
    assert!(error.to_string().contains("decided again"), "{error}");
    assert_eq!(tracking_issues(&gitlab), vec![existing], "none created");
    let (iid, _, _) = reservation(&pool).await.expect("row");
    assert_eq!(iid, Some(existing as i64), "the existing issue is recorded");

    // The MR's event then uses it: linked there, nothing opened.
    queue
        .enqueue(mr_opened("exists-1", 16))
        .await
        .expect("enqueue");
    process_next(&ctx, &queue).await;
    assert_eq!(tracking_issues(&gitlab), vec![existing], "still one");
    assert_eq!(
        links_on(&gitlab, existing).len(),
        1,
        "the MR is linked to it"
    );
}

#[tokio::test]
async fn a_young_unfinished_reservation_waits_for_the_creation_in_flight() {
    let url = fresh_database().await;
    let gitlab = world().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    // Reserved a moment ago by a replica whose request may still reach GitLab.
    crashed_reservation(&pool, Duration::from_secs(5)).await;
    let ctx = replica(&gitlab, &queue).await;

    queue
        .enqueue(mr_opened("in-flight-1", 16))
        .await
        .expect("enqueue");
    process_next(&ctx, &queue).await;

    assert!(
        tracking_issues(&gitlab).is_empty(),
        "nothing opened meanwhile"
    );
    let events = queue.list(Default::default()).await.expect("list");
    assert_eq!(events[0].state, EventState::Pending, "retried later");
    let error = events[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("may still land"), "{error}");
    // One attempt spent: the retry is due when the creation can no longer land (reserved 5 s
    // ago, a minute's window), whatever the backoff.
    let due_in =
        events[0].next_attempt_at_ms.expect("due") - cocreate::clock::Clock::system().now_ms();
    assert!((45_000..=56_000).contains(&due_in), "due in {due_in} ms");
    assert_eq!(
        reservation(&pool).await.map(|r| r.1),
        Some("crashed-replica#1".to_owned()),
        "the reservation is left to its creator"
    );
}

#[tokio::test]
async fn two_replicas_racing_for_a_new_organization_open_one_issue() {
    let url = fresh_database().await;
    let gitlab = world().await;
    harness::add_mr(&gitlab, 17, AERO_DEV.0, "Fix the seat map legend");
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    // Two replicas: their own contexts and key-lock owners on the one database.
    let (a, b) = (
        replica(&gitlab, &queue).await,
        replica(&gitlab, &queue).await,
    );
    // Every GitLab answer takes a while, so that both are in their reads at once.
    gitlab.set_latency(Some(Duration::from_millis(30)));

    queue
        .enqueue(mr_opened("race-16", 16))
        .await
        .expect("enqueue");
    queue
        .enqueue(mr_opened("race-17", 17))
        .await
        .expect("enqueue");
    tokio::join!(process_next(&a, &queue), process_next(&b, &queue));
    gitlab.set_latency(None);

    let issues = tracking_issues(&gitlab);
    assert_eq!(issues.len(), 1, "one tracking issue for the organization");
    let (iid, _, _) = reservation(&pool).await.expect("reserved");
    assert_eq!(iid, Some(issues[0] as i64), "and it is recorded");
    let events = queue.list(Default::default()).await.expect("list");
    assert!(
        events.iter().all(|e| e.state == EventState::Done),
        "{events:?}"
    );
    assert_eq!(
        links_on(&gitlab, issues[0]).len(),
        2,
        "both MRs linked to it"
    );
}

#[tokio::test]
async fn a_creation_answered_with_an_error_is_looked_for_at_once_then_made_once() {
    let url = fresh_database().await;
    let gitlab = world().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    let ctx = replica(&gitlab, &queue).await;
    // GitLab answers the creation 500 (it created nothing): no request is left in flight.
    gitlab.push_fault_for("POST", TRACKING_LIST, Fault::Status(500));

    queue
        .enqueue(mr_opened("answered-1", 16))
        .await
        .expect("enqueue");
    process_next(&ctx, &queue).await;
    assert!(tracking_issues(&gitlab).is_empty());
    let (iid, _, _) = reservation(&pool).await.expect("reserved");
    assert_eq!(iid, None, "unfinished");

    // The retry does not wait for a creation in flight: it looks, finds none, opens one.
    process_next(&ctx, &queue).await;
    let issues = tracking_issues(&gitlab);
    assert_eq!(issues.len(), 1, "exactly one");
    let (iid, _, _) = reservation(&pool).await.expect("reserved");
    assert_eq!(iid, Some(issues[0] as i64));
    let events = queue.list(Default::default()).await.expect("list");
    assert_eq!(events[0].state, EventState::Done, "{:?}", events[0]);
}

#[tokio::test]
async fn a_lock_taken_over_cannot_reserve() {
    let url = fresh_database().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    let guard = queue.key_locks().acquire(AERO).await;
    assert_eq!(
        guard
            .reservations()
            .reserve(TRACKING)
            .await
            .expect("reserve"),
        cocreate::queue::Reserved::Ours
    );
    guard
        .reservations()
        .release(TRACKING)
        .await
        .expect("release");
    assert!(reservation(&pool).await.is_none(), "released");

    // Taken over before the guard's next renewal noticed: the database refuses at once.
    sqlx::query("UPDATE key_locks SET owner = 'other', token = token + 1 WHERE key = $1")
        .bind(AERO)
        .execute(&pool)
        .await
        .expect("take over");
    let refused = guard.reservations().reserve(TRACKING).await;
    assert!(
        matches!(refused, Err(cocreate::queue::QueueError::LockLost { .. })),
        "{refused:?}"
    );
    assert!(reservation(&pool).await.is_none(), "nothing reserved");
}

#[tokio::test]
async fn a_recorded_issue_since_closed_gives_way_to_a_new_engagement() {
    let url = fresh_database().await;
    let gitlab = world().await;
    let queue = PostgresQueue::connect(&url).await.expect("connect");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    // The organization's earlier engagement: its tracking issue, recorded, then closed.
    let closed = gitlab.add_issue(support::fake_gitlab::IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        project_path: TRACKING.into(),
        title: "Co-Create engagement: Example Aero".into(),
        description: engagement_body(),
        confidential: true,
        labels: engagement_labels(),
        state: "closed".into(),
        ..Default::default()
    });
    sqlx::query(
        "INSERT INTO tracking_reservations (org, project, iid, reserved_by, reserved_at, settles_at)
         VALUES ($1, $2, $3, 'earlier-replica#1', 0, 60000)",
    )
    .bind(AERO)
    .bind(TRACKING)
    .bind(closed as i64)
    .execute(&pool)
    .await
    .expect("insert");
    let ctx = replica(&gitlab, &queue).await;

    queue
        .enqueue(mr_opened("new-engagement-1", 16))
        .await
        .expect("enqueue");
    process_next(&ctx, &queue).await;

    let opened: Vec<u64> = gitlab
        .issues(TRACKING_PROJECT_ID)
        .into_iter()
        .filter(|i| i.state == "opened")
        .map(|i| i.iid)
        .collect();
    assert_eq!(opened.len(), 1, "one new tracking issue");
    assert_ne!(opened[0], closed);
    let (iid, _, _) = reservation(&pool).await.expect("row");
    assert_eq!(iid, Some(opened[0] as i64), "the new one is recorded");
}

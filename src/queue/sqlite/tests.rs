use super::ops::PRUNE_CHUNK;
use super::schema::{DB_FILE, SCHEMA_V1, SCHEMA_VERSION};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::clock::Clock;
use crate::queue::{ClaimedEvent, Enqueued, EventId, NewEvent, Queue, QueueError, QueueStats};

use super::*;

const T0: i64 = 1_700_000_000_000;
const LEASE: Duration = Duration::from_secs(30);

fn open(dir: &Path, clock: &Clock) -> SqliteQueue {
    SqliteQueue::open_with_clock(dir, clock.clone()).expect("open queue")
}

fn event(key: &str) -> NewEvent {
    NewEvent {
        dedupe_key: key.to_owned(),
        serial_key: None,
        kind: "Merge Request Hook".to_owned(),
        headers: vec![
            ("x-gitlab-event".to_owned(), "Merge Request Hook".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ],
        body: format!("{{\"key\":\"{key}\"}}").into_bytes(),
        received_at_ms: T0 - 5,
    }
}

async fn enqueue_new(queue: &SqliteQueue, key: &str) -> EventId {
    match queue.enqueue(event(key)).await.expect("enqueue") {
        Enqueued::New(id) => id,
        other => panic!("expected New for {key}, got {other:?}"),
    }
}

fn ids(events: &[ClaimedEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// A second, read-only look at the database file, as an operator would have.
fn inspect(dir: &Path) -> Connection {
    Connection::open(dir.join(DB_FILE)).expect("open for inspection")
}

/// Events in the database file itself, ignoring the WAL (`immutable=1`).
fn events_in_database_file(dir: &Path) -> i64 {
    let uri = format!("file:{}?immutable=1", dir.join(DB_FILE).display());
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .expect("open the database file alone");
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test]
async fn once_quiet_the_wal_is_copied_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    for key in ["a", "b", "c"] {
        queue.enqueue(event(key)).await.unwrap();
    }
    // Checked every 50 ms once enqueues have stopped for 100 ms.
    let deadline = Instant::now() + Duration::from_secs(10);
    while events_in_database_file(dir.path()) < 3 {
        assert!(Instant::now() < deadline, "the WAL was never checkpointed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the queue keeps working on a rewound WAL.
    queue.enqueue(event("d")).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().pending, 4);
}

#[tokio::test]
async fn enqueue_then_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);

    let first = queue.enqueue(event("a")).await.unwrap();
    let Enqueued::New(id) = first else {
        panic!("first enqueue should be new: {first:?}")
    };
    let other = enqueue_new(&queue, "b").await;
    assert_ne!(id, other);

    let mut again = event("a");
    again.body = b"different body".to_vec();
    assert_eq!(queue.enqueue(again).await.unwrap(), Enqueued::Duplicate(id));

    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.pending, 2, "the duplicate stored nothing: {stats:?}");
    let body: Vec<u8> = inspect(dir.path())
        .query_row("SELECT body FROM events WHERE id = ?1", [id], |r| r.get(0))
        .unwrap();
    assert_eq!(body, event("a").body, "the original body is kept");

    let claimed = queue.claim(10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec![id, other]);
    assert_eq!(claimed[0].kind, "Merge Request Hook");
    assert_eq!(claimed[0].headers, event("a").headers);
    assert_eq!(claimed[0].body, event("a").body);
    assert_eq!(claimed[0].received_at_ms, T0 - 5);
    assert_eq!(claimed[0].attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_answers_only_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = Arc::new(open(dir.path(), &clock));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            queue.enqueue(event(&format!("k{i}"))).await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_new());
    }
    // Another connection sees every acknowledged event while the queue is
    // still open: each was committed before its caller was answered.
    let stored: i64 = inspect(dir.path())
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 50);
}

#[tokio::test]
async fn claim_respects_lease_max_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;
    let b = enqueue_new(&queue, "b").await;
    let c = enqueue_new(&queue, "c").await;

    assert!(queue.claim(0, LEASE).await.unwrap().is_empty());
    assert_eq!(ids(&queue.claim(2, LEASE).await.unwrap()), vec![a, b]);
    // a and b are leased: only c is left.
    assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![c]);
    assert!(queue.claim(10, LEASE).await.unwrap().is_empty());

    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight), (0, 3), "{stats:?}");

    // Just before the lease ends nothing is claimable.
    clock.advance(LEASE.as_millis() as i64 - 1);
    assert!(queue.claim(10, LEASE).await.unwrap().is_empty());

    let locked_until: i64 = inspect(dir.path())
        .query_row("SELECT locked_until FROM events WHERE id = ?1", [a], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(locked_until, T0 + LEASE.as_millis() as i64);
}

#[tokio::test]
async fn claim_respects_next_attempt_at() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;
    let b = enqueue_new(&queue, "b").await;

    let claimed = queue.claim(10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec![a, b]);
    queue
        .fail(a, "boom", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    queue.ack(b).await.unwrap();

    // The lease was cleared but the retry time has not come.
    assert!(queue.claim(10, LEASE).await.unwrap().is_empty());
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight, stats.done), (1, 0, 1));

    clock.advance(59_999);
    assert!(queue.claim(10, LEASE).await.unwrap().is_empty());
    clock.advance(1);
    let again = queue.claim(10, LEASE).await.unwrap();
    assert_eq!(ids(&again), vec![a]);
    assert_eq!(again[0].attempts, 2);

    let conn = inspect(dir.path());
    let (last_error, next): (String, i64) = conn
        .query_row(
            "SELECT last_error, next_attempt_at FROM events WHERE id = ?1",
            [a],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((last_error.as_str(), next), ("boom", T0 + 60_000));
    let history: Vec<(i64, i64, String)> = conn
        .prepare("SELECT attempt, at, error FROM attempts WHERE event_id = ?1")
        .unwrap()
        .query_map([a], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(history, vec![(1, T0, "boom".to_owned())]);
}

#[tokio::test]
async fn expired_lease_makes_event_claimable_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;

    let first = queue.claim(1, LEASE).await.unwrap();
    assert_eq!(ids(&first), vec![a]);
    assert_eq!(first[0].attempts, 1);
    // The worker "crashes" (or stalls past its lease): neither ack nor fail.
    clock.advance(LEASE.as_millis() as i64);
    let second = queue.claim(1, LEASE).await.unwrap();
    assert_eq!(ids(&second), vec![a]);
    assert_eq!(
        second[0].attempts, 1,
        "a lost lease is not a failed attempt"
    );
    assert!(second[0].lease_token > first[0].lease_token);
    assert!(queue.claim(1, LEASE).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_busy_serialization_key_never_takes_the_worker_slots() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let keyed = |key: &str, serial: &str| NewEvent {
        serial_key: Some(serial.to_owned()),
        ..event(key)
    };
    // A burst of 20 comments on one MR, then one event of another MR, then one without key.
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.push(
            queue
                .enqueue(keyed(&format!("c{i}"), "mr:2:16"))
                .await
                .unwrap()
                .id(),
        );
    }
    let other = queue.enqueue(keyed("o", "mr:2:17")).await.unwrap().id();
    let unkeyed = enqueue_new(&queue, "u").await;
    // Eight free slots: one of the burst, the other MR, the unkeyed one.
    let first = queue.claim(8, LEASE).await.unwrap();
    assert_eq!(ids(&first), vec![burst[0], other, unkeyed]);
    // While the burst's first is in flight, nothing else of its key is claimed.
    assert!(queue.claim(8, LEASE).await.unwrap().is_empty());
    for done in &first {
        queue.ack_leased(done.lease()).await.unwrap();
    }
    assert_eq!(ids(&queue.claim(8, LEASE).await.unwrap()), vec![burst[1]]);
    // An expired lease frees the key as well (the event is claimable again, first).
    clock.advance(LEASE.as_millis() as i64);
    assert_eq!(ids(&queue.claim(8, LEASE).await.unwrap()), vec![burst[1]]);
}

#[tokio::test]
async fn only_the_latest_claim_may_renew_ack_fail_or_release() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;
    let first = queue.claim(1, LEASE).await.unwrap().remove(0);
    // Renewing keeps the event from being claimed past the first lease.
    clock.advance(LEASE.as_millis() as i64 - 1);
    queue.renew(first.lease(), LEASE).await.unwrap();
    clock.advance(LEASE.as_millis() as i64 - 1);
    assert!(queue.claim(1, LEASE).await.unwrap().is_empty());
    // The first worker stalls past its lease; a second claims the event.
    clock.advance(1);
    let second = queue.claim(1, LEASE).await.unwrap().remove(0);
    assert_eq!(second.id, a);
    let stale = first.lease();
    for refused in [
        queue.renew(stale, LEASE).await,
        queue.ack_leased(stale).await,
        queue.fail_leased(stale, "late", None).await,
        queue.release_leased(stale).await,
    ] {
        assert!(
            matches!(refused, Err(QueueError::LeaseLost { id, .. }) if id == a),
            "{refused:?}"
        );
    }
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.done, stats.dead), (1, 0, 0));
    // The current holder finishes the event; afterwards a stale ack is a no-op.
    queue.ack_leased(second.lease()).await.unwrap();
    queue.ack_leased(stale).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().done, 1);
    assert!(matches!(
        queue.renew(second.lease(), LEASE).await,
        Err(QueueError::LeaseLost { .. })
    ));
}

#[tokio::test]
async fn fail_without_retry_is_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;
    let b = enqueue_new(&queue, "b").await;
    queue.claim(10, LEASE).await.unwrap();
    clock.advance(10);
    queue.fail(a, "permanent: 404", None).await.unwrap();

    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            pending: 0,
            in_flight: 1,
            dead: 1,
            done: 0,
            oldest_pending_age_ms: Some(15),
        }
    );
    // Dead events are never claimed again, even after the lease.
    clock.advance(LEASE.as_millis() as i64);
    assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![b]);

    let (id, key, error, dead_at, attempts): (i64, String, String, i64, i64) = inspect(dir.path())
        .query_row(
            "SELECT id, dedupe_key, last_error, dead_at, attempts FROM dead_letters",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (id, key.as_str(), error.as_str(), dead_at, attempts),
        (a, "a", "permanent: 404", T0 + 10, 1)
    );

    // Later outcomes for a dead event change nothing.
    queue.ack(a).await.unwrap();
    queue.fail(a, "again", Some(Duration::ZERO)).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().dead, 1);
}

#[tokio::test]
async fn release_does_not_count_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;

    assert_eq!(queue.claim(1, LEASE).await.unwrap()[0].attempts, 1);
    queue.release(a).await.unwrap();
    // Claimable at once (lease cleared), still on its first attempt.
    let again = queue.claim(1, LEASE).await.unwrap();
    assert_eq!(ids(&again), vec![a]);
    assert_eq!(again[0].attempts, 1);
    queue.release(a).await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight), (1, 0));
    let attempts: i64 = inspect(dir.path())
        .query_row("SELECT attempts FROM events WHERE id = ?1", [a], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(attempts, 0);
}

#[tokio::test]
async fn reopen_keeps_pending_events() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let (a, b, c) = {
        let queue = open(dir.path(), &clock);
        let a = enqueue_new(&queue, "a").await;
        let b = enqueue_new(&queue, "b").await;
        let c = enqueue_new(&queue, "c").await;
        assert_eq!(ids(&queue.claim(1, LEASE).await.unwrap()), vec![a]);
        queue.ack(a).await.unwrap();
        (a, b, c)
    }; // dropped: writer thread exits, database closed

    let queue = open(dir.path(), &clock);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.done), (2, 1), "{stats:?}");
    assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![b, c]);
    assert_eq!(
        queue.enqueue(event("a")).await.unwrap(),
        Enqueued::Duplicate(a),
        "dedupe survives a restart"
    );
    let d = enqueue_new(&queue, "d").await;
    assert!(d > c, "ids are not reused");

    let version: i64 = inspect(dir.path())
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = inspect(dir.path())
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn open_creates_missing_directories_and_rejects_newer_schema() {
    let root = tempfile::tempdir().unwrap();
    let nested = root.path().join("x").join("y");
    let clock = Clock::manual(T0);
    drop(open(&nested, &clock));
    assert!(nested.join(DB_FILE).is_file());

    inspect(&nested)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    match SqliteQueue::open_with_clock(&nested, clock.clone()) {
        Err(QueueError::SchemaTooNew { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn a_version_1_database_is_migrated_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO events (dedupe_key, kind, headers, body, received_at, state,
                                 attempts, next_attempt_at)
             VALUES ('old', 'Merge Request Hook', '[]', x'7b7d', ?1, 'pending', 0, ?1)",
            [T0 - 5],
        )
        .unwrap();
    }
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.oldest_pending_age_ms), (1, Some(5)));
    let claimed = queue.claim(10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let conn = inspect(dir.path());
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let replays: i64 = conn
        .query_row("SELECT replays FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!((version, replays), (SCHEMA_VERSION, 0));
}

#[tokio::test]
async fn acked_events_are_not_claimed_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;
    queue.claim(1, LEASE).await.unwrap();
    clock.advance(7);
    queue.ack(a).await.unwrap();
    queue.ack(a).await.unwrap(); // idempotent

    clock.advance(10 * LEASE.as_millis() as i64);
    assert!(queue.claim(10, LEASE).await.unwrap().is_empty());
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            done: 1,
            ..QueueStats::default()
        }
    );
    let (done_at, locked): (i64, Option<i64>) = inspect(dir.path())
        .query_row(
            "SELECT done_at, locked_until FROM events WHERE id = ?1",
            [a],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((done_at, locked), (T0 + 7, None));
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    assert!(matches!(
        queue.ack(42).await,
        Err(QueueError::NotFound { op: "ack", id: 42 })
    ));
    assert!(matches!(
        queue.fail(42, "x", None).await,
        Err(QueueError::NotFound { op: "fail", id: 42 })
    ));
    assert!(matches!(
        queue.release(42).await,
        Err(QueueError::NotFound {
            op: "release",
            id: 42
        })
    ));
}

#[tokio::test]
async fn prune_done_deletes_only_old_done_events() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let retention = Duration::from_secs(3600);

    let old_done = enqueue_new(&queue, "old-done").await;
    let old_dead = enqueue_new(&queue, "old-dead").await;
    let old_pending = enqueue_new(&queue, "old-pending").await;
    queue.claim(2, LEASE).await.unwrap();
    queue.ack(old_done).await.unwrap();
    queue.fail(old_dead, "nope", None).await.unwrap();

    clock.advance(retention.as_millis() as i64 - 1000);
    let new_done = enqueue_new(&queue, "new-done").await;
    let claimed = queue.claim(10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec![old_pending, new_done]);
    queue.ack(new_done).await.unwrap();
    queue.release(old_pending).await.unwrap();

    clock.advance(1001);
    assert_eq!(queue.prune_done(retention).await.unwrap(), 1);
    assert_eq!(queue.prune_done(retention).await.unwrap(), 0);

    let conn = inspect(dir.path());
    let remaining: Vec<i64> = conn
        .prepare("SELECT id FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(remaining, vec![old_dead, old_pending, new_done]);
    let dead_history: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM attempts WHERE event_id = ?1",
            [old_dead],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dead_history, 1, "history of kept events stays");

    clock.advance(retention.as_millis() as i64);
    assert_eq!(queue.prune_done(retention).await.unwrap(), 1);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.done, stats.dead), (1, 0, 1));
}

#[tokio::test]
async fn prune_done_works_in_chunks_and_removes_history() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = Arc::new(open(dir.path(), &clock));
    let total = (PRUNE_CHUNK as usize) * 2 + 37;
    let mut tasks = Vec::new();
    for i in 0..total {
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            queue.enqueue(event(&format!("e{i}"))).await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_new());
    }
    let claimed = queue.claim(total, LEASE).await.unwrap();
    assert_eq!(claimed.len(), total);
    for e in &claimed {
        queue
            .fail(e.id, "transient", Some(Duration::ZERO))
            .await
            .unwrap();
    }
    let claimed = queue.claim(total, LEASE).await.unwrap();
    for e in &claimed {
        queue.ack(e.id).await.unwrap();
    }
    clock.advance(10);
    let deleted = queue.prune_done(Duration::from_millis(5)).await.unwrap();
    assert_eq!(deleted, total as u64);
    let history: i64 = inspect(dir.path())
        .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(history, 0, "attempt history is deleted with its event");
}

#[tokio::test]
async fn stored_errors_never_hold_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock).redacting(crate::redact::Redactor::with_known([
        "configured-secret-4f9a2c7e".to_owned(),
    ]));
    let a = enqueue_new(&queue, "a").await;
    let claimed = queue.claim(1, LEASE).await.unwrap().remove(0);
    let echoed = "gitlab server error (500): {\"message\":\"bad token configured-secret-4f9a2c7e or glpat-AbCdEf123456\"}";
    queue
        .fail_leased(claimed.lease(), echoed, Some(Duration::ZERO))
        .await
        .unwrap();
    let conn = inspect(dir.path());
    let (last_error,): (String,) = conn
        .query_row("SELECT last_error FROM events WHERE id = ?1", [a], |r| {
            Ok((r.get(0)?,))
        })
        .unwrap();
    let history: String = conn
        .query_row("SELECT error FROM attempts WHERE event_id = ?1", [a], |r| {
            r.get(0)
        })
        .unwrap();
    for stored in [&last_error, &history] {
        assert!(!stored.contains("configured-secret-4f9a2c7e"), "{stored}");
        assert!(!stored.contains("AbCdEf123456"), "{stored}");
        assert!(stored.contains("gitlab server error (500)"), "{stored}");
    }
}

#[test]
fn errors_keep_their_cause() {
    let full = QueueError::Sqlite {
        op: "claim",
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ),
    };
    assert_eq!(
        full.to_string(),
        "queue claim failed: Error code 13: Insertion failed because database is full"
    );
}

#[tokio::test]
async fn ping_writes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    queue.ping(0).await.unwrap();
    queue.ping(4096).await.unwrap();
    let probe: i64 = inspect(dir.path())
        .query_row(
            "SELECT length(value) FROM meta WHERE key = 'probe'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(probe, 4096);
    queue.ping(0).await.unwrap();
    let value: String = inspect(dir.path())
        .query_row(
            "SELECT value FROM meta WHERE key = 'last_ping_at'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(value, clock.now_ms().to_string());
}

#[tokio::test]
async fn corrupt_headers_go_to_dead_letters_instead_of_blocking_claims() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    let a = enqueue_new(&queue, "a").await;
    let b = enqueue_new(&queue, "b").await;
    inspect(dir.path())
        .execute("UPDATE events SET headers = 'not json' WHERE id = ?1", [a])
        .unwrap();
    assert_eq!(ids(&queue.claim(10, LEASE).await.unwrap()), vec![b]);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.dead, stats.in_flight, stats.pending), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_get_distinct_ids_then_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = Arc::new(open(dir.path(), &clock));

    let round = |queue: Arc<SqliteQueue>| async move {
        let mut tasks = Vec::new();
        for i in 0..200 {
            let queue = Arc::clone(&queue);
            tasks.push(tokio::spawn(async move {
                (i, queue.enqueue(event(&format!("key-{i}"))).await)
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            let (i, result) = task.await.expect("task");
            results.push((i, result.expect("enqueue")));
        }
        results
    };

    let first = round(Arc::clone(&queue)).await;
    let mut by_key = std::collections::HashMap::new();
    for (i, result) in &first {
        let Enqueued::New(id) = result else {
            panic!("key-{i}: expected New, got {result:?}")
        };
        by_key.insert(*i, *id);
    }
    let distinct: HashSet<EventId> = by_key.values().copied().collect();
    assert_eq!(distinct.len(), 200);

    let second = round(Arc::clone(&queue)).await;
    for (i, result) in &second {
        assert_eq!(*result, Enqueued::Duplicate(by_key[i]), "key-{i}");
    }
    assert_eq!(queue.stats().await.unwrap().pending, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_in_one_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = Arc::new(open(dir.path(), &clock));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(
            async move { queue.enqueue(event("same")).await },
        ));
    }
    let mut new = Vec::new();
    let mut duplicate_of = HashSet::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Enqueued::New(id) => new.push(id),
            Enqueued::Duplicate(id) => {
                duplicate_of.insert(id);
            }
        }
    }
    assert_eq!(new.len(), 1, "exactly one caller stored it");
    assert!(duplicate_of.iter().all(|id| *id == new[0]));
    assert_eq!(queue.stats().await.unwrap().pending, 1);
}

#[tokio::test]
async fn dropping_the_queue_stops_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = open(dir.path(), &clock);
    enqueue_new(&queue, "a").await;
    drop(queue); // joins the writer; would hang if it did not exit
                 // With the writer gone and the connection closed, the WAL was
                 // checkpointed and removed.
    assert!(!dir.path().join("queue.sqlite3-wal").exists());
}

/// Throughput check: `cargo test --release -- --ignored throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run in release mode"]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(SqliteQueue::open(dir.path()).unwrap());
    let per_task: usize = std::env::var("PER_TASK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let body_size: usize = std::env::var("BODY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let concurrency = 64;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let mut e = event(&format!("{t}-{i}"));
                e.body = vec![b'x'; body_size];
                queue.enqueue(e).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let rate = (per_task * concurrency) as f64 / elapsed.as_secs_f64();
    let wal = std::fs::metadata(dir.path().join("queue.sqlite3-wal")).map_or(0, |m| m.len());
    println!(
        "{} enqueues of {body_size} bytes in {elapsed:?}: {rate:.0}/s (WAL now {} KiB)",
        per_task * concurrency,
        wal / 1024
    );
    assert!(rate >= 5000.0, "{rate:.0}/s");
}

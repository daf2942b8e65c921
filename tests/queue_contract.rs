//! One contract for the `Queue` and `QueueInspect` traits, run against both implementations:
//! the SQLite queue in a temporary directory and the PostgreSQL queue in a fresh database of the
//! server named by `COCREATE_TEST_POSTGRES_URL` (see tests/support/postgres.rs; never skipped).
//!
//! Each behaviour is one generic function; the `contract!` macro makes a `sqlite::NAME` and a
//! `postgres::NAME` test of it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::sync::Arc;
use std::time::Duration;

use cocreate::clock::Clock;
use cocreate::queue::cursor::{Cursors, RecoverCursors};
use cocreate::queue::{
    ClaimedEvent, Enqueued, EventId, EventState, ListFilter, NewEvent, PostgresQueue, Queue,
    QueueError, QueueInspect, SqliteInspector, SqliteQueue,
};

const T0: i64 = 1_700_000_000_000;
const LEASE: Duration = Duration::from_secs(30);

/// A queue under test, its inspector, and the clock both read.
struct Subject {
    queue: Arc<dyn Queue>,
    inspect: Arc<dyn QueueInspect>,
    clock: Clock,
    /// Opens a second handle on the same storage (another replica, or a restart).
    reopen: Reopen,
    _dir: Option<tempfile::TempDir>,
}

enum Reopen {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Subject {
    async fn another_handle(&self) -> Arc<dyn Queue> {
        match &self.reopen {
            Reopen::Sqlite(dir) => {
                Arc::new(SqliteQueue::open_with_clock(dir, self.clock.clone()).unwrap())
            }
            Reopen::Postgres(url) => Arc::new(
                PostgresQueue::connect_with_clock(url, self.clock.clone())
                    .await
                    .unwrap(),
            ),
        }
    }
}

impl Subject {
    /// The recover cursors kept with this queue, through a fresh handle (another machine's
    /// `recover`, or the next run).
    async fn cursors(&self) -> Box<dyn RecoverCursors> {
        match &self.reopen {
            Reopen::Sqlite(dir) => Box::new(Cursors::open(dir).unwrap()),
            Reopen::Postgres(url) => Box::new(PostgresQueue::connect(url).await.unwrap()),
        }
    }
}

async fn sqlite() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let queue = SqliteQueue::open_with_clock(dir.path(), clock.clone()).unwrap();
    let inspect = SqliteInspector::open_with_clock(dir.path(), clock.clone()).unwrap();
    Subject {
        queue: Arc::new(queue),
        inspect: Arc::new(inspect),
        clock,
        reopen: Reopen::Sqlite(dir.path().to_path_buf()),
        _dir: Some(dir),
    }
}

async fn postgres() -> Subject {
    let url = support::postgres::fresh_database().await;
    let clock = Clock::manual(T0);
    let queue = Arc::new(
        PostgresQueue::connect_with_clock(&url, clock.clone())
            .await
            .unwrap(),
    );
    Subject {
        queue: queue.clone(),
        inspect: queue,
        clock,
        reopen: Reopen::Postgres(url),
        _dir: None,
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::postgres().await).await;
                }
            )*
        }
    };
}

contract!(
    dedupe_stores_one_event_per_key,
    claims_are_oldest_first_within_max_and_lease,
    an_expired_lease_makes_the_event_claimable_without_burning_an_attempt,
    only_the_latest_claim_may_renew_ack_fail_or_release,
    one_key_is_never_in_flight_twice_and_its_burst_never_fills_the_slots,
    two_handles_never_claim_one_event_or_one_key_at_once,
    retries_wait_and_failures_for_good_become_dead_letters,
    retention_prunes_only_old_done_events,
    replay_brings_dead_letters_back_and_refuses_in_flight,
    stats_and_status_count_every_state,
    release_gives_the_event_back_uncounted,
    purge_deletes_only_old_dead_letters,
    a_burst_from_two_handles_stores_each_key_once_and_names_it_to_every_duplicate,
    recover_cursors_survive_a_reopen_and_never_go_back,
);

fn event(key: &str, serial: Option<&str>) -> NewEvent {
    NewEvent {
        dedupe_key: key.to_owned(),
        kind: "Merge Request Hook".to_owned(),
        serial_key: serial.map(str::to_owned),
        headers: vec![
            ("X-Gitlab-Event".to_owned(), "Merge Request Hook".to_owned()),
            ("X-Gitlab-Event-UUID".to_owned(), key.to_owned()),
        ],
        body: format!("{{\"delivery\":\"{key}\"}}").into_bytes(),
        received_at_ms: T0 - 5,
    }
}

async fn enqueue(s: &Subject, key: &str, serial: Option<&str>) -> EventId {
    match s.queue.enqueue(event(key, serial)).await.unwrap() {
        Enqueued::New(id) => id,
        other => panic!("{key} was not new: {other:?}"),
    }
}

fn ids(events: &[ClaimedEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

async fn dedupe_stores_one_event_per_key(s: Subject) {
    let a = enqueue(&s, "a", None).await;
    let b = enqueue(&s, "b", None).await;
    assert!(b > a, "ids grow");
    let mut again = event("a", None);
    again.body = b"a different body".to_vec();
    assert_eq!(
        s.queue.enqueue(again).await.unwrap(),
        Enqueued::Duplicate(a)
    );
    assert_eq!(s.queue.stats().await.unwrap().pending, 2);
    let claimed = s.queue.claim(10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec![a, b]);
    assert_eq!(
        claimed[0].body,
        event("a", None).body,
        "the first body is kept"
    );
    assert_eq!(claimed[0].headers, event("a", None).headers);
    assert_eq!(claimed[0].kind, "Merge Request Hook");
    assert_eq!(claimed[0].received_at_ms, T0 - 5);
    assert_eq!(claimed[0].attempts, 1);
    // A done event still dedupes (until retention prunes it).
    s.queue.ack_leased(claimed[0].lease()).await.unwrap();
    assert_eq!(
        s.queue.enqueue(event("a", None)).await.unwrap(),
        Enqueued::Duplicate(a)
    );
    // Many concurrent enqueues of the same key: exactly one is new.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let queue = s.queue.clone();
        tasks.push(tokio::spawn(async move {
            queue.enqueue(event("c", None)).await
        }));
    }
    let mut new = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().is_new() {
            new += 1;
        }
    }
    assert_eq!(new, 1);
}

/// Two replicas' receivers at once, every delivery sent twice and some keys carrying bytes a
/// database may refuse in text (a NUL in the serialization key, from a hostile payload): each
/// key is stored once, every duplicate answer names the stored event, and no delivery's
/// neighbour in a group commit is refused because of it.
async fn a_burst_from_two_handles_stores_each_key_once_and_names_it_to_every_duplicate(s: Subject) {
    let other = s.another_handle().await;
    let mut tasks = Vec::new();
    for round in 0..2 {
        for i in 0..60 {
            let queue = if (i + round) % 2 == 0 {
                s.queue.clone()
            } else {
                other.clone()
            };
            let serial = if i % 10 == 0 {
                format!("mr:evil\u{0}{i}")
            } else {
                format!("mr:{}", i % 7)
            };
            tasks.push(tokio::spawn(async move {
                let outcome = queue
                    .enqueue(event(&format!("burst-{i}"), Some(&serial)))
                    .await;
                (i, outcome)
            }));
        }
    }
    let mut stored: std::collections::HashMap<usize, EventId> = Default::default();
    let mut duplicates = Vec::new();
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        match outcome.unwrap_or_else(|e| panic!("delivery {i} refused: {e}")) {
            Enqueued::New(id) => assert!(stored.insert(i, id).is_none(), "{i} stored twice"),
            Enqueued::Duplicate(id) => duplicates.push((i, id)),
        }
    }
    assert_eq!(stored.len(), 60, "every key stored once");
    assert_eq!(duplicates.len(), 60);
    for (i, id) in duplicates {
        assert_eq!(
            stored[&i], id,
            "the duplicate of {i} names its stored event"
        );
    }
    let stats = s.queue.stats().await.unwrap();
    assert_eq!(stats.pending, 60);
    // Every stored event can be claimed and acknowledged (the keys with a NUL too).
    let mut done = 0;
    while done < 60 {
        let claimed = s.queue.claim(60, LEASE).await.unwrap();
        assert!(!claimed.is_empty(), "{done} of 60 claimable");
        for c in &claimed {
            s.queue.ack_leased(c.lease()).await.unwrap();
        }
        done += claimed.len();
    }
}

async fn claims_are_oldest_first_within_max_and_lease(s: Subject) {
    let a = enqueue(&s, "a", None).await;
    let b = enqueue(&s, "b", None).await;
    let c = enqueue(&s, "c", None).await;
    assert!(s.queue.claim(0, LEASE).await.unwrap().is_empty());
    assert_eq!(ids(&s.queue.claim(2, LEASE).await.unwrap()), vec![a, b]);
    assert_eq!(ids(&s.queue.claim(10, LEASE).await.unwrap()), vec![c]);
    assert!(s.queue.claim(10, LEASE).await.unwrap().is_empty());
    let stats = s.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight), (0, 3), "{stats:?}");
    let shown = s.inspect.show(a).await.unwrap();
    assert_eq!(shown.summary.state, EventState::InFlight);
    assert_eq!(shown.summary.locked_until_ms, Some(T0 + 30_000));
}

async fn an_expired_lease_makes_the_event_claimable_without_burning_an_attempt(s: Subject) {
    let a = enqueue(&s, "a", Some("mr:1")).await;
    let first = s.queue.claim(1, LEASE).await.unwrap();
    assert_eq!(ids(&first), vec![a]);
    s.clock.advance(29_999);
    assert!(s.queue.claim(1, LEASE).await.unwrap().is_empty());
    s.clock.advance(1);
    let second = s.queue.claim(1, LEASE).await.unwrap();
    assert_eq!(
        ids(&second),
        vec![a],
        "the key's lease expired with the event's"
    );
    assert_eq!(
        second[0].attempts, 1,
        "a lost lease is not a failed attempt"
    );
    assert!(second[0].lease_token > first[0].lease_token);
    // The worker that lost it renews: refused.
    assert!(matches!(
        s.queue.renew(first[0].lease(), LEASE).await,
        Err(QueueError::LeaseLost { .. })
    ));
    s.queue.renew(second[0].lease(), LEASE).await.unwrap();
    s.clock.advance(29_999);
    assert!(
        s.queue.claim(1, LEASE).await.unwrap().is_empty(),
        "a renewed lease holds"
    );
}

async fn only_the_latest_claim_may_renew_ack_fail_or_release(s: Subject) {
    let a = enqueue(&s, "a", Some("mr:1")).await;
    let first = s.queue.claim(1, LEASE).await.unwrap().remove(0);
    s.clock.advance(31_000);
    let second = s.queue.claim(1, LEASE).await.unwrap().remove(0);
    assert_eq!(second.id, a);
    for result in [
        s.queue.ack_leased(first.lease()).await,
        s.queue.fail_leased(first.lease(), "late", None).await,
        s.queue.release_leased(first.lease()).await,
        s.queue.renew(first.lease(), LEASE).await,
    ] {
        assert!(
            matches!(result, Err(QueueError::LeaseLost { .. })),
            "{result:?}"
        );
    }
    let stats = s.queue.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.done, stats.dead), (1, 0, 0));
    s.queue.ack_leased(second.lease()).await.unwrap();
    assert_eq!(s.queue.stats().await.unwrap().done, 1);
    // Acking again is a no-op; an unknown id is NotFound.
    s.queue.ack_leased(second.lease()).await.unwrap();
    assert!(matches!(
        s.queue.ack(a + 1000).await,
        Err(QueueError::NotFound { .. })
    ));
}

async fn one_key_is_never_in_flight_twice_and_its_burst_never_fills_the_slots(s: Subject) {
    let mut burst = Vec::new();
    for i in 0..40 {
        burst.push(enqueue(&s, &format!("burst-{i}"), Some("mr:1")).await);
    }
    let other = enqueue(&s, "other", Some("mr:2")).await;
    let unkeyed = enqueue(&s, "unkeyed", None).await;
    let first = s.queue.claim(8, LEASE).await.unwrap();
    assert_eq!(ids(&first), vec![burst[0], other, unkeyed]);
    assert!(s.queue.claim(8, LEASE).await.unwrap().is_empty());
    // The key is free again once its event is acknowledged; the next of the burst comes.
    s.queue.ack_leased(first[0].lease()).await.unwrap();
    let next = s.queue.claim(8, LEASE).await.unwrap();
    assert_eq!(ids(&next), vec![burst[1]]);
    // A failed attempt (retry later) frees the key too.
    s.queue
        .fail_leased(next[0].lease(), "boom", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(ids(&s.queue.claim(8, LEASE).await.unwrap()), vec![burst[2]]);
}

async fn two_handles_never_claim_one_event_or_one_key_at_once(s: Subject) {
    let replica = s.another_handle().await;
    let mut keyed = std::collections::HashMap::new();
    for i in 0..60 {
        let key = format!("mr:{}", i % 6);
        let id = enqueue(&s, &format!("e{i}"), Some(&key)).await;
        keyed.insert(id, key);
    }
    let (mine, theirs) = tokio::join!(
        async {
            let mut all = Vec::new();
            for _ in 0..4 {
                all.extend(s.queue.claim(4, LEASE).await.unwrap());
            }
            all
        },
        async {
            let mut all = Vec::new();
            for _ in 0..4 {
                all.extend(replica.claim(4, LEASE).await.unwrap());
            }
            all
        }
    );
    let all: Vec<EventId> = ids(&mine).into_iter().chain(ids(&theirs)).collect();
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "an event was claimed twice: {all:?}"
    );
    let keys: std::collections::HashSet<_> = all.iter().map(|id| keyed[id].clone()).collect();
    assert_eq!(
        keys.len(),
        all.len(),
        "a key was in flight twice across the two handles: {all:?}"
    );
    assert_eq!(all.len(), 6, "every key was taken once: {all:?}");
}

async fn retries_wait_and_failures_for_good_become_dead_letters(s: Subject) {
    let a = enqueue(&s, "a", None).await;
    let b = enqueue(&s, "b", None).await;
    let claimed = s.queue.claim(2, LEASE).await.unwrap();
    s.queue
        .fail_leased(claimed[0].lease(), "boom", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    s.queue
        .fail_leased(claimed[1].lease(), "gone for good", None)
        .await
        .unwrap();
    assert!(s.queue.claim(10, LEASE).await.unwrap().is_empty());
    s.clock.advance(60_000);
    let again = s.queue.claim(10, LEASE).await.unwrap();
    assert_eq!(ids(&again), vec![a]);
    assert_eq!(again[0].attempts, 2);
    let dead = s
        .inspect
        .list(ListFilter {
            state: Some(EventState::Dead),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b]);
    assert_eq!(dead[0].last_error.as_deref(), Some("gone for good"));
    assert_eq!(dead[0].dead_at_ms, Some(T0));
    let shown = s.inspect.show(a).await.unwrap();
    assert_eq!(shown.history.len(), 1);
    assert_eq!(
        (
            shown.history[0].attempt,
            shown.history[0].at_ms,
            shown.history[0].error.as_str()
        ),
        (1, T0, "boom")
    );
    assert_eq!(shown.dedupe_key, "a");
    assert_eq!(shown.headers, event("a", None).headers);
    // Failing a dead event again is a no-op.
    s.queue.fail(b, "again", None).await.unwrap();
    assert_eq!(s.queue.stats().await.unwrap().dead, 1);
}

async fn retention_prunes_only_old_done_events(s: Subject) {
    let a = enqueue(&s, "a", None).await;
    let b = enqueue(&s, "b", None).await;
    let c = enqueue(&s, "c", None).await;
    let claimed = s.queue.claim(3, LEASE).await.unwrap();
    s.queue.ack_leased(claimed[0].lease()).await.unwrap();
    s.queue
        .fail_leased(claimed[2].lease(), "x", None)
        .await
        .unwrap();
    s.clock.advance(10_000);
    s.queue.ack_leased(claimed[1].lease()).await.unwrap();
    // a is done 10 s ago, b just now, c dead.
    assert_eq!(s.queue.prune_done(Duration::from_secs(5)).await.unwrap(), 1);
    assert!(matches!(
        s.inspect.show(a).await,
        Err(QueueError::NotFound { .. })
    ));
    assert_eq!(
        s.inspect.show(b).await.unwrap().summary.state,
        EventState::Done
    );
    assert_eq!(
        s.inspect.show(c).await.unwrap().summary.state,
        EventState::Dead
    );
    // Pruned: the key is new again.
    assert!(s.queue.enqueue(event("a", None)).await.unwrap().is_new());
    assert!(!s.queue.enqueue(event("b", None)).await.unwrap().is_new());
}

async fn replay_brings_dead_letters_back_and_refuses_in_flight(s: Subject) {
    let a = enqueue(&s, "a", None).await;
    let b = enqueue(&s, "b", None).await;
    let claimed = s.queue.claim(2, LEASE).await.unwrap();
    s.queue
        .fail_leased(claimed[0].lease(), "dead", None)
        .await
        .unwrap();
    assert!(matches!(
        s.inspect.replay(b).await,
        Err(QueueError::InFlight { .. })
    ));
    let replayed = s.inspect.replay(a).await.unwrap();
    assert_eq!(replayed.from, EventState::Dead);
    let again = s.queue.claim(10, LEASE).await.unwrap();
    assert_eq!(ids(&again), vec![a]);
    assert_eq!(again[0].attempts, 1, "attempts reset");
    s.queue
        .fail_leased(again[0].lease(), "dead again", None)
        .await
        .unwrap();
    s.queue
        .fail_leased(claimed[1].lease(), "dead too", None)
        .await
        .unwrap();
    assert_eq!(s.inspect.replay_all_dead().await.unwrap(), vec![a, b]);
    let summary = s.inspect.show(a).await.unwrap().summary;
    assert_eq!((summary.state, summary.replays), (EventState::Pending, 2));
    assert_eq!(summary.last_error.as_deref(), Some("dead again"));
    assert!(matches!(
        s.inspect.replay(a + 1000).await,
        Err(QueueError::NotFound { .. })
    ));
}

async fn stats_and_status_count_every_state(s: Subject) {
    for key in ["a", "b", "c", "d"] {
        enqueue(&s, key, None).await;
    }
    let claimed = s.queue.claim(3, LEASE).await.unwrap();
    s.queue.ack_leased(claimed[0].lease()).await.unwrap();
    s.queue
        .fail_leased(claimed[1].lease(), "x", None)
        .await
        .unwrap();
    s.clock.advance(1_000);
    let stats = s.queue.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.in_flight, stats.dead, stats.done),
        (1, 1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.oldest_pending_age_ms, Some(1_005));
    let status = s.inspect.status(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(status.stats, stats);
    assert_eq!(status.received.len(), 1);
    assert_eq!(status.received[0].count, 4);
    assert!(status.storage.is_some_and(|size| size.database_bytes > 0));
    s.queue.ping(0).await.unwrap();
    s.queue.ping(4096).await.unwrap();
}

async fn release_gives_the_event_back_uncounted(s: Subject) {
    let a = enqueue(&s, "a", Some("mr:1")).await;
    let _b = enqueue(&s, "b", Some("mr:1")).await;
    let first = s.queue.claim(5, LEASE).await.unwrap();
    assert_eq!(ids(&first), vec![a]);
    s.queue.release_leased(first[0].lease()).await.unwrap();
    let again = s.queue.claim(1, LEASE).await.unwrap();
    assert_eq!(
        ids(&again),
        vec![a],
        "released, the oldest comes first again"
    );
    assert_eq!(again[0].attempts, 1, "the released attempt did not count");
}

async fn purge_deletes_only_old_dead_letters(s: Subject) {
    let a = enqueue(&s, "a", None).await;
    let b = enqueue(&s, "b", None).await;
    let c = enqueue(&s, "c", None).await;
    let claimed = s.queue.claim(3, LEASE).await.unwrap();
    s.queue
        .fail_leased(claimed[0].lease(), "x", None)
        .await
        .unwrap();
    s.clock.advance(7_200_000);
    s.queue
        .fail_leased(claimed[1].lease(), "y", None)
        .await
        .unwrap();
    s.queue.ack_leased(claimed[2].lease()).await.unwrap();
    assert_eq!(
        s.inspect
            .purge_dead(Duration::from_secs(3600))
            .await
            .unwrap(),
        vec![a]
    );
    assert_eq!(
        s.inspect.show(b).await.unwrap().summary.state,
        EventState::Dead
    );
    assert_eq!(
        s.inspect.show(c).await.unwrap().summary.state,
        EventState::Done
    );
}

/// The organizations' lock shared by replicas (PostgreSQL only: with SQLite there is one
/// process, whose in-process lock is enough): a second replica waits until the first gives the
/// key back, other keys are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_key_locks_hold_a_key_across_replicas() {
    use cocreate::queue::SharedKeyLocks;
    let url = support::postgres::fresh_database().await;
    let one = PostgresQueue::connect(&url).await.unwrap().key_locks();
    let two = PostgresQueue::connect(&url).await.unwrap().key_locks();
    let held = one.acquire("org-a").await;
    let other = tokio::time::timeout(Duration::from_secs(2), two.acquire("org-b")).await;
    assert!(other.is_ok(), "another key is free");
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _guard = two.acquire("org-a").await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "the second replica took a held key");
    drop(held);
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the key was never given back")
        .unwrap();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
}

/// One replica's events of one organization waiting for each other: the organization's shared
/// lock passes from one to the next without going back to the database (its token stays), at
/// most `MAX_HANDOVERS` times in a row; when the last one is done it is given back, and another
/// replica takes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_key_locks_pass_between_local_waiters_and_come_back_when_idle() {
    use cocreate::handlers::{KeyedLocks, MAX_HANDOVERS};
    use cocreate::queue::SharedKeyLocks;
    let url = support::postgres::fresh_database().await;
    let queue = PostgresQueue::connect(&url).await.unwrap();
    let locks = KeyedLocks::shared(Arc::new(queue.key_locks()));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let token = || async {
        sqlx::query_scalar::<_, i64>("SELECT token FROM key_locks WHERE key = 'org-a'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // A run of local holders, each waiting for the one before; each says when it holds the
    // lock and gives it back when told.
    let first = locks.lock("org-a").await;
    assert_eq!(token().await, 1);
    let (holding, mut holders) = tokio::sync::mpsc::unbounded_channel();
    let waiters = MAX_HANDOVERS as usize + 2;
    for _ in 0..waiters {
        let (locks, holding) = (locks.clone(), holding.clone());
        tokio::spawn(async move {
            let guard = locks.lock("org-a").await;
            let (done, wait) = tokio::sync::oneshot::channel::<()>();
            holding.send(done).unwrap();
            wait.await.ok();
            drop(guard);
        });
    }
    // All of them wait (as the worker's events of one organization do) before the first leaves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(first);
    let mut tokens = Vec::new();
    for _ in 0..waiters {
        let done = tokio::time::timeout(Duration::from_secs(5), holders.recv())
            .await
            .expect("the lock was not passed on")
            .unwrap();
        tokens.push(token().await);
        done.send(()).unwrap();
    }
    let handed = MAX_HANDOVERS as usize;
    assert!(
        tokens[..handed].iter().all(|&t| t == 1),
        "handed over without a new acquire: {tokens:?}"
    );
    assert!(
        tokens[handed] > 1,
        "given back after {handed} hand-overs: {tokens:?}"
    );
    // Idle: given back, so another replica gets it without waiting for a lease to run out.
    let other = PostgresQueue::connect(&url).await.unwrap().key_locks();
    tokio::time::timeout(Duration::from_secs(2), other.acquire("org-a"))
        .await
        .expect("the idle key was not given back");
}

async fn recover_cursors_survive_a_reopen_and_never_go_back(s: Subject) {
    let hook = "groups/50/hooks/7";
    let first = s.cursors().await;
    assert_eq!(first.get(hook).await.unwrap(), None);
    first.set(hook, 41, T0).await.unwrap();
    first.set(hook, 12, T0 + 1).await.unwrap();
    drop(first);
    let next = s.cursors().await;
    assert_eq!(next.get(hook).await.unwrap(), Some(41), "never backwards");
    assert_eq!(next.get("projects/9/hooks/7").await.unwrap(), None);
    next.set(hook, 42, T0 + 2).await.unwrap();
    assert_eq!(s.cursors().await.get(hook).await.unwrap(), Some(42));
}

/// Webhook bodies are stored lz4-compressed where the server has lz4 (PostgreSQL's default,
/// pglz, was the group commit's largest cost), and with the server's default elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bodies_are_compressed_with_lz4_where_the_server_has_it() {
    let url = support::postgres::fresh_database().await;
    let queue = PostgresQueue::connect(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let has_lz4: bool = sqlx::query_scalar(
        "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let method: String = sqlx::query_scalar(
        "SELECT attcompression::TEXT FROM pg_attribute
         WHERE attrelid = 'events'::regclass AND attname = 'body'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(method, if has_lz4 { "l" } else { "" });
    // And a stored body reads back as it was sent.
    let body: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut sent = event("big", None);
    sent.body = body.clone();
    queue.enqueue(sent).await.unwrap();
    let claimed = queue.claim(1, LEASE).await.unwrap();
    assert_eq!(claimed[0].body, body);
}

/// A database that stops answering (here: a table lock another session holds) fails the
/// receivers' enqueues after a bound instead of holding their answers for ever; GitLab's resend
/// of the delivery, once the database answers again, leaves it stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_enqueue_the_database_does_not_answer_fails_and_its_resend_is_stored_once() {
    use sqlx::Connection;
    let url = support::postgres::fresh_database().await;
    let queue = PostgresQueue::connect(&url).await.unwrap();
    let mut blocker = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let stalled = tokio::time::timeout(
        Duration::from_secs(60),
        queue.enqueue(event("stalled", None)),
    )
    .await
    .expect("the enqueue was never answered");
    let error = stalled.expect_err("stored while the table was locked");
    assert!(
        error.to_string().contains("did not answer"),
        "says why: {error}"
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    queue.enqueue(event("stalled", None)).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().pending, 1, "stored once");
}

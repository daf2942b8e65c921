//! PostgreSQL implementation of [`Queue`](crate::queue::Queue) and
//! [`QueueInspect`](crate::queue::QueueInspect), for several `serve` replicas sharing one queue.
//!
//! The same semantics as the SQLite queue (see [`crate::queue`]), on `sqlx`:
//!
//! * Enqueues are group-committed ([`enqueue`]): one task stores every enqueue waiting with one
//!   multi-row `INSERT … ON CONFLICT (dedupe_key) DO NOTHING` in one transaction, and each
//!   receiver is answered after that commit (`synchronous_commit` as the server has it: on by
//!   default). Dedupe is the unique `dedupe_key`.
//! * A claim picks pending, due, unleased events with `FOR UPDATE SKIP LOCKED`, so replicas never
//!   wait for each other or take the same event. Each claim increments the event's fencing token;
//!   renew, ack, fail and release by a worker present it.
//! * Serialization keys (one MR, one issue) are held across replicas by a row of `serial_locks`
//!   with its own lease, taken in the claim's transaction (`FOR UPDATE SKIP LOCKED` again) and
//!   given back by ack, fail and release. No session advisory lock is held while a handler calls
//!   GitLab: a replica that dies simply lets both leases expire.
//! * `LISTEN/NOTIFY` (channel [`NOTIFY_CHANNEL`]) only wakes idle workers early
//!   ([`PostgresQueue::wake_on_notify`]); polling stays the truth, so a lost notification costs at
//!   most one poll interval.
//! * Every time is the bot's clock in unix milliseconds, as with SQLite: replicas' clocks must be
//!   synchronized (NTP) to well under a lease.
//!
//! * An organization's tracking issue is reserved by a row of `tracking_reservations` before
//!   it is created, under the organization's key lock (see [`crate::queue::tracking`]).
//!
//! Files: `enqueue` (the group commit), `queue` (the worker's operations), `inspect` (the
//! operator's), `key_lock` (the organizations' locks shared by replicas, whose guards fence the
//! writes), `tracking` (the tracking-issue reservations).

mod enqueue;
mod inspect;
mod key_lock;
mod queue;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::queue::QueueError;

pub use key_lock::PgKeyLocks;

/// The channel an enqueue notifies, so that idle workers claim at once.
pub const NOTIFY_CHANNEL: &str = "cocreate_queue";

/// Connections per process by default (receiver, worker slots, inspector, listener).
const DEFAULT_POOL_SIZE: u32 = 16;

/// How long acquiring a pooled connection may take before the operation fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The versioned schema, from `migrations/` (embedded at build time).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A queue in a PostgreSQL database, shared by every replica that opens the same URL.
#[derive(Clone)]
pub struct PostgresQueue {
    pub(in crate::queue) pool: PgPool,
    clock: Clock,
    /// Host, port and database, for messages (never the user or password).
    target: String,
    redactor: crate::redact::Redactor,
    enqueuer: enqueue::Enqueuer,
}

impl std::fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresQueue")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// `true` when `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The `--queue` value parser: only a PostgreSQL URL (the SQLite queue is chosen by leaving the
/// option out).
pub fn postgres_url_arg(value: &str) -> Result<String, String> {
    if is_postgres_url(value) {
        Ok(value.to_owned())
    } else {
        Err(
            "expected postgres://user:password@host:port/database (leave --queue out for the \
             SQLite queue in --data)"
                .to_owned(),
        )
    }
}

/// Host, port and database of a PostgreSQL URL, without user or password (for messages).
pub fn describe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "an unparsable URL".to_owned(),
    }
}

impl PostgresQueue {
    /// Connects to `url` (`postgres://user:password@host:port/database`), brings the schema up
    /// to date (versioned migrations, under the migrator's advisory lock, so replicas starting
    /// together migrate once), using the system clock.
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        Self::connect_with_clock(url, Clock::system()).await
    }

    /// Like [`PostgresQueue::connect`], with the given clock (tests move a manual one).
    pub async fn connect_with_clock(url: &str, clock: Clock) -> Result<Self, QueueError> {
        let target = describe_url(url);
        let open = |step: &'static str| {
            let target = target.clone();
            move |source: Box<dyn std::error::Error + Send + Sync>| QueueError::PostgresOpen {
                target,
                step,
                source,
            }
        };
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| open("parse the URL")(Box::new(e)))?;
        let options = options.application_name("cocreate");
        let pool = PgPoolOptions::new()
            .max_connections(DEFAULT_POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| open("connect")(Box::new(e)))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| open("migrate")(Box::new(e)))?;
        tracing::debug!(target = %target, "PostgreSQL queue opened");
        Ok(Self {
            enqueuer: enqueue::Enqueuer::start(pool.clone(), clock.clone()),
            pool,
            clock,
            target,
            redactor: crate::redact::Redactor::default(),
        })
    }

    /// Scrub the error texts of failed attempts with `redactor` before they are stored (as
    /// [`SqliteQueue::redacting`](crate::queue::SqliteQueue::redacting)).
    pub fn redacting(mut self, redactor: crate::redact::Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Host, port and database of the queue (no credentials).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Listens on [`NOTIFY_CHANNEL`] and wakes `wake` on each notification, reconnecting after
    /// a lost connection. Only a hint: the worker polls anyway. Ends when the pool is closed.
    pub fn wake_on_notify(&self, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                if pool.is_closed() {
                    return;
                }
                let listened = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(NOTIFY_CHANNEL).await?;
                    loop {
                        listener.recv().await?;
                        wake.notify_one();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                if let Err(error) = listened.await {
                    tracing::debug!(%error, "queue LISTEN connection lost; polling meanwhile");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    pub(in crate::queue) fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// `text` as PostgreSQL can store it in a `TEXT` column, which refuses the NUL character (a
/// hostile payload can put one in a serialization key, GitLab an error text): each NUL becomes
/// U+FFFD. Without this, one such delivery would fail its whole group commit.
pub(in crate::queue) fn pg_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Maps a sqlx error of operation `op`.
fn pg(op: &'static str) -> impl Fn(sqlx::Error) -> QueueError {
    move |source| QueueError::Postgres { op, source }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

//! `cocreate queue …`: status, list, show, replay and purge, as tables or `--json`.
//!
//! Every command opens its own [`SqliteInspector`] on the data directory, so it works next to a
//! running `serve` (see [`crate::queue::SqliteInspector`] for why that is safe). Everything
//! printed goes through a [`Redactor`] first.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::render;
use crate::queue::{
    EventDetail, EventId, EventState, EventSummary, ListFilter, PostgresQueue, QueueError,
    QueueInspect, QueueStatus, SqliteInspector,
};
use crate::redact::Redactor;

/// The window of "events per kind" in `queue status`.
pub const STATUS_WINDOW: Duration = Duration::from_secs(3600);
/// Exit code of `queue purge` without `--yes` when there was something to purge.
pub const EXIT_NOT_CONFIRMED: u8 = 2;
/// Longest last-error text in a `queue list` table.
const ERROR_WIDTH: usize = 80;

/// `--queue` / `COCREATE_QUEUE_URL`, one definition for every command that reads or fills the
/// queue (`serve`, `recover`, `reconcile`, `queue …`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct QueueUrlArg {
    /// Keep the queue in PostgreSQL instead of SQLite in --data
    /// (`postgres://user:password@host:port/database`): the one database every `serve` replica,
    /// `recover`, `reconcile` and `queue` command is given (README "When one machine is not
    /// enough").
    #[arg(long = "queue", env = "COCREATE_QUEUE_URL", global = true, value_parser = crate::queue::postgres_url_arg, hide_env_values = true)]
    pub url: Option<String>,
}

/// `cocreate queue`: inspect and repair the durable queue, also while `serve` runs.
#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    /// Directory of the durable queue: the same as `serve --data`.
    #[arg(long, env = "COCREATE_DATA", default_value = "./data", global = true)]
    pub data: PathBuf,

    #[command(flatten)]
    pub queue: QueueUrlArg,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: QueueCommand,
}

/// The `queue` subcommands.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum QueueCommand {
    /// Depth, oldest pending age, in-flight leases, dead letters, events per kind in the last hour.
    Status,
    /// Stored events, newest first, with their last error.
    List {
        /// Only dead letters (events that failed for good).
        #[arg(long)]
        dead: bool,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One event: headers (secrets redacted), body, and every failed attempt with its error.
    Show {
        /// Event id (from `queue list`).
        id: EventId,
    },
    /// Put an event back to pending with its attempts reset; a running `serve` picks it up
    /// within a second. Safe to repeat: the rules only write what is missing.
    Replay {
        /// Event id (dead, done or waiting; not one in flight).
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<EventId>,
        /// Every dead letter instead of one event.
        #[arg(long)]
        all_dead: bool,
    },
    /// Delete dead letters older than a duration (with their attempt history). Prints what it
    /// would delete and exits 2 unless `--yes` is given. Never touches pending or done events.
    Purge {
        /// Purge dead letters (the only kind of event purge deletes; done events are pruned by
        /// `serve` after --retention-days).
        #[arg(long, required = true)]
        dead: bool,
        /// Minimum time since the event became a dead letter, e.g. `7d`, `12h`, `30m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
    /// Copy a SQLite queue into PostgreSQL to switch to replicas: pending events, dead letters
    /// and the dedupe keys still in retention, with their attempt history. Stop `serve` on the
    /// SQLite queue first; safe to run again (what is already there is skipped).
    Migrate {
        /// The SQLite queue's directory (`serve --data`).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL queue (`serve --queue`).
        #[arg(long, value_parser = crate::queue::postgres_url_arg, hide_env_values = true)]
        to: String,
    },
}

/// Errors of the operator commands.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs one `queue` command, printing to `out`; secrets in the environment are scrubbed.
pub async fn run(args: QueueArgs, out: &mut dyn Write) -> Result<ExitCode, OpsError> {
    if let QueueCommand::Migrate { from, to } = &args.command {
        let target = PostgresQueue::connect(to).await?;
        let moved = crate::queue::migrate_sqlite_to_postgres(from, &target).await?;
        let text = if args.json {
            to_json(&moved)?
        } else {
            format!(
                "moved {} pending, {} dead letters, {} done (dedupe keys) and {} recover cursors from {} to {}; {} already there\n",
                moved.pending,
                moved.dead,
                moved.done,
                moved.cursors,
                from.display(),
                target.target(),
                moved.skipped
            )
        };
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let inspector: Box<dyn QueueInspect> = match &args.queue.url {
        Some(url) => Box::new(PostgresQueue::connect(url).await?),
        None => Box::new(SqliteInspector::open(&args.data)?),
    };
    let redactor = Redactor::from_env();
    let now = crate::clock::Clock::system().now_ms();
    let (text, code) =
        execute(inspector.as_ref(), &args.command, args.json, now, &redactor).await?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::from(code))
}

/// Runs `command` against any [`QueueInspect`] at time `now` (unix ms); returns the output,
/// already passed through `redactor`, and the exit code.
pub async fn execute(
    inspector: &dyn QueueInspect,
    command: &QueueCommand,
    json: bool,
    now: i64,
    redactor: &Redactor,
) -> Result<(String, u8), OpsError> {
    let (text, code) = execute_raw(inspector, command, json, now, redactor).await?;
    Ok((redactor.text(&text), code))
}

async fn execute_raw(
    inspector: &dyn QueueInspect,
    command: &QueueCommand,
    json: bool,
    now: i64,
    redactor: &Redactor,
) -> Result<(String, u8), OpsError> {
    let text = match command {
        QueueCommand::Status => {
            let status = inspector.status(STATUS_WINDOW).await?;
            if json {
                to_json(&status)?
            } else {
                status_text(&status)
            }
        }
        QueueCommand::List { dead, limit } => {
            let events = inspector
                .list(ListFilter {
                    state: dead.then_some(EventState::Dead),
                    limit: *limit,
                    ..ListFilter::default()
                })
                .await?;
            if json {
                to_json(&events.iter().map(EventView::new).collect::<Vec<_>>())?
            } else if events.is_empty() {
                format!("no {}events\n", if *dead { "dead " } else { "" })
            } else {
                list_text(&events, now)
            }
        }
        QueueCommand::Show { id } => {
            let detail = inspector.show(*id).await?;
            if json {
                to_json(&show_json(&detail, redactor))?
            } else {
                show_text(&detail, redactor, now)
            }
        }
        QueueCommand::Replay { id, all_dead } => {
            let replayed = match (id, all_dead) {
                (Some(id), _) => {
                    let r = inspector.replay(*id).await?;
                    vec![(r.id, r.from)]
                }
                (None, _) => inspector
                    .replay_all_dead()
                    .await?
                    .into_iter()
                    .map(|id| (id, EventState::Dead))
                    .collect(),
            };
            if json {
                to_json(&json!({
                    "replayed": replayed
                        .iter()
                        .map(|(id, from)| json!({"id": id, "from": from}))
                        .collect::<Vec<_>>()
                }))?
            } else {
                replay_text(&replayed)
            }
        }
        QueueCommand::Purge {
            dead: _,
            older_than,
            yes,
        } => return purge(inspector, *older_than, *yes, json, now).await,
        QueueCommand::Migrate { .. } => {
            "queue migrate runs on its own (see `run`), not against one inspector\n".to_owned()
        }
    };
    Ok((text, 0))
}

async fn purge(
    inspector: &dyn QueueInspect,
    older_than: Duration,
    yes: bool,
    json: bool,
    now: i64,
) -> Result<(String, u8), OpsError> {
    let age = render::duration(older_than);
    if !yes {
        let candidates = inspector
            .list(ListFilter {
                dead_older_than: Some(older_than),
                ..ListFilter::default()
            })
            .await?;
        let code = if candidates.is_empty() {
            0
        } else {
            EXIT_NOT_CONFIRMED
        };
        let text = if json {
            to_json(&json!({
                "purged": [],
                "would_purge": candidates.iter().map(EventView::new).collect::<Vec<_>>(),
            }))?
        } else if candidates.is_empty() {
            format!("no dead letters older than {age}: nothing to purge\n")
        } else {
            format!(
                "would purge {} older than {age}:\n{}not purged: run again with --yes to delete {}\n",
                count(candidates.len(), "dead letter"),
                list_text(&candidates, now),
                if candidates.len() == 1 { "it" } else { "them" },
            )
        };
        return Ok((text, code));
    }
    let purged = inspector.purge_dead(older_than).await?;
    let text = if json {
        to_json(&json!({ "purged": purged }))?
    } else if purged.is_empty() {
        format!("no dead letters older than {age}: nothing purged\n")
    } else {
        format!(
            "purged {} older than {age}: {}\n",
            count(purged.len(), "dead letter"),
            ids(&purged)
        )
    };
    Ok((text, 0))
}

/// An event as `--json` prints it (times in RFC 3339, UTC).
#[derive(Debug, Serialize)]
struct EventView<'a> {
    id: EventId,
    state: EventState,
    kind: &'a str,
    subject: Option<String>,
    received_at: String,
    attempts: u32,
    last_error: Option<&'a str>,
    next_attempt_at: Option<String>,
    locked_until: Option<String>,
    dead_at: Option<String>,
    done_at: Option<String>,
    replays: u32,
    replayed_at: Option<String>,
}

impl<'a> EventView<'a> {
    fn new(e: &'a EventSummary) -> Self {
        let t = |ms: Option<i64>| ms.map(render::time_ms);
        Self {
            id: e.id,
            state: e.state,
            kind: &e.kind,
            subject: render::subject(&e.body),
            received_at: render::time_ms(e.received_at_ms),
            attempts: e.attempts,
            last_error: e.last_error.as_deref(),
            next_attempt_at: t(e.next_attempt_at_ms),
            locked_until: t(e.locked_until_ms),
            dead_at: t(e.dead_at_ms),
            done_at: t(e.done_at_ms),
            replays: e.replays,
            replayed_at: t(e.replayed_at_ms),
        }
    }
}

fn to_json(value: &impl Serialize) -> Result<String, OpsError> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn ids(ids: &[EventId]) -> String {
    ids.iter()
        .map(EventId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_text(s: &QueueStatus) -> String {
    let st = &s.stats;
    let oldest = st.oldest_pending_age_ms.map_or_else(
        || "none".to_owned(),
        |ms| format!("received {} ago", render::age(ms)),
    );
    let dead_note = if st.dead > 0 {
        " (failed for good: `cocreate queue list --dead`)"
    } else {
        ""
    };
    let mut out = format!(
        "pending         {} (waiting to be claimed, now or at a retry time)\n\
         in flight       {} (leased by a worker now)\n\
         dead letters    {}{dead_note}\n\
         done            {} (kept for --retention-days, then pruned)\n\
         oldest pending  {oldest}\n",
        st.pending, st.in_flight, st.dead, st.done
    );
    out.push_str(&format!(
        "received in the last {}:",
        render::age(s.window_ms)
    ));
    if s.received.is_empty() {
        out.push_str(" nothing\n");
    } else {
        out.push('\n');
        let width = s.received.iter().map(|k| k.kind.len()).max().unwrap_or(0);
        for k in &s.received {
            out.push_str(&format!("  {:<width$}  {}\n", k.kind, k.count));
        }
    }
    if let Some(size) = s.storage {
        out.push_str(&format!(
            "database        {} + {} write-ahead log\n",
            render::bytes(size.database_bytes),
            render::bytes(size.wal_bytes)
        ));
    }
    out
}

fn list_text(events: &[EventSummary], now: i64) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.state.to_string(),
                e.kind.clone(),
                render::subject(&e.body).unwrap_or_else(|| "-".into()),
                format!("{} ago", render::age(now - e.received_at_ms)),
                e.attempts.to_string(),
                e.last_error
                    .as_deref()
                    .map(|err| render::one_line(err, ERROR_WIDTH))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    render::table(
        &[
            "ID",
            "STATE",
            "KIND",
            "SUBJECT",
            "RECEIVED",
            "ATTEMPTS",
            "LAST ERROR",
        ],
        &rows,
    )
}

fn replay_text(replayed: &[(EventId, EventState)]) -> String {
    match replayed {
        [] => "no dead letters to replay\n".to_owned(),
        [(id, from)] => format!(
            "replayed event {id} (was {from}): pending, attempts reset; a running serve picks it up within a second\n"
        ),
        many => format!(
            "replayed {}: {}; a running serve picks them up within a second\n",
            count(many.len(), "dead letter"),
            ids(&many.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        ),
    }
}

/// The body as pretty JSON (secret keys redacted), or as text when it is not JSON.
fn body_text(body: &[u8], redactor: &Redactor) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            redactor.json(&mut v);
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
        Err(_) => redactor.text(&String::from_utf8_lossy(body)),
    }
}

fn show_text(d: &EventDetail, redactor: &Redactor, now: i64) -> String {
    let e = &d.summary;
    let mut out = format!(
        "event {}: {}, {}{}\n",
        e.id,
        e.state,
        e.kind,
        render::subject(&e.body)
            .map(|s| format!(", {s}"))
            .unwrap_or_default()
    );
    let mut field = |label: &str, value: String| {
        out.push_str(&format!("{label:<13}{value}\n"));
    };
    field("received", render::when(e.received_at_ms, now));
    field("dedupe key", redactor.text(&d.dedupe_key));
    field("attempts", e.attempts.to_string());
    if let Some(t) = e.next_attempt_at_ms {
        field("next attempt", render::when(t, now));
    }
    if let Some(t) = e.locked_until_ms {
        field("leased until", render::when(t, now));
    }
    if let Some(t) = e.dead_at_ms {
        field("dead since", render::when(t, now));
    }
    if let Some(t) = e.done_at_ms {
        field("done at", render::when(t, now));
    }
    if let Some(t) = e.replayed_at_ms {
        field(
            "replayed",
            format!("{} time(s), last {}", e.replays, render::when(t, now)),
        );
    }
    if let Some(err) = &e.last_error {
        field("last error", redactor.text(err));
    }
    out.push_str("headers:\n");
    for (name, value) in &d.headers {
        out.push_str(&format!("  {name}: {}\n", redactor.header(name, value)));
    }
    if let Some(err) = &d.headers_error {
        out.push_str(&format!("  ({err})\n"));
    }
    if d.history.is_empty() {
        out.push_str("failed attempts: none\n");
    } else {
        out.push_str("failed attempts:\n");
        for a in &d.history {
            out.push_str(&format!(
                "  #{:<3}{}  {}\n",
                a.attempt,
                render::time(a.at_ms),
                redactor.text(&a.error)
            ));
        }
    }
    out.push_str(&format!("body ({} bytes):\n", e.body.len()));
    for line in body_text(&e.body, redactor).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn show_json(d: &EventDetail, redactor: &Redactor) -> Value {
    let mut body = serde_json::from_slice::<Value>(&d.summary.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.summary.body).into_owned()));
    redactor.json(&mut body);
    json!({
        "event": EventView::new(&d.summary),
        "dedupe_key": redactor.text(&d.dedupe_key),
        "headers": d.headers.iter()
            .map(|(n, v)| json!([n, redactor.header(n, v)]))
            .collect::<Vec<_>>(),
        "headers_error": d.headers_error,
        "attempts": d.history.iter()
            .map(|a| json!({
                "attempt": a.attempt,
                "at": render::time_ms(a.at_ms),
                "error": redactor.text(&a.error),
            }))
            .collect::<Vec<_>>(),
        "body": body,
    })
}

//! The operator's switch from the SQLite queue to PostgreSQL, step by step as README "When one
//! machine is not enough" tells it, with the real binaries and the fake GitLab:
//!
//! 1. a SQLite `serve` has processed one MR, holds a dead letter (GitLab refused a write) and a
//!    pending event (GitLab failed, a retry is due), and is stopped (SIGTERM);
//! 2. while it is down, GitLab fails to deliver two new MRs and a help command;
//! 3. `queue migrate --from DIR --to postgres://…` moves the SQLite queue there;
//! 4. `recover --queue postgres://…` continues from the migrated cursor and stores those into
//!    PostgreSQL; re-reading the week finds all, and a delivery an earlier `recover` had stored
//!    into the SQLite queue, "already had";
//! 5. two `serve --queue` replicas start (one on the old address GitLab calls).
//!
//! Every event is then processed exactly once (no bot note twice on any MR), the dead letter is
//! listed by `queue --queue … list --dead` and, replayed, processed once; a new delivery reaches
//! the replicas through the old webhook URL. Everything runs as a role with no privilege but
//! owning its database, as README "The database user" sets it up.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cocreate::queue::{
    EventState, ListFilter, PostgresQueue, Queue, QueueInspect, QueueStats, SqliteInspector,
};
use serde_json::Value;
use support::fake_gitlab::{FakeGitLab, Fault};
use support::harness::{bot_notes, open_mr_delivered, seed, AERO_DEV, PROJECT_ID, SECRET};
use support::load::{free_port, tail, ServeCommand};

const WELCOME_MARKER: &str = "<!-- cocreate:welcome -->";
const MR_HOOK: &str = "Merge Request Hook";

/// Runs the binary against `gitlab` as an operator would, with the repository's policies and
/// templates and `env`; nothing from the caller's environment decides the queue.
fn cocreate(gitlab: &FakeGitLab, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .args(args)
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env_remove("COCREATE_QUEUE_URL")
        .env_remove("COCREATE_DATA")
        .env_remove("COCREATE_POLICY_PROJECT")
        .env_remove("COCREATE_SIGNING_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run cocreate");
    let run = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    println!("$ cocreate {}\n{}(exit {})\n", args.join(" "), run.1, run.0);
    run
}

/// [`cocreate`] that must succeed and print JSON.
fn cocreate_json(gitlab: &FakeGitLab, args: &[&str], env: &[(&str, &str)]) -> Value {
    let (code, out, err) = tokio::task::block_in_place(|| cocreate(gitlab, args, env));
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}\n{err}"))
}

fn serve_command(gitlab: &FakeGitLab, dir: &Path, name: &str) -> ServeCommand {
    let root = env!("CARGO_MANIFEST_DIR");
    ServeCommand::new(
        env!("CARGO_BIN_EXE_cocreate"),
        dir.join(format!("{name}.log")),
    )
    .env("GITLAB_URL", gitlab.url())
    .env("GITLAB_TOKEN", gitlab.token())
    .env("COCREATE_WEBHOOK_SECRET", SECRET)
    .env("COCREATE_POLICIES", format!("{root}/policies"))
    .env("COCREATE_TEMPLATES", format!("{root}/templates"))
    .env(
        "COCREATE_DATA",
        dir.join(format!("data-{name}")).display().to_string(),
    )
    .env("COCREATE_MAX_ATTEMPTS", "5")
    .env("COCREATE_RETRY_BASE", "2")
    .env("COCREATE_RETRY_CAP", "3")
    .env("RUST_LOG", "warn")
}

/// The database as README "The database user" sets it up: a login role without any other
/// privilege, owning the bot's database (no grant besides). Dropped with [`BotDatabase::drop_all`].
struct BotDatabase {
    name: String,
    role: String,
    /// The URL the bot is given: the role's, not the superuser's.
    url: String,
}

impl BotDatabase {
    async fn create() -> Self {
        use sqlx::Connection;
        let server = support::postgres::server_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let suffix = format!("{}_{nanos}", std::process::id());
        let (name, role) = (
            format!("cocreate_switch_{suffix}"),
            format!("cocreate_bot_{suffix}"),
        );
        let mut admin = sqlx::PgConnection::connect(&server).await.expect("connect");
        for sql in [
            format!("CREATE ROLE {role} LOGIN PASSWORD 'bot-password-for-tests'"),
            format!("CREATE DATABASE {name} OWNER {role}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("set up the bot's role and database");
        }
        admin.close().await.ok();
        let mut url =
            url::Url::parse(&support::postgres::with_database(&server, &name)).expect("url");
        url.set_username(&role).expect("user");
        url.set_password(Some("bot-password-for-tests"))
            .expect("password");
        Self {
            name,
            role,
            url: url.to_string(),
        }
    }

    /// Drops the database and the role (roles are the cluster's, shared by every test).
    async fn drop_all(self) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&support::postgres::server_url())
            .await
            .expect("connect");
        for sql in [
            format!("DROP DATABASE {} WITH (FORCE)", self.name),
            format!("DROP ROLE {}", self.role),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("clean up");
        }
        admin.close().await.ok();
    }
}

/// Polls `stats` until `done` holds (60 s at most).
async fn wait_for<F, Fut>(
    what: &str,
    logs: &[&Path],
    mut stats: F,
    done: impl Fn(&QueueStats) -> bool,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = QueueStats>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = stats().await;
        if done(&s) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|l| tail(l, 30)).collect();
            panic!("{what}: still {s:?}\n{}", logs.join("\n---\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sqlite_stats(data: &Path) -> QueueStats {
    SqliteInspector::open(data)
        .expect("inspector")
        .status(Duration::from_secs(3600))
        .await
        .expect("status")
        .stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_sqlite_serve_to_two_postgresql_replicas_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    let bot_db = BotDatabase::create().await;
    let pg_url = bot_db.url.clone();
    // The address GitLab calls: the single serve now, the load balancer's later.
    let port = free_port();
    let webhook_url = format!("http://127.0.0.1:{port}/webhook");
    let hook_env = [("COCREATE_WEBHOOK_URL", webhook_url.as_str())];
    let (code, out, err) = tokio::task::block_in_place(|| cocreate(&gitlab, &["setup"], &hook_env));
    assert_eq!(code, 0, "{out}{err}");

    // 0. Days before: GitLab failed to deliver MR 28 (the serve was down a moment); the
    //    scheduled `recover` stored it into the SQLite queue and the serve processed it.
    open_mr_delivered(&gitlab, 28);
    assert_eq!(
        gitlab.send_deliveries().await,
        vec![(MR_HOOK.to_owned(), 0)]
    );

    // 1. The single serve on SQLite: MR 28 and 29 processed, MR 30 a dead letter (GitLab
    //    refuses the write: permanent), MR 31 pending (GitLab fails: a retry is due in seconds).
    let mut single = serve_command(&gitlab, tmp.path(), "sqlite");
    single.port = port;
    let data = tmp.path().join("data-sqlite");
    let data_arg = data.display().to_string();
    let serve = single.start(1).await;
    let logs = [single.log.as_path()];
    let data_env = [
        ("COCREATE_WEBHOOK_URL", webhook_url.as_str()),
        ("COCREATE_DATA", data_arg.as_str()),
    ];
    let early = cocreate_json(&gitlab, &["recover", "--json"], &data_env);
    assert_eq!(early["enqueued"], 1, "{early:#}");
    open_mr_delivered(&gitlab, 29);
    assert!(gitlab
        .send_deliveries()
        .await
        .iter()
        .all(|(_, s)| *s == 200));
    wait_for(
        "MR 29",
        &logs,
        || sqlite_stats(&data),
        |s| s.pending + s.in_flight == 0 && s.done > 0,
    )
    .await;
    assert_eq!(bot_notes(&gitlab, 28).len(), 1);
    assert_eq!(bot_notes(&gitlab, 29).len(), 1);

    gitlab.push_fault_for("PUT", "/api/v4/projects/", Fault::Status(403));
    open_mr_delivered(&gitlab, 30);
    assert_eq!(
        gitlab.send_deliveries().await,
        vec![(MR_HOOK.to_owned(), 200)]
    );
    wait_for("MR 30 dead", &logs, || sqlite_stats(&data), |s| s.dead == 1).await;
    gitlab.clear_faults();

    gitlab.set_failure_rate(1.0, 7);
    open_mr_delivered(&gitlab, 31);
    assert_eq!(gitlab.send_deliveries().await.len(), 1);
    let retried = || async {
        let list = SqliteInspector::open(&data)
            .expect("inspector")
            .list(ListFilter {
                state: Some(EventState::Pending),
                ..ListFilter::default()
            })
            .await
            .expect("list");
        list.iter()
            .any(|e| e.attempts >= 1 && e.locked_until_ms.is_none())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !retried().await {
        assert!(Instant::now() < deadline, "{}", tail(&single.log, 30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        serve.terminate(Duration::from_secs(30)),
        "serve stopped on SIGTERM"
    );
    gitlab.set_failure_rate(0.0, 0);
    let before = sqlite_stats(&data).await;
    assert_eq!(
        (before.pending, before.in_flight, before.dead),
        (1, 0, 1),
        "{before:?}"
    );

    // 2. While it is down GitLab fails to deliver (and never retries): two MRs, a command.
    open_mr_delivered(&gitlab, 32);
    open_mr_delivered(&gitlab, 33);
    let command = gitlab.comment_on_mr(PROJECT_ID, 29, AERO_DEV.0, "@cocreate-bot help");
    let failed = gitlab.send_deliveries().await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().all(|(_, s)| *s == 0), "nothing listens");

    // 3. Move the SQLite queue over: its pending events, dead letters, the dedupe keys of what
    //    it processed, and the recover cursor.
    let moved = cocreate_json(
        &gitlab,
        &[
            "queue", "--json", "migrate", "--from", &data_arg, "--to", &pg_url,
        ],
        &[],
    );
    assert_eq!(
        (
            &moved["pending"],
            &moved["dead"],
            &moved["done"],
            &moved["skipped"],
            &moved["cursors"]
        ),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(2),
            &Value::from(0),
            &Value::from(1)
        ),
        "MR 31; MR 30; MR 28 and 29; the group hook's cursor: {moved:#}"
    );

    // 4. recover into PostgreSQL: it continues from the SQLite queue's cursor, so it reads the
    //    three lost while down, not MR 28's old failure again (run before the migration, with
    //    no cursor in PostgreSQL yet, it would store that one a second time).
    let recovered = cocreate_json(
        &gitlab,
        &["recover", "--json", "--queue", &pg_url],
        &hook_env,
    );
    assert_eq!(
        (&recovered["found"], &recovered["enqueued"]),
        (&Value::from(3), &Value::from(3)),
        "{recovered:#}"
    );
    // Re-reading the whole week: everything is already there, MR 28 by its migrated key.
    let week = cocreate_json(
        &gitlab,
        &["recover", "--json", "--queue", &pg_url, "--since", "7d"],
        &hook_env,
    );
    assert_eq!(
        (&week["found"], &week["enqueued"], &week["already_had"]),
        (&Value::from(4), &Value::from(0), &Value::from(4)),
        "{week:#}"
    );

    // 5. Two replicas on the one PostgreSQL queue, the first on the old address.
    let mut a =
        serve_command(&gitlab, tmp.path(), "replica-a").env("COCREATE_QUEUE_URL", pg_url.clone());
    a.port = port;
    let b =
        serve_command(&gitlab, tmp.path(), "replica-b").env("COCREATE_QUEUE_URL", pg_url.clone());
    let replicas = [a.start(1).await, b.start(1).await];
    let logs = [a.log.as_path(), b.log.as_path()];
    let pg = PostgresQueue::connect(&pg_url).await.expect("queue");
    let idle = |s: &QueueStats| s.pending + s.in_flight == 0;
    wait_for(
        "the replicas drain",
        &logs,
        || async { pg.stats().await.expect("stats") },
        idle,
    )
    .await;

    let welcomes = |iid| {
        bot_notes(&gitlab, iid)
            .iter()
            .filter(|n| n.starts_with(WELCOME_MARKER))
            .count()
    };
    for iid in [28, 29, 31, 32, 33] {
        assert_eq!(welcomes(iid), 1, "!{iid}: {:#?}", bot_notes(&gitlab, iid));
    }
    assert_eq!(welcomes(30), 0, "the dead letter waits for the operator");
    let on_29 = bot_notes(&gitlab, 29);
    assert_eq!(on_29.len(), 2, "one welcome, one help reply: {on_29:#?}");
    assert!(on_29[1].starts_with(&format!("<!-- cocreate:cmd:{command} -->")));

    // The dead letter: listed with its reason, replayed, processed once.
    let dead = cocreate_json(
        &gitlab,
        &["queue", "--queue", &pg_url, "list", "--dead", "--json"],
        &[],
    );
    let dead = dead.as_array().expect("a list");
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(
        dead[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("403")),
        "{dead:#?}"
    );
    let (code, out, err) = tokio::task::block_in_place(|| {
        cocreate(
            &gitlab,
            &["queue", "replay", "--all-dead"],
            &[("COCREATE_QUEUE_URL", &pg_url)],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    wait_for(
        "the replay",
        &logs,
        || async { pg.stats().await.expect("stats") },
        |s| idle(s) && s.dead == 0,
    )
    .await;
    assert_eq!(welcomes(30), 1, "{:#?}", bot_notes(&gitlab, 30));

    // GitLab's next delivery reaches the replicas through the webhook URL it always had.
    open_mr_delivered(&gitlab, 34);
    assert_eq!(
        gitlab.send_deliveries().await,
        vec![(MR_HOOK.to_owned(), 200)]
    );
    wait_for(
        "MR 34",
        &logs,
        || async { pg.stats().await.expect("stats") },
        idle,
    )
    .await;
    assert_eq!(welcomes(34), 1);

    // Never a note twice, on any MR.
    for iid in 28..=34 {
        let notes = bot_notes(&gitlab, iid);
        let mut unique = notes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), notes.len(), "!{iid}: {notes:#?}");
    }
    for r in replicas {
        assert!(r.terminate(Duration::from_secs(30)));
    }
    drop(pg);
    bot_db.drop_all().await;
}

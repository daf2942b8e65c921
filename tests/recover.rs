//! `cocreate recover` through the real binary against the fake GitLab: deliveries GitLab failed
//! to make while `serve` was down are read back from its webhook events API and processed
//! exactly once; a second run stores nothing; a disabled hook fails the job with the reason;
//! without the events API the job says so and falls back to the MR sweep. With `--queue
//! postgres://…` the deliveries and the cursor go to the PostgreSQL queue.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::fake_gitlab::FakeGitLab;
use support::harness::*;

const BOT_ID: u64 = 9000;

fn cocreate(gitlab: &FakeGitLab, url: &str, data: &Path, args: &[&str]) -> (i32, String, String) {
    let data = data.to_str().expect("utf-8 path");
    cocreate_env(
        gitlab,
        args,
        &[
            ("COCREATE_WEBHOOK_URL", Some(url)),
            ("COCREATE_DATA", Some(data)),
        ],
    )
}

/// Runs the binary against `gitlab` with the repository's policies and templates, and `env`
/// (`None`: removed); no queue URL, signing key or policy project from the caller's environment.
fn cocreate_env(
    gitlab: &FakeGitLab,
    args: &[&str],
    env: &[(&str, Option<&str>)],
) -> (i32, String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cocreate"));
    cmd.args(args)
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env_remove("COCREATE_POLICY_PROJECT")
        .env_remove("COCREATE_SIGNING_KEY")
        .env_remove("COCREATE_QUEUE_URL");
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().expect("run cocreate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn recover(gitlab: &FakeGitLab, url: &str, data: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["recover", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = tokio::task::block_in_place(|| cocreate(gitlab, url, data, &args));
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v, err)
}

/// A URL nothing listens on: `serve` is down.
fn down_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/webhook")
}

fn fill_intake(template: &str) -> String {
    template
        .lines()
        .map(|l| match l.split_once(':') {
            Some(("- Organization", _)) => "- Organization: example-aero".to_owned(),
            Some(("- CSM", _)) => "- CSM: @csm-aero".to_owned(),
            Some(("- SA", _)) => "- SA: @sa-aero".to_owned(),
            Some(("- Opportunity", _)) => "- Opportunity: Faster pipelines".to_owned(),
            Some(("- Customer contacts", _)) => "- Customer contacts: @aero-dev-1".to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn world_after_setup(url: &str) -> (FakeGitLab, tempfile::TempDir) {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    let data = tempfile::tempdir().expect("tempdir");
    let (code, out, err) =
        tokio::task::block_in_place(|| cocreate(&gitlab, url, data.path(), &["setup"]));
    assert_eq!(code, 0, "{out}{err}");
    (gitlab, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_deliveries_failed_while_serve_was_down_are_each_processed_exactly_once() {
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    // While serve is down: an intake issue, 20 new MRs, 15 edits, 14 help commands.
    let intake = gitlab
        .issue_from_template(
            TRACKING_PROJECT_ID,
            701,
            "Co-Create engagement request: Example Aero",
            "Co-Create engagement request",
            fill_intake,
        )
        .expect("setup committed the template");
    let mrs: Vec<u64> = (30..50).collect();
    for &iid in &mrs {
        open_mr_delivered(&gitlab, iid);
    }
    for &iid in &mrs[..15] {
        gitlab.edit_mr_title(PROJECT_ID, iid, &format!("Change {iid}, revised"));
    }
    let mut comments = Vec::new();
    for &iid in &mrs[..14] {
        comments.push(gitlab.comment_on_mr(PROJECT_ID, iid, AERO_DEV.0, "@cocreate-bot help"));
    }
    let sent = gitlab.send_deliveries().await;
    assert_eq!(sent.len(), 50, "{sent:?}");
    assert!(sent.iter().all(|(_, status)| *status == 0), "serve is down");

    gitlab.clear_calls();
    let (code, report, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{report:#}\n{err}");
    assert_eq!(report["mode"], "events-api");
    assert_eq!(
        (
            &report["found"],
            &report["enqueued"],
            &report["already_had"],
            &report["processed"]
        ),
        (
            &Value::from(50),
            &Value::from(50),
            &Value::from(0),
            &Value::from(50)
        ),
        "{report:#}"
    );

    // Every MR: one welcome; the commented ones one help reply; never a note twice.
    for &iid in &mrs {
        let notes = bot_notes(&gitlab, iid);
        let want = if mrs[..14].contains(&iid) { 2 } else { 1 };
        assert_eq!(notes.len(), want, "!{iid}: {notes:#?}");
        let mut unique = notes.clone();
        unique.dedup();
        assert_eq!(unique.len(), notes.len(), "!{iid}: a note twice");
        assert!(gitlab
            .mr(PROJECT_ID, iid)
            .labels
            .contains(&"Co-Create".to_string()));
    }
    for (&iid, id) in mrs[..14].iter().zip(&comments) {
        assert!(
            bot_notes(&gitlab, iid)
                .iter()
                .any(|n| n.starts_with(&format!("<!-- cocreate:cmd:{id} -->"))),
            "!{iid}: the help command was answered"
        );
    }
    assert_eq!(
        gitlab.mr(PROJECT_ID, 30).title,
        "Change 30, revised",
        "the edit happened in GitLab"
    );
    let t = gitlab.issue(TRACKING_PROJECT_ID, intake);
    assert!(
        t.labels.contains(&"Co-Create engagement".to_string()),
        "the intake issue became a tracking issue: {:?}\n{err}",
        t.labels
    );

    // A second run: nothing new since the cursor.
    let writes_before = gitlab.writes().len();
    let (code, again, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&again["found"], &again["enqueued"]),
        (&Value::from(0), &Value::from(0))
    );
    // Even reading the whole week again: all already had, nothing written.
    let (code, week, err) = recover(&gitlab, &url, data.path(), &["--process", "--since", "7d"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&week["found"], &week["enqueued"], &week["already_had"]),
        (&Value::from(50), &Value::from(0), &Value::from(50)),
        "{week:#}"
    );
    assert_eq!(
        gitlab.writes().len(),
        writes_before,
        "{:#?}",
        gitlab.writes()
    );
    for &iid in &mrs {
        let want = if mrs[..14].contains(&iid) { 2 } else { 1 };
        assert_eq!(bot_notes(&gitlab, iid).len(), want, "!{iid}");
    }
    println!(
        "BENCH recover: 0 new failed deliveries: {} reads; re-reading 50: {} reads; recovering and processing 50: {} reads, {} writes",
        again["api_reads"], week["api_reads"], report["api_reads"], report["api_writes"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_already_in_the_queue_is_already_had_and_a_junit_report_is_written() {
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    open_mr_delivered(&gitlab, 31);
    let sent = gitlab.send_deliveries().await;
    assert_eq!(sent.len(), 1);
    let junit = data.path().join("recover.xml");
    let (code, report, err) = recover(
        &gitlab,
        &url,
        data.path(),
        &["--junit", junit.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&report["found"], &report["enqueued"]),
        (&Value::from(1), &Value::from(1))
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("testsuite name=\"recover\""), "{xml}");
    assert!(xml.contains("groups/vendor/hooks/"), "{xml}");
    // Re-reading the day: what the queue has is already had, not stored again.
    let (_, week, _) = recover(&gitlab, &url, data.path(), &["--since", "1d"]);
    assert_eq!(
        (&week["enqueued"], &week["already_had"]),
        (&Value::from(0), &Value::from(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_gitlab_disabled_fails_the_job_with_the_reason() {
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    gitlab.set_auto_disable_hooks(true);
    for iid in 30..35 {
        open_mr_delivered(&gitlab, iid);
    }
    // The fifth is not even attempted: four failures disabled the hook.
    assert_eq!(gitlab.send_deliveries().await.len(), 4);
    let (code, report, err) = recover(&gitlab, &url, data.path(), &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["enqueued"], 4);
    let disabled = report["disabled"][0].as_str().expect("a reason");
    assert!(disabled.contains("temporarily disabled"), "{disabled}");
    assert!(
        disabled.contains("Settings > Webhooks > Test"),
        "{disabled}"
    );
    assert!(err.contains("temporarily disabled"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_events_api_the_job_says_so_and_sweeps_open_mrs() {
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    open_mr_delivered(&gitlab, 30);
    gitlab.send_deliveries().await;
    for missing in [404, 403] {
        gitlab.set_hook_events_api(Some(missing));
        let (code, report, err) = recover(&gitlab, &url, data.path(), &["--since", "1d"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(report["mode"], "fallback", "{report:#}");
        assert!(
            report["notes"][0]
                .as_str()
                .unwrap()
                .contains(&missing.to_string()),
            "{report:#}"
        );
        assert!(report["fallback"]["mrs"]
            .as_array()
            .is_some_and(|m| !m.is_empty()));
    }
    let notes = bot_notes(&gitlab, 30);
    assert_eq!(notes.len(), 1, "the sweep routed !30 once: {notes:#?}");
}

/// Fallback drill: no events API (GitLab < 17.3). An intake issue and a command comment
/// whose deliveries were lost are found by the sweeps and processed exactly once; a second
/// run stores nothing and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_events_api_a_lost_intake_issue_and_command_are_processed_exactly_once() {
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    gitlab.set_hook_events_api(Some(404));
    let intake = gitlab
        .issue_from_template(
            TRACKING_PROJECT_ID,
            702,
            "Co-Create engagement request: Example Aero",
            "Co-Create engagement request",
            fill_intake,
        )
        .expect("setup committed the template");
    open_mr_delivered(&gitlab, 40);
    let comment = gitlab.comment_on_mr(PROJECT_ID, 40, AERO_DEV.0, "@cocreate-bot help");
    let sent = gitlab.send_deliveries().await;
    assert!(sent.len() >= 3, "{sent:?}");
    assert!(sent.iter().all(|(_, status)| *status == 0), "serve is down");

    let (code, report, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{report:#}\n{err}");
    assert_eq!(report["mode"], "fallback", "{report:#}");
    assert!(
        report["notes"][0].as_str().unwrap_or("").contains("404"),
        "{report:#}"
    );
    let sweep = &report["sweep"];
    // The seeded world's tracking project has an issue of its own in the window too.
    let issues = sweep["issues_found"].as_u64().unwrap_or(0);
    assert!(issues >= 1, "{report:#}");
    assert_eq!(sweep["commands_found"], 1, "{report:#}");
    assert_eq!(sweep["enqueued"], issues + 1, "{report:#}");
    // The MR sweep ran first and opened the organization's tracking issue, so the intake
    // issue is linked to it as a duplicate: once.
    let intake_notes: Vec<String> = gitlab
        .issue_notes(TRACKING_PROJECT_ID, intake)
        .into_iter()
        .filter(|n| n.author_id == BOT_ID)
        .map(|n| n.body)
        .collect();
    assert_eq!(
        intake_notes
            .iter()
            .filter(|n| n.starts_with("<!-- cocreate:intake-duplicate"))
            .count(),
        1,
        "the lost intake issue was handled once: {intake_notes:#?}\n{err}"
    );
    let notes = bot_notes(&gitlab, 40);
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.starts_with(&format!("<!-- cocreate:cmd:{comment} -->")))
            .count(),
        1,
        "the lost help command was answered once: {notes:#?}"
    );
    assert_eq!(notes.len(), 2, "a welcome and the help reply: {notes:#?}");

    // A second run: everything already had, nothing processed, nothing written.
    gitlab.clear_calls();
    let (code, again, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{again:#}\n{err}");
    assert_eq!(
        (
            &again["enqueued"],
            &again["already_had"],
            &again["processed"]
        ),
        (&Value::from(0), &Value::from(issues + 1), &Value::from(0)),
        "{again:#}"
    );
    assert_eq!(gitlab.writes(), vec![], "a second run writes nothing");
    assert_eq!(bot_notes(&gitlab, 40).len(), 2);
    println!(
        "BENCH recover fallback: 1 open Co-Create MR, 1 new issue: {} reads, {} writes",
        again["api_reads"], again["api_writes"]
    );
}

/// `reconcile` recovers first (its JSON and JUnit carry the step), then sweeps: a lost new MR
/// and a lost command are each handled once; without a webhook URL the step is skipped and
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_recovers_from_the_events_api_first_then_sweeps() {
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    open_mr_delivered(&gitlab, 41);
    let comment = gitlab.comment_on_mr(PROJECT_ID, 41, AERO_DEV.0, "@cocreate-bot help");
    assert_eq!(gitlab.send_deliveries().await.len(), 2);
    let junit = data.path().join("reconcile.xml");
    let args = [
        "reconcile",
        "--json",
        "--process",
        "--junit",
        junit.to_str().expect("utf-8 path"),
    ];
    let (code, out, err) =
        tokio::task::block_in_place(|| cocreate(&gitlab, &url, data.path(), &args));
    assert_eq!(code, 0, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rec = &run["recover"];
    assert_eq!(rec["mode"], "events-api", "{run:#}");
    assert_eq!(
        (&rec["found"], &rec["enqueued"], &rec["processed"]),
        (&Value::from(2), &Value::from(2), &Value::from(2)),
        "{run:#}"
    );
    assert!(
        run["mrs"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mr"]["iid"] == 41)),
        "the sweep ran after: {run:#}"
    );
    let notes = bot_notes(&gitlab, 41);
    assert_eq!(notes.len(), 2, "one welcome, one help reply: {notes:#?}");
    assert!(notes
        .iter()
        .any(|n| n.starts_with(&format!("<!-- cocreate:cmd:{comment} -->"))));
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("testsuite name=\"reconcile\""), "{xml}");
    assert!(xml.contains("testsuite name=\"recover\""), "{xml}");

    // Without the URL: the step is skipped, with the reason, and the sweep still runs.
    let (code, out, err) = tokio::task::block_in_place(|| {
        cocreate_env(&gitlab, &["reconcile"], &[("COCREATE_WEBHOOK_URL", None)])
    });
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("recover step skipped: no --webhook-url"),
        "{out}"
    );
    assert!(out.contains("reconcile since"), "{out}");
    assert_eq!(bot_notes(&gitlab, 41).len(), 2, "nothing twice");

    // A recover step that fails (GitLab refuses to list the hooks) does not stop the sweep;
    // the job says why and exits 1.
    gitlab.push_fault_for(
        "GET",
        "/api/v4/groups/vendor/hooks",
        support::fake_gitlab::Fault::Status(400),
    );
    let (code, out, err) = tokio::task::block_in_place(|| {
        cocreate(&gitlab, &url, data.path(), &["reconcile", "--json"])
    });
    assert_eq!(code, 1, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        run["recover_error"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{run:#}"
    );
    assert!(
        run["mrs"].as_array().is_some_and(|m| !m.is_empty()),
        "{run:#}"
    );
    assert!(err.contains("recover step failed"), "{err}");
}

/// `recover --queue postgres://…`: the deliveries go into the PostgreSQL queue, deduped against
/// what is already there, and the cursor lives in that database (a run from another machine,
/// with another data directory, continues from it); nothing is written to the SQLite queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_with_queue_fills_the_postgresql_queue_and_keeps_its_cursor_there() {
    use cocreate::queue::{PostgresQueue, Queue};
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    let pg_url = support::postgres::fresh_database().await;
    let queue_arg = ["--queue", pg_url.as_str()];
    for iid in 30..33 {
        open_mr_delivered(&gitlab, iid);
    }
    assert_eq!(gitlab.send_deliveries().await.len(), 3);
    let (code, first, err) = recover(&gitlab, &url, data.path(), &queue_arg);
    assert_eq!(code, 0, "{first:#}\n{err}");
    assert_eq!(
        (&first["found"], &first["enqueued"]),
        (&Value::from(3), &Value::from(3)),
        "{first:#}"
    );
    let pg = PostgresQueue::connect(&pg_url).await.expect("queue");
    assert_eq!(pg.stats().await.expect("stats").pending, 3);
    assert!(
        !data.path().join("queue.sqlite3").exists(),
        "no SQLite queue was made in --data"
    );

    // Three more while serve is still down; the next run, from a machine with an empty data
    // directory, reads only those: the cursor is in PostgreSQL.
    for iid in 33..36 {
        open_mr_delivered(&gitlab, iid);
    }
    assert_eq!(gitlab.send_deliveries().await.len(), 3);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let (code, second, err) = recover(&gitlab, &url, elsewhere.path(), &queue_arg);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&second["found"], &second["enqueued"]),
        (&Value::from(3), &Value::from(3)),
        "{second:#}"
    );
    let (code, third, err) = recover(&gitlab, &url, elsewhere.path(), &queue_arg);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&third["found"], &third["enqueued"]),
        (&Value::from(0), &Value::from(0)),
        "nothing new since the cursor: {third:#}"
    );
    assert_eq!(pg.stats().await.expect("stats").pending, 6);

    // The whole week again, processed here: all already in the queue, each MR handled once.
    let mut args = queue_arg.to_vec();
    args.extend(["--since", "7d", "--process"]);
    let (code, week, err) = recover(&gitlab, &url, elsewhere.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (
            &week["found"],
            &week["enqueued"],
            &week["already_had"],
            &week["processed"]
        ),
        (
            &Value::from(6),
            &Value::from(0),
            &Value::from(6),
            &Value::from(6)
        ),
        "{week:#}"
    );
    let stats = pg.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.done), (0, 6), "{stats:?}");
    for iid in 30..36 {
        assert_eq!(bot_notes(&gitlab, iid).len(), 1, "!{iid}: one welcome");
    }
    assert!(!elsewhere.path().join("queue.sqlite3").exists());
}

/// `reconcile --queue postgres://…`: its recover step fills (and with `--process` drains) the
/// PostgreSQL queue; a second run stores and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_with_queue_recovers_into_postgresql() {
    use cocreate::queue::{PostgresQueue, Queue};
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    let pg_url = support::postgres::fresh_database().await;
    open_mr_delivered(&gitlab, 41);
    let comment = gitlab.comment_on_mr(PROJECT_ID, 41, AERO_DEV.0, "@cocreate-bot help");
    assert_eq!(gitlab.send_deliveries().await.len(), 2);
    let args = [
        "reconcile",
        "--json",
        "--process",
        "--queue",
        pg_url.as_str(),
    ];
    let (code, out, err) =
        tokio::task::block_in_place(|| cocreate(&gitlab, &url, data.path(), &args));
    assert_eq!(code, 0, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rec = &run["recover"];
    assert_eq!(
        (&rec["found"], &rec["enqueued"], &rec["processed"]),
        (&Value::from(2), &Value::from(2), &Value::from(2)),
        "{run:#}"
    );
    let stats = PostgresQueue::connect(&pg_url)
        .await
        .expect("queue")
        .stats()
        .await
        .expect("stats");
    assert_eq!((stats.pending, stats.done), (0, 2), "{stats:?}");
    assert!(!data.path().join("queue.sqlite3").exists());
    let notes = bot_notes(&gitlab, 41);
    assert_eq!(notes.len(), 2, "one welcome, one help reply: {notes:#?}");
    assert!(notes
        .iter()
        .any(|n| n.starts_with(&format!("<!-- cocreate:cmd:{comment} -->"))));

    // Again, with the queue from the environment: nothing new, nothing written.
    let writes = gitlab.writes().len();
    let (code, out, err) = tokio::task::block_in_place(|| {
        cocreate_env(
            &gitlab,
            &["reconcile", "--json", "--process"],
            &[
                ("COCREATE_WEBHOOK_URL", Some(url.as_str())),
                ("COCREATE_QUEUE_URL", Some(pg_url.as_str())),
                ("COCREATE_DATA", data.path().to_str()),
            ],
        )
    });
    assert_eq!(code, 0, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (&run["recover"]["found"], &run["recover"]["enqueued"]),
        (&Value::from(0), &Value::from(0)),
        "{run:#}"
    );
    assert_eq!(gitlab.writes().len(), writes, "{:#?}", gitlab.writes());
    assert!(!data.path().join("queue.sqlite3").exists());
}

/// The fallback's cost (BENCHMARKS.md "recover against reconcile"): with the example's one MR,
/// then with 50 open Co-Create MRs each carrying a lost help command; and the sweep's share
/// (without the MR sweep, as `reconcile`'s recover step runs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_sweep_cost() {
    let url = down_url();
    let (gitlab, data) = world_after_setup(&url).await;
    gitlab.set_hook_events_api(Some(404));
    let cost = |v: &Value| {
        let all = v["api_reads"].as_u64().unwrap_or(0);
        let mrs = v["fallback"]["api_reads"].as_u64().unwrap_or(0);
        (all, all - mrs)
    };
    let (code, zero, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{err}");
    let (zero_all, zero_sweep) = cost(&zero);
    for iid in 50..100 {
        open_mr_delivered(&gitlab, iid);
    }
    gitlab.send_deliveries().await;
    // Route them (the MR sweep), then the commands are written and lost.
    let (code, _, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{err}");
    for iid in 50..100 {
        gitlab.comment_on_mr(PROJECT_ID, iid, AERO_DEV.0, "@cocreate-bot help");
    }
    gitlab.send_deliveries().await;
    let (code, found, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(found["sweep"]["commands_found"], 50, "{found:#}");
    assert_eq!(found["sweep"]["enqueued"], 50, "{found:#}");
    for iid in 50..100 {
        assert_eq!(bot_notes(&gitlab, iid).len(), 2, "!{iid}: welcome + help");
    }
    let (found_all, found_sweep) = cost(&found);
    let (code, again, err) = recover(&gitlab, &url, data.path(), &["--process"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["enqueued"], 0, "{again:#}");
    assert_eq!(again["api_writes"], 0, "{again:#}");
    let (again_all, again_sweep) = cost(&again);
    println!(
        "BENCH recover fallback: 1 MR: {zero_all} reads (issue+comment sweep and detection {zero_sweep}); \
         51 open Co-Create MRs, 50 lost commands: {found_all} reads (sweep {found_sweep}), {} writes; \
         the same again: {again_all} reads (sweep {again_sweep}), 0 writes",
        found["api_writes"]
    );
}

//! Measurement, not a check (ignored by default): the time from a webhook to the welcome note
//! of a new Co-Create MR while the fake GitLab answers every call after a fixed latency
//! (200 ms: a GitLab far away). The real `cocreate serve` binary runs as a child process over
//! 127.0.0.1; MRs are sent one at a time, each by an engineer the bot has not seen yet (cold
//! author cache), so each figure is one event's own path through the process. BENCHMARKS.md
//! §7 has the figures and the command:
//!
//! ```text
//! cargo test --release --test welcome_latency -- --ignored --nocapture
//! ```
//!
//! Knobs: `WELCOME_BASE_BIN` (another build of `cocreate`, measured in the same run, rounds
//! alternating with this one), `WELCOME_MRS` (MRs per build, default 30), `WELCOME_ROUNDS`
//! (default 3: each round sends `WELCOME_MRS / WELCOME_ROUNDS` MRs to each build, to a fresh
//! world), `WELCOME_LATENCY_MS` (default 200).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::fake_gitlab::{fixture, FakeGitLab, BOT_USERNAME};
use support::harness::{PROJECT_ID, SECRET};
use support::load::{
    add_org_mr, dev_id, mr_payload, seed_orgs, tail, write_policies, ServeCommand,
};

const ORGS: usize = 3;
const DEVS_PER_ORG: usize = 10;
const WELCOME_MARKER: &str = "<!-- cocreate:welcome -->";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One round against one build: a fresh world and process, `n` new MRs one after another.
/// Returns each MR's time from sending its webhook to its welcome note, and the GitLab calls
/// the process made.
async fn round(bin: &PathBuf, n: usize, latency: Duration) -> (Vec<Duration>, usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let orgs = write_policies(&tmp.path().join("policies"), ORGS, DEVS_PER_ORG);
    let gitlab = FakeGitLab::start().await;
    seed_orgs(&gitlab, &orgs, 0, 101);
    gitlab.set_latency(Some(latency));
    let root = env!("CARGO_MANIFEST_DIR");
    let cmd = ServeCommand::new(bin, tmp.path().join("serve.log"))
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env(
            "COCREATE_DATA",
            tmp.path().join("data").display().to_string(),
        )
        .env(
            "COCREATE_POLICIES",
            tmp.path().join("policies").display().to_string(),
        )
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env("RUST_LOG", "warn");
    let serve = cmd.start(1).await;
    let template: Value = fixture("payloads/merge_request_open.json");
    let http = reqwest::Client::new();
    gitlab.clear_calls();
    let mut times = Vec::new();
    for i in 0..n {
        // Organizations in turn (each one's first MR opens its tracking issue, the others
        // link to it), each MR by an engineer not seen before.
        let (o, d) = (i % ORGS, (i / ORGS) % DEVS_PER_ORG);
        let iid = 101 + i as u64;
        let author = (dev_id(o, d), orgs[o].usernames[d].clone());
        add_org_mr(&gitlab, iid, author.0, false);
        let body = mr_payload(&template, iid, (author.0, &author.1), "open");
        let started = Instant::now();
        let r = http
            .post(format!("{}/webhook", serve.url))
            .header("Content-Type", "application/json")
            .header("X-Gitlab-Event", "Merge Request Hook")
            .header("X-Gitlab-Token", SECRET)
            .header("X-Gitlab-Event-UUID", format!("welcome-latency-{iid}"))
            .body(body)
            .send()
            .await
            .expect("webhook sent");
        assert_eq!(r.status(), 200, "webhook refused");
        let deadline = started + Duration::from_secs(60);
        loop {
            let welcomed = gitlab.notes(PROJECT_ID, iid).iter().any(|n| {
                n.author_username == BOT_USERNAME && !n.system && n.body.contains(WELCOME_MARKER)
            });
            if welcomed {
                times.push(started.elapsed());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no welcome on !{iid} within 60 s; log:\n{}",
                tail(&cmd.log, 30)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The rest of the event (the tracking issue's link) finishes before the next MR.
        loop {
            let m = serve.metrics().await;
            let g = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
            if g("cocreate_queue_pending") == 0.0 && g("cocreate_queue_in_flight") == 0.0 {
                break;
            }
            assert!(Instant::now() < deadline, "queue did not drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let calls = gitlab.calls().len();
    serve.kill();
    (times, calls)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by hand (BENCHMARKS.md §7)"]
async fn time_from_webhook_to_welcome_note_with_a_slow_gitlab() {
    let mrs = env_usize("WELCOME_MRS", 30).max(1);
    let rounds = env_usize("WELCOME_ROUNDS", 3).clamp(1, mrs);
    let latency = Duration::from_millis(env_usize("WELCOME_LATENCY_MS", 200) as u64);
    let mut builds: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(base) = std::env::var("WELCOME_BASE_BIN") {
        builds.push(("base".into(), PathBuf::from(base)));
    }
    builds.push(("this".into(), PathBuf::from(env!("CARGO_BIN_EXE_cocreate"))));
    let mut results: Vec<(Vec<Duration>, usize)> = vec![(Vec::new(), 0); builds.len()];
    for r in 0..rounds {
        let n = mrs / rounds + usize::from(r < mrs % rounds);
        for (b, (name, bin)) in builds.iter().enumerate() {
            let (times, calls) = round(bin, n, latency).await;
            eprintln!("round {} {name}: {n} MRs, {calls} GitLab calls", r + 1);
            results[b].0.extend(times);
            results[b].1 += calls;
        }
    }
    println!(
        "| build | MRs | p50 ms | p99 ms | max ms | GitLab calls per MR |\n|---|---|---|---|---|---|"
    );
    for ((name, bin), (mut times, calls)) in builds.iter().zip(results) {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} ({}) | {} | {:.0} | {:.0} | {:.0} | {:.1} |",
            bin.display(),
            times.len(),
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
            ms(times[times.len() - 1]),
            calls as f64 / times.len() as f64
        );
    }
}

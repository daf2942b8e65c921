//! Chaos: 2,000 webhook events for 200 merge requests of 20 organizations go to the real
//! `cocreate serve` binary while the fake GitLab fails 20% of its calls (500 and 429, alternately)
//! and the process is killed with SIGKILL three times and started again.
//!
//! At the end every MR must be in exactly the wanted state (the one a clean, fault-free run gives
//! a probe MR: the same labels, one roster reviewer that is sticky per organization, the same bot
//! notes with exactly one welcome note), nothing may be in the dead-letter table, and every
//! acknowledged delivery must be stored exactly once.
//!
//! Size: `CHAOS_MRS_PER_ORG` (default 10) and `CHAOS_EVENTS_PER_MR` (default 10) scale it; the
//! default is the full 2,000 events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocreate::queue::{Queue, SqliteQueue};
use serde_json::Value;

use support::fake_gitlab::{fixture, FakeGitLab, BOT_USERNAME};
use support::harness::{PROJECT_ID, ROSTER, SECRET, TRACKING_PROJECT_ID};
use support::load::{
    add_org_mr, dev_id, mr_payload, seed_orgs, tail, write_policies, OrgMr, Serve, ServeCommand,
    MAINTAINER,
};

const ORGS: usize = 20;
const DEVS_PER_ORG: usize = 3;
const FAILURE_RATE: f64 = 0.2;
const KILLS: usize = 3;
const SENDERS: usize = 16;
const WELCOME_MARKER: &str = "<!-- cocreate:welcome -->";
const PROBE_IID: u64 = 1000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One delivery: its event UUID and the body GitLab would send.
struct Delivery {
    uuid: String,
    body: Vec<u8>,
}

/// A deterministic shuffle (xorshift64*), so a failure can be replayed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        items.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

/// The hidden markers of the bot's (non-system) notes on an MR, in order.
fn bot_markers(gitlab: &FakeGitLab, iid: u64) -> (Vec<String>, Vec<String>) {
    let notes: Vec<String> = gitlab
        .notes(PROJECT_ID, iid)
        .into_iter()
        .filter(|n| n.author_username == BOT_USERNAME && !n.system)
        .map(|n| n.body)
        .collect();
    // The hidden markers that lead each note, e.g. `<!-- cocreate:welcome -->`.
    let markers = notes
        .iter()
        .map(|b| {
            b.lines()
                .take_while(|l| l.starts_with("<!-- cocreate:") && l.ends_with(" -->"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (markers, notes)
}

/// Sends one delivery until the server answers 200 (connection errors while the process is
/// down are retried with the same event UUID, as GitLab's "Resend request" would).
async fn deliver(http: &reqwest::Client, url: &str, d: &Delivery, deadline: Instant) -> String {
    loop {
        let r = http
            .post(format!("{url}/webhook"))
            .header("Content-Type", "application/json")
            .header("X-Gitlab-Event", "Merge Request Hook")
            .header("X-Gitlab-Token", SECRET)
            .header("X-Gitlab-Event-UUID", &d.uuid)
            .body(d.body.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                return v["status"].as_str().unwrap_or("?").to_owned();
            }
            Ok(r) => panic!(
                "delivery {} answered {}: {:?}",
                d.uuid,
                r.status(),
                r.text().await
            ),
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "delivery {} not acknowledged in time",
                    d.uuid
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn queue_gauges(serve: &Serve) -> (f64, f64, f64) {
    let m = serve.metrics().await;
    let g = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    (
        g("cocreate_queue_pending"),
        g("cocreate_queue_in_flight"),
        g("cocreate_queue_dead"),
    )
}

async fn wait_drained(serve: &Serve, cmd: &ServeCommand, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let (pending, in_flight, dead) = queue_gauges(serve).await;
        if pending == 0.0 && in_flight == 0.0 {
            return dead;
        }
        assert!(
            Instant::now() < deadline,
            "queue did not drain: pending {pending}, in flight {in_flight}, dead {dead}; log:\n{}",
            tail(&cmd.log, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_events_under_faults_and_kills_end_in_exactly_the_wanted_state() {
    let started = Instant::now();
    let mrs_per_org = env_usize("CHAOS_MRS_PER_ORG", 10);
    let events_per_mr = env_usize("CHAOS_EVENTS_PER_MR", 10).max(1);

    let tmp = tempfile::tempdir().expect("tempdir");
    let orgs = write_policies(&tmp.path().join("policies"), ORGS, DEVS_PER_ORG);
    let gitlab = FakeGitLab::start().await;
    // iids 101..: `!16` belongs to the harness's world.
    let mrs = seed_orgs(&gitlab, &orgs, mrs_per_org, 101);
    let root = env!("CARGO_MANIFEST_DIR");
    let cmd = ServeCommand::new(env!("CARGO_BIN_EXE_cocreate"), tmp.path().join("serve.log"))
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
        .env("COCREATE_CONCURRENCY", "16")
        .env("COCREATE_LEASE_SECS", "3")
        .env("COCREATE_RETRY_BASE", "0.05")
        .env("COCREATE_RETRY_CAP", "1")
        .env("RUST_LOG", "warn");
    let template: Value = fixture("payloads/merge_request_open.json");

    // 1. The wanted state, from a probe MR processed cleanly (no faults, no kills).
    let mut serve = cmd.start(1).await;
    let http = reqwest::Client::new();
    let (probe_author, probe_name) = (dev_id(0, 0), orgs[0].usernames[0].as_str());
    add_org_mr(&gitlab, PROBE_IID, probe_author, true);
    let probe = Delivery {
        uuid: "chaos-probe".into(),
        body: mr_payload(&template, PROBE_IID, (probe_author, probe_name), "open"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    assert_eq!(deliver(&http, &cmd.url(), &probe, deadline).await, "queued");
    assert_eq!(
        wait_drained(&serve, &cmd, Duration::from_secs(60)).await,
        0.0
    );
    let probe_mr = gitlab.mr(PROJECT_ID, PROBE_IID);
    let org_label = |slug: &str| format!("Co-Create org::{slug}");
    let generic_labels: BTreeSet<String> = probe_mr
        .labels
        .iter()
        .filter(|l| **l != org_label(&orgs[0].slug))
        .cloned()
        .collect();
    assert!(
        probe_mr.labels.contains(&org_label(&orgs[0].slug))
            && generic_labels.contains("Co-Create")
            && generic_labels.contains("enhancement"),
        "the probe MR was not routed: {probe_mr:#?}\n{}",
        tail(&cmd.log, 30)
    );
    let (probe_markers, _) = bot_markers(&gitlab, PROBE_IID);
    assert_eq!(
        probe_markers
            .iter()
            .filter(|m| m.contains(WELCOME_MARKER))
            .count(),
        1,
        "{probe_markers:?}"
    );

    // 2. Chaos: faults on, deliveries in a shuffled order, three SIGKILLs.
    let mut deliveries = Vec::new();
    for mr in &mrs {
        let (iid, author) = (mr.iid, (mr.author.0, mr.author.1.as_str()));
        for e in 0..events_per_mr {
            let action = if e == 0 { "open" } else { "update" };
            deliveries.push(Delivery {
                uuid: format!("chaos-{iid}-{e}"),
                body: mr_payload(&template, iid, author, action),
            });
        }
    }
    shuffle(&mut deliveries, 0x5eed_c0c0_a000_0001);
    let total = deliveries.len();
    gitlab.clear_calls();
    gitlab.set_failure_rate(FAILURE_RATE, 42);

    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let duplicates = Arc::new(AtomicUsize::new(0));
    let send_deadline = Instant::now() + Duration::from_secs(120);
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (deliveries, next, acked, duplicates, http, url) = (
                deliveries.clone(),
                next.clone(),
                acked.clone(),
                duplicates.clone(),
                http.clone(),
                cmd.url(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = deliveries.get(i) else { break };
                    let status = deliver(&http, &url, d, send_deadline).await;
                    if status == "duplicate" {
                        duplicates.fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert_eq!(status, "queued", "{}", d.uuid);
                    }
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut start_attempts = 0;
    for k in 1..=KILLS {
        // Kill at 1/4, 2/4 and 3/4 of the acknowledged deliveries: the worker is mid-event.
        let threshold = total * k / (KILLS + 1);
        while acked.load(Ordering::Relaxed) < threshold {
            assert!(Instant::now() < send_deadline, "deliveries stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        serve.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        serve = cmd.start(20).await;
        start_attempts += serve.attempts;
    }
    for s in senders {
        s.await.expect("sender");
    }
    let sent_in = started.elapsed();

    // 3. Everything acknowledged is processed, nothing is dead.
    let dead = wait_drained(&serve, &cmd, Duration::from_secs(240)).await;
    let calls = gitlab.calls();
    let injected = calls
        .iter()
        .filter(|c| c.status == 500 || c.status == 429)
        .count();
    assert!(
        serve.terminate(Duration::from_secs(30)),
        "graceful stop timed out"
    );
    assert_eq!(dead, 0.0, "dead letters; log:\n{}", tail(&cmd.log, 40));
    let queue = SqliteQueue::open(&tmp.path().join("data")).expect("open queue");
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.in_flight, stats.dead),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(
        stats.done as usize,
        total + 1,
        "every acknowledged delivery is stored exactly once (plus the probe): {stats:?}"
    );

    // 4. Every MR is in exactly the wanted state.
    let roster: BTreeMap<u64, &str> = ROSTER.iter().map(|(id, n)| (*id, *n)).collect();
    let mut org_reviewer: BTreeMap<usize, u64> = BTreeMap::new();
    let probe_reviewer = probe_mr
        .reviewer_ids
        .iter()
        .copied()
        .find(|id| roster.contains_key(id))
        .expect("the probe got a roster reviewer");
    org_reviewer.insert(0, probe_reviewer);
    for OrgMr { iid, org: o, .. } in &mrs {
        let mr = gitlab.mr(PROJECT_ID, *iid);
        let mut wanted = generic_labels.clone();
        wanted.insert(org_label(&orgs[*o].slug));
        let have: BTreeSet<String> = mr.labels.iter().cloned().collect();
        assert_eq!(have, wanted, "labels of !{iid}");
        assert_eq!(have.len(), mr.labels.len(), "duplicate labels on !{iid}");

        let ours: Vec<u64> = mr
            .reviewer_ids
            .iter()
            .copied()
            .filter(|id| roster.contains_key(id))
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "exactly one roster reviewer on !{iid}: {mr:?}"
        );
        let people: Vec<u64> = mr
            .reviewer_ids
            .iter()
            .copied()
            .filter(|id| !roster.contains_key(id))
            .collect();
        let wanted_people = if iid % 2 == 0 {
            vec![MAINTAINER]
        } else {
            vec![]
        };
        assert_eq!(people, wanted_people, "people's reviewers kept on !{iid}");
        let sticky = *org_reviewer.entry(*o).or_insert(ours[0]);
        assert_eq!(ours[0], sticky, "sticky reviewer per organization (!{iid})");

        let (markers, notes) = bot_markers(&gitlab, *iid);
        assert_eq!(markers, probe_markers, "bot notes on !{iid}: {notes:#?}");
        let welcome = notes
            .iter()
            .find(|n| n.contains(WELCOME_MARKER))
            .expect("welcome note");
        assert!(
            welcome.contains(&format!("@{}", roster[&ours[0]])),
            "the welcome note names the reviewer (!{iid}): {welcome}"
        );
    }

    // At most one engagement tracking issue per organization, and nothing on it twice: every
    // note the bot wrote there carries a different marker (e.g. one link per MR).
    let tracking = gitlab.issues(TRACKING_PROJECT_ID);
    for org in &orgs {
        let issues = tracking
            .iter()
            .filter(|i| i.title.contains(&org.slug) || i.description.contains(&org.slug))
            .count();
        assert!(issues <= 1, "{issues} tracking issues for {}", org.slug);
    }
    let mut tracking_notes = 0;
    for issue in &tracking {
        let mut seen = BTreeSet::new();
        for n in gitlab.issue_notes(TRACKING_PROJECT_ID, issue.iid) {
            if n.author_username != BOT_USERNAME || n.system {
                continue;
            }
            tracking_notes += 1;
            let marker = n.body.lines().next().unwrap_or("").to_owned();
            assert!(
                seen.insert(marker.clone()),
                "posted twice on tracking issue #{}: {marker}",
                issue.iid
            );
        }
    }

    println!(
        "chaos: {total} deliveries ({} answered duplicate after a kill) for {} MRs of {ORGS} organizations; \
         {KILLS} SIGKILLs, {start_attempts} start attempts after them; {} GitLab calls of which {injected} \
         failed on purpose (500/429); delivered in {:.1?}, all processed in {:.1?}; \
         dead letters 0, every MR in the wanted state; {} tracking issues with {tracking_notes} bot notes, none twice",
        duplicates.load(Ordering::Relaxed),
        mrs.len(),
        calls.len(),
        sent_in,
        started.elapsed(),
        tracking.len(),
    );
}

//! Chaos on PostgreSQL: three `cocreate serve` replicas (the real binary) share one PostgreSQL
//! queue while 2,000 webhook events for 200 merge requests of 20 organizations are spread over
//! them by the senders (each delivery goes to the next replica, and to another one when that
//! one is down, as a load balancer would), the fake GitLab fails 20% of its calls (500 and 429),
//! one replica is killed with SIGKILL three times, all three once, and PostgreSQL is restarted
//! once.
//!
//! At the end every MR must be in exactly the wanted state (the one a clean run gives a probe
//! MR), no bot note twice, at most one tracking issue per organization, no dead letter, and
//! every acknowledged delivery stored exactly once.
//!
//! Needs `COCREATE_TEST_POSTGRES_URL`, `COCREATE_TEST_PG_BIN` and `COCREATE_TEST_PG_DATA` (set by
//! `eval "$(scripts/test_postgres.sh)"`, which .ci/run does): the test restarts that cluster.
//! Size: `CHAOS_MRS_PER_ORG` (default 10) and `CHAOS_EVENTS_PER_MR` (default 10).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocreate::queue::{PostgresQueue, Queue};
use serde_json::Value;

use support::fake_gitlab::{fixture, FakeGitLab, BOT_USERNAME};
use support::harness::{PROJECT_ID, ROSTER, SECRET, TRACKING_PROJECT_ID};
use support::load::{
    add_org_mr, dev_id, mr_payload, seed_orgs, tail, write_policies, OrgMr, ServeCommand,
    MAINTAINER,
};

const ORGS: usize = 20;
const DEVS_PER_ORG: usize = 3;
const FAILURE_RATE: f64 = 0.2;
const KILLS: usize = 3;
const REPLICAS: usize = 3;
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

/// Sends one delivery until a replica answers 200, starting with replica `first` and moving to
/// the next one on a connection error or a 503 (the replica is down, or its queue is: PostgreSQL
/// restarting), with the same event UUID, as GitLab's "Resend request" would.
async fn deliver(
    http: &reqwest::Client,
    urls: &[String],
    first: usize,
    d: &Delivery,
    deadline: Instant,
) -> String {
    let mut n = first;
    loop {
        let url = &urls[n % urls.len()];
        n += 1;
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
            Ok(r) if r.status() == 503 => {}
            Ok(r) => panic!(
                "delivery {} answered {}: {:?}",
                d.uuid,
                r.status(),
                r.text().await
            ),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "delivery {} not acknowledged in time",
            d.uuid
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until nothing is pending or in flight in the shared queue; returns the dead count.
async fn wait_drained(queue: &PostgresQueue, logs: &[&ServeCommand], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(stats) = queue.stats().await {
            if stats.pending == 0 && stats.in_flight == 0 {
                return stats.dead;
            }
            assert!(
                Instant::now() < deadline,
                "queue did not drain: {stats:?}; logs:\n{}",
                logs.iter()
                    .map(|c| tail(&c.log, 20))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restarts the test cluster (fast shutdown: every connection is cut, as in a failover).
fn restart_postgres() {
    let bin = std::env::var("COCREATE_TEST_PG_BIN").unwrap_or_else(|_| {
        panic!(
            "COCREATE_TEST_PG_BIN is not set: {}",
            support::postgres::HOW_TO_RUN
        )
    });
    let data = std::env::var("COCREATE_TEST_PG_DATA").unwrap_or_else(|_| {
        panic!(
            "COCREATE_TEST_PG_DATA is not set: {}",
            support::postgres::HOW_TO_RUN
        )
    });
    let pg_ctl = format!("{bin}/pg_ctl");
    let args = ["-D", data.as_str(), "-m", "fast", "-w", "restart"];
    // PostgreSQL does not run as root: as root (CI), as the cluster's owner.
    let status = if is_root() {
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &pg_ctl])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
    } else {
        std::process::Command::new(&pg_ctl)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
    }
    .expect("run pg_ctl");
    assert!(status.success(), "pg_ctl restart failed");
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgres_survive_faults_kills_and_a_database_restart() {
    let started = Instant::now();
    let mrs_per_org = env_usize("CHAOS_MRS_PER_ORG", 10);
    let events_per_mr = env_usize("CHAOS_EVENTS_PER_MR", 10).max(1);
    let queue_url = support::postgres::fresh_database().await;

    let tmp = tempfile::tempdir().expect("tempdir");
    let orgs = write_policies(&tmp.path().join("policies"), ORGS, DEVS_PER_ORG);
    let gitlab = FakeGitLab::start().await;
    // iids 101..: `!16` belongs to the harness's world.
    let mrs = seed_orgs(&gitlab, &orgs, mrs_per_org, 101);
    let root = env!("CARGO_MANIFEST_DIR");
    let cmds: Vec<ServeCommand> = (0..REPLICAS)
        .map(|r| {
            ServeCommand::new(
                env!("CARGO_BIN_EXE_cocreate"),
                tmp.path().join(format!("serve-{r}.log")),
            )
            .env("GITLAB_URL", gitlab.url())
            .env("GITLAB_TOKEN", gitlab.token())
            .env("COCREATE_WEBHOOK_SECRET", SECRET)
            .env(
                "COCREATE_DATA",
                tmp.path().join(format!("data-{r}")).display().to_string(),
            )
            .env("COCREATE_QUEUE_URL", queue_url.clone())
            .env(
                "COCREATE_POLICIES",
                tmp.path().join("policies").display().to_string(),
            )
            .env("COCREATE_TEMPLATES", format!("{root}/templates"))
            .env("COCREATE_CONCURRENCY", "8")
            .env("COCREATE_LEASE_SECS", "3")
            .env("COCREATE_RETRY_BASE", "0.05")
            .env("COCREATE_RETRY_CAP", "1")
            .env("RUST_LOG", "warn")
        })
        .collect();
    let urls: Vec<String> = cmds.iter().map(ServeCommand::url).collect();
    let logs: Vec<&ServeCommand> = cmds.iter().collect();
    let template: Value = fixture("payloads/merge_request_open.json");
    let queue = PostgresQueue::connect(&queue_url).await.expect("queue");

    // 1. The wanted state, from a probe MR processed cleanly by one replica.
    let mut replicas = vec![cmds[0].start(1).await];
    let http = reqwest::Client::new();
    let (probe_author, probe_name) = (dev_id(0, 0), orgs[0].usernames[0].as_str());
    add_org_mr(&gitlab, PROBE_IID, probe_author, true);
    let probe = Delivery {
        uuid: "chaos-probe".into(),
        body: mr_payload(&template, PROBE_IID, (probe_author, probe_name), "open"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    assert_eq!(
        deliver(&http, &urls[..1], 0, &probe, deadline).await,
        "queued"
    );
    assert_eq!(
        wait_drained(&queue, &logs, Duration::from_secs(60)).await,
        0
    );
    for cmd in &cmds[1..] {
        replicas.push(cmd.start(1).await);
    }
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
        tail(&cmds[0].log, 30)
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

    // 2. Chaos: faults on, deliveries shuffled and spread over the replicas.
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
            let (deliveries, next, acked, duplicates, http, urls) = (
                deliveries.clone(),
                next.clone(),
                acked.clone(),
                duplicates.clone(),
                http.clone(),
                urls.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = deliveries.get(i) else { break };
                    let status = deliver(&http, &urls, i, d, send_deadline).await;
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

    // At 1/6, 2/6 and 3/6 of the acknowledged deliveries one replica is killed (a different
    // one each time) and started again; at 4/6 all three; at 5/6 PostgreSQL restarts.
    let wait_for = |fraction: usize| {
        let threshold = total * fraction / 6;
        let acked = acked.clone();
        async move {
            while acked.load(Ordering::Relaxed) < threshold {
                assert!(Instant::now() < send_deadline, "deliveries stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let mut start_attempts = 0;
    for k in 0..KILLS {
        wait_for(k + 1).await;
        let r = k % REPLICAS;
        replicas.remove(r).kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        replicas.insert(r, cmds[r].start(20).await);
        start_attempts += replicas[r].attempts;
    }
    wait_for(4).await;
    for replica in replicas.drain(..) {
        replica.kill();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for cmd in &cmds {
        let replica = cmd.start(20).await;
        start_attempts += replica.attempts;
        replicas.push(replica);
    }
    wait_for(5).await;
    restart_postgres();
    for s in senders {
        s.await.expect("sender");
    }
    let sent_in = started.elapsed();

    // 3. Everything acknowledged is processed, nothing is dead.
    let dead = wait_drained(&queue, &logs, Duration::from_secs(240)).await;
    let calls = gitlab.calls();
    let injected = calls
        .iter()
        .filter(|c| c.status == 500 || c.status == 429)
        .count();
    for replica in replicas.drain(..) {
        assert!(
            replica.terminate(Duration::from_secs(30)),
            "graceful stop timed out"
        );
    }
    assert_eq!(dead, 0, "dead letters; log:\n{}", tail(&cmds[0].log, 40));
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

    // Exactly one engagement tracking issue per organization, and nothing on it twice: every
    // note the bot wrote there carries a different marker (e.g. one link per MR).
    let tracking = gitlab.issues(TRACKING_PROJECT_ID);
    for org in &orgs {
        let issues = tracking
            .iter()
            .filter(|i| i.title.contains(&org.slug) || i.description.contains(&org.slug))
            .count();
        assert_eq!(issues, 1, "{issues} tracking issues for {}", org.slug);
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
        "postgres chaos: {REPLICAS} replicas, {total} deliveries ({} answered duplicate after a kill) for {} MRs of {ORGS} organizations; \
         {KILLS} SIGKILLs of one replica and one of all, PostgreSQL restarted once, {start_attempts} start attempts after them; {} GitLab calls of which {injected} \
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

//! Receiver and cost benchmark. One run measures, on 127.0.0.1 only:
//!
//! 1. acknowledgements: a load generator sends N signed MR webhooks (default 20,000, 64 at once)
//!    to (a) a bare axum server that reads the body and answers 200 (the ceiling), (b) the
//!    release `cocreate serve` with its durable queue and the worker live against a fake GitLab,
//!    and (c) the same with the worker in dry run (no GitLab calls: acknowledgements only).
//!    Reports requests/s, p50/p99/max latency, peak RSS (`VmHWM`) of the server process, and
//!    the ratio to (a); then how fast (b)'s worker drains the queue.
//! 2. cost: GitLab API calls per new Co-Create MR (cold and warm caches), per redelivery, and of
//!    the `reconcile` and `cca-check` sweeps, as the number of open Co-Create MRs grows.
//!
//! ```sh
//! cargo bench --bench receiver                      # everything, defaults
//! BENCH_REQUESTS=5000 BENCH_CONCURRENCY=32 BENCH_COST_SIZES=1,100 cargo bench --bench receiver
//! cargo bench --bench receiver -- --requests 5000 --concurrency 32 --max-secs 60 --skip-cost
//! ```
//!
//! Every load phase stops by itself after N requests or `--max-secs` (default 120 s).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocreate::queue::{PostgresQueue, Queue, SqliteQueue};
use cocreate::webhook::SigningKey;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::fake_gitlab::{fixture, FakeGitLab};
use support::harness::{self, mr_event, new_uuid, AERO_DEV, PROJECT_ID, SECRET};
use support::load::{
    add_org_mr, free_port, mr_payload, peak_rss_kib, seed_orgs, tail, write_policies, Serve,
    ServeCommand,
};

const SIGNING_KEY: &str = "whsec_YmVuY2htYXJrLXNpZ25pbmcta2V5LTMyLWJ5dGVzISE=";
const BIN: &str = env!("CARGO_BIN_EXE_cocreate");

#[derive(Debug, Clone)]
struct Args {
    requests: usize,
    concurrency: usize,
    max_secs: u64,
    drain_secs: u64,
    warmup: usize,
    skip_cost: bool,
    skip_load: bool,
    skip_breakdown: bool,
    bare_server: Option<SocketAddr>,
}

impl Args {
    fn parse() -> Self {
        let env = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let mut a = Args {
            requests: env("BENCH_REQUESTS", 20_000) as usize,
            concurrency: env("BENCH_CONCURRENCY", 64) as usize,
            max_secs: env("BENCH_MAX_SECS", 120),
            drain_secs: env("BENCH_DRAIN_SECS", 30),
            warmup: env("BENCH_WARMUP", 1_000) as usize,
            skip_cost: false,
            skip_load: false,
            skip_breakdown: false,
            bare_server: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut num = |name: &str| -> u64 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} needs a number"))
            };
            match arg.as_str() {
                "--requests" => a.requests = num("--requests") as usize,
                "--concurrency" => a.concurrency = num("--concurrency").max(1) as usize,
                "--max-secs" => a.max_secs = num("--max-secs"),
                "--drain-secs" => a.drain_secs = num("--drain-secs"),
                "--warmup" => a.warmup = num("--warmup") as usize,
                "--skip-cost" => a.skip_cost = true,
                "--skip-load" => a.skip_load = true,
                "--skip-breakdown" => a.skip_breakdown = true,
                "--bare-server" => {
                    a.bare_server = Some(
                        it.next()
                            .and_then(|v| v.parse().ok())
                            .expect("--bare-server ADDR"),
                    )
                }
                _ => {} // `cargo bench` adds `--bench`
            }
        }
        a
    }
}

fn main() {
    let args = Args::parse();
    if let Some(addr) = args.bare_server {
        return bare_server(addr);
    }
    // The load generator gets one thread; the server under test runs in its own process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        println!("# cocreate benchmark");
        println!("machine: {}", machine());
        if !args.skip_load {
            load_benchmark(&args).await;
        }
        if !args.skip_breakdown {
            breakdown(&args).await;
        }
        if !args.skip_cost {
            cost_benchmark().await;
        }
    });
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.1} GiB RAM", kb as f64 / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    format!("{cpu}, {cores} cores available{mem}, Linux {kernel}")
}

// ---------------------------------------------------------------------------------------------
// (a) the ceiling: a bare axum server
// ---------------------------------------------------------------------------------------------

fn bare_server(addr: SocketAddr) {
    use axum::routing::{get, post};
    // Same runtime shape as `cocreate serve` (`#[tokio::main]`: one worker per core).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let app = axum::Router::new()
            .route(
                "/webhook",
                post(|body: axum::body::Bytes| async move {
                    std::hint::black_box(&body);
                    axum::Json(serde_json::json!({ "status": "queued", "id": body.len() }))
                }),
            )
            .route("/healthz", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

// ---------------------------------------------------------------------------------------------
// The load generator: raw HTTP/1.1 keep-alive connections, pre-built requests
// ---------------------------------------------------------------------------------------------

struct Prepared {
    head: Vec<u8>,
    body: Arc<Vec<u8>>,
}

#[derive(Debug, Default)]
struct LoadResult {
    sent: usize,
    ok: usize,
    queued: usize,
    errors: BTreeMap<String, usize>,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

impl LoadResult {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Signed MR webhooks: each with its own `webhook-id` and `X-Gitlab-Event-UUID`, signed like
/// Standard Webhooks, with the secret token too. Bodies cycle over the given payloads.
fn prepare(addr: SocketAddr, bodies: &[Arc<Vec<u8>>], n: usize, tag: &str) -> Vec<Prepared> {
    let key = SigningKey::parse(SIGNING_KEY).expect("key");
    let ts = chrono::Utc::now().timestamp();
    (0..n)
        .map(|i| {
            let body = bodies[i % bodies.len()].clone();
            let id = format!("msg_{tag}_{i}");
            let sig = key.sign(&id, ts, &body);
            let head = format!(
                "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 User-Agent: GitLab/18.0.0\r\nX-Gitlab-Event: Merge Request Hook\r\n\
                 X-Gitlab-Token: {SECRET}\r\nX-Gitlab-Event-UUID: {tag}-{i}\r\n\
                 webhook-id: {id}\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {sig}\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            Prepared {
                head: head.into_bytes(),
                body,
            }
        })
        .collect()
}

/// Reads one HTTP/1.1 response with a Content-Length; returns (status, body contains "queued").
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let queued = buf[end + 4..total].windows(6).any(|w| w == b"queued");
            buf.drain(..total);
            return Ok((status, queued));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn run_load(
    addr: SocketAddr,
    reqs: Arc<Vec<Prepared>>,
    concurrency: usize,
    max: Duration,
) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + max;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (reqs, next) = (reqs.clone(), next.clone());
            tokio::spawn(async move {
                let mut r = LoadResult::default();
                let mut conn: Option<TcpStream> = None;
                let mut buf = Vec::with_capacity(8192);
                let mut out = Vec::with_capacity(16 * 1024);
                loop {
                    if Instant::now() > deadline {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = reqs.get(i) else { break };
                    let t0 = Instant::now();
                    if conn.is_none() {
                        match TcpStream::connect(addr).await {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                conn = Some(s);
                                buf.clear();
                            }
                            Err(e) => {
                                *r.errors.entry(format!("connect: {e}")).or_default() += 1;
                                r.sent += 1;
                                continue;
                            }
                        }
                    }
                    let s = conn.as_mut().expect("connected");
                    out.clear();
                    out.extend_from_slice(&req.head);
                    out.extend_from_slice(&req.body);
                    r.sent += 1;
                    let answer = match s.write_all(&out).await {
                        Ok(()) => read_response(s, &mut buf).await,
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok((200, queued)) => {
                            r.ok += 1;
                            r.queued += queued as usize;
                            r.latencies_us.push(t0.elapsed().as_micros() as u32);
                        }
                        Ok((status, _)) => {
                            *r.errors.entry(format!("HTTP {status}")).or_default() += 1;
                        }
                        Err(e) => {
                            *r.errors.entry(format!("io: {}", e.kind())).or_default() += 1;
                            conn = None;
                        }
                    }
                }
                r
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for t in tasks {
        let r = t.await.expect("load task");
        total.sent += r.sent;
        total.ok += r.ok;
        total.queued += r.queued;
        total.latencies_us.extend(r.latencies_us);
        for (k, v) in r.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    total
}

struct Phase {
    name: &'static str,
    result: LoadResult,
    rss_kib: Option<u64>,
    cpu: Option<CpuUse>,
}

/// CPU time a process used, by thread name (user + system, seconds), from `/proc`.
#[derive(Debug, Clone, Default)]
struct CpuUse {
    user: f64,
    system: f64,
    by_thread: BTreeMap<String, f64>,
}

impl CpuUse {
    fn read(pid: u32) -> Option<CpuUse> {
        const TICKS: f64 = 100.0; // USER_HZ on Linux
        let mut c = CpuUse::default();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            let (open, close) = (stat.find('(')?, stat.rfind(')')?);
            let name = stat[open + 1..close].to_owned();
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            let user = fields.get(11)?.parse::<f64>().ok()? / TICKS;
            let system = fields.get(12)?.parse::<f64>().ok()? / TICKS;
            c.user += user;
            c.system += system;
            *c.by_thread.entry(name).or_default() += user + system;
        }
        Some(c)
    }

    fn since(&self, before: &CpuUse) -> CpuUse {
        CpuUse {
            user: self.user - before.user,
            system: self.system - before.system,
            by_thread: self
                .by_thread
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v - before.by_thread.get(k).copied().unwrap_or(0.0),
                    )
                })
                .collect(),
        }
    }
}

fn print_cpu(phases: &[Phase]) {
    println!();
    for p in phases {
        let Some(c) = &p.cpu else { continue };
        let per_ack = (c.user + c.system) / p.result.ok.max(1) as f64 * 1e6;
        let threads: Vec<String> = c
            .by_thread
            .iter()
            .filter(|(_, v)| **v >= 0.05)
            .map(|(k, v)| format!("{k} {v:.1} s"))
            .collect();
        println!(
            "- {}: server CPU {:.1} s user + {:.1} s system = {per_ack:.0} µs per acknowledgement; by thread: {}",
            p.name,
            c.user,
            c.system,
            threads.join(", ")
        );
    }
}

fn print_phases(phases: &[Phase], ceiling: f64) {
    println!();
    println!("| server | acks | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | peak RSS MiB | ratio to (a) | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for p in phases {
        let r = &p.result;
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {} |",
            p.name,
            r.ok,
            r.rps(),
            r.pct(0.50),
            r.pct(0.99),
            r.pct(0.999),
            r.pct(1.0),
            p.rss_kib
                .map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            r.rps() / ceiling,
            if r.errors.is_empty() {
                "0".to_owned()
            } else {
                format!("{:?}", r.errors)
            },
        );
    }
}

async fn wait_health(url: &str) {
    let http = reqwest::Client::new();
    for _ in 0..500 {
        if http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} did not come up");
}

async fn load_benchmark(args: &Args) {
    println!(
        "\n## Receiver: {} signed MR webhooks, {} concurrent connections, after {} warm-up requests (bounded to {} s per phase)",
        args.requests, args.concurrency, args.warmup, args.max_secs
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let max = Duration::from_secs(args.max_secs);

    // 200 MRs of 20 organizations: the first 200 requests open them, the rest are updates.
    let orgs = write_policies(&tmp.path().join("policies"), 20, 3);
    let template: Value = fixture("payloads/merge_request_open.json");
    let gitlab = FakeGitLab::start().await;
    let mrs = seed_orgs(&gitlab, &orgs, 10, 101);
    let mut bodies: Vec<Arc<Vec<u8>>> = mrs
        .iter()
        .map(|m| {
            Arc::new(mr_payload(
                &template,
                m.iid,
                (m.author.0, &m.author.1),
                "open",
            ))
        })
        .collect();
    bodies.extend(mrs.iter().map(|m| {
        Arc::new(mr_payload(
            &template,
            m.iid,
            (m.author.0, &m.author.1),
            "update",
        ))
    }));
    println!(
        "payload: GitLab's documented `Merge Request Hook` ({} bytes), X-Gitlab-Token and a Standard Webhooks signature on each",
        bodies[0].len()
    );

    let mut phases = Vec::new();

    // (a) the ceiling
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    #[allow(clippy::zombie_processes)] // killed and waited for below
    let mut bare = Command::new(std::env::current_exe().expect("current exe"))
        .arg("--bare-server")
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn bare server");
    wait_health(&format!("http://{addr}")).await;
    let warm = Arc::new(prepare(addr, &bodies, args.warmup, "warm-a"));
    run_load(addr, warm, args.concurrency, max).await;
    let reqs = Arc::new(prepare(addr, &bodies, args.requests, "a"));
    let cpu_before = CpuUse::read(bare.id());
    let result = run_load(addr, reqs, args.concurrency, max).await;
    let rss_kib = peak_rss_kib(bare.id());
    let cpu = CpuUse::read(bare.id())
        .zip(cpu_before)
        .map(|(after, before)| after.since(&before));
    let _ = bare.kill();
    let _ = bare.wait();
    let ceiling = result.rps();
    phases.push(Phase {
        name: "(a) bare axum: read body, answer 200",
        result,
        rss_kib,
        cpu,
    });

    // (b) and (c): the release `cocreate serve`
    let mut drain_report = String::new();
    for (name, live) in [
        (
            "(b) cocreate serve: durable queue, worker live against the fake GitLab",
            true,
        ),
        (
            "(c) cocreate serve: durable queue, worker in dry run (acks only)",
            false,
        ),
    ] {
        let tag = if live { "b" } else { "c" };
        let data = tmp.path().join(format!("data-{tag}"));
        let mut cmd = ServeCommand::new(BIN, tmp.path().join(format!("serve-{tag}.log")))
            .env("COCREATE_WEBHOOK_SECRET", SECRET)
            .env("COCREATE_SIGNING_KEY", SIGNING_KEY)
            .env("COCREATE_DATA", data.display().to_string())
            .env(
                "COCREATE_POLICIES",
                tmp.path().join("policies").display().to_string(),
            )
            .env(
                "COCREATE_TEMPLATES",
                format!("{}/templates", env!("CARGO_MANIFEST_DIR")),
            )
            .env("COCREATE_BODY_LIMIT", "1048576")
            .env("RUST_LOG", "info");
        if live {
            cmd = cmd
                .env("GITLAB_URL", gitlab.url())
                .env("GITLAB_TOKEN", gitlab.token());
        }
        let serve = cmd.start(3).await;
        let addr: SocketAddr = format!("127.0.0.1:{}", cmd.port).parse().expect("addr");
        let warm = Arc::new(prepare(addr, &bodies, args.warmup, &format!("warm-{tag}")));
        let warmed = run_load(addr, warm, args.concurrency, max).await.ok;
        let reqs = Arc::new(prepare(addr, &bodies, args.requests, tag));
        gitlab.clear_calls();
        let cpu_before = CpuUse::read(serve.pid());
        let result = run_load(addr, reqs, args.concurrency, max).await;
        let rss_kib = peak_rss_kib(serve.pid());
        let cpu = CpuUse::read(serve.pid())
            .zip(cpu_before)
            .map(|(after, before)| after.since(&before));
        if live {
            drain_report = drain(&serve, &gitlab, args, result.ok + warmed).await;
        }
        let acked = result.ok + warmed;
        let pid = serve.pid();
        let rss_after = peak_rss_kib(pid);
        assert!(
            serve.terminate(Duration::from_secs(30)),
            "graceful stop; log:\n{}",
            tail(&cmd.log, 20)
        );
        // Every acknowledged delivery is in the queue.
        let stats = SqliteQueue::open(&data)
            .expect("queue")
            .stats()
            .await
            .expect("stats");
        let stored = stats.pending + stats.in_flight + stats.done + stats.dead;
        assert!(
            stored as usize >= acked,
            "{acked} acknowledged but {stored} stored: {stats:?}"
        );
        if live {
            drain_report.push_str(&format!(
                "; peak RSS of (b) including the drain: {:.1} MiB",
                rss_after.unwrap_or(0) as f64 / 1024.0
            ));
        }
        println!("{name}: {acked} acknowledged (with warm-up), {stored} stored: {stats:?}");
        phases.push(Phase {
            name,
            result,
            rss_kib,
            cpu,
        });
    }
    // (d) and (e): the PostgreSQL queue, one and three replicas (when a server is given).
    match std::env::var("BENCH_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            for (name, replicas) in [
                (
                    "(d) cocreate serve: PostgreSQL queue, 1 replica, worker live",
                    1usize,
                ),
                (
                    "(e) cocreate serve: PostgreSQL queue, 3 replicas, worker live",
                    3usize,
                ),
            ] {
                let (phase, report) =
                    postgres_phase(args, &tmp, &gitlab, &bodies, &server, name, replicas).await;
                phases.push(phase);
                drain_report.push_str(&format!("\n{report}"));
            }
        }
        _ => println!(
            "(d), (e): skipped: set BENCH_POSTGRES_URL (e.g. `eval \"$(scripts/test_postgres.sh)\"; \
             BENCH_POSTGRES_URL=$COCREATE_TEST_POSTGRES_URL`)"
        ),
    }
    print_phases(&phases, ceiling);
    print_cpu(&phases);
    println!("\n{drain_report}");
}

/// A new, empty database `cocreate_bench_<tag>_<pid>` on `server`; its URL.
async fn fresh_bench_database(server: &str, tag: &str) -> String {
    use sqlx::Connection;
    let database = format!("cocreate_bench_{tag}_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .expect("BENCH_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database}"
    )))
    .execute(&mut admin)
    .await
    .expect("drop database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let mut url = url::Url::parse(server).expect("BENCH_POSTGRES_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// `replicas` `serve` processes on one fresh PostgreSQL database, the load spread evenly over
/// them (one connection set per replica, as a load balancer would), workers live against the
/// fake GitLab; then the drain, measured in the shared queue.
async fn postgres_phase(
    args: &Args,
    tmp: &tempfile::TempDir,
    gitlab: &FakeGitLab,
    bodies: &[Arc<Vec<u8>>],
    server: &str,
    name: &'static str,
    replicas: usize,
) -> (Phase, String) {
    let tag = format!("pg{replicas}");
    let url = fresh_bench_database(server, &tag).await;
    let max = Duration::from_secs(args.max_secs);
    let mut cmds = Vec::new();
    let mut serves = Vec::new();
    for r in 0..replicas {
        let cmd = ServeCommand::new(BIN, tmp.path().join(format!("serve-{tag}-{r}.log")))
            .env("COCREATE_WEBHOOK_SECRET", SECRET)
            .env("COCREATE_SIGNING_KEY", SIGNING_KEY)
            .env(
                "COCREATE_DATA",
                tmp.path()
                    .join(format!("data-{tag}-{r}"))
                    .display()
                    .to_string(),
            )
            .env("COCREATE_QUEUE_URL", url.clone())
            .env(
                "COCREATE_POLICIES",
                tmp.path().join("policies").display().to_string(),
            )
            .env(
                "COCREATE_TEMPLATES",
                format!("{}/templates", env!("CARGO_MANIFEST_DIR")),
            )
            .env("COCREATE_BODY_LIMIT", "1048576")
            .env("GITLAB_URL", gitlab.url())
            .env("GITLAB_TOKEN", gitlab.token())
            .env("RUST_LOG", "warn");
        serves.push(cmd.start(3).await);
        cmds.push(cmd);
    }
    let addrs: Vec<SocketAddr> = cmds
        .iter()
        .map(|c| format!("127.0.0.1:{}", c.port).parse().expect("addr"))
        .collect();
    let per = args.concurrency.div_ceil(replicas).max(1);
    let spread = |n: usize, phase: &str| {
        let loads: Vec<_> = addrs
            .iter()
            .enumerate()
            .map(|(r, addr)| {
                let reqs = Arc::new(prepare(*addr, bodies, n / replicas, &format!("{phase}{r}")));
                run_load(*addr, reqs, per, max)
            })
            .collect();
        futures_util::future::join_all(loads)
    };
    let warmed: usize = spread(args.warmup, &format!("warm-{tag}-"))
        .await
        .iter()
        .map(|r| r.ok)
        .sum();
    let queue = PostgresQueue::connect(&url).await.expect("queue");
    let done_before = queue.stats().await.expect("stats").done;
    gitlab.clear_calls();
    let load_started = Instant::now();
    let cpu_before = CpuUse::read(serves[0].pid());
    let results = spread(args.requests, &format!("{tag}-")).await;
    let rss_kib = peak_rss_kib(serves[0].pid());
    let cpu = CpuUse::read(serves[0].pid())
        .zip(cpu_before)
        .map(|(after, before)| after.since(&before));
    let mut result = LoadResult::default();
    for r in results {
        result.sent += r.sent;
        result.ok += r.ok;
        result.queued += r.queued;
        for (k, v) in r.errors {
            *result.errors.entry(k).or_default() += v;
        }
        result.latencies_us.extend(r.latencies_us);
        result.elapsed = result.elapsed.max(r.elapsed);
    }
    result.latencies_us.sort_unstable();
    let acked = result.ok + warmed;
    // The drain: until nothing is pending or in flight (bounded).
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    let stats = loop {
        let stats = queue.stats().await.expect("stats");
        if stats.pending + stats.in_flight == 0 || Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let worked = load_started.elapsed().as_secs_f64();
    let processed = stats.done - done_before;
    for (serve, cmd) in serves.into_iter().zip(&cmds) {
        assert!(
            serve.terminate(Duration::from_secs(30)),
            "graceful stop; log:\n{}",
            tail(&cmd.log, 20)
        );
    }
    let stored = stats.pending + stats.in_flight + stats.done + stats.dead;
    assert!(
        stored as usize >= acked,
        "{acked} acknowledged but {stored} stored: {stats:?}"
    );
    println!("{name}: {acked} acknowledged (with warm-up), {stored} stored: {stats:?}");
    let calls = gitlab.calls();
    let report = format!(
        "worker of {name}: {processed} events processed in {worked:.1} s from the start of the load \
         ({:.0} events/s; {} left, dead letters {}); GitLab calls: {}",
        processed as f64 / worked,
        stats.pending + stats.in_flight,
        stats.dead,
        calls.len()
    );
    queue.close().await;
    (
        Phase {
            name,
            result,
            rss_kib,
            cpu,
        },
        report,
    )
}

/// Lets the worker run on (bounded) after the load; reports how fast it processes events.
async fn drain(serve: &Serve, gitlab: &FakeGitLab, args: &Args, acked: usize) -> String {
    let processed = |m: &BTreeMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with("cocreate_events_processed_total"))
            .map(|(_, v)| v)
            .sum()
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.drain_secs);
    let at_start = processed(&serve.metrics().await);
    loop {
        let m = serve.metrics().await;
        let left = m.get("cocreate_queue_pending").copied().unwrap_or(f64::NAN)
            + m.get("cocreate_queue_in_flight")
                .copied()
                .unwrap_or(f64::NAN);
        if left == 0.0 || Instant::now() > deadline {
            let done = processed(&m);
            let elapsed = started.elapsed().as_secs_f64();
            let calls = gitlab.calls();
            let writes = calls.iter().filter(|c| c.method != "GET").count();
            return format!(
                "worker of (b): {done:.0} of {acked} acknowledged events processed by the end; {:.0} events/s in the {elapsed:.0} s after the load ({left} left, dead letters {}); GitLab calls during load and drain: {} ({writes} writes)",
                (done - at_start) / elapsed,
                m.get("cocreate_queue_dead").copied().unwrap_or(f64::NAN),
                calls.len(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Where a request's time goes: verification, parsing, the durable queue alone
// ---------------------------------------------------------------------------------------------

async fn breakdown(args: &Args) {
    use cocreate::events::{self, EventKind};
    use cocreate::webhook::{SignatureHeaders, Verifier};
    println!(
        "\n## Where the time goes ({} build, in the benchmark process)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let template: Value = fixture("payloads/merge_request_open.json");
    let body = &mr_payload(&template, 101, (10_000, "org01-dev-1"), "open")[..];
    let n = 20_000u32;
    let key = SigningKey::parse(SIGNING_KEY).expect("key");
    let verifier = Verifier::new(
        vec![SECRET.into()],
        vec![key.clone()],
        Duration::from_secs(300),
    );
    let ts = chrono::Utc::now().timestamp();
    let sig = key.sign("msg_1", ts, body);
    let ts_s = ts.to_string();
    let t = Instant::now();
    for _ in 0..n {
        let h = SignatureHeaders {
            id: Some("msg_1"),
            timestamp: Some(&ts_s),
            signature: Some(&sig),
        };
        verifier
            .check_token(Some(SECRET.as_bytes()))
            .expect("token");
        verifier
            .check_signature(h, std::hint::black_box(body), ts)
            .expect("signature");
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        let ev = events::parse(EventKind::MergeRequest, std::hint::black_box(body));
        assert!(matches!(ev, Ok(Ok(_))));
    }
    let parse_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "- token + signature check: {verify_us:.1} µs per request; payload parse: {parse_us:.1} µs per request"
    );

    // The durable queue alone: enqueue from `concurrency` tasks (group commit, fsync); then
    // the same while a worker loop claims and acknowledges what arrives, one event at a time
    // (as `serve`'s worker does, without any handler work).
    // The same on PostgreSQL, when a server is given.
    let postgres = std::env::var("BENCH_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty());
    for with_worker in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let queue: Arc<dyn Queue> = Arc::new(SqliteQueue::open(tmp.path()).expect("queue"));
        queue_alone(args, body, with_worker, queue, "SQLite").await;
        if let Some(server) = &postgres {
            let tag = format!("alone{}", u8::from(with_worker));
            let url = fresh_bench_database(server, &tag).await;
            let pg = PostgresQueue::connect(&url)
                .await
                .expect("PostgreSQL queue");
            queue_alone(args, body, with_worker, Arc::new(pg.clone()), "PostgreSQL").await;
            pg.close().await;
        }
    }
}

async fn queue_alone(
    args: &Args,
    body: &[u8],
    with_worker: bool,
    queue: Arc<dyn Queue>,
    engine: &str,
) {
    use cocreate::queue::NewEvent;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = with_worker.then(|| {
        let (queue, stop) = (queue.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let claimed = queue
                    .claim(8, Duration::from_secs(300))
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                for ev in claimed {
                    queue.ack(ev.id).await.expect("ack");
                    acked += 1;
                }
            }
            acked
        })
    });
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body.to_vec());
    let total = args.requests;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (queue, next, body) = (queue.clone(), next.clone(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let ev = NewEvent {
                        dedupe_key: format!("whid:bench-{i}"),
                        serial_key: None,
                        kind: "Merge Request Hook".into(),
                        headers: vec![("x-gitlab-event".into(), "Merge Request Hook".into())],
                        body: body.to_vec(),
                        received_at_ms: 0,
                    };
                    let t0 = Instant::now();
                    queue.enqueue(ev).await.expect("enqueue");
                    lat.push(t0.elapsed().as_micros() as u32);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    stop.store(true, Ordering::Relaxed);
    let acked = match worker {
        Some(w) => format!(
            ", while a worker loop claimed and acknowledged {} of them",
            w.await.expect("worker")
        ),
        None => String::new(),
    };
    println!(
        "- durable {engine} queue alone ({} enqueues from {} tasks{acked}): {:.0} enqueues/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        args.concurrency,
        lat.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

// ---------------------------------------------------------------------------------------------
// Cost: GitLab API calls
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    reads: usize,
    writes: usize,
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} + {}", self.reads, self.writes)
    }
}

fn cost_since(gitlab: &FakeGitLab, from: usize) -> Cost {
    let calls = gitlab.calls();
    let new = &calls[from.min(calls.len())..];
    let writes = new.iter().filter(|c| c.method != "GET").count();
    Cost {
        reads: new.len() - writes,
        writes,
    }
}

fn run_job(gitlab: &FakeGitLab, root: &Path, args: &[&str]) -> String {
    run_job_at(gitlab, root, args, None)
}

/// Runs a job, with its clock set to `now` (RFC 3339) if given.
fn run_job_at(gitlab: &FakeGitLab, root: &Path, args: &[&str], now: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear();
    if let Some(now) = now {
        cmd.env("COCREATE_NOW", now);
    }
    let out = cmd
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_POLICIES", root.join("policies"))
        .env("COCREATE_TEMPLATES", root.join("templates"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run job");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

async fn deliver(url: &str, body: Vec<u8>) {
    let r = reqwest::Client::new()
        .post(format!("{url}/webhook"))
        .header("X-Gitlab-Event", "Merge Request Hook")
        .header("X-Gitlab-Token", SECRET)
        .header("X-Gitlab-Event-UUID", new_uuid())
        .body(body)
        .send()
        .await
        .expect("deliver");
    assert_eq!(r.status(), 200);
}

async fn wait_idle(serve: &Serve) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = serve.metrics().await;
        if m.get("cocreate_queue_pending") == Some(&0.0)
            && m.get("cocreate_queue_in_flight") == Some(&0.0)
        {
            return;
        }
        assert!(Instant::now() < deadline, "queue did not drain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cost_benchmark() {
    println!("\n## GitLab API calls (reads + writes), by open Co-Create MRs in the watched group");
    println!("\nThe example policies and roster (3 reviewers); MRs by `aero-dev-1` (CCA on file).");
    println!();
    println!("| open Co-Create MRs | new MR, cold caches | new MR, warm caches | redelivery | reconcile, first sweep | reconcile, second sweep | cca-check sweep | nudge, nothing due | nudge, all overdue (+14 days) | nudge again |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sizes: Vec<usize> = std::env::var("BENCH_COST_SIZES")
        .unwrap_or_else(|_| "1,10,100,250,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in sizes {
        let gitlab = FakeGitLab::start().await;
        harness::seed(&gitlab); // !16 is open
        for i in 1..n {
            harness::add_mr(&gitlab, 10_000 + i as u64, AERO_DEV.0, "Existing change");
        }
        // Route the existing MRs (a reconcile sweep does it, through the same handler).
        let from = gitlab.calls().len();
        run_job(&gitlab, root, &["reconcile", "--since", "1h"]);
        let reconcile_first = cost_since(&gitlab, from);
        let from = gitlab.calls().len();
        run_job(&gitlab, root, &["reconcile", "--since", "1h"]);
        let reconcile_second = cost_since(&gitlab, from);
        let from = gitlab.calls().len();
        run_job(&gitlab, root, &["cca-check"]);
        let cca = cost_since(&gitlab, from);
        // nudge: now (nothing due), then two weeks later (every MR overdue: ping, label,
        // hand-over), then the same again (nothing twice).
        let from = gitlab.calls().len();
        run_job(&gitlab, root, &["nudge"]);
        let nudge_none = cost_since(&gitlab, from);
        let later = (chrono::Utc::now() + chrono::Duration::days(14)).to_rfc3339();
        let from = gitlab.calls().len();
        run_job_at(&gitlab, root, &["nudge"], Some(&later));
        let nudge_due = cost_since(&gitlab, from);
        let from = gitlab.calls().len();
        run_job_at(&gitlab, root, &["nudge"], Some(&later));
        let nudge_again = cost_since(&gitlab, from);
        assert_eq!(nudge_again.writes, 0, "a second nudge run wrote again");
        assert!(nudge_due.writes >= n, "every MR should have been nudged");

        // Webhooks to a fresh `serve` (cold caches), then warm, then a redelivery.
        let tmp = tempfile::tempdir().expect("tempdir");
        let cmd = ServeCommand::new(BIN, tmp.path().join("serve.log"))
            .env("GITLAB_URL", gitlab.url())
            .env("GITLAB_TOKEN", gitlab.token())
            .env("COCREATE_WEBHOOK_SECRET", SECRET)
            .env(
                "COCREATE_DATA",
                tmp.path().join("data").display().to_string(),
            )
            .env(
                "COCREATE_POLICIES",
                root.join("policies").display().to_string(),
            )
            .env(
                "COCREATE_TEMPLATES",
                root.join("templates").display().to_string(),
            )
            .env("RUST_LOG", "warn")
            // The overdue gauge's reads would mix into the counts below.
            .env("COCREATE_OVERDUE_REFRESH", "0s");
        let serve = cmd.start(1).await;
        let mut costs = Vec::new();
        for (iid, action) in [(20_001u64, "open"), (20_002, "open"), (20_001, "update")] {
            if action == "open" {
                add_org_mr(&gitlab, iid, AERO_DEV.0, true);
            }
            let from = gitlab.calls().len();
            deliver(&serve.url, mr_event(iid, AERO_DEV, AERO_DEV, action)).await;
            wait_idle(&serve).await;
            costs.push(cost_since(&gitlab, from));
        }
        assert!(serve.terminate(Duration::from_secs(30)));
        assert_eq!(
            gitlab
                .notes(PROJECT_ID, 20_001)
                .iter()
                .filter(|n| n.body.contains("<!-- cocreate:welcome -->"))
                .count(),
            1
        );
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            costs[0],
            costs[1],
            costs[2],
            reconcile_first,
            reconcile_second,
            cca,
            nudge_none,
            nudge_due,
            nudge_again
        );
    }
    println!("\n(`serve` connects with one `GET /user`, not counted above.)");
}

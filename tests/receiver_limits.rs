//! The receiver against hostile traffic, as the real binary over real sockets on 127.0.0.1:
//! bodies of unauthenticated clients are never buffered, slow or silent clients are cut off by
//! the header, body and idle timeouts, silent connections cannot starve a real delivery under a
//! low open-file limit, and SIGTERM ends the process within 25 s whatever clients do.
//!
//! Every load here is bounded (tens to a few hundred connections, seconds) because the machine
//! is shared. BENCHMARKS.md §6 runs the same tests at full size with `--release -- --nocapture`
//! and `HOSTILE_CLIENTS=200 SILENT_CONNECTIONS=1100 SILENT_NOFILE=1024`; they print the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::harness::{mr_event, new_uuid, AERO_DEV, SECRET};
use support::load::{peak_rss_kib, tail};

const MR_HOOK: &str = "Merge Request Hook";

/// A size from the environment (for the full-size run), else `default`.
fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Serve {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
    fn log(&self) -> String {
        tail(&self.log, 60)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `cocreate serve` in a dry run (no GitLab token) with the webhook secret, `env` on top;
/// with `nofile`, under that open-file limit (soft and hard, as `ulimit -n` in a unit).
async fn serve(env: &[(&str, &str)], nofile: Option<u32>) -> Serve {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("serve.log");
    let port = free_port();
    let root = env!("CARGO_MANIFEST_DIR");
    let bin = env!("CARGO_BIN_EXE_cocreate");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" serve"))
                .arg(bin);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.arg("serve");
            c
        }
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_DATA", dir.path().join("data"))
        .env("COCREATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
    #[allow(clippy::zombie_processes)] // killed and waited for on drop
    let child = cmd.spawn().expect("spawn cocreate serve");
    let s = Serve {
        child,
        port,
        log,
        _dir: dir,
    };
    let http = reqwest::Client::new();
    for _ in 0..400 {
        let up = http
            .get(format!("{}/healthz", s.url()))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if up.is_ok_and(|r| r.status().is_success()) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("cocreate serve did not come up; log:\n{}", s.log());
}

/// A real delivery, with the secret.
async fn deliver(s: &Serve, timeout: Duration) -> Result<(u16, String), reqwest::Error> {
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", s.url()))
        .header("X-Gitlab-Event", MR_HOOK)
        .header("X-Gitlab-Token", SECRET)
        .header("X-Gitlab-Event-UUID", new_uuid())
        .body(mr_event(16, AERO_DEV, AERO_DEV, "open"))
        .timeout(timeout)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

/// Waits until the peer closes `conn` (read returns 0 or fails), at most `within`. Returns how
/// long it took, or `None` if it was still open. Anything the server sent is returned too.
async fn closed_within(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> (Option<Duration>, String) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Err(_) => return (None, String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    Some(start.elapsed()),
                    String::from_utf8_lossy(&seen).into_owned(),
                )
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn webhook_head(token: Option<&str>, content_length: usize) -> String {
    let token = token
        .map(|t| format!("X-Gitlab-Token: {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Gitlab-Event: {MR_HOOK}\r\n{token}Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_unauthenticated_clients_are_never_buffered() {
    let clients_n = size("HOSTILE_CLIENTS", 24);
    const BODY: usize = 25 * 1024 * 1024;
    let s = serve(&[], None).await;
    let before_kib = peak_rss_kib(s.child.id()).expect("VmHWM");
    let mut clients = Vec::new();
    for _ in 0..clients_n {
        let addr = s.addr();
        clients.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            conn.write_all(webhook_head(None, BODY).as_bytes())
                .await
                .expect("head");
            let chunk = vec![b' '; 256 * 1024];
            let (mut rd, mut wr) = conn.into_split();
            let writer = tokio::spawn(async move {
                let mut sent = 0;
                while sent < BODY {
                    if wr.write_all(&chunk).await.is_err() {
                        break; // the server closed the connection
                    }
                    sent += chunk.len();
                }
            });
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
            let _ = writer.await;
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    let mut answered_401 = 0;
    for c in clients {
        if c.await.expect("client").starts_with("HTTP/1.1 401") {
            answered_401 += 1;
        }
    }
    let peak_kib = peak_rss_kib(s.child.id()).expect("VmHWM");
    // Buffering even one client's body would add 25 MiB; all of them, 600 MiB.
    assert!(
        peak_kib < before_kib + 16 * 1024,
        "peak RSS went from {before_kib} KiB to {peak_kib} KiB while {clients_n} clients without a token streamed 25 MiB each"
    );
    eprintln!(
        "peak RSS {:.1} MiB (at start {:.1} MiB) while {clients_n} clients without a token streamed 25 MiB each; {answered_401} read their 401",
        peak_kib as f64 / 1024.0,
        before_kib as f64 / 1024.0
    );
    assert!(
        answered_401 > 0,
        "the clients without a token were not answered 401"
    );
    // The receiver still works, and stored nothing from them.
    let (status, body) = deliver(&s, Duration::from_secs(10))
        .await
        .expect("delivery");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\":1"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_bodies_share_a_memory_budget() {
    // Budget for one body of the limit: a second client streaming at the same time gets 503
    // with Retry-After, not a second buffer.
    let s = serve(
        &[
            ("COCREATE_BODY_LIMIT", "1048576"),
            ("COCREATE_BODY_BUDGET", "1048576"),
        ],
        None,
    )
    .await;
    let mut first = TcpStream::connect(s.addr()).await.expect("connect");
    first
        .write_all(webhook_head(Some(SECRET), 1024 * 1024).as_bytes())
        .await
        .expect("head");
    first.write_all(b"{").await.expect("first byte");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = TcpStream::connect(s.addr()).await.expect("connect");
    second
        .write_all(webhook_head(Some(SECRET), 600 * 1024).as_bytes())
        .await
        .expect("head");
    let (closed, answer) = closed_within(&mut second, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the second body was waited for");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    drop(first);
    // Once the first is gone, its share is free again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = deliver(&s, Duration::from_secs(10))
        .await
        .expect("delivery");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_short_bodies_and_idle_connections_are_closed() {
    let s = serve(
        &[
            ("COCREATE_HEADER_TIMEOUT", "1s"),
            ("COCREATE_BODY_TIMEOUT", "1s"),
            ("COCREATE_IDLE_TIMEOUT", "2s"),
        ],
        None,
    )
    .await;
    // Headers at one byte every 200 ms (slowloris): closed at the header timeout.
    let slow = TcpStream::connect(s.addr()).await.expect("connect");
    let dripping = tokio::spawn({
        let head = webhook_head(Some(SECRET), 2);
        let (mut rd, mut wr) = slow.into_split();
        let drip = tokio::spawn(async move {
            for b in head.bytes() {
                if wr.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        async move {
            let r = closed_within(&mut rd, Duration::from_secs(15)).await;
            drip.abort();
            r
        }
    });
    // A Content-Length larger than the body: 408 at the body timeout, connection closed.
    let mut short = TcpStream::connect(s.addr()).await.expect("connect");
    short
        .write_all(webhook_head(Some(SECRET), 1000).as_bytes())
        .await
        .expect("head");
    short.write_all(b"{\"object_kind\"").await.expect("part");
    // A kept-alive connection after one answered request, then silence.
    let mut idle = TcpStream::connect(s.addr()).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");

    let (short_closed, short_answer) = closed_within(&mut short, Duration::from_secs(15)).await;
    assert!(
        short_closed.is_some(),
        "a body shorter than its Content-Length was waited for 15 s"
    );
    assert!(short_answer.starts_with("HTTP/1.1 408"), "{short_answer}");
    let (idle_closed, idle_answer) = closed_within(&mut idle, Duration::from_secs(15)).await;
    assert!(idle_answer.starts_with("HTTP/1.1 200"), "{idle_answer}");
    assert!(
        idle_closed.is_some(),
        "an idle keep-alive connection was held 15 s"
    );
    let (slow_closed, _) = dripping.await.expect("slow client");
    assert!(
        slow_closed.is_some(),
        "headers sent at one byte per 200 ms were waited for 15 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_starve_a_delivery_under_a_low_open_file_limit() {
    let nofile = size("SILENT_NOFILE", 256) as u32;
    let silent_n = size("SILENT_CONNECTIONS", 300);
    let s = serve(&[("COCREATE_HEADER_TIMEOUT", "2s")], Some(nofile)).await;
    let mut silent = Vec::new();
    for _ in 0..silent_n {
        silent.push(TcpStream::connect(s.addr()).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let answer = deliver(&s, Duration::from_secs(20)).await;
    let took = start.elapsed();
    let (status, body) = answer.unwrap_or_else(|e| {
        panic!(
            "a real delivery got no answer within 20 s while {silent_n} silent connections were open under ulimit -n {nofile}: {e}\nlog:\n{}",
            s.log()
        )
    });
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "delivery answered {took:?} after it was sent, with {silent_n} silent connections open under ulimit -n {nofile} (header timeout 2 s)"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_process_within_25_s_whatever_clients_do() {
    let s = serve(&[], None).await;
    let mut clients = Vec::new();
    // Silent, mid-headers, mid-body (authenticated, trickling), and idle after a request.
    for i in 0..10 {
        let mut c = TcpStream::connect(s.addr()).await.expect("connect");
        match i % 4 {
            0 => {}
            1 => c
                .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("w"),
            2 => {
                c.write_all(webhook_head(Some(SECRET), 4096).as_bytes())
                    .await
                    .expect("w");
                c.write_all(b"{").await.expect("w");
            }
            _ => c
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("w"),
        }
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = s;
    let start = Instant::now();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(s.child.id().to_string())
        .status();
    let mut exited = None;
    while start.elapsed() < Duration::from_secs(35) {
        if let Ok(Some(status)) = s.child.try_wait() {
            exited = Some((start.elapsed(), status));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (took, status) = exited.unwrap_or_else(|| {
        panic!(
            "still running 35 s after SIGTERM with 10 clients connected; log:\n{}",
            s.log()
        )
    });
    assert!(
        took < Duration::from_secs(25),
        "exited {took:?} after SIGTERM"
    );
    assert!(status.success(), "exit status {status}; log:\n{}", s.log());
    eprintln!("SIGTERM to exit: {took:?} with 10 slow clients connected");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_with_the_client_address_at_most_once_per_second() {
    let s = serve(&[("COCREATE_LOG_FORMAT", "json")], None).await;
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut sent = 0;
    while sent < 300 {
        let r = http
            .post(format!("{}/webhook", s.url()))
            .header("X-Gitlab-Event", MR_HOOK)
            .header("X-Gitlab-Token", "wrong-token-of-an-attacker")
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401);
        sent += 1;
    }
    let secs = start.elapsed().as_secs() + 1;
    // One more after a pause: its line carries the count of those not logged.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http
        .post(format!("{}/webhook", s.url()))
        .header("X-Gitlab-Event", MR_HOOK)
        .header("X-Gitlab-Token", "wrong-token-of-an-attacker")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&s.log).expect("log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "webhook refused")
        .collect();
    assert!(
        !lines.is_empty() && lines.len() as u64 <= secs + 2,
        "{} lines for 301 refusals in about {secs} s: {lines:?}",
        lines.len()
    );
    for l in &lines {
        assert_eq!(l["fields"]["client"], "127.0.0.1", "{l}");
        assert_eq!(l["fields"]["reason"], "bad_token", "{l}");
    }
    let counted: u64 = lines
        .iter()
        .filter_map(|l| l["fields"]["refused_since_last_line"].as_u64())
        .sum();
    assert_eq!(counted + lines.len() as u64, 301, "{lines:?}");
    assert!(!log.contains("wrong-token-of-an-attacker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_before_authentication() {
    let s = serve(&[], None).await;
    let mut conn = TcpStream::connect(s.addr()).await.expect("connect");
    let junk = "a".repeat(100 * 1024);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: {junk}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    // The server may close while we still write; what it answered is what counts.
    let _ = conn.write_all(head.as_bytes()).await;
    let (closed, answer) = closed_within(&mut conn, Duration::from_secs(15)).await;
    assert!(closed.is_some(), "a 100 KiB header was waited for");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

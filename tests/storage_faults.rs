//! Storage faults, against the real binary: `serve` refuses to start on a queue it cannot
//! write (naming the path and the cause), and `/readyz` and `/metrics` answer within a second
//! and say "not ready" while the database is locked by someone else (a stalled disk, as the
//! writer sees it), then recover without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::harness::SECRET;
use support::load::ServeCommand;

/// Runs `cocreate serve` as an unprivileged user (root would ignore the permissions) when the
/// tests run as root, else as the current user.
fn serve_as_unprivileged(data: &std::path::Path) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_cocreate");
    let root = env!("CARGO_MANIFEST_DIR");
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if is_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_DATA", data)
        .env("COCREATE_LISTEN", "127.0.0.1:0")
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .stdin(Stdio::null())
        .output()
        .expect("run cocreate serve")
}

#[test]
fn serve_refuses_to_start_on_a_queue_it_cannot_write_and_says_where_and_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A data directory the service user cannot write into.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let out = serve_as_unprivileged(&data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started: {stderr}");
    assert!(stderr.contains(&data.display().to_string()), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // A writable directory with a database file the service user cannot write.
    let data2 = tmp.path().join("data2");
    std::fs::create_dir(&data2).expect("mkdir");
    std::fs::set_permissions(&data2, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    drop(cocreate::queue::SqliteQueue::open(&data2).expect("create queue"));
    let db = data2.join("queue.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    let out = serve_as_unprivileged(&data2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started: {stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_pages_answer_within_a_second_while_storage_stalls_then_recover() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let data = tmp.path().join("data");
    let cmd = ServeCommand::new(env!("CARGO_BIN_EXE_cocreate"), tmp.path().join("serve.log"))
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_DATA", data.display().to_string())
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"));
    let serve = cmd.start(1).await;
    let http = reqwest::Client::new();
    let ready = || async {
        let start = Instant::now();
        let r = http
            .get(format!("{}/readyz", serve.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("readyz answers");
        (
            r.status().as_u16(),
            start.elapsed(),
            r.text().await.expect("text"),
        )
    };
    let (status, _, body) = ready().await;
    assert_eq!(status, 200, "{body}");

    // Someone holds the database's write lock: the queue's writer waits on it.
    let blocker = rusqlite::Connection::open(data.join("queue.sqlite3")).expect("open");
    blocker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    // A delivery now waits on the lock (in the background), and so would every page that
    // asked the writer.
    let stuck = tokio::spawn({
        let url = serve.url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/webhook"))
                .header("X-Gitlab-Event", "Merge Request Hook")
                .header("X-Gitlab-Token", SECRET)
                .body(support::harness::mr_event(
                    16,
                    support::harness::AERO_DEV,
                    support::harness::AERO_DEV,
                    "open",
                ))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, took, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    assert!(body.contains("did not answer"), "{body}");
    let start = Instant::now();
    let metrics = http
        .get(format!("{}/metrics", serve.url))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("metrics answers")
        .text()
        .await
        .expect("text");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(metrics.contains("cocreate_queue_healthy 0"), "{metrics}");

    // The lock goes away: the stuck delivery is stored, and the pages are ready again.
    blocker.execute_batch("ROLLBACK").expect("unlock");
    let stored = stuck.await.expect("task").expect("delivery answered");
    assert_eq!(stored, 200);
    let (status, _, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    drop(serve);
}

/// A flood of `/readyz` costs no database write: only the background probe (every 5 s)
/// writes its timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_writes_nothing_to_the_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let data = tmp.path().join("data");
    let cmd = ServeCommand::new(env!("CARGO_BIN_EXE_cocreate"), tmp.path().join("serve.log"))
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_DATA", data.display().to_string())
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"));
    let serve = cmd.start(1).await;
    let db = rusqlite::Connection::open(data.join("queue.sqlite3")).expect("open");
    let last_ping = || -> Option<String> {
        db.query_row(
            "SELECT value FROM meta WHERE key = 'last_ping_at'",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    // Wait for a probe write, so that the next one is 5 s away.
    let first = last_ping();
    let deadline = Instant::now() + Duration::from_secs(12);
    while last_ping() == first {
        assert!(Instant::now() < deadline, "no probe write within 12 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probed = last_ping();
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut asked = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        let r = http
            .get(format!("{}/readyz", serve.url))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status(), 200);
        asked += 1;
    }
    assert!(asked > 20, "only {asked} requests");
    assert_eq!(last_ping(), probed, "/readyz wrote to the database");
    drop(serve);
}

/// A full disk is reported as it is: deliveries get 503, `/readyz` names the cause, and the
/// background probe does not call it writable again because a tiny write fits again (the test
/// leaves exactly 300 KiB free; the refused delivery was 700 KiB). Once space is back, the next
/// delivery is stored and `/readyz` is ready again, without a restart. The data directory is a
/// 16 MiB tmpfs (13 MiB of it taken by a filler file) in a private mount namespace
/// (`unshare`); where user namespaces are not allowed the test says so and does nothing.
///
/// The free space the test leaves must be all the room SQLite has, whatever its checkpoints
/// did meanwhile: a completed checkpoint lets SQLite rewrite its log from the start, and a log
/// of a few MiB holds a 700 KiB write without a byte of new space. So a reader (as a backup or
/// `cocreate queue status` would) holds a snapshot from before the first delivery, which keeps
/// SQLite from rewinding its log, and after the refusal the test fills what is left of the
/// file system before it frees the 300 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_truthfully() {
    let can_unshare = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can_unshare {
        eprintln!("SKIPPED: unshare --user --mount is not allowed here");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let log = tmp.path().join("serve.log");
    let root = env!("CARGO_MANIFEST_DIR");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    #[allow(clippy::zombie_processes)] // killed and waited for below
    let mut child = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs -o size=16m tmpfs \"$1\" && head -c 13631488 /dev/zero > \"$1/filler\" && exec \"$0\" serve")
        .arg(env!("CARGO_BIN_EXE_cocreate"))
        .arg(&data)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_DATA", &data)
        .env("COCREATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..400 {
        if http.get(format!("{url}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(up, "serve did not come up: {}", log_text());
    // The data directory as the process sees it (its private tmpfs).
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", child.id()))
        .join(data.strip_prefix("/").expect("absolute"));
    let filler = inside.join("filler");
    // A reader's snapshot: SQLite appends to its log from here on, never rewinds it.
    let mut reader = match SnapshotReader::start(child.id(), &data.join("queue.sqlite3")) {
        Ok(reader) => reader,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{error}; serve log:\n{}", log_text());
        }
    };
    // ~700 KiB deliveries until the file system (3 MiB left) is full.
    let mut v: serde_json::Value = serde_json::from_slice(&support::harness::mr_event(
        16,
        support::harness::AERO_DEV,
        support::harness::AERO_DEV,
        "open",
    ))
    .expect("json");
    let deliver = |uuid: String, body: Vec<u8>| {
        let request = http
            .post(format!("{url}/webhook"))
            .header("X-Gitlab-Event", "Merge Request Hook")
            .header("X-Gitlab-Token", SECRET)
            .header("X-Gitlab-Event-UUID", uuid)
            .body(body);
        async move { request.send().await.expect("send").status().as_u16() }
    };
    let big = |v: &mut serde_json::Value, i: usize| {
        v["object_attributes"]["description"] = format!("{i}{}", "x".repeat(700 * 1024)).into();
        serde_json::to_vec(v).expect("json")
    };
    let readyz = || async {
        let r = http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .expect("readyz");
        (r.status().as_u16(), r.text().await.expect("text"))
    };
    let rest = inside.join("filler-rest");
    let result = async {
        let mut refused = false;
        for i in 0..12 {
            let status = deliver(format!("full-disk-{i}"), big(&mut v, i)).await;
            if status == 503 {
                refused = true;
                break;
            }
            assert_eq!(status, 200);
        }
        assert!(refused, "12 deliveries of 700 KiB fit into 3 MiB?");
        // Whatever the refused delivery left free is taken too: the file system is full.
        fill_up(&rest);
        // The refused write's pages stay allocated in SQLite's log for the next write (up to
        // 700 KiB of room the file system does not show): small deliveries take it until one
        // of them is refused too. Then a big one again, the last refused.
        let mut small_refused = false;
        for j in 0..2000 {
            let body = support::harness::mr_event(
                16,
                support::harness::AERO_DEV,
                support::harness::AERO_DEV,
                "update",
            );
            let status = deliver(format!("full-disk-small-{j}"), body).await;
            if status == 503 {
                small_refused = true;
                break;
            }
            assert_eq!(status, 200);
        }
        assert!(small_refused, "2000 small deliveries fit into a full disk?");
        assert_eq!(
            deliver("full-disk-big".to_owned(), big(&mut v, 99)).await,
            503
        );
        let (status, body) = readyz().await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("full"), "{body}");
        // Free 300 KiB: a small write fits again, a delivery like the refused one does not.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .and_then(|f| f.set_len(13 * 1024 * 1024 - 300 * 1024))
            .expect("shrink the filler");
        // The probe runs meanwhile (every 5 s): still not writable.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (status, body) = readyz().await;
        assert_eq!(status, 503, "after a probe: {body}");
        let metrics = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(metrics.contains("cocreate_queue_writable 0"), "{metrics}");
        assert!(metrics.contains("cocreate_queue_healthy 0"), "{metrics}");
        // Space is back: the next delivery is stored and the receiver is ready, no restart.
        reader.finish();
        std::fs::remove_file(&filler).expect("remove the filler");
        std::fs::remove_file(&rest).expect("remove the rest filler");
        let r = http
            .post(format!("{url}/webhook"))
            .header("X-Gitlab-Event", "Merge Request Hook")
            .header("X-Gitlab-Token", SECRET)
            .header("X-Gitlab-Event-UUID", "full-disk-after")
            .body(support::harness::mr_event(
                16,
                support::harness::AERO_DEV,
                support::harness::AERO_DEV,
                "update",
            ))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let (status, body) = readyz().await;
        assert_eq!(status, 200, "after space was freed: {body}");
    };
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    reader.kill();
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = outcome {
        eprintln!("serve log:\n{}", log_text());
        std::panic::resume_unwind(panic);
    }
}

/// Writes zeros to `path` until the file system is full (ENOSPC).
fn fill_up(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the rest filler");
    let zeros = vec![0u8; 4096];
    loop {
        match f.write_all(&zeros) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// A process in serve's mount namespace (SQLite resolves `/proc/PID/root` to `/`, so the test
/// cannot open the database from outside) holding a read transaction on the queue: this test
/// binary again, running [`hold_a_read_snapshot`].
struct SnapshotReader(
    std::process::Child,
    /// Its stdout, kept open so that its last words do not meet a closed pipe.
    Option<std::io::Lines<std::io::BufReader<std::process::ChildStdout>>>,
);

impl SnapshotReader {
    fn start(pid: u32, db: &std::path::Path) -> Result<Self, String> {
        use std::io::BufRead;
        let mut child = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "--user", "--mount", "--"])
            .arg(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "hold_a_read_snapshot",
                "--ignored",
                "--nocapture",
            ])
            .env("COCREATE_TEST_SNAPSHOT_DB", db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn nsenter: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let held = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.ends_with("snapshot held"));
        let mut reader = Self(child, Some(lines));
        if !held {
            reader.kill();
            return Err("the reader did not take its snapshot".to_owned());
        }
        Ok(reader)
    }

    /// Ends the transaction (the reader commits when its stdin closes) and waits for it.
    fn finish(&mut self) {
        drop(self.0.stdin.take());
        // Read its last words to the end (it exits after them).
        self.1.take().into_iter().flatten().for_each(drop);
        let status = self.0.wait().expect("wait for the reader");
        assert!(status.success(), "the reader failed: {status}");
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Not a test on its own: the reader [`SnapshotReader`] runs (inside serve's mount namespace).
/// Holds a read transaction on `COCREATE_TEST_SNAPSHOT_DB` until its stdin closes.
#[test]
#[ignore = "a helper process of a_full_disk_is_reported_truthfully"]
fn hold_a_read_snapshot() {
    use std::io::{Read, Write};
    let Some(db) = std::env::var_os("COCREATE_TEST_SNAPSHOT_DB") else {
        return;
    };
    let conn = rusqlite::Connection::open(db).expect("open the queue");
    conn.execute_batch("BEGIN; SELECT count(*) FROM events;")
        .expect("take a read snapshot");
    println!("snapshot held");
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    conn.execute_batch("COMMIT").expect("end the snapshot");
}

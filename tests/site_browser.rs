//! The site in a real browser: Debian's headless `chromium`, driven through WebDriver
//! (`chromedriver`, with the `fantoccini` crate), against the site of tests/site.rs served by
//! a small static server on 127.0.0.1 that this test starts. Checks what a visitor relies on:
//! the label filter from the address shows exactly the expected issues, the text filter
//! narrows them (and is kept in the address), every chart has its table, no request leaves
//! 127.0.0.1 (the browser's network log), and the console has no errors. A screenshot of each
//! page is kept under `target/site-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them): without them it fails, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::site_world::{build, site_world, CO_CREATE, QUICK_WIN_ONLY};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: the browser tests need Debian's `{package}` \
         (apt-get install -y chromium chromium-driver; .ci/run installs it)"
    );
}

/// The static server: files under `root`, GET only, no directory listing, nothing outside.
async fn serve(State(root): State<PathBuf>, req: Request) -> Response {
    let rel = req.uri().path().trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    if rel.split('/').any(|p| p == ".." || p.is_empty()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let kind = match rel.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    };
    match std::fs::read(root.join(rel)) {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_server(root: PathBuf) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(serve).with_state(root);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// chromedriver on a free port, ended when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on 127.0.0.1:{port} within 10 s");
}

/// chromedriver's log endpoint (`POST /session/{id}/se/log`): the browser's console or
/// its network events (`performance`), since the last read.
#[derive(Debug)]
struct Logs(&'static str);

impl WebDriverCompatibleCommand for Logs {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": self.0 }).to_string()),
        )
    }
}

async fn logs(c: &Client, kind: &'static str) -> Vec<Value> {
    match c.issue_cmd(Logs(kind)).await.expect("logs") {
        Value::Array(entries) => entries,
        other => panic!("log entries: {other}"),
    }
}

/// Every URL the browser requested, from its network log.
async fn requested(c: &Client) -> Vec<String> {
    logs(c, "performance")
        .await
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
        .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
        .filter_map(|m| {
            m["message"]["params"]["request"]["url"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

async fn visible_titles(c: &Client) -> BTreeSet<String> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll('#issues tbody tr'))\
             .filter(function (r) { return !r.hidden && r.offsetParent !== null; })\
             .map(function (r) { return r.querySelector('td a').textContent; });",
            vec![],
        )
        .await
        .expect("rows");
    v.as_array()
        .expect("array")
        .iter()
        .map(|t| t.as_str().expect("title").to_owned())
        .collect()
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("site-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// A screenshot of the whole page (the window is made as tall as the page, up to 6000 px).
async fn screenshot(c: &Client, name: &str) {
    let height = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .expect("page height")
        .as_u64()
        .unwrap_or(1400)
        .clamp(600, 6000);
    c.set_window_size(1280, height as u32 + 140)
        .await
        .expect("window resized");
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("screenshot written");
    // `COCREATE_SCREENSHOTS=docs/screenshots cargo test --test site_browser` refreshes the
    // README's pictures.
    if let Ok(dir) = std::env::var("COCREATE_SCREENSHOTS") {
        std::fs::copy(&path, Path::new(&dir).join(format!("{name}.png"))).expect("copied");
    }
}

/// Whether a request stays on this machine: anything that goes over a network (http, https,
/// ws, wss, ftp) only to our server; the browser's own pages (`chrome:`, `about:`) and
/// `data:` (the page's empty favicon) go nowhere.
fn stays_here(u: &str, origin: &str) -> bool {
    match url::Url::parse(u) {
        Ok(parsed) => match parsed.scheme() {
            "http" | "https" | "ws" | "wss" | "ftp" => u.starts_with(origin),
            "chrome" | "about" | "data" | "blob" => true,
            _ => false,
        },
        Err(_) => false,
    }
}

/// Loads `url` and checks the page's console (no error) and network (only 127.0.0.1).
async fn visit(c: &Client, origin: &str, url: &str) {
    c.goto(url).await.expect("page loads");
    c.wait()
        .for_element(Locator::Css("footer"))
        .await
        .expect("the page is there");
    let severe: Vec<Value> = logs(c, "browser")
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .collect();
    assert!(severe.is_empty(), "console errors on {url}: {severe:?}");
    let urls = requested(c).await;
    assert!(!urls.is_empty(), "the network log is read");
    for u in &urls {
        assert!(
            stays_here(u, origin),
            "{url} requested {u}, outside {origin}"
        );
    }
    let timing = c
        .execute(
            "return performance.getEntriesByType('resource').map(function (e) { return e.name; });",
            vec![],
        )
        .await
        .expect("resource timing");
    for u in timing.as_array().expect("array") {
        let u = u.as_str().expect("name");
        assert!(stays_here(u, origin), "{url} loaded {u}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_works_in_headless_chromium() {
    require(CHROMIUM, "chromium");
    require(CHROMEDRIVER, "chromium-driver");
    let gitlab = site_world().await;
    let site = build(&gitlab, true).await;
    let root = tempfile::tempdir().expect("dir");
    site.write(root.path()).expect("written");
    let addr = start_server(root.path().to_owned()).await;
    let origin = format!("http://{addr}/");
    let driver = start_driver().await;
    let profile = tempfile::tempdir().expect("profile");

    let mut caps = Capabilities::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1400",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    caps.insert(
        "goog:loggingPrefs".into(),
        json!({ "browser": "ALL", "performance": "ALL" }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless chromium");

    // The label filter from the address, as the action plan links it.
    visit(&c, &origin, &format!("{origin}index.html?label=co-create")).await;
    let want: BTreeSet<String> = CO_CREATE.iter().map(|s| s.to_string()).collect();
    assert_eq!(visible_titles(&c).await, want);
    let shown = c
        .find(Locator::Id("shown"))
        .await
        .expect("count")
        .text()
        .await
        .expect("text");
    assert_eq!(shown, "3");
    // The text filter narrows them, and the address keeps both.
    c.find(Locator::Id("q"))
        .await
        .expect("text box")
        .send_keys("proxies")
        .await
        .expect("typed");
    assert_eq!(
        visible_titles(&c).await,
        BTreeSet::from(["Support HTTP proxies in the CLI".to_owned()])
    );
    let here = c.current_url().await.expect("url");
    assert_eq!(here.query(), Some("label=co-create&q=proxies"));
    // The shared address shows the same view.
    visit(&c, &origin, here.as_str()).await;
    assert_eq!(visible_titles(&c).await.len(), 1);
    visit(
        &c,
        &origin,
        &format!("{origin}index.html?label=quick%20win"),
    )
    .await;
    assert_eq!(
        visible_titles(&c).await,
        BTreeSet::from([QUICK_WIN_ONLY.to_owned()])
    );
    visit(&c, &origin, &format!("{origin}index.html")).await;
    assert_eq!(visible_titles(&c).await.len(), 4);
    screenshot(&c, "issue-list").await;

    // Every chart has its table, with one row per bar.
    visit(&c, &origin, &format!("{origin}dashboard.html")).await;
    let charts = c
        .execute(
            "return Array.from(document.querySelectorAll('svg')).map(function (s) {\
               var f = s.closest('figure');\
               var t = f && f.querySelector('table.numbers');\
               return { id: f ? f.id : null, rows: t ? t.tBodies[0].rows.length : 0,\
                        visible: s.getBoundingClientRect().width > 0 };\
             });",
            vec![],
        )
        .await
        .expect("charts");
    let charts = charts.as_array().expect("array");
    assert_eq!(charts.len(), 4, "{charts:?}");
    for ch in charts {
        assert!(ch["id"].is_string(), "a chart outside its figure: {ch}");
        assert!(
            ch["rows"].as_u64().unwrap_or(0) > 0,
            "a chart without its table: {ch}"
        );
        assert_eq!(ch["visible"], true, "{ch}");
    }
    screenshot(&c, "dashboard").await;

    visit(&c, &origin, &format!("{origin}orgs/example-aero.html")).await;
    let title = c
        .find(Locator::Css("h1"))
        .await
        .expect("h1")
        .text()
        .await
        .expect("text");
    assert!(title.contains("example-aero"), "{title}");
    screenshot(&c, "organization").await;

    c.close().await.expect("session closed");
    drop(driver);
}

//! Running the real `cocreate` binary as a child process, for the chaos and security tests and
//! the receiver benchmark: spawn (stderr to a log file), wait for health, read `/metrics`, read
//! the peak RSS, SIGKILL / SIGTERM, and generated policy directories with many organizations.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::fake_gitlab::{FakeGitLab, MrSpec, UserSpec};
use super::harness::{self, PROJECT_ID, PROJECT_PATH};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// How to start `cocreate serve`.
#[derive(Debug, Clone)]
pub struct ServeCommand {
    pub bin: PathBuf,
    pub port: u16,
    /// Environment of the child (the port is added as `COCREATE_LISTEN`).
    pub env: Vec<(String, String)>,
    /// The child's stderr (its logs) is appended here, across restarts.
    pub log: PathBuf,
}

/// A running `cocreate serve` child.
pub struct Serve {
    pub child: Child,
    pub url: String,
    /// How many start attempts it took (a start fails when GitLab fails `GET /user`).
    pub attempts: u32,
}

impl ServeCommand {
    pub fn new(bin: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            port: free_port(),
            env: Vec::new(),
            log: log.into(),
        }
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn_once(&self) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log file");
        #[allow(clippy::zombie_processes)] // every caller kills or waits for it
        Command::new(&self.bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("COCREATE_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cocreate serve")
    }

    /// Starts the server and waits until `/healthz` answers. A child that exits during start-up
    /// (e.g. GitLab failed its `GET /user`, as a process manager would see it) is started again,
    /// up to `max_attempts` times.
    pub async fn start(&self, max_attempts: u32) -> Serve {
        let http = reqwest::Client::new();
        for attempt in 1..=max_attempts {
            let mut child = self.spawn_once();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    eprintln!("cocreate serve exited during start-up ({status}); starting again");
                    break;
                }
                let health = http
                    .get(format!("{}/healthz", self.url()))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if health.is_ok_and(|r| r.status().is_success()) {
                    return Serve {
                        child,
                        url: self.url(),
                        attempts: attempt,
                    };
                }
                if tokio::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "cocreate serve did not come up on {}; log:\n{}",
                        self.url(),
                        tail(&self.log, 40)
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!(
            "cocreate serve failed to start {max_attempts} times; log:\n{}",
            tail(&self.log, 40)
        );
    }
}

impl Drop for Serve {
    /// A failing assertion must not leave a server running after the test (a no-op after
    /// `kill` or `terminate`).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the graceful stop (SIGKILL after `timeout`). Returns whether
    /// the process exited on its own.
    pub fn terminate(mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// `/metrics`, parsed: series (name with labels, as printed) → value.
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        parse_metrics(&text)
    }
}

/// Parses Prometheus text: `name{labels} value` → map.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Peak resident set size of a process in KiB (`VmHWM` of `/proc/<pid>/status`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The last `n` lines of a file (for failure messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One generated Co-Create organization.
#[derive(Debug, Clone)]
pub struct GeneratedOrg {
    /// `org07`
    pub slug: String,
    /// `org07-dev-1`, `org07-dev-2`, …
    pub usernames: Vec<String>,
}

/// Writes a policy directory with `n` organizations (`org01` … , engineers `orgNN-dev-K`,
/// `orgNN.example.com`) and the repository's `routing.yml`. Returns the organizations.
pub fn write_policies(dir: &Path, n: usize, devs_per_org: usize) -> Vec<GeneratedOrg> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut yaml = String::from(
        "# Generated for a test: example.com names and role accounts only.\norganizations:\n",
    );
    let mut orgs = Vec::new();
    for i in 1..=n {
        let slug = format!("org{i:02}");
        let usernames: Vec<String> = (1..=devs_per_org)
            .map(|k| format!("{slug}-dev-{k}"))
            .collect();
        yaml.push_str(&format!(
            "  - slug: {slug}\n    name: Example Org {i:02}\n    tier: {tier}\n    usernames: [{users}]\n    email_domains: [{slug}.example.com]\n    account_team:\n      csm: csm-{slug}\n",
            tier = 1 + (i % 3),
            users = usernames.join(", "),
        ));
        orgs.push(GeneratedOrg { slug, usernames });
    }
    std::fs::create_dir_all(dir).expect("policies dir");
    std::fs::write(dir.join("organizations.yml"), yaml).expect("write organizations.yml");
    std::fs::copy(root.join("policies/routing.yml"), dir.join("routing.yml"))
        .expect("copy routing.yml");
    // Where the repository has Corporate Contributor Agreements, every organization has one
    // on file, so the wanted state is the plain welcome.
    if root.join("policies/agreements.yml").exists() {
        let mut agreements =
            String::from("signing_contact: cla-managers@example.com\nagreements:\n");
        for org in &orgs {
            agreements.push_str(&format!(
                "  - organization: {}\n    signed: 2026-01-01\n    version: \"CCA 2.1\"\n    reference: \"contracts/cca/{}\"\n",
                org.slug, org.slug
            ));
        }
        std::fs::write(dir.join("agreements.yml"), agreements).expect("write agreements.yml");
    }
    orgs
}

/// A person's reviewer (in [`harness::seed`]), kept on the even MRs of [`seed_orgs`].
pub const MAINTAINER: u64 = 25;

/// The fake's user id of engineer `dev` of organization `org` (both from 0).
pub fn dev_id(org: usize, dev: usize) -> u64 {
    10_000 + 100 * org as u64 + dev as u64
}

/// One open MR of a generated organization.
#[derive(Debug, Clone)]
pub struct OrgMr {
    pub iid: u64,
    /// Index into the organizations.
    pub org: usize,
    pub author: (u64, String),
}

/// [`harness::seed`] plus, for every generated organization, its engineers, its CSM and
/// `mrs_per_org` open MRs (iids from `first_iid`, in organization order; even iids carry a
/// reviewer a person chose).
pub fn seed_orgs(
    gitlab: &FakeGitLab,
    orgs: &[GeneratedOrg],
    mrs_per_org: usize,
    first_iid: u64,
) -> Vec<OrgMr> {
    harness::seed(gitlab);
    let mut mrs = Vec::new();
    for (o, org) in orgs.iter().enumerate() {
        for (d, name) in org.usernames.iter().enumerate() {
            gitlab.add_user(UserSpec::new(dev_id(o, d), name));
        }
        gitlab.add_user(UserSpec::new(
            20_000 + o as u64,
            &format!("csm-{}", org.slug),
        ));
        for k in 0..mrs_per_org {
            let iid = first_iid + (o * mrs_per_org + k) as u64;
            let d = k % org.usernames.len();
            add_org_mr(gitlab, iid, dev_id(o, d), iid % 2 == 0);
            mrs.push(OrgMr {
                iid,
                org: o,
                author: (dev_id(o, d), org.usernames[d].clone()),
            });
        }
    }
    mrs
}

/// An open MR in `vendor/product` with its own head commit.
pub fn add_org_mr(gitlab: &FakeGitLab, iid: u64, author_id: u64, with_maintainer: bool) {
    gitlab.add_mr(MrSpec {
        project_id: PROJECT_ID,
        iid,
        id: 100_000 + iid,
        title: format!("Change number {iid}"),
        author_id,
        labels: vec!["enhancement".into()],
        reviewer_ids: if with_maintainer {
            vec![MAINTAINER]
        } else {
            vec![]
        },
        sha: format!("{iid:040x}"),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
}

/// An MR webhook body from GitLab's documented payload (`template`), for an MR of
/// [`add_org_mr`] whose author caused the event.
pub fn mr_payload(template: &Value, iid: u64, author: (u64, &str), action: &str) -> Vec<u8> {
    let mut v = template.clone();
    v["user"]["id"] = author.0.into();
    v["user"]["username"] = author.1.into();
    v["user"]["name"] = author.1.into();
    v["project"]["id"] = PROJECT_ID.into();
    v["project"]["path_with_namespace"] = PROJECT_PATH.into();
    let a = &mut v["object_attributes"];
    a["iid"] = iid.into();
    a["id"] = (100_000 + iid).into();
    a["author_id"] = author.0.into();
    a["target_project_id"] = PROJECT_ID.into();
    a["source_project_id"] = PROJECT_ID.into();
    a["action"] = action.into();
    serde_json::to_vec(&v).expect("json")
}

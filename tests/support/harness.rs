//! Runs the real `serve` (router + worker, in process) against the fake GitLab, and sends it
//! signed webhooks like GitLab does. Model: rust-lang/bors's test harness.
//!
//! A harness fails the test on drop if a note the bot posted was never looked at with
//! [`Harness::take_notes`] / [`Harness::take_issue_notes`] (every message the bot writes must be
//! asserted by some test); notes are tracked by id (see [`CheckedGitLab`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cocreate::app::{self, ConfigSource, GitlabSettings, Running, ServeSettings};
use cocreate::gitlab::RetryPolicy;
use cocreate::worker::WorkerConfig;
use serde_json::Value;

use super::fake_gitlab::{fixture, FakeGitLab, MrSpec, UserSpec, BOT_USERNAME};
use super::notes::CheckedGitLab;

pub const SECRET: &str = "webhook-secret-for-tests";
pub const PROJECT_ID: u64 = 2;
pub const PROJECT_PATH: &str = "vendor/product";
/// Roster members of the example policies, with their ids in the fake.
pub const ROSTER: &[(u64, &str)] = &[
    (101, "cs-reviewer-1"),
    (102, "cs-reviewer-2"),
    (103, "cs-reviewer-3"),
];
/// An engineer of `example-aero` (recognised by username in the example policies).
pub const AERO_DEV: (u64, &str) = (501, "aero-dev-1");
/// An engineer of `example-telco` (recognised by verified e-mail domain).
pub const TELCO_DEV: (u64, &str) = (502, "tdev");
/// The tracking project of the example policies.
pub const TRACKING_PROJECT: &str = "cocreate/engagements";
pub const TRACKING_PROJECT_ID: u64 = 900;
/// Someone from no Co-Create organization.
pub const OUTSIDER: (u64, &str) = (600, "outsider");

pub struct Harness {
    /// The fake GitLab, watched: notes the bot posts must be taken before the harness drops.
    pub gitlab: CheckedGitLab,
    pub app: Option<Running>,
    pub http: reqwest::Client,
    pub settings: ServeSettings,
    _data: tempfile::TempDir,
}

/// Test settings: fast retries, small leases, the example policies.
pub fn settings(gitlab: &FakeGitLab, data: &std::path::Path) -> ServeSettings {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    ServeSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        gitlab: GitlabSettings {
            url: gitlab.url(),
            token: Some(gitlab.token()),
            retry: RetryPolicy {
                max_attempts: 4,
                base: Duration::from_millis(5),
                cap: Duration::from_millis(50),
                max_retry_after: Duration::from_millis(100),
                timeout: Duration::from_secs(5),
            },
        },
        webhook_secrets: vec![SECRET.into()],
        signing_keys: vec![],
        signature_window: Duration::from_secs(300),
        policies: ConfigSource::Dir(root.join("policies")),
        templates: ConfigSource::Dir(root.join("templates")),
        data_dir: data.to_owned(),
        queue_url: None,
        body_limit: 1024 * 1024,
        limits: Default::default(),
        worker: WorkerConfig {
            concurrency: 8,
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_millis(20),
            backoff_cap: Duration::from_millis(200),
            poll: Duration::from_millis(20),
            ..WorkerConfig::default()
        },
        // Off, so that tests counting API calls count only the event's.
        overdue_refresh: None,
        policy_poll: Duration::from_millis(200),
        policy_fallback: Duration::from_secs(600),
        token_recheck: Duration::from_millis(100),
        hook_check: None,
        clock: cocreate::clock::Clock::fixed(
            chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
                .expect("time")
                .to_utc(),
        ),
    }
}

/// The world every test starts from: the bot, the roster, one engineer per organization, an
/// outsider, the watched group and one open MR by the aero engineer (`!16`).
pub fn seed(gitlab: &FakeGitLab) {
    gitlab.add_user(UserSpec {
        bot: true,
        ..UserSpec::new(9000, BOT_USERNAME)
    });
    gitlab.set_bot(BOT_USERNAME);
    for (id, name) in ROSTER {
        gitlab.add_user(UserSpec::new(*id, name));
    }
    gitlab.add_user(UserSpec::new(AERO_DEV.0, AERO_DEV.1));
    gitlab.add_user(UserSpec {
        public_email: Some("dev@telco.example.com".into()),
        ..UserSpec::new(TELCO_DEV.0, TELCO_DEV.1)
    });
    gitlab.add_user(UserSpec {
        organization: Some("Example Aero".into()),
        ..UserSpec::new(OUTSIDER.0, OUTSIDER.1)
    });
    gitlab.add_user(UserSpec::new(25, "maintainer"));
    gitlab.add_group(50, "vendor", &[]);
    gitlab.add_project(TRACKING_PROJECT_ID, TRACKING_PROJECT);
    for (id, name) in [(701, "csm-aero"), (702, "sa-aero"), (703, "ae-aero")] {
        gitlab.add_user(UserSpec::new(id, name));
    }
    add_mr(
        gitlab,
        16,
        AERO_DEV.0,
        "Add input validation to booking form",
    );
}

/// An MR by the aero engineer opened in GitLab (`Change {iid}`), with the Merge Request Hook
/// delivery GitLab then makes (sent by [`FakeGitLab::send_deliveries`]).
pub fn open_mr_delivered(gitlab: &FakeGitLab, iid: u64) {
    gitlab.open_mr(MrSpec {
        project_id: PROJECT_ID,
        iid,
        id: 1000 + iid,
        title: format!("Change {iid}"),
        author_id: AERO_DEV.0,
        sha: format!("{iid:040x}"),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
}

/// The notes the bot (user 9000, see [`seed`]) wrote on MR `iid` of the project, oldest first.
pub fn bot_notes(gitlab: &FakeGitLab, iid: u64) -> Vec<String> {
    gitlab
        .notes(PROJECT_ID, iid)
        .into_iter()
        .filter(|n| n.author_id == 9000)
        .map(|n| n.body)
        .collect()
}

pub fn add_mr(gitlab: &FakeGitLab, iid: u64, author_id: u64, title: &str) {
    gitlab.add_mr(MrSpec {
        project_id: PROJECT_ID,
        iid,
        id: 1000 + iid,
        title: title.into(),
        author_id,
        labels: vec!["enhancement".into()],
        reviewer_ids: vec![25],
        sha: format!("{iid:040x}"),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
}

/// GitLab's documented MR webhook, rewritten for one MR of the test world.
pub fn mr_event(iid: u64, author: (u64, &str), actor: (u64, &str), action: &str) -> Vec<u8> {
    let mut v: Value = fixture("payloads/merge_request_open.json");
    v["user"]["id"] = actor.0.into();
    v["user"]["username"] = actor.1.into();
    v["user"]["name"] = actor.1.into();
    v["project"]["id"] = PROJECT_ID.into();
    v["project"]["path_with_namespace"] = PROJECT_PATH.into();
    let a = &mut v["object_attributes"];
    a["iid"] = iid.into();
    a["id"] = (1000 + iid).into();
    a["author_id"] = author.0.into();
    a["target_project_id"] = PROJECT_ID.into();
    a["source_project_id"] = PROJECT_ID.into();
    a["action"] = action.into();
    serde_json::to_vec(&v).expect("json")
}

/// GitLab's documented issue webhook, rewritten for an issue of the tracking project.
/// `previous_labels` fills `changes.labels` (the labels before this update).
pub fn issue_event(
    iid: u64,
    actor: (u64, &str),
    action: &str,
    description: &str,
    labels: &[&str],
    previous_labels: Option<&[&str]>,
) -> Vec<u8> {
    let mut v: Value = fixture("payloads/issue_open.json");
    let label = |t: &&str| serde_json::json!({"id": 1, "title": t, "color": "#428BCA", "type": "ProjectLabel"});
    v["user"]["id"] = actor.0.into();
    v["user"]["username"] = actor.1.into();
    v["project"]["id"] = TRACKING_PROJECT_ID.into();
    v["project"]["path_with_namespace"] = TRACKING_PROJECT.into();
    let a = &mut v["object_attributes"];
    a["iid"] = iid.into();
    a["project_id"] = TRACKING_PROJECT_ID.into();
    a["description"] = description.into();
    a["action"] = action.into();
    a["state"] = "opened".into();
    a["labels"] = labels.iter().map(label).collect();
    v["labels"] = labels.iter().map(label).collect();
    v["changes"] = match previous_labels {
        Some(prev) => serde_json::json!({"labels": {
            "previous": prev.iter().map(label).collect::<Vec<_>>(),
            "current": labels.iter().map(label).collect::<Vec<_>>(),
        }}),
        None => serde_json::json!({}),
    };
    serde_json::to_vec(&v).expect("json")
}

/// GitLab's documented MR comment webhook, for a comment `note_id` by `by` on MR `iid`.
pub fn note_event(iid: u64, author_id: u64, note_id: u64, by: (u64, &str), body: &str) -> Vec<u8> {
    let mut v: Value = fixture("payloads/note_merge_request.json");
    v["user"]["id"] = by.0.into();
    v["user"]["username"] = by.1.into();
    v["project"]["id"] = PROJECT_ID.into();
    v["project"]["path_with_namespace"] = PROJECT_PATH.into();
    v["object_attributes"]["id"] = note_id.into();
    v["object_attributes"]["note"] = body.into();
    v["object_attributes"]["author_id"] = by.0.into();
    v["merge_request"]["iid"] = iid.into();
    v["merge_request"]["author_id"] = author_id.into();
    v["merge_request"]["target_project_id"] = PROJECT_ID.into();
    serde_json::to_vec(&v).expect("json")
}

static UUIDS: AtomicUsize = AtomicUsize::new(1);

/// A fresh `X-Gitlab-Event-UUID`.
pub fn new_uuid() -> String {
    format!(
        "00000000-0000-4000-8000-{:012}",
        UUIDS.fetch_add(1, Ordering::Relaxed)
    )
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServeSettings)) -> Self {
        Self::start_in(|_| {}, adjust).await
    }

    /// Like [`Harness::start_with`], with `prepare` changing the seeded world before `serve`
    /// starts (e.g. a policy project's repository that `serve` reads at start).
    pub async fn start_in(
        prepare: impl FnOnce(&FakeGitLab),
        adjust: impl FnOnce(&mut ServeSettings),
    ) -> Self {
        let gitlab = CheckedGitLab::start().await;
        seed(&gitlab);
        prepare(&gitlab);
        let data = tempfile::tempdir().expect("tempdir");
        let mut s = settings(&gitlab, data.path());
        adjust(&mut s);
        let app = app::start(s.clone()).await.expect("serve starts");
        Self {
            gitlab,
            app: Some(app),
            http: reqwest::Client::new(),
            settings: s,
            _data: data,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.app.as_ref().expect("running").addr)
    }

    /// Sends a webhook the way GitLab does, with the right secret.
    pub async fn deliver(
        &self,
        kind: &str,
        body: Vec<u8>,
        uuid: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhook", self.url()))
            .header("Content-Type", "application/json")
            .header("X-Gitlab-Event", kind)
            .header("X-Gitlab-Token", SECRET)
            .body(body);
        if let Some(u) = uuid {
            req = req.header("X-Gitlab-Event-UUID", u);
        }
        req.send().await.expect("request")
    }

    /// Delivers an MR event with a fresh event UUID; asserts it was queued.
    pub async fn deliver_mr(&self, body: Vec<u8>) -> String {
        let uuid = new_uuid();
        let r = self.deliver("Merge Request Hook", body, Some(&uuid)).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        uuid
    }

    /// `author` opens MR `iid` (already in the fake, e.g. the seed's `!16` or one added with
    /// [`add_mr`]): GitLab's `open` webhook is delivered and handled.
    pub async fn open_mr(&self, iid: u64, author: (u64, &str)) {
        self.deliver_mr(mr_event(iid, author, author, "open")).await;
        self.wait_idle().await;
    }

    /// `by` comments `body` on MR `iid` (authored by the aero engineer): the note is saved in
    /// the fake, then its `Note Hook` delivered and handled. Returns the note id.
    pub async fn comment(&self, iid: u64, by: (u64, &str), body: &str) -> u64 {
        let id = self.gitlab.add_note(PROJECT_ID, iid, by.0, body);
        self.deliver_comment(iid, id, by, body).await;
        id
    }

    /// Delivers (again) the `Note Hook` of comment `note_id` on MR `iid` and waits for it.
    pub async fn deliver_comment(&self, iid: u64, note_id: u64, by: (u64, &str), body: &str) {
        let r = self
            .deliver(
                "Note Hook",
                note_event(iid, AERO_DEV.0, note_id, by, body),
                Some(&new_uuid()),
            )
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        self.wait_idle().await;
    }

    /// `by` adds and removes labels on tracking issue `iid` (in the fake, with label events),
    /// then the `Issue Hook` of that update is delivered and handled.
    pub async fn label_issue(&self, iid: u64, by: (u64, &str), add: &[&str], remove: &[&str]) {
        let before = self.gitlab.issue(TRACKING_PROJECT_ID, iid);
        self.gitlab
            .change_issue_labels(TRACKING_PROJECT_ID, iid, by.0, add, remove);
        let after = self.gitlab.issue(TRACKING_PROJECT_ID, iid);
        let labels: Vec<&str> = after.labels.iter().map(String::as_str).collect();
        let previous: Vec<&str> = before.labels.iter().map(String::as_str).collect();
        self.deliver_issue(issue_event(
            iid,
            by,
            "update",
            &after.description,
            &labels,
            Some(&previous),
        ))
        .await;
        self.wait_idle().await;
    }

    /// Waits until the queue has nothing pending or in flight (or fails after 20 s).
    pub async fn wait_idle(&self) -> cocreate::queue::QueueStats {
        let queue = &self.app.as_ref().expect("running").queue;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = queue.stats().await.expect("stats");
            if s.pending == 0 && s.in_flight == 0 {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue did not drain: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The bot's notes on an issue of the tracking project; marks them as checked.
    pub fn take_issue_notes(&self, iid: u64) -> Vec<String> {
        self.gitlab.take_issue_notes(TRACKING_PROJECT_ID, iid)
    }

    /// Delivers an issue event with a fresh event UUID; asserts it was queued.
    pub async fn deliver_issue(&self, body: Vec<u8>) {
        let r = self.deliver("Issue Hook", body, Some(&new_uuid())).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }

    /// The bot's notes on an MR; marks them as checked.
    pub fn take_notes(&self, iid: u64) -> Vec<String> {
        self.gitlab.take_mr_notes(PROJECT_ID, iid)
    }

    /// Stops `serve`, then fails the test if a note the bot posted was never looked at.
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        self.gitlab.check();
    }
}

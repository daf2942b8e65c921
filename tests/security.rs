//! Security: whoever can reach the webhook URL, or write an MR title or a username, must not be
//! able to get an event stored without the secret, replay one, crash or exhaust the receiver,
//! make the bot ping or run anything, or read a secret from the logs.
//!
//! Most tests run the real router in process (the harness); the log test runs the real binary
//! with `RUST_LOG=trace` and searches everything it wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use cocreate::webhook::SigningKey;
use serde_json::Value;

use support::fake_gitlab::{FakeGitLab, Fault, UserSpec, BOT_USERNAME};
use support::harness::*;
use support::load::{tail, ServeCommand};

const MR_HOOK: &str = "Merge Request Hook";
const WELCOME_MARKER: &str = "<!-- cocreate:welcome -->";

async fn stored(h: &Harness) -> u64 {
    let s = h
        .app
        .as_ref()
        .expect("running")
        .queue
        .stats()
        .await
        .expect("stats");
    s.pending + s.in_flight + s.done + s.dead
}

async fn post(
    h: &Harness,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut r = h.http.post(format!("{}/webhook", h.url())).body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.expect("send")
}

#[tokio::test]
async fn missing_wrong_and_near_miss_tokens_are_401_and_store_nothing() {
    let h = Harness::start().await;
    let body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    let near_miss = format!("{}x", SECRET);
    let prefix = &SECRET[..SECRET.len() - 1];
    let upper = SECRET.to_uppercase();
    let bearer = format!("Bearer {SECRET}");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("X-Gitlab-Event", MR_HOOK)],
        vec![("X-Gitlab-Event", MR_HOOK), ("X-Gitlab-Token", "")],
        vec![("X-Gitlab-Event", MR_HOOK), ("X-Gitlab-Token", "wrong")],
        vec![("X-Gitlab-Event", MR_HOOK), ("X-Gitlab-Token", &near_miss)],
        vec![("X-Gitlab-Event", MR_HOOK), ("X-Gitlab-Token", prefix)],
        vec![("X-Gitlab-Event", MR_HOOK), ("X-Gitlab-Token", &upper)],
        // The secret in another header does not count.
        vec![("X-Gitlab-Event", MR_HOOK), ("Authorization", &bearer)],
        // Even kinds we ignore need the token.
        vec![("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "wrong")],
    ];
    for headers in &cases {
        let r = post(&h, headers, body.clone()).await;
        assert_eq!(r.status(), 401, "{headers:?}");
        let text = r.text().await.expect("text");
        assert!(
            !text.contains(SECRET) && !text.contains("wrong"),
            "the answer says nothing: {text}"
        );
    }
    assert_eq!(stored(&h).await, 0);
    assert!(h.gitlab.writes().is_empty());
    h.stop().await;
}

fn signed_headers(key: &SigningKey, id: &str, ts: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("X-Gitlab-Event".into(), MR_HOOK.into()),
        ("X-Gitlab-Token".into(), SECRET.into()),
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), key.sign(id, ts, body)),
    ]
}

async fn post_owned(h: &Harness, headers: &[(String, String)], body: Vec<u8>) -> reqwest::Response {
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    post(h, &borrowed, body).await
}

fn test_key() -> SigningKey {
    SigningKey::parse("whsec_c2VjdXJpdHktdGVzdHMtc2lnbmluZy1rZXktMzItYnl0ZXM=").expect("key")
}

#[tokio::test]
async fn signatures_outside_the_window_or_wrong_are_401() {
    let key = test_key();
    let other = SigningKey::parse("whsec_b3RoZXIta2V5LW5vdC1jb25maWd1cmVkLWhlcmU=").expect("key");
    let h = Harness::start_with(|s| s.signing_keys = vec![test_key()]).await;
    let body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    let with = |mut hs: Vec<(String, String)>, name: &str, value: &str| {
        hs.retain(|(k, _)| k != name);
        hs.push((name.into(), value.into()));
        hs
    };
    type Headers = Vec<(String, String)>;
    // Signed at the moment each request is sent: a slow machine must not move a case across
    // the window's edge.
    type Sign<'a> = Box<dyn Fn(i64) -> Headers + 'a>;
    let refused: Vec<(&str, Sign<'_>, Vec<u8>)> = vec![
        (
            "5 minutes and 1 s old",
            Box::new(|now| signed_headers(&key, "m1", now - 301, &body)),
            body.clone(),
        ),
        (
            "5 minutes and 1 s ahead",
            Box::new(|now| signed_headers(&key, "m1", now + 301, &body)),
            body.clone(),
        ),
        (
            "a day old",
            Box::new(|now| signed_headers(&key, "m1", now - 86_400, &body)),
            body.clone(),
        ),
        (
            "timestamp not a number",
            Box::new(|now| {
                with(
                    signed_headers(&key, "m1", now, &body),
                    "webhook-timestamp",
                    "now",
                )
            }),
            body.clone(),
        ),
        (
            "timestamp overflows",
            Box::new(|now| {
                with(
                    signed_headers(&key, "m1", now, &body),
                    "webhook-timestamp",
                    "99999999999999999999999",
                )
            }),
            body.clone(),
        ),
        (
            "extreme timestamp",
            Box::new(|now| {
                with(
                    signed_headers(&key, "m1", now, &body),
                    "webhook-timestamp",
                    &i64::MIN.to_string(),
                )
            }),
            body.clone(),
        ),
        (
            "signed by another key",
            Box::new(|now| signed_headers(&other, "m1", now, &body)),
            body.clone(),
        ),
        (
            "body changed after signing",
            Box::new(|now| signed_headers(&key, "m1", now, &body)),
            mr_event(17, AERO_DEV, AERO_DEV, "open"),
        ),
        (
            "id changed after signing",
            Box::new(|now| with(signed_headers(&key, "m1", now, &body), "webhook-id", "m2")),
            body.clone(),
        ),
        (
            "signature not base64",
            Box::new(|now| {
                with(
                    signed_headers(&key, "m1", now, &body),
                    "webhook-signature",
                    "v1,!!!",
                )
            }),
            body.clone(),
        ),
        (
            "unknown signature version",
            Box::new(|now| {
                with(
                    signed_headers(&key, "m1", now, &body),
                    "webhook-signature",
                    &key.sign("m1", now, &body).replace("v1,", "v2,"),
                )
            }),
            body.clone(),
        ),
        (
            "no signature headers",
            Box::new(|_| {
                vec![
                    ("X-Gitlab-Event".into(), MR_HOOK.into()),
                    ("X-Gitlab-Token".into(), SECRET.into()),
                ]
            }),
            body.clone(),
        ),
    ];
    for (why, sign, body) in refused {
        let headers = sign(chrono::Utc::now().timestamp());
        let r = post_owned(&h, &headers, body).await;
        assert_eq!(r.status(), 401, "{why}");
    }
    assert_eq!(stored(&h).await, 0);
    // Inside the window, either side, it is accepted.
    let now = chrono::Utc::now().timestamp();
    let r = post_owned(
        &h,
        &signed_headers(&key, "m3", now - 290, &body),
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    h.wait_idle().await;
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_replayed_delivery_is_not_processed_twice() {
    let key = test_key();
    let h = Harness::start_with(|s| s.signing_keys = vec![test_key()]).await;
    let body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    let now = chrono::Utc::now().timestamp();
    let captured = signed_headers(&key, "msg_replay", now, &body);
    let first = post_owned(&h, &captured, body.clone()).await;
    assert_eq!(first.status(), 200);
    h.wait_idle().await;
    let writes = h.gitlab.writes().len();

    // The exact captured request, again and again (inside the window): a duplicate, stored once.
    for _ in 0..5 {
        let r = post_owned(&h, &captured, body.clone()).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["status"], "duplicate");
    }
    // Re-signed with a fresh timestamp but the same delivery id: still a duplicate.
    let fresh = signed_headers(&key, "msg_replay", now + 1, &body);
    let v: Value = post_owned(&h, &fresh, body.clone())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "duplicate");
    // A capture older than the window is refused outright.
    let old = signed_headers(&key, "msg_old", now - 600, &body);
    assert_eq!(post_owned(&h, &old, body.clone()).await.status(), 401);
    // Without signatures, the same X-Gitlab-Event-UUID is the delivery id.
    h.wait_idle().await;
    assert_eq!(stored(&h).await, 1);
    assert_eq!(h.gitlab.writes().len(), writes, "a replay writes nothing");
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
}

/// With a signing key the signed `webhook-id` identifies a delivery: an unsigned
/// `Idempotency-Key` (or event UUID) added to a captured delivery cannot make it new again.
#[tokio::test]
async fn unsigned_headers_never_outrank_the_signed_webhook_id() {
    let key = test_key();
    let h = Harness::start_with(|s| s.signing_keys = vec![test_key()]).await;
    let body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    let now = chrono::Utc::now().timestamp();
    let captured = signed_headers(&key, "msg_captured", now, &body);
    assert_eq!(post_owned(&h, &captured, body.clone()).await.status(), 200);
    for i in 0..5 {
        let mut replay = captured.clone();
        replay.push(("Idempotency-Key".into(), format!("fresh-{i}")));
        replay.push(("X-Gitlab-Event-UUID".into(), new_uuid()));
        let v: Value = post_owned(&h, &replay, body.clone())
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(
            v["status"], "duplicate",
            "replay {i} with a fresh Idempotency-Key"
        );
    }
    h.wait_idle().await;
    assert_eq!(stored(&h).await, 1);
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
}

/// Deliveries of different kinds never dedupe against each other, even with the same id.
#[tokio::test]
async fn dedupe_keys_are_scoped_by_event_kind() {
    let h = Harness::start().await;
    let uuid = new_uuid();
    let mr = mr_event(16, AERO_DEV, AERO_DEV, "update");
    let r = post(
        &h,
        &[
            ("X-Gitlab-Event", MR_HOOK),
            ("X-Gitlab-Token", SECRET),
            ("X-Gitlab-Event-UUID", &uuid),
        ],
        mr.clone(),
    )
    .await;
    assert_eq!(r.json::<Value>().await.expect("json")["status"], "queued");
    let r = post(
        &h,
        &[
            ("X-Gitlab-Event", "System Hook"),
            ("X-Gitlab-Token", SECRET),
            ("X-Gitlab-Event-UUID", &uuid),
        ],
        mr.clone(),
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.expect("json")["status"],
        "queued",
        "a System Hook with the MR hook's UUID is another delivery"
    );
    let r = post(
        &h,
        &[
            ("X-Gitlab-Event", MR_HOOK),
            ("X-Gitlab-Token", SECRET),
            ("X-Gitlab-Event-UUID", &uuid),
        ],
        mr,
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.expect("json")["status"],
        "duplicate"
    );
    h.wait_idle().await;
    assert_eq!(stored(&h).await, 2);
    let _ = h.take_notes(16);
    h.stop().await;
}

#[tokio::test]
async fn oversize_bodies_are_413_with_or_without_content_length() {
    let limit = 64 * 1024;
    let h = Harness::start_with(|s| s.body_limit = limit).await;
    let headers = [("X-Gitlab-Event", MR_HOOK), ("X-Gitlab-Token", SECRET)];
    assert_eq!(
        post(&h, &headers, vec![b' '; limit + 1]).await.status(),
        413
    );
    assert_eq!(
        post(&h, &headers, vec![b'['; 10 * limit]).await.status(),
        413
    );

    // Chunked, so no Content-Length announces the size: the limit still holds.
    let addr = h.app.as_ref().expect("running").addr;
    let status = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Gitlab-Event: {MR_HOOK}\r\nX-Gitlab-Token: {SECRET}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let _ = s.write_all(head.as_bytes());
        let chunk = vec![b' '; 8192];
        for _ in 0..(2 * limit / chunk.len()) {
            if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|_| s.write_all(&chunk))
                .and_then(|_| s.write_all(b"\r\n"))
                .is_err()
            {
                break; // the server answered and closed early
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.lines().next().unwrap_or("").to_owned()
    })
    .await
    .expect("raw client");
    assert!(status.contains(" 413 "), "{status:?}");
    assert_eq!(stored(&h).await, 0);
    h.stop().await;
}

/// A JSON document followed by more data is not a webhook; and a huge (512 KiB) bad value is quoted in
/// the error as a short, cut excerpt only.
#[tokio::test]
async fn trailing_data_is_400_and_bad_values_are_quoted_short() {
    let h = Harness::start().await;
    let mut body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    body.extend_from_slice(b" {\"object_kind\":\"merge_request\"}");
    let headers = [("X-Gitlab-Event", MR_HOOK), ("X-Gitlab-Token", SECRET)];
    let r = post(&h, &headers, body).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("text");
    assert!(text.contains("trailing"), "{text}");

    let mut v: Value =
        serde_json::from_slice(&mr_event(16, AERO_DEV, AERO_DEV, "open")).expect("json");
    v["object_attributes"]["iid"] = "9".repeat(512 * 1024).into();
    let r = post(&h, &headers, serde_json::to_vec(&v).expect("json")).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("text");
    assert!(
        text.len() < 600,
        "{} bytes of error: {}",
        text.len(),
        &text[..600.min(text.len())]
    );
    assert!(text.contains("999…"), "{text}");
    assert_eq!(stored(&h).await, 0);
    h.stop().await;
}

#[tokio::test]
async fn deeply_nested_json_is_400_not_a_crash() {
    let h = Harness::start_with(|s| s.body_limit = 4 * 1024 * 1024).await;
    add_mr(&h.gitlab, 17, AERO_DEV.0, "Deep but valid");
    let deep = 100_000;
    let nested = |inner: &str| format!("{}{inner}{}", "[".repeat(deep), "]".repeat(deep));
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("100k [", vec![b'['; deep]),
        ("100k [ closed", nested("").into_bytes()),
        ("100k objects", {
            let mut b = b"{\"a\":".repeat(deep);
            b.extend(b"1");
            b.extend(vec![b'}'; deep]);
            b
        }),
        ("nested where labels go", {
            let text = String::from_utf8(mr_event(16, AERO_DEV, AERO_DEV, "open")).expect("utf8");
            text.replacen("\"labels\":[", &format!("\"labels\":[{},", nested("")), 1)
                .into_bytes()
        }),
    ];
    for kind in [MR_HOOK, "System Hook"] {
        for (what, body) in &malformed {
            let r = post(
                &h,
                &[("X-Gitlab-Event", kind), ("X-Gitlab-Token", SECRET)],
                body.clone(),
            )
            .await;
            let status = r.status();
            let text = r.text().await.expect("text");
            if kind == "System Hook" && *what == "100k objects" {
                // Valid JSON without `object_kind`: a system event we ignore, never stored.
                assert_eq!(status, 200, "{kind}: {what}");
                assert!(text.contains("ignored"), "{text}");
                continue;
            }
            assert_eq!(status, 400, "{kind}: {what}");
            assert!(
                text.len() < 1024,
                "the error stays short: {} bytes",
                text.len()
            );
        }
    }
    assert_eq!(stored(&h).await, 0);

    // Valid JSON nested 100k deep in a field we do not read is skipped without recursion:
    // accepted, stored, and handled by the worker like any other delivery.
    let mut v: Value =
        serde_json::from_slice(&mr_event(17, AERO_DEV, AERO_DEV, "open")).expect("json");
    v["x_unknown"] = Value::Null;
    let body = serde_json::to_string(&v).expect("json").replacen(
        "\"x_unknown\":null",
        &format!("\"x_unknown\":{}", nested("1")),
        1,
    );
    h.deliver_mr(body.into_bytes()).await;

    // Still alive and working.
    let health = h
        .http
        .get(format!("{}/healthz", h.url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    let stats = h.wait_idle().await;
    assert_eq!((stats.done, stats.dead), (2, 0), "{stats:?}");
    assert_eq!(h.take_notes(16).len(), 1);
    assert_eq!(h.take_notes(17).len(), 1);
    take_tracking_notes(&h);
    h.stop().await;
}

#[tokio::test]
async fn a_huge_label_list_is_accepted_and_handled() {
    let h = Harness::start_with(|s| s.body_limit = 25 * 1024 * 1024).await;
    let mut v: Value =
        serde_json::from_slice(&mr_event(16, AERO_DEV, AERO_DEV, "open")).expect("json");
    v["labels"] = Value::Array(
        (0..200_000)
            .map(|i| serde_json::json!({"id": i, "title": format!("label-{i} @all /close <b>x</b>")}))
            .collect(),
    );
    v["reviewers"] = Value::Array(vec![v["reviewers"][0].clone(); 10_000]);
    let body = serde_json::to_vec(&v).expect("json");
    assert!(body.len() > 8 * 1024 * 1024, "{} bytes", body.len());
    h.deliver_mr(body).await;
    h.wait_idle().await;
    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 1);
    assert!(
        !notes[0].contains("label-"),
        "payload labels are not echoed"
    );
    let stats = h.wait_idle().await;
    assert_eq!(stats.dead, 0);
    h.stop().await;
}

/// The bot's notes on the engagement tracking issues (a first MR opens one, later MRs are
/// linked there with a note); marks them as checked.
fn take_tracking_notes(h: &Harness) -> Vec<String> {
    h.gitlab
        .issues(TRACKING_PROJECT_ID)
        .iter()
        .flat_map(|i| h.take_issue_notes(i.iid))
        .collect()
}

/// The `@`s GitLab would treat as mentions: not neutralized with U+2060 and not inside a word
/// (GitLab's pattern is `(?<!\w)@`, so `cla-managers@example.com` mentions nobody).
fn live_mentions(body: &str) -> Vec<String> {
    body.match_indices('@')
        .filter(|(i, _)| !body[i + 1..].starts_with('\u{2060}'))
        .filter(|(i, _)| {
            !body[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            body[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '`')
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn hostile_titles_and_usernames_ping_nobody_and_run_nothing() {
    let h = Harness::start().await;
    // Recognised by a verified e-mail domain, with a username nobody should be able to have.
    let hostile_user = "evil\n/close @all <img src=x onerror=alert(1)>";
    h.gitlab.add_user(UserSpec {
        public_email: Some("someone@telco.example.com".into()),
        ..UserSpec::new(777, hostile_user)
    });
    let titles = [
        "@all @here @group/sub please look",
        "fix\n/merge\n/approve\n/assign @cs-lead\n/label ~hack",
        "<img src=x onerror=alert(1)><script>alert(1)</script><details open>",
        "[click](http://evil.example.com) ![x](http://evil.example.com/i.png) <http://x.example.com>",
        "<!-- cocreate:welcome --> --> <!--",
        "\u{202E}desrever\u{2066} text\r\n/close\u{0}\u{85}/lock",
        "`code` **bold** _x_ # heading | table | ~label %milestone $snippet !1 &epic",
        "&lt;script&gt; &#64;all &commat;all",
    ];
    for (i, title) in titles.iter().enumerate() {
        let iid = 40 + i as u64;
        add_mr(&h.gitlab, iid, 777, title);
        h.deliver_mr(mr_event(
            iid,
            (777, hostile_user),
            (777, hostile_user),
            "open",
        ))
        .await;
    }
    h.wait_idle().await;
    for (i, title) in titles.iter().enumerate() {
        let iid = 40 + i as u64;
        let notes = h.take_notes(iid);
        assert_eq!(notes.len(), 1, "{title:?}");
        let body = &notes[0];
        assert_eq!(body.matches(WELCOME_MARKER).count(), 1, "{body}");
        // The hidden markers lead the note; user text can neither add nor fake one.
        let is_marker = |l: &str| l.starts_with("<!-- cocreate:") && l.ends_with(" -->");
        assert!(
            body.lines()
                .take_while(|l| is_marker(l))
                .any(|l| l == WELCOME_MARKER),
            "{body}"
        );
        let text: Vec<&str> = body.lines().skip_while(|l| is_marker(l)).collect();
        assert!(text.iter().all(|l| !l.contains('<')), "no HTML: {body}");
        assert!(!body.contains("]("), "no links: {body}");
        assert!(
            body.lines().all(|l| !l.trim_start().starts_with('/')),
            "no quick action: {body}"
        );
        let live = live_mentions(body);
        let allowed = ["@cs-reviewer-1", &format!("@{BOT_USERNAME}")];
        assert!(
            live.iter().all(|m| allowed
                .iter()
                .any(|a| m.trim_end_matches(|c: char| !c.is_alphanumeric()) == *a)),
            "only the reviewer and the bot are mentioned: {live:?}\n{body}"
        );
        assert!(
            !body.contains('\u{202E}') && !body.contains('\u{0}'),
            "{body:?}"
        );
        let mr = h.gitlab.mr(PROJECT_ID, iid);
        assert_eq!(mr.state, "opened");
        assert!(mr
            .labels
            .contains(&"Co-Create org::example-telco".to_string()));
    }
    // The titles also reach the engagement tracking issue (links to later MRs).
    let links = take_tracking_notes(&h);
    for body in &links {
        let is_marker = |l: &str| l.starts_with("<!-- cocreate:") && l.ends_with(" -->");
        let text: Vec<&str> = body.lines().skip_while(|l| is_marker(l)).collect();
        assert!(text.iter().all(|l| !l.contains('<')), "no HTML: {body}");
        assert!(!body.contains("]("), "no links: {body}");
        assert!(
            text.iter().all(|l| !l.trim_start().starts_with('/')),
            "no quick action: {body}"
        );
        assert!(
            live_mentions(body).is_empty(),
            "nobody is mentioned: {body}"
        );
    }
    h.stop().await;
}

/// Runs the real binary with every log on, throws tokens, signatures, faults and hostile input
/// at it, and searches all it wrote (logs, queue files, `/metrics`) for the secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_ever_appears_in_logs_queue_files_or_metrics() {
    const WEBHOOK_SECRET: &str = "wh-secret-7f3a9c1e5b2d4086";
    const OLD_SECRET: &str = "wh-old-secret-0d1e2f3a4b5c";
    const GITLAB_TOKEN: &str = "glpat-TOKEN-5e8b1c9d2a7f";
    const KEY_B64: &str = "c2lnbmluZy1rZXktZm9yLWxvZy10ZXN0cy0zMi1ieXRlcw==";
    let signing_key = format!("whsec_{KEY_B64}");
    // What a near-miss attacker sends must not be echoed either (it may be an old secret).
    let near_miss = format!("{WEBHOOK_SECRET}0");

    let gitlab = FakeGitLab::start_with_token(GITLAB_TOKEN).await;
    seed(&gitlab);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let log = tmp.path().join("serve.log");
    for (format, iid) in [("human", 16), ("json", 18)] {
        add_mr(&gitlab, iid, AERO_DEV.0, "Routed while every log is on");
        let data = tmp.path().join(format!("data-{format}"));
        let cmd = ServeCommand::new(env!("CARGO_BIN_EXE_cocreate"), &log)
            .env("GITLAB_URL", gitlab.url())
            .env("GITLAB_TOKEN", GITLAB_TOKEN)
            .env(
                "COCREATE_WEBHOOK_SECRET",
                format!("{OLD_SECRET},{WEBHOOK_SECRET}"),
            )
            .env("COCREATE_SIGNING_KEY", &signing_key)
            .env("COCREATE_DATA", data.display().to_string())
            .env("COCREATE_POLICIES", format!("{root}/policies"))
            .env("COCREATE_TEMPLATES", format!("{root}/templates"))
            .env("COCREATE_RETRY_BASE", "0.05")
            .env("COCREATE_LOG_FORMAT", format)
            .env("RUST_LOG", "trace");
        let serve = cmd.start(1).await;
        let http = reqwest::Client::new();
        let key = SigningKey::parse(&signing_key).expect("key");
        let send = |token: Option<&str>, id: &str, ts: i64, sig: Option<String>, body: Vec<u8>| {
            let mut r = http
                .post(format!("{}/webhook", cmd.url()))
                .header("X-Gitlab-Event", MR_HOOK)
                .header("X-Gitlab-Event-UUID", new_uuid())
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .body(body.clone());
            if let Some(t) = token {
                r = r.header("X-Gitlab-Token", t);
            }
            r = r.header(
                "webhook-signature",
                sig.unwrap_or_else(|| key.sign(id, ts, &body)),
            );
            r.send()
        };
        let now = chrono::Utc::now().timestamp();
        let body = mr_event(iid, AERO_DEV, AERO_DEV, "open");
        let expect = [
            (send(None, "a", now, None, body.clone()).await, 401),
            (send(Some("wrong"), "b", now, None, body.clone()).await, 401),
            (
                send(Some(&near_miss), "c", now, None, body.clone()).await,
                401,
            ),
            (
                send(
                    Some(WEBHOOK_SECRET),
                    "d",
                    now,
                    Some("v1,AAAA".into()),
                    body.clone(),
                )
                .await,
                401,
            ),
            (
                send(Some(WEBHOOK_SECRET), "e", now - 900, None, body.clone()).await,
                401,
            ),
            (
                send(
                    Some(WEBHOOK_SECRET),
                    "f",
                    now,
                    None,
                    b"{\"object_kind\":".to_vec(),
                )
                .await,
                400,
            ),
        ];
        for (r, want) in expect {
            assert_eq!(r.expect("send").status(), want);
        }
        // GitLab fails (500, 429, 401) on the first calls, then the event goes through.
        gitlab.push_fault(Fault::Status(500));
        gitlab.push_fault(Fault::RateLimited {
            retry_after_secs: 0,
        });
        gitlab.push_fault(Fault::Status(401));
        let ok = send(
            Some(OLD_SECRET),
            &format!("g-{format}"),
            now,
            None,
            body.clone(),
        )
        .await
        .expect("send");
        assert_eq!(ok.status(), 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while gitlab
            .notes(PROJECT_ID, iid)
            .iter()
            .all(|n| !n.body.starts_with(WELCOME_MARKER))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not processed; log:\n{}",
                tail(&log, 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let metrics = reqwest::get(format!("{}/metrics", cmd.url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(serve.terminate(Duration::from_secs(30)), "graceful stop");

        // The queue files (database and write-ahead log) hold no secret header.
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&data).expect("data dir") {
            files.push(std::fs::read(entry.expect("entry").path()).expect("read"));
        }
        files.push(metrics.into_bytes());
        for bytes in &files {
            for secret in [
                WEBHOOK_SECRET,
                OLD_SECRET,
                GITLAB_TOKEN,
                KEY_B64,
                near_miss.as_str(),
            ] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} found in queue files or metrics"
                );
            }
        }
    }
    let text = std::fs::read_to_string(&log).expect("log");
    // The capture works: refusals, GitLab failures and the routed MR are all in it.
    for evidence in [
        "webhook refused",
        "bad_token",
        "merge request routed",
        "DEBUG",
        "TRACE",
    ] {
        assert!(
            text.contains(evidence),
            "`{evidence}` not in the log:\n{}",
            tail(&log, 40)
        );
    }
    for secret in [
        WEBHOOK_SECRET,
        OLD_SECRET,
        GITLAB_TOKEN,
        KEY_B64,
        near_miss.as_str(),
    ] {
        let at = text.find(secret);
        assert!(
            at.is_none(),
            "`{secret}` is in the log: …{}…",
            at.map(|i| &text[i.saturating_sub(200)..(i + 100).min(text.len())])
                .unwrap_or("")
        );
    }
    let gitlab_said_401 = gitlab.calls().iter().any(|c| c.status == 401);
    assert!(gitlab_said_401, "the 401 fault was exercised");
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_token_but_no_webhook_secret() {
    const GITLAB_TOKEN: &str = "glpat-NOSECRET-93b7c2";
    let gitlab = FakeGitLab::start_with_token(GITLAB_TOKEN).await;
    seed(&gitlab);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .arg("serve")
        .env_clear()
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", GITLAB_TOKEN)
        .env("COCREATE_DATA", tmp.path())
        .env("COCREATE_LISTEN", "127.0.0.1:0")
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env("RUST_LOG", "trace")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no webhook secret"), "{stderr}");
    assert!(!stderr.contains(GITLAB_TOKEN), "{stderr}");
}

/// `serve` with one bad setting: exits at start with a message that names the setting and
/// never quotes a secret.
fn serve_refusal(env: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .arg("serve")
        .env_clear()
        .env("GITLAB_TOKEN", "glpat-REFUSAL-TEST-4d2e")
        .env("COCREATE_WEBHOOK_SECRET", SECRET)
        .env("COCREATE_DATA", tmp.path())
        .env("COCREATE_LISTEN", "127.0.0.1:0")
        .env("COCREATE_POLICIES", format!("{root}/policies"))
        .env("COCREATE_TEMPLATES", format!("{root}/templates"))
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "serve started with {env:?}: {stderr}"
    );
    assert!(!stderr.contains("glpat-REFUSAL-TEST-4d2e"), "{stderr}");
    stderr
}

#[test]
fn serve_refuses_credentials_in_gitlab_url_plain_http_and_weak_secrets() {
    let e = serve_refusal(&[("GITLAB_URL", "https://bot:pw-7c1d9e3f@gitlab.example.com")]);
    assert!(e.contains("GITLAB_URL contains credentials"), "{e}");
    assert!(!e.contains("pw-7c1d9e3f"), "{e}");
    let e = serve_refusal(&[("GITLAB_URL", "http://gitlab.example.com")]);
    assert!(e.contains("plain http://"), "{e}");
    // A comma inside the secret makes a one-character fragment: refused, not a valid token.
    let e = serve_refusal(&[("COCREATE_WEBHOOK_SECRET", "strong-secret-part-one,x")]);
    assert!(e.contains("entry 2 is only 1 character(s) long"), "{e}");
    assert!(!e.contains("strong-secret-part-one"), "{e}");
    let e = serve_refusal(&[("COCREATE_WEBHOOK_SECRET", "short")]);
    assert!(e.contains("at least 16"), "{e}");
}

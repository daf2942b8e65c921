//! End to end: GitLab webhook → real router → durable queue → worker → fake GitLab.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::time::Duration;

use support::fake_gitlab::Fault;
use support::harness::*;

const WELCOME_MARKER: &str = "<!-- cocreate:welcome -->";

#[tokio::test]
async fn cocreate_mr_gets_labels_reviewer_and_one_welcome_note() {
    let h = Harness::start().await;
    let uuid = h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;

    let mr = h.gitlab.mr(PROJECT_ID, 16);
    assert_eq!(
        mr.labels,
        vec![
            "CCA::signed",
            "Co-Create",
            "Co-Create org::example-aero",
            "Community contribution",
            "enhancement"
        ]
    );
    // The reviewer a person chose stays; the least loaded roster member (ties: roster order) is added.
    assert_eq!(mr.reviewer_ids, vec![25, 101]);
    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 1);
    insta::assert_snapshot!(notes[0], @r"
    <!-- cocreate:welcome -->
    Hi @aero-dev-1, thank you for your merge request “Add input validation to booking form”, and welcome to the Co-Create program!

    @cs-reviewer-1 from the Contributor Success team will review it and coach you through to merge.

    A few things that help:
    - Keep the MR focused on one change, and describe what it does and why.
    - Pipelines may need a maintainer to start them; that is expected for contributions.
    - If you get stuck, write `@cocreate-bot help` in a comment.

    We are glad you are here.
    ");
    // Every API call made for the event carries its X-Gitlab-Event-UUID.
    let event_calls: Vec<_> = h
        .gitlab
        .calls()
        .into_iter()
        .filter(|c| c.path != "/api/v4/user")
        .collect();
    assert!(!event_calls.is_empty());
    assert!(
        event_calls
            .iter()
            .all(|c| c.event_uuid.as_deref() == Some(uuid.as_str())),
        "{event_calls:#?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn redelivery_and_replay_write_nothing() {
    let h = Harness::start().await;
    let body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    let uuid = h.deliver_mr(body.clone()).await;
    h.wait_idle().await;
    h.gitlab.clear_calls();

    // GitLab's "Resend request" repeats the event UUID: stored once, answered as a duplicate.
    let r = h
        .deliver("Merge Request Hook", body.clone(), Some(&uuid))
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["status"], "duplicate");
    // A replay under a new delivery id is processed, and finds everything in place.
    h.deliver_mr(body).await;
    h.wait_idle().await;
    assert!(h.gitlab.writes().is_empty(), "{:#?}", h.gitlab.writes());
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn twenty_events_for_one_new_mr_at_once_give_one_note() {
    let h = Harness::start().await;
    let sends = (0..20).map(|i| {
        let action = if i == 0 { "open" } else { "update" };
        h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, action))
    });
    futures_util::future::join_all(sends).await;
    h.wait_idle().await;
    assert_eq!(h.take_notes(16).len(), 1);
    let mr = h.gitlab.mr(PROJECT_ID, 16);
    assert_eq!(mr.reviewer_ids, vec![25, 101]);
    h.stop().await;
}

#[tokio::test]
async fn outsider_mr_is_left_alone_even_with_a_matching_profile_organization() {
    let h = Harness::start().await;
    add_mr(&h.gitlab, 20, OUTSIDER.0, "Drive-by fix");
    h.deliver_mr(mr_event(20, OUTSIDER, OUTSIDER, "open")).await;
    h.wait_idle().await;
    assert!(h.gitlab.writes().is_empty());
    assert_eq!(h.gitlab.mr(PROJECT_ID, 20).labels, vec!["enhancement"]);
    h.stop().await;
}

#[tokio::test]
async fn organization_recognised_by_verified_email_domain() {
    let h = Harness::start().await;
    add_mr(&h.gitlab, 21, TELCO_DEV.0, "Telco change");
    h.deliver_mr(mr_event(21, TELCO_DEV, TELCO_DEV, "open"))
        .await;
    h.wait_idle().await;
    let notes = h.take_notes(21);
    assert!(
        notes[0].starts_with("<!-- cocreate:cca-expired -->"),
        "{}",
        notes[0]
    );
    assert!(notes[0].contains("the one on file expired"), "{}", notes[0]);
    assert!(h
        .gitlab
        .mr(PROJECT_ID, 21)
        .labels
        .contains(&"Co-Create org::example-telco".to_string()));
    assert!(h
        .gitlab
        .mr(PROJECT_ID, 21)
        .labels
        .contains(&"CCA::expired".to_string()));
    assert_eq!(
        notes.len(),
        1,
        "the instructions are inside the welcome note"
    );
    let sha = h.gitlab.mr(PROJECT_ID, 21).sha;
    assert_eq!(
        h.gitlab.commit_statuses(PROJECT_ID, &sha)[0].status,
        "failed"
    );
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:cca-expired"), @r#"
    <!-- cocreate:cca-expired -->
    <!-- cocreate:welcome -->
    Hi @tdev, thank you for your merge request “Telco change”, and welcome to the Co-Create program!

    @cs-reviewer-1 from the Contributor Success team will review it and coach you through to merge.

    **Before we can merge:** your organization has no current Corporate Contributor Agreement (CCA) with us (the one on file expired). Please ask the person who signs agreements for your company to write to cla-managers@example.com; we will send the agreement to sign.
    This MR is labelled `CCA::expired` until the agreement is on file; the label and the `cocreate/cca` status update by themselves once it is.


    A few things that help:
    - Keep the MR focused on one change, and describe what it does and why.
    - Pipelines may need a maintainer to start them; that is expected for contributions.
    - If you get stuck, write `@cocreate-bot help` in a comment.

    We are glad you are here.
    "#);
    h.stop().await;
}

#[tokio::test]
async fn the_bots_own_event_is_ignored() {
    let h = Harness::start().await;
    h.gitlab.clear_calls();
    h.deliver_mr(mr_event(16, AERO_DEV, (9000, "cocreate-bot"), "update"))
        .await;
    h.wait_idle().await;
    assert!(h.gitlab.writes().is_empty());
    h.stop().await;
}

/// An MR event whose payload says the MR is in `state` (GitLab sends the state after the action).
fn mr_event_in_state(iid: u64, action: &str, state: &str) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&mr_event(iid, AERO_DEV, AERO_DEV, action)).expect("json");
    v["object_attributes"]["state"] = state.into();
    serde_json::to_vec(&v).expect("json")
}

#[tokio::test]
async fn closed_and_merged_mrs_and_unrouted_actions_are_left_alone() {
    let h = Harness::start().await;
    // !40 was merged and !41 closed before the bot saw them; !16 is open.
    for (iid, state) in [(40, "merged"), (41, "closed")] {
        h.gitlab.add_mr(support::fake_gitlab::MrSpec {
            project_id: PROJECT_ID,
            iid,
            id: 1000 + iid,
            title: format!("Change {iid}"),
            author_id: AERO_DEV.0,
            labels: vec!["enhancement".into()],
            state: state.into(),
            sha: format!("{iid:040x}"),
            project_path: PROJECT_PATH.into(),
            ..support::fake_gitlab::MrSpec::default()
        });
    }
    h.gitlab.clear_calls();
    h.deliver_mr(mr_event_in_state(40, "merge", "merged")).await;
    h.deliver_mr(mr_event_in_state(41, "close", "closed")).await;
    // Actions that are not routed, on the open MR.
    for action in ["approved", "unapproved", "approval"] {
        h.deliver_mr(mr_event_in_state(16, action, "opened")).await;
    }
    let stats = h.wait_idle().await;
    assert_eq!((stats.done, stats.dead), (5, 0), "{stats:?}");
    assert!(h.gitlab.writes().is_empty(), "{:#?}", h.gitlab.writes());
    for iid in [16, 40, 41] {
        assert_eq!(h.gitlab.mr(PROJECT_ID, iid).labels, vec!["enhancement"]);
        assert!(h.take_notes(iid).is_empty());
    }
    h.stop().await;
}

#[tokio::test]
async fn rejects_bad_token_oversize_and_malformed_and_accepts_unsupported_kinds() {
    let h = Harness::start_with(|s| s.body_limit = 64 * 1024).await;
    let url = format!("{}/webhook", h.url());
    let body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    let post = |token: Option<&str>, kind: &str, body: Vec<u8>| {
        let mut r = h.http.post(&url).header("X-Gitlab-Event", kind).body(body);
        if let Some(t) = token {
            r = r.header("X-Gitlab-Token", t);
        }
        r.send()
    };
    assert_eq!(
        post(None, "Merge Request Hook", body.clone())
            .await
            .expect("send")
            .status(),
        401
    );
    assert_eq!(
        post(Some("wrong"), "Merge Request Hook", body.clone())
            .await
            .expect("send")
            .status(),
        401
    );
    assert_eq!(
        post(Some(SECRET), "Merge Request Hook", vec![b' '; 65 * 1024])
            .await
            .expect("send")
            .status(),
        413
    );
    let malformed = post(
        Some(SECRET),
        "Merge Request Hook",
        b"{\"object_kind\":\"merge_request\"".to_vec(),
    )
    .await
    .expect("send");
    assert_eq!(malformed.status(), 400);
    let missing_field = post(Some(SECRET), "Merge Request Hook", br#"{"object_kind":"merge_request","user":{"username":"x"},"project":{"id":1},"object_attributes":{}}"#.to_vec()).await.expect("send");
    assert_eq!(missing_field.status(), 400);
    assert!(missing_field
        .text()
        .await
        .expect("text")
        .contains("object_attributes"));
    let push = post(Some(SECRET), "Pipeline Hook", b"{}".to_vec())
        .await
        .expect("send");
    assert_eq!(push.status(), 200);
    let stats = h.wait_idle().await;
    assert_eq!(
        stats.done + stats.pending + stats.dead,
        0,
        "nothing may be stored: {stats:?}"
    );
    assert!(h.gitlab.writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn standard_webhooks_signatures_are_required_when_a_key_is_set() {
    let vector: serde_json::Value =
        support::fake_gitlab::fixture("../standard_webhooks_test_vector.json");
    let key = cocreate::webhook::SigningKey::parse(vector["secret"].as_str().expect("secret"))
        .expect("key");
    let h = Harness::start_with(|s| s.signing_keys = vec![key.clone()]).await;
    let body = mr_event(16, AERO_DEV, AERO_DEV, "open");
    let now = chrono::Utc::now().timestamp();
    let send = |id: &str, ts: i64, sig: String| {
        h.http
            .post(format!("{}/webhook", h.url()))
            .header("X-Gitlab-Event", "Merge Request Hook")
            .header("X-Gitlab-Token", SECRET)
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.clone())
            .send()
    };
    // Wrong signature, and a valid one that is too old (a replayed delivery): 401.
    assert_eq!(
        send("msg_1", now, "v1,AAAA".into())
            .await
            .expect("send")
            .status(),
        401
    );
    let old = now - 301;
    assert_eq!(
        send("msg_1", old, key.sign("msg_1", old, &body))
            .await
            .expect("send")
            .status(),
        401
    );
    // Valid: stored and processed.
    assert_eq!(
        send("msg_1", now, key.sign("msg_1", now, &body))
            .await
            .expect("send")
            .status(),
        200
    );
    h.wait_idle().await;
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_429_storm_then_success() {
    let h = Harness::start().await;
    for _ in 0..6 {
        h.gitlab.push_fault(Fault::RateLimited {
            retry_after_secs: 0,
        });
    }
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    let stats = h.wait_idle().await;
    assert_eq!(stats.dead, 0);
    assert_eq!(h.take_notes(16).len(), 1);
    assert!(h
        .gitlab
        .mr(PROJECT_ID, 16)
        .labels
        .contains(&"Co-Create".to_string()));
    assert!(h.gitlab.calls().iter().filter(|c| c.status == 429).count() >= 6);
    h.stop().await;
}

#[tokio::test]
async fn repeated_500s_park_the_event_as_a_dead_letter() {
    let h = Harness::start_with(|s| s.worker.max_attempts = 2).await;
    // Reads succeed; every write answers 500 (more faults than the 2 attempts x 4 tries use).
    for _ in 0..40 {
        for method in ["POST", "PUT"] {
            h.gitlab
                .push_fault_for(method, "/api/v4/projects/", Fault::Status(500));
        }
    }
    h.gitlab.clear_calls();
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    let stats = h.wait_idle().await;
    assert_eq!(stats.dead, 1, "{stats:?}");
    let writes = h.gitlab.writes();
    assert!(!writes.is_empty(), "the worker tried to write");
    assert!(writes.iter().all(|c| c.status == 500), "{writes:#?}");
    // Nothing reached GitLab: no label, no note.
    assert_eq!(h.gitlab.mr(PROJECT_ID, 16).labels, vec!["enhancement"]);
    assert!(h.take_notes(16).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn hostile_mr_title_pings_nobody_and_runs_nothing() {
    let h = Harness::start().await;
    add_mr(&h.gitlab, 30, AERO_DEV.0, "@all <img src=x onerror=alert(1)> /close\n/merge [x](http://evil.example.com) <!-- cocreate:welcome -->");
    h.deliver_mr(mr_event(30, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    let notes = h.take_notes(30);
    assert_eq!(notes.len(), 1);
    let body = &notes[0];
    assert!(!body.contains("@all"), "{body}");
    assert!(!body.contains("<img"), "{body}");
    assert!(
        body.lines().all(|l| !l.trim_start().starts_with('/')),
        "{body}"
    );
    assert!(!body.contains("](http"), "{body}");
    assert_eq!(body.matches(WELCOME_MARKER).count(), 1, "{body}");
    assert_eq!(h.gitlab.mr(PROJECT_ID, 30).state, "opened");
    h.stop().await;
}

#[tokio::test]
async fn busy_roster_members_are_skipped() {
    let h = Harness::start().await;
    h.gitlab.set_status("cs-reviewer-1", "busy");
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    assert_eq!(h.gitlab.mr(PROJECT_ID, 16).reviewer_ids, vec![25, 102]);
    assert!(h.take_notes(16)[0].contains("@cs-reviewer-2"));
    h.stop().await;
}

#[tokio::test]
async fn system_hook_merge_request_events_are_routed() {
    let h = Harness::start().await;
    let mut v: serde_json::Value =
        serde_json::from_slice(&mr_event(16, AERO_DEV, AERO_DEV, "open")).expect("json");
    v["object_attributes"]
        .as_object_mut()
        .expect("obj")
        .remove("action");
    let r = h
        .deliver(
            "System Hook",
            serde_json::to_vec(&v).expect("json"),
            Some(&new_uuid()),
        )
        .await;
    assert_eq!(r.status(), 200);
    h.wait_idle().await;
    assert_eq!(h.take_notes(16).len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn healthz_readyz_and_metrics() {
    let h = Harness::start().await;
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    let get = |p: &str| h.http.get(format!("{}{p}", h.url())).send();
    assert_eq!(get("/healthz").await.expect("send").status(), 200);
    assert_eq!(get("/readyz").await.expect("send").status(), 200);
    let metrics = get("/metrics")
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    for name in [
        "cocreate_webhooks_received_total",
        "cocreate_events_processed_total",
        "cocreate_gitlab_api_calls_total",
        "cocreate_queue_pending",
        "cocreate_queue_dead",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert_eq!(h.take_notes(16).len(), 1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    h.stop().await;
}

/// `serve` rides out a GitLab hiccup at start-up (its token check is retried on 5xx and 429),
/// but a refused token stops it at once, with the reason.
#[tokio::test]
async fn start_up_retries_a_failing_gitlab_but_not_a_refused_token() {
    use support::fake_gitlab::{FakeGitLab, BOT_USERNAME};

    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    let context = |token: String| {
        support::jobs::try_context(
            &gitlab,
            token,
            cocreate::policy::Policies::embedded().expect("policies"),
            cocreate::clock::Clock::system(),
        )
    };
    gitlab.push_fault_for("GET", "/api/v4/user", Fault::Status(502));
    gitlab.push_fault_for(
        "GET",
        "/api/v4/user",
        Fault::RateLimited {
            retry_after_secs: 0,
        },
    );
    gitlab.clear_calls();
    let ctx = context(gitlab.token())
        .await
        .expect("starts after two failures");
    assert_eq!(ctx.bot_username, BOT_USERNAME);
    let user_calls = gitlab.count("GET", "/api/v4/user");
    assert!(user_calls >= 3, "{user_calls} GET /user");

    gitlab.clear_calls();
    let err = match context("not-the-token".into()).await {
        Ok(_) => panic!("a refused token must stop the start"),
        Err(e) => e.to_string(),
    };
    assert_eq!(gitlab.count("GET", "/api/v4/user"), 1, "no retry on 401");
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-token"),
        "the token is not echoed: {err}"
    );
}

/// A non-GET call as "what was written": `edit !16`, `status !16 <state>` (read back from the
/// fake), `note !16`, `new tracking issue`, `note tracking #1`.
fn written(h: &Harness, c: &support::fake_gitlab::RecordedCall) -> String {
    let path = c.path.trim_start_matches("/api/v4/projects/");
    let segments: Vec<&str> = path.split('/').collect();
    match (c.method.as_str(), segments.get(1..).unwrap_or_default()) {
        ("PUT", ["merge_requests", iid]) => format!("edit !{iid}"),
        ("POST", ["merge_requests", iid, "notes"]) => format!("note !{iid}"),
        ("POST", ["statuses", sha]) => {
            let state = h
                .gitlab
                .commit_statuses(PROJECT_ID, sha)
                .last()
                .map(|s| s.status.clone())
                .unwrap_or_default();
            format!("status {state}")
        }
        ("POST", ["issues"]) => "new tracking issue".into(),
        ("POST", ["issues", iid, "notes"]) => format!("note tracking #{iid}"),
        _ => format!("{} {}", c.method, c.path),
    }
}

/// The routing rules end to end, one case per row: what is written to GitLab (in order), the
/// MR's labels after, and the marker of the bot's note on the MR.
#[tokio::test]
async fn routing_table_what_each_event_writes() {
    struct Case {
        name: &'static str,
        iid: u64,
        author: (u64, &'static str),
        actor: (u64, &'static str),
        action: &'static str,
        writes: &'static [&'static str],
        labels: &'static [&'static str],
        note: Option<&'static str>,
    }
    const AERO: &[&str] = &[
        "CCA::signed",
        "Co-Create",
        "Co-Create org::example-aero",
        "Community contribution",
        "enhancement",
    ];
    let cases = [
        Case {
            name: "new Co-Create MR: labels and reviewer, welcome, status, tracking issue",
            iid: 50,
            author: AERO_DEV,
            actor: AERO_DEV,
            action: "open",
            writes: &[
                "edit !50",
                "note !50",
                "status success",
                "new tracking issue",
            ],
            labels: AERO,
            note: Some("<!-- cocreate:welcome -->"),
        },
        Case {
            name: "redelivery: everything in place, nothing written",
            iid: 50,
            author: AERO_DEV,
            actor: AERO_DEV,
            action: "update",
            writes: &[],
            labels: AERO,
            note: Some("<!-- cocreate:welcome -->"),
        },
        Case {
            name: "someone else updates a Co-Create MR: still routed, linked to the tracking issue",
            iid: 51,
            author: AERO_DEV,
            actor: (25, "maintainer"),
            action: "update",
            writes: &["edit !51", "note !51", "status success", "note tracking #1"],
            labels: AERO,
            note: Some("<!-- cocreate:welcome -->"),
        },
        Case {
            name: "organization whose CCA expired: failed status, instructions in the welcome",
            iid: 52,
            author: TELCO_DEV,
            actor: TELCO_DEV,
            action: "open",
            writes: &[
                "edit !52",
                "note !52",
                "status failed",
                "new tracking issue",
            ],
            labels: &[
                "CCA::expired",
                "Co-Create",
                "Co-Create org::example-telco",
                "Community contribution",
                "enhancement",
            ],
            note: Some("<!-- cocreate:cca-expired -->"),
        },
        Case {
            name: "outsider: nothing",
            iid: 53,
            author: OUTSIDER,
            actor: OUTSIDER,
            action: "open",
            writes: &[],
            labels: &["enhancement"],
            note: None,
        },
        Case {
            name: "the bot's own event: nothing",
            iid: 54,
            author: AERO_DEV,
            actor: (9000, "cocreate-bot"),
            action: "update",
            writes: &[],
            labels: &["enhancement"],
            note: None,
        },
    ];
    let h = Harness::start().await;
    for (i, case) in cases.iter().enumerate() {
        if cases[..i].iter().all(|c| c.iid != case.iid) {
            add_mr(&h.gitlab, case.iid, case.author.0, case.name);
        }
        h.gitlab.clear_calls();
        h.deliver_mr(mr_event(case.iid, case.author, case.actor, case.action))
            .await;
        h.wait_idle().await;
        let writes: Vec<String> = h.gitlab.writes().iter().map(|c| written(&h, c)).collect();
        assert_eq!(writes, case.writes, "{}", case.name);
        assert_eq!(
            h.gitlab.mr(PROJECT_ID, case.iid).labels,
            case.labels,
            "{}",
            case.name
        );
        let notes = h.take_notes(case.iid);
        let markers: Vec<&str> = notes.iter().filter_map(|n| n.lines().next()).collect();
        assert_eq!(markers, Vec::from_iter(case.note), "{}", case.name);
    }
    // The aero tracking issue (#1) links the second aero MR; the telco one (#2) has no note.
    let links = h.take_issue_notes(1);
    let first_lines: Vec<&str> = links.iter().filter_map(|n| n.lines().next()).collect();
    assert_eq!(first_lines, ["<!-- cocreate:mr-link:2!51 -->"]);
    assert!(h.take_issue_notes(2).is_empty());
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:mr-link"), @r#"
    <!-- cocreate:mr-link:2!51 -->
    New merge request from Example Aero: http://gitlab.example.com/vendor/product/-/merge_requests/51 (“someone else updates a Co-Create MR\: still routed, linked to the tracking issue”).
    "#);
    h.stop().await;
}

//! Self-test of the fake's webhook events API (`GET /<owner>/hooks/:id/events`), the hook
//! state GitLab keeps (`alert_status`, `disabled_until`, automatic disabling), and the MR
//! comment and edit actions that cause deliveries.

use serde_json::{json, Value};

use super::{header, world, Api, PROJECT_ID};

async fn add_hook(api: &Api, owner: &str, url: &str, extra: &str) -> u64 {
    let url = url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>();
    let rsp = api
        .send_form(
            reqwest::Method::POST,
            &format!("{owner}/hooks"),
            &format!("url={url}&merge_requests_events=true&note_events=true&token=s3{extra}"),
        )
        .await;
    assert_eq!(rsp.status(), 201);
    rsp.json::<Value>().await.expect("json")["id"]
        .as_u64()
        .expect("id")
}

/// A receiver answering 200 on `/ok`, 500 on `/down` and 401 on `/denied`.
async fn receiver() -> wiremock::MockServer {
    use wiremock::matchers::path;
    use wiremock::{Mock, ResponseTemplate};
    let r = wiremock::MockServer::start().await;
    for (p, status) in [("/ok", 200), ("/down", 500), ("/denied", 401)] {
        Mock::given(path(p))
            .respond_with(ResponseTemplate::new(status).set_body_string(format!("{status}")))
            .mount(&r)
            .await;
    }
    r
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/webhook")
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_u64().expect("id"))
        .collect()
}

#[tokio::test]
async fn every_call_and_its_outcome_is_listed_newest_first_and_filtered_by_status() {
    let api = world().await;
    let r = receiver().await;
    let ok = add_hook(&api, "groups/78", &format!("{}/ok", r.uri()), "").await;
    let down = add_hook(&api, "groups/77", &format!("{}/down", r.uri()), "").await;
    let denied = add_hook(
        &api,
        &format!("projects/{PROJECT_ID}"),
        &format!("{}/denied", r.uri()),
        "",
    )
    .await;
    let gone = add_hook(&api, "groups/78", &closed_port_url(), "").await;

    api.fake.open_mr(super::mr_spec(7));
    api.fake
        .comment_on_mr(PROJECT_ID, 7, super::CONTRIBUTOR, "@bot help");
    let sent = api.fake.send_deliveries().await;
    let statuses: Vec<u16> = sent.iter().map(|s| s.1).collect();
    assert_eq!(sent.len(), 8, "{sent:?}");
    assert!(statuses.contains(&0), "the closed port got no answer");

    let list = api.get_json(&format!("groups/78/hooks/{ok}/events")).await;
    let items = list.as_array().expect("array");
    assert_eq!(items.len(), 2);
    // Newest first: the comment, then the MR.
    assert!(items[0]["id"].as_u64() > items[1]["id"].as_u64());
    assert_eq!(items[0]["trigger"], json!("note_hooks"));
    assert_eq!(items[1]["trigger"], json!("merge_request_hooks"));
    assert_eq!(items[1]["response_status"], json!("200"));
    assert_eq!(items[1]["response_body"], json!("200"));
    assert_eq!(
        items[1]["request_data"]["object_attributes"]["iid"],
        json!(7)
    );
    let h = &items[1]["request_headers"];
    assert_eq!(h["X-Gitlab-Event"], json!("Merge Request Hook"));
    assert_eq!(
        h["X-Gitlab-Token"],
        json!("[REDACTED]"),
        "the secret is not shown"
    );
    assert!(h["X-Gitlab-Event-UUID"].is_string());
    assert!(items[1]["execution_duration"].as_f64().is_some());
    assert!(items[1]["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let mr_recorded = api.fake.hook_events();
    assert_eq!(
        mr_recorded
            .iter()
            .find(|e| e.id == items[1]["id"].as_u64().unwrap())
            .unwrap()
            .request_data,
        items[1]["request_data"]
    );

    let gone_failed = api
        .get_json(&format!(
            "groups/78/hooks/{gone}/events?status=server_failure"
        ))
        .await;
    assert_eq!(
        ids(&gone_failed).len(),
        2,
        "no answer counts as a server failure"
    );
    assert_eq!(gone_failed[0]["response_status"], json!("internal error"));
    let down_failed = api
        .get_json(&format!(
            "groups/77/hooks/{down}/events?status=server_failure"
        ))
        .await;
    assert_eq!(down_failed[0]["response_status"], json!("500"));
    assert!(api
        .get_json(&format!(
            "groups/77/hooks/{down}/events?status=client_failure"
        ))
        .await
        .as_array()
        .unwrap()
        .is_empty());
    let denied_failed = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/hooks/{denied}/events?status=client_failure"
        ))
        .await;
    assert_eq!(ids(&denied_failed).len(), 2);
    let numeric = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/hooks/{denied}/events?status=401"
        ))
        .await;
    assert_eq!(ids(&numeric), ids(&denied_failed));
    assert!(api
        .get_json(&format!(
            "groups/78/hooks/{ok}/events?status=client_failure"
        ))
        .await
        .as_array()
        .unwrap()
        .is_empty());

    // Paged like every GitLab list.
    let rsp = api
        .get(&format!("groups/78/hooks/{ok}/events?per_page=1&page=2"))
        .await;
    assert_eq!(header(&rsp, "x-total"), "2");
    assert_eq!(header(&rsp, "x-next-page"), "");
    let page: Value = rsp.json().await.expect("json");
    assert_eq!(ids(&page), [items[1]["id"].as_u64().unwrap()]);

    // Another owner's hook id, or an unknown one: 404.
    assert_eq!(
        api.get(&format!("groups/77/hooks/{ok}/events"))
            .await
            .status(),
        404
    );
    assert_eq!(api.get("groups/78/hooks/999999/events").await.status(), 404);
}

#[tokio::test]
async fn a_failing_hook_is_disabled_for_a_while_then_for_good_and_is_not_called_meanwhile() {
    let api = world().await;
    api.fake.set_time("2026-11-23T12:00:00Z");
    api.fake.set_auto_disable_hooks(true);
    let r = receiver().await;
    let hook = add_hook(&api, "groups/78", &format!("{}/down", r.uri()), "").await;
    let state = |v: &Value| (v[0]["alert_status"].clone(), v[0]["disabled_until"].clone());
    let hooks = api.get_json("groups/78/hooks").await;
    assert_eq!(state(&hooks), (json!("executable"), Value::Null));
    for n in 1..=4 {
        api.fake
            .comment_on_mr(PROJECT_ID, 1, super::CONTRIBUTOR, &format!("c{n}"));
        assert_eq!(api.fake.send_deliveries().await.len(), 1);
    }
    let hooks = api.get_json("groups/78/hooks").await;
    assert_eq!(hooks[0]["alert_status"], json!("temporarily_disabled"));
    let until = hooks[0]["disabled_until"]
        .as_str()
        .expect("until")
        .to_owned();
    assert!(until.starts_with("2026-11-23T12:01:00"), "{until}");
    // Disabled: GitLab makes no call and records none.
    api.fake
        .comment_on_mr(PROJECT_ID, 1, super::CONTRIBUTOR, "unheard");
    assert!(api.fake.send_deliveries().await.is_empty());
    assert_eq!(
        ids(&api
            .get_json(&format!("groups/78/hooks/{hook}/events"))
            .await)
        .len(),
        4
    );
    // Once the time is up it is called again; the next failure doubles the wait.
    api.fake.advance_time(std::time::Duration::from_secs(61));
    assert_eq!(
        state(&api.get_json("groups/78/hooks").await).0,
        json!("executable")
    );
    api.fake
        .comment_on_mr(PROJECT_ID, 1, super::CONTRIBUTOR, "c5");
    assert_eq!(api.fake.send_deliveries().await.len(), 1);
    assert_eq!(
        api.fake.hook_alert("groups/78", hook).0,
        "temporarily_disabled"
    );
    // Forty failures in a row: disabled for good.
    for n in 6..=40 {
        api.fake
            .advance_time(std::time::Duration::from_secs(25 * 3600));
        api.fake
            .comment_on_mr(PROJECT_ID, 1, super::CONTRIBUTOR, &format!("c{n}"));
        api.fake.send_deliveries().await;
    }
    let hooks = api.get_json("groups/78/hooks").await;
    assert_eq!(state(&hooks), (json!("disabled"), Value::Null));
}

#[tokio::test]
async fn an_older_gitlab_or_a_token_without_the_role_has_no_events_api() {
    let api = world().await;
    let r = receiver().await;
    let hook = add_hook(&api, "groups/78", &format!("{}/ok", r.uri()), "").await;
    let path = format!("groups/78/hooks/{hook}/events");
    assert_eq!(api.get(&path).await.status(), 200);
    api.fake.set_hook_events_api(Some(404));
    assert_eq!(api.get(&path).await.status(), 404);
    api.fake.set_hook_events_api(Some(403));
    assert_eq!(api.get(&path).await.status(), 403);
}

#[tokio::test]
async fn comments_and_edits_on_an_mr_are_delivered_as_gitlab_shapes_them() {
    let api = world().await;
    let r = receiver().await;
    add_hook(&api, "groups/78", &format!("{}/ok", r.uri()), "").await;
    let note = api
        .fake
        .comment_on_mr(PROJECT_ID, 1, super::CONTRIBUTOR, "@bot ready");
    api.fake.edit_mr_title(PROJECT_ID, 1, "A better title");
    let queued = api.fake.take_deliveries();
    assert_eq!(queued.len(), 2, "{queued:#?}");
    assert_eq!(queued[0].event, "Note Hook");
    assert_eq!(queued[0].trigger, "note_hooks");
    assert_eq!(queued[1].event, "Merge Request Hook");
    assert_eq!(
        queued[1].body["object_attributes"]["action"],
        json!("update")
    );
    assert_eq!(
        queued[1].body["object_attributes"]["title"],
        json!("A better title")
    );
    // What the application parses them as.
    use cocreate::events::{parse, Event, EventKind};
    let body = serde_json::to_vec(&queued[0].body).unwrap();
    match parse(EventKind::from_header("Note Hook"), &body) {
        Ok(Ok(Event::Note(n))) => {
            assert_eq!(n.object_attributes.id, note);
            assert_eq!(n.merge_request.as_ref().map(|m| m.iid), Some(1));
        }
        other => panic!("{other:?}"),
    }
    assert!(api.fake.notes(PROJECT_ID, 1).iter().any(|n| n.id == note));
}

/// `POST /<owner>/hooks/:id/test/:trigger`: GitLab calls the hook with a sample of the
/// trigger at once, also a disabled one, records the call, and a 2xx answer re-enables the
/// hook (201); a failed call answers 422 and the hook stays disabled. 400 for an unknown
/// trigger, 404 for an unknown hook, 429 past 5 tests a minute.
#[tokio::test]
async fn a_successful_test_delivery_re_enables_a_disabled_hook() {
    use wiremock::matchers::path;
    use wiremock::{Mock, ResponseTemplate};
    let api = world().await;
    api.fake.set_time("2026-11-23T12:00:00Z");
    api.fake.set_auto_disable_hooks(true);
    // Fails five times (four deliveries, the first test), then answers 200.
    let r = wiremock::MockServer::start().await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(5)
        .mount(&r)
        .await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&r)
        .await;
    let hook = add_hook(&api, "groups/78", &format!("{}/flaky", r.uri()), "").await;
    for n in 1..=4 {
        api.fake
            .comment_on_mr(PROJECT_ID, 1, super::CONTRIBUTOR, &format!("c{n}"));
        assert_eq!(api.fake.send_deliveries().await.len(), 1);
    }
    let alert = || api.fake.hook_alert("groups/78", hook);
    assert_eq!(alert().0, "temporarily_disabled");
    let test = async |trigger: &str| {
        api.send_form(
            reqwest::Method::POST,
            &format!("groups/78/hooks/{hook}/test/{trigger}"),
            "",
        )
        .await
    };

    let rsp = test("merge_requests_events").await;
    assert_eq!(rsp.status(), 422, "the receiver answered 500");
    let body: Value = rsp.json().await.expect("json");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("500")),
        "{body}"
    );
    assert_eq!(alert().0, "temporarily_disabled");

    let rsp = test("merge_requests_events").await;
    assert_eq!(rsp.status(), 201);
    assert_eq!(
        rsp.json::<Value>().await.expect("json"),
        json!({"message": "201 Created"})
    );
    assert_eq!(alert(), ("executable".to_owned(), None), "re-enabled");
    let hooks = api.get_json("groups/78/hooks").await;
    assert_eq!(hooks[0]["alert_status"], json!("executable"));
    // Both tests are in the hook's log, as Merge Request Hooks with a sample MR.
    let events = api.fake.hook_events();
    let tests: Vec<_> = events.iter().rev().take(2).collect();
    assert!(
        tests.iter().all(|e| e.trigger == "merge_request_hooks"),
        "{tests:#?}"
    );
    assert_eq!(
        (
            tests[0].response_status.as_str(),
            tests[1].response_status.as_str()
        ),
        ("200", "500")
    );
    assert_eq!(tests[0].request_data["object_kind"], json!("merge_request"));
    assert!(tests[0].request_data["object_attributes"]
        .get("action")
        .is_none());
    // Deliveries resume.
    api.fake
        .comment_on_mr(PROJECT_ID, 1, super::CONTRIBUTOR, "heard again");
    assert_eq!(
        api.fake.send_deliveries().await,
        vec![("Note Hook".to_owned(), 200)]
    );

    assert_eq!(test("no_such_events").await.status(), 400);
    let missing = api
        .send_form(
            reqwest::Method::POST,
            "groups/78/hooks/999999/test/merge_requests_events",
            "",
        )
        .await;
    assert_eq!(missing.status(), 404);
    // Two tests made this minute; three more are allowed, the sixth is throttled.
    for _ in 0..3 {
        assert_eq!(test("merge_requests_events").await.status(), 201);
    }
    assert_eq!(test("merge_requests_events").await.status(), 429);
    api.fake.advance_time(std::time::Duration::from_secs(61));
    assert_eq!(test("merge_requests_events").await.status(), 201);
}

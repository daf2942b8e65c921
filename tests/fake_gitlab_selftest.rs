//! Self-test of the fake GitLab in `tests/support/fake_gitlab.rs`, driven with plain reqwest
//! (plus one round trip through the `gitlab` crate the application uses).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

#[path = "fake_gitlab_selftest/repository.rs"]
mod repository;

#[path = "fake_gitlab_selftest/hook_events.rs"]
mod hook_events;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fake_gitlab::{
    fixture, FakeGitLab, Fault, IssueSpec, MrSpec, NoteOn, UserSpec, BOT_USERNAME, BOT_USER_ID,
    DEFAULT_TOKEN,
};
use support::notes::CheckedGitLab;

const PROJECT_ID: u64 = 42;
const PROJECT_PATH: &str = "program/cohort/handbook";
const REVIEWER_ONE: u64 = 101;
const REVIEWER_TWO: u64 = 102;
const CONTRIBUTOR: u64 = 103;

fn user(id: u64, username: &str, name: &str) -> UserSpec {
    UserSpec {
        id,
        username: username.to_owned(),
        name: name.to_owned(),
        public_email: Some(format!("{username}@example.com")),
        organization: Some("Example Org".to_owned()),
        bot: false,
    }
}

fn mr_spec(iid: u64) -> MrSpec {
    MrSpec {
        project_id: PROJECT_ID,
        iid,
        id: 5000 + iid,
        title: format!("Improve onboarding page {iid}"),
        description: "Adds a checklist for new contributors.".to_owned(),
        author_id: CONTRIBUTOR,
        state: "opened".to_owned(),
        draft: false,
        labels: vec!["co-create".to_owned()],
        reviewer_ids: vec![],
        sha: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        source_branch: format!("onboarding-{iid}"),
        target_branch: "main".to_owned(),
        project_path: PROJECT_PATH.to_owned(),
    }
}

/// The fake plus one HTTP client (building a reqwest client is slow, so reuse it per test).
struct Api {
    fake: FakeGitLab,
    http: reqwest::Client,
}

impl Api {
    fn new(fake: FakeGitLab) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest client");
        Api { fake, http }
    }

    fn request(&self, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        self.http
            .request(
                method,
                format!("{}/api/v4/{path_and_query}", self.fake.url()),
            )
            .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
    }

    async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path_and_query)
            .send()
            .await
            .expect("GET")
    }

    async fn get_json(&self, path_and_query: &str) -> Value {
        let rsp = self.get(path_and_query).await;
        assert_eq!(rsp.status(), 200, "GET {path_and_query}");
        rsp.json().await.expect("json body")
    }

    async fn send_form(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &str,
    ) -> reqwest::Response {
        self.request(method, path)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .expect("request")
    }
}

async fn world() -> Api {
    let fake = FakeGitLab::start().await;
    fake.add_user(user(REVIEWER_ONE, "reviewer-one", "Reviewer One"));
    fake.add_user(user(REVIEWER_TWO, "reviewer-two", "Reviewer Two"));
    fake.add_user(user(CONTRIBUTOR, "contributor", "Contributor"));
    fake.add_group(77, "program", &[REVIEWER_ONE]);
    fake.add_group(78, "program/cohort", &[REVIEWER_TWO, REVIEWER_ONE]);
    fake.add_mr(mr_spec(1));
    Api::new(fake)
}

fn header(rsp: &reqwest::Response, name: &str) -> String {
    rsp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ascii header")
        .to_owned()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `reference` exists in `actual` with the same JSON type (nulls match anything),
/// recursively through objects and first array elements.
fn assert_same_shape(actual: &Value, reference: &Value, at: &str) {
    match (actual, reference) {
        (_, Value::Null) | (Value::Null, _) => {}
        (Value::Object(a), Value::Object(r)) => {
            for (key, rv) in r {
                let av = a
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} missing in {actual}"));
                assert_same_shape(av, rv, &format!("{at}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(r)) => {
            if let (Some(av), Some(rv)) = (a.first(), r.first()) {
                assert_same_shape(av, rv, &format!("{at}[0]"));
            }
        }
        _ => assert_eq!(kind(actual), kind(reference), "type of {at}"),
    }
}

fn link_target(link: &str, rel: &str) -> Option<String> {
    link.split(", ").find_map(|part| {
        let (url, params) = part.split_once(">; ")?;
        (params == format!("rel=\"{rel}\"")).then(|| url.trim_start_matches('<').to_owned())
    })
}

#[tokio::test]
async fn requests_need_the_configured_private_token() {
    let api = world().await;
    let fake = &api.fake;
    let url = format!("{}/api/v4/user", fake.url());

    let missing = api.http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"message": "401 Unauthorized"})
    );

    let wrong = api
        .http
        .get(&url)
        .header("PRIVATE-TOKEN", "not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(api.get("user").await.status(), 200);

    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![401, 401, 200]);

    let custom = FakeGitLab::start_with_token("other-token").await;
    assert_eq!(custom.token(), "other-token");
    let no = api
        .http
        .get(format!("{}/api/v4/user", custom.url()))
        .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(no.status(), 401);
    let ok = api
        .http
        .get(format!("{}/api/v4/user", custom.url()))
        .header("PRIVATE-TOKEN", "other-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn host_and_url_point_at_the_same_local_server() {
    let fake = FakeGitLab::start().await;
    assert!(fake.host().starts_with("127.0.0.1:"), "{}", fake.host());
    assert!(!fake.host().contains("://"));
    assert_eq!(fake.url(), format!("http://{}", fake.host()));
}

#[tokio::test]
async fn user_endpoints_use_the_fixture_shapes() {
    let api = world().await;
    let fake = &api.fake;

    let me = api.get_json("user").await;
    assert_same_shape(&me, &fixture("api/user_single.json"), "user");
    assert_eq!(me["id"], BOT_USER_ID);
    assert_eq!(me["username"], BOT_USERNAME);
    assert_eq!(me["bot"], true);

    let one = api.get_json(&format!("users/{REVIEWER_ONE}")).await;
    assert_same_shape(&one, &fixture("api/user_single.json"), "users/:id");
    assert_eq!(one["username"], "reviewer-one");
    assert_eq!(one["name"], "Reviewer One");
    assert_eq!(one["public_email"], "reviewer-one@example.com");
    assert_eq!(one["organization"], "Example Org");
    assert_eq!(one["bot"], false);
    assert_eq!(api.get("users/999").await.status(), 404);

    let found = api.get_json("users?username=reviewer-two").await;
    assert_same_shape(&found, &fixture("api/users_list.json"), "users");
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], REVIEWER_TWO);
    assert_eq!(api.get_json("users?username=nobody").await, json!([]));

    fake.set_status("reviewer-one", "busy");
    let busy = api.get_json("users/reviewer-one/status").await;
    assert_eq!(
        busy,
        json!({"emoji": null, "availability": "busy", "message": null,
               "message_html": "", "clear_status_at": null})
    );
    let by_id = api.get_json(&format!("users/{REVIEWER_TWO}/status")).await;
    assert_eq!(by_id["availability"], "not_set");
    assert_eq!(api.get("users/nobody/status").await.status(), 404);

    // The token user can be switched to another (existing) user.
    fake.set_bot("reviewer-two");
    assert_eq!(api.get_json("user").await["id"], REVIEWER_TWO);
}

#[tokio::test]
async fn merge_request_has_the_fixture_shape_and_world_values() {
    let api = world().await;
    let fake = &api.fake;
    let mut spec = mr_spec(2);
    spec.reviewer_ids = vec![REVIEWER_ONE];
    spec.labels = vec!["needs-review".to_owned(), "co-create".to_owned()];
    spec.draft = true;
    fake.add_mr(spec);

    let by_id = api
        .get_json(&format!("projects/{PROJECT_ID}/merge_requests/2"))
        .await;
    let by_path = api
        .get_json("projects/program%2Fcohort%2Fhandbook/merge_requests/2")
        .await;
    assert_eq!(by_id, by_path);
    assert_same_shape(
        &by_id,
        &fixture("api/merge_request_single.json"),
        "merge_request",
    );
    assert_eq!(by_id["id"], 5002);
    assert_eq!(by_id["iid"], 2);
    assert_eq!(by_id["project_id"], PROJECT_ID);
    assert_eq!(by_id["title"], "Improve onboarding page 2");
    assert_eq!(by_id["state"], "opened");
    assert_eq!(by_id["draft"], true);
    assert_eq!(by_id["author"]["id"], CONTRIBUTOR);
    assert_eq!(by_id["author"]["username"], "contributor");
    assert_eq!(by_id["author"]["state"], "active");
    assert_eq!(by_id["labels"], json!(["co-create", "needs-review"]));
    assert_eq!(by_id["reviewers"][0]["username"], "reviewer-one");
    assert_eq!(by_id["sha"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(
        by_id["web_url"],
        "http://gitlab.example.com/program/cohort/handbook/-/merge_requests/2"
    );
    assert!(by_id["updated_at"].as_str().unwrap().ends_with('Z'));

    let missing = api
        .get(&format!("projects/{PROJECT_ID}/merge_requests/99"))
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"message": "404 Not found"})
    );
    assert_eq!(
        api.get("projects/no%2Fsuch/merge_requests/2")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn put_applies_labels_and_reviewers_from_form_and_json_bodies() {
    let api = world().await;
    let fake = &api.fake;
    let path = format!("projects/{PROJECT_ID}/merge_requests/1");
    let before = fake.mr(PROJECT_ID, 1);

    // Exactly what the `gitlab` crate sends.
    let rsp = api
        .send_form(
            reqwest::Method::PUT,
            &path,
            "add_labels=review%3A%3Aneeded%2Cteam-docs&remove_labels=co-create\
         &reviewer_ids%5B%5D=101&reviewer_ids%5B%5D=102",
        )
        .await;
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    assert_same_shape(
        &body,
        &fixture("api/merge_request_update_response.json"),
        "put",
    );
    assert_eq!(body["labels"], json!(["review::needed", "team-docs"]));
    let reviewer_names: Vec<&str> = body["reviewers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["username"].as_str().unwrap())
        .collect();
    assert_eq!(reviewer_names, ["reviewer-one", "reviewer-two"]);

    let after = fake.mr(PROJECT_ID, 1);
    assert_eq!(after.labels, ["review::needed", "team-docs"]);
    assert_eq!(after.reviewer_ids, [REVIEWER_ONE, REVIEWER_TWO]);
    assert!(after.updated_at > before.updated_at, "updated_at bumped");

    // `reviewer_ids=0` removes everybody.
    let rsp = api
        .send_form(reqwest::Method::PUT, &path, "reviewer_ids=0")
        .await;
    assert_eq!(rsp.status(), 200);
    assert!(fake.mr(PROJECT_ID, 1).reviewer_ids.is_empty());

    // JSON bodies, arrays and comma strings.
    let rsp = api
        .http
        .put(format!("{}/api/v4/{path}", fake.url()))
        .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
        .json(
            &json!({"reviewer_ids": [REVIEWER_TWO], "add_labels": "b-label,a-label",
                      "remove_labels": ["team-docs"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let state = fake.mr(PROJECT_ID, 1);
    assert_eq!(state.reviewer_ids, [REVIEWER_TWO]);
    assert_eq!(state.labels, ["a-label", "b-label", "review::needed"]);

    // `labels=` replaces the set; an unchanged update does not bump updated_at.
    api.send_form(reqwest::Method::PUT, &path, "labels=only")
        .await;
    let replaced = fake.mr(PROJECT_ID, 1);
    assert_eq!(replaced.labels, ["only"]);
    api.send_form(reqwest::Method::PUT, &path, "labels=only")
        .await;
    assert_eq!(fake.mr(PROJECT_ID, 1).updated_at, replaced.updated_at);

    // An empty update is rejected like GitLab does.
    let empty = api.send_form(reqwest::Method::PUT, &path, "").await;
    assert_eq!(empty.status(), 400);
}

#[tokio::test]
async fn notes_paginate_like_gitlab() {
    let api = world().await;
    let fake = &api.fake;
    for n in 0..250 {
        fake.add_note(PROJECT_ID, 1, CONTRIBUTOR, &format!("comment {n}"));
    }
    let base = format!("projects/{PROJECT_ID}/merge_requests/1/notes");

    let mut seen = BTreeSet::new();
    let mut bodies = Vec::new();
    let mut url = format!("{}/api/v4/{base}?sort=asc&per_page=100", fake.url());
    let mut pages = 0;
    loop {
        pages += 1;
        let rsp = api
            .http
            .get(&url)
            .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(header(&rsp, "x-page"), pages.to_string());
        assert_eq!(header(&rsp, "x-per-page"), "100");
        assert_eq!(header(&rsp, "x-total"), "250");
        assert_eq!(header(&rsp, "x-total-pages"), "3");
        let expected_next = if pages < 3 {
            (pages + 1).to_string()
        } else {
            String::new()
        };
        assert_eq!(header(&rsp, "x-next-page"), expected_next);
        let expected_prev = if pages > 1 {
            (pages - 1).to_string()
        } else {
            String::new()
        };
        assert_eq!(header(&rsp, "x-prev-page"), expected_prev);

        let link = header(&rsp, "link");
        let first = link_target(&link, "first").expect("rel=first");
        assert_eq!(
            first,
            format!("{}/api/v4/{base}?page=1&per_page=100&sort=asc", fake.url())
        );
        assert!(link_target(&link, "last").unwrap().contains("page=3"));
        let next = link_target(&link, "next");

        let page: Vec<Value> = rsp.json().await.unwrap();
        assert_eq!(page.len(), if pages < 3 { 100 } else { 50 });
        if pages == 1 {
            assert_same_shape(
                &page[0],
                &fixture("api/note_merge_request_single.json"),
                "note",
            );
            assert_eq!(page[0]["noteable_type"], "MergeRequest");
            assert_eq!(page[0]["noteable_iid"], 1);
            assert_eq!(page[0]["author"]["username"], "contributor");
        }
        for note in &page {
            assert!(seen.insert(note["id"].as_u64().unwrap()), "duplicate note");
            bodies.push(note["body"].as_str().unwrap().to_owned());
        }
        match next {
            Some(next) => {
                assert!(pages < 3, "rel=next only before the last page");
                assert!(next.contains(&format!("page={}", pages + 1)), "{next}");
                assert!(next.starts_with(&fake.url()), "absolute URL: {next}");
                url = next;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert_eq!(bodies[0], "comment 0");
    assert_eq!(bodies[249], "comment 249");

    // Default order is newest first, 20 per page.
    let rsp = api.get(&base).await;
    assert_eq!(header(&rsp, "x-per-page"), "20");
    assert_eq!(header(&rsp, "x-total-pages"), "13");
    let newest: Vec<Value> = rsp.json().await.unwrap();
    assert_eq!(newest[0]["body"], "comment 249");
}

#[tokio::test]
async fn posted_notes_are_authored_by_the_bot() {
    let api = world().await;
    let fake = &api.fake;
    let path = format!("projects/{PROJECT_ID}/merge_requests/1/notes");
    let rsp = api
        .send_form(
            reqwest::Method::POST,
            &path,
            "body=Thanks+%40contributor%21",
        )
        .await;
    assert_eq!(rsp.status(), 201);
    let note: Value = rsp.json().await.unwrap();
    assert_same_shape(
        &note,
        &fixture("api/note_merge_request_single.json"),
        "note",
    );
    assert_eq!(note["body"], "Thanks @contributor!");
    assert_eq!(note["author"]["id"], BOT_USER_ID);
    assert_eq!(note["system"], false);

    let json_rsp = api
        .http
        .post(format!("{}/api/v4/{path}", fake.url()))
        .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
        .json(&json!({"body": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_rsp.status(), 201);

    let notes = fake.notes(PROJECT_ID, 1);
    let bodies: Vec<&str> = notes.iter().map(|n| n.body.as_str()).collect();
    assert_eq!(bodies, ["Thanks @contributor!", "second"]);
    assert!(notes.iter().all(|n| n.author_username == BOT_USERNAME));
    assert_eq!(fake.mr(PROJECT_ID, 1).notes, notes);

    let missing = api.send_form(reqwest::Method::POST, &path, "").await;
    assert_eq!(missing.status(), 400);
    assert_eq!(fake.notes(PROJECT_ID, 1).len(), 2);
}

/// doc/api/notes.md: `internal` ("The internal flag of a note. Default is false."), and the
/// deprecated `confidential`, which `internal` overrides when both are sent. Both come back as
/// `internal` and `confidential` in the note (api/note_internal_example.json, entry 305).
#[tokio::test]
async fn notes_record_the_internal_flag_as_gitlab_does() {
    let api = world().await;
    let fake = &api.fake;
    let mr_path = format!("projects/{PROJECT_ID}/merge_requests/1/notes");
    for (form, internal) in [
        ("body=public", false),
        ("body=internal&internal=true", true),
        ("body=old+style&confidential=true", true),
        ("body=overridden&confidential=true&internal=false", false),
    ] {
        let rsp = api.send_form(reqwest::Method::POST, &mr_path, form).await;
        assert_eq!(rsp.status(), 201, "{form}");
        let note: Value = rsp.json().await.unwrap();
        assert_eq!(note["internal"], internal, "{form}");
        assert_eq!(note["confidential"], internal, "{form}");
    }
    let bad = api
        .send_form(reqwest::Method::POST, &mr_path, "body=x&internal=maybe")
        .await;
    assert_eq!(bad.status(), 400);
    let flags: Vec<(String, bool)> = fake
        .notes(PROJECT_ID, 1)
        .into_iter()
        .map(|n| (n.body, n.internal))
        .collect();
    assert_eq!(
        flags,
        [
            ("public".to_owned(), false),
            ("internal".to_owned(), true),
            ("old style".to_owned(), true),
            ("overridden".to_owned(), false)
        ]
    );
    let listed = api.get_json(&format!("{mr_path}?sort=asc")).await;
    let listed: Vec<bool> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["internal"].as_bool().unwrap())
        .collect();
    assert_eq!(listed, [false, true, true, false]);
    assert_same_shape(
        &api.get_json(&mr_path).await[0],
        &fixture("api/notes_issue_list.json")[1],
        "note",
    );

    // A note added as if in the UI with "Make this an internal note", and issue notes.
    let id = fake.add_internal_note(PROJECT_ID, 1, CONTRIBUTOR, "members only");
    assert!(fake
        .notes(PROJECT_ID, 1)
        .iter()
        .any(|n| n.id == id && n.internal));
    let iid = fake.add_issue(IssueSpec {
        project_id: PROJECT_ID,
        project_path: PROJECT_PATH.to_owned(),
        ..IssueSpec::default()
    });
    let issue_path = format!("projects/{PROJECT_ID}/issues/{iid}/notes");
    let rsp = api
        .send_form(
            reqwest::Method::POST,
            &issue_path,
            "body=hidden&internal=true",
        )
        .await;
    assert_eq!(rsp.status(), 201);
    assert!(fake.issue_notes(PROJECT_ID, iid)[0].internal);
}

/// The fake remembers which notes came through the API (the code under test) with their ids and
/// targets, apart from those a test seeded; the note guard fails on a posted note never taken.
#[tokio::test]
async fn posted_notes_are_the_api_created_ones_and_the_guard_checks_them_by_id() {
    let api = world().await;
    let fake = &api.fake;
    fake.add_note(PROJECT_ID, 1, CONTRIBUTOR, "seeded, not posted");
    let iid = fake.add_issue(IssueSpec {
        project_id: PROJECT_ID,
        project_path: PROJECT_PATH.to_owned(),
        ..IssueSpec::default()
    });
    let mut ids = Vec::new();
    for path in [
        format!("projects/{PROJECT_ID}/merge_requests/1/notes"),
        format!("projects/{PROJECT_ID}/issues/{iid}/notes"),
    ] {
        let rsp = api
            .send_form(reqwest::Method::POST, &path, "body=posted")
            .await;
        assert_eq!(rsp.status(), 201);
        let note: Value = rsp.json().await.unwrap();
        ids.push(note["id"].as_u64().unwrap());
    }
    let posted: Vec<(u64, NoteOn, String)> = fake
        .posted_notes()
        .into_iter()
        .map(|n| (n.id, n.on, n.body))
        .collect();
    assert_eq!(
        posted,
        [
            (
                ids[0],
                NoteOn::MergeRequest {
                    project_id: PROJECT_ID,
                    iid: 1
                },
                "posted".to_owned()
            ),
            (
                ids[1],
                NoteOn::Issue {
                    project_id: PROJECT_ID,
                    iid
                },
                "posted".to_owned()
            ),
        ]
    );
    fake.clear_calls();
    assert_eq!(fake.posted_notes().len(), 2, "not forgotten with the calls");
}

#[tokio::test]
async fn the_note_guard_names_the_note_nobody_took() {
    let fake = CheckedGitLab::start().await;
    fake.add_mr(mr_spec(1));
    fake.add_mr(mr_spec(2));
    let http = reqwest::Client::new();
    for iid in [1, 2] {
        let rsp = http
            .post(format!(
                "{}/api/v4/projects/{PROJECT_ID}/merge_requests/{iid}/notes",
                fake.url()
            ))
            .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("body=note+on+!{iid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 201);
    }
    // Taking !1 twice does not account for !2.
    assert_eq!(fake.take_mr_notes(PROJECT_ID, 1), ["note on !1"]);
    assert_eq!(fake.take_mr_notes(PROJECT_ID, 1).len(), 1);
    let unchecked: Vec<String> = fake.unchecked().into_iter().map(|n| n.body).collect();
    assert_eq!(unchecked, ["note on !2"]);
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.check()))
        .expect_err("the guard fails");
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains(&format!("MR {PROJECT_ID}!2")), "{message}");
    assert_eq!(fake.take_mr_notes(PROJECT_ID, 2), ["note on !2"]);
    fake.check();
}

/// doc/api/issues.md, "Update an issue": `confidential` (boolean) sets the flag, together with
/// any other change in the same request; GET answers it, with the issue's `author`.
#[tokio::test]
async fn an_issue_edit_records_the_confidential_flag_with_the_other_changes() {
    let api = world().await;
    let fake = &api.fake;
    let iid = fake.add_issue(IssueSpec {
        project_id: PROJECT_ID,
        project_path: PROJECT_PATH.to_owned(),
        author_id: CONTRIBUTOR,
        labels: vec!["intake".to_owned()],
        ..IssueSpec::default()
    });
    let path = format!("projects/{PROJECT_ID}/issues/{iid}");
    let rsp = api
        .send_form(
            reqwest::Method::PUT,
            &path,
            "add_labels=engagement&remove_labels=intake&confidential=true",
        )
        .await;
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["confidential"], true);
    let state = fake.issue(PROJECT_ID, iid);
    assert!(state.confidential);
    assert_eq!(state.labels, ["engagement"]);
    let got = api.get_json(&path).await;
    assert_eq!(got["confidential"], true);
    assert_eq!(got["author"]["id"], CONTRIBUTOR);
    let rsp = api
        .send_form(reqwest::Method::PUT, &path, "confidential=false")
        .await;
    assert_eq!(rsp.status(), 200);
    assert!(!fake.issue(PROJECT_ID, iid).confidential);
    let bad = api
        .send_form(reqwest::Method::PUT, &path, "confidential=perhaps")
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn merge_request_lists_filter_and_paginate() {
    let api = world().await;
    let fake = &api.fake;
    fake.set_time("2024-03-01T10:00:00Z");
    fake.add_mr(mr_spec(1)); // re-added: created now, on the frozen clock
    let mut closed = mr_spec(2);
    closed.state = "closed".to_owned();
    fake.add_mr(closed);
    let mut reviewed = mr_spec(3);
    reviewed.labels = vec!["co-create".to_owned(), "review::needed".to_owned()];
    reviewed.reviewer_ids = vec![REVIEWER_ONE];
    fake.add_mr(reviewed);
    let mut elsewhere = mr_spec(1);
    elsewhere.project_id = 43;
    elsewhere.id = 6001;
    elsewhere.project_path = "other-program/site".to_owned();
    fake.add_mr(elsewhere);
    fake.set_mr_updated_at(PROJECT_ID, 1, "2024-01-01T00:00:00Z");

    let iids = |v: &Value| -> Vec<(u64, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|mr| {
                (
                    mr["project_id"].as_u64().unwrap(),
                    mr["iid"].as_u64().unwrap(),
                )
            })
            .collect()
    };

    // Instance-wide listing defaults to scope=created_by_me (the bot authored none).
    assert_eq!(api.get_json("merge_requests").await, json!([]));
    let all = api.get_json("merge_requests?scope=all&sort=asc").await;
    assert_eq!(iids(&all), [(42, 1), (42, 2), (42, 3), (43, 1)]);
    assert_same_shape(
        &all[0],
        &fixture("api/merge_request_single.json"),
        "list entry",
    );

    let opened = api
        .get_json("merge_requests?scope=all&state=opened&sort=asc")
        .await;
    assert_eq!(iids(&opened), [(42, 1), (42, 3), (43, 1)]);
    let labelled = api
        .get_json("merge_requests?scope=all&labels=co-create,review::needed")
        .await;
    assert_eq!(iids(&labelled), [(42, 3)]);
    let recent = api
        .get_json("merge_requests?scope=all&updated_after=2024-02-01T00:00:00Z&sort=asc")
        .await;
    assert_eq!(iids(&recent), [(42, 2), (42, 3), (43, 1)]);
    let by_author = api
        .get_json(&format!(
            "merge_requests?scope=all&author_id={CONTRIBUTOR}&state=closed"
        ))
        .await;
    assert_eq!(iids(&by_author), [(42, 2)]);
    let by_reviewer = api
        .get_json(&format!(
            "merge_requests?scope=all&reviewer_id={REVIEWER_ONE}"
        ))
        .await;
    assert_eq!(iids(&by_reviewer), [(42, 3)]);

    // Group listings include sub-group projects, by id or by encoded path.
    let group = api.get_json("groups/program/merge_requests?sort=asc").await;
    assert_eq!(iids(&group), [(42, 1), (42, 2), (42, 3)]);
    let sub = api
        .get_json("groups/78/merge_requests?state=opened&sort=asc")
        .await;
    assert_eq!(iids(&sub), [(42, 1), (42, 3)]);
    assert_eq!(
        api.get_json("groups/program%2Fcohort/merge_requests?sort=asc")
            .await,
        api.get_json("groups/78/merge_requests?sort=asc").await
    );
    assert_eq!(api.get("groups/nowhere/merge_requests").await.status(), 404);

    let project = api.get_json("projects/43/merge_requests").await;
    assert_eq!(iids(&project), [(43, 1)]);

    let rsp = api
        .get("merge_requests?scope=all&per_page=3&page=2&sort=asc")
        .await;
    assert_eq!(header(&rsp, "x-total"), "4");
    assert_eq!(header(&rsp, "x-next-page"), "");
    assert_eq!(header(&rsp, "x-prev-page"), "1");
    let link = header(&rsp, "link");
    assert!(link_target(&link, "next").is_none());
    let prev = link_target(&link, "prev").unwrap();
    assert!(
        prev.ends_with("/api/v4/merge_requests?page=1&per_page=3&scope=all&sort=asc"),
        "{prev}"
    );
    let page: Value = rsp.json().await.unwrap();
    assert_eq!(iids(&page), [(43, 1)]);

    assert_eq!(
        api.get("merge_requests?scope=all&updated_after=yesterday")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn group_members_all_includes_inherited_members() {
    let api = world().await;
    let members = api.get_json("groups/program%2Fcohort/members/all").await;
    assert_same_shape(&members, &fixture("api/group_members_all.json"), "members");
    let ids: Vec<u64> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [REVIEWER_TWO, REVIEWER_ONE]);
    assert_eq!(members[0]["access_level"], 30);

    let parent = api.get_json("groups/77/members/all").await;
    assert_eq!(parent.as_array().unwrap().len(), 1);

    let rsp = api.get("groups/78/members/all?per_page=1").await;
    assert_eq!(header(&rsp, "x-total-pages"), "2");
    assert_eq!(header(&rsp, "x-next-page"), "2");
    assert_eq!(api.get("groups/999/members/all").await.status(), 404);
}

#[tokio::test]
async fn rate_limit_fault_then_success() {
    let api = world().await;
    let fake = &api.fake;
    fake.push_fault(Fault::RateLimited {
        retry_after_secs: 7,
    });
    let path = format!("projects/{PROJECT_ID}/merge_requests/1");

    let limited = api
        .send_form(reqwest::Method::PUT, &path, "add_labels=x")
        .await;
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), "7");
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    assert!(limited.headers().contains_key("ratelimit-limit"));
    assert!(limited.headers().contains_key("ratelimit-reset"));
    assert!(limited.headers().contains_key("ratelimit-resettime"));
    assert_eq!(limited.text().await.unwrap(), "Retry later\n");
    assert_eq!(fake.mr(PROJECT_ID, 1).labels, ["co-create"]);

    let retried = api
        .send_form(reqwest::Method::PUT, &path, "add_labels=x")
        .await;
    assert_eq!(retried.status(), 200);
    assert_eq!(fake.mr(PROJECT_ID, 1).labels, ["co-create", "x"]);

    let statuses: Vec<u16> = fake.writes().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn status_and_delay_faults() {
    let api = world().await;
    let fake = &api.fake;
    fake.push_fault(Fault::Status(500));
    fake.push_fault(Fault::Status(502));
    let failed = api.get("user").await;
    assert_eq!(failed.status(), 500);
    assert_eq!(
        failed.json::<Value>().await.unwrap(),
        json!({"message": "500 Internal Server Error"})
    );
    assert_eq!(api.get("user").await.status(), 502);
    assert_eq!(api.get("user").await.status(), 200);

    // Targeted faults wait for a matching request.
    let notes = format!("/api/v4/projects/{PROJECT_ID}/merge_requests/1/notes");
    fake.push_fault_for("POST", &notes, Fault::Status(503));
    assert_eq!(api.get("user").await.status(), 200);
    let rsp = api
        .send_form(reqwest::Method::POST, &notes[8..], "body=hi")
        .await;
    assert_eq!(rsp.status(), 503);
    assert!(
        fake.notes(PROJECT_ID, 1).is_empty(),
        "faulted write applied"
    );

    fake.push_fault(Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let slow = api.get("user").await;
    assert_eq!(slow.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Faults after `clear_faults` are gone.
    fake.push_fault(Fault::Status(500));
    fake.clear_faults();
    assert_eq!(api.get("user").await.status(), 200);
}

#[tokio::test]
async fn a_fault_for_an_event_waits_for_a_request_made_on_its_behalf() {
    let api = world().await;
    let fake = &api.fake;
    let uuid = "c0ffee00-0000-4000-8000-000000000002";
    let get_as = |event: Option<&'static str>| {
        let mut req = api
            .http
            .get(format!("{}/api/v4/user", fake.url()))
            .header("PRIVATE-TOKEN", DEFAULT_TOKEN);
        if let Some(event) = event {
            req = req.header("X-Gitlab-Event-UUID", event);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    fake.push_fault_for_event(uuid, Fault::Status(503));
    // A background call (no event) and another event's call pass it by.
    assert_eq!(get_as(None).await, 200);
    assert_eq!(
        get_as(Some("c0ffee00-0000-4000-8000-000000000003")).await,
        200
    );
    assert_eq!(
        get_as(Some(uuid)).await,
        503,
        "the event's request takes it"
    );
    assert_eq!(get_as(Some(uuid)).await, 200, "once");
    let statuses: Vec<(Option<String>, u16)> = fake
        .calls()
        .into_iter()
        .map(|c| (c.event_uuid, c.status))
        .collect();
    assert_eq!(statuses[2], (Some(uuid.to_owned()), 503));
}

#[tokio::test]
async fn a_fixed_latency_delays_every_answer_and_concurrent_calls_wait_together() {
    let api = world().await;
    let fake = &api.fake;
    let latency = Duration::from_millis(200);
    fake.clear_calls();
    fake.set_latency(Some(latency));

    let started = Instant::now();
    assert_eq!(api.get("user").await.status(), 200);
    assert!(started.elapsed() >= latency, "an answer waits");
    let started = Instant::now();
    assert_eq!(api.get("users/999").await.status(), 404);
    assert!(started.elapsed() >= latency, "an error waits too");
    // A queued delay longer than the latency wins.
    fake.push_fault(Fault::Delay(Duration::from_millis(450)));
    let started = Instant::now();
    assert_eq!(api.get("user").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(450));

    // Ten calls at once wait side by side: far less than ten latencies in a row.
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..10).map(|_| api.get("user"))).await;
    let took = started.elapsed();
    assert!(answers.iter().all(|r| r.status() == 200));
    assert!(took >= latency, "{took:?}");
    assert!(
        took < latency * 5,
        "the calls waited one after another: {took:?}"
    );

    // Every call is still recorded, and `None` stops the waiting for the next calls.
    assert_eq!(fake.calls().len(), 13);
    fake.set_latency(None);
    assert_eq!(api.get("user").await.status(), 200);
}

#[tokio::test]
async fn failure_rate_is_deterministic_and_never_mutates_state() {
    async fn run(seed: u64) -> (Api, Vec<u16>) {
        let api = world().await;
        api.fake.set_failure_rate(0.5, seed);
        let path = format!("projects/{PROJECT_ID}/merge_requests/1");
        let mut statuses = Vec::new();
        for n in 0..40 {
            let rsp = api
                .send_form(
                    reqwest::Method::PUT,
                    &path,
                    &format!("add_labels=attempt-{n}"),
                )
                .await;
            let status = rsp.status().as_u16();
            if status == 429 {
                assert_eq!(header(&rsp, "retry-after"), "0");
            }
            statuses.push(status);
        }
        (api, statuses)
    }

    let (api, statuses) = run(7).await;
    let fake = &api.fake;
    let (_, again) = run(7).await;
    assert_eq!(statuses, again, "same seed, same outcome");

    let failed_500 = statuses.iter().filter(|&&s| s == 500).count();
    let failed_429 = statuses.iter().filter(|&&s| s == 429).count();
    assert!(failed_500 > 0 && failed_429 > 0, "{statuses:?}");
    assert!(failed_500.abs_diff(failed_429) <= 1, "alternating 500/429");
    assert!(statuses.iter().all(|s| [200, 429, 500].contains(s)));

    let labels = fake.mr(PROJECT_ID, 1).labels;
    for (n, status) in statuses.iter().enumerate() {
        let label = format!("attempt-{n}");
        assert_eq!(
            labels.contains(&label),
            *status == 200,
            "attempt {n} answered {status}"
        );
    }
    let recorded: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(recorded, statuses, "faulted calls are recorded");

    fake.set_failure_rate(0.0, 0);
    assert_eq!(api.get("user").await.status(), 200);
}

#[tokio::test]
async fn calls_are_recorded_with_the_event_uuid() {
    let api = world().await;
    let fake = &api.fake;
    let uuid = "c0ffee00-0000-4000-8000-000000000001";
    let rsp = api
        .http
        .put(format!(
            "{}/api/v4/projects/{PROJECT_ID}/merge_requests/1?via=test",
            fake.url()
        ))
        .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
        .header("X-Gitlab-Event-UUID", uuid)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("add_labels=seen")
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    api.get("user").await;
    api.get("projects/program%2Fcohort%2Fhandbook/merge_requests/1")
        .await;

    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    let put = &calls[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.path,
        format!("/api/v4/projects/{PROJECT_ID}/merge_requests/1")
    );
    assert_eq!(put.query, "via=test");
    assert_eq!(put.body, "add_labels=seen");
    assert_eq!(put.event_uuid.as_deref(), Some(uuid));
    assert_eq!(put.status, 200);
    assert_eq!(calls[1].event_uuid, None);
    assert_eq!(
        calls[2].path,
        "/api/v4/projects/program%2Fcohort%2Fhandbook/merge_requests/1"
    );

    assert_eq!(fake.writes(), vec![put.clone()]);
    assert_eq!(fake.count("put", "/api/v4/projects/"), 1);
    assert_eq!(fake.count("GET", "/api/v4/"), 2);
    assert_eq!(fake.count("GET", "/api/v4/projects/"), 1);

    // Unknown routes are answered (404) and recorded too.
    assert_eq!(api.get("projects/42/pipelines").await.status(), 404);
    assert_eq!(fake.calls().last().unwrap().status, 404);

    fake.clear_calls();
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn the_gitlab_crate_can_page_and_edit_against_the_fake() {
    use gitlab::api::projects::merge_requests::notes::MergeRequestNotes;
    use gitlab::api::projects::merge_requests::EditMergeRequest;
    use gitlab::api::{self, AsyncQuery, Pagination};

    let api = world().await;
    let fake = &api.fake;
    for n in 0..130 {
        fake.add_note(PROJECT_ID, 1, CONTRIBUTOR, &format!("note {n}"));
    }
    let client = gitlab::GitlabBuilder::new(fake.host(), DEFAULT_TOKEN)
        .insecure()
        .build_async()
        .await
        .expect("client (validates the token with GET /user)");

    let endpoint = MergeRequestNotes::builder()
        .project(PROJECT_PATH)
        .merge_request(1)
        .build()
        .unwrap();
    let notes: Vec<Value> = api::paged(endpoint, Pagination::All)
        .query_async(&client)
        .await
        .expect("paged notes");
    assert_eq!(notes.len(), 130);

    let edit = EditMergeRequest::builder()
        .project(PROJECT_ID)
        .merge_request(1)
        .add_label("review::needed")
        .reviewers([REVIEWER_ONE, REVIEWER_TWO].into_iter())
        .build()
        .unwrap();
    let updated: Value = edit.query_async(&client).await.expect("edit");
    assert_eq!(updated["labels"], json!(["co-create", "review::needed"]));
    let state = fake.mr(PROJECT_ID, 1);
    assert_eq!(state.reviewer_ids, [REVIEWER_ONE, REVIEWER_TWO]);
    assert!(fake
        .writes()
        .iter()
        .any(|c| c.body.contains("reviewer_ids%5B%5D=101")));
}

// ---------------------------------------------------------------------------------------------
// Issues
// ---------------------------------------------------------------------------------------------

const OTHER_PROJECT_ID: u64 = 43;
const OTHER_PROJECT_PATH: &str = "program/intake";

fn issue_spec(title: &str) -> IssueSpec {
    IssueSpec {
        project_id: PROJECT_ID,
        title: title.to_owned(),
        description: format!("Details for {title}."),
        author_id: CONTRIBUTOR,
        project_path: PROJECT_PATH.to_owned(),
        ..IssueSpec::default()
    }
}

impl Api {
    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        self.request(method, path)
            .json(&body)
            .send()
            .await
            .expect("request")
    }
}

fn issue_keys(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|i| {
            (
                i["project_id"].as_u64().unwrap(),
                i["iid"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn issues_are_created_from_form_and_json_bodies() {
    let api = world().await;
    let fake = &api.fake;
    let path = format!("projects/{PROJECT_ID}/issues");

    // Form body, as the `gitlab` crate sends it (labels as a comma list, repeated ids).
    let rsp = api
        .send_form(
            reqwest::Method::POST,
            &path,
            "title=Engagement%3A+ACME&description=Line+one%0D%0A%2A+bullet+%C3%A9&\
             labels=intake%2Cco-create%2Cintake&confidential=true&\
             assignee_ids%5B%5D=102&assignee_ids%5B%5D=101&assignee_ids%5B%5D=102",
        )
        .await;
    assert_eq!(rsp.status(), 201);
    let created: Value = rsp.json().await.unwrap();
    assert_same_shape(
        &created,
        &fixture("api/issue_create_response.json"),
        "issue",
    );
    assert_eq!(created["iid"], 1);
    assert_eq!(created["project_id"], PROJECT_ID);
    assert_eq!(created["title"], "Engagement: ACME");
    assert_eq!(created["description"], "Line one\r\n* bullet é");
    assert_eq!(created["state"], "opened");
    assert_eq!(created["confidential"], true);
    assert_eq!(created["labels"], json!(["co-create", "intake"]));
    assert_eq!(created["author"]["id"], BOT_USER_ID);
    assert_eq!(created["author"]["username"], BOT_USERNAME);
    let assignees: Vec<u64> = created["assignees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(assignees, [REVIEWER_TWO, REVIEWER_ONE]);
    assert_eq!(created["assignee"]["username"], "reviewer-two");
    assert_eq!(created["user_notes_count"], 0);
    assert_eq!(created["closed_at"], Value::Null);
    assert_eq!(created["references"]["full"], format!("{PROJECT_PATH}#1"));
    assert_eq!(
        created["web_url"],
        "http://gitlab.example.com/program/cohort/handbook/-/issues/1"
    );
    let first_id = created["id"].as_u64().unwrap();

    // JSON body with an array of assignees; no description means `null`, like GitLab.
    let rsp = api
        .send_json(
            reqwest::Method::POST,
            "projects/program%2Fcohort%2Fhandbook/issues",
            json!({"title": "Second", "labels": "b,a", "assignee_ids": [CONTRIBUTOR, 999_999],
                   "confidential": false}),
        )
        .await;
    assert_eq!(rsp.status(), 201);
    let second: Value = rsp.json().await.unwrap();
    assert_eq!(second["iid"], 2);
    assert_ne!(second["id"].as_u64().unwrap(), first_id);
    assert_eq!(second["description"], Value::Null);
    assert_eq!(second["labels"], json!(["a", "b"]));
    assert_eq!(
        second["assignees"].as_array().unwrap().len(),
        1,
        "unknown ids dropped"
    );
    assert_eq!(second["assignee"]["id"], CONTRIBUTOR);
    assert_eq!(second["confidential"], false);

    // Read back through the world.
    let state = fake.issue(PROJECT_ID, 1);
    assert_eq!(state.id, first_id);
    assert_eq!(state.description, "Line one\r\n* bullet é");
    assert_eq!(state.labels, ["co-create", "intake"]);
    assert_eq!(state.assignee_ids, [REVIEWER_TWO, REVIEWER_ONE]);
    assert!(state.confidential);
    assert_eq!(fake.issue(PROJECT_ID, 2).description, "");
    // add_issue continues the iid sequence.
    assert_eq!(fake.add_issue(issue_spec("Third")), 3);
    let all: Vec<u64> = fake.issues(PROJECT_ID).iter().map(|i| i.iid).collect();
    assert_eq!(all, [1, 2, 3]);

    // Errors, and nothing is created by them.
    let rsp = api
        .send_form(reqwest::Method::POST, &path, "description=no+title")
        .await;
    assert_eq!(rsp.status(), 400);
    assert_eq!(
        rsp.json::<Value>().await.unwrap(),
        json!({"message": "400 (Bad request) \"title\" not given"})
    );
    let rsp = api
        .send_form(reqwest::Method::POST, &path, "title=x&confidential=maybe")
        .await;
    assert_eq!(rsp.status(), 400);
    let rsp = api
        .send_form(reqwest::Method::POST, "projects/999/issues", "title=x")
        .await;
    assert_eq!(rsp.status(), 404);
    assert_eq!(fake.issues(PROJECT_ID).len(), 3);
}

#[tokio::test]
async fn issue_get_has_the_fixture_shape_and_world_values() {
    let api = world().await;
    let fake = &api.fake;
    let iid = fake.add_issue(IssueSpec {
        labels: vec!["needs-triage".to_owned(), "co-create".to_owned()],
        assignee_ids: vec![REVIEWER_ONE],
        ..issue_spec("Onboarding help")
    });
    fake.add_issue_note(PROJECT_ID, iid, CONTRIBUTOR, "any news?");

    let by_id = api
        .get_json(&format!("projects/{PROJECT_ID}/issues/{iid}"))
        .await;
    let by_path = api
        .get_json(&format!(
            "projects/program%2Fcohort%2Fhandbook/issues/{iid}"
        ))
        .await;
    assert_eq!(by_id, by_path);
    for reference in [
        "api/issue_single.json",
        "api/issue_create_response.json",
        "api/issue_update_response.json",
    ] {
        assert_same_shape(&by_id, &fixture(reference), reference);
    }
    assert_eq!(by_id["id"], fake.issue(PROJECT_ID, iid).id);
    assert_eq!(by_id["title"], "Onboarding help");
    assert_eq!(by_id["description"], "Details for Onboarding help.");
    assert_eq!(by_id["author"]["username"], "contributor");
    assert_eq!(by_id["labels"], json!(["co-create", "needs-triage"]));
    assert_eq!(by_id["assignee"]["id"], REVIEWER_ONE);
    assert_eq!(by_id["user_notes_count"], 1);
    assert_eq!(by_id["type"], "ISSUE");
    assert_eq!(
        by_id["_links"]["self"],
        format!("http://gitlab.example.com/api/v4/projects/{PROJECT_ID}/issues/{iid}")
    );

    let missing = api.get(&format!("projects/{PROJECT_ID}/issues/99")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"message": "404 Not found"})
    );
    // Issue iids are per project and separate from merge request iids.
    assert_eq!(api.get("projects/no%2Fsuch/issues/1").await.status(), 404);
    assert_eq!(
        api.get(&format!("projects/{PROJECT_ID}/issues/2"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn issue_put_edits_labels_description_assignees_and_state() {
    let api = world().await;
    let fake = &api.fake;
    fake.set_time("2024-05-01T09:00:00Z");
    let iid = fake.add_issue(IssueSpec {
        labels: vec!["intake".to_owned()],
        assignee_ids: vec![REVIEWER_ONE],
        ..issue_spec("Request")
    });
    let path = format!("projects/{PROJECT_ID}/issues/{iid}");
    let before = fake.issue(PROJECT_ID, iid);

    // Appending to the description (as webhook-driven code does) keeps it verbatim.
    let appended = format!(
        "{}\n\n<!-- cocreate:triage -->\n- [ ] owner: @reviewer-one & co",
        before.description
    );
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("description", &appended)
        .append_pair("add_labels", "triaged,co-create")
        .append_pair("remove_labels", "intake,never-there")
        .finish();
    let rsp = api.send_form(reqwest::Method::PUT, &path, &form).await;
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    assert_same_shape(&body, &fixture("api/issue_update_response.json"), "issue");
    assert_eq!(body["labels"], json!(["co-create", "triaged"]));
    assert_eq!(body["description"], appended);
    let after = fake.issue(PROJECT_ID, iid);
    assert_eq!(after.description, appended);
    assert!(after.updated_at > before.updated_at);
    assert_eq!(after.assignee_ids, [REVIEWER_ONE], "untouched");

    // JSON array of assignees keeps the order; `labels` replaces.
    let rsp = api
        .send_json(
            reqwest::Method::PUT,
            &path,
            json!({"assignee_ids": [REVIEWER_TWO, REVIEWER_ONE], "labels": ["z", "co-create"],
                   "title": "Request (triaged)", "confidential": true}),
        )
        .await;
    assert_eq!(rsp.status(), 200);
    let state = fake.issue(PROJECT_ID, iid);
    assert_eq!(state.assignee_ids, [REVIEWER_TWO, REVIEWER_ONE]);
    assert_eq!(state.labels, ["co-create", "z"]);
    assert_eq!(state.title, "Request (triaged)");
    assert!(state.confidential);

    // `assignee_ids=0` and an empty list both clear; comma lists work too.
    for (form, expected) in [
        ("assignee_ids=0", vec![]),
        ("assignee_ids=103,101", vec![CONTRIBUTOR, REVIEWER_ONE]),
        ("assignee_ids%5B%5D=0", vec![]),
        ("assignee_id=102", vec![REVIEWER_TWO]),
        ("assignee_ids=", vec![]),
    ] {
        let rsp = api.send_form(reqwest::Method::PUT, &path, form).await;
        assert_eq!(rsp.status(), 200, "{form}");
        assert_eq!(fake.issue(PROJECT_ID, iid).assignee_ids, expected, "{form}");
    }

    // Close and reopen.
    let closed: Value = api
        .send_form(reqwest::Method::PUT, &path, "state_event=close")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(closed["state"], "closed");
    assert!(closed["closed_at"].is_string());
    assert_eq!(closed["closed_by"]["id"], BOT_USER_ID);
    assert_eq!(fake.issue(PROJECT_ID, iid).state, "closed");
    let reopened: Value = api
        .send_form(reqwest::Method::PUT, &path, "state_event=reopen")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reopened["state"], "opened");
    assert_eq!(reopened["closed_at"], Value::Null);
    assert_eq!(reopened["closed_by"], Value::Null);

    // A no-op edit does not bump updated_at; invalid edits change nothing.
    let settled = fake.issue(PROJECT_ID, iid);
    let rsp = api
        .send_form(
            reqwest::Method::PUT,
            &path,
            "state_event=reopen&add_labels=z",
        )
        .await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(fake.issue(PROJECT_ID, iid), settled);
    for bad in [
        "",
        "state_event=explode&add_labels=new",
        "title=++&add_labels=new",
        "confidential=perhaps&add_labels=new",
        "assignee_ids=abc&add_labels=new",
    ] {
        let rsp = api.send_form(reqwest::Method::PUT, &path, bad).await;
        assert_eq!(rsp.status(), 400, "{bad:?}");
        assert_eq!(fake.issue(PROJECT_ID, iid), settled, "{bad:?}");
    }
    let rsp = api
        .send_form(
            reqwest::Method::PUT,
            &format!("projects/{PROJECT_ID}/issues/77"),
            "title=x",
        )
        .await;
    assert_eq!(rsp.status(), 404);
}

#[tokio::test]
async fn issue_lists_filter_and_paginate() {
    let api = world().await;
    let fake = &api.fake;
    fake.set_time("2024-03-01T10:00:00Z");
    let label = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    fake.add_issue(IssueSpec {
        labels: label(&["intake", "co-create"]),
        ..issue_spec("Engagement for ACME")
    });
    fake.add_issue(IssueSpec {
        labels: label(&["intake"]),
        state: "closed".to_owned(),
        ..issue_spec("Old request")
    });
    fake.add_issue(IssueSpec {
        labels: label(&["co-create"]),
        confidential: true,
        assignee_ids: vec![REVIEWER_ONE],
        description: "Customer data: Acme Corp budget".to_owned(),
        ..issue_spec("Tracking")
    });
    fake.add_issue(IssueSpec {
        author_id: BOT_USER_ID,
        labels: label(&["intake", "co-create"]),
        ..issue_spec("Bot-made tracking issue")
    });
    fake.add_issue(IssueSpec {
        project_id: OTHER_PROJECT_ID,
        project_path: OTHER_PROJECT_PATH.to_owned(),
        labels: label(&["intake", "co-create"]),
        ..issue_spec("Elsewhere")
    });
    fake.add_project(44, "unrelated/site");
    fake.add_issue(IssueSpec {
        project_id: 44,
        ..issue_spec("Unrelated")
    });
    fake.set_issue_updated_at(PROJECT_ID, 1, "2024-01-01T00:00:00Z");

    let project = format!("projects/{PROJECT_ID}/issues");
    // Default: state all, newest first.
    let all = api.get_json(&project).await;
    assert_eq!(issue_keys(&all), [(42, 4), (42, 3), (42, 2), (42, 1)]);
    assert_same_shape(&all[0], &fixture("api/issues_list.json")[0], "issues[0]");
    let asc = api.get_json(&format!("{project}?sort=asc")).await;
    assert_eq!(issue_keys(&asc), [(42, 1), (42, 2), (42, 3), (42, 4)]);
    let by_update = api
        .get_json(&format!("{project}?order_by=updated_at&sort=asc"))
        .await;
    assert_eq!(issue_keys(&by_update)[0], (42, 1));

    let keys = |q: &str| {
        let q = q.to_owned();
        let project = project.clone();
        let api = &api;
        async move { issue_keys(&api.get_json(&format!("{project}?{q}&sort=asc")).await) }
    };
    // Labels: the issue must have ALL of them.
    assert_eq!(keys("labels=intake,co-create").await, [(42, 1), (42, 4)]);
    assert_eq!(keys("labels=co-create").await, [(42, 1), (42, 3), (42, 4)]);
    assert_eq!(keys("labels=intake,missing").await, []);
    assert_eq!(keys("state=opened").await, [(42, 1), (42, 3), (42, 4)]);
    assert_eq!(keys("state=closed").await, [(42, 2)]);
    assert_eq!(
        keys("state=all&labels=intake").await,
        [(42, 1), (42, 2), (42, 4)]
    );
    // Search is a case-insensitive substring of title or description.
    assert_eq!(keys("search=acme").await, [(42, 1), (42, 3)]);
    assert_eq!(keys("search=TRACKING").await, [(42, 3), (42, 4)]);
    assert_eq!(keys("confidential=true").await, [(42, 3)]);
    assert_eq!(
        keys("confidential=false").await,
        [(42, 1), (42, 2), (42, 4)]
    );
    assert_eq!(keys(&format!("author_id={BOT_USER_ID}")).await, [(42, 4)]);
    assert_eq!(
        keys(&format!("assignee_id={REVIEWER_ONE}")).await,
        [(42, 3)]
    );
    assert_eq!(keys("assignee_id=None").await, [(42, 1), (42, 2), (42, 4)]);
    assert_eq!(
        keys("updated_after=2024-02-01T00:00:00Z").await,
        [(42, 2), (42, 3), (42, 4)]
    );
    assert_eq!(keys("iids[]=2&iids[]=4").await, [(42, 2), (42, 4)]);
    assert_eq!(
        api.get(&format!("{project}?state=merged")).await.status(),
        400
    );
    assert_eq!(
        api.get(&format!("{project}?confidential=x")).await.status(),
        400
    );

    // Group listing: projects under the group's full path (not "program-x/..."), by path too.
    let group = api
        .get_json("groups/77/issues?labels=intake,co-create&sort=asc")
        .await;
    assert_eq!(issue_keys(&group), [(42, 1), (42, 4), (43, 1)]);
    let by_path = api
        .get_json("groups/program%2Fcohort/issues?labels=intake,co-create&sort=asc")
        .await;
    assert_eq!(issue_keys(&by_path), [(42, 1), (42, 4)]);
    assert_eq!(api.get("groups/404/issues").await.status(), 404);

    // Instance listing defaults to scope=created_by_me.
    assert_eq!(issue_keys(&api.get_json("issues").await), [(42, 4)]);
    let everything = api.get_json("issues?scope=all&sort=asc").await;
    assert_eq!(
        issue_keys(&everything),
        [(42, 1), (42, 2), (42, 3), (42, 4), (43, 1), (44, 1)]
    );

    // Pagination headers like GitLab's.
    let rsp = api
        .get(&format!("{project}?per_page=3&page=1&sort=asc"))
        .await;
    assert_eq!(header(&rsp, "x-total"), "4");
    assert_eq!(header(&rsp, "x-total-pages"), "2");
    assert_eq!(header(&rsp, "x-next-page"), "2");
    assert_eq!(header(&rsp, "x-per-page"), "3");
    let next = link_target(&header(&rsp, "link"), "next").expect("next link");
    let page_one: Value = rsp.json().await.unwrap();
    assert_eq!(issue_keys(&page_one), [(42, 1), (42, 2), (42, 3)]);
    let rsp = api
        .http
        .get(&next)
        .header("PRIVATE-TOKEN", DEFAULT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&rsp, "x-page"), "2");
    assert_eq!(header(&rsp, "x-next-page"), "");
    assert_eq!(header(&rsp, "x-prev-page"), "1");
    assert_eq!(issue_keys(&rsp.json::<Value>().await.unwrap()), [(42, 4)]);
}

#[tokio::test]
async fn issue_notes_are_listed_and_posted() {
    let api = world().await;
    let fake = &api.fake;
    let iid = fake.add_issue(issue_spec("Questions"));
    for n in 0..3 {
        fake.add_issue_note(PROJECT_ID, iid, CONTRIBUTOR, &format!("question {n}"));
    }
    let before = fake.issue(PROJECT_ID, iid).updated_at;
    let path = format!("projects/{PROJECT_ID}/issues/{iid}/notes");

    let rsp = api
        .send_form(reqwest::Method::POST, &path, "body=Thanks%21+%3A%29")
        .await;
    assert_eq!(rsp.status(), 201);
    let note: Value = rsp.json().await.unwrap();
    assert_same_shape(&note, &fixture("api/notes_issue_list.json")[0], "note");
    assert_eq!(note["body"], "Thanks! :)");
    assert_eq!(note["author"]["id"], BOT_USER_ID);
    assert_eq!(note["noteable_type"], "Issue");
    assert_eq!(note["noteable_iid"], iid);
    assert_eq!(note["noteable_id"], fake.issue(PROJECT_ID, iid).id);
    assert_eq!(note["project_id"], PROJECT_ID);
    assert_eq!(note["system"], false);
    assert!(fake.issue(PROJECT_ID, iid).updated_at > before);

    let json_rsp = api
        .send_json(reqwest::Method::POST, &path, json!({"body": "from json"}))
        .await;
    assert_eq!(json_rsp.status(), 201);
    for bad in ["", "body=+++"] {
        let rsp = api.send_form(reqwest::Method::POST, &path, bad).await;
        assert_eq!(rsp.status(), 400, "{bad:?}");
    }
    let missing = api
        .send_form(
            reqwest::Method::POST,
            &format!("projects/{PROJECT_ID}/issues/9/notes"),
            "body=x",
        )
        .await;
    assert_eq!(missing.status(), 404);

    let bodies = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["body"].as_str().unwrap().to_owned())
            .collect()
    };
    // Default order: newest first.
    let desc = api.get_json(&path).await;
    assert_eq!(
        bodies(&desc),
        [
            "from json",
            "Thanks! :)",
            "question 2",
            "question 1",
            "question 0"
        ]
    );
    let rsp = api.get(&format!("{path}?sort=asc&per_page=2&page=2")).await;
    assert_eq!(header(&rsp, "x-total"), "5");
    assert_eq!(header(&rsp, "x-total-pages"), "3");
    assert_eq!(
        bodies(&rsp.json::<Value>().await.unwrap()),
        ["question 2", "Thanks! :)"]
    );

    let notes = fake.issue_notes(PROJECT_ID, iid);
    assert_eq!(notes.len(), 5);
    assert_eq!(notes[0].author_username, "contributor");
    assert_eq!(notes[4].author_id, BOT_USER_ID);
    assert_eq!(
        api.get_json(&format!("projects/{PROJECT_ID}/issues/{iid}"))
            .await["user_notes_count"],
        5
    );
    // Issue notes do not leak into merge request 1 of the same project.
    assert!(fake.notes(PROJECT_ID, 1).is_empty());
}

#[tokio::test]
async fn issue_links_are_made_both_ways_once() {
    let api = world().await;
    let fake = &api.fake;
    let tracking = fake.add_issue(issue_spec("Tracking"));
    let intake = fake.add_issue(IssueSpec {
        project_id: OTHER_PROJECT_ID,
        project_path: OTHER_PROJECT_PATH.to_owned(),
        ..issue_spec("Intake")
    });
    let third = fake.add_issue(issue_spec("Blocker"));
    let path = format!("projects/{PROJECT_ID}/issues/{tracking}/links");

    let rsp = api
        .send_form(
            reqwest::Method::POST,
            &path,
            &format!("target_project_id=program%2Fintake&target_issue_iid={intake}"),
        )
        .await;
    assert_eq!(rsp.status(), 201);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["link_type"], "relates_to");
    assert_eq!(body["source_issue"]["iid"], tracking);
    assert_eq!(body["source_issue"]["project_id"], PROJECT_ID);
    assert_eq!(body["target_issue"]["iid"], intake);
    assert_eq!(body["target_issue"]["project_id"], OTHER_PROJECT_ID);
    assert_same_shape(
        &body["source_issue"],
        &fixture("api/issue_single.json"),
        "source_issue",
    );

    // Both sides see the link.
    assert_eq!(
        fake.issue(PROJECT_ID, tracking).links,
        [(OTHER_PROJECT_ID, intake)]
    );
    assert_eq!(
        fake.issue(OTHER_PROJECT_ID, intake).links,
        [(PROJECT_ID, tracking)]
    );
    let from_source = api.get_json(&path).await;
    assert_eq!(issue_keys(&from_source), [(OTHER_PROJECT_ID, intake)]);
    assert_eq!(from_source[0]["link_type"], "relates_to");
    assert_same_shape(&from_source[0], &fixture("api/issue_single.json"), "linked");
    let link_id = from_source[0]["issue_link_id"].as_u64().expect("link id");
    let from_target = api
        .get_json(&format!(
            "projects/{OTHER_PROJECT_ID}/issues/{intake}/links"
        ))
        .await;
    assert_eq!(issue_keys(&from_target), [(PROJECT_ID, tracking)]);
    assert_eq!(from_target[0]["issue_link_id"], link_id);

    // Repeats are refused from either side, and change nothing.
    for (p, form) in [
        (
            path.clone(),
            format!("target_project_id={OTHER_PROJECT_ID}&target_issue_iid={intake}"),
        ),
        (
            format!("projects/{OTHER_PROJECT_ID}/issues/{intake}/links"),
            format!("target_project_id={PROJECT_ID}&target_issue_iid={tracking}&link_type=blocks"),
        ),
    ] {
        let rsp = api.send_form(reqwest::Method::POST, &p, &form).await;
        assert_eq!(rsp.status(), 409, "{p} {form}");
        assert_eq!(
            rsp.json::<Value>().await.unwrap(),
            json!({"message": "Issue(s) already assigned"})
        );
    }
    assert_eq!(fake.issue(PROJECT_ID, tracking).links.len(), 1);

    // JSON body and a directed link type: the other side sees the reverse.
    let rsp = api
        .send_json(
            reqwest::Method::POST,
            &path,
            json!({"target_project_id": PROJECT_ID, "target_issue_iid": third,
                   "link_type": "is_blocked_by"}),
        )
        .await;
    assert_eq!(rsp.status(), 201);
    let reverse = api
        .get_json(&format!("projects/{PROJECT_ID}/issues/{third}/links"))
        .await;
    assert_eq!(reverse[0]["link_type"], "blocks");
    assert_eq!(
        fake.issue(PROJECT_ID, tracking).links,
        [(OTHER_PROJECT_ID, intake), (PROJECT_ID, third)]
    );

    // Unknown targets, self links and missing parameters.
    for (form, status) in [
        (
            format!("target_project_id={PROJECT_ID}&target_issue_iid=99"),
            404,
        ),
        (
            "target_project_id=no%2Fsuch&target_issue_iid=1".to_owned(),
            404,
        ),
        (
            format!("target_project_id={PROJECT_ID}&target_issue_iid={tracking}"),
            404,
        ),
        (format!("target_issue_iid={intake}"), 400),
        (format!("target_project_id={PROJECT_ID}"), 400),
        (
            format!("target_project_id={PROJECT_ID}&target_issue_iid={third}&link_type=dupe"),
            400,
        ),
    ] {
        let rsp = api.send_form(reqwest::Method::POST, &path, &form).await;
        assert_eq!(rsp.status(), status, "{form}");
    }
    assert_eq!(fake.issue(PROJECT_ID, tracking).links.len(), 2);
}

#[tokio::test]
async fn issue_label_events_record_every_change() {
    let api = world().await;
    let fake = &api.fake;
    // A group label (color and description come from it) and an ad-hoc label.
    let rsp = api
        .send_form(
            reqwest::Method::POST,
            "groups/77/labels",
            "name=intake&color=%23FF0000&description=New+requests",
        )
        .await;
    assert_eq!(rsp.status(), 201);
    let intake_label_id = rsp.json::<Value>().await.unwrap()["id"].as_u64().unwrap();

    let created: Value = api
        .send_form(
            reqwest::Method::POST,
            &format!("projects/{PROJECT_ID}/issues"),
            "title=Request&labels=intake",
        )
        .await
        .json()
        .await
        .unwrap();
    let iid = created["iid"].as_u64().unwrap();
    let path = format!("projects/{PROJECT_ID}/issues/{iid}");
    let rsp = api
        .send_form(
            reqwest::Method::PUT,
            &path,
            "add_labels=triaged,intake&remove_labels=intake",
        )
        .await;
    assert_eq!(rsp.status(), 200);
    // No change, no events.
    api.send_form(reqwest::Method::PUT, &path, "add_labels=triaged")
        .await;
    // A human relabels in the UI.
    fake.change_issue_labels(PROJECT_ID, iid, REVIEWER_ONE, &["intake"], &["triaged"]);

    let history: Vec<(String, String, u64)> = fake
        .issue_label_events(PROJECT_ID, iid)
        .into_iter()
        .map(|e| (e.action, e.label, e.user_id))
        .collect();
    let expect = |a: &str, l: &str, u: u64| (a.to_owned(), l.to_owned(), u);
    assert_eq!(
        history,
        [
            expect("add", "intake", BOT_USER_ID),
            expect("add", "triaged", BOT_USER_ID),
            expect("remove", "intake", BOT_USER_ID),
            expect("add", "intake", REVIEWER_ONE),
            expect("remove", "triaged", REVIEWER_ONE),
        ]
    );

    let events_path = format!("{path}/resource_label_events");
    let events = api.get_json(&events_path).await;
    assert_same_shape(
        &events,
        &fixture("api/resource_label_events_issue.json"),
        "resource_label_events",
    );
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["resource_type"], "Issue");
    assert_eq!(events[0]["resource_id"], created["id"]);
    assert_eq!(events[0]["action"], "add");
    assert_eq!(events[0]["user"]["username"], BOT_USERNAME);
    assert_eq!(events[0]["label"]["id"], intake_label_id);
    assert_eq!(events[0]["label"]["color"], "#FF0000");
    assert_eq!(events[0]["label"]["description"], "New requests");
    assert_eq!(events[1]["label"]["name"], "triaged");
    assert_eq!(events[1]["label"]["color"], "#6699cc");
    // Ad-hoc labels keep one id.
    assert_eq!(events[4]["label"]["id"], events[1]["label"]["id"]);
    assert_eq!(events[2]["action"], "remove");
    assert_eq!(events[3]["user"]["id"], REVIEWER_ONE);
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let rsp = api.get(&format!("{events_path}?per_page=2&page=3")).await;
    assert_eq!(header(&rsp, "x-total"), "5");
    let last: Value = rsp.json().await.unwrap();
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert_eq!(last[0]["label"]["name"], "triaged");
    assert_eq!(
        api.get(&format!(
            "projects/{PROJECT_ID}/issues/99/resource_label_events"
        ))
        .await
        .status(),
        404
    );
}

#[tokio::test]
async fn the_gitlab_crate_can_create_edit_and_link_issues() {
    use gitlab::api::projects::issues::links::CreateIssueLink;
    use gitlab::api::projects::issues::{CreateIssue, EditIssue, IssueStateEvent};
    use gitlab::api::{self, AsyncQuery};

    let api = world().await;
    let fake = &api.fake;
    let client = gitlab::GitlabBuilder::new(fake.host(), DEFAULT_TOKEN)
        .insecure()
        .build_async()
        .await
        .expect("client");

    let create = CreateIssue::builder()
        .project(PROJECT_PATH)
        .title("Engagement: ACME")
        .description("From the template")
        .confidential(true)
        .labels(["intake", "co-create"].into_iter())
        .assignee_ids([REVIEWER_ONE, REVIEWER_TWO].into_iter())
        .build()
        .unwrap();
    let created: Value = create.query_async(&client).await.expect("create");
    let iid = created["iid"].as_u64().unwrap();
    let state = fake.issue(PROJECT_ID, iid);
    assert_eq!(state.labels, ["co-create", "intake"]);
    assert_eq!(state.assignee_ids, [REVIEWER_ONE, REVIEWER_TWO]);
    assert!(state.confidential);

    let edit = EditIssue::builder()
        .project(PROJECT_ID)
        .issue(iid)
        .add_label("triaged")
        .remove_label("intake")
        .description("From the template\n\nTriaged.")
        .unassign()
        .state_event(IssueStateEvent::Close)
        .build()
        .unwrap();
    let edited: Value = edit.query_async(&client).await.expect("edit");
    assert_eq!(edited["labels"], json!(["co-create", "triaged"]));
    let state = fake.issue(PROJECT_ID, iid);
    assert_eq!(state.state, "closed");
    assert!(state.assignee_ids.is_empty());
    assert_eq!(state.description, "From the template\n\nTriaged.");

    let other = fake.add_issue(issue_spec("Related"));
    let link = CreateIssueLink::builder()
        .project(PROJECT_ID)
        .issue(iid)
        .target_project(PROJECT_PATH)
        .target_issue(other)
        .build()
        .unwrap();
    let linked: Value = link.query_async(&client).await.expect("link");
    assert_eq!(linked["target_issue"]["iid"], other);
    api::ignore(
        CreateIssueLink::builder()
            .project(PROJECT_ID)
            .issue(iid)
            .target_project(PROJECT_ID)
            .target_issue(other)
            .build()
            .unwrap(),
    )
    .query_async(&client)
    .await
    .expect_err("409 on a repeated link");
    assert_eq!(fake.issue(PROJECT_ID, other).links, [(PROJECT_ID, iid)]);
}

#[tokio::test]
async fn issue_state_events_record_closing_and_reopening() {
    let api = world().await;
    let fake = &api.fake;
    let create = |title: &'static str| {
        let api = &api;
        async move {
            api.send_form(
                reqwest::Method::POST,
                &format!("projects/{PROJECT_ID}/issues"),
                &format!("title={title}"),
            )
            .await
            .json::<Value>()
            .await
            .unwrap()
        }
    };
    let created = create("Engagement").await;
    let never_closed = create("Other").await;
    let path = format!("projects/{PROJECT_ID}/issues/{}", created["iid"]);
    for (at, event) in [
        ("2025-04-15T09:00:00Z", "close"),
        ("2025-09-01T09:00:00Z", "reopen"),
        ("2025-10-01T09:00:00Z", "close"),
    ] {
        fake.set_time(at);
        let rsp = api
            .send_form(reqwest::Method::PUT, &path, &format!("state_event={event}"))
            .await;
        assert_eq!(rsp.status(), 200);
    }
    // Closing a closed issue changes nothing and records nothing.
    api.send_form(reqwest::Method::PUT, &path, "state_event=close")
        .await;
    let events = api.get_json(&format!("{path}/resource_state_events")).await;
    let events = events.as_array().unwrap();
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["state"].as_str().unwrap(),
                e["created_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("closed", "2025-04-15T09:00:00.000Z"),
            ("reopened", "2025-09-01T09:00:00.000Z"),
            ("closed", "2025-10-01T09:00:00.000Z"),
        ]
    );
    // GitLab's documented fields.
    for key in [
        "id",
        "user",
        "created_at",
        "resource_type",
        "resource_id",
        "state",
    ] {
        assert!(events[0].get(key).is_some(), "{key} in {}", events[0]);
    }
    assert_eq!(events[0]["resource_type"], "Issue");
    assert_eq!(events[0]["resource_id"], created["id"]);
    assert_eq!(events[0]["user"]["username"], BOT_USERNAME);
    // `closed_at` only keeps the last closing.
    let issue = api.get_json(&path).await;
    assert_eq!(issue["closed_at"], "2025-10-01T09:00:00.000Z");
    // The initial "opened" is not an event.
    let other = format!(
        "projects/{PROJECT_ID}/issues/{}/resource_state_events",
        never_closed["iid"]
    );
    assert_eq!(api.get_json(&other).await, json!([]));
    let rsp = api
        .get(&format!("{path}/resource_state_events?per_page=2&page=2"))
        .await;
    assert_eq!(header(&rsp, "x-total"), "3");
    assert_eq!(
        api.get(&format!(
            "projects/{PROJECT_ID}/issues/99/resource_state_events"
        ))
        .await
        .status(),
        404
    );
}

/// A person's description edit in the UI (`edit_issue_description`) is what the API then
/// answers, and it keeps labels and assignees.
#[tokio::test]
async fn a_description_edited_in_the_ui_is_read_back_with_labels_and_assignees_kept() {
    let api = world().await;
    let created: Value = api
        .send_form(
            reqwest::Method::POST,
            &format!("projects/{PROJECT_ID}/issues"),
            &format!(
                "title=Checklist&labels=intake&description=-+%5B+%5D+a&assignee_ids={REVIEWER_ONE}"
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    let iid = created["iid"].as_u64().unwrap();
    let before = created["updated_at"].as_str().unwrap().to_owned();
    api.fake.edit_issue_description(PROJECT_ID, iid, "- [x] a");
    let now = api
        .get_json(&format!("projects/{PROJECT_ID}/issues/{iid}"))
        .await;
    assert_eq!(now["description"], "- [x] a");
    assert_eq!(now["labels"], json!(["intake"]));
    assert_eq!(now["assignees"][0]["id"], REVIEWER_ONE);
    assert!(now["updated_at"].as_str().unwrap() > before.as_str());
}

/// `merge_mr`: the API then lists the MR as merged (also with `state=merged`), notes kept.
#[tokio::test]
async fn an_mr_merged_in_the_ui_is_listed_as_merged() {
    let api = world().await;
    api.fake.merge_mr(PROJECT_ID, 1);
    let mr = api
        .get_json(&format!("projects/{PROJECT_ID}/merge_requests/1"))
        .await;
    assert_eq!(mr["state"], "merged");
    let merged = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/merge_requests?state=merged"
        ))
        .await;
    assert_eq!(merged.as_array().map(|a| a.len()), Some(1));
    let opened = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/merge_requests?state=opened"
        ))
        .await;
    assert_eq!(opened.as_array().map(|a| a.len()), Some(0));
}

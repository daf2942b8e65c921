//! Self-test of the fake GitLab in `tests/support/fake_gitlab.rs`, driven with plain reqwest
//! (plus one round trip through the `gitlab` crate the application uses).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fake_gitlab::{
    fixture, FakeGitLab, Fault, MrSpec, UserSpec, BOT_USERNAME, BOT_USER_ID, DEFAULT_TOKEN,
};

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

//! Self-test of the fake's projects, repositories (tree, files, commits), webhooks with push
//! branch filters, the webhook deliveries and issues opened from a template.

use serde_json::{json, Value};

use super::support::fake_gitlab::{BOT_USER_ID, DEFAULT_TOKEN};
use super::{header, world, Api, PROJECT_ID, PROJECT_PATH};

const ENCODED_PATH: &str = "program%2Fcohort%2Fhandbook";

async fn post_json(api: &Api, path: &str, body: Value) -> reqwest::Response {
    api.request(reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("POST")
}

async fn commit(api: &Api, body: Value) -> (u16, Value) {
    let rsp = post_json(
        api,
        &format!("projects/{ENCODED_PATH}/repository/commits"),
        body,
    )
    .await;
    let status = rsp.status().as_u16();
    (status, rsp.json().await.expect("json"))
}

#[tokio::test]
async fn a_project_shows_its_default_branch_and_whether_its_repository_is_empty() {
    let api = world().await;
    let p = api.get_json(&format!("projects/{ENCODED_PATH}")).await;
    assert_eq!(p["id"], json!(PROJECT_ID));
    assert_eq!(p["path_with_namespace"], json!(PROJECT_PATH));
    assert_eq!(p["default_branch"], json!("main"));
    assert_eq!(p["empty_repo"], json!(true));
    api.fake
        .commit_files(PROJECT_ID, "main", &[("README.md", "hi\n")]);
    api.fake.set_default_branch(PROJECT_ID, "trunk");
    let p = api.get_json(&format!("projects/{PROJECT_ID}")).await;
    assert_eq!(p["empty_repo"], json!(false));
    assert_eq!(p["default_branch"], json!("trunk"));
    assert_eq!(api.get("projects/program%2Fnone").await.status(), 404);
}

#[tokio::test]
async fn a_project_is_private_until_its_visibility_is_set() {
    let api = world().await;
    let p = api.get_json(&format!("projects/{PROJECT_ID}")).await;
    assert_eq!(p["visibility"], json!("private"));
    api.fake.set_project_visibility(PROJECT_ID, "public");
    let p = api.get_json(&format!("projects/{ENCODED_PATH}")).await;
    assert_eq!(p["visibility"], json!("public"));
}

#[tokio::test]
async fn commits_create_update_and_delete_files_in_one_commit_or_not_at_all() {
    let api = world().await;
    // The first commit of an empty repository creates its branch.
    let (status, first) = commit(
        &api,
        json!({"branch": "main", "commit_message": "Add templates\n\nTwo files.", "actions": [
            {"action": "create", "file_path": ".gitlab/issue_templates/A b.md", "content": "a\n"},
            {"action": "create", "file_path": "docs/x.txt", "content": "eA==", "encoding": "base64"},
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let sha = first["id"].as_str().expect("id").to_owned();
    assert_eq!(sha.len(), 40);
    assert_eq!(first["title"], json!("Add templates"));
    assert_eq!(first["parent_ids"], json!([]));
    assert_eq!(
        api.fake.branch_head(PROJECT_ID, "main").as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(
        api.fake
            .file_at(PROJECT_ID, "main", "docs/x.txt")
            .as_deref(),
        Some("x")
    );

    // GitLab's refusals, and nothing of a refused commit is written.
    let cases = [
        (
            json!({"action": "create", "file_path": "docs/x.txt", "content": "again"}),
            "A file with this name already exists",
        ),
        (
            json!({"action": "update", "file_path": "missing.md", "content": "x"}),
            "A file with this name doesn't exist",
        ),
        (
            json!({"action": "delete", "file_path": "missing.md"}),
            "A file with this name doesn't exist",
        ),
        (
            json!({"action": "update", "file_path": "docs/x.txt", "content": "y",
                   "last_commit_id": "0123456789012345678901234567890123456789"}),
            "The file has changed since you started editing it: docs/x.txt",
        ),
    ];
    for (action, message) in cases {
        let (status, body) = commit(
            &api,
            json!({"branch": "main", "commit_message": "m", "actions": [
                {"action": "create", "file_path": "new.md", "content": "n"}, action]}),
        )
        .await;
        assert_eq!((status, body["message"].as_str()), (400, Some(message)));
        assert_eq!(api.fake.file_at(PROJECT_ID, "main", "new.md"), None);
        assert_eq!(api.fake.commit_count(PROJECT_ID), 1);
    }
    for (body, missing) in [
        (
            json!({"commit_message": "m", "actions": []}),
            "branch is missing",
        ),
        (
            json!({"branch": "main", "actions": []}),
            "commit_message is missing",
        ),
        (
            json!({"branch": "main", "commit_message": "m"}),
            "actions is missing",
        ),
    ] {
        let (status, v) = commit(&api, body).await;
        assert_eq!((status, v["error"].as_str()), (400, Some(missing)));
    }
    // A new branch needs a start on a non-empty repository.
    let (status, v) = commit(
        &api,
        json!({"branch": "feature", "commit_message": "m", "actions": [
            {"action": "create", "file_path": "f.md", "content": "f"}]}),
    )
    .await;
    assert_eq!(status, 400, "{v}");

    // Update (with the right last commit) and delete.
    let (status, second) = commit(
        &api,
        json!({"branch": "main", "commit_message": "Edit", "actions": [
            {"action": "update", "file_path": "docs/x.txt", "content": "y", "last_commit_id": sha},
            {"action": "delete", "file_path": ".gitlab/issue_templates/A b.md"},
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["parent_ids"], json!([sha]));
    assert_eq!(
        api.fake
            .file_at(PROJECT_ID, "main", "docs/x.txt")
            .as_deref(),
        Some("y")
    );
    assert_eq!(
        api.fake
            .file_at(PROJECT_ID, "main", ".gitlab/issue_templates/A b.md"),
        None
    );
    // The old commit still has the old tree.
    assert_eq!(
        api.fake.file_at(PROJECT_ID, &sha, "docs/x.txt").as_deref(),
        Some("x")
    );
}

#[tokio::test]
async fn the_gitlab_crate_commits_form_encoded_actions() {
    use gitlab::api::projects::repository::commits::{
        CommitAction, CommitActionType, CreateCommit,
    };
    use gitlab::api::{self, AsyncQuery};

    let api = world().await;
    api.fake
        .commit_files(PROJECT_ID, "main", &[("keep.md", "old\n")]);
    let client = gitlab::GitlabBuilder::new(api.fake.host(), DEFAULT_TOKEN)
        .insecure()
        .build_async()
        .await
        .expect("client");
    let actions = vec![
        CommitAction::builder()
            .action(CommitActionType::Create)
            .file_path(".gitlab/issue_templates/Co-Create engagement request.md")
            .content(&b"/label ~\"Co-Create intake\"\n"[..])
            .build()
            .unwrap(),
        CommitAction::builder()
            .action(CommitActionType::Update)
            .file_path("keep.md")
            .content(&b"new\n"[..])
            .build()
            .unwrap(),
    ];
    let endpoint = CreateCommit::builder()
        .project(PROJECT_PATH)
        .branch("main")
        .commit_message("Templates")
        .actions(actions)
        .build()
        .unwrap();
    let created: Value = endpoint.query_async(&client).await.expect("commit");
    assert_eq!(created["title"], json!("Templates"));
    assert_eq!(
        api.fake
            .file_at(
                PROJECT_ID,
                "main",
                ".gitlab/issue_templates/Co-Create engagement request.md"
            )
            .as_deref(),
        Some("/label ~\"Co-Create intake\"\n")
    );
    assert_eq!(
        api.fake.file_at(PROJECT_ID, "main", "keep.md").as_deref(),
        Some("new\n")
    );
    let body = &api.fake.writes()[0].body;
    assert!(body.contains("actions%5B%5D%5Baction%5D=create"), "{body}");

    // The same commit again: the create meets the file.
    let endpoint = CreateCommit::builder()
        .project(PROJECT_ID)
        .branch("main")
        .commit_message("Again")
        .action(
            CommitAction::builder()
                .action(CommitActionType::Create)
                .file_path("keep.md")
                .content(&b"x"[..])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = api::ignore(endpoint)
        .query_async(&client)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn files_come_base64_with_their_blob_and_last_commit_and_raw() {
    let api = world().await;
    let path = ".gitlab/issue_templates/Co-Create engagement request.md";
    let first = api
        .fake
        .commit_files(PROJECT_ID, "main", &[(path, "v1\n"), ("other.md", "v1\n")]);
    let second = api
        .fake
        .commit_files(PROJECT_ID, "main", &[("other.md", "v2\n")]);
    let encoded = ".gitlab%2Fissue_templates%2FCo-Create%20engagement%20request.md";

    let f = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/repository/files/{encoded}?ref=main"
        ))
        .await;
    assert_eq!(f["file_path"], json!(path));
    assert_eq!(f["file_name"], json!("Co-Create engagement request.md"));
    assert_eq!(f["encoding"], json!("base64"));
    assert_eq!(f["content"], json!("djEK"));
    assert_eq!(f["size"], json!(3));
    assert_eq!(f["ref"], json!("main"));
    assert_eq!(f["commit_id"], json!(second));
    assert_eq!(
        f["last_commit_id"],
        json!(first),
        "the file did not change in the second commit"
    );
    let other = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/repository/files/other.md?ref={first}"
        ))
        .await;
    assert_eq!(other["blob_id"], f["blob_id"], "same content, same blob");
    let other_now = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/repository/files/other.md?ref=main"
        ))
        .await;
    assert_ne!(other_now["blob_id"], f["blob_id"]);
    assert_eq!(other_now["last_commit_id"], json!(second));

    let rsp = api
        .get(&format!(
            "projects/{ENCODED_PATH}/repository/files/{encoded}/raw?ref={}",
            &first[..8]
        ))
        .await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(header(&rsp, "x-gitlab-last-commit-id"), first);
    assert!(header(&rsp, "content-type").starts_with("text/plain"));
    assert_eq!(rsp.text().await.expect("text"), "v1\n");
    // `ref` defaults to the default branch for raw files, and is required otherwise.
    let raw = api
        .get(&format!(
            "projects/{PROJECT_ID}/repository/files/other.md/raw"
        ))
        .await;
    assert_eq!(raw.text().await.expect("text"), "v2\n");
    let no_ref = api
        .get(&format!("projects/{PROJECT_ID}/repository/files/other.md"))
        .await;
    assert_eq!(no_ref.status(), 400);
    for (missing, message) in [
        ("files/nope.md?ref=main", "404 File Not Found"),
        ("files/nope.md/raw", "404 File Not Found"),
        ("files/other.md?ref=no-branch", "404 Commit Not Found"),
        ("files/other.md/raw?ref=no-branch", "404 Commit Not Found"),
    ] {
        let rsp = api
            .get(&format!("projects/{PROJECT_ID}/repository/{missing}"))
            .await;
        assert_eq!(rsp.status(), 404, "{missing}");
        let v: Value = rsp.json().await.expect("json");
        assert_eq!(v["message"], json!(message), "{missing}");
    }
}

#[tokio::test]
async fn a_commit_is_found_by_branch_by_sha_and_by_short_sha() {
    let api = world().await;
    assert_eq!(
        api.get(&format!("projects/{PROJECT_ID}/repository/commits/main"))
            .await
            .status(),
        404,
        "an empty repository has no main yet"
    );
    let sha = api
        .fake
        .commit_files(PROJECT_ID, "release/2026", &[("a.md", "a")]);
    for reference in ["release%2F2026", sha.as_str(), &sha[..8]] {
        let c = api
            .get_json(&format!(
                "projects/{ENCODED_PATH}/repository/commits/{reference}"
            ))
            .await;
        assert_eq!(c["id"], json!(sha), "{reference}");
        assert_eq!(c["short_id"], json!(&sha[..8]));
        assert_eq!(c["message"], json!("Test commit"));
    }
    assert_eq!(
        api.get(&format!(
            "projects/{PROJECT_ID}/repository/commits/{}",
            "f".repeat(40)
        ))
        .await
        .status(),
        404
    );
}

#[tokio::test]
async fn the_tree_lists_a_path_recursively_or_not_and_pages() {
    let api = world().await;
    let sha = api.fake.commit_files(
        PROJECT_ID,
        "main",
        &[
            ("agreements.yml", "a"),
            ("routing.yml", "r"),
            ("templates/welcome.md", "w"),
            ("templates/issue_templates/A.md", "t"),
        ],
    );
    api.fake
        .commit_files(PROJECT_ID, "main", &[("later.md", "l")]);
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["type"].as_str().unwrap(),
                    e["path"].as_str().unwrap()
                )
            })
            .collect()
    };
    let top = api
        .get_json(&format!("projects/{PROJECT_ID}/repository/tree?ref={sha}"))
        .await;
    assert_eq!(
        names(&top),
        ["tree:templates", "blob:agreements.yml", "blob:routing.yml"],
        "directories first; the later commit is not at {sha}"
    );
    let sub = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/repository/tree?path=templates&recursive=true"
        ))
        .await;
    assert_eq!(
        names(&sub),
        [
            "tree:templates/issue_templates",
            "blob:templates/issue_templates/A.md",
            "blob:templates/welcome.md"
        ]
    );
    let blob = &sub[1];
    assert_eq!(blob["name"], json!("A.md"));
    assert_eq!(blob["mode"], json!("100644"));
    assert_eq!(blob["id"].as_str().map(str::len), Some(40));

    let rsp = api
        .get(&format!(
            "projects/{PROJECT_ID}/repository/tree?recursive=true&per_page=2&page=2"
        ))
        .await;
    assert_eq!(header(&rsp, "x-total"), "7");
    assert_eq!(header(&rsp, "x-next-page"), "3");
    let page: Value = rsp.json().await.expect("json");
    assert_eq!(page.as_array().map(Vec::len), Some(2));

    for missing in ["tree?ref=nope", "tree?path=nowhere"] {
        let rsp = api
            .get(&format!("projects/{PROJECT_ID}/repository/{missing}"))
            .await;
        assert_eq!(rsp.status(), 404, "{missing}");
    }
}

#[tokio::test]
async fn hooks_keep_push_events_and_their_branch_filter() {
    let api = world().await;
    let rsp = api
        .send_form(
            reqwest::Method::POST,
            &format!("projects/{PROJECT_ID}/hooks"),
            "url=https%3A%2F%2Fbot.example.com%2Fwebhook&push_events=true&push_events_branch_filter=main&issues_events=true",
        )
        .await;
    assert_eq!(rsp.status(), 201);
    let h: Value = rsp.json().await.expect("json");
    assert_eq!(h["push_events"], json!(true));
    assert_eq!(h["push_events_branch_filter"], json!("main"));
    assert_eq!(h["note_events"], json!(false));
    let id = h["id"].as_u64().expect("id");
    let rsp = api
        .send_form(
            reqwest::Method::PUT,
            &format!("projects/{PROJECT_ID}/hooks/{id}"),
            "push_events_branch_filter=release%2F*&note_events=true",
        )
        .await;
    assert_eq!(rsp.status(), 200);
    let listed = api.get_json(&format!("projects/{PROJECT_ID}/hooks")).await;
    assert_eq!(listed[0]["push_events_branch_filter"], json!("release/*"));
    assert_eq!(listed[0]["note_events"], json!(true));
    assert_eq!(listed[0]["push_events"], json!(true), "kept");
    let state = api.fake.hooks_of(&format!("projects/{PROJECT_ID}"));
    assert_eq!(
        state[0].push_events_branch_filter.as_deref(),
        Some("release/*")
    );
}

/// A fake and a receiver that answers 200 to every webhook.
async fn with_receiver() -> (Api, wiremock::MockServer) {
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    (world().await, receiver)
}

async fn add_hook(api: &Api, owner: &str, form: String) {
    let rsp = api
        .send_form(reqwest::Method::POST, &format!("{owner}/hooks"), &form)
        .await;
    assert_eq!(rsp.status(), 201);
}

#[tokio::test]
async fn pushes_are_delivered_to_hooks_whose_branch_filter_matches() {
    let (api, receiver) = with_receiver().await;
    let url = url::form_urlencoded::byte_serialize(format!("{}/hook", receiver.uri()).as_bytes())
        .collect::<String>();
    add_hook(
        &api,
        &format!("projects/{PROJECT_ID}"),
        format!("url={url}&push_events=true&push_events_branch_filter=main&token=s3"),
    )
    .await;
    // A group hook without push events hears nothing of pushes.
    add_hook(
        &api,
        "groups/77",
        format!("url={url}&push_events=false&issues_events=true"),
    )
    .await;

    let sha = api.fake.commit_files(PROJECT_ID, "main", &[("a.yml", "a")]);
    api.fake
        .commit_files(PROJECT_ID, "develop", &[("a.yml", "b")]);
    let queued = api.fake.take_deliveries();
    assert_eq!(queued.len(), 1, "{queued:#?}");
    let push = &queued[0];
    assert_eq!(push.event, "Push Hook");
    assert_eq!(push.token.as_deref(), Some("s3"));
    assert_eq!(push.body["object_kind"], json!("push"));
    assert_eq!(push.body["ref"], json!("refs/heads/main"));
    assert_eq!(push.body["after"], json!(sha));
    assert_eq!(push.body["checkout_sha"], json!(sha));
    assert_eq!(push.body["before"], json!("0".repeat(40)));
    assert_eq!(
        push.body["project"]["path_with_namespace"],
        json!(PROJECT_PATH)
    );

    // Sent as GitLab sends them.
    api.fake.commit_files(PROJECT_ID, "main", &[("a.yml", "c")]);
    let sent = api.fake.send_deliveries().await;
    assert_eq!(sent, [("Push Hook".to_string(), 200)]);
    let got = receiver.received_requests().await.expect("recorded");
    assert_eq!(got.len(), 1);
    let h = &got[0].headers;
    assert_eq!(h.get("x-gitlab-event").unwrap(), "Push Hook");
    assert_eq!(h.get("x-gitlab-token").unwrap(), "s3");
    assert!(h.get("x-gitlab-event-uuid").is_some());
    let body: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(body["before"], json!(sha));
}

#[tokio::test]
async fn project_labels_include_the_ancestor_groups_unless_asked_not_to() {
    let api = world().await;
    for (owner, name) in [
        ("groups/77", "from-program"),
        ("groups/78", "from-cohort"),
        (&format!("projects/{PROJECT_ID}")[..], "own"),
    ] {
        let rsp = api
            .send_form(
                reqwest::Method::POST,
                &format!("{owner}/labels"),
                &format!("name={name}&color=%23112233"),
            )
            .await;
        assert_eq!(rsp.status(), 201);
    }
    let all = api.get_json(&format!("projects/{PROJECT_ID}/labels")).await;
    let seen: Vec<(String, bool)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_owned(),
                l["is_project_label"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("own".into(), true),
            ("from-cohort".into(), false),
            ("from-program".into(), false)
        ]
    );
    let own = api
        .get_json(&format!(
            "projects/{PROJECT_ID}/labels?include_ancestor_groups=false"
        ))
        .await;
    assert_eq!(own.as_array().map(Vec::len), Some(1));
    let cohort = api.get_json("groups/78/labels").await;
    assert_eq!(cohort.as_array().map(Vec::len), Some(2), "{cohort}");
}

#[tokio::test]
async fn an_issue_from_a_template_runs_its_quick_actions_and_is_delivered() {
    let (api, receiver) = with_receiver().await;
    let fake = &api.fake;
    let url = url::form_urlencoded::byte_serialize(format!("{}/hook", receiver.uri()).as_bytes())
        .collect::<String>();
    // Only the confidential-issue hook hears a confidential issue.
    add_hook(
        &api,
        &format!("projects/{PROJECT_ID}"),
        format!("url={url}&issues_events=true&confidential_issues_events=false"),
    )
    .await;
    add_hook(
        &api,
        "groups/77",
        format!("url={url}%3Fgroup&confidential_issues_events=true&token=t"),
    )
    .await;

    assert!(fake
        .issue_from_template(PROJECT_ID, BOT_USER_ID, "t", "Request", |t| t.to_owned())
        .unwrap_err()
        .contains("not on branch main"));
    fake.commit_files(
        PROJECT_ID,
        "main",
        &[(
            ".gitlab/issue_templates/Request.md",
            "## Request\n\n- Organization:\n\n/label ~\"Known label\" ~missing\n/confidential\n",
        )],
    );
    let rsp = api
        .send_form(
            reqwest::Method::POST,
            "groups/78/labels",
            "name=Known%20label&color=%23112233",
        )
        .await;
    assert_eq!(rsp.status(), 201);
    fake.take_deliveries();

    let iid = fake
        .issue_from_template(
            PROJECT_ID,
            super::CONTRIBUTOR,
            "Request: Example",
            "Request",
            |t| t.replace("- Organization:", "- Organization: example-aero"),
        )
        .expect("template");
    let issue = fake.issue(PROJECT_ID, iid);
    assert_eq!(
        issue.labels,
        ["Known label"],
        "a quick action with an unknown label does nothing"
    );
    assert!(issue.confidential);
    assert_eq!(
        issue.description,
        "## Request\n\n- Organization: example-aero"
    );
    assert_eq!(issue.title, "Request: Example");

    let queued = fake.take_deliveries();
    assert_eq!(queued.len(), 1, "{queued:#?}");
    let d = &queued[0];
    assert!(d.url.ends_with("?group"), "{}", d.url);
    assert_eq!(d.event, "Confidential Issue Hook");
    let a = &d.body["object_attributes"];
    assert_eq!(a["iid"], json!(iid));
    assert_eq!(a["action"], json!("open"));
    assert_eq!(a["confidential"], json!(true));
    assert_eq!(a["author_id"], json!(super::CONTRIBUTOR));
    assert_eq!(d.body["labels"][0]["title"], json!("Known label"));
    assert_eq!(d.body["labels"][0]["type"], json!("GroupLabel"));
    assert_eq!(d.body["user"]["username"], json!("contributor"));

    // An ordinary issue is heard by the issues-events hook only.
    fake.commit_files(
        PROJECT_ID,
        "main",
        &[(".gitlab/issue_templates/Plain.md", "plain\n")],
    );
    fake.take_deliveries();
    fake.issue_from_template(PROJECT_ID, super::CONTRIBUTOR, "Plain", "Plain", |t| {
        t.to_owned()
    })
    .expect("template");
    let queued = fake.take_deliveries();
    assert_eq!(
        queued.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(),
        ["Issue Hook"]
    );
    assert!(!queued[0].url.ends_with("?group"));
}

#[tokio::test]
async fn an_opened_mr_is_delivered_to_the_merge_request_hooks() {
    let (api, receiver) = with_receiver().await;
    let url = url::form_urlencoded::byte_serialize(format!("{}/hook", receiver.uri()).as_bytes())
        .collect::<String>();
    add_hook(
        &api,
        "groups/78",
        format!("url={url}&merge_requests_events=true"),
    )
    .await;
    add_hook(
        &api,
        "groups/77",
        format!("url={url}&merge_requests_events=false"),
    )
    .await;
    api.fake.open_mr(super::mr_spec(7));
    let queued = api.fake.take_deliveries();
    assert_eq!(queued.len(), 1, "{queued:#?}");
    let d = &queued[0];
    assert_eq!(d.event, "Merge Request Hook");
    let a = &d.body["object_attributes"];
    assert_eq!(a["iid"], json!(7));
    assert_eq!(a["action"], json!("open"));
    assert_eq!(a["target_project_id"], json!(PROJECT_ID));
    assert_eq!(
        a["last_commit"]["id"],
        json!("0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(d.body["labels"][0]["title"], json!("co-create"));
    assert_eq!(
        d.body["project"]["path_with_namespace"],
        json!(PROJECT_PATH)
    );
}

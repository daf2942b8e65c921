//! The GitLab pipeline that runs the program: parse `.gitlab-ci.yml` and check its jobs and rules.

use serde_json::Value;

fn pipeline() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.gitlab-ci.yml");
    let text = std::fs::read_to_string(path).expect(".gitlab-ci.yml");
    serde_saphyr::from_str(&text).expect(".gitlab-ci.yml is valid YAML")
}

fn rules(job: &Value) -> Vec<String> {
    job["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let mut s = r["if"].as_str().unwrap_or("").to_owned();
            if let Some(c) = r.get("changes") {
                s.push_str(&format!(" changes={c}"));
            }
            if let Some(w) = r.get("when") {
                s.push_str(&format!(" when={w}"));
            }
            s
        })
        .collect()
}

#[test]
fn stages_and_test_job() {
    let p = pipeline();
    assert_eq!(
        p["stages"],
        serde_json::json!(["test", "build", "scheduled"])
    );
    let test = &p["test"];
    assert_eq!(
        test["script"][0], ".ci/run",
        "CI runs the README's test command"
    );
    assert_eq!(
        rules(test)[0],
        "$CI_PIPELINE_SOURCE == \"schedule\" when=\"never\""
    );
}

#[test]
fn scheduled_jobs_use_the_release_binary_and_the_masked_token() {
    let p = pipeline();
    for (job, command) in [
        ("cca-check", "cca-check"),
        ("reconcile", "reconcile"),
        ("nudge", "nudge"),
    ] {
        let j = &p[job];
        assert_eq!(j["stage"], "scheduled", "{job}");
        assert_eq!(j["needs"], serde_json::json!(["release-build"]), "{job}");
        assert_eq!(
            j["variables"]["GITLAB_TOKEN"], "$COCREATE_BOT_TOKEN",
            "{job}"
        );
        let script = j["script"][0].as_str().expect("script");
        assert!(
            script.starts_with(&format!("./target/release/cocreate {command}")),
            "{job}: {script}"
        );
        assert!(
            rules(j).contains(&format!(
                "$CI_PIPELINE_SOURCE == \"schedule\" && $COCREATE_JOB == \"{job}\""
            )),
            "{job}: {:?}",
            rules(j)
        );
    }
    assert!(rules(&p["release-build"]).contains(&"$CI_PIPELINE_SOURCE == \"schedule\"".to_string()));
}

#[test]
fn cca_check_runs_when_agreements_change_and_reports_junit() {
    let p = pipeline();
    let j = &p["cca-check"];
    assert!(rules(j).contains(
        &"$CI_PIPELINE_SOURCE == \"push\" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH changes=[\"policies/agreements.yml\"]".to_string()
    ), "{:?}", rules(j));
    assert_eq!(j["artifacts"]["reports"]["junit"], "cca-check.xml");
    let script = j["script"][0].as_str().expect("script");
    assert!(script.contains("--junit cca-check.xml") && script.contains("--summary cca-check.md"));
    assert_eq!(j["artifacts"]["when"], "always");
}

#[test]
fn the_weekly_report_publishes_and_keeps_markdown_and_json() {
    let p = pipeline();
    let j = &p["report"];
    let script = j["script"][0].as_str().expect("script");
    assert!(
        script.contains("--publish")
            && script.contains("--out report.md")
            && script.contains("--json-out report.json"),
        "{script}"
    );
    assert_eq!(
        j["artifacts"]["paths"],
        serde_json::json!(["report.md", "report.json"])
    );
}

#[test]
fn policies_are_checked_on_every_mr_that_edits_them() {
    let p = pipeline();
    let j = &p["policies-check"];
    assert!(j["script"][0]
        .as_str()
        .expect("script")
        .ends_with("policies check"));
    assert_eq!(
        rules(j),
        vec![
            "$CI_PIPELINE_SOURCE == \"merge_request_event\" changes=[\"policies/**/*\"]"
                .to_string()
        ]
    );
}

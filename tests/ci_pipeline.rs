//! The GitLab pipeline that tests, ships and runs the program, checked with gitlab-ci-local (a
//! third-party implementation of GitLab's CI schema and `rules:`; see
//! tests/support/gitlab_ci_local.rs): which jobs each pipeline source creates, what the jobs
//! resolve to once `default:` and `extends:` are merged, and the `cca-check` job itself run by
//! its shell executor against the fake GitLab.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::fake_gitlab::{FakeGitLab, MrSpec, UserSpec};
use support::gitlab_ci_local::{self as gcl, Sandbox, DEFAULT_BRANCH};
use support::harness::{seed, TELCO_DEV};

/// What the pipeline's rules read: `.gitlab-ci.yml` and the policies whose changes trigger jobs.
const PIPELINE: &[&str] = &[".gitlab-ci.yml", "policies"];
/// The scheduled jobs: (job = `COCREATE_JOB` of its schedule, the `cocreate` subcommand it runs).
const SCHEDULED: [(&str, &str); 6] = [
    ("cca-check", "cca-check"),
    ("reconcile", "reconcile"),
    ("recover", "recover"),
    ("nudge", "nudge"),
    ("report", "report"),
    ("pages", "site"),
];

/// How GitLab starts a pipeline, with the predefined variables it sets (and leaves unset) for it.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// A merge request pipeline from `branch` into the default branch.
    MergeRequest { branch: &'a str },
    /// A push of the checked-out branch.
    Push,
    /// A pipeline schedule on the default branch with `COCREATE_JOB` set (or not).
    Schedule { cocreate_job: Option<&'a str> },
    /// A new tag.
    Tag(&'a str),
}

impl Source<'_> {
    fn variables(&self) -> (Vec<(&str, String)>, Vec<&'static str>) {
        match *self {
            Source::MergeRequest { branch } => (
                vec![
                    ("CI_PIPELINE_SOURCE", "merge_request_event".into()),
                    ("CI_MERGE_REQUEST_IID", "7".into()),
                    ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", branch.into()),
                    ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", DEFAULT_BRANCH.into()),
                ],
                // Not set in merge request pipelines.
                vec!["CI_COMMIT_BRANCH"],
            ),
            Source::Push => (vec![("CI_PIPELINE_SOURCE", "push".into())], vec![]),
            Source::Schedule { cocreate_job } => {
                let mut set = vec![("CI_PIPELINE_SOURCE", "schedule".to_string())];
                if let Some(job) = cocreate_job {
                    set.push(("COCREATE_JOB", job.into()));
                }
                (set, vec![])
            }
            Source::Tag(tag) => (
                vec![
                    ("CI_PIPELINE_SOURCE", "push".into()),
                    ("CI_COMMIT_TAG", tag.into()),
                    ("CI_COMMIT_REF_NAME", tag.into()),
                ],
                // Not set in tag pipelines.
                vec!["CI_COMMIT_BRANCH"],
            ),
        }
    }
}

/// The jobs GitLab creates for `source` in the sandbox's current state. Also checks what GitLab
/// checks when it creates the pipeline: a job's `needs` (unless optional) are in it, in the same
/// or an earlier stage.
fn created(sandbox: &Sandbox, source: Source) -> BTreeSet<String> {
    let (set, unset) = source.variables();
    let set: Vec<(&str, &str)> = set.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let all = sandbox.list(&set, &unset);
    let stages = ["test", "build", "scheduled"];
    let stage_of = |j: &Value| {
        let s = j["stage"].as_str().expect("stage");
        stages
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("undeclared stage {s}"))
    };
    let jobs: Vec<&Value> = all.iter().filter(|j| j["when"] != "never").collect();
    let names: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["name"].as_str().expect("name").to_owned())
        .collect();
    for job in &jobs {
        for need in job["needs"].as_array().into_iter().flatten() {
            let name = need["job"].as_str().expect("needs:job");
            match jobs.iter().find(|j| j["name"] == name) {
                Some(needed) => assert!(
                    stage_of(needed) <= stage_of(job),
                    "{source:?}: {} needs {name} from a later stage",
                    job["name"]
                ),
                None => assert!(
                    need["optional"] == true,
                    "{source:?}: {} needs {name}, which is not in the pipeline: GitLab refuses to \
                     create it",
                    job["name"]
                ),
            }
        }
    }
    names
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The pipeline once `default:`, `extends:` and anchors are merged, as GitLab runs it.
fn resolved() -> Value {
    Sandbox::new(PIPELINE).preview()
}

#[test]
fn the_pinned_gitlab_ci_local_is_installed() {
    let out = Command::new(gcl::binary())
        .arg("--version")
        .output()
        .expect("gitlab-ci-local runs");
    assert!(out.status.success(), "{}", gcl::text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), gcl::VERSION);
    let package: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/package.json"))
            .expect("package.json"),
    )
    .expect("package.json is JSON");
    assert_eq!(
        package["devDependencies"]["gitlab-ci-local"],
        gcl::VERSION,
        "an exact pin"
    );
}

#[test]
fn a_merge_request_runs_the_tests_and_checks_the_policies_it_edits() {
    let sandbox = Sandbox::new(PIPELINE);
    let mr = Source::MergeRequest { branch: "fix-docs" };
    sandbox.git(&["checkout", "--quiet", "-b", "fix-docs"]);
    sandbox.append("README.md", "A typo fixed.\n");
    sandbox.commit("Fix a typo");
    assert_eq!(created(&sandbox, mr), set(&["test"]));

    sandbox.append("policies/routing.yml", "# a reviewer joins the roster\n");
    sandbox.commit("Edit the roster");
    assert_eq!(created(&sandbox, mr), set(&["test", "policies-check"]));

    // The CLA managers' MR: validated before the merge; cca-check runs only after it.
    let cla = Sandbox::new(PIPELINE);
    cla.git(&["checkout", "--quiet", "-b", "cca-example-bank"]);
    cla.append("policies/agreements.yml", "# example-bank signs\n");
    cla.commit("Add example-bank's agreement");
    assert_eq!(
        created(
            &cla,
            Source::MergeRequest {
                branch: "cca-example-bank"
            }
        ),
        set(&["test", "policies-check"])
    );
}

#[test]
fn a_push_to_the_default_branch_ships_and_rechecks_ccas_when_agreements_change() {
    let sandbox = Sandbox::new(PIPELINE);
    // The Pages site is rebuilt on every push to the default branch too.
    let shipped = ["test", "release-build", "container-image", "pages"];

    sandbox.append("README.md", "More docs.\n");
    sandbox.commit("Docs");
    assert_eq!(created(&sandbox, Source::Push), set(&shipped));

    // A policy change that is not an agreement: no CCA re-check.
    sandbox.git(&["update-ref", "refs/remotes/origin/main", "HEAD"]);
    sandbox.append("policies/routing.yml", "# roster change\n");
    sandbox.commit("Roster");
    assert_eq!(created(&sandbox, Source::Push), set(&shipped));

    sandbox.git(&["update-ref", "refs/remotes/origin/main", "HEAD"]);
    sandbox.append("policies/agreements.yml", "# example-bank signs\n");
    sandbox.commit("Merge the agreement");
    let mut with_cca = shipped.to_vec();
    with_cca.push("cca-check");
    assert_eq!(created(&sandbox, Source::Push), set(&with_cca));

    // A push to another branch (no MR yet): the tests only.
    sandbox.git(&["checkout", "--quiet", "-b", "topic"]);
    sandbox.append("policies/agreements.yml", "# draft\n");
    sandbox.commit("Draft");
    assert_eq!(created(&sandbox, Source::Push), set(&["test"]));
}

#[test]
fn each_schedule_runs_only_its_own_job() {
    let sandbox = Sandbox::new(PIPELINE);
    for (job, _) in SCHEDULED {
        assert_eq!(
            created(
                &sandbox,
                Source::Schedule {
                    cocreate_job: Some(job)
                }
            ),
            set(&[job]),
            "COCREATE_JOB={job}: no build, no tests, nothing else"
        );
    }
    // A schedule without (or with a misspelt) COCREATE_JOB creates no job at all.
    for cocreate_job in [None, Some("cca_check")] {
        assert!(created(&sandbox, Source::Schedule { cocreate_job }).is_empty());
    }
}

#[test]
fn a_tag_builds_the_release_and_its_image() {
    let sandbox = Sandbox::new(PIPELINE);
    sandbox.git(&["tag", "v1.4.0"]);
    assert_eq!(
        created(&sandbox, Source::Tag("v1.4.0")),
        set(&["test", "release-build", "container-image"])
    );
}

#[test]
fn gitlab_ci_local_rejects_what_gitlab_would_reject() {
    // The checks above mean something only if a broken file fails: a misspelt keyword.
    let sandbox = Sandbox::new(PIPELINE);
    let path = sandbox.path().join(".gitlab-ci.yml");
    let text = std::fs::read_to_string(&path).expect("pipeline");
    std::fs::write(&path, text.replacen("  rules:\n", "  rulez:\n", 1)).expect("write");
    let out = sandbox.command().arg("--list-json").output().expect("runs");
    assert!(!out.status.success(), "{}", gcl::text(&out));
    assert!(
        gcl::text(&out).contains("rulez"),
        "names the bad key: {}",
        gcl::text(&out)
    );
}

#[test]
fn stages_and_the_test_job() {
    let p = resolved();
    assert_eq!(
        p["stages"],
        serde_json::json!([".pre", "test", "build", "scheduled", ".post"])
    );
    let test = &p["test"];
    assert_eq!(
        test["script"],
        serde_json::json!([".ci/run"]),
        "CI runs the README's test command"
    );
    let before = test["before_script"].to_string();
    assert!(
        before.contains("nodejs") && before.contains("npm") && before.contains("rsync"),
        ".ci/run needs Node.js, npm and rsync for gitlab-ci-local: {before}"
    );
}

#[test]
fn scheduled_jobs_run_the_project_image_with_the_bot_token_and_this_checkouts_policies() {
    let p = resolved();
    for (job, command) in SCHEDULED {
        let j = &p[job];
        assert_eq!(j["stage"], "scheduled", "{job}");
        let image = j["image"]["name"].as_str().expect("image name");
        assert_eq!(
            image, "$CI_REGISTRY_IMAGE:latest",
            "{job}: the image container-image pushes from the default branch"
        );
        assert_eq!(
            j["image"]["entrypoint"],
            serde_json::json!([""]),
            "{job}: the image's entrypoint is `cocreate`; the runner needs a shell"
        );
        let vars = &j["variables"];
        assert_eq!(vars["GITLAB_URL"], "$CI_SERVER_URL", "{job}");
        assert_eq!(vars["GITLAB_TOKEN"], "$COCREATE_BOT_TOKEN", "{job}");
        assert_eq!(vars["COCREATE_POLICIES"], "policies", "{job}");
        assert_eq!(vars["COCREATE_TEMPLATES"], "templates", "{job}");
        let script = j["script"][0].as_str().expect("script");
        assert!(
            script.starts_with(&format!("cocreate {command}")),
            "{job}: the image's binary, from PATH: {script}"
        );
        assert_eq!(j["cache"], serde_json::json!([]), "{job}: no cargo cache");
    }
}

#[test]
fn cca_check_reports_junit_the_weekly_report_keeps_markdown_and_json_and_pages_publishes_public() {
    let p = resolved();
    let j = &p["cca-check"];
    assert_eq!(j["artifacts"]["reports"]["junit"], "cca-check.xml");
    assert_eq!(j["artifacts"]["when"], "always");
    let script = j["script"][0].as_str().expect("script");
    assert!(script.contains("--junit cca-check.xml") && script.contains("--summary cca-check.md"));

    let r = &p["report"];
    let script = r["script"][0].as_str().expect("script");
    assert!(
        script.contains("--publish")
            && script.contains("--out report.md")
            && script.contains("--json-out report.json"),
        "{script}"
    );
    assert_eq!(
        r["artifacts"]["paths"],
        serde_json::json!(["report.md", "report.json"])
    );
    // GitLab Pages publishes the `public/` artifact of the job called `pages`; the internal
    // dashboard only where COCREATE_SITE_INTERNAL is set.
    let pages = &p["pages"];
    assert_eq!(pages["artifacts"]["paths"], serde_json::json!(["public"]));
    assert_eq!(
        pages["script"][0],
        "cocreate site --out public ${COCREATE_SITE_INTERNAL:+--internal}"
    );
    let check = &p["policies-check"];
    assert!(check["script"][0]
        .as_str()
        .expect("script")
        .ends_with("policies check"));
}

// --- the cca-check job, run ----------------------------------------------------------------

const BANK_DEV: (u64, &str) = (503, "bdev");
const BOT_TOKEN: &str = "glpat-ci-pipeline-test-token-0001";
const BANK_AGREEMENT: &str = "  - organization: example-bank\n    signed: 2026-11-01\n    version: \"CCA 2.1\"\n    reference: \"contracts/cca/example-bank-2026-11-01\"\n";

fn co_create_mr(gitlab: &FakeGitLab, iid: u64, author: u64, org: &str, title: &str) {
    gitlab.add_mr(MrSpec {
        project_id: 2,
        iid,
        id: 7000 + iid,
        title: title.into(),
        author_id: author,
        labels: vec![
            "Co-Create".into(),
            "Community contribution".into(),
            format!("Co-Create org::{org}"),
            "CCA::missing".into(),
        ],
        sha: format!("{iid:040x}"),
        project_path: "vendor/product".into(),
        ..MrSpec::default()
    });
}

/// `<testcase …>…</testcase>` (or self-closed) elements of a JUnit report, by name attribute.
fn testcases(junit: &str) -> Vec<(String, bool)> {
    junit
        .split("<testcase ")
        .skip(1)
        .map(|case| {
            let name = case
                .split("name=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_default()
                .to_owned();
            let end = case.find("</testcase>").unwrap_or(case.len());
            (name, case[..end].contains("<failure"))
        })
        .collect()
}

/// The CLA managers merge example-bank's agreement into the default branch. The push pipeline's
/// `cca-check` job, run by gitlab-ci-local's shell executor with its own script, variables and
/// artifacts, and the locally built `cocreate` on PATH (where the image has it), clears the
/// bank's MR in GitLab and reports every open Co-Create MR in its JUnit artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cca_check_job_clears_an_mr_when_its_agreement_is_merged() {
    let gitlab = FakeGitLab::start_with_token(BOT_TOKEN).await;
    seed(&gitlab);
    gitlab.add_user(UserSpec {
        public_email: Some("dev@bank.example.com".into()),
        ..UserSpec::new(BANK_DEV.0, BANK_DEV.1)
    });
    co_create_mr(
        &gitlab,
        41,
        BANK_DEV.0,
        "example-bank",
        "Faster statement export",
    );
    co_create_mr(
        &gitlab,
        42,
        TELCO_DEV.0,
        "example-telco",
        "Fix roaming tariffs",
    );

    let sandbox = Sandbox::new(&[".gitlab-ci.yml", "policies", "templates"]);
    sandbox.append("policies/agreements.yml", BANK_AGREEMENT);
    sandbox.commit("Add example-bank's CCA");
    assert!(
        created(&sandbox, Source::Push).contains("cca-check"),
        "the merge starts cca-check"
    );

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cocreate"))
        .parent()
        .expect("binary dir")
        .to_owned();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    gcl::require_rsync();
    let mut cmd = sandbox.command();
    cmd.args(["cca-check", "--force-shell-executor"])
        .args(["--variable", "CI_PIPELINE_SOURCE=push"])
        .arg("--variable")
        .arg(format!("CI_SERVER_URL={}", gitlab.url()))
        .arg("--variable")
        .arg(format!("COCREATE_BOT_TOKEN={BOT_TOKEN}"))
        .env("PATH", path)
        // The job's variables must come from the pipeline, not from this process.
        .env_remove("GITLAB_URL")
        .env_remove("GITLAB_TOKEN")
        .env_remove("COCREATE_POLICIES")
        .env_remove("COCREATE_TEMPLATES");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("gitlab-ci-local runs"))
        .await
        .expect("joined");
    let log = gcl::text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("cca-check") && log.contains("PASS"), "{log}");
    assert!(
        !log.contains(BOT_TOKEN),
        "the token is never printed: {log}"
    );

    // GitLab: the bank's MR is cleared, the telco's (expired agreement) is not.
    let bank = gitlab.mr(2, 41);
    assert!(
        bank.labels.contains(&"CCA::signed".to_string())
            && !bank.labels.contains(&"CCA::missing".to_string()),
        "{:?}",
        bank.labels
    );
    let statuses = gitlab.commit_statuses(2, &bank.sha);
    assert_eq!(statuses.last().map(|s| s.status.as_str()), Some("success"));
    let telco = gitlab.mr(2, 42);
    assert!(
        telco.labels.contains(&"CCA::expired".to_string()),
        "{:?}",
        telco.labels
    );

    // The artifacts, as the runner collects them from the paths the job declares (gitlab-ci-local
    // keeps a job's artifacts in .gitlab-ci-local/artifacts/<job>/).
    let job = &sandbox.preview()["cca-check"];
    let artifacts = sandbox.path().join(".gitlab-ci-local/artifacts/cca-check");
    let junit_path = job["artifacts"]["reports"]["junit"]
        .as_str()
        .expect("reports:junit");
    let junit = std::fs::read_to_string(artifacts.join(junit_path))
        .unwrap_or_else(|e| panic!("the JUnit artifact {junit_path}: {e}\n{log}"));
    let cases = testcases(&junit);
    assert_eq!(
        cases.len(),
        2,
        "one test case per open Co-Create MR: {junit}"
    );
    let case = |title: &str| {
        cases
            .iter()
            .find(|(name, _)| name.contains(title))
            .unwrap_or_else(|| panic!("no test case for {title}: {junit}"))
            .1
    };
    assert!(!case("Faster statement export"), "signed: passes: {junit}");
    assert!(case("Fix roaming tariffs"), "expired: fails: {junit}");
    for p in job["artifacts"]["paths"].as_array().expect("paths") {
        let p = p.as_str().expect("path");
        assert!(
            artifacts.join(p).is_file(),
            "artifact {p} was collected\n{log}"
        );
    }
    let summary = std::fs::read_to_string(artifacts.join("cca-check.md")).expect("summary");
    assert!(summary.contains("| signed | 1 |"), "{summary}");
    assert!(summary.contains("| expired | 1 |"), "{summary}");
}

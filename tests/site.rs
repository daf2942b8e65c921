//! `cocreate site` against the fake GitLab: the report's fixture timeline plus curated
//! issues. The dashboard shows the report's hand-computed numbers (tests/report.rs); the
//! public list shows exactly the curated, open, non-confidential issues and nothing from the
//! policies or tracking issues.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use cocreate::policy::Policies;
use support::fake_gitlab::WEB_BASE;
use support::site_world::{build, decode, site_world, text, CO_CREATE, NOT_LISTED, QUICK_WIN_ONLY};

#[tokio::test]
async fn the_public_list_has_the_curated_issues_and_nothing_internal() {
    let gitlab = site_world().await;
    gitlab.clear_calls();
    let site = build(&gitlab, false).await;
    // Public: three files, no dashboard, no organization page.
    let names: Vec<String> = site
        .files
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert_eq!(names, ["index.html", "style.css", "filter.js"]);
    // Cost: one issue-list page per curated label (one watched group) and one read of each
    // project with a curated issue (is it public?); nothing of the tracking project.
    assert_eq!(site.api_reads, 3 + 2);
    assert!(
        gitlab.calls().iter().all(|c| !c.path.contains("projects/900")
            && !c.path.contains("cocreate%2Fengagements")),
        "{:?}",
        gitlab.calls()
    );
    let index = &decode(site.file("index.html").expect("index"));
    let t = text(index);
    for title in CO_CREATE.iter().chain([&QUICK_WIN_ONLY]) {
        assert!(t.contains(title), "{title} missing in {t}");
    }
    for title in NOT_LISTED {
        assert!(!t.contains(title), "{title} listed: {t}");
    }
    assert!(t.contains("4 of 4 issues shown"), "{t}");
    // Title, labels, project, age (opened 2025-05-10 08:00, built 2025-06-01 12:00) and link.
    assert!(
        t.contains("Document the retry settings vendor/product#"),
        "{t}"
    );
    assert!(
        t.contains("co-create documentation vendor/product 22 days"),
        "{t}"
    );
    let link = format!("href=\"{WEB_BASE}/vendor/product/-/issues/");
    assert_eq!(index.matches(&link).count(), 4, "{index}");

    // Nothing from the policies or the tracking issues: no organization slug, name, account
    // team member, tier, label of the program's own, or internal page.
    let policies = Policies::embedded().expect("policies");
    let all: String = site.files.iter().map(|(_, t)| t.as_str()).collect();
    let lower = all.to_lowercase();
    let mut banned: Vec<String> = vec![
        "tier".into(),
        "co-create org::".into(),
        "co-create stage::".into(),
        "co-create engagement".into(),
        "dashboard".into(),
        policies.routing.tracking.project.clone(),
    ];
    for o in policies.organizations.all() {
        banned.push(o.slug.to_string());
        banned.push(o.name.clone());
        banned.push(o.slack_channel.clone());
        let team = &o.account_team;
        banned.extend(
            [&team.csm, &team.ae, &team.sa]
                .into_iter()
                .flatten()
                .cloned(),
        );
        banned.extend(o.usernames.iter().cloned());
    }
    for b in banned {
        assert!(
            !lower.contains(&b.to_lowercase()),
            "the public site holds `{b}`"
        );
    }
    // No request to any other host: no absolute URL but the issues' own links.
    for (name, text) in &site.files {
        let rest = decode(text).replace(&format!("href=\"{WEB_BASE}/vendor/"), "");
        for bad in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!rest.contains(bad), "{} has {bad}", name.display());
        }
    }
}

/// A table row's text, as [`text`] gives it.
fn has_row(t: &str, row: &str) {
    assert!(t.contains(row), "missing {row:?} in\n{t}");
}

#[tokio::test]
async fn the_dashboard_shows_the_reports_hand_computed_numbers() {
    let gitlab = site_world().await;
    gitlab.clear_calls();
    let site = build(&gitlab, true).await;
    // Cost: the curated lists and projects (5), the report's own reads (22, as
    // tests/report.rs counts them) and one list of the open Co-Create MRs.
    assert_eq!(site.api_reads, 5 + 22 + 1);
    assert_eq!(gitlab.writes().len(), 0);
    let d = text(site.file("dashboard.html").expect("dashboard"));
    // The same values as tests/report.rs `fixture_timeline_gives_the_hand_computed_metrics`.
    has_row(&d, "2025-02-01 to 2025-04-30, as of 2025-05-01 00:00 UTC");
    has_row(&d, "pipeline (prospects) 4 21+ no");
    has_row(&d, "projects initiated 2 7 no");
    has_row(&d, "conversion 50% 33% yes");
    has_row(
        &d,
        "time from contact to project start, median 9 weeks 8–10 weeks yes",
    );
    has_row(&d, "contributing customers 3");
    has_row(&d, "initial meetings 3");
    has_row(&d, "active conversations 1");
    has_row(
        &d,
        "post-project MRs 3 post-project issues 1 post-project comments 3",
    );
    has_row(
        &d,
        "organizations with multiple contributions 1 of 3 (33.3%)",
    );
    has_row(&d, "average time between contributions 15.5 days");
    has_row(
        &d,
        "time to first response, median 30 h (3 answered, 2 waiting)",
    );
    has_row(&d, "time to first response, mean 27.3 h");
    // Charts and their tables: the funnel 4, 4, 3, 2, 2, 2, 1, 0.
    has_row(
        &d,
        "prospect 4 contacted 4 meeting 3 aligned 2 onboarding 2 active 2 completed 1",
    );
    has_row(&d, "4-8 0 8-10 target 2 10-14 0");
    has_row(&d, "MRs 3 issues 1 comments 3");
    // Contributing customers per quarter: none before FY26Q1 (mill's MR is 2025-02-10).
    has_row(&d, "FY25Q2 0 FY25Q3 0 FY25Q4 0 FY26Q1 3");
    // Open Co-Create MRs with their wait and reviewer: MR 46 (2025-05-20 10:00) waits 12 days.
    has_row(
        &d,
        "vendor/product!46 Add retry jitter example-telco @cs-reviewer-1 12 days (since 2025-05-20)",
    );
    has_row(&d, "vendor/product!40");
    // Every chart has its table.
    let html = site.file("dashboard.html").expect("dashboard");
    assert_eq!(html.matches("<svg").count(), 4);
    assert_eq!(html.matches("<table class=\"numbers\"").count(), 4);
    // A page per organization, with the report's line (tests/report.rs: aero's row).
    let aero = text(site.file("orgs/example-aero.html").expect("aero page"));
    for row in [
        "engagement #1",
        "stage completed",
        "contacted 2025-01-20",
        "project start 2025-03-17",
        "weeks to start 8",
        "completed 2025-04-01",
        "Co-Create MRs (all time) 3",
        "MRs in the quarter 3",
        "post-project MRs 2",
        "post-project issues 1",
        "post-project comments 3",
        "first response, median 17 h",
    ] {
        has_row(&aero, row);
    }
    let telco = text(site.file("orgs/example-telco.html").expect("telco page"));
    has_row(
        &telco,
        "vendor/product!46 Add retry jitter @cs-reviewer-1 12 days",
    );
    // The internal site's list links the dashboard; the public one does not.
    assert!(site
        .file("index.html")
        .expect("index")
        .contains("dashboard.html"));
}

#[tokio::test]
async fn the_binary_writes_the_site_to_disk() {
    let gitlab = site_world().await;
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("public");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .args(["site", "--internal", "--quarter", "FY26Q1", "--out"])
        .arg(&out)
        .args(["--now", "2025-06-01T12:00:00Z"])
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env_remove("COCREATE_POLICIES")
        .env_remove("COCREATE_TEMPLATES")
        .env_remove("COCREATE_NOW")
        .output()
        .expect("runs");
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    for f in [
        "index.html",
        "style.css",
        "filter.js",
        "dashboard.html",
        "orgs/example-aero.html",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let d = text(&std::fs::read_to_string(out.join("dashboard.html")).expect("read"));
    has_row(&d, "pipeline (prospects) 4 21+ no");
}

#[test]
fn without_a_token_the_site_says_what_it_needs() {
    let dir = tempfile::tempdir().expect("dir");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .args(["site", "--out"])
        .arg(dir.path().join("public"))
        .env_remove("GITLAB_TOKEN")
        .env_remove("COCREATE_POLICIES")
        .env_remove("COCREATE_TEMPLATES")
        .output()
        .expect("runs");
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("site reads GitLab: set GITLAB_TOKEN"), "{err}");
    assert!(!dir.path().join("public").exists(), "nothing written");
}

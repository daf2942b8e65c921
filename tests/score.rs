//! `cocreate score` against the fake GitLab: issue/MR counts from list totals, tiers, ranking,
//! bad rows, offline mode, API cost.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::path::PathBuf;

use cocreate::clock::Clock;
use cocreate::jobs::score::{self, HistorySource, ScoreError};
use cocreate::jobs::JobContext;
use cocreate::policy::{Policies, EMBEDDED};
use support::fake_gitlab::{FakeGitLab, IssueSpec, MrSpec, UserSpec};
use support::harness::{seed, AERO_DEV, PROJECT_ID, PROJECT_PATH, TELCO_DEV};
use support::jobs;
use support::notes::CheckedGitLab;

const ACCOUNTS: &str = include_str!("fixtures/accounts.csv");

/// A `score` context with the embedded policies and the system clock.
async fn context(gitlab: &FakeGitLab) -> JobContext {
    jobs::context(
        gitlab,
        Policies::embedded().expect("policies"),
        Clock::system(),
    )
    .await
}

fn issue_by(gitlab: &FakeGitLab, author: u64, n: u64) {
    for _ in 0..n {
        gitlab.add_issue(IssueSpec {
            project_id: PROJECT_ID,
            project_path: PROJECT_PATH.into(),
            author_id: author,
            title: "Bug report".into(),
            ..IssueSpec::default()
        });
    }
}

/// aero-dev-1: MR !16 (seed) + 3 issues = 4; tdev (telco): 2 MRs; freight-dev: 12 issues;
/// grid-dev-1: 10 issues. Everything in the watched group `vendor`.
async fn world() -> CheckedGitLab {
    let gitlab = CheckedGitLab::start().await;
    seed(&gitlab);
    gitlab.add_user(UserSpec::new(801, "freight-dev"));
    gitlab.add_user(UserSpec::new(802, "grid-dev-1"));
    issue_by(&gitlab, AERO_DEV.0, 3);
    issue_by(&gitlab, 801, 12);
    issue_by(&gitlab, 802, 10);
    // Outside the watched group: not counted.
    gitlab.add_issue(IssueSpec {
        project_id: 77,
        project_path: "elsewhere/app".into(),
        author_id: 801,
        ..IssueSpec::default()
    });
    for iid in [30, 31] {
        gitlab.add_mr(MrSpec {
            project_id: PROJECT_ID,
            iid,
            id: 3000 + iid,
            author_id: TELCO_DEV.0,
            project_path: PROJECT_PATH.into(),
            ..MrSpec::default()
        });
    }
    gitlab
}

#[tokio::test]
async fn ranks_tiers_and_counts_with_two_calls_per_username() {
    let gitlab = world().await;
    let ctx = context(&gitlab).await;
    gitlab.clear_calls();
    let report = score::run(&ctx.policies, ctx.gitlab(), ACCOUNTS, false)
        .await
        .expect("scores");
    // Usernames: aero 2 (organizations.yml), telco 2 (CSV tdev + telco-dev-1), freight 1, grid 2.
    assert_eq!(report.api_reads, 14);
    assert_eq!(gitlab.calls().len(), 14);
    assert!(gitlab.writes().is_empty());
    assert!(gitlab
        .calls()
        .iter()
        .all(|c| c.query.contains("per_page=1") && c.path.starts_with("/api/v4/groups/vendor/")));

    let got: Vec<(&str, f64, u8, u64, HistorySource)> = report
        .accounts
        .iter()
        .map(|s| {
            (
                s.slug.as_str(),
                s.score,
                s.tier,
                s.issues_mrs,
                s.history_source,
            )
        })
        .collect();
    use HistorySource::*;
    assert_eq!(
        got,
        vec![
            // 4 + 9 + 15 + 10 + 10 + 15 + 3 + 10 + 4: full marks but a weak history.
            ("example-aero", 80.0, 2, 4, Gitlab),
            // 10 + 8 + 15 + 9 + 0 + 15 + 2 + 7.5 + 5
            ("example-grid", 71.5, 1, 10, Gitlab),
            ("example-bank", 63.5, 3, 0, Csv),
            // 12 + 5 + 9 + 4 + 0 + 15 + 4 + 7.5 + 3
            ("example-freight", 59.5, 1, 12, Gitlab),
            ("example-retail", 47.5, 2, 0, Unknown),
            ("example-telco", 46.7, 2, 2, Gitlab),
            ("example-mill", 17.3, 3, 0, Unknown),
        ]
    );
    let ranks: Vec<usize> = report.accounts.iter().map(|s| s.rank).collect();
    assert_eq!(ranks, (1..=7).collect::<Vec<_>>());
    assert_eq!(report.coverage.qualified, 5);
    assert_eq!(report.coverage.needed, 21);
    assert!(!report.coverage.covered);

    let md = score::markdown(&report);
    assert!(md.contains("5 qualified prospects (Tier 1: 2, Tier 2: 3) for a target of 21 (3x 7 projects): **not covered**"), "{md}");
    assert!(md.contains("| 2 | Example Grid | 71.5 | 1 | 10 | 10 issues/MRs (≥ 10), Ultimate, prior contribution |"), "{md}");
    assert!(md.contains("14 GitLab API reads"), "{md}");
    let csv = score::to_csv(&report).expect("csv");
    assert!(
        csv.starts_with("rank,organization,slug,score,tier,issues_mrs,points_issues_mrs,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 8);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["accounts"][0]["criteria"][0]["name"], "issues_mrs");
}

#[tokio::test]
async fn offline_uses_the_csv_counts_and_calls_nothing() {
    let policies = Policies::embedded().expect("policies");
    let report = score::run(&policies, None, ACCOUNTS, false)
        .await
        .expect("scores");
    assert_eq!(report.api_reads, 0);
    assert!(report.offline);
    let aero = report
        .accounts
        .iter()
        .find(|s| s.slug == "example-aero")
        .expect("aero");
    // 14 from the CSV: strong history, Ultimate, prior contribution.
    assert_eq!((aero.issues_mrs, aero.tier), (14, 1));
    assert_eq!(aero.rank, 1);
}

#[tokio::test]
async fn bad_rows_stop_the_run_unless_skipped() {
    let policies = Policies::embedded().expect("policies");
    let text = format!("{ACCOUNTS}Example Broken,,Gold Plus,12,Retail,yes,1,3,1,1,,\n");
    let err = score::run(&policies, None, &text, false)
        .await
        .expect_err("bad row");
    let ScoreError::BadRows(rows) = &err else {
        panic!("{err}")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(
        err.to_string(),
        "the account file has bad rows (pass --skip-bad-rows to score the rest):\n  line 9, column `subscription`: `Gold Plus` is not free, premium or ultimate"
    );
    let report = score::run(&policies, None, &text, true)
        .await
        .expect("skips");
    assert_eq!(report.accounts.len(), 7);
    assert_eq!(report.skipped.len(), 1);
    assert!(score::markdown(&report).contains("## Rows left out (1)"));

    let err = score::run(&policies, None, "organization\nA\n", true)
        .await
        .expect_err("header");
    assert!(matches!(err, ScoreError::BadHeader(_)), "{err}");
}

#[test]
fn shipped_policies_dir_loads_segmentation() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let p = Policies::load(&dir).expect("valid");
    assert_eq!(p.segmentation.targets.projects, 7);
    assert_eq!(p.segmentation.targets.prospects, 21);
    assert_eq!(
        EMBEDDED.len(),
        EMBEDDED.iter().filter(|(n, _)| n.ends_with(".yml")).count()
    );
}

#[tokio::test]
async fn open_prospects_opens_tracking_issues_for_the_top_untracked_once() {
    let gitlab = world().await;
    let ctx = context(&gitlab).await;
    let report = score::run(&ctx.policies, ctx.gitlab(), ACCOUNTS, true)
        .await
        .expect("scores");
    let top: Vec<String> = report
        .accounts
        .iter()
        .take(3)
        .map(|a| a.slug.clone())
        .collect();

    // Dry run: planned, nothing written.
    gitlab.clear_calls();
    let planned = score::open_prospects(&ctx.clone().dry_run(), &report, 2)
        .await
        .expect("plans");
    assert_eq!(planned.len(), 2, "{planned:?}");
    assert!(gitlab.writes().is_empty());

    score::open_prospects(&ctx, &report, 2)
        .await
        .expect("opens");
    let issues = gitlab.issues(support::harness::TRACKING_PROJECT_ID);
    assert_eq!(issues.len(), 2);
    for (issue, slug) in issues.iter().zip(&top) {
        assert!(issue.confidential);
        assert!(
            issue
                .labels
                .contains(&"Co-Create stage::prospect".to_string()),
            "{:?}",
            issue.labels
        );
        assert!(
            issue.labels.contains(&format!("Co-Create org::{slug}")),
            "{:?}",
            issue.labels
        );
        // The engagement checklist, nothing ticked yet that GitLab cannot prove.
        assert!(
            issue.description.contains("## Co-Create checklist")
                && issue
                    .description
                    .contains("- [ ] First merge request merged *(cocreate)*"),
            "{}",
            issue.description
        );
        assert!(issue
            .description
            .contains(&format!("`#cocreate-initiative-{slug}`")));
    }
    // Those two are tracked now: the next run opens the third, never a duplicate.
    score::open_prospects(&ctx, &report, 2)
        .await
        .expect("opens");
    let issues = gitlab.issues(support::harness::TRACKING_PROJECT_ID);
    assert_eq!(issues.len(), report.accounts.len().min(4));
    let mut slugs: Vec<&String> = issues
        .iter()
        .flat_map(|i| i.labels.iter())
        .filter(|l| l.starts_with("Co-Create org::"))
        .collect();
    let before = slugs.len();
    slugs.sort();
    slugs.dedup();
    assert_eq!(slugs.len(), before, "one tracking issue per organization");
}

/// The account file with a `spiff_target` column: aero, grid and mill are SPIFF targets.
fn with_spiff() -> String {
    let mut out = String::new();
    for (i, line) in ACCOUNTS.lines().enumerate() {
        let flag = match i {
            0 => "spiff_target",
            _ if ["Example Aero,", "Example Grid,", "Example Mill,"]
                .iter()
                .any(|p| line.starts_with(p)) =>
            {
                "yes"
            }
            _ => "",
        };
        out.push_str(&format!("{line},{flag}\n"));
    }
    out
}

/// SPIFF target accounts: flagged in the Markdown and CSV output; their prospect tracking
/// issues (new and already open) labelled once; a bad flag is a bad row.
#[tokio::test]
async fn spiff_targets_are_flagged_and_their_tracking_issues_labelled_once() {
    let gitlab = world().await;
    // Grid already has an open prospect tracking issue, without the label.
    let grid = gitlab.add_issue(IssueSpec {
        project_id: support::harness::TRACKING_PROJECT_ID,
        title: "Co-Create prospect: Example Grid".into(),
        confidential: true,
        labels: vec![
            "Co-Create engagement".into(),
            "Co-Create org::example-grid".into(),
            "Co-Create stage::prospect".into(),
        ],
        project_path: support::harness::TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    });
    let ctx = context(&gitlab).await;
    let report = score::run(&ctx.policies, ctx.gitlab(), &with_spiff(), false)
        .await
        .expect("scores");
    let flagged: Vec<&str> = report
        .accounts
        .iter()
        .filter(|a| a.spiff_target)
        .map(|a| a.slug.as_str())
        .collect();
    assert_eq!(flagged.len(), 3, "{flagged:?}");
    let md = score::markdown(&report);
    assert!(md.contains("Example Aero (SPIFF target) |"), "{md}");
    assert!(md.contains("3 SPIFF target accounts among them."), "{md}");
    assert!(!md.contains("Example Telco (SPIFF target)"), "{md}");
    let csv = score::to_csv(&report).expect("csv");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",tier_reason,spiff_target"),
        "{csv}"
    );
    assert_eq!(
        csv.lines().filter(|l| l.ends_with(",yes")).count(),
        3,
        "{csv}"
    );

    let spiff = "Co-Create SPIFF target".to_string();
    score::open_prospects(&ctx, &report, 3)
        .await
        .expect("opens");
    let issues = gitlab.issues(support::harness::TRACKING_PROJECT_ID);
    assert_eq!(issues.len(), 4, "grid's and three new ones");
    for issue in &issues {
        let slug = issue
            .labels
            .iter()
            .find_map(|l| l.strip_prefix("Co-Create org::"))
            .unwrap();
        assert_eq!(
            issue.labels.contains(&spiff),
            flagged.contains(&slug),
            "{slug}: {:?}",
            issue.labels
        );
    }
    assert!(gitlab
        .issue(support::harness::TRACKING_PROJECT_ID, grid)
        .labels
        .contains(&spiff));
    // Again (opening no more): every label is there, nothing is written.
    gitlab.clear_calls();
    score::open_prospects(&ctx, &report, 0).await.expect("runs");
    assert!(gitlab.writes().is_empty(), "{:#?}", gitlab.writes());

    let bad = with_spiff().replace(
        "Example Telco,example-telco,Premium,1200,Telco,no,12,4,7,4,tdev,3,",
        "Example Telco,example-telco,Premium,1200,Telco,no,12,4,7,4,tdev,3,maybe",
    );
    let err = score::run(&ctx.policies, None, &bad, false)
        .await
        .expect_err("bad flag");
    assert!(
        err.to_string()
            .contains("column `spiff_target`: `maybe` is not yes or no"),
        "{err}"
    );
}

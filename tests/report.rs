//! `cocreate report` against the fake GitLab: a fixture timeline of tracking issues with label
//! events at known dates and MRs/issues by organization members, with hand-computed metrics;
//! the dashboard issue is created once and then updated, never duplicated.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use cocreate::jobs::report::{self, Quarter};
use support::fake_gitlab::{FakeGitLab, IssueSpec, MrSpec};
use support::harness::{
    seed, AERO_DEV, OUTSIDER, PROJECT_ID, PROJECT_PATH, TELCO_DEV, TRACKING_PROJECT,
    TRACKING_PROJECT_ID,
};
// The first fixture timeline (shared with tests/site.rs).
use support::notes::CheckedGitLab;
use support::report_world::{context, stage, world};

#[tokio::test]
async fn fixture_timeline_gives_the_hand_computed_metrics() {
    let gitlab = world().await;
    let ctx = context(&gitlab).await;
    gitlab.clear_calls();
    let r = report::run(&ctx, Quarter::parse("FY26Q1").expect("q"))
        .await
        .expect("report");
    let m = &r.metrics;
    assert_eq!(
        (r.start.to_string(), r.end.to_string()),
        ("2025-02-01".into(), "2025-05-01".into())
    );
    // Pipeline: aero, telco, freight, cold (mill completed before, late started after).
    assert_eq!(m.pipeline, 4);
    assert_eq!(m.initial_meetings, 3); // aero 02-10, telco 03-01, freight 02-24
    assert_eq!(m.active_conversations, 1); // telco (cold is closed)
    assert_eq!(m.projects_initiated, 2); // aero 03-17, freight 04-28
    assert_eq!(m.conversion_percent, Some(50.0));
    assert_eq!(m.weeks_to_start, vec![8.0, 10.0]);
    assert_eq!(m.median_weeks_to_start, Some(9.0));
    assert_eq!(m.mean_weeks_to_start, Some(9.0));
    let funnel: Vec<usize> = m.funnel.iter().map(|(_, n)| *n).collect();
    assert_eq!(funnel, vec![4, 4, 3, 2, 2, 2, 1, 0]);
    // aero: 04-10, 04-20 after its 04-01 completion; mill: 02-10.
    assert_eq!(m.post_project_mrs, 3);
    assert_eq!(m.post_project_issues, 1); // aero's 04-15 issue
    assert_eq!(m.post_project_comments, 3); // aero's of 04-01 15:00, 04-02 and 04-12
                                            // Time to first response: 30 h (MR 40), 4 h (41), 48 h (44); 42 and 45 wait.
    let ttfr = &m.first_response;
    assert_eq!(
        (
            ttfr.answered,
            ttfr.waiting,
            ttfr.median_hours,
            ttfr.mean_hours
        ),
        (3, 2, Some(30.0), Some(27.3))
    );
    // aero 3 MRs in the quarter's window, mill 1, telco 1.
    assert_eq!(m.contributing_organizations, 3);
    assert_eq!(m.multi_contributing_organizations, 1);
    assert_eq!(m.multiple_contributions_percent, Some(33.3));
    assert_eq!(m.mean_days_between_contributions, Some(15.5)); // 21 and 10 days
                                                               // The organization with no events is listed, empty.
    let bank = m
        .organizations
        .iter()
        .find(|l| l.org == "example-bank")
        .expect("bank");
    assert_eq!(
        (bank.stage.as_deref(), bank.mrs, bank.contacted),
        (None, 0, None)
    );
    // Cost: 1 tracking-issue page + 5 label-event pages (late's issue was opened after the
    // quarter) + 1 state-event page (telco, open at meeting) + 6 MR lists (3 policy + 3 more organizations, one watched group) + 5 notes
    // pages (the MRs opened in the quarter) + 2 issue lists and 2 comment-event lists (aero's
    // two usernames; aero-dev-2 is unknown to GitLab and wrote nothing).
    assert_eq!((r.api_reads, r.api_writes), (22, 0));
    assert_eq!(gitlab.calls().len(), 22);

    let md = report::markdown(&r);
    // The README's sample: `COCREATE_SAMPLE_REPORT=/tmp/r.md cargo test --test report`.
    if let Ok(path) = std::env::var("COCREATE_SAMPLE_REPORT") {
        std::fs::write(path, &md).expect("sample written");
    }
    for want in [
        "| pipeline (prospects) | 4 | 21 (3x projects) | ❌ |",
        "| projects initiated | 2 | 7 | ❌ |",
        "| conversion | 50% | 33% | ✅ |",
        "| time from contact to project start, median | 9 weeks | 8-10 weeks | ✅ |",
        "```mermaid\nflowchart LR\n  s0[\"prospect: 4\"]",
        "bar [0, 0, 2, 0, 0]",
        "| time to first response on Co-Create MRs opened in the quarter (CHAOSS), median | 30 h (3 MRs answered, 2 waiting) |",
        "| time to first response, mean | 27.3 h (3 MRs answered, 2 waiting) |",
        "| post-project comments (after completion, in the quarter) | 3 |",
        "| example-aero | #1 | completed | 2025-01-20 | 2025-03-17 | 8 | 2025-04-01 | 3 | 3 | 2 | 1 | 3 | 17 h | 1 | — |",
        "| example-telco | #2 | meeting | 2025-02-05 | — | — | — | 1 | 1 | 0 | 0 | 0 | — | 1 | — |",
        // aero (3 MRs in the quarter), mill (1), telco (1).
        "| contributing customers (opened at least one Co-Create MR in the quarter) | 3 |",
        "22 GitLab API reads, 0 writes",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["metrics"]["projects_initiated"], 2);
    assert_eq!(json["quarter"], "FY26Q1");
}

#[tokio::test]
async fn quarter_boundaries_count_only_the_quarter() {
    let gitlab = world().await;
    let ctx = context(&gitlab).await;
    // FY26Q2 (May-July 2025): nothing started; aero still counted as a contributor.
    let r = report::run(&ctx, Quarter::parse("FY26Q2").expect("q"))
        .await
        .expect("report");
    assert_eq!(r.metrics.projects_initiated, 0);
    assert_eq!(r.metrics.initial_meetings, 0);
    // In the pipeline: telco, freight (active, not completed), cold, late.
    assert_eq!(r.metrics.pipeline, 4);
    // aero's 05-05 MR: after completion, in this quarter.
    let aero = r
        .metrics
        .organizations
        .iter()
        .find(|l| l.org == "example-aero")
        .expect("aero");
    assert_eq!((aero.mrs, aero.post_project_mrs), (4, 1));
    // FY25Q4 (Nov 2024 - Jan 2025): mill started in December.
    let r = report::run(&ctx, Quarter::parse("FY25Q4").expect("q"))
        .await
        .expect("report");
    assert_eq!(r.metrics.projects_initiated, 1);
    assert_eq!(r.metrics.weeks_to_start, vec![8.1]);
}

/// SPIFF target engagements and case-study candidates count as their labels stood at the
/// quarter's end (label history), not as they stand today.
#[tokio::test]
async fn spiff_engagements_and_case_study_candidates_as_of_the_quarters_end() {
    let gitlab = world().await;
    let bank = open_engagement(&gitlab, "example-bank", &[("2025-03-10", "contacted")]);
    let label = |when: &str, add: &[&str], remove: &[&str]| {
        gitlab.set_time(&at(when));
        gitlab.change_issue_labels(TRACKING_PROJECT_ID, bank, 25, add, remove);
    };
    label("2025-03-12", &["Co-Create SPIFF target"], &[]);
    label("2025-04-01", &["Co-Create case-study candidate"], &[]);
    label("2025-05-15", &[], &["Co-Create case-study candidate"]);
    // One of the bank's MRs was merged in April.
    gitlab.set_time(&at("2025-04-10"));
    gitlab.add_mr(MrSpec {
        project_id: PROJECT_ID,
        iid: 990,
        id: 7990,
        author_id: OUTSIDER.0,
        labels: vec!["Co-Create".into(), "Co-Create org::example-bank".into()],
        state: "merged".into(),
        sha: format!("{:040x}", 990),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
    let ctx = context(&gitlab).await;
    // FY26Q1 (February-April 2025): both labels on at its end.
    let q1 = report::run(&ctx, Quarter::parse("FY26Q1").expect("q"))
        .await
        .expect("report");
    assert_eq!(q1.metrics.spiff_engagements, 1);
    assert_eq!(
        q1.metrics.case_study_candidates,
        vec!["example-bank".to_string()]
    );
    let md = report::markdown(&q1);
    assert!(
        md.contains("| SPIFF target engagements (in the pipeline) | 1 |"),
        "{md}"
    );
    assert!(
        md.contains("| case-study candidates (label at the quarter's end) | 1 (example-bank) |"),
        "{md}"
    );
    assert!(md.contains("## Recognition"), "{md}");
    assert!(md.contains("| example-bank | 1 | yes |"), "{md}");
    let page = report::org_page(&q1, "example-bank").expect("a page");
    assert!(
        page.contains("| Co-Create MRs merged so far | 1 |"),
        "{page}"
    );
    assert!(page.contains("| case-study candidate | yes |"), "{page}");
    // A quarter earlier the engagement did not exist; in the current one the candidate label
    // is gone again.
    let before = report::run(&ctx, Quarter::parse("FY25Q4").expect("q"))
        .await
        .expect("report");
    assert_eq!(before.metrics.spiff_engagements, 0);
    assert!(before.metrics.case_study_candidates.is_empty());
    let q2 = report::run(&ctx, Quarter::parse("FY26Q2").expect("q"))
        .await
        .expect("report");
    assert!(q2.metrics.case_study_candidates.is_empty());
    assert_eq!(q2.metrics.spiff_engagements, 1);
}

/// `report --org SLUG`: one organization's page, from the report's own numbers.
#[tokio::test]
async fn one_organizations_page_for_a_business_review() {
    let gitlab = world().await;
    let ctx = context(&gitlab).await;
    let r = report::run(&ctx, Quarter::parse("FY26Q2").expect("q"))
        .await
        .expect("report");
    let aero = r
        .metrics
        .organizations
        .iter()
        .find(|l| l.org == "example-aero")
        .expect("aero")
        .clone();
    let page = report::org_page(&r, "example-aero").expect("a page");
    assert!(
        page.starts_with("# example-aero: Co-Create business review, FY26Q2"),
        "{page}"
    );
    assert!(
        page.contains(&format!("| Co-Create MRs so far | {} |", aero.mrs)),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "| after completion: MRs | {} |",
            aero.post_project_mrs
        )),
        "{page}"
    );
    assert!(page.contains("| case-study candidate | no |"), "{page}");
    assert!(report::org_page(&r, "not-an-org").is_none());
}

#[tokio::test]
async fn dashboard_issue_is_created_once_then_updated_never_duplicated() {
    let gitlab = world().await;
    let ctx = context(&gitlab).await;
    let quarter = Quarter::parse("FY26Q1").expect("q");
    let dashboards = |g: &FakeGitLab| -> Vec<u64> {
        g.issues(TRACKING_PROJECT_ID)
            .into_iter()
            .filter(|i| {
                i.description
                    .starts_with("<!-- cocreate:dashboard:FY26Q1 -->")
            })
            .map(|i| i.iid)
            .collect()
    };

    let r = report::run(&ctx, quarter).await.expect("report");
    gitlab.clear_calls();
    let d = report::publish(&ctx, &r).await.expect("publish");
    assert_eq!(d.outcome, "created");
    assert_eq!(gitlab.calls().len(), 2); // the search, the POST
    let created = dashboards(&gitlab);
    assert_eq!(created.len(), 1);
    let issue = gitlab.issue(TRACKING_PROJECT_ID, created[0]);
    assert!(issue.confidential);
    assert!(issue
        .description
        .contains("# Co-Create program report FY26Q1"));

    // Same data: nothing to write.
    let r = report::run(&ctx, quarter).await.expect("report");
    gitlab.clear_calls();
    let d = report::publish(&ctx, &r).await.expect("publish");
    assert_eq!(
        (d.outcome.as_str(), d.issue),
        ("unchanged", Some(created[0]))
    );
    assert_eq!(gitlab.calls().len(), 1);

    // New data: the same issue is updated.
    gitlab.set_time("2025-04-29T09:00:00Z");
    gitlab.change_issue_labels(
        TRACKING_PROJECT_ID,
        2,
        25,
        &[&stage("aligned")],
        &[&stage("meeting")],
    );
    let r = report::run(&ctx, quarter).await.expect("report");
    gitlab.clear_calls();
    let d = report::publish(&ctx, &r).await.expect("publish");
    assert_eq!((d.outcome.as_str(), d.issue), ("updated", Some(created[0])));
    assert_eq!(gitlab.writes().len(), 1);
    assert_eq!(dashboards(&gitlab), created);
    assert!(gitlab
        .issue(TRACKING_PROJECT_ID, created[0])
        .description
        .contains("| active customer conversations (contacted or meeting, open) | 0 |"));
}

#[tokio::test]
async fn an_issue_someone_else_opened_with_the_dashboard_marker_is_never_taken_for_it() {
    let gitlab = world().await;
    let ctx = context(&gitlab).await;
    let quarter = Quarter::parse("FY26Q1").expect("q");
    // Anyone who can open an issue in the tracking project can type the marker.
    let planted_text = "<!-- cocreate:dashboard:FY26Q1 -->\nmy own notes";
    let planted = gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: "Planted".into(),
        description: planted_text.into(),
        author_id: OUTSIDER.0,
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    });

    let r = report::run(&ctx, quarter).await.expect("report");
    let d = report::publish(&ctx, &r).await.expect("publish");
    assert_eq!(d.outcome, "created");
    assert_eq!(
        gitlab.issue(TRACKING_PROJECT_ID, planted).description,
        planted_text
    );
    let ours: Vec<_> = gitlab
        .issues(TRACKING_PROJECT_ID)
        .into_iter()
        .filter(|i| {
            i.iid != planted
                && i.description
                    .starts_with("<!-- cocreate:dashboard:FY26Q1 -->")
        })
        .collect();
    assert_eq!(ours.len(), 1);

    // The next run updates the bot's issue, still leaving the planted one alone.
    let d = report::publish(&ctx, &r).await.expect("publish");
    assert_eq!(
        (d.outcome.as_str(), d.issue),
        ("unchanged", Some(ours[0].iid))
    );
    assert_eq!(
        gitlab.issue(TRACKING_PROJECT_ID, planted).description,
        planted_text
    );
}

// ---------------------------------------------------------------------------------------------
// The second fixture timeline: overlapping watched scopes, things that happen after the
// quarter, labels at exactly its boundaries, an organization with two engagements. Run through
// the real binary with `--now`, once just after the quarter and once a year later.
// ---------------------------------------------------------------------------------------------

/// `2025-03-01` is 09:00 that day; a full RFC 3339 time is itself.
fn at(s: &str) -> String {
    if s.len() == 10 {
        format!("{s}T09:00:00Z")
    } else {
        s.to_owned()
    }
}

/// Opens a tracking issue at its first stage and moves it through the others, at their times.
fn open_engagement(gitlab: &FakeGitLab, org: &str, stages: &[(&str, &str)]) -> u64 {
    let (first_at, first) = stages[0];
    gitlab.set_time(&at(first_at));
    let iid = gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        project_path: TRACKING_PROJECT.into(),
        title: format!("Co-Create engagement: {org}"),
        confidential: true,
        labels: vec![
            "Co-Create engagement".into(),
            format!("Co-Create org::{org}"),
            stage(first),
        ],
        ..IssueSpec::default()
    });
    let mut previous = first;
    for (when, s) in &stages[1..] {
        move_stage(gitlab, iid, previous, s, when);
        previous = s;
    }
    iid
}

fn move_stage(gitlab: &FakeGitLab, iid: u64, from: &str, to: &str, when: &str) {
    gitlab.set_time(&at(when));
    gitlab.change_issue_labels(TRACKING_PROJECT_ID, iid, 25, &[&stage(to)], &[&stage(from)]);
}

/// Closes an issue at `when` (GitLab sets `closed_at`).
fn close(gitlab: &FakeGitLab, iid: u64, when: &str) {
    let now = gitlab.issue(TRACKING_PROJECT_ID, iid);
    gitlab.set_time(&at(when));
    gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        iid,
        title: now.title,
        description: now.description,
        state: "closed".into(),
        confidential: now.confidential,
        labels: now.labels,
        ..IssueSpec::default()
    });
}

/// Reopens a closed issue at `when`.
fn reopen(gitlab: &FakeGitLab, iid: u64, when: &str) {
    let now = gitlab.issue(TRACKING_PROJECT_ID, iid);
    gitlab.set_time(&at(when));
    gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        iid,
        title: now.title,
        description: now.description,
        state: "opened".into(),
        confidential: now.confidential,
        labels: now.labels,
        ..IssueSpec::default()
    });
}

fn mr_at(gitlab: &FakeGitLab, iid: u64, org: &str, author: u64, when: &str) {
    gitlab.set_time(&at(when));
    gitlab.add_mr(MrSpec {
        project_id: PROJECT_ID,
        iid,
        id: 7000 + iid,
        author_id: author,
        labels: vec!["Co-Create".into(), format!("Co-Create org::{org}")],
        sha: format!("{iid:040x}"),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
}

fn issue_by(gitlab: &FakeGitLab, author: u64, when: &str) -> u64 {
    gitlab.set_time(&at(when));
    gitlab.add_issue(IssueSpec {
        project_id: PROJECT_ID,
        project_path: PROJECT_PATH.into(),
        author_id: author,
        ..IssueSpec::default()
    })
}

/// FY26Q1 is `[2025-02-01, 2025-05-01)`. Everything here happens before 2025-05-01 06:00,
/// when the report is first run; [`after_the_quarter`] adds what happens later.
async fn second_world() -> CheckedGitLab {
    let gitlab = CheckedGitLab::start().await;
    seed(&gitlab);
    // #1 aero, old: completed 2024-09-01, closed 2024-09-05.
    let old = open_engagement(
        &gitlab,
        "example-aero",
        &[
            ("2024-03-01", "prospect"),
            ("2024-03-10", "contacted"),
            ("2024-05-01", "active"),
            ("2024-09-01", "completed"),
        ],
    );
    close(&gitlab, old, "2024-09-05");
    // #2 aero, new: meeting at exactly the quarter's start (inside), active 03-31:
    // 70 days after contact = 10.0 weeks.
    open_engagement(
        &gitlab,
        "example-aero",
        &[
            ("2025-01-15", "prospect"),
            ("2025-01-20", "contacted"),
            ("2025-02-01T00:00:00Z", "meeting"),
            ("2025-03-31", "active"),
        ],
    );
    // #3 telco: at contacted; closed only after the quarter (see below).
    open_engagement(
        &gitlab,
        "example-telco",
        &[("2025-02-03", "prospect"), ("2025-02-10", "contacted")],
    );
    // #4 grid (not in organizations.yml): meeting at exactly the quarter's end (outside).
    open_engagement(
        &gitlab,
        "example-grid",
        &[
            ("2025-02-05", "prospect"),
            ("2025-02-12", "contacted"),
            ("2025-05-01T00:00:00Z", "meeting"),
        ],
    );
    // #5 bank: contacted, closed in the quarter (and reopened later, see below).
    let bank = open_engagement(
        &gitlab,
        "example-bank",
        &[("2025-03-01", "prospect"), ("2025-03-10", "contacted")],
    );
    close(&gitlab, bank, "2025-04-15");

    // MRs, all in vendor/product: inside the watched group *and* watched on its own.
    mr_at(
        &gitlab,
        54,
        "example-aero",
        AERO_DEV.0,
        "2024-10-01T10:00:00Z",
    );
    mr_at(
        &gitlab,
        50,
        "example-aero",
        AERO_DEV.0,
        "2025-02-10T10:00:00Z",
    );
    mr_at(
        &gitlab,
        51,
        "example-aero",
        AERO_DEV.0,
        "2025-04-20T10:00:00Z",
    );
    mr_at(
        &gitlab,
        52,
        "example-telco",
        TELCO_DEV.0,
        "2025-03-05T10:00:00Z",
    );
    mr_at(
        &gitlab,
        53,
        "example-grid",
        OUTSIDER.0,
        "2025-05-01T00:00:00Z",
    );
    // MR 50: the author's own comment does not count; a reviewer answers 24 h later.
    gitlab.set_time("2025-02-10T12:00:00Z");
    gitlab.add_note(PROJECT_ID, 50, AERO_DEV.0, "ready for review");
    gitlab.set_time("2025-02-11T10:00:00Z");
    gitlab.add_note(PROJECT_ID, 50, 101, "Thanks, looking");
    // MR 52: an approval 4 h later.
    gitlab.set_time("2025-03-05T14:00:00Z");
    gitlab.add_system_note(PROJECT_ID, 52, 102, "approved this merge request");
    // Issues by aero's engineer: before the quarter, in it, at exactly its end.
    issue_by(&gitlab, AERO_DEV.0, "2025-01-20");
    let in_q = issue_by(&gitlab, AERO_DEV.0, "2025-03-15");
    issue_by(&gitlab, AERO_DEV.0, "2025-05-01T00:00:00Z");
    // Comments by aero's engineer: 02-10 12:00 (above), 03-16 and 04-30 23:30 count; the one
    // a minute before the quarter and the one at exactly its end do not.
    for when in [
        "2025-01-31T23:59:00Z",
        "2025-03-16",
        "2025-04-30T23:30:00Z",
        "2025-05-01T00:00:00Z",
    ] {
        gitlab.set_time(when);
        gitlab.add_issue_note(PROJECT_ID, in_q, AERO_DEV.0, "more detail");
    }
    gitlab
}

/// What happens after FY26Q1: none of it may change FY26Q1's numbers.
fn after_the_quarter(gitlab: &FakeGitLab) {
    // MR 51 is answered only now; telco's engagement is closed; aero's new one completes.
    gitlab.set_time("2025-05-02T10:00:00Z");
    gitlab.add_note(PROJECT_ID, 51, 101, "Sorry for the wait");
    close(gitlab, 3, "2025-06-10");
    reopen(gitlab, 5, "2025-09-01"); // GitLab clears `closed_at`
    move_stage(gitlab, 2, "active", "completed", "2025-07-01");
    move_stage(gitlab, 4, "meeting", "aligned", "2025-07-15");
    // A new engagement, a new MR and more activity.
    open_engagement(gitlab, "example-late", &[("2025-05-20", "prospect")]);
    mr_at(gitlab, 55, "example-aero", AERO_DEV.0, "2025-06-01");
    let later = issue_by(gitlab, AERO_DEV.0, "2025-05-04");
    gitlab.set_time("2025-05-05T09:00:00Z");
    gitlab.add_issue_note(PROJECT_ID, later, AERO_DEV.0, "later");
}

/// The example policies with vendor/product watched besides its group `vendor`.
fn overlapping_policies(dir: &std::path::Path) {
    let root = env!("CARGO_MANIFEST_DIR");
    for f in [
        "organizations.yml",
        "routing.yml",
        "agreements.yml",
        "segmentation.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/policies/{f}")).expect("policy");
        let text = if f == "routing.yml" {
            assert!(text.contains("  projects: []"), "routing.yml changed");
            text.replace("  projects: []", "  projects: [vendor/product]")
        } else {
            text
        };
        std::fs::write(dir.join(f), text).expect("write policy");
    }
}

/// Runs the real binary; returns (success, stdout, stderr).
fn cocreate(
    gitlab: &FakeGitLab,
    policies: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
        .args(args)
        .env("GITLAB_URL", gitlab.url())
        .env("GITLAB_TOKEN", gitlab.token())
        .env("COCREATE_POLICIES", policies)
        .env_remove("COCREATE_NOW")
        .output()
        .expect("run cocreate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `report --quarter FY26Q1 --now NOW`: (Markdown, JSON).
fn report_at(gitlab: &FakeGitLab, dir: &std::path::Path, now: &str) -> (String, serde_json::Value) {
    let md = dir.join(format!("report-{now}.md"));
    let json = dir.join(format!("report-{now}.json"));
    let accounts = dir.join("accounts.csv");
    let (ok, _, err) = cocreate(
        gitlab,
        &dir.join("policies"),
        &[
            "report",
            "--quarter",
            "FY26Q1",
            "--now",
            now,
            "--accounts",
            accounts.to_str().expect("path"),
            "--out",
            md.to_str().expect("path"),
            "--json-out",
            json.to_str().expect("path"),
        ],
    );
    assert!(ok, "{err}");
    let md = std::fs::read_to_string(md).expect("markdown");
    let json = std::fs::read_to_string(json).expect("json");
    (md, serde_json::from_str(&json).expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_timeline_is_exact_and_a_year_later_it_is_the_same() {
    let gitlab = second_world().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    overlapping_policies(&dir.path().join("policies"));
    std::fs::write(
        dir.path().join("accounts.csv"),
        "organization,slug,subscription,seats,industry,prior_oss,usage_growth,relationship,features_used,tech_overlap,arr\n\
         Example Aero,example-aero,Ultimate,2500,Manufacturing,yes,30%,5,9,4,\"1,250,000\"\n\
         Example Telco,example-telco,Premium,1200,Telco,no,12,4,7,4,\n\
         Example Bank,example-bank,Ultimate,3000,Finance,yes,5,3,6,2,400000\n",
    )
    .expect("accounts");

    // `policies check` accepts the overlap and warns about it.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        cocreate(
            &gitlab,
            &dir.path().join("policies"),
            &["policies", "check"],
        )
    });
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(
            "warning: routing.yml watch: project `vendor/product` is inside watched group `vendor`"
        ),
        "{out}"
    );

    gitlab.clear_calls();
    let (md, json) =
        tokio::task::block_in_place(|| report_at(&gitlab, dir.path(), "2025-05-01T06:00:00Z"));
    let m = &json["metrics"];
    assert_eq!(json["as_of"], "2025-05-01T00:00:00Z");
    // Pipeline: #2 aero-new, #3 telco, #4 grid, #5 bank (#1 completed before the quarter).
    assert_eq!(m["pipeline"], 4);
    // #2 reached meeting at exactly the start (inside); #4 at exactly the end (outside).
    assert_eq!(m["initial_meetings"], 1);
    // #3 telco (contacted, closed only in June) and #4 grid (still contacted at the end);
    // not #5 bank (closed on 04-15; reopened in September, which FY26Q1 never sees).
    assert_eq!(m["active_conversations"], 2);
    assert_eq!(m["projects_initiated"], 1); // #2 on 03-31
    assert_eq!(m["conversion_percent"], 25.0);
    assert_eq!(m["weeks_to_start"], serde_json::json!([10.0])); // 01-20 → 03-31: 70 days
    let funnel: Vec<u64> = m["funnel"]
        .as_array()
        .expect("funnel")
        .iter()
        .map(|s| s[1].as_u64().expect("n"))
        .collect();
    // prospect 4; contacted #2 #3 #4 #5; meeting only #2 (#4's came at the end); aligned to
    // active: #2 (skipped stages count as reached); nothing completed.
    assert_eq!(funnel, vec![4, 4, 1, 1, 1, 1, 0, 0]);
    // Post-project (aero's first project completed 2024-09-01, so the whole quarter): MRs 50
    // and 51; the issue of 03-15 once (not once per overlapping scope; 01-20 is before the
    // quarter, 05-01 00:00 at its end); comments of 02-10 12:00, 03-16 and 04-30 23:30.
    assert_eq!(m["post_project_organizations"], 1);
    assert_eq!(m["post_project_mrs"], 2);
    assert_eq!(m["post_project_issues"], 1);
    assert_eq!(m["post_project_comments"], 3);
    // First response: MR 50 24 h, MR 52 4 h; MR 51 was answered only after the quarter.
    assert_eq!(
        m["first_response"],
        serde_json::json!({"answered": 2, "waiting": 1, "median_hours": 14.0, "mean_hours": 14.0})
    );
    // MRs before the end: aero 54, 50, 51; telco 52 (grid's 53 came at the end).
    assert_eq!(m["contributing_organizations"], 2);
    assert_eq!(m["multi_contributing_organizations"], 1);
    // aero's gaps: 2024-10-01 → 2025-02-10 = 132 days, → 04-20 = 69 days.
    assert_eq!(m["mean_days_between_contributions"], 100.5);
    // Customers with an MR opened in the quarter: aero (50, 51) and telco (52), once each;
    // influenced ARR: aero's 1,250,000 (telco's is not in the export; bank did not contribute).
    assert_eq!(m["contributing_customers"], 2);
    assert_eq!(m["influenced_arr"], 1_250_000.0);
    assert_eq!(m["arr_unknown"], serde_json::json!(["example-telco"]));
    let orgs: Vec<&str> = m["organizations"]
        .as_array()
        .expect("orgs")
        .iter()
        .map(|l| l["org"].as_str().expect("org"))
        .collect();
    assert_eq!(
        orgs,
        vec![
            "example-aero",
            "example-bank",
            "example-grid",
            "example-telco"
        ]
    );
    for want in [
        // aero: the new engagement (#2, active in the quarter), the old one listed.
        "| example-aero | #2 | active | 2025-01-20 | 2025-03-31 | 10 | — | 3 | 2 | 2 | 1 | 3 | 24 h | 1 | 1,250,000 | #1 completed (completed 2024-09-01) |",
        "| example-bank | #5 | contacted | 2025-03-10 | — | — | — | 0 | 0 | 0 | 0 | 0 | — | 0 | 400,000 | — |",
        // grid: still `contacted` at the end; its MR at exactly the end is not the quarter's.
        "| example-grid | #4 | contacted | 2025-02-12 | — | — | — | 0 | 0 | 0 | 0 | 0 | — | 0 | — | — |",
        "| example-telco | #3 | contacted | 2025-02-10 | — | — | — | 1 | 1 | 0 | 0 | 0 | 4 h | 0 | — | — |",
        "| contributing customers (opened at least one Co-Create MR in the quarter) | 2 |",
        "| influenced ARR (of the contributing customers) | 1,250,000 (no ARR for example-telco) |",
        "| active customer conversations (contacted or meeting, open) | 2 |",
        "  s2[\"meeting: 1\"]",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    // Cost: 1 tracking-issue page + 5 label-event pages + 2 state-event pages (#3 and #4,
    // open at contacted; #5 was closed before the end) + 4 MR lists (aero, bank, grid, telco;
    // one scope: vendor/product is read through `vendor`) + 3 notes pages (MRs 50, 51, 52) +
    // aero's two usernames × (1 comment-event list + 1 issue list).
    assert_eq!(json["api_reads"], 19);
    let calls: Vec<String> = gitlab
        .calls()
        .iter()
        .map(|c| format!("{} {}?{}", c.method, c.path, c.query))
        .collect();
    let reads: Vec<&String> = calls.iter().filter(|c| !c.contains("/user?")).collect();
    assert_eq!(reads.len(), 19, "{calls:#?}");
    // The project inside the watched group is never read on its own.
    assert!(
        !reads
            .iter()
            .any(|c| c.contains("projects/vendor%2Fproduct/")),
        "{calls:#?}"
    );

    // A year later, after all that happened since, FY26Q1 is the same.
    after_the_quarter(&gitlab);
    let (md_later, json_later) =
        tokio::task::block_in_place(|| report_at(&gitlab, dir.path(), "2026-05-01T06:00:00Z"));
    // Only the cost may differ: #5, reopened, now needs its state history (one more read).
    assert_eq!(json_later["api_reads"], 20);
    let without_cost = |mut v: serde_json::Value| {
        v["elapsed_ms"] = serde_json::Value::Null;
        v["api_reads"] = serde_json::Value::Null;
        v
    };
    assert_eq!(without_cost(json_later), without_cost(json.clone()));
    let body = |md: &str| {
        md.lines()
            .filter(|l| !l.contains(" GitLab API reads, "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&md_later), body(&md));
    // …while the quarter after it sees what happened then.
    let r = tokio::task::block_in_place(|| {
        let (ok, out, err) = cocreate(
            &gitlab,
            &dir.path().join("policies"),
            &[
                "report",
                "--quarter",
                "FY26Q2",
                "--now",
                "2026-05-01T06:00:00Z",
                "--json",
            ],
        );
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).expect("json")
    });
    let q2 = &r["metrics"];
    assert_eq!(q2["projects_initiated"], 0);
    // grid's meeting at exactly 05-01 00:00 is this quarter's.
    assert_eq!(q2["initial_meetings"], 1);
    // As of 08-01: telco closed on 06-10, grid moved on to aligned, late is a prospect.
    assert_eq!(q2["active_conversations"], 0);
    // MRs 53 (at exactly the start) and 55, neither answered; 51's answer is Q1's MR's.
    assert_eq!(
        (
            q2["first_response"]["answered"].as_u64(),
            q2["first_response"]["waiting"].as_u64()
        ),
        (Some(0), Some(2))
    );
    assert_eq!(q2["contributing_customers"], 2); // aero (55), grid (53)
    assert_eq!(q2["influenced_arr"], serde_json::Value::Null);
}

#[test]
fn every_command_with_now_documents_it() {
    for cmd in [
        "report",
        "score",
        "cca-check",
        "reconcile",
        "nudge",
        "setup",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocreate"))
            .args([cmd, "--help"])
            .output()
            .expect("help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--now <RFC3339>"), "{cmd}: {help}");
        assert!(help.contains("Pretend it is this time"), "{cmd}: {help}");
    }
}

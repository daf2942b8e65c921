//! `cocreate report` against the fake GitLab: a fixture timeline of tracking issues with label
//! events at known dates and MRs/issues by organization members, with hand-computed metrics;
//! the dashboard issue is created once and then updated, never duplicated.

mod support;

use chrono::{DateTime, Utc};
use cocreate::app::{self, GitlabSettings};
use cocreate::clock::Clock;
use cocreate::gitlab::RetryPolicy;
use cocreate::handlers::Context;
use cocreate::jobs::report::{self, Quarter};
use cocreate::messages::Messages;
use cocreate::policy::Policies;
use support::fake_gitlab::{FakeGitLab, IssueSpec, MrSpec};
use support::harness::{
    seed, AERO_DEV, PROJECT_ID, PROJECT_PATH, TELCO_DEV, TRACKING_PROJECT, TRACKING_PROJECT_ID,
};

const NOW: &str = "2025-06-01T12:00:00Z";

async fn context(gitlab: &FakeGitLab) -> Context {
    let settings = GitlabSettings {
        url: gitlab.url(),
        token: Some(gitlab.token()),
        retry: RetryPolicy {
            base: std::time::Duration::from_millis(2),
            cap: std::time::Duration::from_millis(20),
            ..RetryPolicy::default()
        },
    };
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(NOW).expect("t").to_utc();
    app::build_context(
        &settings,
        Policies::embedded().expect("policies"),
        Messages::embedded().expect("templates"),
        Clock::fixed(now),
    )
    .await
    .expect("context")
}

fn stage(s: &str) -> String {
    format!("Co-Create stage::{s}")
}

/// Opens a tracking issue at the first stage, then moves it through the others at their dates.
fn engagement(gitlab: &FakeGitLab, org: &str, stages: &[(&str, &str)], closed: bool) -> u64 {
    let (first_day, first) = stages[0];
    gitlab.set_time(&format!("{first_day}T09:00:00Z"));
    let spec = IssueSpec {
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
    };
    let iid = gitlab.add_issue(spec.clone());
    let mut previous = stage(first);
    for (day, s) in &stages[1..] {
        gitlab.set_time(&format!("{day}T09:00:00Z"));
        let next = stage(s);
        gitlab.change_issue_labels(TRACKING_PROJECT_ID, iid, 25, &[&next], &[&previous]);
        previous = next;
    }
    if closed {
        let labels = gitlab.issue(TRACKING_PROJECT_ID, iid).labels;
        gitlab.add_issue(IssueSpec {
            iid,
            state: "closed".into(),
            labels,
            ..spec
        });
    }
    iid
}

fn mr(gitlab: &FakeGitLab, iid: u64, org: &str, author: u64, day: &str) {
    gitlab.set_time(&format!("{day}T10:00:00Z"));
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

/// FY26Q1 (fiscal year from February) is 2025-02-01 .. 2025-04-30.
async fn world() -> FakeGitLab {
    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    // #1 aero: contacted 01-20, active 03-17 (8.0 weeks), completed 04-01.
    engagement(
        &gitlab,
        "example-aero",
        &[
            ("2025-01-10", "prospect"),
            ("2025-01-20", "contacted"),
            ("2025-02-10", "meeting"),
            ("2025-02-20", "aligned"),
            ("2025-03-17", "active"),
            ("2025-04-01", "completed"),
        ],
        false,
    );
    // #2 telco: open at meeting (an active conversation).
    engagement(
        &gitlab,
        "example-telco",
        &[
            ("2025-02-03", "prospect"),
            ("2025-02-05", "contacted"),
            ("2025-03-01", "meeting"),
        ],
        false,
    );
    // #3 freight: contacted 02-17, active 04-28 (10.0 weeks); skipped aligned/onboarding.
    engagement(
        &gitlab,
        "example-freight",
        &[
            ("2025-02-15", "prospect"),
            ("2025-02-17", "contacted"),
            ("2025-02-24", "meeting"),
            ("2025-04-28", "active"),
        ],
        false,
    );
    // #4 mill: completed before the quarter (not in its pipeline).
    engagement(
        &gitlab,
        "example-mill",
        &[
            ("2024-10-01", "prospect"),
            ("2024-10-05", "contacted"),
            ("2024-12-01", "active"),
            ("2025-01-15", "completed"),
        ],
        false,
    );
    // #5 late: after the quarter.
    engagement(
        &gitlab,
        "example-late",
        &[("2025-05-10", "prospect")],
        false,
    );
    // #6 cold: closed at contacted.
    engagement(
        &gitlab,
        "example-cold",
        &[("2025-02-20", "prospect"), ("2025-03-01", "contacted")],
        true,
    );
    // Contributions.
    mr(&gitlab, 40, "example-aero", AERO_DEV.0, "2025-03-20");
    mr(&gitlab, 41, "example-aero", AERO_DEV.0, "2025-04-10");
    mr(&gitlab, 42, "example-aero", AERO_DEV.0, "2025-04-20");
    mr(&gitlab, 43, "example-aero", AERO_DEV.0, "2025-05-05"); // after the quarter
    mr(&gitlab, 44, "example-mill", 25, "2025-02-10");
    mr(&gitlab, 45, "example-telco", TELCO_DEV.0, "2025-03-05");
    // An issue by aero's engineer after completion, and one before.
    let mut aero_issues = vec![];
    for day in ["2025-03-25", "2025-04-15"] {
        gitlab.set_time(&format!("{day}T11:00:00Z"));
        aero_issues.push(gitlab.add_issue(IssueSpec {
            project_id: PROJECT_ID,
            project_path: PROJECT_PATH.into(),
            author_id: AERO_DEV.0,
            ..IssueSpec::default()
        }));
    }
    // Responses. MR 40 (opened 03-20 10:00): the bot's welcome and the author's own comment
    // do not count; a reviewer answers 30 h later.
    let mr_note = |iid: u64, at: &str, author: u64, body: &str, system: bool| {
        gitlab.set_time(at);
        if system {
            gitlab.add_system_note(PROJECT_ID, iid, author, body);
        } else {
            gitlab.add_note(PROJECT_ID, iid, author, body);
        }
    };
    mr_note(
        40,
        "2025-03-20T10:01:00Z",
        gitlab.bot_user_id(),
        "Welcome",
        false,
    );
    mr_note(40, "2025-03-20T12:00:00Z", AERO_DEV.0, "any news?", false);
    mr_note(40, "2025-03-21T16:00:00Z", 101, "Thanks, looking", false);
    // MR 41 (04-10 10:00): an approval 4 h later.
    mr_note(
        41,
        "2025-04-10T14:00:00Z",
        102,
        "approved this merge request",
        true,
    );
    // MR 44 (mill, opened 02-10 10:00 by the maintainer): a reviewer 48 h later.
    mr_note(44, "2025-02-12T10:00:00Z", 103, "LGTM", false);
    // MR 45 (telco): only bookkeeping, so still waiting; MR 42 (aero) has nothing.
    mr_note(45, "2025-03-05T11:00:00Z", 101, "added ~1 label", true);
    // Comments by aero's engineer after its 04-01 completion: 04-02 and 04-12 count (whole
    // days from the day after), the one on 04-01 and the one of 03-20 above do not.
    mr_note(41, "2025-04-12T09:00:00Z", AERO_DEV.0, "fixed", false);
    for at in ["2025-04-01T15:00:00Z", "2025-04-02T09:00:00Z"] {
        gitlab.set_time(at);
        gitlab.add_issue_note(PROJECT_ID, aero_issues[0], AERO_DEV.0, "more detail");
    }
    gitlab
}

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
    assert_eq!(m.post_project_comments, 2); // aero's of 04-02 and 04-12
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
    // Cost: 1 tracking-issue page + 6 label-event pages + 7 MR lists (3 policy + 4 more
    // organizations, one watched group) + 5 notes pages (the MRs opened in the quarter) + 2
    // issue totals and 2 comment totals (aero's two usernames; aero-dev-2 is unknown to
    // GitLab and counts 0).
    assert_eq!((r.api_reads, r.api_writes), (23, 0));
    assert_eq!(gitlab.calls().len(), 23);

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
        "| post-project comments (from the day after completion, in the quarter) | 2 |",
        "| example-aero | completed | 2025-01-20 | 2025-03-17 | 8 | 2025-04-01 | 3 | 2 | 1 | 2 | 17 h | 1 |",
        "| example-telco | meeting | 2025-02-05 | — | — | — | 1 | 0 | 0 | 0 | — | 1 |",
        "23 GitLab API reads, 0 writes",
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

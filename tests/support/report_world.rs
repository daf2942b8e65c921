//! The first fixture timeline of `cocreate report` (tests/report.rs), shared with the site's
//! tests (tests/site.rs, tests/site_browser.rs) so both check the same hand-computed numbers:
//! tracking issues with label events at known dates, and MRs/issues/notes by organization
//! members. FY26Q1 (fiscal year from February) is 2025-02-01 .. 2025-04-30.

use cocreate::jobs::JobContext;
use cocreate::policy::Policies;

use super::fake_gitlab::{FakeGitLab, IssueSpec, MrSpec};
use super::harness::{
    seed, AERO_DEV, PROJECT_ID, PROJECT_PATH, TELCO_DEV, TRACKING_PROJECT, TRACKING_PROJECT_ID,
};
use super::notes::CheckedGitLab;

pub const NOW: &str = "2025-06-01T12:00:00Z";

/// A `report` context with the embedded policies, at [`NOW`].
pub async fn context(gitlab: &FakeGitLab) -> JobContext {
    super::jobs::context(
        gitlab,
        Policies::embedded().expect("policies"),
        super::jobs::at(NOW),
    )
    .await
}

pub fn stage(s: &str) -> String {
    format!("Co-Create stage::{s}")
}

/// Opens a tracking issue at the first stage, then moves it through the others at their dates.
pub fn engagement(gitlab: &FakeGitLab, org: &str, stages: &[(&str, &str)], closed: bool) -> u64 {
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

pub fn mr(gitlab: &FakeGitLab, iid: u64, org: &str, author: u64, day: &str) {
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
pub async fn world() -> CheckedGitLab {
    let gitlab = CheckedGitLab::start().await;
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
    // Comments by aero's engineer after its 04-01 09:00 completion: 04-01 15:00, 04-02 and
    // 04-12 count (`[completion, end)`), the one of 03-20 above does not.
    mr_note(41, "2025-04-12T09:00:00Z", AERO_DEV.0, "fixed", false);
    for at in ["2025-04-01T15:00:00Z", "2025-04-02T09:00:00Z"] {
        gitlab.set_time(at);
        gitlab.add_issue_note(PROJECT_ID, aero_issues[0], AERO_DEV.0, "more detail");
    }
    gitlab
}

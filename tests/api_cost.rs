//! GitLab API calls per event: the budgets of the README's cost table, measured end to end
//! against the fake GitLab (3 roster members). A change that makes an event cost more fails
//! here, and so does a README table that no longer says what is measured.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use support::fake_gitlab::{IssueSpec, RecordedCall};
use support::harness::*;

/// One row of the README's cost table.
struct Budget {
    case: &'static str,
    reads: usize,
    writes: usize,
}

const BUDGETS: &[Budget] = &[
    Budget {
        case: "first MR of a new organization, cold caches",
        reads: 12,
        writes: 4,
    },
    Budget {
        case: "another MR of the organization, warm caches",
        reads: 6,
        writes: 4,
    },
    Budget {
        case: "redelivery / replay of a routed MR",
        reads: 5,
        writes: 0,
    },
    Budget {
        case: "intake issue, cold caches",
        reads: 12,
        writes: 1,
    },
    Budget {
        case: "redelivery of an intake issue",
        reads: 4,
        writes: 0,
    },
    Budget {
        case: "`help` command",
        reads: 2,
        writes: 1,
    },
    Budget {
        case: "`ready` command, roster reviewer set",
        reads: 3,
        writes: 1,
    },
];

/// `(reads, writes)` of the calls since the last `clear_calls`, asserted against the budget
/// of `case`.
fn assert_cost(h: &Harness, case: &str) -> Vec<RecordedCall> {
    let budget = BUDGETS
        .iter()
        .find(|b| b.case == case)
        .unwrap_or_else(|| panic!("no budget for {case:?}"));
    let calls = h.gitlab.calls();
    let writes = calls.iter().filter(|c| c.method != "GET").count();
    assert_eq!(
        (calls.len() - writes, writes),
        (budget.reads, budget.writes),
        "{case}: (reads, writes) {calls:#?}"
    );
    println!("{case}: {} reads, {writes} writes", calls.len() - writes);
    h.gitlab.clear_calls();
    calls
}

#[test]
fn the_readme_cost_table_is_the_budgets() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("API cost, measured by `tests/api_cost.rs`")
        .expect("the README's cost table names tests/api_cost.rs");
    let rows: Vec<(String, usize, usize)> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let number = |cell: &str| -> usize {
                let digits: String = cell.chars().take_while(char::is_ascii_digit).collect();
                digits
                    .parse()
                    .unwrap_or_else(|_| panic!("no number in {l:?}"))
            };
            (cells[1].to_owned(), number(cells[2]), number(cells[3]))
        })
        .collect();
    let budgets: Vec<(String, usize, usize)> = BUDGETS
        .iter()
        .map(|b| (b.case.to_owned(), b.reads, b.writes))
        .collect();
    assert_eq!(rows, budgets);
}

#[tokio::test]
async fn a_new_mr_cold_and_warm_and_its_redelivery() {
    let h = Harness::start().await;
    add_mr(&h.gitlab, 17, AERO_DEV.0, "Second change");
    h.gitlab.clear_calls();

    h.open_mr(16, AERO_DEV).await;
    // Writes: one PUT (labels + reviewer), the cocreate/cca status, the welcome note, the new
    // tracking issue. Reads: author, MR, notes, head commit status, the organization's tracking
    // issues, open Co-Create MRs, then per roster member: id lookup and status.
    assert_eq!(6 + 2 * ROSTER.len(), 12);
    assert_cost(&h, "first MR of a new organization, cold caches");

    h.open_mr(17, AERO_DEV).await;
    // Writes: PUT, status, welcome, and the link note on the tracking issue. Cached: author,
    // roster ids and statuses. Read: MR, notes, head status, tracking issues and the tracking
    // issue's notes, open Co-Create MRs.
    assert_cost(&h, "another MR of the organization, warm caches");
    // Sticky: the organization's reviewer takes its second MR.
    assert_eq!(h.gitlab.mr(PROJECT_ID, 17).reviewer_ids, vec![25, 101]);

    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "update"))
        .await;
    h.wait_idle().await;
    // MR, notes, head status, tracking issues and their notes: it has a roster reviewer, so no
    // load listing.
    assert_cost(&h, "redelivery / replay of a routed MR");

    assert_eq!(h.take_notes(16).len(), 1);
    assert_eq!(h.take_notes(17).len(), 1);
    let tracking = h.gitlab.issues(TRACKING_PROJECT_ID);
    assert_eq!(h.take_issue_notes(tracking[0].iid).len(), 1);
    h.stop().await;
}

const INTAKE: &str = "## Co-Create engagement request\n\n- Organization: example-aero\n- CSM: @csm-aero\n- AE: @\n- SA: @sa-aero\n- Opportunity: Faster pipelines for large monorepos\n- Customer contacts: @aero-dev-1\n\n/label ~\"Co-Create intake\"\n/confidential\n";

#[tokio::test]
async fn an_intake_issue_and_its_redelivery() {
    let h = Harness::start().await;
    let iid = h.gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: "Co-Create engagement request: Example Aero".into(),
        description: INTAKE.into(),
        author_id: 701,
        confidential: true,
        labels: vec!["Co-Create intake".into()],
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    });
    let event = |action: &str| {
        issue_event(
            iid,
            (701, "csm-aero"),
            action,
            INTAKE,
            &["Co-Create intake"],
            None,
        )
    };
    h.gitlab.clear_calls();
    h.deliver_issue(event("open")).await;
    h.wait_idle().await;
    // Issue, its notes, the organization's tracking issues, open Co-Create MRs, roster ids and
    // statuses (cold caches); one PUT.
    assert_eq!(4 + 2 * ROSTER.len(), 10);
    assert_cost(&h, "intake issue, cold caches");
    assert!(h
        .gitlab
        .issue(TRACKING_PROJECT_ID, iid)
        .labels
        .contains(&"Co-Create stage::contacted".to_string()));

    h.deliver_issue(event("update")).await;
    h.wait_idle().await;
    assert_cost(&h, "redelivery of an intake issue");
    assert!(h.take_issue_notes(iid).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn the_help_command() {
    let h = Harness::start().await;
    h.open_mr(16, AERO_DEV).await;
    h.gitlab.clear_calls();

    h.comment(16, AERO_DEV, "@cocreate-bot help").await;
    // The MR (who may command), its notes (the comment itself, the bot's replies); one reply.
    assert_cost(&h, "`help` command");

    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 2, "welcome, help: {notes:#?}");
    h.stop().await;
}

#[tokio::test]
async fn the_ready_command() {
    let h = Harness::start().await;
    h.open_mr(16, AERO_DEV).await;
    h.gitlab.clear_calls();
    h.comment(16, AERO_DEV, "Done with the changes. @cocreate-bot ready")
        .await;
    // The MR, its notes, the MR again under the lock; the reviewer is there, so no roster read.
    let calls = assert_cost(&h, "`ready` command, roster reviewer set");
    assert!(
        calls
            .iter()
            .filter(|c| c.method != "GET")
            .all(|c| c.method == "POST" && c.path.ends_with("/notes")),
        "only the reply: {calls:#?}"
    );

    let notes = h.take_notes(16);
    let markers: Vec<&str> = notes.iter().filter_map(|n| n.lines().next()).collect();
    assert_eq!(markers.len(), 2, "welcome, ready: {notes:#?}");
    assert_eq!(markers[0], "<!-- cocreate:welcome -->");
    h.stop().await;
}

//! Merged Co-Create MRs, end to end through the real router and worker: the author's thanks,
//! the tracking issue's note, the case-study label once the engagement is completed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use serde_json::Value;
use support::fake_gitlab::{IssueSpec, MrSpec, UserSpec};
use support::harness::*;

const AERO_DEV_2: (u64, &str) = (503, "aero-dev-2");
const CASE_STUDY: &str = "Co-Create case-study candidate";

/// A merged Co-Create MR of example-aero by `author`.
fn merged_mr(h: &Harness, iid: u64, author: (u64, &str)) {
    h.gitlab.add_mr(MrSpec {
        project_id: PROJECT_ID,
        iid,
        id: 1000 + iid,
        title: format!("Change {iid}"),
        author_id: author.0,
        labels: vec!["Co-Create".into(), "Co-Create org::example-aero".into()],
        state: "merged".into(),
        sha: format!("{iid:040x}"),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
}

/// GitLab's `merge` webhook for MR `iid`, with the labels it carries then.
fn merge_event(iid: u64, author: (u64, &str)) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&mr_event(iid, author, (25, "maintainer"), "merge")).unwrap();
    v["object_attributes"]["state"] = "merged".into();
    v["labels"] = serde_json::json!([
        {"id": 1, "title": "Co-Create", "type": "GroupLabel"},
        {"id": 2, "title": "Co-Create org::example-aero", "type": "GroupLabel"},
    ]);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_mrs_are_thanked_counted_and_make_a_case_study_candidate_once() {
    let h = Harness::start().await;
    h.gitlab.add_user(UserSpec::new(AERO_DEV_2.0, AERO_DEV_2.1));
    let tracking = h.gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: "Co-Create engagement: Example Aero".into(),
        description: "Engagement tracking issue".into(),
        author_id: h.gitlab.bot_user_id(),
        confidential: true,
        labels: vec![
            "Co-Create engagement".into(),
            "Co-Create org::example-aero".into(),
            "Co-Create stage::active".into(),
        ],
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    });

    // The first merge, twice (GitLab retries a delivery): one thanks, one tracking note, no label
    // while the engagement is active.
    merged_mr(&h, 40, AERO_DEV);
    for _ in 0..2 {
        h.deliver_mr(merge_event(40, AERO_DEV)).await;
        h.wait_idle().await;
    }
    let thanks = h.take_notes(40);
    assert_eq!(thanks.len(), 1, "{thanks:#?}");
    assert!(
        thanks[0].contains("Thank you, @aero-dev-1 — this merge request is merged! With it, your organization's engineers have had 1 merge request merged through Co-Create, from 1 contributor."),
        "{}",
        thanks[0]
    );
    assert!(
        !thanks[0].contains("Example Aero"),
        "nothing internal on the MR"
    );
    let notes = h.take_issue_notes(tracking);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].contains("/merge_requests/40 by @aero-dev-1. The organization now has 1 merged Co-Create merge request from 1 contributor."), "{}", notes[0]);
    assert!(!h
        .gitlab
        .issue(TRACKING_PROJECT_ID, tracking)
        .labels
        .contains(&CASE_STUDY.to_string()));

    // The engagement completes; a second engineer's MR is merged: counted with the first,
    // and the tracking issue becomes a case-study candidate.
    h.gitlab.change_issue_labels(
        TRACKING_PROJECT_ID,
        tracking,
        101,
        &["Co-Create stage::completed"],
        &["Co-Create stage::active"],
    );
    merged_mr(&h, 41, AERO_DEV_2);
    h.deliver_mr(merge_event(41, AERO_DEV_2)).await;
    h.wait_idle().await;
    let thanks = h.take_notes(41);
    assert_eq!(thanks.len(), 1, "{thanks:#?}");
    assert!(
        thanks[0]
            .contains("have had 2 merge requests merged through Co-Create, from 2 contributors"),
        "{}",
        thanks[0]
    );
    let notes = h.take_issue_notes(tracking);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[1].contains("labelled `Co-Create case-study candidate`"),
        "{}",
        notes[1]
    );
    assert!(h
        .gitlab
        .issue(TRACKING_PROJECT_ID, tracking)
        .labels
        .contains(&CASE_STUDY.to_string()));

    // Both merges delivered again: nothing more.
    h.gitlab.clear_calls();
    h.deliver_mr(merge_event(40, AERO_DEV)).await;
    h.deliver_mr(merge_event(41, AERO_DEV_2)).await;
    h.wait_idle().await;
    assert!(h.gitlab.writes().is_empty(), "{:#?}", h.gitlab.writes());

    // A merge without the Co-Create label costs nothing.
    h.gitlab.clear_calls();
    let mut plain: Value = serde_json::from_slice(&merge_event(16, AERO_DEV)).unwrap();
    plain["labels"] = serde_json::json!([]);
    h.deliver_mr(serde_json::to_vec(&plain).unwrap()).await;
    h.wait_idle().await;
    assert_eq!(h.gitlab.calls().len(), 0, "{:#?}", h.gitlab.calls());
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:mr-merged:2!41"), @r"
    <!-- cocreate:mr-merged:2!41 -->
    Merged: http://gitlab.example.com/vendor/product/-/merge_requests/41 by @aero-dev-2. The organization now has 2 merged Co-Create merge requests from 2 contributors. The engagement reached the recognition threshold: labelled `Co-Create case-study candidate` — a candidate for a case study and social media recognition.
    ");
    h.stop().await;
}

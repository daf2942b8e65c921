//! Contributor commands in MR comments, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use support::harness::*;

/// `!16` opened and welcomed.
async fn routed(h: &Harness) {
    h.open_mr(16, AERO_DEV).await;
    assert_eq!(h.take_notes(16).len(), 1, "welcome");
}

/// A comment on `!16` as GitLab has it: saved on the MR, then its webhook delivered.
async fn comment(h: &Harness, by: (u64, &str), body: &str) -> u64 {
    h.comment(16, by, body).await
}

async fn deliver(h: &Harness, note_id: u64, by: (u64, &str), body: &str) {
    h.deliver_comment(16, note_id, by, body).await;
}

fn last(notes: &[String]) -> &str {
    notes.last().map(String::as_str).unwrap_or("")
}

#[tokio::test]
async fn help_is_answered_once_even_on_redelivery() {
    let h = Harness::start().await;
    routed(&h).await;
    // Its API cost is budgeted in tests/api_cost.rs.
    let id = comment(&h, AERO_DEV, "@cocreate-bot help").await;
    deliver(&h, id, AERO_DEV, "@cocreate-bot help").await;
    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    let help = last(&notes);
    assert!(
        help.starts_with(&format!("<!-- cocreate:cmd:{id} -->")),
        "{help}"
    );
    assert!(
        help.contains("`@cocreate-bot ready`") && help.contains("`@cocreate-bot recheck`"),
        "{help}"
    );
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:cmd:"), @r#"
    <!-- cocreate:cmd:2 -->
    <!-- cocreate:cmd-to:501 -->
    @aero-dev-1, here is what you can ask me in a comment on this merge request:

    - `@cocreate-bot ready` — ask for a review: I make sure a Contributor Success reviewer is assigned and let them know.
    - `@cocreate-bot recheck` — check your organization's Corporate Contributor Agreement again right now.
    - `@cocreate-bot help` — this list.
    "#);
    h.stop().await;
}

#[tokio::test]
async fn ready_keeps_the_reviewer_and_pings_them() {
    let h = Harness::start().await;
    routed(&h).await;
    h.gitlab.clear_calls();
    comment(&h, AERO_DEV, "Done with the changes. @cocreate-bot ready").await;
    // Its reads are budgeted in tests/api_cost.rs.
    let notes = h.take_notes(16);
    assert!(
        last(&notes)
            .contains("@cs-reviewer-1, @aero-dev-1 says this merge request is ready for review"),
        "{}",
        last(&notes)
    );
    assert_eq!(h.gitlab.mr(PROJECT_ID, 16).reviewer_ids, vec![25, 101]);
    assert!(
        h.gitlab.writes().iter().all(|w| w.method == "POST"),
        "only the reply: {:#?}",
        h.gitlab.writes()
    );
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:cmd:"), @r#"
    <!-- cocreate:cmd:2 -->
    <!-- cocreate:cmd-to:501 -->
    @cs-reviewer-1, @aero-dev-1 says this merge request is ready for review. Thank you!
    "#);
    h.stop().await;
}

#[tokio::test]
async fn recheck_updates_the_cca_at_once() {
    let h = Harness::start().await;
    add_mr(&h.gitlab, 21, TELCO_DEV.0, "Telco change");
    h.deliver_mr(mr_event(21, TELCO_DEV, TELCO_DEV, "open"))
        .await;
    h.wait_idle().await;
    assert_eq!(h.take_notes(21).len(), 1);
    // Recheck evaluates the agreement again at once and says what it found.
    let id = h
        .gitlab
        .add_note(PROJECT_ID, 21, TELCO_DEV.0, "@cocreate-bot recheck");
    let r = h
        .deliver(
            "Note Hook",
            note_event(21, TELCO_DEV.0, id, TELCO_DEV, "@cocreate-bot recheck"),
            Some(&new_uuid()),
        )
        .await;
    assert_eq!(r.status(), 200);
    h.wait_idle().await;
    let notes = h.take_notes(21);
    assert!(
        last(&notes).contains("is **no longer current**"),
        "{}",
        last(&notes)
    );
    assert!(h
        .gitlab
        .mr(PROJECT_ID, 21)
        .labels
        .contains(&"CCA::expired".to_string()));
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:cmd:"), @r#"
    <!-- cocreate:cmd:2 -->
    <!-- cocreate:cmd-to:502 -->
    @tdev, I checked again: your organization's Corporate Contributor Agreement is **no longer current**. Labels and the `cocreate/cca` status are up to date.
    "#);
    h.stop().await;
}

#[tokio::test]
async fn strangers_get_one_polite_note_and_code_blocks_do_nothing() {
    let h = Harness::start().await;
    routed(&h).await;
    comment(&h, OUTSIDER, "@cocreate-bot ready").await;
    let notes = h.take_notes(16);
    assert!(
        last(&notes).contains("only the author of this merge request"),
        "{}",
        last(&notes)
    );
    h.gitlab.clear_calls();
    comment(
        &h,
        AERO_DEV,
        "The bot says:\n```\n@cocreate-bot ready\n```\n> @cocreate-bot recheck",
    )
    .await;
    comment(&h, AERO_DEV, "@cocreate-bot deploy `now`").await;
    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 3, "welcome, denied, unknown: {notes:#?}");
    assert!(
        last(&notes).contains("I don't know the command `deploy`"),
        "{}",
        last(&notes)
    );
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:cmd-denied"), @r#"
    <!-- cocreate:cmd:2 -->
    <!-- cocreate:cmd-to:600 -->
    <!-- cocreate:cmd-denied:600 -->
    @outsider, thanks — only the author of this merge request, its reviewers and the Contributor Success team can give me commands here.
    "#);
    insta::assert_snapshot!(h.gitlab.posted_with("I don't know the command"), @r#"
    <!-- cocreate:cmd:5 -->
    <!-- cocreate:cmd-to:501 -->
    @aero-dev-1, I don't know the command `deploy`. Try `@cocreate-bot help` for the list.
    "#);
    h.stop().await;
}

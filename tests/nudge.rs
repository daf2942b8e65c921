//! `cocreate nudge` with a set clock, over MRs at each stage of waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use cocreate::jobs::nudge;
use cocreate::jobs::JobContext;
use cocreate::policy::EMBEDDED;
use support::fake_gitlab::{FakeGitLab, IssueSpec, MrSpec};
use support::harness::{seed, Harness, AERO_DEV, TRACKING_PROJECT, TRACKING_PROJECT_ID};
use support::jobs::{self, at};
use support::notes::CheckedGitLab;

/// A `nudge` context at `now`, with the example organizations and routing (no agreements).
async fn context(gitlab: &FakeGitLab, now: &str) -> JobContext {
    let policies = jobs::policies(&[
        ("organizations.yml", EMBEDDED[0].1),
        ("routing.yml", EMBEDDED[1].1),
    ]);
    jobs::context(gitlab, policies, at(now)).await
}

/// An open Co-Create MR by the aero engineer, reviewed by cs-reviewer-1 (101), opened at `at`.
fn mr(gitlab: &FakeGitLab, iid: u64, at: &str) {
    gitlab.set_time(at);
    gitlab.add_mr(MrSpec {
        project_id: 2,
        iid,
        id: 3000 + iid,
        title: format!("Change {iid}"),
        author_id: AERO_DEV.0,
        labels: vec!["Co-Create".into(), "Co-Create org::example-aero".into()],
        reviewer_ids: vec![101],
        sha: format!("{iid:040x}"),
        project_path: "vendor/product".into(),
        ..MrSpec::default()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_escalate_remind_and_nothing_twice() {
    let gitlab = CheckedGitLab::start().await;
    seed(&gitlab);
    // !61: opened Monday, waiting for its reviewer. !62: opened Friday (a weekend in between).
    // !63: the reviewer answered 36 days ago; the author has not come back.
    mr(&gitlab, 61, "2026-11-02T10:00:00Z");
    mr(&gitlab, 62, "2026-11-06T10:00:00Z");
    mr(&gitlab, 63, "2026-09-28T10:00:00Z");
    gitlab.set_time("2026-10-01T10:00:00Z");
    gitlab.add_note(2, 63, 101, "Looks good, two small things to fix.");

    // Friday: !61 has waited 4 business days → ping + overdue label. !62: 0 days.
    let ctx = context(&gitlab, "2026-11-06T18:00:00Z").await;
    let r = nudge::run(&ctx).await.expect("runs");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let pings = gitlab.take_mr_notes(2, 61);
    assert_eq!(pings.len(), 1);
    assert!(
        pings[0]
            .contains("@cs-reviewer-1: this Co-Create merge request has waited 4 business days"),
        "{}",
        pings[0]
    );
    assert!(gitlab
        .mr(2, 61)
        .labels
        .contains(&"Co-Create review::overdue".to_string()));
    let reminders = gitlab.take_mr_notes(2, 63);
    assert_eq!(reminders.len(), 1);
    assert!(
        reminders[0].contains("Hi @aero-dev-1, a friendly reminder"),
        "{}",
        reminders[0]
    );

    // Wednesday after: !62 has waited 3 business days (5 calendar days): nothing.
    // The same run again writes nothing.
    let ctx = context(&gitlab, "2026-11-11T18:00:00Z").await;
    gitlab.clear_calls();
    nudge::run(&ctx).await.expect("runs");
    assert!(
        gitlab.take_mr_notes(2, 62).is_empty(),
        "weekends do not count"
    );
    assert!(gitlab.writes().is_empty(), "{:#?}", gitlab.writes());

    // Thursday: !61 has waited 8 business days → handed to another roster member.
    let ctx = context(&gitlab, "2026-11-12T18:00:00Z").await;
    nudge::run(&ctx).await.expect("runs");
    let notes = gitlab.take_mr_notes(2, 61);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[1].contains("could you take over the review"),
        "{}",
        notes[1]
    );
    // The same day !62 (opened Friday) has waited 4 business days: its first ping.
    let pings = gitlab.take_mr_notes(2, 62);
    assert_eq!(pings.len(), 1, "{pings:#?}");
    assert!(
        pings[0]
            .contains("@cs-reviewer-1: this Co-Create merge request has waited 4 business days"),
        "{}",
        pings[0]
    );
    let reviewers = gitlab.mr(2, 61).reviewer_ids;
    assert!(
        !reviewers.contains(&101) && reviewers.len() == 1,
        "{reviewers:?}"
    );

    // The new reviewer answers: the author's turn, the overdue label goes.
    gitlab.set_time("2026-11-12T19:00:00Z");
    gitlab.add_note(2, 61, reviewers[0], "On it.");
    let ctx = context(&gitlab, "2026-11-13T09:00:00Z").await;
    nudge::run(&ctx).await.expect("runs");
    assert!(!gitlab
        .mr(2, 61)
        .labels
        .contains(&"Co-Create review::overdue".to_string()));
    gitlab.clear_calls();
    let again = nudge::run(&ctx).await.expect("runs");
    assert_eq!(again.api_writes, 0);
    println!(
        "nudge on 3 MRs: {} reads (pages + one notes read per MR)",
        again.api_reads
    );
    insta::assert_snapshot!(gitlab.posted_with("cocreate:nudge-ping"), @r#"
    <!-- cocreate:nudge-ping:2026-11-02T10:00 -->
    @cs-reviewer-1: this Co-Create merge request has waited 4 business days for a review. @aero-dev-1 is looking forward to your feedback — could you take a look, or hand it on if you can't?
    "#);
    insta::assert_snapshot!(gitlab.posted_with("cocreate:nudge-escalate"), @r#"
    <!-- cocreate:nudge-escalate:2026-11-02T10:00 -->
    @cs-reviewer-2: could you take over the review of this Co-Create merge request? It has waited 8 business days; @cs-reviewer-1 seems to be unavailable. Thank you!
    "#);
    insta::assert_snapshot!(gitlab.posted_with("cocreate:nudge-author"), @r#"
    <!-- cocreate:nudge-author:2026-10-01T10:00 -->
    Hi @aero-dev-1, a friendly reminder: this merge request has been waiting on you for 36 days. If you need help, write `@cocreate-bot help` or just reply here — and if you no longer plan to continue, that's fine too; let us know and we'll take it from here.
    "#);
}

/// `serve` publishes how many open Co-Create MRs are overdue (the label `nudge` keeps) as the
/// `cocreate_reviews_overdue` gauge, read from GitLab every `--overdue-refresh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exposes_the_overdue_gauge() {
    let h = Harness::start_with(|s| {
        s.overdue_refresh = Some(std::time::Duration::from_millis(50));
    })
    .await;
    let overdue = |iid: u64, labels: &[&str], state: &str| {
        h.gitlab.add_mr(MrSpec {
            project_id: 2,
            iid,
            id: 3000 + iid,
            author_id: AERO_DEV.0,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            state: state.into(),
            sha: format!("{iid:040x}"),
            project_path: "vendor/product".into(),
            ..MrSpec::default()
        });
    };
    let both = ["Co-Create", "Co-Create review::overdue"];
    overdue(71, &both, "opened");
    overdue(72, &both, "opened");
    overdue(73, &both, "merged"); // not open
    overdue(74, &["Co-Create"], "opened"); // not overdue
    overdue(75, &["Co-Create review::overdue"], "opened"); // not Co-Create
    let gauge = |want: &'static str| {
        let url = format!("{}/metrics", h.url());
        let http = h.http.clone();
        async move {
            let mut last = String::new();
            for _ in 0..100 {
                last = http
                    .get(&url)
                    .send()
                    .await
                    .expect("scrape")
                    .text()
                    .await
                    .expect("body");
                if last
                    .lines()
                    .any(|l| l == format!("cocreate_reviews_overdue {want}"))
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("cocreate_reviews_overdue never became {want}:\n{last}");
        }
    };
    gauge("2").await;
    // The review of !72 was answered: nudge took the label off.
    overdue(72, &["Co-Create"], "opened");
    gauge("1").await;
    h.stop().await;
}

/// An open tracking issue of `org` at `stage`, opened now by `author_id`, assigned to the DRI.
fn tracking(gitlab: &FakeGitLab, org: &str, stage: &str, author_id: u64, description: &str) -> u64 {
    gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: format!("Co-Create engagement: {org}"),
        description: description.into(),
        author_id,
        confidential: true,
        labels: vec![
            "Co-Create engagement".into(),
            format!("Co-Create org::{org}"),
            format!("Co-Create stage::{stage}"),
        ],
        assignee_ids: vec![101],
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    })
}

/// Engagements that stop moving: the CSM hears about one stuck at `contacted`, then again when
/// it is stuck at `meeting`; the Contributor Success lead about one `aligned` without
/// onboarding; one note per stay however often `nudge` runs; weekends do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_engagements_get_one_note_per_stay() {
    let gitlab = CheckedGitLab::start().await;
    seed(&gitlab);
    // Monday: an intake naming its CSM (aero) and a tracking issue the bot opened (telco,
    // whose CSM comes from organizations.yml), both at `contacted`; bank is onboarding.
    gitlab.set_time("2026-11-02T10:00:00Z");
    let aero = tracking(
        &gitlab,
        "example-aero",
        "contacted",
        701,
        "- Organization: example-aero\n- CSM: @csm-aero\n- Opportunity: Faster pipelines\n",
    );
    let telco = tracking(
        &gitlab,
        "example-telco",
        "contacted",
        gitlab.bot_user_id(),
        "Engagement tracking issue",
    );
    let bank = tracking(
        &gitlab,
        "example-bank",
        "onboarding",
        gitlab.bot_user_id(),
        "Engagement tracking issue",
    );
    // Thursday: telco is aligned.
    gitlab.set_time("2026-11-05T15:00:00Z");
    gitlab.change_issue_labels(
        TRACKING_PROJECT_ID,
        telco,
        101,
        &["Co-Create stage::aligned"],
        &["Co-Create stage::contacted"],
    );

    // Friday of the second week: aero has waited 9 business days. Nothing yet.
    let ctx = context(&gitlab, "2026-11-13T18:00:00Z").await;
    gitlab.clear_calls();
    let r = nudge::run(&ctx).await.expect("runs");
    assert!(r.stalls.errors.is_empty(), "{:?}", r.stalls.errors);
    assert_eq!(r.stalls.engagements.len(), 3);
    assert!(gitlab.writes().is_empty(), "{:#?}", gitlab.writes());

    // Monday: 10 business days at `contacted` → one note to aero's CSM.
    let ctx = context(&gitlab, "2026-11-16T09:00:00Z").await;
    let r = nudge::run(&ctx).await.expect("runs");
    assert_eq!(r.stalls.stalled(), 1);
    let notes = gitlab.take_issue_notes(TRACKING_PROJECT_ID, aero);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(
        notes[0]
            .contains("@csm-aero: this engagement has been at `contacted` for 10 business days"),
        "{}",
        notes[0]
    );
    // Again the same day, and the next: nothing more.
    for now in ["2026-11-16T12:00:00Z", "2026-11-17T08:00:00Z"] {
        let ctx = context(&gitlab, now).await;
        gitlab.clear_calls();
        nudge::run(&ctx).await.expect("runs");
        assert!(gitlab.writes().is_empty(), "{now}: {:#?}", gitlab.writes());
    }

    // The CSM holds the first call: `meeting`. Thursday after: telco has been aligned for 10
    // business days → one note to the lead; aero's new stay has just begun.
    gitlab.set_time("2026-11-17T10:00:00Z");
    gitlab.change_issue_labels(
        TRACKING_PROJECT_ID,
        aero,
        701,
        &["Co-Create stage::meeting"],
        &["Co-Create stage::contacted"],
    );
    let ctx = context(&gitlab, "2026-11-19T16:00:00Z").await;
    nudge::run(&ctx).await.expect("runs");
    assert!(gitlab.take_issue_notes(TRACKING_PROJECT_ID, aero).len() == 1);
    let notes = gitlab.take_issue_notes(TRACKING_PROJECT_ID, telco);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(
        notes[0].contains("@cs-lead: this engagement has been `aligned` for 10 business days without an onboarding session"),
        "{}",
        notes[0]
    );

    // Ten business days at `meeting` (1 December): the CSM again, once. Bank never stalls here.
    for now in [
        "2026-12-01T09:00:00Z",
        "2026-12-01T17:00:00Z",
        "2026-12-02T09:00:00Z",
    ] {
        let ctx = context(&gitlab, now).await;
        let r = nudge::run(&ctx).await.expect("runs");
        assert!(r.stalls.errors.is_empty(), "{:?}", r.stalls.errors);
    }
    let notes = gitlab.take_issue_notes(TRACKING_PROJECT_ID, aero);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[1].contains("@csm-aero: this engagement has been at `meeting` for 10 business days"),
        "{}",
        notes[1]
    );
    assert_eq!(gitlab.take_issue_notes(TRACKING_PROJECT_ID, telco).len(), 1);
    assert!(gitlab
        .take_issue_notes(TRACKING_PROJECT_ID, bank)
        .is_empty());
    insta::assert_snapshot!(gitlab.posted_with("cocreate:engagement-stall:aligned"), @r"
    <!-- cocreate:engagement-stall:aligned:2026-11-05T15:00 -->
    @cs-lead: this engagement has been `aligned` for 10 business days without an onboarding session. Could you schedule onboarding with the customer's engineers (then set `Co-Create stage::onboarding`), or note here what it is waiting for?
    ");
}

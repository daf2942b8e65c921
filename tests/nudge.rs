//! `cocreate nudge` with a set clock, over MRs at each stage of waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use cocreate::jobs::nudge;
use cocreate::jobs::JobContext;
use cocreate::policy::EMBEDDED;
use support::fake_gitlab::{FakeGitLab, MrSpec};
use support::harness::{seed, Harness, AERO_DEV};
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

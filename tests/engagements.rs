//! Engagement tracking issues, end to end through the real router and worker.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use support::fake_gitlab::IssueSpec;
use support::harness::*;

const INTAKE: &str = "## Co-Create engagement request\n\n- Organization: example-aero\n- CSM: @csm-aero\n- AE: @\n- SA: @sa-aero\n- Opportunity: Faster pipelines for large monorepos\n- Customer contacts: @aero-dev-1\n\n/label ~\"Co-Create intake\"\n/confidential\n";

fn intake_issue(h: &Harness, description: &str, labels: &[&str]) -> u64 {
    h.gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: "Co-Create engagement request: Example Aero".into(),
        description: description.into(),
        author_id: 701,
        confidential: true,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    })
}

#[tokio::test]
async fn an_intake_issue_becomes_the_tracking_issue() {
    let h = Harness::start().await;
    let iid = intake_issue(&h, INTAKE, &["Co-Create intake"]);
    h.gitlab.clear_calls();
    h.deliver_issue(issue_event(
        iid,
        (701, "csm-aero"),
        "open",
        INTAKE,
        &["Co-Create intake"],
        None,
    ))
    .await;
    h.wait_idle().await;
    // Its API cost is budgeted in tests/api_cost.rs.
    let issue = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert_eq!(
        issue.labels,
        vec![
            "Co-Create engagement",
            "Co-Create org::example-aero",
            "Co-Create stage::contacted"
        ]
    );
    assert!(
        issue.description.starts_with(INTAKE.trim_end()),
        "what the account team wrote stays"
    );
    assert!(issue.description.contains("## Co-Create checklist"));
    assert!(issue
        .description
        .contains("`#cocreate-initiative-example-aero`"));
    assert_eq!(
        issue.assignee_ids,
        vec![101, 701, 702],
        "the Contributor Success DRI, then the intake's CSM and SA"
    );
    assert!(h.take_issue_notes(iid).is_empty());

    // Redelivery and the bot's own follow-up event change nothing.
    h.gitlab.clear_calls();
    h.deliver_issue(issue_event(
        iid,
        (701, "csm-aero"),
        "update",
        INTAKE,
        &["Co-Create intake"],
        None,
    ))
    .await;
    h.wait_idle().await;
    assert!(h.gitlab.writes().is_empty(), "{:#?}", h.gitlab.writes());
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_intake_gets_one_note_saying_what_is_missing() {
    let h = Harness::start().await;
    let text = "- Organization: @all /close <b>x</b>\n- CSM: @\n- Opportunity:\n";
    let iid = intake_issue(&h, text, &["Co-Create intake"]);
    for action in ["open", "update"] {
        h.deliver_issue(issue_event(
            iid,
            (701, "csm-aero"),
            action,
            text,
            &["Co-Create intake"],
            None,
        ))
        .await;
        h.wait_idle().await;
    }
    let notes = h.take_issue_notes(iid);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let note = &notes[0];
    assert!(note.contains("CSM: missing"), "{note}");
    assert!(note.contains("Opportunity: missing"), "{note}");
    assert!(
        note.contains("is not a Co-Create organization yet"),
        "{note}"
    );
    assert!(!note.contains("@all") && !note.contains("<b>"), "{note}");
    assert!(
        note.lines().all(|l| !l.trim_start().starts_with('/')),
        "{note}"
    );
    let issue = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert_eq!(issue.labels, vec!["Co-Create intake"], "not converted");
    // The word joiner that keeps `@all` from pinging anyone, made visible.
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:intake-invalid").replace('\u{2060}', "<U+2060>"), @r#"
    <!-- cocreate:intake-invalid:2e97d1e81c1f -->
    Thanks for starting a Co-Create engagement request. Before it can become the engagement's tracking issue, please fix the description:

    - Organization: `@<U+2060>all \/close &lt;b&gt;x&lt;\/b&gt;` is not a Co-Create organization yet (add it to policies/organizations.yml first)
    - CSM: missing (the CSM's GitLab username)
    - Opportunity: missing (one or two sentences on what we would build together)

    Edit the issue description; cocreate checks it again on every update. Known organizations: `example-aero`, `example-telco`, `example-bank`.
    "#);
    h.stop().await;
}

#[tokio::test]
async fn a_second_intake_for_the_same_organization_is_linked_to_the_first() {
    let h = Harness::start().await;
    let first = intake_issue(
        &h,
        INTAKE,
        &[
            "Co-Create engagement",
            "Co-Create org::example-aero",
            "Co-Create stage::meeting",
        ],
    );
    let second = intake_issue(&h, INTAKE, &["Co-Create intake"]);
    h.deliver_issue(issue_event(
        second,
        (701, "csm-aero"),
        "open",
        INTAKE,
        &["Co-Create intake"],
        None,
    ))
    .await;
    h.wait_idle().await;
    let notes = h.take_issue_notes(second);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains(&format!("#{first}")), "{}", notes[0]);
    assert!(h
        .gitlab
        .issue(TRACKING_PROJECT_ID, second)
        .links
        .contains(&(TRACKING_PROJECT_ID, first)));
    assert_eq!(
        h.gitlab.issue(TRACKING_PROJECT_ID, second).labels,
        vec!["Co-Create intake"]
    );
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:intake-duplicate"), @r#"
    <!-- cocreate:intake-duplicate:1 -->
    **Example Aero** already has an open engagement tracking issue: #1. I linked the two; please continue there and close this one when you have moved anything useful over.
    "#);
    h.stop().await;
}

#[tokio::test]
async fn the_first_mr_of_an_organization_opens_one_tracking_issue_and_later_mrs_are_linked_once() {
    let h = Harness::start().await;
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    let issues = h.gitlab.issues(TRACKING_PROJECT_ID);
    assert_eq!(issues.len(), 1);
    let t = &issues[0];
    assert!(t.confidential, "tracking issues are confidential");
    assert_eq!(
        t.labels,
        vec![
            "Co-Create engagement",
            "Co-Create org::example-aero",
            "Co-Create stage::active"
        ]
    );
    assert_eq!(t.assignee_ids, vec![101], "the MR's reviewer is the DRI");
    assert!(
        t.description.contains("<!-- cocreate:mr-link:2!16 -->"),
        "{}",
        t.description
    );
    assert!(
        t.description.contains("tier 1"),
        "internal data belongs on the tracking issue"
    );
    // ...and never on the public MR.
    let welcome = h.take_notes(16);
    assert!(
        !welcome[0].contains("tier") && !welcome[0].contains("csm-aero"),
        "{}",
        welcome[0]
    );

    add_mr(&h.gitlab, 17, AERO_DEV.0, "Second change");
    for _ in 0..2 {
        h.deliver_mr(mr_event(17, AERO_DEV, AERO_DEV, "open")).await;
        h.wait_idle().await;
    }
    assert_eq!(h.gitlab.issues(TRACKING_PROJECT_ID).len(), 1);
    let links = h.take_issue_notes(t.iid);
    assert_eq!(links.len(), 1, "{links:#?}");
    assert!(
        links[0].starts_with("<!-- cocreate:mr-link:2!17 -->"),
        "{}",
        links[0]
    );
    assert_eq!(h.take_notes(17).len(), 1);
    // Sticky to the engagement's DRI.
    assert_eq!(h.gitlab.mr(PROJECT_ID, 17).reviewer_ids, vec![25, 101]);
    h.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_events_of_a_new_organization_open_one_tracking_issue() {
    let h = Harness::start().await;
    for iid in 40..60 {
        add_mr(&h.gitlab, iid, AERO_DEV.0, "Parallel change");
    }
    let sends = (40..60).map(|iid| h.deliver_mr(mr_event(iid, AERO_DEV, AERO_DEV, "open")));
    futures_util::future::join_all(sends).await;
    h.wait_idle().await;
    let issues = h.gitlab.issues(TRACKING_PROJECT_ID);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let t = &issues[0];
    // Every MR is linked exactly once (the first in the description, the others by a note).
    let notes = h.take_issue_notes(t.iid);
    assert_eq!(notes.len(), 19);
    for iid in 40..60u64 {
        let marker = format!("<!-- cocreate:mr-link:2!{iid} -->");
        let count = notes.iter().filter(|n| n.contains(&marker)).count()
            + usize::from(t.description.contains(&marker));
        assert_eq!(count, 1, "MR {iid}");
        assert_eq!(h.take_notes(iid).len(), 1);
    }
    h.stop().await;
}

#[tokio::test]
async fn one_stage_at_a_time_and_a_note_when_a_step_is_skipped() {
    let h = Harness::start().await;
    let labels = [
        "Co-Create engagement",
        "Co-Create org::example-aero",
        "Co-Create stage::contacted",
        "Co-Create stage::meeting",
    ];
    let iid = intake_issue(&h, "tracking", &labels[..3]);
    h.label_issue(iid, (701, "csm-aero"), &[labels[3]], &[])
        .await;
    assert_eq!(
        h.gitlab.issue(TRACKING_PROJECT_ID, iid).labels,
        vec![
            "Co-Create engagement",
            "Co-Create org::example-aero",
            "Co-Create stage::meeting"
        ]
    );
    // At `meeting`, the account team is asked once for the alignment meeting
    // (tests/engagement_follow_through.rs).
    let notes = h.take_issue_notes(iid);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].starts_with("<!-- cocreate:meeting-request -->"));

    // Jumping to active without a pathway: the label stays, one heads-up note.
    let now = [
        "Co-Create engagement",
        "Co-Create org::example-aero",
        "Co-Create stage::meeting",
        "Co-Create stage::active",
    ];
    h.gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        iid,
        title: "Co-Create engagement request: Example Aero".into(),
        description: "tracking".into(),
        labels: now.iter().map(|l| l.to_string()).collect(),
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    });
    for _ in 0..2 {
        h.deliver_issue(issue_event(
            iid,
            (701, "csm-aero"),
            "update",
            "tracking",
            &now,
            Some(&now[..3]),
        ))
        .await;
        h.wait_idle().await;
    }
    let issue = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert!(issue
        .labels
        .contains(&"Co-Create stage::active".to_string()));
    assert!(!issue
        .labels
        .contains(&"Co-Create stage::meeting".to_string()));
    let notes: Vec<String> = h
        .take_issue_notes(iid)
        .into_iter()
        .filter(|n| n.contains("cocreate:stage-skip"))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(
        notes[0].contains("no `minor` or `major` pathway"),
        "{}",
        notes[0]
    );
    insta::assert_snapshot!(h.gitlab.posted_with("cocreate:stage-skip"), @r#"
    <!-- cocreate:stage-skip:stage-without-pathway:active -->
    Heads-up: stage `active` is set, but no `minor` or `major` pathway was decided: the program aligns on a pathway first. The label stays as you set it; please check the checklist above.
    "#);
    h.stop().await;
}

#[test]
fn shipped_issue_templates_match_their_sources() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, embedded) in cocreate::messages::ISSUE_TEMPLATES {
        let source = std::fs::read_to_string(root.join("templates/issue_templates").join(name))
            .expect("source");
        let shipped = std::fs::read_to_string(root.join(".gitlab/issue_templates").join(name))
            .unwrap_or_else(|e| panic!(".gitlab/issue_templates/{name}: {e}"));
        assert_eq!(
            shipped, source,
            "{name} drifted: copy templates/issue_templates/{name} to .gitlab/issue_templates/"
        );
        assert_eq!(*embedded, source);
    }
    let shipped = std::fs::read_dir(root.join(".gitlab/issue_templates"))
        .expect("dir")
        .count();
    assert_eq!(
        shipped,
        cocreate::messages::ISSUE_TEMPLATES.len(),
        "an unknown template in .gitlab/issue_templates"
    );
}

/// A tracking issue collects one link note per MR of its organization. Its notes are read
/// once, then only from the page where the last read stopped: an MR event no longer reads
/// every link note again.
#[tokio::test]
async fn a_tracking_issue_with_many_notes_is_read_incrementally() {
    use cocreate::decide::engagement::IssueRef;
    use support::fake_gitlab::FakeGitLab;

    let gitlab = FakeGitLab::start().await;
    seed(&gitlab);
    let iid = gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        project_path: TRACKING_PROJECT.into(),
        title: "Co-Create engagement: example-aero".into(),
        confidential: true,
        ..IssueSpec::default()
    });
    let bot = gitlab.bot_user_id();
    let link = |n: u64| format!("<!-- cocreate:mr-link:vendor/product!{n} -->\nLinked !{n}.");
    for n in 1..=250 {
        gitlab.add_issue_note(TRACKING_PROJECT_ID, iid, bot, &link(n));
    }
    // Someone else's note with a marker-like text does not count.
    gitlab.add_issue_note(TRACKING_PROJECT_ID, iid, 701, &link(900));
    let ctx = support::jobs::context(
        &gitlab,
        cocreate::policy::Policies::embedded().expect("policies"),
        cocreate::clock::Clock::system(),
    )
    .await;
    let live = ctx.gitlab().expect("live");
    let issue = IssueRef {
        project: TRACKING_PROJECT.into(),
        iid,
    };

    gitlab.clear_calls();
    let first = live
        .facts
        .issue_markers(&live.client, &issue)
        .await
        .expect("markers");
    assert_eq!(first.len(), 250);
    assert_eq!(gitlab.calls().len(), 3, "3 pages of 100");

    gitlab.add_issue_note(TRACKING_PROJECT_ID, iid, bot, &link(251));
    gitlab.clear_calls();
    let second = live
        .facts
        .issue_markers(&live.client, &issue)
        .await
        .expect("markers");
    assert_eq!(second.len(), 251);
    assert!(second
        .iter()
        .any(|m| m.to_string() == "<!-- cocreate:mr-link:vendor/product!251 -->"));
    let calls = gitlab.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(calls[0].query.contains("page=3"), "{}", calls[0].query);
}

//! After the intake, end to end through the real router and worker against the fake GitLab:
//! the account team on the engagement (assigned, or listed once), the alignment-meeting request
//! when the stage becomes `meeting`, the meeting-notes and onboarding issues linked to their
//! engagement, and the welcome note's getting-started links. Each step is delivered more than
//! once; each write happens once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use support::fake_gitlab::IssueSpec;
use support::harness::*;

const INTAKE: &str = "## Co-Create engagement request\n\n- Organization: example-aero\n- CSM: @csm-aero\n- AE: @ae-aero\n- SA: @sa-aero\n- Opportunity: Faster pipelines for large monorepos\n- Customer contacts: @aero-dev-1\n";

/// The example policies with each `(from, to)` replaced in routing.yml.
fn policies_with(
    s: &mut cocreate::app::ServeSettings,
    edits: &[(&str, &str)],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&root).expect("policies") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        let mut text = std::fs::read_to_string(&path).expect("read");
        if name == "routing.yml" {
            for (from, to) in edits {
                assert!(text.contains(from), "{from:?} not in routing.yml");
                text = text.replace(from, to);
            }
        }
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    s.policies = cocreate::app::ConfigSource::Dir(dir.path().to_owned());
    dir
}

fn issue(h: &Harness, title: &str, description: &str, labels: &[&str], confidential: bool) -> u64 {
    h.gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: title.into(),
        description: description.into(),
        author_id: 701,
        confidential,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    })
}

/// Delivers the issue's current state as an `update` by the CSM, `times` times.
async fn redeliver(h: &Harness, iid: u64, times: usize) {
    for _ in 0..times {
        let now = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
        let labels: Vec<&str> = now.labels.iter().map(String::as_str).collect();
        h.deliver_issue(issue_event(
            iid,
            (701, "csm-aero"),
            "update",
            &now.description,
            &labels,
            None,
        ))
        .await;
        h.wait_idle().await;
    }
}

#[tokio::test]
async fn the_account_team_is_assigned_and_asked_once_for_the_alignment_meeting() {
    let h = Harness::start().await;
    let iid = issue(
        &h,
        "Co-Create engagement request: Example Aero",
        INTAKE,
        &["Co-Create intake"],
        true,
    );
    // Day 1: the intake is opened (and delivered again, as GitLab may).
    redeliver(&h, iid, 3).await;
    let t = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert_eq!(
        t.assignee_ids,
        [101, 701, 703, 702],
        "the DRI, then the CSM, AE and SA as the intake names them"
    );
    assert!(
        h.take_issue_notes(iid).is_empty(),
        "assignment is GitLab's notification"
    );
    assert_eq!(
        h.gitlab.count(
            "PUT",
            &format!("/api/v4/projects/{TRACKING_PROJECT_ID}/issues/")
        ),
        1,
        "one edit however often the intake is delivered"
    );

    // Day 2: the CSM moves the engagement to `meeting`; the event arrives three times.
    h.label_issue(
        iid,
        (701, "csm-aero"),
        &["Co-Create stage::meeting"],
        &["Co-Create stage::contacted"],
    )
    .await;
    redeliver(&h, iid, 2).await;
    let notes = h.take_issue_notes(iid);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    insta::assert_snapshot!(notes[0], @r"
    <!-- cocreate:meeting-request -->
    @csm-aero, @ae-aero, @sa-aero: the engagement is at the `meeting` stage. Please hold the alignment meeting with the customer (CSM, AE, SA and Contributor Success) and file its notes as a new issue from the **Co-Create alignment meeting notes** template: http://gitlab.example.com/cocreate/engagements/-/issues/new?issuable_template=Co-Create%20alignment%20meeting%20notes.

    The notes record the attendees, the outcomes, the next steps and the proposed pathway; cocreate links them here and ticks the checklist.
    ");

    // Later stages ask nothing more.
    h.label_issue(
        iid,
        (701, "csm-aero"),
        &["Co-Create stage::aligned", "Co-Create pathway::minor"],
        &["Co-Create stage::meeting"],
    )
    .await;
    assert_eq!(h.take_issue_notes(iid).len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn with_account_team_mention_the_team_is_listed_and_pinged_once() {
    let mut dir = None;
    let h = Harness::start_with(|s| {
        dir = Some(policies_with(
            s,
            &[("account_team: assign", "account_team: mention")],
        ))
    })
    .await;
    let iid = issue(
        &h,
        "Co-Create engagement request: Example Aero",
        INTAKE,
        &["Co-Create intake"],
        false,
    );
    redeliver(&h, iid, 3).await;
    let t = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert!(
        t.confidential,
        "made confidential before the note names anyone"
    );
    assert_eq!(
        t.assignee_ids,
        [101],
        "only the Contributor Success DRI is assigned"
    );
    assert!(t.labels.contains(&"Co-Create engagement".to_string()));
    let notes = h.take_issue_notes(iid);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    insta::assert_snapshot!(notes[0], @r"
    <!-- cocreate:account-team -->
    The account team of this engagement, with @cs-reviewer-1 from Contributor Success as DRI:

    - CSM: @csm-aero
    - AE: @ae-aero
    - SA: @sa-aero

    You are listed here once instead of assigned; follow this issue to hear about each step.
    ");
    h.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_tracking_issue_the_first_mr_opened_asks_the_organizations_account_team() {
    let h = Harness::start().await;
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    h.take_notes(16);
    let t = h.gitlab.issues(TRACKING_PROJECT_ID)[0].clone();
    h.take_issue_notes(t.iid);
    h.label_issue(
        t.iid,
        (25, "maintainer"),
        &["Co-Create stage::meeting"],
        &["Co-Create stage::active"],
    )
    .await;
    redeliver(&h, t.iid, 1).await;
    let asks: Vec<String> = h
        .take_issue_notes(t.iid)
        .into_iter()
        .filter(|n| n.contains("cocreate:meeting-request"))
        .collect();
    assert_eq!(asks.len(), 1, "{asks:#?}");
    assert!(
        asks[0].starts_with("<!-- cocreate:meeting-request -->\n@csm-aero, @ae-aero, @sa-aero: "),
        "organizations.yml's account team: {}",
        asks[0]
    );
    h.stop().await;
}

#[tokio::test]
async fn meeting_notes_and_onboarding_issues_are_linked_labelled_and_kept_confidential() {
    let h = Harness::start().await;
    let tracking = issue(
        &h,
        "Co-Create engagement: Example Aero",
        INTAKE,
        &[
            "Co-Create engagement",
            "Co-Create org::example-aero",
            "Co-Create stage::meeting",
        ],
        true,
    );
    let notes_text = "## Co-Create alignment meeting notes\n\n- Organization: Example Aero\n- Attendees: @csm-aero @sa-aero\n\n### Outcomes\n\n- minor pathway proposed\n";
    let meeting = issue(
        &h,
        "Alignment meeting",
        notes_text,
        &["Co-Create meeting notes"],
        false,
    );
    let onboarding = issue(
        &h,
        "Onboarding session",
        "## Co-Create onboarding session\n\n- Organization: example-aero\n",
        &["Co-Create onboarding"],
        true,
    );
    let stray = issue(
        &h,
        "Notes without an organization",
        "## Co-Create alignment meeting notes\n\n- Organization: <!-- slug -->\n",
        &["Co-Create meeting notes"],
        false,
    );
    for iid in [meeting, onboarding, stray] {
        redeliver(&h, iid, 3).await;
    }
    for (iid, name) in [(meeting, "meeting notes"), (onboarding, "onboarding")] {
        let doc = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
        assert!(doc.confidential, "{name}");
        assert!(
            doc.labels
                .contains(&"Co-Create org::example-aero".to_string()),
            "{name}: {:?}",
            doc.labels
        );
        assert_eq!(
            doc.links,
            [(TRACKING_PROJECT_ID, tracking)],
            "{name}: linked once"
        );
        let notes = h.take_issue_notes(iid);
        assert_eq!(notes.len(), 1, "{name}: {notes:#?}");
        assert_eq!(
            notes[0],
            format!("<!-- cocreate:engagement-doc:{tracking} -->\nLinked to the engagement of **Example Aero**: #{tracking}. cocreate made this issue confidential and labelled it; the tracking issue's checklist counts it.")
        );
    }
    let s = h.gitlab.issue(TRACKING_PROJECT_ID, stray);
    assert!(s.confidential, "kept confidential like an intake");
    assert!(s.links.is_empty() && h.take_issue_notes(stray).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn the_welcome_note_links_the_contribution_guide_and_the_curated_list_when_configured() {
    let mut dir = None;
    let h = Harness::start_with(|s| {
        dir = Some(policies_with(
            s,
            &[
                ("# issue_list_url:", "issue_list_url:"),
                ("# contribution_guide_url:", "contribution_guide_url:"),
            ],
        ))
    })
    .await;
    h.open_mr(16, AERO_DEV).await;
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "update"))
        .await;
    h.wait_idle().await;
    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(
        notes[0].contains("- How we work, from first commit to merge: the contribution guide, https://docs.example.com/development/contributing/\n- Looking for your next change? The curated issue list: https://cocreate.example.com/\n"),
        "{}",
        notes[0]
    );
    let issues = h.gitlab.issues(TRACKING_PROJECT_ID);
    h.take_issue_notes(issues[0].iid);
    h.stop().await;
    drop(dir);
}

/// The line of the tracking issue's checklist that starts with `start`, as the people see it.
fn line(h: &Harness, iid: u64, start: &str) -> String {
    let d = h.gitlab.issue(TRACKING_PROJECT_ID, iid).description;
    d.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(start)))
        .unwrap_or_else(|| panic!("no checklist line {start:?} in:\n{d}"))
        .to_owned()
}

fn ticked(h: &Harness, iid: u64, start: &str) -> bool {
    line(h, iid, start).starts_with("- [x] ")
}

#[tokio::test]
async fn the_checklist_ticks_what_gitlab_shows_and_keeps_what_people_ticked() {
    let h = Harness::start().await;
    let iid = issue(
        &h,
        "Co-Create engagement request: Example Aero",
        INTAKE,
        &["Co-Create intake"],
        true,
    );
    // Day 1: the intake becomes the tracking issue; its checklist arrives with what that edit
    // and agreements.yml prove.
    redeliver(&h, iid, 2).await;
    for done in [
        "Contributor Success DRI",
        "CSM, AE and SA",
        "Corporate Contributor Agreement",
    ] {
        assert!(ticked(&h, iid, done), "{}", line(&h, iid, done));
    }
    for open in [
        "Slack channel",
        "Alignment meeting",
        "Contributor Success triaged",
        "Onboarding session",
        "Enablement",
        "First merge request opened",
        "First merge request merged",
    ] {
        assert!(!ticked(&h, iid, open), "{}", line(&h, iid, open));
    }

    // Day 2: the CSM ticks the Slack channel and (early) the Enablement workshop by hand,
    // then sets the stage and the pathway.
    let d = h.gitlab.issue(TRACKING_PROJECT_ID, iid).description;
    let d = d
        .replace("- [ ] Slack channel", "- [x] Slack channel")
        .replace("- [ ] Enablement", "- [x] Enablement");
    h.gitlab
        .edit_issue_description(TRACKING_PROJECT_ID, iid, &d);
    h.label_issue(
        iid,
        (701, "csm-aero"),
        &["Co-Create stage::meeting", "Co-Create pathway::minor"],
        &["Co-Create stage::contacted"],
    )
    .await;
    assert!(
        ticked(&h, iid, "Contributor Success triaged"),
        "the pathway label"
    );
    assert!(
        ticked(&h, iid, "Slack channel") && ticked(&h, iid, "Enablement"),
        "a person's ticks stay"
    );
    let notes = h.take_issue_notes(iid);
    assert_eq!(notes.len(), 1, "the meeting request only: {notes:#?}");

    // Day 3: the meeting notes are filed; day 4: the onboarding session.
    let meeting = issue(
        &h,
        "Alignment meeting",
        "- Organization: example-aero\n",
        &["Co-Create meeting notes"],
        false,
    );
    redeliver(&h, meeting, 2).await;
    assert!(
        ticked(&h, iid, "Alignment meeting"),
        "{}",
        line(&h, iid, "Alignment meeting")
    );
    assert!(!ticked(&h, iid, "Onboarding session"));
    let onboarding = issue(
        &h,
        "Onboarding",
        "- Organization: example-aero\n",
        &["Co-Create onboarding"],
        true,
    );
    redeliver(&h, onboarding, 2).await;
    assert!(ticked(&h, iid, "Onboarding session"));
    assert_eq!(
        h.take_issue_notes(meeting).len() + h.take_issue_notes(onboarding).len(),
        2
    );

    // Day 5: the organization's first MR is routed (the org label); day 9: it is merged. The
    // next event on the tracking issue ticks them.
    h.open_mr(16, AERO_DEV).await;
    h.take_notes(16);
    assert!(
        h.take_issue_notes(iid).len() == 2,
        "the MR's link note besides the meeting request"
    );
    redeliver(&h, iid, 1).await;
    assert!(ticked(&h, iid, "First merge request opened"));
    assert!(!ticked(&h, iid, "First merge request merged"));
    h.gitlab.merge_mr(PROJECT_ID, 16);
    redeliver(&h, iid, 1).await;
    assert!(ticked(&h, iid, "First merge request merged"));

    // Every event again, three times: nothing more is written.
    h.gitlab.clear_calls();
    for i in [iid, meeting, onboarding] {
        redeliver(&h, i, 3).await;
    }
    assert!(h.gitlab.writes().is_empty(), "{:#?}", h.gitlab.writes());
    h.stop().await;
}

//! Nothing internal reaches a public thread; only the right people can make the bot write.
//! End to end: the real router and worker against the fake GitLab, which records every note's
//! `internal` flag and every issue's `confidential` flag as GitLab does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use std::time::Duration;

use serde_json::Value;
use support::fake_gitlab::NoteState;
use support::harness::*;

/// The maintainer reviewing `!16` in the seeded world.
const MAINTAINER: (u64, &str) = (25, "maintainer");

async fn routed(h: &Harness) {
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    assert_eq!(h.take_notes(16).len(), 1, "welcome");
}

/// The bot's notes on `!16` with their visibility (and marks them as checked).
fn bot_notes(h: &Harness, iid: u64) -> Vec<NoteState> {
    let _ = h.take_notes(iid);
    h.gitlab
        .notes(PROJECT_ID, iid)
        .into_iter()
        .filter(|n| n.author_username == support::fake_gitlab::BOT_USERNAME)
        .collect()
}

/// The authors of the MRs these tests use.
fn author_of(iid: u64) -> u64 {
    match iid {
        16 => AERO_DEV.0,
        21 => TELCO_DEV.0,
        _ => OUTSIDER.0,
    }
}

/// A comment as GitLab sends it: the note exists on the MR, and the webhook says so.
async fn say(h: &Harness, iid: u64, by: (u64, &str), body: &str, internal: bool) -> u64 {
    say_claiming(h, iid, by, body, internal, author_of(iid)).await
}

/// Like [`say`], with a webhook whose `merge_request.author_id` says `claimed_author`.
async fn say_claiming(
    h: &Harness,
    iid: u64,
    by: (u64, &str),
    body: &str,
    internal: bool,
    claimed_author: u64,
) -> u64 {
    let id = if internal {
        h.gitlab.add_internal_note(PROJECT_ID, iid, by.0, body)
    } else {
        h.gitlab.add_note(PROJECT_ID, iid, by.0, body)
    };
    let mut v: Value =
        serde_json::from_slice(&note_event(iid, claimed_author, id, by, body)).expect("json");
    v["object_attributes"]["internal"] = internal.into();
    let kind = if internal {
        v["event_type"] = "confidential_note".into();
        "Confidential Note Hook"
    } else {
        "Note Hook"
    };
    let r = h
        .deliver(
            kind,
            serde_json::to_vec(&v).expect("json"),
            Some(&new_uuid()),
        )
        .await;
    assert_eq!(r.status(), 200);
    h.wait_idle().await;
    id
}

// 1. Notes follow the visibility of what they answer.
#[tokio::test]
async fn a_command_in_an_internal_note_is_answered_internally_and_never_quoted_publicly() {
    let h = Harness::start().await;
    routed(&h).await;
    let secret = "acquisition-of-examplecorp-closes-friday";
    say(&h, 16, MAINTAINER, &format!("@cocreate-bot {secret}"), true).await;
    h.gitlab.advance_time(Duration::from_secs(120));
    say(&h, 16, MAINTAINER, "@cocreate-bot help", true).await;
    let notes = bot_notes(&h, 16);
    let public: Vec<&NoteState> = notes.iter().filter(|n| !n.internal).collect();
    assert_eq!(public.len(), 1, "only the welcome is public: {notes:#?}");
    assert!(
        public.iter().all(|n| !n.body.contains("acquisition")),
        "{public:#?}"
    );
    let internal: Vec<&NoteState> = notes.iter().filter(|n| n.internal).collect();
    assert_eq!(internal.len(), 2, "both answered internally: {notes:#?}");
    assert!(
        internal[0].body.contains("I don't know the command"),
        "{internal:#?}"
    );
    assert!(
        internal[1].body.contains("`@cocreate-bot ready`"),
        "{internal:#?}"
    );
    h.stop().await;
}

// 2. Intakes and tracking issues.

const INTAKE: &str = "## Co-Create engagement request\n\n- Organization: example-aero\n- CSM: @csm-aero\n- SA: @sa-aero\n- Opportunity: Faster pipelines for large monorepos\n- Customer contacts: @aero-dev-1\n\n/label ~\"Co-Create intake\"\n";

/// An intake issue opened by the CSM; `confidential` as they left it (the quick action in the
/// template can be deleted, or the issue opened without the template).
fn intake(h: &Harness, description: &str, confidential: bool) -> u64 {
    h.gitlab.add_issue(support::fake_gitlab::IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: "Co-Create engagement request".into(),
        description: description.into(),
        author_id: 701,
        confidential,
        labels: vec!["Co-Create intake".into()],
        project_path: TRACKING_PROJECT.into(),
        ..support::fake_gitlab::IssueSpec::default()
    })
}

async fn deliver_intake(h: &Harness, iid: u64, description: &str) {
    h.deliver_issue(issue_event(
        iid,
        (701, "csm-aero"),
        "open",
        description,
        &["Co-Create intake"],
        None,
    ))
    .await;
    h.wait_idle().await;
}

/// The example policies with `tracking.confidential: false`.
fn without_confidential_tracking(s: &mut cocreate::app::ServeSettings) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&root).expect("policies") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let text = text.replace("  confidential: true", "  confidential: false");
        std::fs::write(dir.path().join(path.file_name().expect("name")), text).expect("write");
    }
    s.policies = cocreate::app::ConfigSource::Dir(dir.path().to_owned());
    dir
}

#[tokio::test]
async fn an_intake_is_made_confidential_in_the_same_edit_that_converts_it() {
    let h = Harness::start().await;
    let iid = intake(&h, INTAKE, false);
    h.gitlab.clear_calls();
    deliver_intake(&h, iid, INTAKE).await;
    let issue = h.gitlab.issue(TRACKING_PROJECT_ID, iid);
    assert!(issue.confidential, "a tracking issue is confidential");
    assert!(issue
        .description
        .contains("#cocreate-initiative-example-aero"));
    let writes = h.gitlab.writes();
    assert_eq!(writes.len(), 1, "one edit: {writes:#?}");
    let body = &writes[0].body;
    assert!(
        body.contains("confidential=true") && body.contains("add_labels="),
        "{body}"
    );
    assert!(h.take_issue_notes(iid).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_duplicate_intake_is_made_confidential_before_the_note_names_the_organization() {
    let h = Harness::start().await;
    let first = h.gitlab.add_issue(support::fake_gitlab::IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: "Co-Create engagement: Example Aero".into(),
        author_id: 701,
        confidential: true,
        labels: vec![
            "Co-Create engagement".into(),
            "Co-Create org::example-aero".into(),
        ],
        project_path: TRACKING_PROJECT.into(),
        ..support::fake_gitlab::IssueSpec::default()
    });
    let second = intake(&h, INTAKE, false);
    h.gitlab.clear_calls();
    deliver_intake(&h, second, INTAKE).await;
    let writes = h.gitlab.writes();
    let order: Vec<String> = writes
        .iter()
        .map(|w| format!("{} {}", w.method, w.path.rsplit('/').next().unwrap_or("")))
        .collect();
    assert_eq!(
        order,
        [
            format!("PUT {second}"),
            "POST links".into(),
            "POST notes".into()
        ]
    );
    assert!(
        writes[0].body.contains("confidential=true"),
        "{}",
        writes[0].body
    );
    let notes = h.take_issue_notes(second);
    assert!(notes[0].contains("Example Aero") && notes[0].contains(&format!("#{first}")));
    assert!(h.gitlab.issue(TRACKING_PROJECT_ID, second).confidential);
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_intake_on_a_public_issue_names_no_organization() {
    let mut dir = None;
    let h = Harness::start_with(|s| dir = Some(without_confidential_tracking(s))).await;
    let text = "- Organization: Example Shipping\n- CSM: @csm-bank ae\n- Opportunity: x\n";
    let iid = intake(&h, text, false);
    deliver_intake(&h, iid, text).await;
    let notes = h.take_issue_notes(iid);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let note = &notes[0];
    for secret in [
        "example-aero",
        "example-telco",
        "Known organizations",
        "Example Shipping",
        "csm-bank",
    ] {
        assert!(!note.contains(secret), "{secret} in {note}");
    }
    assert!(
        note.contains("Organization: not the slug or name"),
        "{note}"
    );
    assert!(note.contains("CSM: not a GitLab username"), "{note}");
    assert!(!h.gitlab.issue(TRACKING_PROJECT_ID, iid).confidential);
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_intake_is_made_confidential_before_its_note_lists_the_organizations() {
    let h = Harness::start().await;
    let text = "- Organization: nope\n- CSM: @csm-aero\n- Opportunity: x\n";
    let iid = intake(&h, text, false);
    h.gitlab.clear_calls();
    deliver_intake(&h, iid, text).await;
    let methods: Vec<String> = h.gitlab.writes().iter().map(|w| w.method.clone()).collect();
    assert_eq!(
        methods,
        ["PUT", "POST"],
        "confidential first, then the note"
    );
    assert!(h.gitlab.issue(TRACKING_PROJECT_ID, iid).confidential);
    let notes = h.take_issue_notes(iid);
    assert!(
        notes[0].contains("Known organizations: `example-aero`"),
        "{}",
        notes[0]
    );
    h.stop().await;
}

// 3. Public MRs carry only whether a current agreement is on file and how to get one.

/// Dates, versions and references of `agreements.yml`.
fn assert_no_agreement_details(text: &str) {
    for secret in [
        "2024",
        "2026",
        "2028",
        "CCA 2.",
        "contracts/",
        "expiring",
        "expires",
    ] {
        assert!(!text.contains(secret), "{secret:?} in public text: {text}");
    }
}

#[tokio::test]
async fn an_expired_agreement_shows_on_the_public_mr_without_its_date() {
    let h = Harness::start().await;
    add_mr(&h.gitlab, 21, TELCO_DEV.0, "Telco change");
    h.deliver_mr(mr_event(21, TELCO_DEV, TELCO_DEV, "open"))
        .await;
    h.wait_idle().await;
    let sha = h.gitlab.mr(PROJECT_ID, 21).sha;
    let statuses = h.gitlab.commit_statuses(PROJECT_ID, &sha);
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        statuses[0].description,
        "No current Corporate Contributor Agreement on file"
    );
    say(&h, 21, TELCO_DEV, "@cocreate-bot recheck", false).await;
    let notes = h.take_notes(21);
    assert_eq!(
        notes.len(),
        2,
        "welcome with instructions, recheck: {notes:#?}"
    );
    assert!(notes[0].contains("cla-managers@example.com"), "how to sign");
    assert!(notes[1].contains("**no longer current**"), "{}", notes[1]);
    for n in &notes {
        assert_no_agreement_details(n);
    }
    h.stop().await;
}

#[tokio::test]
async fn an_agreement_about_to_expire_is_simply_on_file_on_the_public_mr() {
    // 2027-12-20: example-aero's agreement expires within the warning period.
    let h = Harness::start_with(|s| {
        s.clock = cocreate::clock::Clock::fixed(
            chrono::DateTime::parse_from_rfc3339("2027-12-20T12:00:00Z")
                .expect("time")
                .to_utc(),
        )
    })
    .await;
    routed(&h).await;
    say(&h, 16, AERO_DEV, "@cocreate-bot recheck", false).await;
    let notes = h.take_notes(16);
    assert!(notes[1].contains("**on file**"), "{}", notes[1]);
    assert_no_agreement_details(&notes[1]);
    let sha = h.gitlab.mr(PROJECT_ID, 16).sha;
    for s in h.gitlab.commit_statuses(PROJECT_ID, &sha) {
        assert_no_agreement_details(&s.description);
    }
    h.stop().await;
}

// 4. Commands: who may make the bot write, and how often.

/// Freezes the fake GitLab's clock, so the tests say how much time passes between comments.
fn freeze(h: &Harness) {
    h.gitlab.set_time("2026-11-23T12:00:00Z");
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[tokio::test]
async fn a_bystander_gets_one_polite_refusal_per_mr_however_often_they_ask() {
    let h = Harness::start().await;
    freeze(&h);
    routed(&h).await;
    for body in [
        "@cocreate-bot ready",
        "@cocreate-bot help",
        "@cocreate-bot recheck",
    ] {
        say(&h, 16, OUTSIDER, body, false).await;
        h.gitlab.advance_time(minutes(5));
    }
    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 2, "welcome and one refusal: {notes:#?}");
    assert!(
        notes[1].contains("only the author of this merge request"),
        "{}",
        notes[1]
    );
    // Someone else still gets their one refusal.
    say(&h, 16, TELCO_DEV, "@cocreate-bot ready", false).await;
    assert_eq!(h.take_notes(16).len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn nothing_is_answered_on_an_mr_that_is_not_co_create() {
    let h = Harness::start().await;
    freeze(&h);
    add_mr(&h.gitlab, 30, OUTSIDER.0, "Fix a typo");
    h.gitlab.clear_calls();
    // The author's `ready` would be a promise nobody keeps; a bystander's command a refusal.
    say(&h, 30, OUTSIDER, "@cocreate-bot ready", false).await;
    h.gitlab.advance_time(minutes(5));
    say(&h, 30, TELCO_DEV, "@cocreate-bot help", false).await;
    assert!(h.take_notes(30).is_empty());
    assert!(h.gitlab.writes().is_empty(), "{:#?}", h.gitlab.writes());
    h.stop().await;
}

#[tokio::test]
async fn one_reply_per_person_per_mr_per_minute_whatever_they_post() {
    let h = Harness::start().await;
    freeze(&h);
    routed(&h).await;
    for i in 0..120 {
        let body = if i % 2 == 0 {
            "@cocreate-bot help"
        } else {
            "@cocreate-bot ready"
        };
        let id = h.gitlab.add_note(PROJECT_ID, 16, AERO_DEV.0, body);
        let r = h
            .deliver(
                "Note Hook",
                note_event(16, AERO_DEV.0, id, AERO_DEV, body),
                Some(&new_uuid()),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    h.wait_idle().await;
    assert_eq!(h.take_notes(16).len(), 2, "welcome and one reply");
    // A minute later they are answered again, and someone else is answered meanwhile.
    say(&h, 16, MAINTAINER, "@cocreate-bot help", false).await;
    h.gitlab.advance_time(minutes(2));
    say(&h, 16, AERO_DEV, "@cocreate-bot help", false).await;
    assert_eq!(h.take_notes(16).len(), 4);
    h.stop().await;
}

#[tokio::test]
async fn commands_in_html_comments_code_and_quotes_are_ignored() {
    let h = Harness::start().await;
    freeze(&h);
    routed(&h).await;
    h.gitlab.clear_calls();
    for body in [
        "<!-- @cocreate-bot recheck -->",
        "Notes for later:\n<!--\n@cocreate-bot ready\n-->",
        ">>>\n@cocreate-bot help\n>>>",
        "<code>@cocreate-bot ready</code>",
        "<pre>\n@cocreate-bot recheck\n</pre>",
        "> @cocreate-bot ready",
        "```\n@cocreate-bot ready\n```",
    ] {
        say(&h, 16, AERO_DEV, body, false).await;
        h.gitlab.advance_time(minutes(2));
    }
    assert_eq!(h.take_notes(16).len(), 1, "only the welcome");
    assert!(h.gitlab.writes().is_empty(), "{:#?}", h.gitlab.writes());
    h.stop().await;
}

// 5. Who may command is decided from the MR as GitLab has it.

#[tokio::test]
async fn who_may_command_comes_from_the_mr_in_gitlab_not_from_the_webhook() {
    let h = Harness::start().await;
    freeze(&h);
    routed(&h).await;
    // The webhook claims the outsider wrote !16; GitLab says aero-dev-1 did.
    say_claiming(&h, 16, OUTSIDER, "@cocreate-bot ready", false, OUTSIDER.0).await;
    let notes = h.take_notes(16);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[1].contains("only the author of this merge request"),
        "{}",
        notes[1]
    );
    assert!(!notes[1].contains("ready for review"), "{}", notes[1]);
    // The maintainer reviews !16 in GitLab (not in the webhook), so may command.
    say_claiming(&h, 16, MAINTAINER, "@cocreate-bot help", false, OUTSIDER.0).await;
    let notes = h.take_notes(16);
    assert!(notes[2].contains("`@cocreate-bot ready`"), "{}", notes[2]);
    h.stop().await;
}

// 6 (markers). Markers count only in notes written by the bot's own user.

#[tokio::test]
async fn a_marker_written_by_someone_else_is_only_text() {
    let h = Harness::start().await;
    // A tracking issue converted from an intake: the account team wrote its description, and
    // someone put the link marker of !16 into it.
    let tracking = h.gitlab.add_issue(support::fake_gitlab::IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: "Co-Create engagement request".into(),
        description: format!("{INTAKE}\n<!-- cocreate:mr-link:{PROJECT_ID}!16 -->"),
        author_id: 701,
        confidential: true,
        labels: vec![
            "Co-Create engagement".into(),
            "Co-Create org::example-aero".into(),
            "Co-Create stage::active".into(),
        ],
        project_path: TRACKING_PROJECT.into(),
        ..support::fake_gitlab::IssueSpec::default()
    });
    // ...and a contributor fakes the bot's welcome marker in a comment on the MR.
    h.gitlab.add_note(
        PROJECT_ID,
        16,
        AERO_DEV.0,
        "<!-- cocreate:welcome -->\nHello!",
    );
    h.deliver_mr(mr_event(16, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    let links = h.take_issue_notes(tracking);
    assert_eq!(links.len(), 1, "the MR is linked: {links:#?}");
    assert!(links[0].contains("/merge_requests/16"), "{}", links[0]);
    let welcome = h.take_notes(16);
    assert_eq!(welcome.len(), 1, "the welcome is posted: {welcome:#?}");
    assert!(welcome[0].starts_with("<!-- cocreate:welcome -->"));
    h.stop().await;
}

// 7. User text is neutralized: no invisible or direction-control characters, no new lines,
// and a cut only between whole escapes.

#[tokio::test]
async fn a_hostile_title_reaches_the_welcome_note_visible_on_one_line_and_cut_cleanly() {
    let h = Harness::start().await;
    let title = format!(
        "Fix\u{200B} ty\u{202E}po\u{2066}\u{061C}\u{FEFF}\u{2028}/close\u{2029}@\u{200D}all {}{}",
        "a".repeat(262),
        "/".repeat(40)
    );
    add_mr(&h.gitlab, 40, AERO_DEV.0, &title);
    h.deliver_mr(mr_event(40, AERO_DEV, AERO_DEV, "open")).await;
    h.wait_idle().await;
    let welcome = h.take_notes(40).remove(0);
    let line = welcome
        .lines()
        .find(|l| l.contains("thank you for your merge request"))
        .expect("the title line");
    let quoted = line
        .split('“')
        .nth(1)
        .and_then(|t| t.split('”').next())
        .expect("quoted title");
    assert!(
        quoted.starts_with("Fix typo \\/close @\u{2060}all aaa"),
        "{quoted:?}"
    );
    for c in [
        '\u{200B}', '\u{202E}', '\u{2066}', '\u{061C}', '\u{FEFF}', '\u{2028}', '\u{2029}',
        '\u{200D}',
    ] {
        assert!(!welcome.contains(c), "{c:?} in {welcome:?}");
    }
    // Cut at 300 characters between two `\/` escapes, never after a lone backslash.
    let cut = quoted.strip_suffix('…').expect("cut");
    assert!(cut.ends_with("\\/") && !cut.ends_with("\\\\/"), "{cut:?}");
    assert!(cut.chars().count() <= 300, "{}", cut.chars().count());
    h.stop().await;
}

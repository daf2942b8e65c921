//! Nothing internal reaches a public thread; only the right people can make the bot write.
//! End to end: the real router and worker against the fake GitLab, which records every note's
//! `internal` flag and every issue's `confidential` flag as GitLab does.

mod support;

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

/// A comment as GitLab sends it: the note exists on the MR, and the webhook says so.
async fn say(h: &Harness, iid: u64, by: (u64, &str), body: &str, internal: bool) -> u64 {
    let id = if internal {
        h.gitlab.add_internal_note(PROJECT_ID, iid, by.0, body)
    } else {
        h.gitlab.add_note(PROJECT_ID, iid, by.0, body)
    };
    let author = if iid == 16 { AERO_DEV.0 } else { TELCO_DEV.0 };
    let mut v: Value =
        serde_json::from_slice(&note_event(iid, author, id, by, body)).expect("json");
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

//! The unchecked-note guard: every note the code under test posts must be looked at by the
//! test that caused it.
//!
//! [`CheckedGitLab`] wraps a [`FakeGitLab`] (and derefs to it). The `take_*` methods return the
//! bot's notes on one MR or issue and mark their ids as looked at; when the wrapper is dropped
//! (or [`CheckedGitLab::check`] is called) it fails the test if a note created through the API
//! was never taken. Notes are tracked by id, so taking the same MR's notes twice does not hide
//! a note posted somewhere else.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::Mutex;

use super::fake_gitlab::{FakeGitLab, NoteOn, NoteState, PostedNote};

pub struct CheckedGitLab {
    fake: FakeGitLab,
    taken: Mutex<BTreeSet<u64>>,
}

impl CheckedGitLab {
    pub fn new(fake: FakeGitLab) -> Self {
        Self {
            fake,
            taken: Mutex::new(BTreeSet::new()),
        }
    }

    /// Starts a fake GitLab with the default token, watched.
    pub async fn start() -> Self {
        Self::new(FakeGitLab::start().await)
    }

    /// The bot's notes on MR `project_id!iid`, oldest first; marks them as looked at.
    pub fn take_mr_notes(&self, project_id: u64, iid: u64) -> Vec<String> {
        self.take(self.fake.notes(project_id, iid))
    }

    /// The bot's notes on issue `project_id#iid`, oldest first; marks them as looked at.
    pub fn take_issue_notes(&self, project_id: u64, iid: u64) -> Vec<String> {
        self.take(self.fake.issue_notes(project_id, iid))
    }

    fn take(&self, notes: Vec<NoteState>) -> Vec<String> {
        let bot = self.fake.bot_user_id();
        let mine: Vec<NoteState> = notes.into_iter().filter(|n| n.author_id == bot).collect();
        self.taken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(mine.iter().map(|n| n.id));
        mine.into_iter().map(|n| n.body).collect()
    }

    /// The first note created through the API whose text contains `marker` (e.g.
    /// `"cocreate:cmd-denied"`), for snapshots. Does not count as taking it.
    pub fn posted_with(&self, marker: &str) -> String {
        self.fake
            .posted_notes()
            .into_iter()
            .find(|n| n.body.contains(marker))
            .map(|n| n.body)
            .unwrap_or_else(|| panic!("no posted note contains {marker:?}"))
    }

    /// Notes created through the API that no test has taken yet.
    pub fn unchecked(&self) -> Vec<PostedNote> {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        self.fake
            .posted_notes()
            .into_iter()
            .filter(|n| !taken.contains(&n.id))
            .collect()
    }

    /// Fails the test if a posted note was never taken.
    pub fn check(&self) {
        let unchecked = self.unchecked();
        if unchecked.is_empty() {
            return;
        }
        let list: Vec<String> = unchecked
            .iter()
            .map(|n| {
                let on = match n.on {
                    NoteOn::MergeRequest { project_id, iid } => format!("MR {project_id}!{iid}"),
                    NoteOn::Issue { project_id, iid } => format!("issue {project_id}#{iid}"),
                };
                let head: String = n.body.chars().take(80).collect();
                format!("  note {} on {on}: {head:?}", n.id)
            })
            .collect();
        panic!(
            "the bot posted {} note(s) the test never looked at (assert every message with take_notes / take_mr_notes / take_issue_notes):\n{}",
            unchecked.len(),
            list.join("\n")
        );
    }
}

impl Deref for CheckedGitLab {
    type Target = FakeGitLab;

    fn deref(&self) -> &FakeGitLab {
        &self.fake
    }
}

impl Drop for CheckedGitLab {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check();
        }
    }
}

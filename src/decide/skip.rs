//! Why an event leads to no action: one type for every handler and rule, so a skip is matched
//! on, counted and serialized rather than compared as text.

use serde::Serialize;

use super::engagement::IssueRef;
use crate::domain::MrRef;

/// Why an event leads to no action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Skip {
    /// The event was caused by the bot itself.
    OwnEvent,
    /// The MR's author is a bot account.
    BotAuthor,
    /// The author is not recognised as a member of any Co-Create organization.
    NotCoCreate,
    /// Closed, merged or locked MRs are left alone.
    NotOpen { state: String },
    /// The MR was deleted (or is no longer visible to the bot) since the event.
    MrGone { mr: MrRef },
    /// The comment a command was read from is gone.
    CommentGone { note_id: u64, mr: MrRef },
    /// The comment (as GitLab has it now) holds no command for the bot.
    NoCommand,
    /// A dry run without a token: a command would be answered.
    DryRun,
    /// An issue event outside the tracking project.
    OutsideTrackingProject,
    /// An issue that is neither an intake nor a tracking issue.
    NotCoCreateIssue,
    /// The issue was deleted since the event.
    IssueGone { issue: IssueRef },
    /// Closed issues are left alone.
    IssueClosed,
    /// A webhook kind the tool does not handle.
    UnhandledKind { kind: String },
    /// A system hook the tool does not handle.
    UnhandledSystemHook { kind: String },
    /// A merge request action that is not routed (close, merge, approve, ...).
    MrActionNotRouted,
    /// An issue action that is not handled (close, ...).
    IssueActionNotHandled,
    /// A push to some branch other than the policy project's.
    NotPolicyPush,
    /// A one-shot command has no live policies to reload.
    NoLivePolicies,
    /// The pushed policies are the ones in force.
    PoliciesUnchanged,
    /// The pushed policies are invalid; the last good ones stay.
    PoliciesRejected { version: String },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::OwnEvent => write!(f, "the bot's own change"),
            Skip::BotAuthor => write!(f, "the author is a bot account"),
            Skip::NotCoCreate => write!(
                f,
                "the author is not in any Co-Create organization (organizations.yml)"
            ),
            Skip::NotOpen { state } => write!(f, "the merge request is {state}, not open"),
            Skip::MrGone { mr } => write!(f, "{mr} no longer exists"),
            Skip::CommentGone { note_id, mr } => {
                write!(f, "comment {note_id} on {mr} no longer exists")
            }
            Skip::NoCommand => write!(f, "comment without a command"),
            Skip::DryRun => write!(f, "dry run"),
            Skip::OutsideTrackingProject => write!(f, "issue outside the tracking project"),
            Skip::NotCoCreateIssue => write!(f, "not a Co-Create issue"),
            Skip::IssueGone { issue } => write!(f, "issue {issue} no longer exists"),
            Skip::IssueClosed => write!(f, "closed issue"),
            Skip::UnhandledKind { kind } => write!(f, "event kind `{kind}` is not handled"),
            Skip::UnhandledSystemHook { kind } => write!(f, "system hook `{kind}` is not handled"),
            Skip::MrActionNotRouted => write!(f, "merge request action is not routed"),
            Skip::IssueActionNotHandled => write!(f, "issue action is not handled"),
            Skip::NotPolicyPush => write!(f, "push is not to the policy project's branch"),
            Skip::NoLivePolicies => write!(f, "no live policies"),
            Skip::PoliciesUnchanged => write!(f, "policies already at this version"),
            Skip::PoliciesRejected { version } => write!(
                f,
                "policies at {version} are invalid; the last good ones stay in force (see the log)"
            ),
        }
    }
}

/// "Ignore our own events": whether `actor` is the bot (GitLab usernames are case-insensitive).
/// The one place this rule lives; MR routing, issue handling and commands ask it.
pub fn is_own_event(actor: &str, bot_username: &str) -> bool {
    actor.eq_ignore_ascii_case(bot_username)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_events_are_recognised_whatever_the_case() {
        let table = [
            ("cocreate-bot", "cocreate-bot", true),
            ("CoCreate-Bot", "cocreate-bot", true),
            ("cocreate-bot", "COCREATE-BOT", true),
            ("contributor", "cocreate-bot", false),
            ("cocreate-bot2", "cocreate-bot", false),
            ("", "cocreate-bot", false),
        ];
        for (actor, bot, want) in table {
            assert_eq!(is_own_event(actor, bot), want, "{actor} / {bot}");
        }
    }

    #[test]
    fn skips_read_as_before_and_serialize_with_their_reason() {
        let mr = MrRef {
            project_id: 7,
            iid: 3,
        };
        assert_eq!(
            Skip::CommentGone { note_id: 9, mr }.to_string(),
            format!("comment 9 on {mr} no longer exists")
        );
        assert_eq!(
            Skip::MrGone { mr }.to_string(),
            format!("{mr} no longer exists")
        );
        assert_eq!(
            Skip::UnhandledKind {
                kind: "wiki_page".into()
            }
            .to_string(),
            "event kind `wiki_page` is not handled"
        );
        let json = serde_json::to_value(Skip::NotOpen {
            state: "merged".into(),
        })
        .unwrap();
        assert_eq!(json["reason"], "not_open");
        assert_eq!(json["state"], "merged");
    }
}

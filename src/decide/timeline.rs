//! An MR's timeline as the rules see it: what happened on it and who did it, and which of those
//! people are bots. The nudge rules (whose turn it is) and the response metric (time to first
//! response) both read it.

use chrono::{DateTime, Utc};

/// One thing that happened on the MR (a comment, or a system note: push, approval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub at: DateTime<Utc>,
    pub username: String,
    pub system: bool,
    pub body: String,
}

/// Who counts as a bot: this program's account, the usernames of the policy's
/// `review_slo.bots`, and GitLab's own bot accounts (project, group and service-account
/// tokens are `project_<id>_bot_<hash>`, `group_<id>_bot_<hash>`, `service_account_…`; the
/// instance's internal bots end in `-bot`; `ghost` stands for deleted users).
#[derive(Debug, Clone, Copy)]
pub struct Bots<'a> {
    pub ours: &'a str,
    pub configured: &'a [String],
}

impl Bots<'_> {
    pub fn contains(&self, username: &str) -> bool {
        let u = username.to_ascii_lowercase();
        u == self.ours.to_ascii_lowercase()
            || self.configured.iter().any(|b| b.eq_ignore_ascii_case(&u))
            || u == "ghost"
            || u.ends_with("-bot")
            || u.starts_with("service_account_")
            || ((u.starts_with("project_") || u.starts_with("group_")) && u.contains("_bot"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_whose_names_merely_contain_bot_are_people() {
        let bots = Bots {
            ours: "cocreate-bot",
            configured: &[],
        };
        for human in ["abbott", "robot_fan", "bottle", "project_lead"] {
            assert!(!bots.contains(human), "{human}");
        }
        assert!(bots.contains("CoCreate-Bot"));
    }
}

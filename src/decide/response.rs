//! Time to first response, as CHAOSS defines it: the time from when a merge request is opened
//! to the first response by someone other than its author, bots excluded.
//!
//! A response is a comment (a non-system note, on the MR or its diff) or an approval (GitLab
//! records it as the system note "approved this merge request"). Other system notes (labels,
//! reviewers requested, pushes) are GitLab's bookkeeping, not a person answering.

use chrono::{DateTime, Utc};

use super::timeline::{Activity, Bots};

/// GitLab's system note for an approval.
const APPROVAL: &str = "approved this merge request";

/// When the MR opened at `created_at` by `author` first got a response, if it has.
pub fn first_response(
    created_at: DateTime<Utc>,
    author: &str,
    activity: &[Activity],
    bots: Bots<'_>,
) -> Option<DateTime<Utc>> {
    activity
        .iter()
        .filter(|a| a.at >= created_at)
        .filter(|a| !a.username.eq_ignore_ascii_case(author) && !bots.contains(&a.username))
        .filter(|a| !a.system || a.body.trim_start().starts_with(APPROVAL))
        .map(|a| a.at)
        .min()
}

/// Hours between two instants, to one decimal.
pub fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_seconds() as f64 / 360.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    fn act(at: &str, who: &str, system: bool, body: &str) -> Activity {
        Activity {
            at: t(at),
            username: who.into(),
            system,
            body: body.into(),
        }
    }

    const OPENED: &str = "2025-03-03T09:00:00Z";

    #[test]
    fn first_response_table() {
        let configured = vec!["Triage-Helper".to_owned()];
        let bots = Bots {
            ours: "cocreate-bot",
            configured: &configured,
        };
        let cases: Vec<(&str, Vec<Activity>, Option<&str>)> = vec![
            ("nothing yet", vec![], None),
            (
                "the author's own comments are not a response",
                vec![act("2025-03-03T10:00:00Z", "Dev", false, "ping?")],
                None,
            ),
            (
                "our bot's welcome is not a response",
                vec![act(
                    "2025-03-03T09:01:00Z",
                    "cocreate-bot",
                    false,
                    "Welcome",
                )],
                None,
            ),
            (
                "configured bots, GitLab token bots and internal bots are not responses",
                vec![
                    act("2025-03-03T09:02:00Z", "triage-helper", false, "labelled"),
                    act("2025-03-03T09:03:00Z", "project_42_bot_3f2a", false, "CI"),
                    act("2025-03-03T09:04:00Z", "group_7_bot_aa", false, "x"),
                    act("2025-03-03T09:05:00Z", "alert-bot", false, "x"),
                    act(
                        "2025-03-03T09:06:00Z",
                        "service_account_group_9_x",
                        false,
                        "x",
                    ),
                    act("2025-03-03T09:07:00Z", "ghost", false, "x"),
                ],
                None,
            ),
            (
                "system bookkeeping by a person is not a response",
                vec![
                    act(
                        "2025-03-03T09:30:00Z",
                        "cs-reviewer-1",
                        true,
                        "added ~1 label",
                    ),
                    act(
                        "2025-03-03T09:31:00Z",
                        "cs-reviewer-1",
                        true,
                        "requested review from @x",
                    ),
                ],
                None,
            ),
            (
                "a reviewer's comment is",
                vec![
                    act("2025-03-03T09:01:00Z", "cocreate-bot", false, "Welcome"),
                    act("2025-03-04T11:00:00Z", "cs-reviewer-1", false, "Thanks!"),
                ],
                Some("2025-03-04T11:00:00Z"),
            ),
            (
                "anyone other than the author counts, not only reviewers",
                vec![act("2025-03-03T12:00:00Z", "maintainer", false, "LGTM")],
                Some("2025-03-03T12:00:00Z"),
            ),
            (
                "an approval is a response",
                vec![
                    act("2025-03-05T08:00:00Z", "cs-reviewer-2", false, "nit"),
                    act(
                        "2025-03-04T08:00:00Z",
                        "cs-reviewer-2",
                        true,
                        "approved this merge request",
                    ),
                ],
                Some("2025-03-04T08:00:00Z"),
            ),
            (
                "the earliest response wins whatever the order of the notes",
                vec![
                    act("2025-03-06T08:00:00Z", "b", false, "late"),
                    act("2025-03-03T15:00:00Z", "a", false, "early"),
                ],
                Some("2025-03-03T15:00:00Z"),
            ),
            (
                "notes dated before the MR opened (imported) are ignored",
                vec![act("2025-03-01T08:00:00Z", "a", false, "old")],
                None,
            ),
        ];
        for (name, activity, want) in cases {
            let got = first_response(t(OPENED), "dev", &activity, bots);
            assert_eq!(got, want.map(t), "{name}");
        }
    }

    #[test]
    fn hours_are_rounded_to_a_tenth() {
        assert_eq!(hours(t(OPENED), t("2025-03-04T11:00:00Z")), 26.0);
        assert_eq!(hours(t(OPENED), t("2025-03-03T09:20:00Z")), 0.3);
    }
}

//! The review-response SLO: whose turn it is on a Co-Create MR, how long it has waited in
//! business days, and the ping, escalation or author reminder that is due (each once per period).

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::Serialize;

use super::timeline::{Activity, Bots};
use super::{Action, NoteTarget, RosterFacts, Step};
use crate::domain::{MrRef, UserId};
use crate::messages::{Marker, Messages, Note, TemplateError};
use crate::neutralize;
use crate::policy::{Policies, ReviewSlo};

/// Weekdays after `from`'s day up to and including `to`'s day, minus holidays.
pub fn business_days_between(from: NaiveDate, to: NaiveDate, holidays: &[NaiveDate]) -> u32 {
    let mut n = 0;
    let mut d = from;
    while d < to {
        d = d.succ_opt().unwrap_or(to);
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !holidays.contains(&d) {
            n += 1;
        }
    }
    n
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Turn {
    Reviewer,
    Author,
}

/// Whose turn it is and since when: the reviewer's after the author's last push or comment (or
/// since the MR was opened), the author's after a reviewer's last comment or approval. Bots and
/// other people do not move the turn.
pub fn whose_turn(
    created_at: DateTime<Utc>,
    author: &str,
    reviewers: &[String],
    activity: &[Activity],
    bots: Bots<'_>,
) -> (Turn, DateTime<Utc>) {
    let mut turn = (Turn::Reviewer, created_at);
    let mut sorted: Vec<&Activity> = activity.iter().collect();
    sorted.sort_by_key(|a| a.at);
    for a in sorted {
        if bots.contains(&a.username) {
            continue;
        }
        if a.username.eq_ignore_ascii_case(author) {
            if turn.0 == Turn::Author {
                turn = (Turn::Reviewer, a.at);
            }
        } else if reviewers
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&a.username))
            && turn.0 == Turn::Reviewer
        {
            turn = (Turn::Author, a.at);
        }
    }
    turn
}

/// Everything the nudge rules need about one MR.
#[derive(Debug, Clone)]
pub struct NudgeFacts<'a> {
    pub mr: MrRef,
    pub created_at: DateTime<Utc>,
    pub author: &'a str,
    pub labels: &'a [String],
    /// All reviewers (id, username).
    pub reviewers: &'a [(UserId, String)],
    pub activity: &'a [Activity],
    /// Markers of the bot's notes.
    pub markers: &'a [Marker],
    pub now: DateTime<Utc>,
    pub roster: Option<&'a RosterFacts>,
    pub bot: &'a str,
}

/// What is due on one MR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NudgeOutcome {
    pub turn: Turn,
    pub since: DateTime<Utc>,
    pub waited_business_days: u32,
    pub overdue: bool,
}

/// What the nudge rules may still need to read ([`Step::Need`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NudgeNeed {
    /// The MR is due to be handed to someone else: the roster's load chooses who.
    Roster,
}

/// What is due on one MR; asks for the roster only when the review must be handed over.
pub fn decide_nudge(
    f: &NudgeFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Step<(NudgeOutcome, Vec<Action>), NudgeNeed>, TemplateError> {
    let slo: &ReviewSlo = &policies.routing.review_slo;
    let roster = &policies.routing.roster;
    let overdue_label = &policies.routing.labels.overdue;
    let roster_reviewers: Vec<String> = f
        .reviewers
        .iter()
        .map(|(_, u)| u.to_ascii_lowercase())
        .filter(|u| super::is_roster_reviewer(roster, u) || roster.lead.as_ref() == Some(u))
        .collect();
    let reviewers: Vec<String> = f.reviewers.iter().map(|(_, u)| u.clone()).collect();
    let (turn, since) = whose_turn(
        f.created_at,
        f.author,
        &reviewers,
        f.activity,
        Bots {
            ours: f.bot,
            configured: &slo.bots,
        },
    );
    let waited = business_days_between(since.date_naive(), f.now.date_naive(), &slo.holidays);
    let period = since.format("%Y-%m-%dT%H:%M").to_string();
    let has_label = f.labels.contains(overdue_label);
    let mut actions = Vec::new();
    let note = |marker: Marker, body: String| {
        (!f.markers.contains(&marker)).then(|| Action::PostNote {
            target: NoteTarget::MergeRequest(f.mr),
            note: Note::new(marker, body),
        })
    };
    let overdue =
        turn == Turn::Reviewer && waited >= slo.business_days && !roster_reviewers.is_empty();
    if turn == Turn::Reviewer
        && waited >= slo.business_days + slo.escalate_after_days
        && !roster_reviewers.is_empty()
    {
        // Hand it to someone else on the roster (least loaded, not busy), else the lead.
        let Some(roster_now) = f.roster else {
            return Ok(Step::Need(NudgeNeed::Roster));
        };
        let others = RosterFacts {
            members: roster_now
                .members
                .iter()
                .filter(|m| !roster_reviewers.contains(&m.username))
                .cloned()
                .collect(),
            preferred: None,
        };
        let next = super::choose_reviewer(roster, &others);
        if let Some(next) = next.filter(|n| !roster_reviewers.contains(&n.username)) {
            if !f.markers.contains(&Marker::NudgeEscalate(period.clone())) {
                // The escalation replaces the roster reviewers who let it wait.
                let kept: Vec<(UserId, String)> = f
                    .reviewers
                    .iter()
                    .filter(|(_, u)| !roster_reviewers.contains(&u.to_ascii_lowercase()))
                    .cloned()
                    .collect();
                let ids = super::append_reviewer(&kept, next.id);
                actions.push(Action::EditMergeRequest {
                    mr: f.mr,
                    add_labels: vec![],
                    remove_labels: vec![],
                    reviewer_ids: Some(ids),
                    added_reviewer: Some(next.username.clone()),
                });
                let body = messages.nudge(
                    "nudge_escalate.md",
                    &neutralize::mention(&next.username),
                    &roster_reviewers
                        .iter()
                        .map(|r| neutralize::mention(r))
                        .collect::<Vec<_>>()
                        .join(", "),
                    waited,
                    f.bot,
                )?;
                actions.extend(note(Marker::NudgeEscalate(period.clone()), body));
            }
        }
    } else if overdue {
        let body = messages.nudge(
            "nudge_ping.md",
            &roster_reviewers
                .iter()
                .map(|r| neutralize::mention(r))
                .collect::<Vec<_>>()
                .join(", "),
            &neutralize::mention(f.author),
            waited,
            f.bot,
        )?;
        actions.extend(note(Marker::NudgePing(period.clone()), body));
    } else if turn == Turn::Author {
        let days = (f.now - since).num_days();
        if days >= i64::from(slo.author_reminder_days) {
            let body = messages.nudge(
                "nudge_author.md",
                &neutralize::mention(f.author),
                "",
                days as u32,
                f.bot,
            )?;
            actions.extend(note(Marker::NudgeAuthor(period.clone()), body));
        }
    }
    let label_change = match (overdue, has_label) {
        (true, false) => Some((vec![overdue_label.clone()], vec![])),
        (false, true) => Some((vec![], vec![overdue_label.clone()])),
        _ => None,
    };
    if let Some((add, remove)) = label_change {
        // One PUT: the label goes with the hand-over's edit when there is one.
        let handover = actions.iter_mut().find_map(|a| match a {
            Action::EditMergeRequest {
                add_labels,
                remove_labels,
                ..
            } => Some((add_labels, remove_labels)),
            _ => None,
        });
        match handover {
            Some((add_labels, remove_labels)) => {
                add_labels.extend(add);
                remove_labels.extend(remove);
            }
            None => actions.insert(0, label_edit(f.mr, add, remove)),
        }
    }
    Ok(Step::Act((
        NudgeOutcome {
            turn,
            since,
            waited_business_days: waited,
            overdue,
        },
        actions,
    )))
}

fn label_edit(mr: MrRef, add: Vec<String>, remove: Vec<String>) -> Action {
    Action::EditMergeRequest {
        mr,
        add_labels: add,
        remove_labels: remove,
        reviewer_ids: None,
        added_reviewer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let rows = [
            ("2026-11-02", "2026-11-06", vec![], 4), // Mon → Fri
            ("2026-11-06", "2026-11-09", vec![], 1), // Fri → Mon
            ("2026-11-07", "2026-11-08", vec![], 0), // Sat → Sun
            ("2026-11-02", "2026-11-12", vec![], 8),
            ("2026-11-02", "2026-11-06", vec![d("2026-11-04")], 3),
            ("2026-11-06", "2026-11-06", vec![], 0),
        ];
        for (from, to, hol, want) in rows {
            assert_eq!(
                business_days_between(d(from), d(to), &hol),
                want,
                "{from} → {to}"
            );
        }
    }

    /// An MR first seen long past the hand-over: the overdue label and the new reviewer go in
    /// one edit, then one note.
    #[test]
    fn hand_over_and_label_are_one_edit() {
        use crate::domain::Availability;
        use crate::messages::Messages;
        use crate::policy::Policies;
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("t").to_utc();
        let policies = Policies::embedded().expect("examples");
        let messages = Messages::embedded().expect("templates");
        let member = |name: &str, id: u64, load: usize| crate::decide::RosterMember {
            username: name.into(),
            id: Some(id),
            availability: Availability::Available,
            open_reviews: load,
            org_reviews: 0,
        };
        let roster = RosterFacts {
            members: vec![
                member("cs-reviewer-1", 101, 5),
                member("cs-reviewer-2", 102, 1),
                member("cs-reviewer-3", 103, 3),
            ],
            preferred: None,
        };
        let reviewers = vec![
            (101, "cs-reviewer-1".to_string()),
            (25, "maintainer".into()),
        ];
        let mr = MrRef {
            project_id: 2,
            iid: 7,
        };
        let facts = NudgeFacts {
            mr,
            created_at: t("2026-11-02T10:00:00Z"),
            author: "dev",
            labels: &["Co-Create".to_string()],
            reviewers: &reviewers,
            activity: &[],
            markers: &[],
            now: t("2026-11-16T10:00:00Z"), // 10 business days
            roster: Some(&roster),
            bot: "cocreate-bot",
        };
        let asked = NudgeFacts {
            roster: None,
            ..facts.clone()
        };
        assert_eq!(
            decide_nudge(&asked, &policies, &messages)
                .expect("decides")
                .need(),
            Some(&NudgeNeed::Roster),
            "a hand-over asks for the roster's load"
        );
        let (outcome, actions) = decide_nudge(&facts, &policies, &messages)
            .expect("decides")
            .act()
            .expect("the roster is given");
        assert!(outcome.overdue);
        assert_eq!(actions.len(), 2, "{actions:#?}");
        assert_eq!(
            actions[0],
            Action::EditMergeRequest {
                mr,
                add_labels: vec!["Co-Create review::overdue".into()],
                remove_labels: vec![],
                // The person's choice (maintainer) stays; the least loaded member takes over.
                reviewer_ids: Some(vec![25, 102]),
                added_reviewer: Some("cs-reviewer-2".into()),
            }
        );
        assert!(matches!(actions[1], Action::PostNote { .. }));
    }

    #[test]
    fn turn_table() {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("t")
                .with_timezone(&Utc)
        };
        let a = |at: &str, who: &str| Activity {
            at: t(at),
            username: who.into(),
            system: false,
            body: String::new(),
        };
        let created = t("2026-11-02T10:00:00Z");
        let reviewers = vec!["rev".to_string()];
        let rows = vec![
            (vec![], (Turn::Reviewer, created)),
            (
                vec![a("2026-11-03T10:00:00Z", "rev")],
                (Turn::Author, t("2026-11-03T10:00:00Z")),
            ),
            (
                vec![
                    a("2026-11-03T10:00:00Z", "rev"),
                    a("2026-11-04T10:00:00Z", "dev"),
                ],
                (Turn::Reviewer, t("2026-11-04T10:00:00Z")),
            ),
            // The author commenting again while waiting does not restart the clock.
            (
                vec![a("2026-11-03T10:00:00Z", "dev")],
                (Turn::Reviewer, created),
            ),
            // Bots and bystanders do not move the turn.
            (
                vec![
                    a("2026-11-03T10:00:00Z", "bot"),
                    a("2026-11-03T11:00:00Z", "someone"),
                ],
                (Turn::Reviewer, created),
            ),
        ];
        for (activity, want) in rows {
            assert_eq!(
                whose_turn(
                    created,
                    "dev",
                    &reviewers,
                    &activity,
                    Bots {
                        ours: "bot",
                        configured: &[]
                    }
                ),
                want,
                "{activity:?}"
            );
        }
    }
}

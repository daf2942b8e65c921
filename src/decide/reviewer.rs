//! Choosing a Contributor Success reviewer: sticky per organization, else least loaded,
//! skipping roster members whose GitLab status is busy.

use serde::Serialize;

use crate::domain::{Availability, UserId};
use crate::policy::{Roster, Strategy};

/// Whether `username` is on the Contributor Success roster (usernames compare case-insensitively).
/// The one roster lookup every rule uses.
pub fn is_roster_reviewer(roster: &Roster, username: &str) -> bool {
    roster
        .reviewers
        .iter()
        .any(|r| r.eq_ignore_ascii_case(username))
}

/// The first of an MR's reviewers who is on the roster.
pub fn roster_reviewer<'a>(
    roster: &Roster,
    reviewers: &'a [(UserId, String)],
) -> Option<&'a (UserId, String)> {
    reviewers
        .iter()
        .find(|(_, u)| is_roster_reviewer(roster, u))
}

/// The reviewer list to send when adding one: GitLab replaces the whole list, so every
/// reviewer people chose stays, and ours (when GitLab gave us an id) goes last, once.
pub fn append_reviewer(reviewers: &[(UserId, String)], add: Option<UserId>) -> Vec<UserId> {
    let mut ids: Vec<UserId> = reviewers.iter().map(|(id, _)| *id).collect();
    if let Some(id) = add.filter(|id| !ids.contains(id)) {
        ids.push(id);
    }
    ids
}

/// The organization's engagement DRI as preferred reviewer: the first assignee of its tracking
/// issues who is on the roster (lowercased, as roster usernames are).
pub fn preferred_reviewer(
    roster: &Roster,
    tracking: &[super::engagement::TrackingIssue],
) -> Option<String> {
    tracking
        .iter()
        .flat_map(|t| t.assignees.iter())
        .find(|(_, u)| is_roster_reviewer(roster, u))
        .map(|(_, u)| u.to_ascii_lowercase())
}

/// One roster member as GitLab sees them right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterMember {
    pub username: String,
    /// Unknown in a dry run without a token.
    pub id: Option<UserId>,
    pub availability: Availability,
    /// Open Co-Create MRs this member reviews.
    pub open_reviews: usize,
    /// Of those, how many belong to the organization at hand (for stickiness).
    pub org_reviews: usize,
}

/// What the rules need to know about the roster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RosterFacts {
    /// In roster order.
    pub members: Vec<RosterMember>,
    /// The organization's engagement DRI, when on the roster: preferred while available.
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewerChoice {
    pub username: String,
    pub id: Option<UserId>,
    pub reason: &'static str,
}

/// Picks a reviewer for an organization's new MR. `None` when the roster is empty of candidates.
///
/// 1. sticky: the member who reviews most of the organization's open Co-Create MRs;
/// 2. else the least loaded member (ties: roster order);
///
/// busy members are skipped when `skip_busy`; when everyone is busy, the lead takes it, and
/// without a lead the least loaded member regardless of status (an MR never waits unowned).
pub fn choose_reviewer(roster: &Roster, facts: &RosterFacts) -> Option<ReviewerChoice> {
    let pick = |m: &RosterMember, reason| ReviewerChoice {
        username: m.username.clone(),
        id: m.id,
        reason,
    };
    let available: Vec<&RosterMember> = facts
        .members
        .iter()
        .filter(|m| !roster.skip_busy || m.availability == Availability::Available)
        .collect();
    if let Some(m) = facts
        .preferred
        .as_ref()
        .and_then(|p| available.iter().find(|m| &m.username == p))
    {
        return Some(pick(m, "sticky: the engagement's Contributor Success DRI"));
    }
    if roster.strategy == Strategy::StickyThenLeastLoaded {
        let sticky = available
            .iter()
            .filter(|m| m.org_reviews > 0)
            // max_by_key keeps the last maximum; iterate reversed to prefer roster order on ties.
            .rev()
            .max_by_key(|m| m.org_reviews);
        if let Some(m) = sticky {
            return Some(pick(m, "sticky: already reviews this organization's MRs"));
        }
    }
    // min_by_key keeps the first minimum: roster order on ties.
    if let Some(m) = available.iter().min_by_key(|m| m.open_reviews) {
        return Some(pick(m, "least loaded"));
    }
    if let Some(lead) = &roster.lead {
        if let Some(m) = facts.members.iter().find(|m| &m.username == lead) {
            return Some(pick(m, "everyone is busy: the lead takes it"));
        }
        return Some(ReviewerChoice {
            username: lead.clone(),
            id: None,
            reason: "everyone is busy: the lead takes it",
        });
    }
    facts
        .members
        .iter()
        .min_by_key(|m| m.open_reviews)
        .map(|m| pick(m, "everyone is busy: least loaded"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Availability::*;

    fn roster(strategy: Strategy, lead: Option<&str>) -> Roster {
        Roster {
            reviewers: vec!["a".into(), "b".into(), "c".into()],
            lead: lead.map(Into::into),
            strategy,
            skip_busy: true,
        }
    }

    fn m(name: &str, avail: Availability, open: usize, org: usize) -> RosterMember {
        RosterMember {
            username: name.into(),
            id: Some(name.as_bytes()[0] as u64),
            availability: avail,
            open_reviews: open,
            org_reviews: org,
        }
    }

    #[test]
    fn roster_lookup_append_and_dri_preference() {
        let r = roster(Strategy::StickyThenLeastLoaded, None);
        assert!(is_roster_reviewer(&r, "B"));
        assert!(!is_roster_reviewer(&r, "bb"));
        let reviewers = vec![(7, "someone".to_string()), (2, "C".to_string())];
        assert_eq!(roster_reviewer(&r, &reviewers), Some(&(2, "C".to_string())));
        assert_eq!(roster_reviewer(&r, &reviewers[..1]), None);
        // People's reviewers stay, ours goes last, once; without an id nothing is added.
        assert_eq!(append_reviewer(&reviewers, Some(9)), vec![7, 2, 9]);
        assert_eq!(append_reviewer(&reviewers, Some(2)), vec![7, 2]);
        assert_eq!(append_reviewer(&reviewers, None), vec![7, 2]);
        let tracking =
            |assignees: Vec<(UserId, String)>| crate::decide::engagement::TrackingIssue {
                issue: crate::decide::engagement::IssueRef {
                    project: "1".into(),
                    iid: 1,
                },
                confidential: true,
                assignees,
                linked: vec![],
            };
        let issues = vec![
            tracking(vec![(5, "account-exec".into())]),
            tracking(vec![(6, "B".into()), (3, "c".into())]),
        ];
        assert_eq!(preferred_reviewer(&r, &issues), Some("b".to_string()));
        assert_eq!(preferred_reviewer(&r, &issues[..1]), None);
    }

    #[test]
    fn reviewer_table() {
        use Strategy::*;
        let rows: Vec<(&str, Roster, Vec<RosterMember>, Option<&str>)> = vec![
            (
                "least loaded wins",
                roster(StickyThenLeastLoaded, None),
                vec![
                    m("a", Available, 3, 0),
                    m("b", Available, 1, 0),
                    m("c", Available, 2, 0),
                ],
                Some("b"),
            ),
            (
                "ties go to roster order",
                roster(StickyThenLeastLoaded, None),
                vec![
                    m("a", Available, 1, 0),
                    m("b", Available, 1, 0),
                    m("c", Available, 1, 0),
                ],
                Some("a"),
            ),
            (
                "sticky beats load",
                roster(StickyThenLeastLoaded, None),
                vec![
                    m("a", Available, 0, 0),
                    m("b", Available, 9, 2),
                    m("c", Available, 5, 1),
                ],
                Some("b"),
            ),
            (
                "sticky tie goes to roster order",
                roster(StickyThenLeastLoaded, None),
                vec![
                    m("a", Available, 0, 0),
                    m("b", Available, 9, 2),
                    m("c", Available, 5, 2),
                ],
                Some("b"),
            ),
            (
                "busy sticky reviewer is skipped",
                roster(StickyThenLeastLoaded, None),
                vec![
                    m("a", Available, 4, 0),
                    m("b", Busy, 1, 3),
                    m("c", Available, 2, 0),
                ],
                Some("c"),
            ),
            (
                "least_loaded ignores stickiness",
                roster(LeastLoaded, None),
                vec![
                    m("a", Available, 0, 0),
                    m("b", Available, 9, 2),
                    m("c", Available, 5, 1),
                ],
                Some("a"),
            ),
            (
                "all busy: the lead",
                roster(StickyThenLeastLoaded, Some("lead")),
                vec![m("a", Busy, 0, 0), m("b", Busy, 0, 0)],
                Some("lead"),
            ),
            (
                "all busy, no lead: least loaded anyway",
                roster(StickyThenLeastLoaded, None),
                vec![m("a", Busy, 2, 0), m("b", Busy, 1, 0)],
                Some("b"),
            ),
            (
                "empty roster facts",
                roster(StickyThenLeastLoaded, None),
                vec![],
                None,
            ),
        ];
        for (name, r, members, want) in rows {
            let got = choose_reviewer(
                &r,
                &RosterFacts {
                    members,
                    preferred: None,
                },
            );
            assert_eq!(got.as_ref().map(|c| c.username.as_str()), want, "{name}");
        }
    }

    #[test]
    fn busy_members_count_when_skip_busy_is_off() {
        let mut r = roster(Strategy::LeastLoaded, None);
        r.skip_busy = false;
        let got = choose_reviewer(
            &r,
            &RosterFacts {
                preferred: None,
                members: vec![m("a", Available, 3, 0), m("b", Busy, 1, 0)],
            },
        );
        assert_eq!(got.map(|c| c.username), Some("b".into()));
    }
}

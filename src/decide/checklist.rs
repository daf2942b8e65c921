//! The engagement checklist keeps itself current: the items GitLab can prove are ticked, a box
//! is never unticked (whoever ticked it), and the description is edited only when a box changes.
//!
//! Each item the bot can prove carries a hidden key at the end of its line
//! (`<!-- cocreate:check:dri -->`, see `templates/engagement_checklist.md`); lines without a key
//! are the people's to tick. A checklist of an earlier version without keys is left alone.

use chrono::NaiveDate;
use serde::Serialize;

use super::cca_state;
use super::funnel::Pathway;
use crate::domain::UserId;
use crate::policy::{AccountTeamMode, Policies};

/// An item of the checklist that GitLab can prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Item {
    Agreement,
    Dri,
    AccountTeam,
    Pathway,
    MeetingNotes,
    Onboarding,
    FirstMrOpened,
    FirstMrMerged,
}

impl Item {
    pub const ALL: [Item; 8] = [
        Item::Agreement,
        Item::Dri,
        Item::AccountTeam,
        Item::Pathway,
        Item::MeetingNotes,
        Item::Onboarding,
        Item::FirstMrOpened,
        Item::FirstMrMerged,
    ];

    /// The key at the end of its line.
    pub fn key(self) -> &'static str {
        match self {
            Item::Agreement => "agreement",
            Item::Dri => "dri",
            Item::AccountTeam => "account-team",
            Item::Pathway => "pathway",
            Item::MeetingNotes => "meeting-notes",
            Item::Onboarding => "onboarding",
            Item::FirstMrOpened => "first-mr-opened",
            Item::FirstMrMerged => "first-mr-merged",
        }
    }

    fn of_line(line: &str) -> Option<Item> {
        let key = line
            .trim_end()
            .strip_suffix(" -->")?
            .rsplit_once("<!-- cocreate:check:")?
            .1;
        Item::ALL.into_iter().find(|i| i.key() == key)
    }
}

/// What GitLab shows about one engagement.
#[derive(Debug, Clone)]
pub struct ChecklistFacts<'a> {
    /// The organization (its slug), for its agreement in agreements.yml.
    pub org: &'a crate::domain::OrgSlug,
    pub today: NaiveDate,
    /// The tracking issue's assignees, by username.
    pub assignees: &'a [(UserId, String)],
    /// The account team's usernames (from the intake, else organizations.yml).
    pub account_team: &'a [String],
    /// Whether the bot listed the account team in a note (`account_team: mention`).
    pub account_team_noted: bool,
    pub labels: &'a [String],
    /// Issues of the tracking project with the organization's label and the meeting-notes /
    /// onboarding label (any state).
    pub meeting_notes_filed: bool,
    pub onboarding_filed: bool,
    /// The organization's Co-Create MRs (any state) and whether one of them is merged.
    pub mrs_opened: bool,
    pub mr_merged: bool,
}

/// The items the facts prove.
pub fn proven(f: &ChecklistFacts<'_>, policies: &Policies) -> Vec<Item> {
    let routing = &policies.routing;
    let l = &routing.labels;
    let assigned = |name: &str| {
        f.assignees
            .iter()
            .any(|(_, u)| u.eq_ignore_ascii_case(name))
    };
    let team_on_issue = !f.account_team.is_empty()
        && match routing.tracking.account_team {
            AccountTeamMode::Assign => f.account_team.iter().all(|u| assigned(u)),
            AccountTeamMode::Mention => f.account_team_noted,
        };
    let pathway = f.labels.iter().any(|x| {
        x.strip_prefix(l.pathway_prefix.as_str())
            .and_then(Pathway::parse)
            .is_some()
    });
    let facts = [
        (
            Item::Agreement,
            cca_state(f.org, &policies.agreements, f.today).is_valid(),
        ),
        (
            Item::Dri,
            routing.roster.reviewers.iter().any(|r| assigned(r)),
        ),
        (Item::AccountTeam, team_on_issue),
        (Item::Pathway, pathway),
        (Item::MeetingNotes, f.meeting_notes_filed),
        (Item::Onboarding, f.onboarding_filed),
        (Item::FirstMrOpened, f.mrs_opened || f.mr_merged),
        (Item::FirstMrMerged, f.mr_merged),
    ];
    facts
        .into_iter()
        .filter_map(|(item, yes)| yes.then_some(item))
        .collect()
}

/// The description with every unticked box of a proven item ticked; `None` when nothing
/// changes (no edit then). Ticked boxes, unkeyed lines and everything else stay as written.
pub fn tick(description: &str, proven: &[Item]) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(description.len());
    for line in description.split_inclusive('\n') {
        let unticked = line.trim_start().starts_with("- [ ] ");
        match Item::of_line(line) {
            Some(item) if unticked && proven.contains(&item) => {
                out.push_str(&line.replacen("- [ ] ", "- [x] ", 1));
                changed = true;
            }
            _ => out.push_str(line),
        }
    }
    changed.then_some(out)
}

/// The items ticked in a description (by anyone), for reports and tests.
pub fn ticked(description: &str) -> Vec<Item> {
    description
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("- [x] ") || t.starts_with("- [X] ")
        })
        .filter_map(Item::of_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrgSlug;
    use crate::messages::Messages;

    fn policies() -> Policies {
        Policies::embedded().expect("examples")
    }

    fn checklist() -> String {
        let p = policies();
        Messages::embedded()
            .expect("templates")
            .checklist("#c", "signed", &p.routing.labels)
            .expect("renders")
    }

    #[test]
    fn every_provable_item_has_its_line_in_the_shipped_checklist() {
        let text = checklist();
        let mut keyed: Vec<Item> = text.lines().filter_map(Item::of_line).collect();
        keyed.sort();
        assert_eq!(keyed, Item::ALL.to_vec());
        assert!(text.contains("Enablement: Developer Relations workshop"));
    }

    #[test]
    fn proven_table() {
        let p = policies();
        let org = OrgSlug::parse("example-aero").expect("slug");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let team = s(&["csm-aero", "sa-aero"]);
        let dri = (101, "cs-reviewer-1".to_string());
        let csm = (701, "csm-aero".to_string());
        let sa = (702, "sa-aero".to_string());
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date");
        struct Row {
            today: &'static str,
            assignees: Vec<(UserId, String)>,
            labels: Vec<String>,
            docs: (bool, bool),
            mrs: (bool, bool),
            want: Vec<Item>,
        }
        let rows = vec![
            Row {
                today: "2026-11-23",
                assignees: vec![],
                labels: s(&["Co-Create stage::contacted"]),
                docs: (false, false),
                mrs: (false, false),
                want: vec![Item::Agreement],
            },
            // Expired agreement; DRI assigned; only part of the team assigned.
            Row {
                today: "2028-01-15",
                assignees: vec![dri.clone(), csm.clone()],
                labels: s(&[]),
                docs: (false, false),
                mrs: (false, false),
                want: vec![Item::Dri],
            },
            Row {
                today: "2026-11-23",
                assignees: vec![dri.clone(), csm.clone(), sa.clone()],
                labels: s(&["Co-Create pathway::not-aligned"]),
                docs: (true, false),
                mrs: (true, false),
                want: vec![
                    Item::Agreement,
                    Item::Dri,
                    Item::AccountTeam,
                    Item::Pathway,
                    Item::MeetingNotes,
                    Item::FirstMrOpened,
                ],
            },
            // A merged MR proves an opened one; an unknown pathway label proves nothing.
            Row {
                today: "2026-11-23",
                assignees: vec![csm, sa],
                labels: s(&["Co-Create pathway::someday"]),
                docs: (false, true),
                mrs: (false, true),
                want: vec![
                    Item::Agreement,
                    Item::AccountTeam,
                    Item::Onboarding,
                    Item::FirstMrOpened,
                    Item::FirstMrMerged,
                ],
            },
        ];
        for r in rows {
            let f = ChecklistFacts {
                org: &org,
                today: day(r.today),
                assignees: &r.assignees,
                account_team: &team,
                account_team_noted: false,
                labels: &r.labels,
                meeting_notes_filed: r.docs.0,
                onboarding_filed: r.docs.1,
                mrs_opened: r.mrs.0,
                mr_merged: r.mrs.1,
            };
            assert_eq!(proven(&f, &p), r.want, "{} {:?}", r.today, r.assignees);
        }
        // `mention`: the note counts, not the assignees.
        let mut mention = policies();
        mention.routing.tracking.account_team = AccountTeamMode::Mention;
        let f = |noted| ChecklistFacts {
            org: &org,
            today: day("2028-01-15"),
            assignees: &[],
            account_team: &team,
            account_team_noted: noted,
            labels: &[],
            meeting_notes_filed: false,
            onboarding_filed: false,
            mrs_opened: false,
            mr_merged: false,
        };
        assert_eq!(proven(&f(true), &mention), vec![Item::AccountTeam]);
        assert_eq!(proven(&f(false), &mention), vec![]);
    }

    #[test]
    fn tick_table() {
        let text = checklist();
        let ticked_by_hand = text.replace("- [ ] Slack channel", "- [x] Slack channel");
        let dri_by_hand = text.replace(
            "- [ ] Contributor Success DRI",
            "- [x] Contributor Success DRI",
        );
        // (description, proven, wanted ticked items, or None: no edit)
        let rows: Vec<(String, Vec<Item>, Option<Vec<Item>>)> = vec![
            (text.clone(), vec![], None),
            (text.clone(), vec![Item::Dri], Some(vec![Item::Dri])),
            (
                text.clone(),
                Item::ALL.to_vec(),
                Some({
                    let mut v = Item::ALL.to_vec();
                    v.sort_by_key(|i| text.find(&format!("check:{} ", i.key())));
                    v
                }),
            ),
            // Ticked already (by a person): no edit.
            (dri_by_hand.clone(), vec![Item::Dri], None),
            // Ticked by a person, not proven: stays ticked, nothing else changes.
            (dri_by_hand.clone(), vec![], None),
            (ticked_by_hand.clone(), vec![Item::Pathway], Some(vec![Item::Pathway])),
            // A checklist of an earlier version (no keys): left alone.
            (
                "## Co-Create checklist\n\n- [ ] Corporate Contributor Agreement on file (now: **signed**)\n".into(),
                Item::ALL.to_vec(),
                None,
            ),
            // A key in the text of another line is not its item.
            (
                "- [ ] see <!-- cocreate:check:dri --> above\n".into(),
                vec![Item::Dri],
                None,
            ),
        ];
        for (description, proven, want) in rows {
            let got = tick(&description, &proven);
            assert_eq!(got.as_ref().map(|d| ticked(d)), want, "{proven:?}");
            if let Some(d) = &got {
                // Only boxes change: the rest of the text is kept byte for byte.
                assert_eq!(
                    d.replace("- [x] ", "- [ ] "),
                    description.replace("- [x] ", "- [ ] ")
                );
                assert_eq!(d.len(), description.len());
                // Ticking again changes nothing.
                assert_eq!(tick(d, &proven), None);
            }
        }
        // A person's ticks are kept.
        let d = tick(&ticked_by_hand, &[Item::Pathway]).expect("ticks");
        assert!(d.contains("- [x] Slack channel"));
    }
}

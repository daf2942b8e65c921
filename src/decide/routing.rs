//! Co-Create merge request routing: labels, a Contributor Success reviewer, one welcome note.

use serde::Serialize;

use super::{choose_reviewer, recognize, Action, Decision, NoteTarget, RosterFacts, Skip};
use crate::domain::{MrRef, UserFacts, UserId};
use crate::messages::{Marker, Messages, TemplateError, Welcome};
use crate::policy::Policies;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MrState {
    Opened,
    Closed,
    Merged,
    Locked,
}

impl MrState {
    pub fn parse(s: &str) -> Self {
        match s {
            "opened" | "reopened" => Self::Opened,
            "merged" => Self::Merged,
            "locked" => Self::Locked,
            _ => Self::Closed,
        }
    }
}

/// Everything the rules need about one merge request, read fresh from GitLab (or, in a dry run,
/// taken from the payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MrFacts {
    pub mr: MrRef,
    pub state: MrState,
    /// As the author wrote it: user-controlled, neutralized by `messages` before use.
    pub title: String,
    pub author: UserFacts,
    /// The username whose action caused the event (`user` in the payload), if known.
    pub actor: Option<String>,
    pub labels: Vec<String>,
    /// Current reviewers: id and username.
    pub reviewers: Vec<(UserId, String)>,
    /// A welcome note (found by its marker, written by the bot) already exists.
    pub welcome_posted: bool,
    pub bot_username: String,
    /// Present when a reviewer must be chosen (the MR has no roster reviewer yet).
    pub roster: Option<RosterFacts>,
}

impl MrFacts {
    /// The MR already has a reviewer from the Contributor Success roster.
    pub fn has_roster_reviewer(&self, policies: &Policies) -> bool {
        self.reviewers.iter().any(|(_, u)| {
            policies
                .routing
                .roster
                .reviewers
                .contains(&u.to_ascii_lowercase())
        })
    }
}

/// The routing rules for one merge request. Pure: same facts, same actions.
pub fn decide_merge_request(
    facts: &MrFacts,
    policies: &Policies,
    messages: &Messages,
) -> Result<Decision, TemplateError> {
    let bot = facts.bot_username.to_ascii_lowercase();
    if facts
        .actor
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case(&bot))
    {
        return Ok(Decision::skipped(Skip::OwnEvent, None));
    }
    if facts.author.bot || facts.author.username.eq_ignore_ascii_case(&bot) {
        return Ok(Decision::skipped(Skip::BotAuthor, None));
    }
    let Some(org) = recognize(&facts.author, &policies.organizations) else {
        return Ok(Decision::skipped(Skip::NotCoCreate, None));
    };
    if facts.state != MrState::Opened {
        let state = serde_json::to_value(facts.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Ok(Decision::skipped(Skip::NotOpen { state }, Some(org)));
    }

    let labels = &policies.routing.labels;
    let wanted = [
        labels.cocreate.clone(),
        labels.community.clone(),
        labels.org(&org.slug),
    ];
    let add_labels: Vec<String> = wanted
        .into_iter()
        .filter(|w| !facts.labels.iter().any(|l| l == w))
        .collect();

    // Keep every reviewer people chose; add ours only when no roster member reviews yet.
    let existing_roster_reviewer = facts
        .reviewers
        .iter()
        .find(|(_, u)| {
            policies
                .routing
                .roster
                .reviewers
                .contains(&u.to_ascii_lowercase())
        })
        .map(|(_, u)| u.clone());
    let choice = match (&existing_roster_reviewer, &facts.roster) {
        (None, Some(roster)) => choose_reviewer(&policies.routing.roster, roster),
        _ => None,
    };
    let (reviewer_ids, added_reviewer) = match &choice {
        Some(c) => {
            let mut ids: Vec<UserId> = facts.reviewers.iter().map(|(id, _)| *id).collect();
            if let Some(id) = c.id {
                ids.push(id);
            }
            (Some(ids), Some(c.username.clone()))
        }
        None => (None, None),
    };

    let mut actions = Vec::new();
    if !add_labels.is_empty() || reviewer_ids.is_some() {
        actions.push(Action::EditMergeRequest {
            mr: facts.mr,
            add_labels,
            remove_labels: Vec::new(),
            reviewer_ids,
            added_reviewer,
        });
    }
    if !facts.welcome_posted {
        let reviewer = existing_roster_reviewer.or(choice.map(|c| c.username));
        let body = messages.welcome(&Welcome {
            author_username: &facts.author.username,
            title: &facts.title,
            reviewer_username: reviewer.as_deref(),
            bot_username: &facts.bot_username,
        })?;
        actions.push(Action::PostNote {
            target: NoteTarget::MergeRequest(facts.mr),
            marker: Marker::Welcome,
            body,
        });
    }
    Ok(Decision {
        org: Some(org),
        skip: None,
        actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::RosterMember;
    use crate::domain::Availability;

    fn policies() -> Policies {
        Policies::embedded().expect("examples")
    }

    fn author(username: &str) -> UserFacts {
        UserFacts {
            id: 501,
            username: username.into(),
            name: "Dev".into(),
            ..UserFacts::default()
        }
    }

    fn roster() -> RosterFacts {
        RosterFacts {
            members: ["cs-reviewer-1", "cs-reviewer-2", "cs-reviewer-3"]
                .iter()
                .enumerate()
                .map(|(i, u)| RosterMember {
                    username: u.to_string(),
                    id: Some(100 + i as u64),
                    availability: Availability::Available,
                    open_reviews: [2, 0, 1][i],
                    org_reviews: 0,
                })
                .collect(),
        }
    }

    fn facts() -> MrFacts {
        MrFacts {
            mr: MrRef {
                project_id: 2,
                iid: 16,
            },
            state: MrState::Opened,
            title: "Add input validation".into(),
            author: author("aero-dev-1"),
            actor: Some("aero-dev-1".into()),
            labels: vec!["enhancement".into()],
            reviewers: vec![(25, "sjones".into())],
            welcome_posted: false,
            bot_username: "cocreate-bot".into(),
            roster: Some(roster()),
        }
    }

    fn run(f: &MrFacts) -> Decision {
        decide_merge_request(f, &policies(), &Messages::embedded().expect("templates"))
            .expect("renders")
    }

    #[test]
    fn new_cocreate_mr_gets_labels_reviewer_and_welcome() {
        let d = run(&facts());
        assert_eq!(d.skip, None);
        assert_eq!(
            d.org.as_ref().map(|o| o.slug.as_str()),
            Some("example-aero")
        );
        assert_eq!(d.actions.len(), 2, "{:#?}", d.actions);
        assert_eq!(
            d.actions[0],
            Action::EditMergeRequest {
                mr: MrRef {
                    project_id: 2,
                    iid: 16
                },
                add_labels: vec![
                    "Co-Create".into(),
                    "Community contribution".into(),
                    "Co-Create org::example-aero".into()
                ],
                remove_labels: vec![],
                // The reviewer a person chose (25) stays; ours (least loaded: cs-reviewer-2) is added.
                reviewer_ids: Some(vec![25, 101]),
                added_reviewer: Some("cs-reviewer-2".into()),
            }
        );
        let Action::PostNote { body, marker, .. } = &d.actions[1] else {
            panic!("note expected")
        };
        assert_eq!(*marker, Marker::Welcome);
        assert!(
            body.contains("@cs-reviewer-2 from the Contributor Success team"),
            "{body}"
        );
    }

    #[test]
    fn table_of_cases() {
        type Case = (&'static str, fn(&mut MrFacts), Option<Skip>, usize);
        let cases: Vec<Case> = vec![
            (
                "everything in place: nothing to do (redelivery)",
                |f| {
                    f.labels = vec![
                        "Co-Create".into(),
                        "Community contribution".into(),
                        "Co-Create org::example-aero".into(),
                    ];
                    f.reviewers.push((101, "cs-reviewer-2".into()));
                    f.welcome_posted = true;
                    f.roster = None;
                },
                None,
                0,
            ),
            (
                "only a label missing",
                |f| {
                    f.labels = vec!["Co-Create".into(), "Community contribution".into()];
                    f.reviewers.push((101, "CS-Reviewer-2".into()));
                    f.welcome_posted = true;
                },
                None,
                1,
            ),
            (
                "only the note missing",
                |f| {
                    f.labels = vec![
                        "Co-Create".into(),
                        "Community contribution".into(),
                        "Co-Create org::example-aero".into(),
                    ];
                    f.reviewers = vec![(100, "cs-reviewer-1".into())];
                },
                None,
                1,
            ),
            (
                "outsider",
                |f| f.author = author("outsider"),
                Some(Skip::NotCoCreate),
                0,
            ),
            (
                "bot's own event",
                |f| f.actor = Some("CoCreate-Bot".into()),
                Some(Skip::OwnEvent),
                0,
            ),
            (
                "bot author",
                |f| f.author.bot = true,
                Some(Skip::BotAuthor),
                0,
            ),
            (
                "merged",
                |f| f.state = MrState::Merged,
                Some(Skip::NotOpen {
                    state: "merged".into(),
                }),
                0,
            ),
            (
                "closed",
                |f| f.state = MrState::Closed,
                Some(Skip::NotOpen {
                    state: "closed".into(),
                }),
                0,
            ),
            (
                "someone else updates a Co-Create MR: still routed",
                |f| f.actor = Some("maintainer".into()),
                None,
                2,
            ),
        ];
        for (name, mutate, skip, n_actions) in cases {
            let mut f = facts();
            mutate(&mut f);
            let d = run(&f);
            assert_eq!(d.skip, skip, "{name}");
            assert_eq!(d.actions.len(), n_actions, "{name}: {:#?}", d.actions);
        }
    }

    #[test]
    fn existing_roster_reviewer_is_named_and_not_replaced() {
        let mut f = facts();
        f.reviewers = vec![(102, "cs-reviewer-3".into())];
        let d = run(&f);
        assert!(d.actions.iter().all(|a| !matches!(
            a,
            Action::EditMergeRequest {
                reviewer_ids: Some(_),
                ..
            }
        )));
        let Some(Action::PostNote { body, .. }) = d.actions.last() else {
            panic!()
        };
        assert!(body.contains("@cs-reviewer-3"), "{body}");
    }

    #[test]
    fn hostile_author_name_cannot_mention_or_quick_action() {
        let mut f = facts();
        f.author.username = "aero-dev-1".into();
        f.author.name = "@all\n/close".into();
        f.title = "@all <b>urgent</b>\n/close\n/merge".into();
        let d = run(&f);
        let Some(Action::PostNote { body, .. }) = d.actions.last() else {
            panic!()
        };
        assert!(
            !body.contains("@all") && !body.contains("\n/close"),
            "{body}"
        );
        assert!(
            !body.contains("<b>") && !body.contains("\n/merge"),
            "{body}"
        );
        assert!(
            body.contains("@\u{2060}all &lt;b&gt;urgent&lt;\\/b&gt; \\/close \\/merge"),
            "{body}"
        );
    }

    #[test]
    fn deciding_is_deterministic() {
        assert_eq!(run(&facts()), run(&facts()));
    }
}

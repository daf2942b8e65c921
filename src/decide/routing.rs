//! Co-Create merge request routing: labels, a Contributor Success reviewer, one welcome note.

use serde::Serialize;

use chrono::NaiveDate;

use super::{
    cca_state, choose_reviewer, plan_cca, recognize, Action, CcaMrFacts, Decision, NoteTarget,
    Recognition, RosterFacts, Skip, Step,
};
use crate::domain::{MrRef, UserFacts, UserId};
use crate::messages::{CcaNotice, Marker, Messages, TemplateError, Welcome};
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

/// Where an MR's facts come from, which says what the rule may still ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The webhook payload (or a sweep's list) plus the author: enough to skip, not to act.
    /// The rule asks for the MR as it is now.
    Payload,
    /// The MR as GitLab has it now, read under the organization's lock.
    Current,
    /// The payload, and nothing more can be read (a dry run without a token): the rule
    /// decides on what it has.
    Offline,
}

/// The reads routing asks for before it can act ([`Step::Need`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MrNeeds {
    /// The organization: its lock is held while the reads and the writes run.
    pub org: Recognition,
    /// The MR as it is now and the bot's notes on it.
    pub current: bool,
    /// The `cocreate/cca` status of this head commit.
    pub head_status: Option<String>,
    /// The roster's ids, statuses and load: a reviewer must be chosen.
    pub roster: bool,
}

/// Everything the rules need about one merge request, read fresh from GitLab (or, in a dry run,
/// taken from the payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MrFacts {
    pub source: Source,
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
    /// Markers of the notes the bot already wrote on the MR; `None` until read.
    pub markers: Option<Vec<Marker>>,
    /// The MR's head commit, for the `cocreate/cca` status.
    pub head_sha: Option<String>,
    /// The current `cocreate/cca` status on the head commit; `None` until read.
    pub head_status: Option<Option<String>>,
    /// The day, for agreement expiry.
    pub today: NaiveDate,
    pub bot_username: String,
    /// The roster's load, read when a reviewer must be chosen (the MR has no roster reviewer
    /// yet); `None` until read.
    pub roster: Option<RosterFacts>,
}

impl MrFacts {
    /// The MR already has a reviewer from the Contributor Success roster.
    pub fn has_roster_reviewer(&self, policies: &Policies) -> bool {
        super::roster_reviewer(&policies.routing.roster, &self.reviewers).is_some()
    }
}

/// The routing rules for one merge request. Pure: same facts, same answer. From the payload
/// it skips or asks for the MR as it is now; on the current MR it asks for the head commit's
/// status and the roster's load when it needs them, then acts.
pub fn decide_merge_request(
    facts: &MrFacts,
    policies: &Policies,
    messages: &Messages,
) -> Result<Step<Decision, MrNeeds>, TemplateError> {
    let (org, markers) = match ready(facts, policies) {
        Ok(ready) => ready,
        Err(step) => return Ok(step),
    };
    act(facts, org, markers, policies, messages).map(Step::Act)
}

/// Skips, asks for more, or hands over the organization and the bot's markers to act on.
fn ready<'f>(
    facts: &'f MrFacts,
    policies: &Policies,
) -> Result<(Recognition, &'f [Marker]), Step<Decision, MrNeeds>> {
    let skip = |skip, org| Step::Act(Decision::skipped(skip, org));
    let bot = facts.bot_username.to_ascii_lowercase();
    if facts
        .actor
        .as_deref()
        .is_some_and(|a| super::is_own_event(a, &bot))
    {
        return Err(skip(Skip::OwnEvent, None));
    }
    if facts.author.bot || facts.author.username.eq_ignore_ascii_case(&bot) {
        return Err(skip(Skip::BotAuthor, None));
    }
    let Some(org) = recognize(&facts.author, &policies.organizations) else {
        return Err(skip(Skip::NotCoCreate, None));
    };
    if facts.state != MrState::Opened {
        let state = serde_json::to_value(facts.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(skip(Skip::NotOpen { state }, Some(org)));
    }
    let markers = match (facts.source, &facts.markers) {
        (Source::Offline, m) => m.as_deref().unwrap_or(&[]),
        (Source::Current, Some(m)) => m,
        (Source::Payload, _) | (Source::Current, None) => {
            return Err(Step::Need(MrNeeds {
                org,
                current: true,
                head_status: None,
                roster: false,
            }))
        }
    };
    if facts.source == Source::Current {
        let head_status = match (&facts.head_status, &facts.head_sha) {
            (None, Some(sha)) => Some(sha.clone()),
            _ => None,
        };
        let roster = facts.roster.is_none() && !facts.has_roster_reviewer(policies);
        if head_status.is_some() || roster {
            return Err(Step::Need(MrNeeds {
                org,
                current: false,
                head_status,
                roster,
            }));
        }
    }
    Ok((org, markers))
}

/// The wanted state of a Co-Create MR, as a difference from its facts.
fn act(
    facts: &MrFacts,
    org: Recognition,
    markers: &[Marker],
    policies: &Policies,
    messages: &Messages,
) -> Result<Decision, TemplateError> {
    let labels = &policies.routing.labels;
    let wanted = [
        labels.cocreate.clone(),
        labels.community.clone(),
        labels.org(&org.slug),
    ];
    let mut add_labels: Vec<String> = wanted
        .into_iter()
        .filter(|w| !facts.labels.iter().any(|l| l == w))
        .collect();
    let cca = cca_state(&org.slug, &policies.agreements, facts.today);
    let cca_facts = CcaMrFacts {
        mr: facts.mr,
        head_sha: facts.head_sha.as_deref(),
        labels: &facts.labels,
        head_status: facts.head_status.as_ref().map(|s| s.as_deref()),
        markers: Some(markers),
    };
    // The markers are given, so the plan never asks for them.
    let cca_plan = plan_cca(&cca_facts, &cca, labels).act().unwrap_or_default();
    add_labels.extend(cca_plan.add_label.clone());

    // Keep every reviewer people chose; add ours only when no roster member reviews yet.
    let existing_roster_reviewer =
        super::roster_reviewer(&policies.routing.roster, &facts.reviewers).map(|(_, u)| u.clone());
    let choice = match (&existing_roster_reviewer, &facts.roster) {
        (None, Some(roster)) => choose_reviewer(&policies.routing.roster, roster),
        _ => None,
    };
    let (reviewer_ids, added_reviewer) = match &choice {
        Some(c) => (
            Some(super::append_reviewer(&facts.reviewers, c.id)),
            Some(c.username.clone()),
        ),
        None => (None, None),
    };

    // One order for CCA writes on every path: a CCA note is posted before the label swap that
    // records it, so a failed note is planned again by the next run (and found by its marker
    // once posted). A new MR's notice rides in the welcome, which is found by its own marker
    // whatever the labels say, so there the swap may share the routing edit.
    let separate_cca_edit = markers.contains(&Marker::Welcome) && cca_plan.note.is_some();
    let (cca_add, cca_remove) = if separate_cca_edit {
        add_labels.retain(|l| cca_plan.add_label.as_ref() != Some(l));
        (cca_plan.add_label.clone(), cca_plan.remove_labels.clone())
    } else {
        (None, Vec::new())
    };
    let routing_remove = if separate_cca_edit {
        Vec::new()
    } else {
        cca_plan.remove_labels.clone()
    };
    let mut actions = Vec::new();
    if !add_labels.is_empty() || !routing_remove.is_empty() || reviewer_ids.is_some() {
        actions.push(Action::EditMergeRequest {
            mr: facts.mr,
            add_labels,
            remove_labels: routing_remove,
            reviewer_ids,
            added_reviewer,
        });
    }
    let notice = |marker| CcaNotice {
        marker,
        label: cca.label(labels),
        contact: policies.agreements.signing_contact.as_deref(),
    };
    if !markers.contains(&Marker::Welcome) {
        // A new MR: signing instructions go into the welcome note, not a second note.
        let cca_notice = (!cca.is_valid() && !markers.contains(&cca.note_marker()))
            .then(|| notice(cca.note_marker()));
        let reviewer = existing_roster_reviewer.or(choice.map(|c| c.username));
        let note = messages.welcome(&Welcome {
            author_username: &facts.author.username,
            title: &facts.title,
            reviewer_username: reviewer.as_deref(),
            bot_username: &facts.bot_username,
            cca: cca_notice,
            issue_list: policies.routing.site.issue_list_url.as_deref(),
            contribution_guide: policies.routing.site.contribution_guide_url.as_deref(),
        })?;
        actions.push(Action::PostNote {
            target: NoteTarget::MergeRequest(facts.mr),
            note,
        });
    } else if let Some(marker) = &cca_plan.note {
        actions.push(Action::PostNote {
            target: NoteTarget::MergeRequest(facts.mr),
            note: messages.cca_note(&facts.author.username, notice(marker.clone()))?,
        });
    }
    // The status after the note: nobody waits for it the way a contributor waits for the
    // welcome, and it is read fresh on every event, so a failed write is repaired by the next.
    if let Some((sha, state, description)) = cca_plan.status {
        actions.push(Action::SetCommitStatus {
            project_id: facts.mr.project_id,
            sha,
            state,
            description,
        });
    }
    if cca_add.is_some() || !cca_remove.is_empty() {
        actions.push(Action::EditMergeRequest {
            mr: facts.mr,
            add_labels: cca_add.into_iter().collect(),
            remove_labels: cca_remove,
            reviewer_ids: None,
            added_reviewer: None,
        });
    }
    Ok(Decision {
        org: Some(org),
        skip: None,
        actions,
    })
}

/// The MR's Contributor Success reviewer (existing, or the one being added), as the DRI of a
/// tracking issue the MR opens.
pub fn engagement_dri(
    facts: &MrFacts,
    decision: &Decision,
    policies: &Policies,
) -> Option<(UserId, String)> {
    if let Some((id, u)) = super::roster_reviewer(&policies.routing.roster, &facts.reviewers) {
        return Some((*id, u.clone()));
    }
    decision.actions.iter().find_map(|a| match a {
        Action::EditMergeRequest {
            added_reviewer: Some(name),
            ..
        } => facts
            .roster
            .as_ref()
            .and_then(|r| r.members.iter().find(|m| &m.username == name))
            .and_then(|m| m.id.map(|id| (id, name.clone()))),
        _ => None,
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
            preferred: None,
        }
    }

    fn facts() -> MrFacts {
        MrFacts {
            source: Source::Current,
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
            markers: Some(vec![]),
            head_sha: Some("e59094b8".into()),
            head_status: Some(None),
            today: NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
            bot_username: "cocreate-bot".into(),
            roster: Some(roster()),
        }
    }

    fn run(f: &MrFacts) -> Decision {
        decide_merge_request(f, &policies(), &Messages::embedded().expect("templates"))
            .expect("renders")
            .act()
            .expect("all facts given")
    }

    const ALL_LABELS: [&str; 4] = [
        "Co-Create",
        "Community contribution",
        "Co-Create org::example-aero",
        "CCA::signed",
    ];

    fn in_place(f: &mut MrFacts) {
        f.labels = ALL_LABELS.iter().map(|l| l.to_string()).collect();
        f.reviewers.push((101, "cs-reviewer-2".into()));
        f.markers = Some(vec![Marker::Welcome]);
        f.head_status = Some(Some("success".into()));
        f.roster = None;
    }

    /// The protocol: what the rule asks for, by where its facts come from and what is known.
    #[test]
    fn needs_table() {
        // (name, change to the complete current facts, asked: None = acts, else (current,
        // head status of, roster))
        type Row = (
            &'static str,
            fn(&mut MrFacts),
            Option<(bool, Option<&'static str>, bool)>,
        );
        let rows: Vec<Row> = vec![
            (
                "payload: asks for the MR as it is now and the bot's notes",
                |f| {
                    f.source = Source::Payload;
                    f.markers = None;
                    f.head_status = None;
                    f.roster = None;
                },
                Some((true, None, false)),
            ),
            (
                "payload, closed MR: skips without a read",
                |f| {
                    f.source = Source::Payload;
                    f.state = MrState::Closed;
                },
                None,
            ),
            (
                "payload, an outsider's MR: skips without a read",
                |f| {
                    f.source = Source::Payload;
                    f.author = author("someone");
                },
                None,
            ),
            (
                "current, the bot's notes unread: asks for them",
                |f| f.markers = None,
                Some((true, None, false)),
            ),
            (
                "current, a roster reviewer, status unread: the status only",
                |f| {
                    f.head_status = None;
                    f.reviewers.push((101, "cs-reviewer-2".into()));
                    f.roster = None;
                },
                Some((false, Some("e59094b8"), false)),
            ),
            (
                "current, no roster reviewer, load unread: the roster only",
                |f| f.roster = None,
                Some((false, None, true)),
            ),
            (
                "current, both unread: both in one round",
                |f| {
                    f.head_status = None;
                    f.roster = None;
                },
                Some((false, Some("e59094b8"), true)),
            ),
            (
                "current, no head commit: no status to ask for",
                |f| {
                    f.head_sha = None;
                    f.head_status = None;
                },
                None,
            ),
            ("current, everything known: acts", |_| {}, None),
            (
                "offline: decides on the payload, asks for nothing",
                |f| {
                    f.source = Source::Offline;
                    f.markers = None;
                    f.head_status = None;
                },
                None,
            ),
        ];
        let m = Messages::embedded().expect("templates");
        for (name, change, want) in rows {
            let mut f = facts();
            change(&mut f);
            let step = decide_merge_request(&f, &policies(), &m).expect("renders");
            let asked = step.need().map(|n| {
                assert_eq!(n.org.slug.as_str(), "example-aero", "{name}");
                (n.current, n.head_status.clone(), n.roster)
            });
            assert_eq!(
                asked,
                want.map(|(c, s, r)| (c, s.map(str::to_owned), r)),
                "{name}"
            );
        }
    }

    #[test]
    fn new_cocreate_mr_gets_labels_reviewer_status_and_welcome() {
        let d = run(&facts());
        assert_eq!(d.skip, None);
        assert_eq!(
            d.org.as_ref().map(|o| o.slug.as_str()),
            Some("example-aero")
        );
        assert_eq!(d.actions.len(), 3, "{:#?}", d.actions);
        assert_eq!(
            d.actions[0],
            Action::EditMergeRequest {
                mr: MrRef {
                    project_id: 2,
                    iid: 16
                },
                add_labels: ALL_LABELS.iter().map(|l| l.to_string()).collect(),
                remove_labels: vec![],
                // The reviewer a person chose (25) stays; ours (least loaded: cs-reviewer-2) is added.
                reviewer_ids: Some(vec![25, 101]),
                added_reviewer: Some("cs-reviewer-2".into()),
            }
        );
        // The welcome goes right after the edit that names its reviewer; the status last.
        assert!(matches!(
            &d.actions[2],
            Action::SetCommitStatus {
                state: crate::decide::StatusState::Success,
                ..
            }
        ));
        let Action::PostNote { note, .. } = &d.actions[1] else {
            panic!("note expected")
        };
        let body = note.render();
        assert_eq!(note.marker(), Some(&Marker::Welcome));
        assert!(
            body.contains("@cs-reviewer-2 from the Contributor Success team"),
            "{body}"
        );
        assert!(!body.contains("Corporate Contributor Agreement"), "{body}");
    }

    #[test]
    fn table_of_cases() {
        type Case = (&'static str, fn(&mut MrFacts), Option<Skip>, usize);
        let cases: Vec<Case> = vec![
            (
                "everything in place: nothing to do (redelivery)",
                in_place,
                None,
                0,
            ),
            (
                "only a label missing",
                |f| {
                    in_place(f);
                    f.labels.retain(|l| !l.starts_with("Co-Create org::"));
                },
                None,
                1,
            ),
            (
                "only the note missing",
                |f| {
                    in_place(f);
                    f.markers = Some(vec![]);
                },
                None,
                1,
            ),
            (
                "new push: only the status of the new head commit",
                |f| {
                    in_place(f);
                    f.head_status = Some(None);
                },
                None,
                1,
            ),
            (
                "organization without CCA: label, failed status, instructions inside the welcome",
                |f| {
                    f.author = author("someone");
                    f.author.public_email = Some("x@bank.example.com".into());
                },
                None,
                3,
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
                3,
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
    fn the_welcome_note_links_the_curated_list_when_its_url_is_configured() {
        let welcome = |p: &Policies| -> String {
            let d = decide_merge_request(&facts(), p, &Messages::embedded().expect("templates"))
                .expect("renders")
                .act()
                .expect("all facts given");
            d.actions
                .iter()
                .find_map(|a| match a {
                    Action::PostNote { note, .. }
                        if note.markers.first() == Some(&Marker::Welcome) =>
                    {
                        Some(note.render())
                    }
                    _ => None,
                })
                .expect("a welcome note")
        };
        let mut p = policies();
        assert!(!welcome(&p).contains("curated issue list"));
        p.routing.site.issue_list_url = Some("https://cocreate.example.com/".into());
        assert!(
            welcome(&p).contains("The curated issue list: https://cocreate.example.com/"),
            "{}",
            welcome(&p)
        );
        assert!(!welcome(&p).contains("contribution guide"));
        p.routing.site.contribution_guide_url =
            Some("https://docs.example.com/development/contributing/".into());
        assert!(
            welcome(&p).contains(
                "How we work, from first commit to merge: the contribution guide, https://docs.example.com/development/contributing/"
            ),
            "{}",
            welcome(&p)
        );
    }

    #[test]
    fn missing_cca_is_explained_in_the_welcome_note_only() {
        let mut f = facts();
        f.author = author("someone");
        f.author.public_email = Some("x@bank.example.com".into());
        let d = run(&f);
        let Some(Action::EditMergeRequest { add_labels, .. }) = d.actions.first() else {
            panic!("edit expected")
        };
        assert!(add_labels.contains(&"CCA::missing".to_string()));
        let notes: Vec<&Action> = d
            .actions
            .iter()
            .filter(|a| matches!(a, Action::PostNote { .. }))
            .collect();
        assert_eq!(notes.len(), 1);
        let Action::PostNote { note, .. } = notes[0] else {
            panic!()
        };
        let body = note.render();
        assert!(body.starts_with("<!-- cocreate:cca-missing -->"), "{body}");
        assert!(body.contains("cla-managers@example.com"), "{body}");
        // On the next event the CCA marker is found: no second note.
        f.markers = Some(vec![Marker::CcaMissing, Marker::Welcome]);
        f.labels.push("CCA::missing".into());
        assert!(run(&f)
            .actions
            .iter()
            .all(|a| !matches!(a, Action::PostNote { .. })));
    }

    #[test]
    fn a_cca_note_on_an_existing_mr_goes_before_the_label_that_records_it() {
        // An MR welcomed while its organization had a CCA, which has since expired from the
        // policies: the swap to `CCA::missing` is last, after the note it records.
        let mut f = facts();
        f.author = author("someone");
        f.author.public_email = Some("x@bank.example.com".into());
        f.markers = Some(vec![Marker::Welcome]);
        f.labels = vec![
            "Co-Create".into(),
            "Community contribution".into(),
            "Co-Create org::example-bank".into(),
            "CCA::signed".into(),
        ];
        f.reviewers = vec![(102, "cs-reviewer-3".into())];
        let d = run(&f);
        let kinds: Vec<&str> = d
            .actions
            .iter()
            .map(|a| match a {
                Action::EditMergeRequest { .. } => "edit",
                Action::SetCommitStatus { .. } => "status",
                Action::PostNote { .. } => "note",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["note", "status", "edit"], "{:#?}", d.actions);
        let Some(Action::EditMergeRequest {
            add_labels,
            remove_labels,
            ..
        }) = d.actions.last()
        else {
            panic!()
        };
        assert_eq!(add_labels, &["CCA::missing".to_string()]);
        assert_eq!(remove_labels, &["CCA::signed".to_string()]);
        // The note failed and the labels are unchanged: the next run plans the same note.
        assert_eq!(run(&f).actions.len(), 3);
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
        let Some(note) = d.actions.iter().find_map(|a| match a {
            Action::PostNote { note, .. } => Some(note),
            _ => None,
        }) else {
            panic!("{:#?}", d.actions)
        };
        let body = note.render();
        assert!(body.contains("@cs-reviewer-3"), "{body}");
    }

    #[test]
    fn hostile_author_name_cannot_mention_or_quick_action() {
        let mut f = facts();
        f.author.username = "aero-dev-1".into();
        f.author.name = "@all\n/close".into();
        f.title = "@all <b>urgent</b>\n/close\n/merge".into();
        let d = run(&f);
        let Some(note) = d.actions.iter().find_map(|a| match a {
            Action::PostNote { note, .. } => Some(note),
            _ => None,
        }) else {
            panic!("{:#?}", d.actions)
        };
        let body = note.render();
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

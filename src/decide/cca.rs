//! Corporate Contributor Agreements: is a valid CCA on file for an organization, and what an MR
//! of that organization should carry because of it (one scoped `CCA::…` label, a `cocreate/cca`
//! commit status on its head commit, and one note when the state changes).

use chrono::NaiveDate;
use serde::Serialize;

use super::{Action, NoteTarget, Step};
use crate::domain::{MrRef, OrgSlug};
use crate::messages::{CcaNotice, Marker, Messages, TemplateError};
use crate::policy::{Agreements, Labels, Policies};

/// The commit status context the bot writes.
pub const STATUS_NAME: &str = "cocreate/cca";

/// An organization's agreement state on a given day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CcaState {
    Signed {
        expires: Option<NaiveDate>,
        /// Expires within the warning period (a warning for the engagement, not for the MR).
        expiring_soon: bool,
    },
    Missing,
    Expired {
        on: NaiveDate,
    },
}

/// The state of `org`'s most recent agreement on `today`.
pub fn cca_state(org: &OrgSlug, agreements: &Agreements, today: NaiveDate) -> CcaState {
    match agreements.latest(org) {
        None => CcaState::Missing,
        Some(a) if a.signed > today => CcaState::Missing,
        Some(a) => match a.expires {
            Some(on) if on <= today => CcaState::Expired { on },
            expires => CcaState::Signed {
                expires,
                expiring_soon: expires.is_some_and(|e| {
                    (e - today).num_days() <= i64::from(agreements.expiry_warning_days)
                }),
            },
        },
    }
}

/// A commit status state we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    Success,
    Failed,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Success => "success",
            StatusState::Failed => "failed",
        }
    }
}

impl CcaState {
    pub fn label<'l>(&self, labels: &'l Labels) -> &'l str {
        match self {
            CcaState::Signed { .. } => &labels.cca_signed,
            CcaState::Missing => &labels.cca_missing,
            CcaState::Expired { .. } => &labels.cca_expired,
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, CcaState::Signed { .. })
    }

    pub fn status(&self) -> StatusState {
        if self.is_valid() {
            StatusState::Success
        } else {
            StatusState::Failed
        }
    }

    /// The public commit status text. MRs are public: it says only whether a current
    /// agreement is on file; dates, versions and references stay on the tracking issue.
    pub fn status_description(&self) -> String {
        match self {
            CcaState::Signed { .. } => "Corporate Contributor Agreement on file".into(),
            CcaState::Missing => "No Corporate Contributor Agreement on file".into(),
            CcaState::Expired { .. } => "No current Corporate Contributor Agreement on file".into(),
        }
    }

    /// The state as a public MR may say it (the `recheck` answer): on file or not, never
    /// when it expires or expired.
    pub fn public_summary(&self) -> &'static str {
        match self {
            CcaState::Signed { .. } => "on file",
            CcaState::Missing => "not on file",
            CcaState::Expired { .. } => "no longer current",
        }
    }

    /// The note an MR gets when it enters this state (once per MR, found by marker).
    pub fn note_marker(&self) -> Marker {
        match self {
            CcaState::Signed { .. } => Marker::CcaSigned,
            CcaState::Missing => Marker::CcaMissing,
            CcaState::Expired { .. } => Marker::CcaExpired,
        }
    }

    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            CcaState::Signed {
                expiring_soon: true,
                ..
            } => "expiring",
            CcaState::Signed { .. } => "signed",
            CcaState::Missing => "missing",
            CcaState::Expired { .. } => "expired",
        }
    }
}

/// What we know about an MR's CCA bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcaMrFacts<'a> {
    pub mr: MrRef,
    pub head_sha: Option<&'a str>,
    pub labels: &'a [String],
    /// The current `cocreate/cca` status on the head commit: `None` when not read (then the
    /// status is written only together with a label change, which is when it can change).
    pub head_status: Option<Option<&'a str>>,
    /// Markers of the bot's notes on the MR; `None` when not read yet.
    pub markers: Option<&'a [Marker]>,
}

/// The CCA part of an MR's wanted state, as a difference from its facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CcaPlan {
    pub add_label: Option<String>,
    pub remove_labels: Vec<String>,
    pub status: Option<(String, StatusState, String)>,
    /// A note to post (its marker); only decided once `markers` are known.
    pub note: Option<Marker>,
}

/// What the CCA plan may still need to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CcaNeed {
    /// A note may be due: the bot's notes on the MR say whether it was posted.
    BotMarkers,
}

impl CcaPlan {
    pub fn is_empty(&self) -> bool {
        self.add_label.is_none()
            && self.remove_labels.is_empty()
            && self.status.is_none()
            && self.note.is_none()
    }
}

/// Plans the CCA label swap, status and note for one MR. Level-triggered: an MR already in its
/// wanted state yields an empty plan. Asks for the bot's markers only when a note may be due.
pub fn plan_cca(
    facts: &CcaMrFacts<'_>,
    state: &CcaState,
    labels: &Labels,
) -> Step<CcaPlan, CcaNeed> {
    let wanted = state.label(labels);
    let present: Vec<&str> = labels
        .cca_all()
        .into_iter()
        .filter(|l| facts.labels.iter().any(|have| have == l))
        .collect();
    let in_place = present == [wanted];
    let mut plan = CcaPlan::default();
    if !in_place {
        if !present.contains(&wanted) {
            plan.add_label = Some(wanted.to_owned());
        }
        // Scoped labels replace each other only on paid tiers: remove the old ones ourselves.
        plan.remove_labels = present
            .iter()
            .filter(|l| **l != wanted)
            .map(|l| l.to_string())
            .collect();
    }
    let status_due = match facts.head_status {
        Some(current) => current != Some(state.status().as_str()),
        None => !in_place,
    };
    if let (true, Some(sha)) = (status_due, facts.head_sha) {
        plan.status = Some((sha.to_owned(), state.status(), state.status_description()));
    }
    // A note on entering a state: missing/expired explain how to sign; signed thanks, but only
    // after the MR was flagged (nothing to thank for on an MR that never lacked a CCA).
    let was_flagged = present.iter().any(|l| *l != labels.cca_signed);
    let note_due = !in_place && (!state.is_valid() || was_flagged);
    if note_due {
        match facts.markers {
            None => return Step::Need(CcaNeed::BotMarkers),
            Some(m) if !m.contains(&state.note_marker()) => plan.note = Some(state.note_marker()),
            Some(_) => {}
        }
    }
    Step::Act(plan)
}

/// The actions for one MR of `cca-check`: the plan turned into writes, with the note rendered.
pub fn cca_actions(
    facts: &CcaMrFacts<'_>,
    plan: &CcaPlan,
    state: &CcaState,
    author_username: &str,
    policies: &Policies,
    messages: &Messages,
) -> Result<Vec<Action>, TemplateError> {
    // The label swap goes last: it is what tells the next run that the change is done, so if a
    // write before it fails, the next run plans the same change again (and finds a posted note
    // by its marker instead of posting it twice).
    let mut actions = Vec::new();
    if let Some((sha, st, description)) = &plan.status {
        actions.push(Action::SetCommitStatus {
            project_id: facts.mr.project_id,
            sha: sha.clone(),
            state: *st,
            description: description.clone(),
        });
    }
    if let Some(marker) = &plan.note {
        let notice = CcaNotice {
            marker: marker.clone(),
            label: state.label(&policies.routing.labels),
            contact: policies.agreements.signing_contact.as_deref(),
        };
        actions.push(Action::PostNote {
            target: NoteTarget::MergeRequest(facts.mr),
            note: messages.cca_note(author_username, notice)?,
        });
    }
    if plan.add_label.is_some() || !plan.remove_labels.is_empty() {
        actions.push(Action::EditMergeRequest {
            mr: facts.mr,
            add_labels: plan.add_label.iter().cloned().collect(),
            remove_labels: plan.remove_labels.clone(),
            reviewer_ids: None,
            added_reviewer: None,
        });
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policies;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn state_table() {
        let p = Policies::embedded().expect("examples");
        let slug = |s: &str| OrgSlug::parse(s).expect("slug");
        let rows = [
            ("example-aero", "2026-11-23", "signed"),
            ("example-aero", "2027-12-20", "expiring"),
            ("example-aero", "2028-01-15", "expired"),
            ("example-aero", "2025-12-31", "missing"), // not signed yet on that day
            ("example-telco", "2026-11-23", "expired"),
            ("example-telco", "2026-02-28", "expiring"),
            ("example-bank", "2026-11-23", "missing"),
        ];
        for (org, today, want) in rows {
            assert_eq!(
                cca_state(&slug(org), &p.agreements, d(today)).name(),
                want,
                "{org} on {today}"
            );
        }
    }

    fn labels() -> Labels {
        Labels::default()
    }

    fn facts<'a>(labels: &'a [String], markers: Option<&'a [Marker]>) -> CcaMrFacts<'a> {
        CcaMrFacts {
            mr: MrRef {
                project_id: 1,
                iid: 2,
            },
            head_sha: Some("abc"),
            labels,
            head_status: None,
            markers,
        }
    }

    #[test]
    fn plan_table() {
        let signed = CcaState::Signed {
            expires: None,
            expiring_soon: false,
        };
        let missing = CcaState::Missing;
        let expired = CcaState::Expired {
            on: d("2026-01-01"),
        };
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        struct Row {
            name: &'static str,
            labels: Vec<String>,
            markers: Option<Vec<Marker>>,
            state: CcaState,
            add: Option<&'static str>,
            remove: Vec<&'static str>,
            status: Option<StatusState>,
            note: Option<Marker>,
            needs_markers: bool,
        }
        let rows = vec![
            Row {
                name: "new MR, no CCA, notes not read: asks for the bot's markers",
                labels: l(&["Co-Create"]),
                markers: None,
                state: missing.clone(),
                add: None,
                remove: vec![],
                status: None,
                note: None,
                needs_markers: true,
            },
            Row {
                name: "new MR, no CCA, notes read: instructions",
                labels: l(&[]),
                markers: Some(vec![]),
                state: missing.clone(),
                add: Some("CCA::missing"),
                remove: vec![],
                status: Some(StatusState::Failed),
                note: Some(Marker::CcaMissing),
                needs_markers: false,
            },
            Row {
                name: "instructions already given (welcome carried them)",
                labels: l(&[]),
                markers: Some(vec![Marker::Welcome, Marker::CcaMissing]),
                state: missing.clone(),
                add: Some("CCA::missing"),
                remove: vec![],
                status: Some(StatusState::Failed),
                note: None,
                needs_markers: false,
            },
            Row {
                name: "in place: nothing",
                labels: l(&["CCA::missing"]),
                markers: None,
                state: missing.clone(),
                add: None,
                remove: vec![],
                status: None,
                note: None,
                needs_markers: false,
            },
            Row {
                name: "agreement lands: swap, success, thanks",
                labels: l(&["CCA::missing"]),
                markers: Some(vec![Marker::CcaMissing]),
                state: signed.clone(),
                add: Some("CCA::signed"),
                remove: vec!["CCA::missing"],
                status: Some(StatusState::Success),
                note: Some(Marker::CcaSigned),
                needs_markers: false,
            },
            Row {
                name: "thanked once only",
                labels: l(&["CCA::missing"]),
                markers: Some(vec![Marker::CcaSigned]),
                state: signed.clone(),
                add: Some("CCA::signed"),
                remove: vec!["CCA::missing"],
                status: Some(StatusState::Success),
                note: None,
                needs_markers: false,
            },
            Row {
                name: "signed from the start: no thanks",
                labels: l(&[]),
                markers: None,
                state: signed.clone(),
                add: Some("CCA::signed"),
                remove: vec![],
                status: Some(StatusState::Success),
                note: None,
                needs_markers: false,
            },
            Row {
                name: "expires: swap, failed, note",
                labels: l(&["CCA::signed"]),
                markers: Some(vec![]),
                state: expired.clone(),
                add: Some("CCA::expired"),
                remove: vec!["CCA::signed"],
                status: Some(StatusState::Failed),
                note: Some(Marker::CcaExpired),
                needs_markers: false,
            },
            Row {
                name: "two CCA labels: keep the right one, remove the other",
                labels: l(&["CCA::signed", "CCA::missing"]),
                markers: Some(vec![Marker::CcaSigned]),
                state: signed.clone(),
                add: None,
                remove: vec!["CCA::missing"],
                status: Some(StatusState::Success),
                note: None,
                needs_markers: false,
            },
        ];
        for r in rows {
            let markers = r.markers.clone();
            let step = plan_cca(&facts(&r.labels, markers.as_deref()), &r.state, &labels());
            let plan = match (step, r.needs_markers) {
                (Step::Need(CcaNeed::BotMarkers), true) => continue,
                (Step::Act(plan), false) => plan,
                (other, _) => panic!("{}: {other:?}", r.name),
            };
            assert_eq!(plan.add_label.as_deref(), r.add, "{}", r.name);
            assert_eq!(plan.remove_labels, r.remove, "{}", r.name);
            assert_eq!(plan.status.as_ref().map(|s| s.1), r.status, "{}", r.name);
            assert_eq!(plan.note, r.note, "{}", r.name);
        }
    }

    #[test]
    fn what_a_public_mr_may_say_carries_no_date_version_or_reference() {
        let p = Policies::embedded().expect("examples");
        let slug = |s: &str| OrgSlug::parse(s).expect("slug");
        let m = Messages::embedded().expect("templates");
        // signed, expiring, expired, missing
        for (org, today) in [
            ("example-aero", "2026-11-23"),
            ("example-aero", "2027-12-20"),
            ("example-telco", "2026-11-23"),
            ("example-bank", "2026-11-23"),
        ] {
            let state = cca_state(&slug(org), &p.agreements, d(today));
            let lbl: Vec<String> = vec![];
            let markers: Vec<Marker> = vec![];
            let f = facts(&lbl, Some(&markers));
            let plan = plan_cca(&f, &state, &p.routing.labels)
                .act()
                .expect("markers given");
            let actions = cca_actions(&f, &plan, &state, "dev", &p, &m).expect("renders");
            let mut public: Vec<String> =
                vec![state.status_description(), state.public_summary().into()];
            for a in &actions {
                match a {
                    Action::SetCommitStatus { description, .. } => public.push(description.clone()),
                    Action::PostNote { note, .. } => public.push(note.render()),
                    _ => {}
                }
            }
            for text in public {
                assert!(
                    !text.chars().any(|c| c.is_ascii_digit()),
                    "{org} {today}: {text}"
                );
                for secret in ["CCA 2", "contracts/", "expiring"] {
                    assert!(!text.contains(secret), "{org} {today}: {text}");
                }
            }
        }
    }

    #[test]
    fn known_head_status_is_repaired_even_when_labels_are_in_place() {
        let lbl = vec!["CCA::missing".to_string()];
        let mut f = facts(&lbl, None);
        f.head_status = Some(None); // a new push: no status on the new head commit yet
        let plan = plan_cca(&f, &CcaState::Missing, &labels()).act();
        assert_eq!(
            plan.and_then(|p| p.status).map(|s| s.1),
            Some(StatusState::Failed)
        );
        f.head_status = Some(Some("failed"));
        assert!(plan_cca(&f, &CcaState::Missing, &labels())
            .act()
            .is_some_and(|p| p.is_empty()));
    }
}

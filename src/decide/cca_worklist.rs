//! The CLA managers' worklist: every engaged organization (at `aligned` or later, or with open
//! Co-Create MRs) whose agreement is missing, expired or expiring within
//! `expiry_warning_days`, and one note on its tracking issue per state (a marker keyed by the
//! state and its date, so a new expiry or a renewal that lapses again asks again).

use serde::Serialize;

use super::engagement::IssueRef;
use super::funnel::Stage;
use super::{Action, CcaState, NoteTarget, Step};
use crate::messages::{Marker, Messages, TemplateError};
use crate::policy::{Organization, Policies};

/// Whether an engagement is far enough along for its agreement to matter now.
pub fn engaged(stage: Option<Stage>, open_mrs: usize) -> bool {
    open_mrs > 0 || stage.is_some_and(|s| s >= Stage::Aligned)
}

/// Whether the agreement needs the CLA managers: missing, expired, or expiring soon.
pub fn needs_cla_managers(state: &CcaState) -> bool {
    !matches!(
        state,
        CcaState::Signed {
            expiring_soon: false,
            ..
        }
    )
}

/// The marker of the note for this state (`None`: a valid agreement gets no note).
pub fn worklist_marker(state: &CcaState) -> Option<Marker> {
    let key = match state {
        CcaState::Missing => "missing".to_owned(),
        CcaState::Expired { on } => format!("expired:{on}"),
        CcaState::Signed {
            expires: Some(e),
            expiring_soon: true,
        } => format!("expiring:{e}"),
        CcaState::Signed { .. } => return None,
    };
    Some(Marker::CcaWorklist(key))
}

/// What the rule knows about one open tracking issue.
#[derive(Debug, Clone)]
pub struct WorklistFacts<'a> {
    pub issue: IssueRef,
    pub org: &'a Organization,
    pub stage: Option<Stage>,
    pub open_mrs: usize,
    pub state: &'a CcaState,
    /// Whether GitLab has the issue confidential: dates are written only then.
    pub confidential: bool,
    /// The bot's markers on the issue; `None` until read (asked for only when listed).
    pub markers: Option<&'a [Marker]>,
}

/// The read the rule may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorklistNeed {
    Markers,
}

/// Listed or not, and the note that is due.
pub fn decide_worklist(
    f: &WorklistFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Step<(bool, Vec<Action>), WorklistNeed>, TemplateError> {
    if !engaged(f.stage, f.open_mrs) || !needs_cla_managers(f.state) {
        return Ok(Step::Act((false, vec![])));
    }
    let Some(marker) = worklist_marker(f.state) else {
        return Ok(Step::Act((false, vec![])));
    };
    let Some(markers) = f.markers else {
        return Ok(Step::Need(WorklistNeed::Markers));
    };
    if markers.contains(&marker) {
        return Ok(Step::Act((true, vec![])));
    }
    let (state, date) = match f.state {
        CcaState::Missing => ("missing", None),
        CcaState::Expired { on } => ("expired", Some(*on)),
        CcaState::Signed { expires, .. } => ("expiring", *expires),
    };
    let note = messages.cca_worklist(
        marker,
        f.confidential.then_some(f.org.name.as_str()),
        state,
        date.filter(|_| f.confidential),
        f.stage.map(Stage::name),
        f.open_mrs,
        policies.agreements.signing_contact.as_deref(),
    )?;
    Ok(Step::Act((
        true,
        vec![Action::PostNote {
            target: NoteTarget::Issue(f.issue.clone()),
            note,
        }],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn worklist_table() {
        let signed = CcaState::Signed {
            expires: Some(d("2028-01-15")),
            expiring_soon: false,
        };
        let expiring = CcaState::Signed {
            expires: Some(d("2026-12-20")),
            expiring_soon: true,
        };
        let expired = CcaState::Expired {
            on: d("2026-03-01"),
        };
        // (stage, open MRs, state) → listed
        let rows = [
            (Some(Stage::Contacted), 0, CcaState::Missing, false),
            (Some(Stage::Meeting), 0, expired.clone(), false),
            (Some(Stage::Contacted), 1, CcaState::Missing, true),
            (Some(Stage::Aligned), 0, CcaState::Missing, true),
            (Some(Stage::Sustaining), 0, expired.clone(), true),
            (Some(Stage::Active), 0, expiring.clone(), true),
            (Some(Stage::Active), 3, signed.clone(), false),
            (None, 2, expiring.clone(), true),
            (None, 0, CcaState::Missing, false),
        ];
        for (stage, mrs, state, want) in rows {
            assert_eq!(
                engaged(stage, mrs) && needs_cla_managers(&state),
                want,
                "{stage:?} {mrs} {state:?}"
            );
        }
        assert_eq!(worklist_marker(&signed), None);
        assert_eq!(
            worklist_marker(&expiring),
            Some(Marker::CcaWorklist("expiring:2026-12-20".into()))
        );
        assert_eq!(
            worklist_marker(&expired),
            Some(Marker::CcaWorklist("expired:2026-03-01".into()))
        );
    }

    #[test]
    fn one_note_per_state_and_dates_only_when_confidential() {
        let policies = Policies::embedded().expect("examples");
        let messages = Messages::embedded().expect("templates");
        let org = &policies.organizations.all()[1];
        let state = CcaState::Expired {
            on: d("2026-03-01"),
        };
        let facts = WorklistFacts {
            issue: IssueRef {
                project: "cocreate/engagements".into(),
                iid: 2,
            },
            org,
            stage: Some(Stage::Aligned),
            open_mrs: 0,
            state: &state,
            confidential: true,
            markers: None,
        };
        assert_eq!(
            decide_worklist(&facts, &policies, &messages)
                .expect("renders")
                .need(),
            Some(&WorklistNeed::Markers)
        );
        let note_of = |f: &WorklistFacts<'_>| {
            let (listed, actions) = decide_worklist(f, &policies, &messages)
                .expect("renders")
                .act()
                .expect("markers given");
            assert!(listed);
            match actions.as_slice() {
                [Action::PostNote { note, .. }] => Some(note.body.clone()),
                [] => None,
                other => panic!("{other:#?}"),
            }
        };
        let body = note_of(&WorklistFacts {
            markers: Some(&[]),
            ..facts.clone()
        })
        .expect("a note");
        assert!(body.contains("expired on 2026-03-01"), "{body}");
        let public = note_of(&WorklistFacts {
            markers: Some(&[]),
            confidential: false,
            ..facts.clone()
        })
        .expect("a note");
        assert!(!public.contains("2026-03-01"), "{public}");
        assert!(!public.contains(&org.name), "{public}");
        let written = [Marker::CcaWorklist("expired:2026-03-01".into())];
        assert!(note_of(&WorklistFacts {
            markers: Some(&written),
            ..facts
        })
        .is_none());
    }
}

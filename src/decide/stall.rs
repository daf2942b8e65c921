//! Stalled engagements: a tracking issue that stays at `contacted` or `meeting` too long gets
//! one note to the CSM; one that stays `aligned` without moving on to onboarding gets one note
//! to the Contributor Success lead. Business days, with the review SLO's holidays; each note
//! once per stay at a stage (a marker keyed by the stage and when it began).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::engagement::IssueRef;
use super::funnel::Stage;
use super::nudge::business_days_between;
use super::{Action, NoteTarget, Step};
use crate::messages::{Marker, Messages, TemplateError};
use crate::neutralize;
use crate::policy::Policies;

/// What the stall rule knows about one open tracking issue.
#[derive(Debug, Clone)]
pub struct StallFacts<'a> {
    pub issue: IssueRef,
    /// Its stage label now (`None`: none, or one this version does not know).
    pub stage: Option<Stage>,
    /// When that stage label was last added (the issue's creation when GitLab has no event).
    pub since: DateTime<Utc>,
    /// The engagement's CSM (intake field, else organizations.yml).
    pub csm: Option<&'a str>,
    /// Who is assigned (the Contributor Success DRI first): addressed when no lead is set.
    pub assignees: &'a [String],
    /// Markers of the bot's notes on the issue; `None` until read (asked for only when a note
    /// is due).
    pub markers: Option<&'a [Marker]>,
    pub now: DateTime<Utc>,
}

/// Who the rule addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StallFor {
    Csm,
    Lead,
}

/// The stall rule's verdict on one tracking issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StallOutcome {
    pub stage: Option<Stage>,
    pub waited_business_days: u32,
    /// Past the policy's limit (a note is due, or was written for this stay already).
    pub stalled: Option<StallFor>,
}

/// The read the rule may ask for ([`Step::Need`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StallNeed {
    /// A note is due: the bot's markers on the issue say whether it was written already.
    Markers,
}

/// The marker of the note for one stay at `stage` that began at `since`.
pub fn stall_marker(stage: Stage, since: DateTime<Utc>) -> Marker {
    Marker::EngagementStall(format!(
        "{}:{}",
        stage.name(),
        since.format("%Y-%m-%dT%H:%M")
    ))
}

/// What is due on one open tracking issue.
pub fn decide_stall(
    f: &StallFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Step<(StallOutcome, Vec<Action>), StallNeed>, TemplateError> {
    let limits = &policies.routing.engagement_stalls;
    let holidays = &policies.routing.review_slo.holidays;
    let waited = business_days_between(f.since.date_naive(), f.now.date_naive(), holidays);
    let due = match f.stage {
        Some(Stage::Contacted | Stage::Meeting) if waited >= limits.business_days => {
            Some(StallFor::Csm)
        }
        Some(Stage::Aligned) if waited >= limits.aligned_business_days => Some(StallFor::Lead),
        _ => None,
    };
    let outcome = StallOutcome {
        stage: f.stage,
        waited_business_days: waited,
        stalled: due,
    };
    let (Some(due), Some(stage)) = (due, f.stage) else {
        return Ok(Step::Act((outcome, vec![])));
    };
    let Some(markers) = f.markers else {
        return Ok(Step::Need(StallNeed::Markers));
    };
    let marker = stall_marker(stage, f.since);
    if markers.contains(&marker) {
        return Ok(Step::Act((outcome, vec![])));
    }
    let lead = policies.routing.roster.lead.as_deref();
    // The CSM for a stay before alignment, the lead after it; the assignees (the DRI) when the
    // one asked for is not known, so the note always reaches someone who can act.
    let wanted = match due {
        StallFor::Csm => f.csm,
        StallFor::Lead => lead,
    };
    let who: Vec<String> = match wanted {
        Some(u) => vec![neutralize::mention(u.trim_start_matches('@'))],
        None => f.assignees.iter().map(|a| neutralize::mention(a)).collect(),
    };
    let template = match due {
        StallFor::Csm => "stall_csm.md",
        StallFor::Lead => "stall_aligned.md",
    };
    let who = if who.is_empty() {
        "Hello".to_owned()
    } else {
        who.join(", ")
    };
    let note = messages.stall(
        template,
        marker,
        &who,
        stage.name(),
        waited,
        &policies.routing.labels.stage_prefix,
    )?;
    Ok(Step::Act((
        outcome,
        vec![Action::PostNote {
            target: NoteTarget::Issue(f.issue.clone()),
            note,
        }],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("t").to_utc()
    }

    fn body(actions: &[Action]) -> Option<String> {
        match actions {
            [Action::PostNote { note, .. }] => Some(note.body.clone()),
            [] => None,
            other => panic!("unexpected actions {other:#?}"),
        }
    }

    /// (stage, now, csm, already noted, addressed to: the note's first mention).
    type Row<'a> = (
        Option<Stage>,
        &'a str,
        Option<&'a str>,
        bool,
        Option<&'a str>,
    );

    /// Since Monday 2 November, at a stage: who is asked, if anyone.
    #[test]
    fn stall_table() {
        let policies = Policies::embedded().expect("examples");
        let messages = Messages::embedded().expect("templates");
        let monday = "2026-11-02T10:00:00Z";
        let since = t(monday);
        let rows: Vec<Row> = vec![
            // 9 business days: not yet.
            (
                Some(Stage::Contacted),
                "2026-11-13T10:00:00Z",
                Some("csm-aero"),
                false,
                None,
            ),
            // 10 business days (two weekends skipped): the CSM.
            (
                Some(Stage::Contacted),
                "2026-11-16T10:00:00Z",
                Some("csm-aero"),
                false,
                Some("@csm-aero"),
            ),
            (
                Some(Stage::Meeting),
                "2026-11-16T10:00:00Z",
                Some("csm-aero"),
                false,
                Some("@csm-aero"),
            ),
            // Already written for this stay: nothing.
            (
                Some(Stage::Meeting),
                "2026-11-30T10:00:00Z",
                Some("csm-aero"),
                true,
                None,
            ),
            // No CSM known: the assignees (the DRI).
            (
                Some(Stage::Contacted),
                "2026-11-16T10:00:00Z",
                None,
                false,
                Some("@cs-reviewer-1"),
            ),
            // Aligned: the lead, not the CSM.
            (
                Some(Stage::Aligned),
                "2026-11-16T10:00:00Z",
                Some("csm-aero"),
                false,
                Some("@cs-lead"),
            ),
            // Other stages never stall here.
            (
                Some(Stage::Prospect),
                "2026-12-30T10:00:00Z",
                Some("csm-aero"),
                false,
                None,
            ),
            (
                Some(Stage::Onboarding),
                "2026-12-30T10:00:00Z",
                Some("csm-aero"),
                false,
                None,
            ),
            (
                Some(Stage::Active),
                "2026-12-30T10:00:00Z",
                Some("csm-aero"),
                false,
                None,
            ),
            (None, "2026-12-30T10:00:00Z", Some("csm-aero"), false, None),
        ];
        let issue = IssueRef {
            project: "cocreate/engagements".into(),
            iid: 1,
        };
        let assignees = vec!["cs-reviewer-1".to_string()];
        for (stage, now, csm, noted, want) in rows {
            let written: Vec<Marker> = stage
                .filter(|_| noted)
                .map(|s| stall_marker(s, since))
                .into_iter()
                .collect();
            let facts = StallFacts {
                issue: issue.clone(),
                stage,
                since,
                csm,
                assignees: &assignees,
                markers: None,
                now: t(now),
            };
            let first = decide_stall(&facts, &policies, &messages).expect("renders");
            let step = match first {
                Step::Need(StallNeed::Markers) => {
                    assert!(
                        want.is_some() || noted,
                        "{stage:?} {now}: markers read for nothing"
                    );
                    decide_stall(
                        &StallFacts {
                            markers: Some(&written),
                            ..facts.clone()
                        },
                        &policies,
                        &messages,
                    )
                    .expect("renders")
                }
                done => done,
            };
            let (_, actions) = step.act().expect("markers given");
            let got = body(&actions);
            match want {
                None => assert!(got.is_none(), "{stage:?} {now}: {got:?}"),
                Some(who) => {
                    let got = got.unwrap_or_default();
                    assert!(got.starts_with(who), "{stage:?} {now}: {got}");
                }
            }
        }
    }

    #[test]
    fn holidays_count_like_weekends() {
        let mut policies = Policies::embedded().expect("examples");
        policies.routing.review_slo.holidays =
            vec![chrono::NaiveDate::from_ymd_opt(2026, 11, 11).expect("date")];
        let messages = Messages::embedded().expect("templates");
        let facts = StallFacts {
            issue: IssueRef {
                project: "cocreate/engagements".into(),
                iid: 1,
            },
            stage: Some(Stage::Contacted),
            since: t("2026-11-02T10:00:00Z"),
            csm: Some("csm-aero"),
            assignees: &[],
            markers: Some(&[]),
            now: t("2026-11-16T10:00:00Z"),
        };
        let (outcome, actions) = decide_stall(&facts, &policies, &messages)
            .expect("renders")
            .act()
            .expect("decided");
        assert_eq!(outcome.waited_business_days, 9);
        assert!(actions.is_empty());
    }
}

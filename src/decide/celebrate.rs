//! Recognition of a merged Co-Create MR: one thank-you note to its author naming what the
//! organization has contributed so far (counts only: nothing internal goes on the MR), one note
//! on the engagement's tracking issue, and the case-study label on the tracking issue once the
//! policy's threshold is reached.

use serde::Serialize;

use super::engagement::IssueRef;
use super::funnel::Stage;
use super::{Action, NoteTarget};
use crate::domain::MrRef;
use crate::messages::{Marker, Messages, TemplateError};
use crate::policy::Policies;

/// What the organization has contributed so far (this MR counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Contributions {
    pub merged_mrs: usize,
    pub contributors: usize,
}

/// The organization's tracking issue as it is now.
#[derive(Debug, Clone)]
pub struct TrackingNow<'a> {
    pub issue: IssueRef,
    pub stage: Option<Stage>,
    pub labels: &'a [String],
    /// Markers of the bot's notes on it.
    pub markers: &'a [Marker],
}

/// Everything the rule needs about one merged Co-Create MR.
#[derive(Debug, Clone)]
pub struct MergedFacts<'a> {
    pub mr: MrRef,
    pub mr_url: &'a str,
    pub author: &'a str,
    /// Markers of the bot's notes on the MR.
    pub mr_markers: &'a [Marker],
    pub contributions: Contributions,
    /// `None`: the organization has no open tracking issue (or the project is missing).
    pub tracking: Option<TrackingNow<'a>>,
}

/// Whether the engagement is a case-study candidate now.
pub fn case_study_due(
    policies: &Policies,
    stage: Option<Stage>,
    contributions: Contributions,
) -> bool {
    let r = &policies.routing.recognition;
    let merged_enough = contributions.merged_mrs >= r.case_study_min_merged as usize;
    let stage_ok = !r.case_study_needs_completed || stage.is_some_and(|s| s >= Stage::Completed);
    merged_enough && stage_ok
}

/// The notes and the label a merged Co-Create MR is due, each once.
pub fn decide_merged(
    f: &MergedFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Vec<Action>, TemplateError> {
    let mut actions = Vec::new();
    let c = f.contributions;
    if !f.mr_markers.contains(&Marker::Thanks(f.mr)) {
        actions.push(Action::PostNote {
            target: NoteTarget::MergeRequest(f.mr),
            note: messages.thanks(Marker::Thanks(f.mr), f.author, c.merged_mrs, c.contributors)?,
        });
    }
    if let Some(t) = &f.tracking {
        let label = &policies.routing.labels.case_study;
        let candidate = case_study_due(policies, t.stage, c);
        let newly = candidate && !t.labels.contains(label);
        if !t.markers.contains(&Marker::MrMerged(f.mr)) {
            actions.push(Action::PostNote {
                target: NoteTarget::Issue(t.issue.clone()),
                note: messages.mr_merged(
                    Marker::MrMerged(f.mr),
                    f.mr_url,
                    f.author,
                    c.merged_mrs,
                    c.contributors,
                    newly.then_some(label.as_str()),
                )?,
            });
        }
        if newly {
            actions.push(Action::EditIssue {
                issue: t.issue.clone(),
                add_labels: vec![label.clone()],
                remove_labels: vec![],
                assignee_ids: None,
                description: None,
                confidential: None,
            });
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(merged_mrs: usize, contributors: usize) -> Contributions {
        Contributions {
            merged_mrs,
            contributors,
        }
    }

    #[test]
    fn case_study_threshold_table() {
        let mut policies = Policies::embedded().expect("examples");
        // (min merged, needs completed, stage, merged so far) → candidate
        let rows = [
            (1, true, Some(Stage::Active), 1, false),
            (1, true, Some(Stage::Completed), 1, true),
            (1, true, Some(Stage::Sustaining), 4, true),
            (1, true, None, 4, false),
            (3, true, Some(Stage::Completed), 2, false),
            (3, true, Some(Stage::Completed), 3, true),
            (3, false, Some(Stage::Active), 3, true),
            (3, false, None, 2, false),
        ];
        for (min, completed, stage, merged, want) in rows {
            policies.routing.recognition.case_study_min_merged = min;
            policies.routing.recognition.case_study_needs_completed = completed;
            assert_eq!(
                case_study_due(&policies, stage, c(merged, 1)),
                want,
                "{min} {completed} {stage:?} {merged}"
            );
        }
    }

    #[test]
    fn each_write_once_and_counts_only_on_the_mr() {
        let policies = Policies::embedded().expect("examples");
        let messages = Messages::embedded().expect("templates");
        let mr = MrRef {
            project_id: 2,
            iid: 16,
        };
        let issue = IssueRef {
            project: "cocreate/engagements".into(),
            iid: 1,
        };
        let labels = vec!["Co-Create engagement".to_string()];
        let none: Vec<Marker> = vec![];
        let facts = |mr_markers: &'static [Marker], issue_markers: &'static [Marker]| MergedFacts {
            mr,
            mr_url: "https://gitlab.example.com/vendor/product/-/merge_requests/16",
            author: "aero-dev-1",
            mr_markers,
            contributions: c(3, 2),
            tracking: Some(TrackingNow {
                issue: issue.clone(),
                stage: Some(Stage::Completed),
                labels: &[],
                markers: issue_markers,
            }),
        };
        let all = decide_merged(&facts(&[], &[]), &policies, &messages).expect("renders");
        assert_eq!(all.len(), 3, "{all:#?}");
        let Action::PostNote { note, .. } = &all[0] else {
            panic!("{all:#?}")
        };
        assert!(note.body.contains("@aero-dev-1"), "{}", note.body);
        assert!(note.body.contains("3 merge requests"), "{}", note.body);
        assert!(!note.body.contains("Example Aero"), "{}", note.body);
        assert!(
            matches!(&all[2], Action::EditIssue { add_labels, .. } if add_labels == &["Co-Create case-study candidate".to_string()])
        );
        // Both notes written, the label there: nothing.
        let labelled = MergedFacts {
            tracking: Some(TrackingNow {
                issue: issue.clone(),
                stage: Some(Stage::Completed),
                labels: &labels,
                markers: &none,
            }),
            ..facts(&[], &[])
        };
        let labelled_vec = vec![
            "Co-Create engagement".to_string(),
            "Co-Create case-study candidate".to_string(),
        ];
        let written_mr = [Marker::Thanks(mr)];
        let written_issue = [Marker::MrMerged(mr)];
        let done = MergedFacts {
            mr_markers: &written_mr,
            tracking: Some(TrackingNow {
                issue: issue.clone(),
                stage: Some(Stage::Completed),
                labels: &labelled_vec,
                markers: &written_issue,
            }),
            ..labelled
        };
        assert!(decide_merged(&done, &policies, &messages)
            .expect("renders")
            .is_empty());
        // No tracking issue: the thank-you only.
        let alone = MergedFacts {
            tracking: None,
            ..facts(&[], &[])
        };
        assert_eq!(
            decide_merged(&alone, &policies, &messages)
                .expect("renders")
                .len(),
            1
        );
    }
}

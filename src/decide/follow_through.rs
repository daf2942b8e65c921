//! After the intake: the account team on the engagement, the alignment-meeting request when
//! the stage becomes `meeting`, and the meeting-notes and onboarding issues linked to their
//! engagement.

use serde::Serialize;

use super::engagement::{intake_team, parse_intake, IntakeFields, IssueRef, TrackingIssue};
use super::funnel::Stage;
use super::{Action, NoteTarget, Step};
use crate::domain::OrgSlug;
use crate::messages::{Marker, Messages, TemplateError};
use crate::policy::{Organization, Policies};

/// The account team of a tracking issue: the intake's fields in its description, else the
/// organization's account team in organizations.yml.
pub fn tracking_team(description: &str, org: Option<&Organization>) -> Vec<(&'static str, String)> {
    let from_intake = intake_team(&parse_intake(description));
    if !from_intake.is_empty() {
        return from_intake;
    }
    let Some(org) = org else { return vec![] };
    let t = &org.account_team;
    let fields = IntakeFields {
        csm: t.csm.clone(),
        ae: t.ae.clone(),
        sa: t.sa.clone(),
        ..IntakeFields::default()
    };
    intake_team(&fields)
}

/// The organization whose label a tracking issue carries.
pub fn org_of<'p>(labels: &[String], policies: &'p Policies) -> Option<&'p Organization> {
    let l = &policies.routing.labels;
    policies
        .organizations
        .all()
        .iter()
        .find(|o| labels.contains(&l.org(&o.slug)))
}

/// What the follow-through rules know about a tracking issue.
#[derive(Debug, Clone)]
pub struct TrackingFacts<'a> {
    pub issue: &'a IssueRef,
    pub labels: &'a [String],
    pub description: &'a str,
    pub markers: &'a [Marker],
    /// The issue's address in GitLab (when read), for the link to the meeting-notes template.
    pub web_url: Option<&'a str>,
}

/// Where a new meeting-notes issue is opened from its template, beside the tracking issue.
pub fn meeting_template_url(web_url: &str) -> Option<String> {
    let (project, _) = web_url.rsplit_once("/-/issues/")?;
    let name = crate::messages::MEETING_NOTES_TEMPLATE.replace(' ', "%20");
    Some(format!("{project}/-/issues/new?issuable_template={name}"))
}

/// One note when the stage is `meeting`: the account team is asked to hold the alignment
/// meeting, with the link to the meeting-notes template.
pub fn decide_meeting_request(
    f: &TrackingFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Vec<Action>, TemplateError> {
    let l = &policies.routing.labels;
    let at_meeting = f.labels.contains(&l.stage(Stage::Meeting.name()));
    if !at_meeting || f.markers.contains(&Marker::MeetingRequest) {
        return Ok(vec![]);
    }
    let team = tracking_team(f.description, org_of(f.labels, policies));
    let roles: Vec<(&str, &str)> = team.iter().map(|(r, u)| (*r, u.as_str())).collect();
    let url = f.web_url.and_then(meeting_template_url);
    Ok(vec![Action::PostNote {
        target: NoteTarget::Issue(f.issue.clone()),
        note: messages.meeting_request(&roles, url.as_deref())?,
    }])
}

/// A meeting-notes or onboarding issue of the tracking project.
#[derive(Debug, Clone)]
pub struct DocFacts {
    pub issue: IssueRef,
    pub confidential: bool,
    pub labels: Vec<String>,
    pub description: String,
    pub markers: Vec<Marker>,
    /// The open tracking issues of the organization its `Organization:` field names (`None`
    /// until read).
    pub tracking: Option<Vec<TrackingIssue>>,
}

/// The read a meeting-notes or onboarding issue naming a known organization asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocNeeds {
    pub org: OrgSlug,
}

/// A meeting-notes or onboarding issue is made confidential (like intakes), labelled with its
/// organization and linked once to that organization's tracking issue, with one note saying so.
pub fn decide_engagement_doc(
    f: &DocFacts,
    policies: &Policies,
    messages: &Messages,
) -> Result<Step<Vec<Action>, DocNeeds>, TemplateError> {
    let l = &policies.routing.labels;
    let make_confidential = policies.routing.tracking.confidential && !f.confidential;
    let named = parse_intake(&f.description).organization;
    let org = named.as_deref().and_then(|o| {
        policies.organizations.all().iter().find(|org| {
            org.slug.as_str().eq_ignore_ascii_case(o.trim())
                || org.name.eq_ignore_ascii_case(o.trim())
        })
    });
    let edit = |add_labels: Vec<String>| Action::EditIssue {
        issue: f.issue.clone(),
        add_labels,
        remove_labels: vec![],
        assignee_ids: None,
        description: None,
        confidential: make_confidential.then_some(true),
    };
    let Some(org) = org else {
        // No known organization yet: only kept confidential (the field can be fixed later).
        return Ok(Step::Act(
            make_confidential
                .then(|| edit(vec![]))
                .into_iter()
                .collect(),
        ));
    };
    let Some(tracking) = &f.tracking else {
        return Ok(Step::Need(DocNeeds {
            org: org.slug.clone(),
        }));
    };
    let org_label = l.org(&org.slug);
    let add: Vec<String> = (!f.labels.contains(&org_label))
        .then_some(org_label)
        .into_iter()
        .collect();
    let mut actions = Vec::new();
    if !add.is_empty() || make_confidential {
        actions.push(edit(add));
    }
    if let Some(t) = tracking.iter().min_by_key(|t| t.issue.iid) {
        let marker = Marker::EngagementDoc(t.issue.iid);
        if !f.markers.contains(&marker) {
            let private = f.confidential || make_confidential;
            actions.push(Action::LinkIssues {
                issue: f.issue.clone(),
                target: t.issue.clone(),
            });
            actions.push(Action::PostNote {
                target: NoteTarget::Issue(f.issue.clone()),
                note: messages.engagement_doc(t.issue.iid, private.then_some(org.name.as_str()))?,
            });
        }
    }
    Ok(Step::Act(actions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Policies {
        Policies::embedded().expect("examples")
    }

    fn issue(iid: u64) -> IssueRef {
        IssueRef {
            project: "cocreate/engagements".into(),
            iid,
        }
    }

    #[test]
    fn the_account_team_comes_from_the_intake_else_the_organization() {
        let p = policies();
        let aero = p.organizations.all().first();
        let intake = "- CSM: @csm-x\n- AE: @\n- SA: @sa-x\n";
        // (description, organization, wanted)
        type Row<'a> = (&'a str, Option<&'a Organization>, Vec<(&'a str, &'a str)>);
        let rows: Vec<Row> = vec![
            (intake, aero, vec![("CSM", "csm-x"), ("SA", "sa-x")]),
            (intake, None, vec![("CSM", "csm-x"), ("SA", "sa-x")]),
            ("- CSM: @all everyone", None, vec![]),
            ("no fields", None, vec![]),
        ];
        for (text, org, want) in rows {
            let got = tracking_team(text, org);
            let got: Vec<(&str, &str)> = got.iter().map(|(r, u)| (*r, u.as_str())).collect();
            assert_eq!(got, want, "{text:?}");
        }
        // Without intake fields, organizations.yml's account team.
        let t = tracking_team("Opened by cocreate", aero);
        let t: Vec<(&str, &str)> = t.iter().map(|(r, u)| (*r, u.as_str())).collect();
        assert_eq!(
            t,
            [("CSM", "csm-aero"), ("AE", "ae-aero"), ("SA", "sa-aero")]
        );
    }

    #[test]
    fn meeting_request_table() {
        let p = policies();
        let m = Messages::embedded().expect("templates");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let url = "https://gitlab.example.com/cocreate/engagements/-/issues/4";
        // (labels, markers, wanted notes)
        let rows: Vec<(Vec<String>, Vec<Marker>, usize)> = vec![
            (s(&["Co-Create stage::contacted"]), vec![], 0),
            (s(&["Co-Create stage::meeting"]), vec![], 1),
            (
                s(&["Co-Create stage::meeting"]),
                vec![Marker::MeetingRequest],
                0,
            ),
            (s(&["Co-Create stage::aligned"]), vec![], 0),
        ];
        for (labels, markers, want) in rows {
            let i = issue(4);
            let f = TrackingFacts {
                issue: &i,
                labels: &labels,
                description: "- CSM: @csm-aero\n- SA: @sa-aero\n",
                markers: &markers,
                web_url: Some(url),
            };
            let actions = decide_meeting_request(&f, &p, &m).expect("renders");
            assert_eq!(actions.len(), want, "{labels:?} {markers:?}");
            if let Some(Action::PostNote { note, .. }) = actions.first() {
                let body = note.render();
                assert!(
                    body.starts_with("<!-- cocreate:meeting-request -->"),
                    "{body}"
                );
                assert!(
                    body.contains("@csm-aero, @sa-aero: the engagement is at the `meeting` stage"),
                    "{body}"
                );
                assert!(body.contains("https://gitlab.example.com/cocreate/engagements/-/issues/new?issuable_template=Co-Create%20alignment%20meeting%20notes"), "{body}");
            }
        }
        assert_eq!(meeting_template_url("not an issue address"), None);
    }

    #[test]
    fn engagement_doc_table() {
        let p = policies();
        let m = Messages::embedded().expect("templates");
        let tracking = TrackingIssue {
            issue: issue(1),
            confidential: true,
            assignees: vec![],
            linked: vec![],
        };
        let doc = |description: &str, confidential, labels: &[&str], markers, tracking| DocFacts {
            issue: issue(7),
            confidential,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            description: description.into(),
            markers,
            tracking,
        };
        let known = "- Organization: Example Aero\n";
        // Unknown organization: only made confidential.
        let step = decide_engagement_doc(
            &doc("- Organization: nope", false, &[], vec![], None),
            &p,
            &m,
        )
        .expect("renders");
        assert!(
            matches!(step.act().as_deref(), Some([Action::EditIssue { confidential: Some(true), add_labels, .. }]) if add_labels.is_empty())
        );
        // A known one asks for its tracking issues first.
        let step =
            decide_engagement_doc(&doc(known, true, &[], vec![], None), &p, &m).expect("renders");
        assert_eq!(step.need().map(|n| n.org.as_str()), Some("example-aero"));
        // Then: labelled, linked, one note naming the tracking issue.
        let step = decide_engagement_doc(
            &doc(
                known,
                false,
                &["Co-Create meeting notes"],
                vec![],
                Some(vec![tracking.clone()]),
            ),
            &p,
            &m,
        )
        .expect("renders");
        let actions = step.act().unwrap_or_default();
        assert!(
            matches!(actions.as_slice(), [
            Action::EditIssue { confidential: Some(true), add_labels, .. },
            Action::LinkIssues { target, .. },
            Action::PostNote { note, .. },
        ] if add_labels == &["Co-Create org::example-aero".to_string()] && target.iid == 1 && note.render().contains("#1")),
            "{actions:?}"
        );
        // Done already: nothing.
        let step = decide_engagement_doc(
            &doc(
                known,
                true,
                &["Co-Create meeting notes", "Co-Create org::example-aero"],
                vec![Marker::EngagementDoc(1)],
                Some(vec![tracking]),
            ),
            &p,
            &m,
        )
        .expect("renders");
        assert_eq!(step.act(), Some(vec![]));
        // No tracking issue yet: labelled only.
        let step = decide_engagement_doc(&doc(known, true, &[], vec![], Some(vec![])), &p, &m)
            .expect("renders");
        assert!(matches!(
            step.act().as_deref(),
            Some([Action::EditIssue {
                confidential: None,
                ..
            }])
        ));
    }
}

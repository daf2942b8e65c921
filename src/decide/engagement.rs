//! Engagements: one confidential tracking issue per Co-Create organization, opened from an
//! account team's intake issue or from the organization's first MR; every MR linked to it once;
//! funnel stage and pathway labels kept to one each.

use serde::Serialize;

use chrono::NaiveDate;

use super::checklist::{tick, Item};
use super::funnel::{Pathway, Stage};
use super::{cca_state, is_own_event, Action, NoteTarget, RosterFacts, Skip, Step};
use crate::domain::{MrRef, OrgSlug, UserId};
use crate::messages::{Engagement, Marker, Messages, TemplateError};
use crate::neutralize;
use crate::policy::{AccountTeamMode, Labels, Organization, Policies};

/// An issue, addressed by project (numeric id or full path) and iid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueRef {
    pub project: String,
    pub iid: u64,
}

impl std::fmt::Display for IssueRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.project, self.iid)
    }
}

/// An open tracking issue of an organization, as read from GitLab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackingIssue {
    pub issue: IssueRef,
    /// Whether GitLab has it confidential now.
    pub confidential: bool,
    pub assignees: Vec<(UserId, String)>,
    /// MRs already linked (markers in its description and the bot's notes).
    pub linked: Vec<MrRef>,
}

// ---------------------------------------------------------------------------------------------
// Intake
// ---------------------------------------------------------------------------------------------

/// The fields of a "Co-Create engagement request" issue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IntakeFields {
    pub organization: Option<String>,
    pub csm: Option<String>,
    pub ae: Option<String>,
    pub sa: Option<String>,
    pub opportunity: Option<String>,
    pub contacts: Vec<String>,
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i..].find("-->") {
            Some(j) => rest = &rest[i + j + 3..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads `- Field: value` lines (HTML comments and empty `@` placeholders count as empty).
pub fn parse_intake(description: &str) -> IntakeFields {
    let text = strip_comments(description);
    let mut f = IntakeFields::default();
    for line in text.lines() {
        let line = line.trim().trim_start_matches(['-', '*']).trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let value = (!value.is_empty() && value != "@").then(|| value.to_owned());
        match key.trim().to_ascii_lowercase().as_str() {
            "organization" => f.organization = value,
            "csm" => f.csm = value,
            "ae" => f.ae = value,
            "sa" => f.sa = value,
            "opportunity" => f.opportunity = value,
            "customer contacts" => {
                f.contacts = value
                    .unwrap_or_default()
                    .split([' ', ','])
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().to_owned())
                    .collect()
            }
            _ => {}
        }
    }
    f
}

/// The well-formed CSM, AE and SA usernames of an intake (without `@`), with their roles.
pub fn intake_team(fields: &IntakeFields) -> Vec<(&'static str, String)> {
    [("CSM", &fields.csm), ("AE", &fields.ae), ("SA", &fields.sa)]
        .into_iter()
        .filter_map(|(role, v)| {
            let name = v.as_deref()?.trim().trim_start_matches('@');
            neutralize::is_plain_username(name).then(|| (role, name.to_owned()))
        })
        .collect()
}

fn username(field: &str, v: &str, private: bool) -> Result<String, String> {
    let name = v.trim().trim_start_matches('@');
    if neutralize::is_plain_username(name) {
        Ok(name.to_owned())
    } else if private {
        Err(format!(
            "{field}: `{}` is not a GitLab username (write it as @username)",
            neutralize::inline(v)
        ))
    } else {
        Err(format!(
            "{field}: not a GitLab username (write it as @username)"
        ))
    }
}

/// Checks an intake: the organization must be known, a CSM and the opportunity given, every
/// username well-formed. Problems are phrased for the account team, user text neutralized.
/// `private`: the note quoting them goes on a confidential issue; on any other issue the
/// problems quote nothing the account team wrote (no organization, no account team member).
pub fn validate_intake<'p>(
    fields: &IntakeFields,
    policies: &'p Policies,
    private: bool,
) -> Result<&'p Organization, Vec<String>> {
    let mut problems = Vec::new();
    let org = match &fields.organization {
        None => {
            problems.push(
                "Organization: missing (the slug or name from organizations.yml)".to_string(),
            );
            None
        }
        Some(o) => {
            let found = policies.organizations.all().iter().find(|org| {
                org.slug.as_str().eq_ignore_ascii_case(o.trim())
                    || org.name.eq_ignore_ascii_case(o.trim())
            });
            match (found, private) {
                (Some(_), _) => {}
                (None, true) => problems.push(format!(
                    "Organization: `{}` is not a Co-Create organization yet (add it to policies/organizations.yml first)",
                    neutralize::inline(o)
                )),
                (None, false) => problems.push(
                    "Organization: not the slug or name of a Co-Create organization (check policies/organizations.yml)".to_string(),
                ),
            }
            found
        }
    };
    match &fields.csm {
        None => problems.push("CSM: missing (the CSM's GitLab username)".into()),
        Some(v) => {
            if let Err(e) = username("CSM", v, private) {
                problems.push(e);
            }
        }
    }
    for (field, v) in [("AE", &fields.ae), ("SA", &fields.sa)] {
        if let Some(v) = v {
            if let Err(e) = username(field, v, private) {
                problems.push(e);
            }
        }
    }
    if fields.opportunity.is_none() {
        problems.push(
            "Opportunity: missing (one or two sentences on what we would build together)".into(),
        );
    }
    for c in &fields.contacts {
        if let Err(e) = username("Customer contacts", c, private) {
            problems.push(e);
        }
    }
    match (org, problems.is_empty()) {
        (Some(o), true) => Ok(o),
        _ => Err(problems),
    }
}

/// What the intake handler knows.
#[derive(Debug, Clone)]
pub struct IntakeFacts {
    pub issue: IssueRef,
    /// Whether GitLab has the issue confidential now.
    pub confidential: bool,
    pub description: String,
    pub labels: Vec<String>,
    /// Markers in the bot's notes on this issue.
    pub markers: Vec<Marker>,
    /// Open tracking issues of the organization named in the intake, other than this issue
    /// (`None` until read: the organization must be known first).
    pub other_tracking: Option<Vec<TrackingIssue>>,
    /// The roster's load, for the DRI of a new tracking issue (`None`: none is assigned).
    pub roster: Option<RosterFacts>,
    /// The day, for the organization's agreement state in the checklist.
    pub today: NaiveDate,
    /// The intake's CSM, AE and SA GitLab knows, with their ids (read with the tracking
    /// issues; a name GitLab does not know is not assigned).
    pub account_team: Vec<(String, UserId)>,
}

/// The reads an intake naming a known organization asks for ([`Step::Need`]): that
/// organization's other open tracking issues and the roster's load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntakeNeeds {
    pub org: OrgSlug,
    /// The intake's CSM, AE and SA usernames, to look up.
    pub account_team: Vec<String>,
}

/// What to do with an intake issue: a note on an invalid one; for a valid one, once the
/// organization's other tracking issues are known, the duplicate link or the edit that makes
/// it the tracking issue.
pub fn decide_intake(
    facts: &IntakeFacts,
    policies: &Policies,
    messages: &Messages,
) -> Result<Step<Vec<Action>, IntakeNeeds>, TemplateError> {
    let labels = &policies.routing.labels;
    let fields = parse_intake(&facts.description);
    // An intake carries engagement data (organization, account team, opportunity): with
    // `tracking.confidential` it is made confidential before the bot writes anything on it,
    // and a note names engagement data only where the issue is (or is being made) private.
    let make_confidential = policies.routing.tracking.confidential && !facts.confidential;
    let private = facts.confidential || make_confidential;
    let confidential_edit = || Action::EditIssue {
        issue: facts.issue.clone(),
        add_labels: vec![],
        remove_labels: vec![],
        assignee_ids: None,
        description: None,
        confidential: Some(true),
    };
    let org = match validate_intake(&fields, policies, private) {
        Err(problems) => {
            // One note per distinct set of problems: a fix that leaves others gets a new note.
            let digest = short_hash(&problems.join("\n"));
            let marker = Marker::IntakeInvalid(digest);
            let mut actions: Vec<Action> = make_confidential
                .then(confidential_edit)
                .into_iter()
                .collect();
            if facts.markers.contains(&marker) {
                return Ok(Step::Act(actions));
            }
            let known: Vec<String> = policies
                .organizations
                .all()
                .iter()
                .map(|o| format!("`{}`", o.slug))
                .collect();
            let known = private.then(|| known.join(", "));
            let note = messages.intake_invalid(marker, &problems, known.as_deref())?;
            actions.push(Action::PostNote {
                target: NoteTarget::Issue(facts.issue.clone()),
                note,
            });
            return Ok(Step::Act(actions));
        }
        Ok(org) => org,
    };
    let Some(others) = &facts.other_tracking else {
        return Ok(Step::Need(IntakeNeeds {
            org: org.slug.clone(),
            account_team: intake_team(&fields).into_iter().map(|(_, u)| u).collect(),
        }));
    };
    if let Some(existing) = others.iter().min_by_key(|t| t.issue.iid) {
        let marker = Marker::IntakeDuplicate(existing.issue.iid);
        let mut actions: Vec<Action> = make_confidential
            .then(confidential_edit)
            .into_iter()
            .collect();
        if facts.markers.contains(&marker) {
            return Ok(Step::Act(actions));
        }
        let org_name = private.then_some(org.name.as_str());
        let note = messages.intake_duplicate(marker, org_name, existing.issue.iid)?;
        actions.push(Action::LinkIssues {
            issue: facts.issue.clone(),
            target: existing.issue.clone(),
        });
        actions.push(Action::PostNote {
            target: NoteTarget::Issue(facts.issue.clone()),
            note,
        });
        return Ok(Step::Act(actions));
    }
    // The intake becomes the tracking issue.
    let wanted = [labels.engagement.clone(), labels.org(&org.slug)];
    let mut add: Vec<String> = wanted
        .into_iter()
        .filter(|l| !facts.labels.contains(l))
        .collect();
    let has_stage = facts
        .labels
        .iter()
        .any(|l| l.starts_with(&labels.stage_prefix));
    if !has_stage {
        add.push(labels.stage(Stage::Contacted.name()));
    }
    let remove: Vec<String> = facts
        .labels
        .iter()
        .filter(|l| **l == labels.intake)
        .cloned()
        .collect();
    // The description is the account team's text: a hidden marker there is text. The
    // checklist counts as there only with its heading, as the bot writes it (visible to all).
    let cca = cca_state(&org.slug, &policies.agreements, facts.today);
    let checklist = messages.checklist(&org.slack_channel, cca.name(), labels)?;
    let head: String = checklist.lines().take(2).collect::<Vec<_>>().join("\n");
    let mut description = if facts.description.contains(&head) {
        None
    } else {
        Some(format!("{}\n\n{checklist}", facts.description.trim_end()))
    };
    let dri = facts
        .roster
        .as_ref()
        .and_then(|r| super::choose_reviewer(&policies.routing.roster, r))
        .and_then(|c| c.id);
    // The account team: assigned with the DRI, or listed and pinged once in a note.
    let mode = policies.routing.tracking.account_team;
    let mut assignees: Vec<UserId> = dri.into_iter().collect();
    if mode == AccountTeamMode::Assign {
        for (_, id) in &facts.account_team {
            if !assignees.contains(id) {
                assignees.push(*id);
            }
        }
    }
    let team_note =
        if mode == AccountTeamMode::Mention && !facts.markers.contains(&Marker::AccountTeam) {
            let team = intake_team(&fields);
            let dri_name = facts
                .roster
                .as_ref()
                .and_then(|r| super::choose_reviewer(&policies.routing.roster, r))
                .map(|c| c.username);
            let roles: Vec<(&str, &str)> = team.iter().map(|(r, u)| (*r, u.as_str())).collect();
            (!roles.is_empty())
                .then(|| messages.account_team(&roles, dri_name.as_deref()))
                .transpose()?
        } else {
            None
        };
    // The checklist arrives with what this edit and the agreements already prove ticked.
    let team_size = intake_team(&fields).len();
    let team_on_issue = team_size > 0
        && match mode {
            AccountTeamMode::Assign => facts.account_team.len() == team_size,
            AccountTeamMode::Mention => {
                team_note.is_some() || facts.markers.contains(&Marker::AccountTeam)
            }
        };
    let known = [
        (Item::Agreement, cca.is_valid()),
        (Item::Dri, dri.is_some()),
        (Item::AccountTeam, team_on_issue),
    ];
    let items: Vec<Item> = known
        .into_iter()
        .filter_map(|(i, yes)| yes.then_some(i))
        .collect();
    description = description.map(|d| tick(&d, &items).unwrap_or(d));
    if add.is_empty() && remove.is_empty() && description.is_none() && !make_confidential {
        return Ok(Step::Act(vec![]));
    }
    let mut actions = Vec::new();
    let mut confidential = make_confidential.then_some(true);
    if let Some(note) = team_note {
        // The note goes before the edit that makes the intake a tracking issue (an intake is
        // decided again until that edit lands, a tracking issue never is), after the edit
        // that makes it confidential.
        if make_confidential {
            actions.push(confidential_edit());
            confidential = None;
        }
        actions.push(Action::PostNote {
            target: NoteTarget::Issue(facts.issue.clone()),
            note,
        });
    }
    // One edit: the issue never carries the checklist (channel, CCA state) or the engagement
    // labels without being confidential.
    actions.push(Action::EditIssue {
        issue: facts.issue.clone(),
        add_labels: add,
        remove_labels: remove,
        assignee_ids: (!assignees.is_empty()).then_some(assignees),
        description,
        confidential,
    });
    Ok(Step::Act(actions))
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

// ---------------------------------------------------------------------------------------------
// MRs and their engagement
// ---------------------------------------------------------------------------------------------

/// What the engagement rules know about one Co-Create MR.
#[derive(Debug, Clone)]
pub struct MrEngagementFacts<'a> {
    pub org: &'a Organization,
    pub mr: MrRef,
    pub mr_url: &'a str,
    pub title: &'a str,
    /// The organization's open tracking issues.
    pub tracking: &'a [TrackingIssue],
    /// The MR's Contributor Success reviewer, DRI of a tracking issue it opens.
    pub dri: Option<(UserId, &'a str)>,
    /// The organization's CCA state name, for the checklist.
    pub cca: &'a str,
}

/// The engagement part of a Co-Create MR's wanted state: open the organization's tracking
/// issue if it has none, else link the MR to it once.
pub fn decide_mr_engagement(
    f: &MrEngagementFacts<'_>,
    policies: &Policies,
    messages: &Messages,
) -> Result<Vec<Action>, TemplateError> {
    let MrEngagementFacts {
        org,
        mr,
        mr_url,
        title,
        tracking,
        dri,
        cca,
    } = *f;
    let labels = &policies.routing.labels;
    let link_marker = Marker::MrLink(mr);
    match tracking.iter().min_by_key(|t| t.issue.iid) {
        None => {
            let first_mr = format!("{mr_url} {link_marker}");
            let body = messages.engagement(
                &Engagement {
                    org_name: &org.name,
                    slug: org.slug.as_str(),
                    tier: org.tier.get(),
                    csm: org.account_team.csm.as_deref(),
                    ae: org.account_team.ae.as_deref(),
                    sa: org.account_team.sa.as_deref(),
                    dri: dri.map(|d| d.1),
                    slack_channel: &org.slack_channel,
                    cca,
                    first_mr: Some(&first_mr),
                    issue_list: policies.routing.site.issue_list_url.as_deref(),
                },
                labels,
            )?;
            Ok(vec![Action::CreateIssue {
                project: policies.routing.tracking.project.clone(),
                title: format!("Co-Create engagement: {}", org.name),
                description: body,
                labels: vec![
                    labels.engagement.clone(),
                    labels.org(&org.slug),
                    labels.stage(Stage::Active.name()),
                ],
                confidential: policies.routing.tracking.confidential,
                assignee_ids: dri.map(|d| vec![d.0]).unwrap_or_default(),
            }])
        }
        Some(t) if !t.linked.contains(&mr) => {
            // A tracking issue someone made public is made confidential again before the note;
            // without `tracking.confidential`, a note on a public one does not name the
            // organization.
            let make_confidential = policies.routing.tracking.confidential && !t.confidential;
            let private = t.confidential || make_confidential;
            let mut actions = Vec::new();
            if make_confidential {
                actions.push(Action::EditIssue {
                    issue: t.issue.clone(),
                    add_labels: vec![],
                    remove_labels: vec![],
                    assignee_ids: None,
                    description: None,
                    confidential: Some(true),
                });
            }
            actions.push(Action::PostNote {
                target: NoteTarget::Issue(t.issue.clone()),
                note: messages.mr_link(
                    link_marker,
                    private.then_some(org.name.as_str()),
                    mr_url,
                    title,
                )?,
            });
            Ok(actions)
        }
        Some(_) => Ok(vec![]),
    }
}

/// A prospect to open a tracking issue for (from `cocreate score`).
#[derive(Debug, Clone, PartialEq)]
pub struct Prospect<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub tier: u8,
    pub score: f64,
    /// A SPIFF target account: its tracking issue gets the SPIFF label.
    pub spiff: bool,
}

/// `stage::prospect` tracking issues for the first `n` prospects that have no open tracking
/// issue yet (`tracked`: slugs that have one). Confidential, like every tracking issue, and
/// with the engagement checklist (the agreement state of `today`).
pub fn plan_prospects(
    ranked: &[Prospect<'_>],
    n: usize,
    tracked: &[String],
    policies: &Policies,
    messages: &Messages,
    today: NaiveDate,
) -> Result<Vec<Action>, TemplateError> {
    let labels = &policies.routing.labels;
    ranked
        .iter()
        .filter(|p| !tracked.iter().any(|t| t == p.slug))
        .take(n)
        .map(|p| {
            let slug = OrgSlug::parse(p.slug).ok();
            let known = slug.as_ref().and_then(|s| {
                policies
                    .organizations
                    .all()
                    .iter()
                    .find(|o| &o.slug == s)
            });
            let channel = known
                .map(|o| o.slack_channel.clone())
                .unwrap_or_else(|| format!("#cocreate-initiative-{}", p.slug));
            let cca = slug
                .as_ref()
                .map(|s| cca_state(s, &policies.agreements, today))
                .unwrap_or(super::CcaState::Missing);
            let checklist = messages.checklist(&channel, cca.name(), labels)?;
            Ok(Action::CreateIssue {
                project: policies.routing.tracking.project.clone(),
                title: format!("Co-Create prospect: {}", p.name),
                description: format!(
                    "{}\nProspect from `cocreate score`: tier {}, score {:.1}. Move it to `{}` once the account team has reached out, or close it if it does not fit.\n\n{checklist}",
                    Marker::Engagement(p.slug.to_owned()),
                    p.tier,
                    p.score,
                    labels.stage(Stage::Contacted.name()),
                ),
                labels: [
                    labels.engagement.clone(),
                    format!("{}{}", labels.org_prefix, p.slug),
                    labels.stage(Stage::Prospect.name()),
                ]
                .into_iter()
                .chain(p.spiff.then(|| labels.spiff.clone()))
                .collect(),
                confidential: policies.routing.tracking.confidential,
                assignee_ids: vec![],
            })
        })
        .collect()
}

/// The SPIFF label on the open tracking issues of SPIFF target accounts that lack it
/// (`open`: each issue with its labels now; `spiff`: the target accounts' slugs).
pub fn plan_spiff_labels(
    open: &[(IssueRef, Vec<String>)],
    spiff: &[&str],
    policies: &Policies,
) -> Vec<Action> {
    let labels = &policies.routing.labels;
    open.iter()
        .filter(|(_, now)| !now.contains(&labels.spiff))
        .filter(|(_, now)| {
            super::org_from_labels(now, &labels.org_prefix)
                .is_some_and(|slug| spiff.contains(&slug))
        })
        .map(|(issue, _)| Action::EditIssue {
            issue: issue.clone(),
            add_labels: vec![labels.spiff.clone()],
            remove_labels: vec![],
            assignee_ids: None,
            description: None,
            confidential: None,
        })
        .collect()
}

/// The MRs linked by [`Marker::MrLink`] markers.
pub fn linked_mrs(markers: &[Marker]) -> Vec<MrRef> {
    markers
        .iter()
        .filter_map(|m| match m {
            Marker::MrLink(mr) => Some(*mr),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Stage and pathway
// ---------------------------------------------------------------------------------------------

/// Keeps one stage and at most one pathway label on a tracking issue (the one just added wins,
/// else the furthest), and notes transitions that skip a required step.
pub fn decide_stage(
    issue: &IssueRef,
    confidential: bool,
    labels_now: &[String],
    just_added: &[String],
    markers: &[Marker],
    policies: &Policies,
    messages: &Messages,
) -> Result<Vec<Action>, TemplateError> {
    let l = &policies.routing.labels;
    let pick = |prefix: &str, order: &[&str]| -> (Option<String>, Vec<String>) {
        let present: Vec<&String> = labels_now
            .iter()
            .filter(|x| x.starts_with(prefix))
            .collect();
        let keep = present
            .iter()
            .find(|x| just_added.contains(x))
            .or_else(|| {
                present
                    .iter()
                    .max_by_key(|x| order.iter().position(|o| x.ends_with(&format!("::{o}"))))
            })
            .map(|x| x.to_string());
        let remove = present
            .iter()
            .filter(|x| Some(x.as_str()) != keep.as_deref())
            .map(|x| x.to_string())
            .collect();
        (keep, remove)
    };
    let (stage, mut remove) = pick(&l.stage_prefix, &Stage::ALL.map(Stage::name));
    let (pathway, remove_p) = pick(&l.pathway_prefix, &Pathway::ALL.map(Pathway::name));
    remove.extend(remove_p);
    let mut actions = Vec::new();
    // Tracking issues are always confidential when the policy says so.
    let make_confidential = policies.routing.tracking.confidential && !confidential;
    if !remove.is_empty() || make_confidential {
        actions.push(Action::EditIssue {
            issue: issue.clone(),
            add_labels: vec![],
            remove_labels: remove,
            assignee_ids: None,
            description: None,
            confidential: make_confidential.then_some(true),
        });
    }
    let stage = stage
        .as_deref()
        .and_then(|s| s.strip_prefix(l.stage_prefix.as_str()))
        .and_then(Stage::parse);
    let pathway = pathway
        .as_deref()
        .and_then(|s| s.strip_prefix(l.pathway_prefix.as_str()))
        .and_then(Pathway::parse);
    let mut warnings: Vec<(String, String)> = Vec::new();
    if let Some(stage) = stage {
        let st = stage.name();
        if stage.needs_pathway() && !pathway.is_some_and(Pathway::is_contribution) {
            warnings.push((
                format!("stage-without-pathway:{st}"),
                format!("stage `{st}` is set, but no `minor` or `major` pathway was decided: the program aligns on a pathway first."),
            ));
        }
    }
    if labels_now.contains(&l.onsite) && pathway != Some(Pathway::Major) {
        warnings.push((
            "onsite-without-major".into(),
            "an on-site week is planned, but the pathway is not `major`: on-site weeks are for major contributions only.".into(),
        ));
    }
    for (key, message) in warnings {
        let marker = Marker::StageSkip(key);
        if !markers.contains(&marker) {
            actions.push(Action::PostNote {
                target: NoteTarget::Issue(issue.clone()),
                note: messages.stage_skip(marker, &message)?,
            });
        }
    }
    Ok(actions)
}

/// What an issue of the tracking project is to the engagement rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// An account team's intake issue, not yet turned into a tracking issue.
    Intake,
    /// An organization's tracking issue.
    Tracking,
    /// Alignment-meeting notes or an onboarding session, to link to its engagement.
    Doc,
}

/// Classifies an issue by its labels: the engagement label makes it a tracking issue (even if it
/// still carries the intake label), the intake label alone an intake issue, neither nothing.
pub fn classify_issue(labels: &[String], l: &Labels) -> Option<IssueKind> {
    if labels.contains(&l.engagement) {
        Some(IssueKind::Tracking)
    } else if labels.contains(&l.intake) {
        Some(IssueKind::Intake)
    } else if labels.contains(&l.meeting_notes) || labels.contains(&l.onboarding) {
        Some(IssueKind::Doc)
    } else {
        None
    }
}

/// Whether the engagement rules look at an issue event at all: not the bot's own, in the
/// tracking project, an intake or tracking issue (by the labels the event carries).
pub fn issue_event_kind(
    actor: &str,
    project_path: &str,
    labels: &[String],
    policies: &Policies,
    bot_username: &str,
) -> Result<IssueKind, Skip> {
    if is_own_event(actor, bot_username) {
        return Err(Skip::OwnEvent);
    }
    if !project_path.eq_ignore_ascii_case(&policies.routing.tracking.project) {
        return Err(Skip::OutsideTrackingProject);
    }
    classify_issue(labels, &policies.routing.labels).ok_or(Skip::NotCoCreateIssue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Policies {
        Policies::embedded().expect("examples")
    }

    const INTAKE: &str = "## Co-Create engagement request\n\n- Organization: example-aero <!-- slug -->\n- CSM: @csm-aero\n- AE: @\n- SA: @sa-aero\n- Opportunity: Faster pipelines for large monorepos\n- Customer contacts: @aero-dev-1 @aero-dev-2\n\n/label ~\"Co-Create intake\"\n";

    #[test]
    fn parses_the_shipped_template_and_a_filled_one() {
        let f = parse_intake(INTAKE);
        assert_eq!(f.organization.as_deref(), Some("example-aero"));
        assert_eq!(f.csm.as_deref(), Some("@csm-aero"));
        assert_eq!(f.ae, None);
        assert_eq!(f.contacts, vec!["@aero-dev-1", "@aero-dev-2"]);
        let empty = parse_intake(crate::messages::ISSUE_TEMPLATES[0].1);
        assert_eq!(empty, IntakeFields::default());
    }

    #[test]
    fn validation_table() {
        let p = policies();
        let rows: Vec<(&str, Result<&str, usize>)> = vec![
            (INTAKE, Ok("example-aero")),
            ("- Organization: Example Telco\n- CSM: @csm-telco\n- Opportunity: x", Ok("example-telco")),
            ("- Organization: nope\n- CSM: @c\n- Opportunity: x", Err(1)),
            ("- CSM: @c", Err(2)),
            ("", Err(3)),
            ("- Organization: example-aero\n- CSM: @all everyone\n- Opportunity: x\n- Customer contacts: @ok, /close", Err(2)),
        ];
        for (text, want) in rows {
            let got = validate_intake(&parse_intake(text), &p, true)
                .map(|o| o.slug.as_str())
                .map_err(|e| e.len());
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn intake_confidentiality_table() {
        let p = policies();
        let m = Messages::embedded().expect("templates");
        let issue = IssueRef {
            project: "cocreate/engagements".into(),
            iid: 3,
        };
        let invalid = "- Organization: nope\n- CSM: @c\n- Opportunity: x";
        // (description, confidential now, other tracking issues, wanted: confidential edit
        // first, note lists/names organizations)
        type Row<'a> = (&'a str, bool, bool, Option<bool>, Option<bool>);
        let rows: Vec<Row> = vec![
            (INTAKE, false, false, Some(true), None),
            (INTAKE, true, false, None, None),
            (INTAKE, false, true, Some(true), Some(true)),
            (invalid, false, false, Some(true), Some(true)),
            (invalid, true, false, None, Some(true)),
        ];
        for (text, confidential, duplicate, edit, names) in rows {
            let facts = IntakeFacts {
                issue: issue.clone(),
                confidential,
                description: text.into(),
                labels: vec!["Co-Create intake".into()],
                markers: vec![],
                other_tracking: Some(if duplicate {
                    vec![TrackingIssue {
                        issue: IssueRef {
                            project: "cocreate/engagements".into(),
                            iid: 1,
                        },
                        confidential: true,
                        assignees: vec![],
                        linked: vec![],
                    }]
                } else {
                    vec![]
                }),
                roster: None,
                account_team: vec![],
                today: NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
            };
            let actions = decide_intake(&facts, &p, &m)
                .expect("renders")
                .act()
                .expect("tracking issues given");
            let first_edit = actions.first().and_then(|a| match a {
                Action::EditIssue { confidential, .. } => *confidential,
                _ => None,
            });
            assert_eq!(first_edit, edit, "{text:?} {confidential}");
            let note = actions.iter().find_map(|a| match a {
                Action::PostNote { note, .. } => Some(note.render()),
                _ => None,
            });
            let named = note
                .as_ref()
                .map(|b| b.contains("example-aero") || b.contains("Example Aero"));
            assert_eq!(named, names, "{text:?} {confidential}: {note:?}");
        }
        // Without `tracking.confidential`, a public issue's note names nobody.
        let mut open = policies();
        open.routing.tracking.confidential = false;
        let facts = IntakeFacts {
            issue,
            confidential: false,
            description: invalid.into(),
            labels: vec![],
            markers: vec![],
            other_tracking: None,
            roster: None,
            account_team: vec![],
            today: NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
        };
        let actions = decide_intake(&facts, &open, &m)
            .expect("renders")
            .act()
            .expect("an invalid intake needs nothing more");
        let [Action::PostNote { note, .. }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        let body = note.render();
        assert!(
            !body.contains("example-") && !body.contains("nope"),
            "{body}"
        );
    }

    #[test]
    fn a_tracking_issue_made_public_is_made_confidential_again_before_a_note() {
        let p = policies();
        let m = Messages::embedded().expect("templates");
        let org = p.organizations.all()[0].clone();
        let tracking = |confidential| TrackingIssue {
            issue: IssueRef {
                project: "cocreate/engagements".into(),
                iid: 1,
            },
            confidential,
            assignees: vec![],
            linked: vec![],
        };
        let decide = |t: &TrackingIssue, p: &Policies| {
            decide_mr_engagement(
                &MrEngagementFacts {
                    org: &org,
                    mr: MrRef {
                        project_id: 2,
                        iid: 16,
                    },
                    mr_url: "http://gitlab.example.com/vendor/product/-/merge_requests/16",
                    title: "t",
                    tracking: std::slice::from_ref(t),
                    dri: None,
                    cca: "signed",
                },
                p,
                &m,
            )
            .expect("renders")
        };
        let public = decide(&tracking(false), &p);
        assert!(
            matches!(public.as_slice(), [Action::EditIssue { confidential: Some(true), .. }, Action::PostNote { note, .. }] if note.body.contains(&org.name)),
            "{public:?}"
        );
        let private = decide(&tracking(true), &p);
        assert!(
            matches!(private.as_slice(), [Action::PostNote { .. }]),
            "{private:?}"
        );
        // Without `tracking.confidential`, a public tracking issue's link note names nobody.
        let mut open = policies();
        open.routing.tracking.confidential = false;
        let open_notes = decide(&tracking(false), &open);
        assert!(
            matches!(open_notes.as_slice(), [Action::PostNote { note, .. }] if !note.body.contains(&org.name)),
            "{open_notes:?}"
        );
        // The stage rules make a tracking issue confidential again too.
        let issue = tracking(false).issue;
        let stage = decide_stage(
            &issue,
            false,
            &["Co-Create stage::meeting".into()],
            &[],
            &[],
            &p,
            &m,
        )
        .expect("renders");
        assert!(
            matches!(
                stage.as_slice(),
                [Action::EditIssue {
                    confidential: Some(true),
                    ..
                }]
            ),
            "{stage:?}"
        );
        assert!(decide_stage(
            &issue,
            true,
            &["Co-Create stage::meeting".into()],
            &[],
            &[],
            &p,
            &m
        )
        .expect("renders")
        .is_empty());
    }

    /// The protocol: an intake naming a known organization asks for that organization's
    /// tracking issues (and the roster) before it acts; an invalid one acts at once; given
    /// the tracking issues, a valid one acts, and the checklist carries the CCA state of the
    /// day it is decided on.
    #[test]
    fn a_valid_intake_asks_for_its_organizations_tracking_issues_first() {
        let p = policies();
        let m = Messages::embedded().expect("templates");
        let facts = |description: &str, other_tracking, today: &str| IntakeFacts {
            issue: IssueRef {
                project: "cocreate/engagements".into(),
                iid: 3,
            },
            confidential: true,
            description: description.into(),
            labels: vec!["Co-Create intake".into()],
            markers: vec![],
            other_tracking,
            roster: None,
            account_team: vec![],
            today: NaiveDate::parse_from_str(today, "%Y-%m-%d").expect("date"),
        };
        let step = decide_intake(&facts(INTAKE, None, "2026-11-23"), &p, &m).expect("renders");
        assert_eq!(
            step.need().map(|n| n.org.as_str()),
            Some("example-aero"),
            "{step:?}"
        );
        let invalid = INTAKE.replace("example-aero", "nope");
        let step = decide_intake(&facts(&invalid, None, "2026-11-23"), &p, &m).expect("renders");
        assert!(
            matches!(&step, Step::Act(a) if a.iter().any(|a| matches!(a, Action::PostNote { .. }))),
            "{step:?}"
        );
        let checklist = |today| {
            let step = decide_intake(&facts(INTAKE, Some(vec![]), today), &p, &m).expect("renders");
            match step.act().unwrap_or_default().as_slice() {
                [Action::EditIssue {
                    description: Some(d),
                    ..
                }] => d.clone(),
                other => panic!("{other:?}"),
            }
        };
        // example-aero's agreement is on file in 2026 and has expired by 2028.
        assert!(checklist("2026-11-23").contains("signed"));
        assert!(checklist("2028-01-15").contains("expired"));
    }

    #[test]
    fn a_hidden_checklist_marker_alone_does_not_suppress_the_checklist() {
        let p = policies();
        let m = Messages::embedded().expect("templates");
        let edit = |description: String| {
            let facts = IntakeFacts {
                issue: IssueRef {
                    project: "cocreate/engagements".into(),
                    iid: 3,
                },
                confidential: true,
                description,
                labels: vec!["Co-Create intake".into()],
                markers: vec![],
                other_tracking: Some(vec![]),
                roster: None,
                account_team: vec![],
                today: NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
            };
            match decide_intake(&facts, &p, &m)
                .expect("renders")
                .act()
                .unwrap_or_default()
                .as_slice()
            {
                [Action::EditIssue { description, .. }] => description.clone(),
                other => panic!("{other:?}"),
            }
        };
        let planted = format!("{INTAKE}\n{}", Marker::Checklist("v1".into()));
        let appended = edit(planted).expect("the checklist is appended");
        assert!(appended.contains("## Co-Create checklist"), "{appended}");
        // Once it is there (boxes ticked or not), it is not appended again.
        let ticked = appended.replace("- [ ]", "- [x]");
        assert_eq!(edit(ticked), None);
    }

    /// The account team: assigned with the DRI (`assign`), or one note before the edit that
    /// converts the intake (`mention`), after the edit that makes it confidential.
    #[test]
    fn account_team_table() {
        use crate::policy::AccountTeamMode::{Assign, Mention};
        let m = Messages::embedded().expect("templates");
        let team = vec![("csm-aero".to_string(), 701), ("sa-aero".to_string(), 702)];
        // (mode, confidential now, note already there, wanted: assignees, action kinds)
        type Row = (AccountTeamMode, bool, bool, Vec<u64>, &'static str);
        let rows: Vec<Row> = vec![
            (Assign, true, false, vec![701, 702], "E"),
            (Assign, false, false, vec![701, 702], "E"),
            (Mention, true, false, vec![], "NE"),
            (Mention, false, false, vec![], "CNE"),
            (Mention, true, true, vec![], "E"),
        ];
        for (mode, confidential, noted, assignees, kinds) in rows {
            let mut p = policies();
            p.routing.tracking.account_team = mode;
            let facts = IntakeFacts {
                issue: IssueRef {
                    project: "cocreate/engagements".into(),
                    iid: 3,
                },
                confidential,
                description: INTAKE.into(),
                labels: vec!["Co-Create intake".into()],
                markers: if noted {
                    vec![Marker::AccountTeam]
                } else {
                    vec![]
                },
                other_tracking: Some(vec![]),
                roster: None,
                today: NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
                account_team: team.clone(),
            };
            let actions = decide_intake(&facts, &p, &m)
                .expect("renders")
                .act()
                .expect("decided");
            let got: String = actions
                .iter()
                .map(|a| match a {
                    Action::EditIssue {
                        description: None, ..
                    } => 'C',
                    Action::EditIssue { .. } => 'E',
                    Action::PostNote { .. } => 'N',
                    _ => '?',
                })
                .collect();
            assert_eq!(got, kinds, "{mode:?} {confidential} {noted}");
            let got_assignees = actions.iter().find_map(|a| match a {
                Action::EditIssue {
                    assignee_ids: Some(ids),
                    ..
                } => Some(ids.clone()),
                _ => None,
            });
            assert_eq!(
                got_assignees.unwrap_or_default(),
                assignees,
                "{mode:?} {confidential} {noted}"
            );
            if let Some(Action::PostNote { note, .. }) = actions
                .iter()
                .find(|a| matches!(a, Action::PostNote { .. }))
            {
                let body = note.render();
                assert!(
                    body.contains("- CSM: @csm-aero\n- SA: @sa-aero\n"),
                    "{body}"
                );
            }
        }
    }

    #[test]
    fn stage_table() {
        let p = policies();
        let m = Messages::embedded().expect("templates");
        let issue = IssueRef {
            project: "cocreate/engagements".into(),
            iid: 1,
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // (labels now, just added, removed, notes)
        // (labels now, just added, removed, notes)
        type Row = (Vec<String>, Vec<String>, Vec<String>, usize);
        let rows: Vec<Row> = vec![
            (s(&["Co-Create stage::contacted"]), s(&[]), s(&[]), 0),
            (
                s(&["Co-Create stage::contacted", "Co-Create stage::meeting"]),
                s(&["Co-Create stage::meeting"]),
                s(&["Co-Create stage::contacted"]),
                0,
            ),
            (
                s(&["Co-Create stage::meeting", "Co-Create stage::contacted"]),
                s(&["Co-Create stage::contacted"]),
                s(&["Co-Create stage::meeting"]),
                0,
            ),
            (
                s(&["Co-Create stage::meeting", "Co-Create stage::contacted"]),
                s(&[]),
                s(&["Co-Create stage::contacted"]),
                0,
            ),
            (
                s(&["Co-Create stage::active"]),
                s(&["Co-Create stage::active"]),
                s(&[]),
                1,
            ),
            (
                s(&["Co-Create stage::active", "Co-Create pathway::minor"]),
                s(&[]),
                s(&[]),
                0,
            ),
            (
                s(&["Co-Create pathway::minor", "Co-Create pathway::major"]),
                s(&["Co-Create pathway::major"]),
                s(&["Co-Create pathway::minor"]),
                0,
            ),
            (
                s(&["Co-Create on-site", "Co-Create pathway::minor"]),
                s(&[]),
                s(&[]),
                1,
            ),
        ];
        for (now, added, removed, notes) in rows {
            let actions = decide_stage(&issue, true, &now, &added, &[], &p, &m).expect("renders");
            let got_removed: Vec<String> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::EditIssue { remove_labels, .. } => Some(remove_labels.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(got_removed, removed, "{now:?}");
            let got_notes = actions
                .iter()
                .filter(|a| matches!(a, Action::PostNote { .. }))
                .count();
            assert_eq!(got_notes, notes, "{now:?}");
        }
    }

    #[test]
    fn prospects_skip_tracked_organizations_and_stop_at_n() {
        let p = policies();
        let ranked = [
            Prospect {
                slug: "a",
                name: "A",
                tier: 1,
                score: 90.0,
                spiff: false,
            },
            Prospect {
                slug: "b",
                name: "B",
                tier: 1,
                score: 80.0,
                spiff: false,
            },
            Prospect {
                slug: "c",
                name: "C",
                tier: 2,
                score: 70.0,
                spiff: false,
            },
            Prospect {
                slug: "d",
                name: "D",
                tier: 3,
                score: 60.0,
                spiff: false,
            },
        ];
        let m = Messages::embedded().expect("templates");
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
        let plan = plan_prospects(&ranked, 2, &["b".to_string()], &p, &m, today).expect("renders");
        let titles: Vec<String> = plan
            .iter()
            .map(|a| match a {
                Action::CreateIssue {
                    title,
                    labels,
                    confidential,
                    description,
                    ..
                } => {
                    assert!(labels.contains(&"Co-Create stage::prospect".to_string()));
                    assert!(
                        description.contains("## Co-Create checklist")
                            && description.contains("<!-- cocreate:check:first-mr-merged -->"),
                        "prospects get the checklist: {description}"
                    );
                    assert!(*confidential);
                    title.clone()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            titles,
            vec!["Co-Create prospect: A", "Co-Create prospect: C"]
        );
    }

    #[test]
    fn linked_mrs_are_read_back_from_markers() {
        let markers = vec![
            Marker::MrLink(MrRef {
                project_id: 2,
                iid: 16,
            }),
            Marker::Checklist("v1".into()),
        ];
        assert_eq!(
            linked_mrs(&markers),
            vec![MrRef {
                project_id: 2,
                iid: 16
            }]
        );
    }
}

//! `routing.yml`: label names, the Contributor Success roster and how reviewers are chosen,
//! the tracking project, and which projects/groups are watched.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Located;
use crate::domain::OrgSlug;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutingDoc {
    #[serde(default)]
    labels: Labels,
    contributor_success: RosterDoc,
    #[serde(default)]
    tracking: Tracking,
    #[serde(default)]
    watch: Watch,
    #[serde(default)]
    review_slo: ReviewSlo,
    #[serde(default)]
    site: Site,
    #[serde(default)]
    engagement_stalls: EngagementStalls,
    #[serde(default)]
    recognition: Recognition,
    /// The bot's GitLab username; when absent it is read from `GET /user` at start-up.
    #[serde(default)]
    bot_username: Option<String>,
}

/// The review-response SLO of `cocreate nudge`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewSlo {
    /// Business days a Co-Create MR may wait for its reviewer before they are pinged.
    pub business_days: u32,
    /// Further business days before the MR is handed to another roster member (or the lead).
    pub escalate_after_days: u32,
    /// Calendar days of the author's turn before one kind reminder.
    pub author_reminder_days: u32,
    /// Days that do not count as business days besides weekends (`YYYY-MM-DD`).
    pub holidays: Vec<chrono::NaiveDate>,
    /// Usernames of bots besides this program and GitLab's own bot accounts: their notes are
    /// never a response (time to first response) and never move whose turn it is.
    pub bots: Vec<String>,
}

impl Default for ReviewSlo {
    fn default() -> Self {
        Self {
            business_days: 4,
            escalate_after_days: 4,
            author_reminder_days: 30,
            holidays: Vec::new(),
            bots: Vec::new(),
        }
    }
}

/// `cocreate nudge` over the open tracking issues: how long an engagement may stay at one
/// stage before someone is asked to follow up (business days, `review_slo.holidays` skipped).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EngagementStalls {
    /// At `contacted` or `meeting` this long: one note to the CSM.
    pub business_days: u32,
    /// At `aligned` (not yet onboarding) this long: one note to the Contributor Success lead.
    pub aligned_business_days: u32,
}

impl Default for EngagementStalls {
    fn default() -> Self {
        Self {
            business_days: 10,
            aligned_business_days: 10,
        }
    }
}

/// Merged Co-Create MRs: when the engagement's tracking issue becomes a case-study candidate.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Recognition {
    /// Merged Co-Create MRs of the organization needed (this one counted).
    pub case_study_min_merged: u32,
    /// Only once the engagement is `completed` (or `sustaining`).
    pub case_study_needs_completed: bool,
}

impl Default for Recognition {
    fn default() -> Self {
        Self {
            case_study_min_merged: 1,
            case_study_needs_completed: true,
        }
    }
}

/// `cocreate site`: the curated issue list on GitLab Pages.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Site {
    /// An open issue in the watched scope carrying any of these labels is on the curated list.
    pub curated_labels: Vec<String>,
    /// Where the curated list is published (its GitLab Pages URL). When set, the welcome note
    /// and new tracking issues link to it.
    pub issue_list_url: Option<String>,
    /// The contribution guide for the customer's engineers. When set, the welcome note links it.
    pub contribution_guide_url: Option<String>,
}

impl Default for Site {
    fn default() -> Self {
        Self {
            curated_labels: vec![
                "co-create".into(),
                "quick win".into(),
                "Seeking community contributions".into(),
            ],
            issue_list_url: None,
            contribution_guide_url: None,
        }
    }
}

/// Label names; every one has GitLab-program defaults and can be renamed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Labels {
    pub cocreate: String,
    pub community: String,
    /// Prefix of the per-organization scoped label; the slug is appended.
    pub org_prefix: String,
    pub cca_signed: String,
    pub cca_missing: String,
    pub cca_expired: String,
    /// Marks engagement tracking issues.
    pub engagement: String,
    /// Marks intake issues opened from the "Co-Create engagement request" template.
    pub intake: String,
    /// Prefix of the funnel stage labels (`Co-Create stage::contacted`, …).
    pub stage_prefix: String,
    /// Prefix of the pathway labels (`Co-Create pathway::major`, …).
    pub pathway_prefix: String,
    /// Marks an engagement that plans an on-site week (only for a major pathway).
    pub onsite: String,
    /// On a Co-Create MR while its review is overdue.
    pub overdue: String,
    /// Marks alignment-meeting notes (the "Co-Create alignment meeting notes" template).
    pub meeting_notes: String,
    /// Marks onboarding-session issues (the "Co-Create onboarding session" template).
    pub onboarding: String,
    /// On a tracking issue whose engagement reached the recognition threshold.
    pub case_study: String,
    /// On a prospect tracking issue of a SPIFF target account (`score`'s `spiff_target`).
    pub spiff: String,
}

impl Default for Labels {
    fn default() -> Self {
        Self {
            cocreate: "Co-Create".into(),
            community: "Community contribution".into(),
            org_prefix: "Co-Create org::".into(),
            cca_signed: "CCA::signed".into(),
            cca_missing: "CCA::missing".into(),
            cca_expired: "CCA::expired".into(),
            engagement: "Co-Create engagement".into(),
            intake: "Co-Create intake".into(),
            stage_prefix: "Co-Create stage::".into(),
            pathway_prefix: "Co-Create pathway::".into(),
            onsite: "Co-Create on-site".into(),
            overdue: "Co-Create review::overdue".into(),
            meeting_notes: "Co-Create meeting notes".into(),
            onboarding: "Co-Create onboarding".into(),
            case_study: "Co-Create case-study candidate".into(),
            spiff: "Co-Create SPIFF target".into(),
        }
    }
}

impl Labels {
    pub fn org(&self, slug: &OrgSlug) -> String {
        format!("{}{}", self.org_prefix, slug)
    }

    pub fn stage(&self, stage: &str) -> String {
        format!("{}{stage}", self.stage_prefix)
    }

    pub fn pathway(&self, pathway: &str) -> String {
        format!("{}{pathway}", self.pathway_prefix)
    }

    /// The three CCA labels (scoped: exactly one belongs on an MR).
    pub fn cca_all(&self) -> [&str; 3] {
        [&self.cca_signed, &self.cca_missing, &self.cca_expired]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterDoc {
    reviewers: Spanned<Vec<String>>,
    #[serde(default)]
    lead: Option<String>,
    #[serde(default)]
    strategy: Strategy,
    #[serde(default = "yes")]
    skip_busy: bool,
}

fn yes() -> bool {
    true
}

/// How a Contributor Success reviewer is chosen for a new Co-Create MR.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Whoever already reviews the organization's open Co-Create MRs, else the least loaded.
    #[default]
    StickyThenLeastLoaded,
    /// Always the roster member with the fewest open Co-Create reviews.
    LeastLoaded,
}

/// The Contributor Success roster (lowercased GitLab usernames, in preference order for ties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    pub reviewers: Vec<String>,
    pub lead: Option<String>,
    pub strategy: Strategy,
    pub skip_busy: bool,
}

/// Where engagement tracking issues live.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Tracking {
    /// Full path of the tracking project (`group/project`).
    pub project: String,
    /// Tracking issues hold internal customer data: confidential unless a policy says otherwise.
    pub confidential: bool,
    /// What the bot does with a valid intake's CSM, AE and SA.
    pub account_team: AccountTeamMode,
}

impl Default for Tracking {
    fn default() -> Self {
        Self {
            project: "cocreate/engagements".into(),
            confidential: true,
            account_team: AccountTeamMode::default(),
        }
    }
}

/// `tracking.account_team`: how a valid intake's CSM, AE and SA join the tracking issue.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AccountTeamMode {
    /// Assigned to the tracking issue with the Contributor Success DRI (GitLab notifies them;
    /// more than one assignee needs a GitLab tier that allows it).
    #[default]
    Assign,
    /// Listed and pinged once in a note; only the DRI is assigned.
    Mention,
}

/// Which projects and groups are in scope for sweeps (webhooks carry their own project).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Watch {
    pub groups: Vec<String>,
    pub projects: Vec<String>,
}

impl Watch {
    /// The watched scope without the groups and projects another watched group already holds
    /// (GitLab lists a group's issues and MRs with its subgroups'): reads use only these, so
    /// no item is listed twice. Paths are compared case-insensitively, as GitLab does; a
    /// numeric id cannot be placed and is kept.
    pub fn outermost(&self) -> Watch {
        let mut groups: Vec<String> = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            if self.outer_group(i).is_none() {
                groups.push(g.clone());
            }
        }
        let mut projects: Vec<String> = Vec::new();
        for p in &self.projects {
            let in_group = self.groups.iter().any(|g| contains(g, p));
            if !in_group && !projects.iter().any(|k| same(k, p)) {
                projects.push(p.clone());
            }
        }
        Watch { groups, projects }
    }

    /// The watched group that holds group `i` (a parent, or an equal one listed earlier).
    fn outer_group(&self, i: usize) -> Option<&str> {
        let g = &self.groups[i];
        self.groups
            .iter()
            .enumerate()
            .find(|(j, h)| *j != i && contains(h, g) && (!same(h, g) || *j < i))
            .map(|(_, h)| h.as_str())
    }

    /// `policies check` warnings: each watched group or project that another watched group
    /// already holds, or that is listed twice (its items are counted once anyway: reads use
    /// the outer scope).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            if let Some(outer) = self.outer_group(i) {
                out.push(format!(
                    "routing.yml watch: group `{g}` is inside watched group `{outer}` (or the same); its items are read once, through `{outer}`"
                ));
            }
        }
        for (i, p) in self.projects.iter().enumerate() {
            if let Some(outer) = self.groups.iter().find(|g| contains(g, p)) {
                out.push(format!(
                    "routing.yml watch: project `{p}` is inside watched group `{outer}`; its items are read once, through `{outer}`"
                ));
            } else if self.projects[..i].iter().any(|k| same(k, p)) {
                out.push(format!("routing.yml watch: project `{p}` is listed twice"));
            }
        }
        out
    }
}

fn same(a: &str, b: &str) -> bool {
    a.trim_matches('/')
        .eq_ignore_ascii_case(b.trim_matches('/'))
}

/// Whether the group at path `group` holds `path` (itself, a subgroup or a project under it).
fn contains(group: &str, path: &str) -> bool {
    let g = group.trim_matches('/').to_ascii_lowercase();
    let p = path.trim_matches('/').to_ascii_lowercase();
    !g.is_empty()
        && !g.chars().all(|c| c.is_ascii_digit())
        && (p == g || p.strip_prefix(&g).is_some_and(|rest| rest.starts_with('/')))
}

/// Validated `routing.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub labels: Labels,
    pub roster: Roster,
    pub tracking: Tracking,
    pub watch: Watch,
    pub review_slo: ReviewSlo,
    pub site: Site,
    pub engagement_stalls: EngagementStalls,
    pub recognition: Recognition,
    pub bot_username: Option<String>,
}

pub(super) fn validate(doc: RoutingDoc) -> Result<Routing, Vec<Located>> {
    let mut errors = Vec::new();
    let reviewers: Vec<String> = doc
        .contributor_success
        .reviewers
        .value
        .iter()
        .map(|r| r.trim_start_matches('@').to_ascii_lowercase())
        .collect();
    if reviewers.is_empty() {
        errors.push(Located::at(
            &doc.contributor_success.reviewers,
            "the Contributor Success roster is empty: list at least one reviewer's GitLab username",
        ));
    }
    let mut sorted = reviewers.clone();
    sorted.sort();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        errors.push(Located::at(
            &doc.contributor_success.reviewers,
            format!("reviewer `{}` is listed twice", w[0]),
        ));
    }
    let labels = doc.labels;
    if labels.cocreate.trim().is_empty()
        || labels.community.trim().is_empty()
        || labels.case_study.trim().is_empty()
        || labels.spiff.trim().is_empty()
    {
        errors.push(Located::at(
            &doc.contributor_success.reviewers,
            "label names cannot be empty",
        ));
    }
    if doc.site.curated_labels.iter().any(|l| l.trim().is_empty()) {
        errors.push(Located::at(
            &doc.contributor_success.reviewers,
            "site.curated_labels: label names cannot be empty",
        ));
    }
    for (key, url) in [
        ("issue_list_url", &doc.site.issue_list_url),
        ("contribution_guide_url", &doc.site.contribution_guide_url),
    ] {
        if let Some(u) = url {
            if !(u.starts_with("https://") || u.starts_with("http://"))
                || url::Url::parse(u).is_err()
            {
                errors.push(Located::at(
                    &doc.contributor_success.reviewers,
                    format!("site.{key} `{u}` is not an http(s) URL: write the full address (https://…) or remove the line"),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(Routing {
            labels,
            roster: Roster {
                reviewers,
                lead: doc
                    .contributor_success
                    .lead
                    .map(|l| l.trim_start_matches('@').to_ascii_lowercase()),
                strategy: doc.contributor_success.strategy,
                skip_busy: doc.contributor_success.skip_busy,
            },
            tracking: doc.tracking,
            watch: doc.watch,
            review_slo: doc.review_slo,
            site: doc.site,
            engagement_stalls: doc.engagement_stalls,
            recognition: doc.recognition,
            bot_username: doc
                .bot_username
                .map(|b| b.trim_start_matches('@').to_ascii_lowercase()),
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod watch_tests {
    use super::Watch;

    fn w(groups: &[&str], projects: &[&str]) -> Watch {
        Watch {
            groups: groups.iter().map(|s| (*s).to_owned()).collect(),
            projects: projects.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn outermost_scopes_and_their_warnings() {
        // (watch, outermost, number of warnings)
        let cases = [
            (w(&["vendor"], &[]), w(&["vendor"], &[]), 0),
            (w(&["vendor"], &["vendor/product"]), w(&["vendor"], &[]), 1),
            (
                w(&["Vendor"], &["vendor/sub/product"]),
                w(&["Vendor"], &[]),
                1,
            ),
            (w(&["vendor", "vendor/sub"], &[]), w(&["vendor"], &[]), 1),
            (w(&["vendor/sub", "vendor"], &[]), w(&["vendor"], &[]), 1),
            (w(&["vendor", "vendor"], &[]), w(&["vendor"], &[]), 1),
            // `vendor-tools` is not inside `vendor`.
            (
                w(&["vendor"], &["vendor-tools/cli"]),
                w(&["vendor"], &["vendor-tools/cli"]),
                0,
            ),
            (w(&[], &["a/b", "a/b"]), w(&[], &["a/b"]), 1),
            // A numeric id cannot be placed: kept, no warning.
            (w(&["vendor"], &["42"]), w(&["vendor"], &["42"]), 0),
            (w(&[], &[]), w(&[], &[]), 0),
        ];
        for (watch, outer, warnings) in cases {
            assert_eq!(watch.outermost(), outer, "{watch:?}");
            assert_eq!(watch.warnings().len(), warnings, "{watch:?}");
        }
        let msg = &w(&["vendor"], &["vendor/product"]).warnings()[0];
        assert!(
            msg.contains("`vendor/product` is inside watched group `vendor`"),
            "{msg}"
        );
    }
}

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
}

impl Default for Tracking {
    fn default() -> Self {
        Self {
            project: "cocreate/engagements".into(),
            confidential: true,
        }
    }
}

/// Which projects and groups are in scope for sweeps (webhooks carry their own project).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Watch {
    pub groups: Vec<String>,
    pub projects: Vec<String>,
}

/// Validated `routing.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub labels: Labels,
    pub roster: Roster,
    pub tracking: Tracking,
    pub watch: Watch,
    pub review_slo: ReviewSlo,
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
    if labels.cocreate.trim().is_empty() || labels.community.trim().is_empty() {
        errors.push(Located::at(
            &doc.contributor_success.reviewers,
            "label names cannot be empty",
        ));
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
            bot_username: doc
                .bot_username
                .map(|b| b.trim_start_matches('@').to_ascii_lowercase()),
        })
    } else {
        Err(errors)
    }
}

//! Prospect scoring, pure: an account row and its issue/MR count in, an explained score and
//! tier out; ranking and pipeline coverage over all of them (weights, thresholds and tier rules
//! from `segmentation.yml`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::policy::{Organizations, Segmentation, Subscription};

/// One valid row of the account export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountRow {
    /// Line in the file (the header is line 1).
    pub line: u64,
    pub organization: String,
    pub slug: String,
    pub subscription: Subscription,
    pub seats: u64,
    pub industry: String,
    pub prior_oss: bool,
    pub usage_growth_percent: f64,
    pub relationship: u8,
    pub features_used: u64,
    pub tech_overlap: u8,
    pub gitlab_usernames: Vec<String>,
    pub issues_mrs: Option<u64>,
    /// On the SPIFF target account list (optional `spiff_target` column).
    pub spiff_target: bool,
}

/// A row (or the header) that cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}, column `{column}`: {message}")]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub message: String,
}

/// Where an organization's issue/MR count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistorySource {
    /// Read from GitLab list totals.
    Gitlab,
    /// The CSV's `issues_mrs` column (`--offline`).
    Csv,
    /// Nobody to count: no usernames known, or offline without the column.
    Unknown,
}

/// One criterion of one score, explained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    pub name: &'static str,
    /// The input, as a reader would say it.
    pub value: String,
    /// 0..1 of the weight earned.
    pub fraction: f64,
    pub weight: f64,
    pub points: f64,
}

/// One scored organization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub rank: usize,
    pub organization: String,
    pub slug: String,
    /// 0..100: points earned over the sum of the weights.
    pub score: f64,
    pub tier: u8,
    pub tier_reason: String,
    pub issues_mrs: u64,
    pub history_source: HistorySource,
    pub criteria: Vec<Criterion>,
    /// A SPIFF target account: flagged in the output, its prospect tracking issue labelled.
    pub spiff_target: bool,
}

pub(crate) fn capped(value: f64, full_at: f64) -> f64 {
    if full_at <= 0.0 {
        return 0.0;
    }
    (value / full_at).clamp(0.0, 1.0)
}

/// Scores one row with the organization's issue/MR count. Pure.
pub fn score_row(
    row: &AccountRow,
    issues_mrs: u64,
    source: HistorySource,
    policy: &Segmentation,
) -> Scored {
    let w = &policy.weights;
    let f = &policy.full_at;
    let preferred = policy.preferred_industry(&row.industry);
    let mut criteria = vec![
        (
            "issues_mrs",
            format!("{issues_mrs} public issues + MRs"),
            capped(issues_mrs as f64, f.issues_mrs),
            w.issues_mrs,
        ),
        (
            "features",
            format!("{} features used", row.features_used),
            capped(row.features_used as f64, f.features),
            w.features,
        ),
        (
            "subscription",
            row.subscription.name().to_owned(),
            policy.subscription_fraction(row.subscription),
            w.subscription,
        ),
        (
            "seats",
            format!("{} seats", row.seats),
            capped(row.seats as f64, f.seats),
            w.seats,
        ),
        (
            "industry",
            format!(
                "{}{}",
                row.industry,
                if preferred { " (preferred)" } else { "" }
            ),
            if preferred { 1.0 } else { 0.0 },
            w.industry,
        ),
        (
            "prior_oss",
            if row.prior_oss { "yes" } else { "no" }.to_owned(),
            if row.prior_oss { 1.0 } else { 0.0 },
            w.prior_oss,
        ),
        (
            "usage_growth",
            format!("{:+}%", row.usage_growth_percent),
            capped(row.usage_growth_percent, f.usage_growth_percent),
            w.usage_growth,
        ),
        (
            "relationship",
            format!("{}/5", row.relationship),
            f64::from(row.relationship.saturating_sub(1)) / 4.0,
            w.relationship,
        ),
        (
            "tech_overlap",
            format!("{}/5", row.tech_overlap),
            f64::from(row.tech_overlap) / 5.0,
            w.tech_overlap,
        ),
    ]
    .into_iter()
    .map(|(name, value, fraction, weight)| Criterion {
        name,
        value,
        fraction,
        weight,
        points: round1(fraction * weight),
    })
    .collect::<Vec<_>>();
    criteria.shrink_to_fit();
    let earned: f64 = criteria.iter().map(|c| c.fraction * c.weight).sum();
    let total = w.total();
    let score = if total > 0.0 {
        round1(earned / total * 100.0)
    } else {
        0.0
    };
    let (tier, tier_reason) = tier_of(row, issues_mrs, policy);
    Scored {
        rank: 0,
        organization: row.organization.clone(),
        slug: row.slug.clone(),
        score,
        tier,
        tier_reason,
        issues_mrs,
        history_source: source,
        criteria,
        spiff_target: row.spiff_target,
    }
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The action plan's tiers. Tier 1: strong issue/MR history and a Tier-1 subscription and
/// (when required) prior contribution experience. Tier 2: not Tier 1 but a clear tech-stack
/// overlap. Tier 3: the rest (future potential).
pub fn tier_of(row: &AccountRow, issues_mrs: u64, policy: &Segmentation) -> (u8, String) {
    let t = &policy.tiers;
    let strong = issues_mrs >= t.tier1_min_issues_mrs;
    let sub = t.tier1_subscriptions.contains(&row.subscription);
    let oss = row.prior_oss || !t.tier1_prior_oss;
    if strong && sub && oss {
        return (
            1,
            format!(
                "{issues_mrs} issues/MRs (≥ {}), {}, prior contribution",
                t.tier1_min_issues_mrs,
                row.subscription.name()
            ),
        );
    }
    let mut missing = Vec::new();
    if !strong {
        missing.push(format!(
            "{issues_mrs} issues/MRs < {}",
            t.tier1_min_issues_mrs
        ));
    }
    if !sub {
        missing.push(row.subscription.name().to_owned());
    }
    if !oss {
        missing.push("no prior contribution".to_owned());
    }
    let why_not_1 = missing.join(", ");
    if row.tech_overlap >= t.tier2_min_tech_overlap {
        (
            2,
            format!(
                "tech-stack overlap {}/5 (≥ {}); not Tier 1: {why_not_1}",
                row.tech_overlap, t.tier2_min_tech_overlap
            ),
        )
    } else {
        (
            3,
            format!(
                "future potential: tech-stack overlap {}/5 (< {}); not Tier 1: {why_not_1}",
                row.tech_overlap, t.tier2_min_tech_overlap
            ),
        )
    }
}

/// Ranks by score (highest first); ties go to the better tier, then the name
/// (case-insensitive), then the slug, so the order never depends on the file's order.
pub fn rank(mut scored: Vec<Scored>) -> Vec<Scored> {
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.tier.cmp(&b.tier))
            .then_with(|| {
                a.organization
                    .to_lowercase()
                    .cmp(&b.organization.to_lowercase())
            })
            .then_with(|| a.slug.cmp(&b.slug))
    });
    for (i, s) in scored.iter_mut().enumerate() {
        s.rank = i + 1;
    }
    scored
}

/// Does the pipeline of qualified prospects (Tier 1 and 2) cover the target (3x projects)?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub tier1: usize,
    pub tier2: usize,
    pub tier3: usize,
    /// Tier 1 + Tier 2.
    pub qualified: usize,
    /// `targets.prospects` (21 for 7 projects).
    pub needed: u32,
    pub projects_target: u32,
    pub covered: bool,
}

pub fn coverage(scored: &[Scored], policy: &Segmentation) -> Coverage {
    let count = |t: u8| scored.iter().filter(|s| s.tier == t).count();
    let (tier1, tier2, tier3) = (count(1), count(2), count(3));
    let needed = policy.targets.prospects;
    Coverage {
        tier1,
        tier2,
        tier3,
        qualified: tier1 + tier2,
        needed,
        projects_target: policy.targets.projects,
        covered: (tier1 + tier2) as u64 >= u64::from(needed),
    }
}

/// The whole result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    pub accounts: Vec<Scored>,
    /// How many ranks count as "top" (`targets.top`).
    pub top: usize,
    pub coverage: Coverage,
    /// Rows left out with --skip-bad-rows.
    pub skipped: Vec<RowError>,
    pub offline: bool,
    pub api_reads: u64,
}

/// Usernames to count per slug: the CSV's plus organizations.yml's for the same slug.
pub fn usernames_of(row: &AccountRow, orgs: &Organizations) -> Vec<String> {
    let mut set: BTreeSet<String> = row
        .gitlab_usernames
        .iter()
        .map(|u| u.to_ascii_lowercase())
        .collect();
    if let Some(org) = crate::domain::OrgSlug::parse(&row.slug)
        .ok()
        .and_then(|s| orgs.get(&s).cloned())
    {
        set.extend(org.usernames.iter().map(|u| u.to_ascii_lowercase()));
    }
    set.into_iter().collect()
}

/// Scores parsed rows. `counts` gives the GitLab count per slug (absent: offline / unknown).
pub fn build_report(
    rows: &[AccountRow],
    counts: &BTreeMap<String, u64>,
    offline: bool,
    skipped: Vec<RowError>,
    policy: &Segmentation,
    api_reads: u64,
) -> ScoreReport {
    let scored = rows
        .iter()
        .map(|r| {
            let (n, source) = match (counts.get(&r.slug), r.issues_mrs) {
                (Some(n), _) => (*n, HistorySource::Gitlab),
                (None, Some(n)) => (n, HistorySource::Csv),
                (None, None) => (0, HistorySource::Unknown),
            };
            score_row(r, n, source, policy)
        })
        .collect();
    let accounts = rank(scored);
    let coverage = coverage(&accounts, policy);
    ScoreReport {
        accounts,
        top: policy.targets.top as usize,
        coverage,
        skipped,
        offline,
        api_reads,
    }
}

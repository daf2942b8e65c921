//! `cocreate score --accounts FILE.csv`: ranks and tiers customers by the action plan's
//! segmentation criteria, with the weights, thresholds and tier rules of `segmentation.yml`.
//!
//! Pure parts: [`parse_accounts`] (CSV → rows, or errors naming row and column), [`score_row`]
//! and [`rank`] (rows + policy → ranked, explained scores), the renderers. The one IO part,
//! [`history_counts`], reads each organization's issue and MR totals from GitLab list headers:
//! two calls per username and watched scope, whatever the counts.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::gitlab::{scope_prefixes, Get, GitlabClient, GitlabError};
use crate::handlers::Live;
use crate::policy::{Organizations, Policies, Segmentation, Subscription, Watch};

/// The CSV columns, in the documented order; `required` ones must be present and non-empty.
pub const COLUMNS: &[(&str, bool, &str)] = &[
    ("organization", true, "the customer's name"),
    (
        "slug",
        false,
        "its slug in organizations.yml (lowercase, `-`); default: made from the name",
    ),
    ("subscription", true, "free, premium or ultimate"),
    ("seats", true, "seats bought, a whole number"),
    (
        "industry",
        true,
        "free text; Finance, Manufacturing, Telco (segmentation.yml) are preferred",
    ),
    (
        "prior_oss",
        true,
        "prior open source contribution experience: yes or no",
    ),
    (
        "usage_growth",
        true,
        "GitLab usage growth over the last year in percent, e.g. 25 or -5%",
    ),
    ("relationship", true, "relationship strength, 1 (weak) to 5"),
    ("features_used", true, "GitLab features in use, a count"),
    (
        "tech_overlap",
        true,
        "overlap with GitLab's tech stack, 0 (none) to 5",
    ),
    (
        "gitlab_usernames",
        false,
        "the customer's engineers on GitLab, separated by spaces or `;`",
    ),
    (
        "issues_mrs",
        false,
        "public issues + MRs, used with --offline (GitLab's count wins otherwise)",
    ),
    (
        "arr",
        false,
        "annual recurring revenue, e.g. 1250000 or 1,250,000 (not scored; `report --accounts` sums it)",
    ),
];

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
}

/// A row (or the header) that cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}, column `{column}`: {message}")]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub message: String,
}

/// Why the account file cannot be scored at all.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the account file has bad rows (pass --skip-bad-rows to score the rest):\n{}", list(.0))]
    BadRows(Vec<RowError>),
    #[error("the account file's header is unusable:\n{}", list(.0))]
    BadHeader(Vec<RowError>),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
}

fn list(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A slug made from a name: `Example Freight, Inc.` → `example-freight-inc`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses the export. Returns the rows that are valid and one error per bad cell (a bad row
/// may give several). Unknown extra columns are ignored; missing required columns are header
/// errors (line 1).
pub fn parse_accounts(text: &str) -> (Vec<AccountRow>, Vec<RowError>) {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut errors = Vec::new();
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
        Err(e) => {
            errors.push(RowError {
                line: 1,
                column: "(header)".into(),
                message: e.to_string(),
            });
            return (Vec::new(), errors);
        }
    };
    let index: BTreeMap<&str, usize> = COLUMNS
        .iter()
        .filter_map(|(name, _, _)| headers.iter().position(|h| h == name).map(|i| (*name, i)))
        .collect();
    for (name, required, _) in COLUMNS {
        if *required && !index.contains_key(name) {
            errors.push(RowError {
                line: 1,
                column: (*name).into(),
                message: format!(
                    "required column `{name}` is missing (header: {})",
                    headers.join(",")
                ),
            });
        }
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(RowError {
                    line,
                    column: "(row)".into(),
                    message: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        match parse_row(&record, &index, line) {
            Ok(r) => rows.push(r),
            Err(es) => errors.extend(es),
        }
    }
    (rows, errors)
}

/// Annual recurring revenue of each organization, by slug, from the `arr` column of an account
/// export (`report --accounts FILE`). Only `organization`, `slug` and `arr` are read; a row
/// with an empty `arr` gives no value. `Ok(None)` when the file has no `arr` column.
pub fn parse_arr(text: &str) -> Result<Option<BTreeMap<String, f64>>, ScoreError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header_error = |column: &str, message: String| {
        ScoreError::BadHeader(vec![RowError {
            line: 1,
            column: column.into(),
            message,
        }])
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| header_error("(header)", e.to_string()))?
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let at = |name: &str| headers.iter().position(|h| h == name);
    let Some(arr_at) = at("arr") else {
        return Ok(None);
    };
    let (org_at, slug_at) = (at("organization"), at("slug"));
    if org_at.is_none() && slug_at.is_none() {
        return Err(header_error(
            "organization",
            "an `arr` needs an `organization` or `slug` column to belong to".into(),
        ));
    }
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    line: e.position().map(|p| p.line()).unwrap_or(0),
                    column: "(row)".into(),
                    message: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
        let slug = match cell(slug_at) {
            "" => slugify(cell(org_at)),
            s => s.to_owned(),
        };
        let raw = cell(Some(arr_at));
        if raw.is_empty() || slug.is_empty() {
            continue;
        }
        let mut fail = |message: String| {
            errors.push(RowError {
                line,
                column: "arr".into(),
                message,
            })
        };
        match raw.replace(['_', ','], "").parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => {
                if out.insert(slug.clone(), v).is_some() {
                    fail(format!("`{slug}` has an ARR on an earlier row already"));
                }
            }
            _ => fail(format!(
                "`{raw}` is not an amount of 0 or more like 1250000 or 1,250,000"
            )),
        }
    }
    if errors.is_empty() {
        Ok(Some(out))
    } else {
        Err(ScoreError::BadRows(errors))
    }
}

fn parse_row(
    record: &csv::StringRecord,
    index: &BTreeMap<&str, usize>,
    line: u64,
) -> Result<AccountRow, Vec<RowError>> {
    let mut errors = Vec::new();
    let cell = |name: &str| -> &str {
        index
            .get(name)
            .and_then(|&i| record.get(i))
            .map(str::trim)
            .unwrap_or("")
    };
    let mut fail = |column: &str, message: String| {
        errors.push(RowError {
            line,
            column: column.into(),
            message,
        })
    };
    let required = |name: &str, fail: &mut dyn FnMut(&str, String)| -> Option<String> {
        let v = cell(name);
        if v.is_empty() {
            fail(name, "is empty; it is required".into());
            None
        } else {
            Some(v.to_owned())
        }
    };
    let organization = required("organization", &mut fail);
    let slug = match cell("slug") {
        "" => organization.as_deref().map(slugify),
        s => Some(s.to_owned()),
    };
    if let Some(s) = &slug {
        if let Err(m) = crate::domain::OrgSlug::parse(s) {
            fail("slug", m);
        }
    }
    let subscription = required("subscription", &mut fail).and_then(|v| {
        let s = Subscription::parse(&v);
        if s.is_none() {
            fail(
                "subscription",
                format!("`{v}` is not free, premium or ultimate"),
            );
        }
        s
    });
    let whole = |name: &str, fail: &mut dyn FnMut(&str, String)| -> Option<u64> {
        let v = required(name, fail)?;
        match v.replace(['_', ','], "").parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                fail(name, format!("`{v}` is not a whole number of 0 or more"));
                None
            }
        }
    };
    let scale = |name: &str, lo: u8, hi: u8, fail: &mut dyn FnMut(&str, String)| -> Option<u8> {
        let v = required(name, fail)?;
        match v.parse::<u8>() {
            Ok(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                fail(
                    name,
                    format!("`{v}` is not a whole number from {lo} to {hi}"),
                );
                None
            }
        }
    };
    let seats = whole("seats", &mut fail);
    let industry = required("industry", &mut fail);
    let prior_oss = required("prior_oss", &mut fail).and_then(|v| {
        let b = parse_bool(&v);
        if b.is_none() {
            fail("prior_oss", format!("`{v}` is not yes or no"));
        }
        b
    });
    let usage_growth_percent = required("usage_growth", &mut fail).and_then(|v| {
        match v.trim_end_matches('%').trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                fail(
                    "usage_growth",
                    format!("`{v}` is not a percentage like 25 or -5%"),
                );
                None
            }
        }
    });
    let relationship = scale("relationship", 1, 5, &mut fail);
    let features_used = whole("features_used", &mut fail);
    let tech_overlap = scale("tech_overlap", 0, 5, &mut fail);
    let gitlab_usernames: Vec<String> = cell("gitlab_usernames")
        .split([' ', ';', ','])
        .map(|u| u.trim().trim_start_matches('@'))
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    for u in &gitlab_usernames {
        if !crate::neutralize::is_plain_username(u) {
            fail(
                "gitlab_usernames",
                format!("`{u}` is not a GitLab username"),
            );
        }
    }
    let issues_mrs = match cell("issues_mrs") {
        "" => None,
        v => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                fail(
                    "issues_mrs",
                    format!("`{v}` is not a whole number of 0 or more"),
                );
                None
            }
        },
    };
    match (
        organization,
        slug,
        subscription,
        seats,
        industry,
        prior_oss,
        usage_growth_percent,
        relationship,
        features_used,
        tech_overlap,
    ) {
        (
            Some(organization),
            Some(slug),
            Some(subscription),
            Some(seats),
            Some(industry),
            Some(prior_oss),
            Some(usage_growth_percent),
            Some(relationship),
            Some(features_used),
            Some(tech_overlap),
        ) if errors.is_empty() => Ok(AccountRow {
            line,
            organization,
            slug,
            subscription,
            seats,
            industry,
            prior_oss,
            usage_growth_percent,
            relationship,
            features_used,
            tech_overlap,
            gitlab_usernames,
            issues_mrs,
        }),
        _ => Err(errors),
    }
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
}

fn capped(value: f64, full_at: f64) -> f64 {
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
    }
}

fn round1(x: f64) -> f64 {
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

/// Issues + MRs created by these users in the watched scope (the instance when none is set),
/// from list totals: 2 calls per user and scope.
pub async fn history_count(
    client: &GitlabClient,
    watch: &Watch,
    usernames: &[String],
) -> Result<u64, GitlabError> {
    let scopes = scope_prefixes(watch);
    let mut total = 0u64;
    for user in usernames {
        for scope in &scopes {
            for kind in ["issues", "merge_requests"] {
                let n = Get::new(format!("{scope}{kind}"))
                    .param("scope", "all")
                    .param("state", "all")
                    .param("author_username", user.clone())
                    .total(client)
                    .await
                    .map_err(|e| GitlabError::new(format!("counting the {kind} of `{user}`"), e))?;
                // GitLab leaves x-total out above 10,000: a lower bound is enough here.
                total += n.unwrap_or(10_000);
            }
        }
    }
    Ok(total)
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

/// Parses, counts (unless `live` is `None`: offline) and scores an account export.
pub async fn run(
    policies: &Policies,
    live: Option<&Live>,
    accounts_csv: &str,
    skip_bad_rows: bool,
) -> Result<ScoreReport, ScoreError> {
    let (rows, errors) = parse_accounts(accounts_csv);
    if errors.iter().any(|e| e.line == 1) {
        return Err(ScoreError::BadHeader(errors));
    }
    if !errors.is_empty() && !skip_bad_rows {
        return Err(ScoreError::BadRows(errors));
    }
    let mut counts = BTreeMap::new();
    let mut api_reads = 0;
    if let Some(live) = live {
        let spend = super::Spend::start(&live.client);
        let mut progress = super::Progress::new("score", rows.len());
        for r in &rows {
            let users = usernames_of(r, &policies.organizations);
            if !users.is_empty() && !counts.contains_key(&r.slug) {
                let n = history_count(&live.client, &policies.routing.watch, &users).await?;
                counts.insert(r.slug.clone(), n);
            }
            progress.tick();
        }
        api_reads = spend.so_far().reads;
    }
    Ok(build_report(
        &rows,
        &counts,
        live.is_none(),
        errors,
        &policies.segmentation,
        api_reads,
    ))
}

/// Markdown: the ranked table (top N), the per-criterion explanation, the coverage.
pub fn markdown(report: &ScoreReport) -> String {
    let mut out = String::from("# Co-Create customer segmentation\n\n");
    let c = &report.coverage;
    out.push_str(&format!(
        "**Pipeline coverage:** {} qualified prospects (Tier 1: {}, Tier 2: {}) for a target of {} (3x {} projects): **{}**.\n\n",
        c.qualified,
        c.tier1,
        c.tier2,
        c.needed,
        c.projects_target,
        if c.covered { "covered" } else { "not covered" }
    ));
    let shown = report.accounts.len().min(report.top);
    out.push_str(&format!(
        "## Top {shown} of {}\n\n| rank | organization | score | tier | issues + MRs | why this tier |\n|---:|---|---:|:---:|---:|---|\n",
        report.accounts.len()
    ));
    for s in report.accounts.iter().take(report.top) {
        let history = match s.history_source {
            HistorySource::Gitlab => s.issues_mrs.to_string(),
            HistorySource::Csv => format!("{} (csv)", s.issues_mrs),
            HistorySource::Unknown => "not known".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} |\n",
            s.rank,
            md_cell(&s.organization),
            s.score,
            s.tier,
            history,
            md_cell(&s.tier_reason)
        ));
    }
    out.push_str("\n## Scores explained (points per criterion)\n\n| organization |");
    let names: Vec<&str> = report
        .accounts
        .first()
        .map(|s| s.criteria.iter().map(|c| c.name).collect())
        .unwrap_or_default();
    for n in &names {
        out.push_str(&format!(" {n} |"));
    }
    out.push_str(" score |\n|---|");
    for _ in &names {
        out.push_str("---|");
    }
    out.push_str("---:|\n");
    for s in report.accounts.iter().take(report.top) {
        out.push_str(&format!("| {} |", md_cell(&s.organization)));
        for c in &s.criteria {
            out.push_str(&format!(
                " {:.1}/{} ({}) |",
                c.points,
                c.weight,
                md_cell(&c.value)
            ));
        }
        out.push_str(&format!(" {:.1} |\n", s.score));
    }
    if !report.skipped.is_empty() {
        out.push_str(&format!(
            "\n## Rows left out ({})\n\n",
            report.skipped.len()
        ));
        for e in &report.skipped {
            out.push_str(&format!("- {}\n", md_cell(&e.to_string())));
        }
    }
    out.push_str(&format!(
        "\n{} organizations scored{}; {} GitLab API reads.\n",
        report.accounts.len(),
        if report.offline {
            " offline (issue/MR counts from the CSV)"
        } else {
            ""
        },
        report.api_reads
    ));
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// CSV: one line per organization, ranked, with the points per criterion.
pub fn to_csv(report: &ScoreReport) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "rank".to_owned(),
        "organization".into(),
        "slug".into(),
        "score".into(),
        "tier".into(),
        "issues_mrs".into(),
    ];
    if let Some(first) = report.accounts.first() {
        header.extend(first.criteria.iter().map(|c| format!("points_{}", c.name)));
    }
    header.push("tier_reason".into());
    w.write_record(&header)?;
    for s in &report.accounts {
        let mut rec = vec![
            s.rank.to_string(),
            s.organization.clone(),
            s.slug.clone(),
            format!("{:.1}", s.score),
            s.tier.to_string(),
            s.issues_mrs.to_string(),
        ];
        rec.extend(s.criteria.iter().map(|c| format!("{:.1}", c.points)));
        rec.push(s.tier_reason.clone());
        w.write_record(&rec)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Opens `stage::prospect` tracking issues for the top `n` scored organizations that have no open
/// tracking issue (in a dry-run [`Mode`](crate::handlers::Mode), only plans). Returns what was (to be) written.
pub async fn open_prospects(
    ctx: &crate::handlers::Context,
    report: &ScoreReport,
    n: usize,
) -> Result<Vec<String>, crate::gitlab::ExecuteError> {
    use crate::decide::engagement::{plan_prospects, Prospect};
    let Some(live) = ctx.gitlab() else {
        return Ok(vec![]);
    };
    let policies = &ctx.policies;
    let labels = &policies.routing.labels;
    let project = &policies.routing.tracking.project;
    let open: Vec<crate::gitlab::ApiIssue> = crate::gitlab::Get::new(format!(
        "projects/{}/issues",
        crate::gitlab::path_id(project)
    ))
    .param("state", "opened")
    .param("labels", labels.engagement.clone())
    .all(&live.client)
    .await
    .map_err(|e| {
        crate::gitlab::GitlabError::new(format!("listing tracking issues in {project}"), e)
    })?;
    let tracked: Vec<String> = open
        .iter()
        .flat_map(|i| i.labels.iter())
        .filter_map(|l| l.strip_prefix(labels.org_prefix.as_str()))
        .map(str::to_owned)
        .collect();
    let ranked: Vec<Prospect<'_>> = report
        .accounts
        .iter()
        .map(|a| Prospect {
            slug: &a.slug,
            name: &a.organization,
            tier: a.tier,
            score: a.score,
        })
        .collect();
    let actions = plan_prospects(&ranked, n, &tracked, policies);
    ctx.executor().run(Some(&live.client), &actions).await?;
    Ok(actions.iter().map(|a| a.summary()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "organization,slug,subscription,seats,industry,prior_oss,usage_growth,relationship,features_used,tech_overlap,gitlab_usernames,issues_mrs\n";

    fn row(line: &str) -> AccountRow {
        let (rows, errors) = parse_accounts(&format!("{HEADER}{line}\n"));
        assert!(errors.is_empty(), "{errors:?}");
        rows.into_iter().next().expect("one row")
    }

    #[test]
    fn arr_is_read_by_slug() {
        let text = "organization,slug,arr,seats\nExample Aero,,\"1,250,000\",5\nExample Telco,telco-x,300000.5,1\nExample Bank,,,2\n";
        let arr = parse_arr(text).expect("ok").expect("arr column");
        assert_eq!(
            arr,
            BTreeMap::from([
                ("example-aero".to_owned(), 1_250_000.0),
                ("telco-x".to_owned(), 300_000.5),
            ])
        );
        // No `arr` column: nothing to sum.
        assert_eq!(parse_arr(HEADER).expect("ok"), None);
        let bad = parse_arr("organization,arr\nA,lots\nB,-5\nA,1\nA,2\n");
        let Err(ScoreError::BadRows(errors)) = bad else {
            panic!("{bad:?}")
        };
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5], "{errors:?}");
        assert!(errors[0].to_string().contains("line 2, column `arr`"));
    }

    #[test]
    fn slugs_are_made_from_names() {
        for (name, slug) in [
            ("Example Freight, Inc.", "example-freight-inc"),
            ("  ACME  ", "acme"),
            ("Zeta--Labs", "zeta-labs"),
        ] {
            assert_eq!(slugify(name), slug);
        }
    }

    #[test]
    fn bad_cells_name_line_and_column() {
        let text = format!(
            "{HEADER}Example A,,ultimate,100,Finance,yes,10,3,4,2,,\nExample B,,platinum,1x,Retail,maybe,fast,9,4,6,,\n,,free,1,Retail,no,0,1,0,0,,\n"
        );
        let (rows, errors) = parse_accounts(&text);
        assert_eq!(rows.len(), 1);
        let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "line 3, column `subscription`: `platinum` is not free, premium or ultimate",
                "line 3, column `seats`: `1x` is not a whole number of 0 or more",
                "line 3, column `prior_oss`: `maybe` is not yes or no",
                "line 3, column `usage_growth`: `fast` is not a percentage like 25 or -5%",
                "line 3, column `relationship`: `9` is not a whole number from 1 to 5",
                "line 3, column `tech_overlap`: `6` is not a whole number from 0 to 5",
                "line 4, column `organization`: is empty; it is required",
            ]
        );
    }

    #[test]
    fn missing_required_columns_are_header_errors() {
        let (rows, errors) = parse_accounts("organization,seats\nA,1\n");
        assert!(rows.is_empty());
        let cols: Vec<&str> = errors.iter().map(|e| e.column.as_str()).collect();
        assert_eq!(
            cols,
            vec![
                "subscription",
                "industry",
                "prior_oss",
                "usage_growth",
                "relationship",
                "features_used",
                "tech_overlap"
            ]
        );
        assert!(errors.iter().all(|e| e.line == 1));
    }

    #[test]
    fn scores_are_the_weighted_fractions_out_of_100() {
        let p = Segmentation::default();
        // (row, issues/MRs, expected score, expected tier)
        let cases = [
            // Everything full: 100.
            ("Max,,ultimate,5000,Telco,yes,80,5,12,5,,", 25, 100.0, 1),
            // Nothing: free (0), 0 seats, other industry, no OSS, shrinking, weak, 0 features, 0 overlap.
            ("Min,,free,0,Retail,no,-20,1,0,0,,", 0, 0.0, 3),
            // issues 10/20*20=10, features 5/10*10=5, premium .6*15=9, seats 1000/2000*10=5,
            // industry 10, oss 15, growth 25/50*5=2.5, relationship 3/5 → .5*10=5, overlap 3/5*5=3
            // = 64.5
            ("Mid,,premium,1000,finance,yes,25,3,5,3,,", 10, 64.5, 1),
            // Same without history and OSS: 64.5 - 10 - 15 = 39.5; overlap 3 → Tier 2.
            ("Mid2,,premium,1000,finance,no,25,3,5,3,,", 0, 39.5, 2),
        ];
        for (line, history, score, tier) in cases {
            let s = score_row(&row(line), history, HistorySource::Gitlab, &p);
            assert_eq!(s.score, score, "{line}: {:?}", s.criteria);
            assert_eq!(s.tier, tier, "{line}: {}", s.tier_reason);
            let sum: f64 = s.criteria.iter().map(|c| c.points).sum();
            assert!((sum - score).abs() < 0.5, "{line}");
        }
    }

    #[test]
    fn tiers_follow_the_action_plan() {
        let p = Segmentation::default();
        // (subscription, prior_oss, overlap, issues/MRs) → tier
        let cases = [
            ("ultimate", "yes", 0, 10, 1),
            ("premium", "yes", 0, 50, 1),
            ("free", "yes", 0, 50, 3), // not Premium/Ultimate, no overlap
            ("free", "yes", 4, 50, 2), // … but clear overlap
            ("ultimate", "no", 3, 50, 2), // no prior contribution
            ("ultimate", "yes", 2, 9, 3), // weak history, little overlap
            ("ultimate", "yes", 3, 9, 2),
        ];
        for (sub, oss, overlap, history, tier) in cases {
            let r = row(&format!("T,,{sub},10,Retail,{oss},0,3,1,{overlap},,"));
            let (got, why) = tier_of(&r, history, &p);
            assert_eq!(got, tier, "{sub} {oss} {overlap} {history}: {why}");
        }
    }

    #[test]
    fn ties_are_broken_by_tier_then_name_then_slug() {
        let p = Segmentation::default();
        let mk = |name: &str, slug: &str, score: f64, tier: u8| Scored {
            score,
            tier,
            slug: slug.into(),
            organization: name.into(),
            ..score_row(
                &row("X,,free,0,Retail,no,0,1,0,0,,"),
                0,
                HistorySource::Unknown,
                &p,
            )
        };
        let input = vec![
            mk("beta", "b", 50.0, 2),
            mk("Alpha", "a2", 50.0, 2),
            mk("alpha", "a1", 50.0, 2),
            mk("Zulu", "z", 50.0, 1),
            mk("Top", "t", 70.0, 3),
        ];
        let mut reversed = input.clone();
        reversed.reverse();
        for order in [input, reversed] {
            let ranked = rank(order);
            let slugs: Vec<&str> = ranked.iter().map(|s| s.slug.as_str()).collect();
            assert_eq!(slugs, vec!["t", "z", "a1", "a2", "b"]);
            assert_eq!(ranked[4].rank, 5);
        }
    }

    #[test]
    fn coverage_counts_tier_1_and_2_against_the_prospect_target() {
        let p = Segmentation::default();
        let mk = |tier: u8| Scored {
            tier,
            ..score_row(
                &row("X,,free,0,Retail,no,0,1,0,0,,"),
                0,
                HistorySource::Unknown,
                &p,
            )
        };
        for (tiers, qualified, covered) in [
            (vec![1; 21], 21, true),
            (vec![2; 20], 20, false),
            ([vec![1; 10], vec![2; 11], vec![3; 5]].concat(), 21, true),
            (vec![3; 40], 0, false),
        ] {
            let scored: Vec<Scored> = tiers.into_iter().map(mk).collect();
            let c = coverage(&scored, &p);
            assert_eq!((c.qualified, c.covered), (qualified, covered));
        }
    }

    #[test]
    fn csv_history_is_used_only_without_a_gitlab_count() {
        let p = Segmentation::default();
        let rows = vec![
            row("A,,free,0,Retail,no,0,1,0,0,,7"),
            row("B,,free,0,Retail,no,0,1,0,0,,7"),
            row("C,,free,0,Retail,no,0,1,0,0,,"),
        ];
        let counts = BTreeMap::from([("a".to_owned(), 3u64)]);
        let r = build_report(&rows, &counts, false, vec![], &p, 2);
        let by: BTreeMap<&str, (u64, HistorySource)> = r
            .accounts
            .iter()
            .map(|s| (s.slug.as_str(), (s.issues_mrs, s.history_source)))
            .collect();
        assert_eq!(by["a"], (3, HistorySource::Gitlab));
        assert_eq!(by["b"], (7, HistorySource::Csv));
        assert_eq!(by["c"], (0, HistorySource::Unknown));
    }
}

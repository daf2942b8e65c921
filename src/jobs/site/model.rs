//! What the pages show, from the facts and the report's metrics. Pure: no IO, no clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::charts::{self, Chart, ChartError};
use super::gather::{CuratedIssue, OpenMr};
use crate::decide::metrics::{compute, Facts, OrgLine, Window};
use crate::jobs::report::{distribution, Quarter, Report};
use crate::policy::Policies;

/// One row of the curated list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IssueRow {
    pub title: String,
    pub labels: Vec<String>,
    /// The labels one per line, for the filter.
    pub labels_key: String,
    pub project: String,
    pub reference: String,
    pub age_days: i64,
    pub opened: String,
    pub url: String,
}

/// The public page: nothing from the policies but the curated labels.
#[derive(Debug, Clone, Serialize)]
pub struct PublicPage {
    pub generated: String,
    pub curated_labels: Vec<String>,
    pub issues: Vec<IssueRow>,
}

pub fn public_page(policies: &Policies, issues: &[CuratedIssue], now: DateTime<Utc>) -> PublicPage {
    PublicPage {
        generated: now.format("%Y-%m-%d %H:%M UTC").to_string(),
        curated_labels: policies.routing.site.curated_labels.clone(),
        issues: issues
            .iter()
            .map(|i| IssueRow {
                title: i.title.clone(),
                labels: i.labels.clone(),
                labels_key: i.labels.join("\n"),
                project: i.project.clone(),
                reference: i.reference.clone(),
                age_days: (now - i.created_at).num_days().max(0),
                opened: i.created_at.format("%Y-%m-%d").to_string(),
                url: i.url_checked(),
            })
            .collect(),
    }
}

impl CuratedIssue {
    /// The link, only when it is http(s) (anything else becomes no link).
    fn url_checked(&self) -> String {
        safe_url(&self.web_url)
    }
}

fn safe_url(u: &str) -> String {
    if u.starts_with("https://") || u.starts_with("http://") {
        u.to_owned()
    } else {
        String::new()
    }
}

/// A metric against its target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetRow {
    pub metric: String,
    pub value: String,
    pub target: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MrRow {
    pub reference: String,
    pub title: String,
    pub url: String,
    pub org: String,
    pub reviewers: String,
    pub draft: bool,
    pub wait_days: i64,
    pub opened: String,
}

/// One organization's line, as text cells.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrgRow {
    pub slug: String,
    pub name: String,
    /// Whether it has a page (its slug is a valid organization slug).
    pub page: bool,
    pub cells: Vec<(String, String)>,
    pub open_mrs: Vec<MrRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub quarter: String,
    pub start: String,
    pub last_day: String,
    pub as_of: String,
    pub generated: String,
    pub targets: Vec<TargetRow>,
    pub activity: Vec<(String, String)>,
    pub charts: Vec<Chart>,
    pub open_mrs: Vec<MrRow>,
    pub orgs: Vec<OrgRow>,
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x}{unit}"))
        .unwrap_or_else(|| "—".to_owned())
}

fn date(d: Option<chrono::NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "—".to_owned())
}

/// The quarter before `q`.
pub fn previous(q: Quarter) -> Quarter {
    if q.quarter <= 1 {
        Quarter {
            fiscal_year: q.fiscal_year - 1,
            quarter: 4,
        }
    } else {
        Quarter {
            fiscal_year: q.fiscal_year,
            quarter: q.quarter - 1,
        }
    }
}

/// Contributing customers (organizations whose people opened at least one Co-Create MR in
/// the quarter, each once) for `q` and the three quarters before it, oldest first, computed
/// by the report's own [`compute`] over the same facts.
pub fn customers_per_quarter(
    facts: &Facts,
    q: Quarter,
    start_month: u32,
    now: DateTime<Utc>,
) -> Vec<(String, usize)> {
    let mut quarters = vec![q];
    for _ in 0..3 {
        let last = *quarters.last().unwrap_or(&q);
        quarters.push(previous(last));
    }
    quarters
        .into_iter()
        .rev()
        .map(|q| {
            let (start, end) = q.bounds(start_month);
            let w = Window::new(start, end, now);
            (q.label(), compute(facts, &w).contributing_customers)
        })
        .collect()
}

fn mr_row(m: &OpenMr, now: DateTime<Utc>) -> MrRow {
    MrRow {
        reference: m.reference.clone(),
        title: m.title.clone(),
        url: safe_url(&m.web_url),
        org: m.org.clone().unwrap_or_else(|| "—".to_owned()),
        reviewers: if m.reviewers.is_empty() {
            "none yet".to_owned()
        } else {
            m.reviewers
                .iter()
                .map(|r| format!("@{r}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        draft: m.draft,
        wait_days: (now - m.created_at).num_days().max(0),
        opened: m.created_at.format("%Y-%m-%d").to_string(),
    }
}

fn org_cells(l: &OrgLine) -> Vec<(String, String)> {
    vec![
        (
            "engagement".into(),
            l.engagement
                .map(|i| format!("#{i}"))
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "stage".into(),
            l.stage.clone().unwrap_or_else(|| "—".into()),
        ),
        ("contacted".into(), date(l.contacted)),
        ("project start".into(), date(l.started)),
        ("weeks to start".into(), opt(l.weeks_to_start, "")),
        ("completed".into(), date(l.completed)),
        ("Co-Create MRs (all time)".into(), l.mrs.to_string()),
        ("MRs in the quarter".into(), l.quarter_mrs.to_string()),
        ("post-project MRs".into(), l.post_project_mrs.to_string()),
        (
            "post-project issues".into(),
            l.post_project_issues.to_string(),
        ),
        (
            "post-project comments".into(),
            l.post_project_comments.to_string(),
        ),
        (
            "first response, median".into(),
            opt(l.first_response.median_hours, " h"),
        ),
        (
            "MRs waiting for a first response".into(),
            l.first_response.waiting.to_string(),
        ),
    ]
}

/// The dashboard and the organization pages.
pub fn dashboard(
    policies: &Policies,
    r: &Report,
    facts: &Facts,
    quarter: Quarter,
    open: &[OpenMr],
    now: DateTime<Utc>,
) -> Result<Dashboard, ChartError> {
    let m = &r.metrics;
    let t = &r.targets;
    let on_time = |w: Option<f64>| w.is_some_and(|w| w <= t.time_to_start_weeks_max);
    let targets = vec![
        TargetRow {
            metric: "pipeline (prospects)".into(),
            value: m.pipeline.to_string(),
            target: format!("{}+", t.prospects),
            met: m.pipeline as u64 >= u64::from(t.prospects),
        },
        TargetRow {
            metric: "projects initiated".into(),
            value: m.projects_initiated.to_string(),
            target: t.projects.to_string(),
            met: m.projects_initiated as u64 >= u64::from(t.projects),
        },
        TargetRow {
            metric: "conversion".into(),
            value: opt(m.conversion_percent, "%"),
            target: format!("{}%", t.conversion_percent),
            met: m
                .conversion_percent
                .is_some_and(|c| c >= t.conversion_percent),
        },
        TargetRow {
            metric: "time from contact to project start, median".into(),
            value: opt(m.median_weeks_to_start, " weeks"),
            target: format!(
                "{}–{} weeks",
                t.time_to_start_weeks_min, t.time_to_start_weeks_max
            ),
            met: on_time(m.median_weeks_to_start),
        },
    ];
    let fr = &m.first_response;
    let activity = vec![
        (
            "contributing customers".into(),
            m.contributing_customers.to_string(),
        ),
        ("initial meetings".into(), m.initial_meetings.to_string()),
        (
            "active conversations".into(),
            m.active_conversations.to_string(),
        ),
        (
            "time from contact to start, mean".into(),
            opt(m.mean_weeks_to_start, " weeks"),
        ),
        ("post-project MRs".into(), m.post_project_mrs.to_string()),
        (
            "post-project issues".into(),
            m.post_project_issues.to_string(),
        ),
        (
            "post-project comments".into(),
            m.post_project_comments.to_string(),
        ),
        (
            "organizations with multiple contributions".into(),
            format!(
                "{} of {} ({})",
                m.multi_contributing_organizations,
                m.contributing_organizations,
                opt(m.multiple_contributions_percent, "%")
            ),
        ),
        (
            "average time between contributions".into(),
            opt(m.mean_days_between_contributions, " days"),
        ),
        (
            "time to first response, median".into(),
            format!(
                "{} ({} answered, {} waiting)",
                opt(fr.median_hours, " h"),
                fr.answered,
                fr.waiting
            ),
        ),
        (
            "time to first response, mean".into(),
            opt(fr.mean_hours, " h"),
        ),
        ("open Co-Create MRs".into(), open.len().to_string()),
    ];
    let as_f = |v: Vec<(String, usize)>| -> Vec<(String, f64)> {
        v.into_iter().map(|(l, n)| (l, n as f64)).collect()
    };
    let charts = vec![
        charts::bars(
            "funnel",
            "Funnel by stage (the quarter's pipeline)",
            "engagements",
            as_f(m.funnel.clone()),
        )?,
        charts::bars(
            "time-to-start",
            "Time from contact to project start (weeks)",
            "projects",
            as_f(distribution(
                &m.weeks_to_start,
                t.time_to_start_weeks_min,
                t.time_to_start_weeks_max,
            )),
        )?,
        charts::bars(
            "post-project",
            "After the project: contributions in the quarter",
            "count",
            as_f(vec![
                ("MRs".into(), m.post_project_mrs),
                ("issues".into(), m.post_project_issues),
                ("comments".into(), m.post_project_comments),
            ]),
        )?,
        charts::bars(
            "customers",
            "Contributing customers per quarter",
            "organizations",
            as_f(customers_per_quarter(
                facts,
                quarter,
                policies.segmentation.fiscal_year_start_month,
                now,
            )),
        )?,
    ];
    let open_mrs: Vec<MrRow> = open.iter().map(|o| mr_row(o, now)).collect();
    let mut by_org: BTreeMap<&str, Vec<MrRow>> = BTreeMap::new();
    for o in open {
        if let Some(org) = &o.org {
            by_org.entry(org).or_default().push(mr_row(o, now));
        }
    }
    let orgs = m
        .organizations
        .iter()
        .map(|l| {
            let slug = crate::domain::OrgSlug::parse(&l.org).ok();
            OrgRow {
                slug: l.org.clone(),
                name: slug
                    .as_ref()
                    .and_then(|s| policies.organizations.get(s))
                    .map(|o| o.name.clone())
                    .unwrap_or_else(|| l.org.clone()),
                page: slug.is_some(),
                cells: org_cells(l),
                open_mrs: by_org.remove(l.org.as_str()).unwrap_or_default(),
            }
        })
        .collect();
    Ok(Dashboard {
        quarter: r.quarter.clone(),
        start: r.start.to_string(),
        last_day: r.end.pred_opt().unwrap_or(r.end).to_string(),
        as_of: r.as_of.format("%Y-%m-%d %H:%M UTC").to_string(),
        generated: now.format("%Y-%m-%d %H:%M UTC").to_string(),
        targets,
        activity,
        charts,
        open_mrs,
        orgs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarter_before() {
        let q = |fy, quarter| Quarter {
            fiscal_year: fy,
            quarter,
        };
        assert_eq!(previous(q(2026, 1)), q(2025, 4));
        assert_eq!(previous(q(2026, 3)), q(2026, 2));
    }
}

//! `cocreate report --quarter FY26Q1`: the action plan's success metrics for one fiscal quarter,
//! against the targets of `segmentation.yml`.
//!
//! Facts (IO, [`gather`]): the tracking issues (`Co-Create engagement` + `Co-Create org::<slug>`)
//! and, per issue, its resource label events (when each `Co-Create stage::…` label was added);
//! each organization's Co-Create MRs (its org label, in the watched scope); and, for
//! organizations whose project completed, the issues their people opened afterwards (list
//! totals) and the comments they wrote afterwards (totals of their `commented` contribution
//! events); the notes of each Co-Create MR opened in the quarter (time to first response).
//! Metrics ([`compute`]) are a pure function of those facts, the quarter and "now".
//!
//! Definitions (a stage is "reached" when it or any later stage label is first added):
//! - pipeline: engagements whose first stage label came before the quarter's end and that had
//!   not completed before its start;
//! - initial meetings scheduled: pipeline engagements that reached `meeting` in the quarter;
//! - active conversations: open engagements at `contacted` or `meeting` at the quarter's end
//!   (or now, if earlier);
//! - projects initiated: engagements that reached `active` in the quarter;
//! - time to start: from reaching `contacted` to reaching `active`, for those projects;
//! - conversion: projects initiated / pipeline;
//! - post-project activity: MRs and issues created, and comments written, in the quarter after
//!   the organization's engagement reached `completed` (comments counted by day: from the day
//!   after completion, anywhere the token can see, as GitLab's events API gives them);
//! - time to first response (CHAOSS): for each Co-Create MR opened in the quarter, from its
//!   creation to the first comment or approval by someone other than its author, bots
//!   excluded ([`crate::decide::response`]); median and mean in hours over the MRs that got a
//!   response, and a count of those still waiting;
//! - multiple contributions: organizations with two or more Co-Create MRs (created before the
//!   quarter's end) among those with at least one; time between contributions: the mean gap
//!   between an organization's consecutive MRs.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::decide::engagement::{IssueRef, STAGES};
use crate::decide::response::{self, Bots};
use crate::decide::Action;
use crate::domain::MrRef;
use crate::gitlab::{
    path_id, scope_prefixes, ApiIssue, ApiUserRef, ExecuteError, FactSource, Get, GitlabError,
};
use crate::handlers::{Context, Live};
use crate::policy::{Policies, Targets};

/// A fiscal quarter: `FY26Q1` is quarter 1 of fiscal year 2026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quarter {
    /// Four-digit fiscal year.
    pub fiscal_year: i32,
    /// 1-4.
    pub quarter: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("`{0}` is not a fiscal quarter like FY26Q1 or FY2026Q3")]
    BadQuarter(String),
    #[error("report needs GitLab: set GITLAB_TOKEN")]
    NoGitlab,
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

impl Quarter {
    /// `FY26Q1`, `fy2026q1`, `FY26-Q1`.
    pub fn parse(raw: &str) -> Result<Self, ReportError> {
        let bad = || ReportError::BadQuarter(raw.to_owned());
        let s = raw.trim().to_ascii_uppercase().replace(['-', ' '], "");
        let rest = s.strip_prefix("FY").ok_or_else(bad)?;
        let (year, q) = rest.split_once('Q').ok_or_else(bad)?;
        let quarter: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&quarter) || !year.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let fiscal_year = match year.len() {
            2 => 2000 + year.parse::<i32>().map_err(|_| bad())?,
            4 => year.parse::<i32>().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        Ok(Self {
            fiscal_year,
            quarter,
        })
    }

    /// The quarter a day falls in. FY N starts in `start_month` of calendar year N-1 when
    /// `start_month` > 1, and on January 1 of N when it is 1.
    pub fn containing(day: NaiveDate, start_month: u32) -> Self {
        let m = start_month.clamp(1, 12);
        let offset = (day.month() + 12 - m) % 12;
        let fiscal_year = if m == 1 || day.month() < m {
            day.year()
        } else {
            day.year() + 1
        };
        Self {
            fiscal_year,
            quarter: offset / 3 + 1,
        }
    }

    /// First day and the day after the last day.
    pub fn bounds(self, start_month: u32) -> (NaiveDate, NaiveDate) {
        let m = start_month.clamp(1, 12);
        let first_year = if m == 1 {
            self.fiscal_year
        } else {
            self.fiscal_year - 1
        };
        let fy_start = NaiveDate::from_ymd_opt(first_year, m, 1).unwrap_or(NaiveDate::MIN);
        let start = fy_start
            .checked_add_months(Months::new(3 * (self.quarter.clamp(1, 4) - 1)))
            .unwrap_or(fy_start);
        let end = start.checked_add_months(Months::new(3)).unwrap_or(start);
        (start, end)
    }

    pub fn label(self) -> String {
        format!("FY{:02}Q{}", self.fiscal_year.rem_euclid(100), self.quarter)
    }
}

// ---------------------------------------------------------------------------------------------
// Facts
// ---------------------------------------------------------------------------------------------

/// One tracking issue: its organization and when each stage label was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Engagement {
    pub iid: u64,
    pub org: String,
    pub open: bool,
    /// (when, index in [`STAGES`]) of every stage label added, oldest first.
    pub stage_added: Vec<(DateTime<Utc>, usize)>,
}

impl Engagement {
    /// When the engagement first reached `stage` (or a later one).
    pub fn reached(&self, stage: usize) -> Option<DateTime<Utc>> {
        self.stage_added
            .iter()
            .filter(|(_, s)| *s >= stage)
            .map(|(t, _)| *t)
            .min()
    }

    /// The stage at `t`: the last stage label added at or before `t`.
    pub fn stage_at(&self, t: DateTime<Utc>) -> Option<usize> {
        self.stage_added
            .iter()
            .filter(|(at, _)| *at <= t)
            .max_by_key(|(at, _)| *at)
            .map(|(_, s)| *s)
    }

    fn first(&self) -> Option<DateTime<Utc>> {
        self.stage_added.iter().map(|(t, _)| *t).min()
    }
}

/// Everything [`compute`] needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub engagements: Vec<Engagement>,
    /// Creation times of each organization's Co-Create MRs.
    pub mrs: BTreeMap<String, Vec<DateTime<Utc>>>,
    /// Issues the organization's people opened in the quarter after completion.
    pub post_project_issues: BTreeMap<String, u64>,
    /// Comments the organization's people wrote in the quarter after completion.
    pub post_project_comments: BTreeMap<String, u64>,
    /// Each organization's Co-Create MRs opened in the quarter, with their first response.
    pub responses: BTreeMap<String, Vec<FirstResponse>>,
    /// Organizations of organizations.yml (listed even without any fact).
    pub organizations: Vec<String>,
}

/// One Co-Create MR opened in the quarter and when it first got a response (if it has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FirstResponse {
    pub created_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
}

/// Time to first response over some MRs: median and mean hours of those answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseTimes {
    pub answered: usize,
    pub waiting: usize,
    pub median_hours: Option<f64>,
    pub mean_hours: Option<f64>,
}

impl ResponseTimes {
    fn of<'a>(mrs: impl IntoIterator<Item = &'a FirstResponse>, as_of: DateTime<Utc>) -> Self {
        let mut hours = Vec::new();
        let mut waiting = 0;
        for mr in mrs {
            match mr.responded_at.filter(|t| *t <= as_of) {
                Some(t) => hours.push(response::hours(mr.created_at, t)),
                None => waiting += 1,
            }
        }
        hours.sort_by(f64::total_cmp);
        ResponseTimes {
            answered: hours.len(),
            waiting,
            median_hours: median(&hours),
            mean_hours: mean(&hours),
        }
    }
}

pub fn stage_index(name: &str) -> Option<usize> {
    STAGES.iter().position(|s| *s == name)
}

const CONTACTED: usize = 1;
const MEETING: usize = 2;
const ACTIVE: usize = 5;
const COMPLETED: usize = 6;

// ---------------------------------------------------------------------------------------------
// Metrics (pure)
// ---------------------------------------------------------------------------------------------

/// One organization's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrgLine {
    pub org: String,
    /// Stage at the quarter's end (or now), `None` without an engagement.
    pub stage: Option<String>,
    pub contacted: Option<NaiveDate>,
    pub started: Option<NaiveDate>,
    pub weeks_to_start: Option<f64>,
    pub completed: Option<NaiveDate>,
    /// Co-Create MRs created before the quarter's end.
    pub mrs: usize,
    pub post_project_mrs: usize,
    pub post_project_issues: u64,
    pub post_project_comments: u64,
    /// Time to first response of its Co-Create MRs opened in the quarter.
    pub first_response: ResponseTimes,
}

/// The quarter's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub pipeline: usize,
    pub initial_meetings: usize,
    pub active_conversations: usize,
    pub projects_initiated: usize,
    pub conversion_percent: Option<f64>,
    /// Weeks from contact to project start, per project initiated, ascending.
    pub weeks_to_start: Vec<f64>,
    pub median_weeks_to_start: Option<f64>,
    pub mean_weeks_to_start: Option<f64>,
    /// (stage, pipeline engagements that reached it by the quarter's end).
    pub funnel: Vec<(String, usize)>,
    pub post_project_organizations: usize,
    pub post_project_mrs: usize,
    pub post_project_issues: u64,
    pub post_project_comments: u64,
    /// Time to first response of every Co-Create MR opened in the quarter.
    pub first_response: ResponseTimes,
    pub contributing_organizations: usize,
    pub multi_contributing_organizations: usize,
    pub multiple_contributions_percent: Option<f64>,
    pub mean_days_between_contributions: Option<f64>,
    pub organizations: Vec<OrgLine>,
}

fn weeks(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    round1((to - from).num_seconds() as f64 / (7.0 * 86_400.0))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some(round1((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0)),
    }
}

pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| round1(xs.iter().sum::<f64>() / xs.len() as f64))
}

fn percent(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| round1(part as f64 * 100.0 / whole as f64))
}

/// Midnight UTC of a day.
pub fn at_midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The metrics of the quarter `[start, end)` as of `now`. Pure.
pub fn compute(facts: &Facts, start: NaiveDate, end: NaiveDate, now: DateTime<Utc>) -> Metrics {
    let (start, end) = (at_midnight(start), at_midnight(end));
    let as_of = now.min(end);
    let in_q = |t: DateTime<Utc>| start <= t && t < end;
    let pipeline: Vec<&Engagement> = facts
        .engagements
        .iter()
        .filter(|e| e.first().is_some_and(|t| t < end))
        .filter(|e| e.reached(COMPLETED).is_none_or(|c| c >= start))
        .collect();
    let initial_meetings = pipeline
        .iter()
        .filter(|e| e.reached(MEETING).is_some_and(in_q))
        .count();
    let active_conversations = facts
        .engagements
        .iter()
        .filter(|e| e.open && matches!(e.stage_at(as_of), Some(CONTACTED | MEETING)))
        .count();
    let started: Vec<&Engagement> = facts
        .engagements
        .iter()
        .filter(|e| e.reached(ACTIVE).is_some_and(in_q))
        .collect();
    let mut weeks_to_start: Vec<f64> = started
        .iter()
        .filter_map(|e| Some(weeks(e.reached(CONTACTED)?, e.reached(ACTIVE)?)))
        .collect();
    weeks_to_start.sort_by(f64::total_cmp);
    let funnel = STAGES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = pipeline
                .iter()
                .filter(|e| e.reached(i).is_some_and(|t| t < end))
                .count();
            ((*s).to_owned(), n)
        })
        .collect();

    // Organizations: policy ones, those with an engagement, those with MRs.
    let mut orgs: BTreeSet<String> = facts.organizations.iter().cloned().collect();
    orgs.extend(facts.engagements.iter().map(|e| e.org.clone()));
    orgs.extend(facts.mrs.keys().cloned());
    orgs.extend(facts.responses.keys().cloned());
    let mut lines = Vec::new();
    let mut gaps = Vec::new();
    for org in &orgs {
        // The organization's most advanced engagement speaks for it.
        let e = facts
            .engagements
            .iter()
            .filter(|e| &e.org == org)
            .max_by_key(|e| (e.stage_at(as_of), e.iid));
        let mut mrs: Vec<DateTime<Utc>> = facts
            .mrs
            .get(org)
            .map(|v| v.iter().copied().filter(|t| *t < end).collect())
            .unwrap_or_default();
        mrs.sort();
        gaps.extend(
            mrs.windows(2)
                .map(|w| (w[1] - w[0]).num_seconds() as f64 / 86_400.0),
        );
        let completed = e.and_then(|e| e.reached(COMPLETED)).filter(|c| *c < as_of);
        let post_project_mrs = completed
            .map(|c| mrs.iter().filter(|t| **t >= c.max(start)).count())
            .unwrap_or(0);
        let contacted = e.and_then(|e| e.reached(CONTACTED));
        let active = e.and_then(|e| e.reached(ACTIVE)).filter(|t| *t < end);
        lines.push(OrgLine {
            org: org.clone(),
            stage: e
                .and_then(|e| e.stage_at(as_of))
                .map(|s| STAGES[s].to_owned()),
            contacted: contacted.map(|t| t.date_naive()),
            started: active.map(|t| t.date_naive()),
            weeks_to_start: contacted.zip(active).map(|(c, a)| weeks(c, a)),
            completed: completed.map(|t| t.date_naive()),
            mrs: mrs.len(),
            post_project_mrs,
            post_project_issues: if completed.is_some() {
                facts.post_project_issues.get(org).copied().unwrap_or(0)
            } else {
                0
            },
            post_project_comments: if completed.is_some() {
                facts.post_project_comments.get(org).copied().unwrap_or(0)
            } else {
                0
            },
            first_response: ResponseTimes::of(quarter_mrs(facts, org, start, end), now),
        });
    }
    let contributing = lines.iter().filter(|l| l.mrs >= 1).count();
    let multi = lines.iter().filter(|l| l.mrs >= 2).count();
    Metrics {
        pipeline: pipeline.len(),
        initial_meetings,
        active_conversations,
        projects_initiated: started.len(),
        conversion_percent: percent(started.len(), pipeline.len()),
        median_weeks_to_start: median(&weeks_to_start),
        mean_weeks_to_start: mean(&weeks_to_start),
        weeks_to_start,
        funnel,
        post_project_organizations: lines.iter().filter(|l| l.completed.is_some()).count(),
        post_project_mrs: lines.iter().map(|l| l.post_project_mrs).sum(),
        post_project_issues: lines.iter().map(|l| l.post_project_issues).sum(),
        post_project_comments: lines.iter().map(|l| l.post_project_comments).sum(),
        first_response: ResponseTimes::of(
            orgs.iter()
                .flat_map(|org| quarter_mrs(facts, org, start, end)),
            now,
        ),
        contributing_organizations: contributing,
        multi_contributing_organizations: multi,
        multiple_contributions_percent: percent(multi, contributing),
        mean_days_between_contributions: mean(&gaps),
        organizations: lines,
    }
}

/// The organization's Co-Create MRs opened in `[start, end)`.
fn quarter_mrs<'f>(
    facts: &'f Facts,
    org: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> impl Iterator<Item = &'f FirstResponse> {
    facts
        .responses
        .get(org)
        .into_iter()
        .flatten()
        .filter(move |r| start <= r.created_at && r.created_at < end)
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// What `--publish` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    /// `created`, `updated` or `unchanged` (`would create`/`would update` in a dry run).
    pub outcome: String,
    pub issue: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub quarter: String,
    pub start: NaiveDate,
    /// The day after the quarter's last day.
    pub end: NaiveDate,
    pub as_of: DateTime<Utc>,
    pub targets: Targets,
    pub metrics: Metrics,
    /// Metrics this version cannot measure, and why.
    pub not_measured: Vec<String>,
    pub api_reads: u64,
    pub api_writes: u64,
    pub elapsed_ms: u128,
    pub dashboard: Option<Dashboard>,
}

pub fn not_measured() -> Vec<String> {
    Vec::new()
}

#[derive(Deserialize)]
struct ApiLabelEvent {
    created_at: DateTime<Utc>,
    #[serde(default)]
    label: Option<ApiLabelName>,
    action: String,
}

#[derive(Deserialize)]
struct ApiLabelName {
    name: String,
}

#[derive(Deserialize)]
struct ApiMrBrief {
    iid: u64,
    project_id: u64,
    created_at: DateTime<Utc>,
    author: ApiUserRef,
}

fn iso(d: NaiveDate) -> String {
    format!("{d}T00:00:00Z")
}

/// Reads the facts. Cost: the pages of the tracking-issue list, one label-event page per
/// tracking issue, one MR-list page per organization and watched scope, one notes page per
/// Co-Create MR opened in the quarter, and, for each person of an organization whose project
/// completed, one issue total per scope and one comment total.
pub async fn gather(
    live: &Live,
    policies: &Policies,
    bot: &str,
    start: NaiveDate,
    end: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Facts, GitlabError> {
    let client = &live.client;
    let labels = &policies.routing.labels;
    let project = &policies.routing.tracking.project;
    let issues: Vec<ApiIssue> = Get::new(format!("projects/{}/issues", path_id(project)))
        .param("labels", labels.engagement.clone())
        .param("state", "all")
        .param("scope", "all")
        .all(client)
        .await
        .map_err(|e| GitlabError::new(format!("listing the tracking issues in {project}"), e))?;
    let mut engagements = Vec::new();
    for issue in issues {
        let Some(org) = issue
            .labels
            .iter()
            .find_map(|l| l.strip_prefix(&labels.org_prefix))
        else {
            continue;
        };
        let events: Vec<ApiLabelEvent> = Get::new(format!(
            "projects/{}/issues/{}/resource_label_events",
            path_id(project),
            issue.iid
        ))
        .all(client)
        .await
        .map_err(|e| {
            GitlabError::new(
                format!(
                    "reading the label history of {}",
                    IssueRef {
                        project: project.clone(),
                        iid: issue.iid
                    }
                ),
                e,
            )
        })?;
        let mut stage_added: Vec<(DateTime<Utc>, usize)> = events
            .iter()
            .filter(|e| e.action == "add")
            .filter_map(|e| {
                let name = e.label.as_ref()?.name.strip_prefix(&labels.stage_prefix)?;
                Some((e.created_at, stage_index(name)?))
            })
            .collect();
        stage_added.sort();
        engagements.push(Engagement {
            iid: issue.iid,
            org: org.to_owned(),
            open: issue.state == "opened",
            stage_added,
        });
    }
    let organizations: Vec<String> = policies
        .organizations
        .all()
        .iter()
        .map(|o| o.slug.to_string())
        .collect();
    let mut slugs: BTreeSet<String> = organizations.iter().cloned().collect();
    slugs.extend(engagements.iter().map(|e| e.org.clone()));
    let scopes = scope_prefixes(&policies.routing.watch);
    let bots = Bots {
        ours: bot,
        configured: &policies.routing.review_slo.bots,
    };
    let (q_start, q_end) = (at_midnight(start), at_midnight(end));
    let mut mrs = BTreeMap::new();
    let mut responses = BTreeMap::new();
    for slug in &slugs {
        let mut seen = BTreeSet::new();
        let mut times = Vec::new();
        let mut firsts = Vec::new();
        for scope in &scopes {
            let list: Vec<ApiMrBrief> = Get::new(format!("{scope}merge_requests"))
                .param("scope", "all")
                .param("state", "all")
                .param("labels", format!("{}{slug}", labels.org_prefix))
                .param("created_before", iso(end))
                .all(client)
                .await
                .map_err(|e| GitlabError::new(format!("listing the MRs of `{slug}`"), e))?;
            for mr in list {
                // A project inside a watched group is listed by both scopes.
                if !seen.insert((mr.project_id, mr.iid)) {
                    continue;
                }
                times.push(mr.created_at);
                if q_start <= mr.created_at && mr.created_at < q_end {
                    firsts.push(first_response(live, &mr, bots).await?);
                }
            }
        }
        mrs.insert(slug.clone(), times);
        responses.insert(slug.clone(), firsts);
    }
    // Issues opened after completion: only organizations whose project completed.
    let as_of = now.min(at_midnight(end));
    let mut post_project_issues = BTreeMap::new();
    let mut post_project_comments = BTreeMap::new();
    for slug in &slugs {
        let completed = engagements
            .iter()
            .filter(|e| &e.org == slug)
            .filter_map(|e| e.reached(COMPLETED))
            .filter(|c| *c < as_of)
            .min();
        let Some(completed) = completed else { continue };
        let Some(org) = crate::domain::OrgSlug::parse(slug)
            .ok()
            .and_then(|s| policies.organizations.get(&s).cloned())
        else {
            continue;
        };
        let after = completed.max(at_midnight(start));
        // The events API filters by whole days, `after` exclusive: count from the quarter's
        // first day, or from the day after completion when that came later.
        let after_day = if completed < at_midnight(start) {
            start.pred_opt().unwrap_or(start)
        } else {
            completed.date_naive()
        };
        let mut comments = 0;
        for user in &org.usernames {
            let total = Get::new(format!("users/{}/events", path_id(user)))
                .param("action", "commented")
                .param("after", after_day.to_string())
                .param("before", end.to_string())
                .total(client)
                .await
                .map_err(|e| GitlabError::new(format!("counting the comments of `{user}`"), e));
            comments += match total {
                Ok(n) => n.unwrap_or(10_000),
                // A username of organizations.yml that GitLab does not know wrote nothing.
                Err(e) if e.is_not_found() => {
                    tracing::warn!(user = %user, org = %slug, "no such GitLab user; check organizations.yml");
                    0
                }
                Err(e) => return Err(e),
            };
        }
        post_project_comments.insert(slug.clone(), comments);
        let mut n = 0;
        for user in &org.usernames {
            for scope in &scopes {
                n += Get::new(format!("{scope}issues"))
                    .param("scope", "all")
                    .param("state", "all")
                    .param("author_username", user.clone())
                    .param("created_after", after.to_rfc3339())
                    .param("created_before", iso(end))
                    .total(client)
                    .await
                    .map_err(|e| GitlabError::new(format!("counting the issues of `{user}`"), e))?
                    .unwrap_or(10_000);
            }
        }
        post_project_issues.insert(slug.clone(), n);
    }
    Ok(Facts {
        engagements,
        mrs,
        post_project_issues,
        post_project_comments,
        responses,
        organizations,
    })
}

/// Reads an MR's notes (oldest first) and finds its first response.
async fn first_response(
    live: &Live,
    mr: &ApiMrBrief,
    bots: Bots<'_>,
) -> Result<FirstResponse, GitlabError> {
    let mr_ref = MrRef {
        project_id: mr.project_id,
        iid: mr.iid,
    };
    let notes = live.facts.mr_notes(&live.client, mr_ref).await?;
    let activity = FactSource::activity_of(&notes);
    Ok(FirstResponse {
        created_at: mr.created_at,
        responded_at: response::first_response(mr.created_at, &mr.author.username, &activity, bots),
    })
}

/// Gathers the facts and computes the quarter's report.
pub async fn run(ctx: &Context, quarter: Quarter) -> Result<Report, ReportError> {
    let live = ctx.gitlab.as_ref().ok_or(ReportError::NoGitlab)?;
    let spend = super::Spend::start(&live.client);
    let seg = &ctx.policies.segmentation;
    let (start, end) = quarter.bounds(seg.fiscal_year_start_month);
    let now = ctx.clock.now();
    let facts = gather(live, &ctx.policies, &ctx.bot_username, start, end, now).await?;
    let metrics = compute(&facts, start, end, now);
    let spent = spend.so_far();
    Ok(Report {
        quarter: quarter.label(),
        start,
        end,
        as_of: now.min(at_midnight(end)),
        targets: seg.targets.clone(),
        metrics,
        not_measured: not_measured(),
        api_reads: spent.reads,
        api_writes: spent.writes,
        elapsed_ms: spent.elapsed_ms,
        dashboard: None,
    })
}

/// `26.5 h (12 MRs answered, 2 waiting)`.
fn response_cell(t: &ResponseTimes, hours: Option<f64>) -> String {
    format!(
        "{} ({} MRs answered, {} waiting)",
        opt(hours, " h"),
        t.answered,
        t.waiting
    )
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x}{unit}"))
        .unwrap_or_else(|| "—".to_owned())
}

fn check(ok: bool) -> &'static str {
    if ok {
        "✅"
    } else {
        "❌"
    }
}

/// The time-to-start buckets around the target: (label, count).
pub fn distribution(weeks: &[f64], min: f64, max: f64) -> Vec<(String, usize)> {
    let lo = (min - 4.0).max(0.0);
    let hi = max + 4.0;
    let bucket = |w: f64| -> usize {
        if w < lo {
            0
        } else if w < min {
            1
        } else if w <= max {
            2
        } else if w <= hi {
            3
        } else {
            4
        }
    };
    let labels = [
        format!("< {lo}"),
        format!("{lo}-{min}"),
        format!("{min}-{max} target"),
        format!("{max}-{hi}"),
        format!("> {hi}"),
    ];
    labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| (label, weeks.iter().filter(|w| bucket(**w) == i).count()))
        .collect()
}

/// The dashboard body: everything but the cost line (so identical data gives an identical
/// body and the dashboard issue is not rewritten).
pub fn markdown_body(r: &Report) -> String {
    let m = &r.metrics;
    let t = &r.targets;
    let last_day = r.end.pred_opt().unwrap_or(r.end);
    let mut out = format!(
        "# Co-Create program report {}\n\n{} to {} (as of {}).\n\n",
        r.quarter,
        r.start,
        last_day,
        r.as_of.format("%Y-%m-%d %H:%M UTC")
    );
    out.push_str(
        "## Against the targets\n\n| metric | value | target | |\n|---|---:|---:|:---:|\n",
    );
    out.push_str(&format!(
        "| pipeline (prospects) | {} | {} (3x projects) | {} |\n",
        m.pipeline,
        t.prospects,
        check(m.pipeline as u64 >= u64::from(t.prospects))
    ));
    out.push_str(&format!(
        "| projects initiated | {} | {} | {} |\n",
        m.projects_initiated,
        t.projects,
        check(m.projects_initiated as u64 >= u64::from(t.projects))
    ));
    out.push_str(&format!(
        "| conversion | {} | {}% | {} |\n",
        opt(m.conversion_percent, "%"),
        t.conversion_percent,
        check(
            m.conversion_percent
                .is_some_and(|c| c >= t.conversion_percent)
        )
    ));
    let on_time = |w: Option<f64>| w.is_some_and(|w| w <= t.time_to_start_weeks_max);
    out.push_str(&format!(
        "| time from contact to project start, median | {} | {}-{} weeks | {} |\n",
        opt(m.median_weeks_to_start, " weeks"),
        t.time_to_start_weeks_min,
        t.time_to_start_weeks_max,
        check(on_time(m.median_weeks_to_start))
    ));
    out.push_str(&format!(
        "| time from contact to project start, mean | {} | {}-{} weeks | {} |\n\n",
        opt(m.mean_weeks_to_start, " weeks"),
        t.time_to_start_weeks_min,
        t.time_to_start_weeks_max,
        check(on_time(m.mean_weeks_to_start))
    ));
    out.push_str("## Activity\n\n| metric | value |\n|---|---:|\n");
    for (k, v) in [
        ("initial meetings scheduled", m.initial_meetings.to_string()),
        (
            "active customer conversations (contacted or meeting, open)",
            m.active_conversations.to_string(),
        ),
        (
            "post-project MRs (after completion, in the quarter)",
            m.post_project_mrs.to_string(),
        ),
        (
            "post-project issues (after completion, in the quarter)",
            m.post_project_issues.to_string(),
        ),
        (
            "post-project comments (from the day after completion, in the quarter)",
            m.post_project_comments.to_string(),
        ),
        (
            "organizations with multiple contributions",
            format!(
                "{} of {} ({})",
                m.multi_contributing_organizations,
                m.contributing_organizations,
                opt(m.multiple_contributions_percent, "%")
            ),
        ),
        (
            "average time between contributions",
            opt(m.mean_days_between_contributions, " days"),
        ),
        (
            "time to first response on Co-Create MRs opened in the quarter (CHAOSS), median",
            response_cell(&m.first_response, m.first_response.median_hours),
        ),
        (
            "time to first response, mean",
            response_cell(&m.first_response, m.first_response.mean_hours),
        ),
    ] {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out.push_str("\n## Funnel\n\n```mermaid\nflowchart LR\n");
    for (i, (stage, n)) in m.funnel.iter().enumerate() {
        out.push_str(&format!("  s{i}[\"{stage}: {n}\"]\n"));
    }
    let chain: Vec<String> = (0..m.funnel.len()).map(|i| format!("s{i}")).collect();
    if !chain.is_empty() {
        out.push_str(&format!("  {}\n", chain.join(" --> ")));
    }
    out.push_str("```\n\n## Time from contact to project start\n\n");
    let dist = distribution(
        &m.weeks_to_start,
        t.time_to_start_weeks_min,
        t.time_to_start_weeks_max,
    );
    let top = dist.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    out.push_str(&format!(
        "```mermaid\nxychart-beta\n  title \"Projects by weeks from contact to start\"\n  x-axis [{}]\n  y-axis \"projects\" 0 --> {top}\n  bar [{}]\n```\n\n",
        dist.iter()
            .map(|(l, _)| format!("\"{l}\""))
            .collect::<Vec<_>>()
            .join(", "),
        dist.iter()
            .map(|(_, n)| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str("## Organizations\n\n| organization | stage | contacted | started | weeks to start | completed | MRs | post-project MRs | post-project issues | post-project comments | first response, median | MRs waiting for one |\n|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
    let d = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_else(|| "—".into());
    for l in &m.organizations {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            l.org,
            l.stage.as_deref().unwrap_or("—"),
            d(l.contacted),
            d(l.started),
            opt(l.weeks_to_start, ""),
            d(l.completed),
            l.mrs,
            l.post_project_mrs,
            l.post_project_issues,
            l.post_project_comments,
            opt(l.first_response.median_hours, " h"),
            l.first_response.waiting
        ));
    }
    if !r.not_measured.is_empty() {
        out.push_str("\n## Not measured\n\n");
        for n in &r.not_measured {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out
}

/// The full Markdown: the body plus what the run cost.
pub fn markdown(r: &Report) -> String {
    let mut out = markdown_body(r);
    out.push_str(&format!(
        "\n{} GitLab API reads, {} writes, {} ms.\n",
        r.api_reads, r.api_writes, r.elapsed_ms
    ));
    if let Some(d) = &r.dashboard {
        out.push_str(&format!(
            "Dashboard issue: {}{}.\n",
            d.outcome,
            d.issue.map(|i| format!(" (#{i})")).unwrap_or_default()
        ));
    }
    out
}

pub fn marker(quarter: &str) -> String {
    format!("<!-- cocreate:dashboard:{quarter} -->")
}

/// What the dashboard issue needs, from what is there. Pure.
pub fn dashboard_actions(
    existing: Option<(u64, &str)>,
    project: &str,
    quarter: &str,
    body: &str,
    confidential: bool,
) -> Vec<Action> {
    let description = format!("{}\n{body}", marker(quarter));
    match existing {
        Some((_, current)) if current == description => vec![],
        Some((iid, _)) => vec![Action::EditIssue {
            issue: IssueRef {
                project: project.to_owned(),
                iid,
            },
            add_labels: vec![],
            remove_labels: vec![],
            assignee_ids: None,
            description: Some(description),
            confidential: None,
        }],
        None => vec![Action::CreateIssue {
            project: project.to_owned(),
            title: format!("Co-Create program dashboard {quarter}"),
            description,
            labels: vec![],
            confidential,
            assignee_ids: vec![],
        }],
    }
}

/// Creates or updates the quarter's dashboard issue (found by its marker; never a second one).
/// Cost: one search read, plus at most one write.
pub async fn publish(ctx: &Context, report: &Report) -> Result<Dashboard, ReportError> {
    let live = ctx.gitlab.as_ref().ok_or(ReportError::NoGitlab)?;
    let tracking = &ctx.policies.routing.tracking;
    let marker = marker(&report.quarter);
    let found: Vec<ApiIssue> = Get::new(format!("projects/{}/issues", path_id(&tracking.project)))
        .param(
            "search",
            marker.trim_start_matches("<!-- ").trim_end_matches(" -->"),
        )
        .param("state", "all")
        .param("scope", "all")
        .param("sort", "asc")
        .all(&live.client)
        .await
        .map_err(|e| {
            GitlabError::new(
                format!("looking for the dashboard issue in {}", tracking.project),
                e,
            )
        })?;
    let existing = found
        .iter()
        .filter(|i| {
            i.description
                .as_deref()
                .is_some_and(|d| d.starts_with(&marker))
        })
        .min_by_key(|i| i.iid);
    let actions = dashboard_actions(
        existing.map(|i| (i.iid, i.description.as_deref().unwrap_or(""))),
        &tracking.project,
        &report.quarter,
        &markdown_body(report),
        tracking.confidential,
    );
    ctx.executor.run(Some(&live.client), &actions).await?;
    let dry = matches!(ctx.executor, crate::gitlab::Executor::DryRun);
    let outcome = match (actions.first(), dry) {
        (None, _) => "unchanged",
        (Some(Action::CreateIssue { .. }), false) => "created",
        (Some(Action::CreateIssue { .. }), true) => "would create",
        (Some(_), false) => "updated",
        (Some(_), true) => "would update",
    };
    Ok(Dashboard {
        outcome: outcome.to_owned(),
        issue: existing.map(|i| i.iid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    /// A day at midnight, or a full RFC 3339 time.
    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.to_utc())
            .unwrap_or_else(|_| at_midnight(day(s)))
    }

    #[test]
    fn quarters_parse_and_have_bounds() {
        // (text, start month, first day, day after the last)
        let cases = [
            ("FY26Q1", 2, "2025-02-01", "2025-05-01"),
            ("fy26q4", 2, "2025-11-01", "2026-02-01"),
            ("FY2026Q2", 2, "2025-05-01", "2025-08-01"),
            ("FY26Q1", 1, "2026-01-01", "2026-04-01"),
            ("FY26-Q3", 1, "2026-07-01", "2026-10-01"),
            ("FY26Q1", 10, "2025-10-01", "2026-01-01"),
            ("FY26Q2", 10, "2026-01-01", "2026-04-01"),
        ];
        for (text, m, first, end) in cases {
            let q = Quarter::parse(text).expect(text);
            assert_eq!(q.bounds(m), (day(first), day(end)), "{text} start {m}");
            // Every day of the quarter is in it, and the day before/after is not.
            for d in [day(first), day(end).pred_opt().expect("day")] {
                assert_eq!(Quarter::containing(d, m), q, "{d} start {m}");
            }
            assert_ne!(Quarter::containing(day(end), m), q);
            assert_ne!(Quarter::containing(day(first).pred_opt().expect("d"), m), q);
        }
        assert_eq!(Quarter::parse("fy2026q1").expect("q").label(), "FY26Q1");
        for bad in ["26Q1", "FY26Q5", "FY26Q0", "FY6Q1", "FYabQ1", "FY26"] {
            assert!(Quarter::parse(bad).is_err(), "{bad}");
        }
    }

    fn fr(created: &str, responded: Option<&str>) -> FirstResponse {
        FirstResponse {
            created_at: t(created),
            responded_at: responded.map(t),
        }
    }

    fn eng(iid: u64, org: &str, open: bool, stages: &[(&str, &str)]) -> Engagement {
        Engagement {
            iid,
            org: org.into(),
            open,
            stage_added: stages
                .iter()
                .map(|(d, s)| (t(d), stage_index(s).expect("stage")))
                .collect(),
        }
    }

    #[test]
    fn metrics_of_a_small_timeline() {
        let facts = Facts {
            engagements: vec![
                // contacted → active: 8 weeks; completed in the quarter.
                eng(
                    1,
                    "a",
                    true,
                    &[
                        ("2025-01-10", "prospect"),
                        ("2025-01-20", "contacted"),
                        ("2025-02-10", "meeting"),
                        ("2025-03-17", "active"),
                        ("2025-04-01", "completed"),
                    ],
                ),
                // Open at meeting: an active conversation.
                eng(
                    2,
                    "b",
                    true,
                    &[
                        ("2025-02-03", "prospect"),
                        ("2025-02-05", "contacted"),
                        ("2025-03-01", "meeting"),
                    ],
                ),
                // Closed at contacted: in the pipeline, not an active conversation.
                eng(
                    3,
                    "c",
                    false,
                    &[("2025-02-20", "prospect"), ("2025-03-01", "contacted")],
                ),
                // Completed before the quarter: not in its pipeline.
                eng(
                    4,
                    "d",
                    true,
                    &[
                        ("2024-10-01", "prospect"),
                        ("2024-12-01", "active"),
                        ("2025-01-15", "completed"),
                    ],
                ),
                // Starts after the quarter.
                eng(5, "e", true, &[("2025-05-10", "prospect")]),
            ],
            mrs: BTreeMap::from([
                (
                    "a".into(),
                    vec![
                        t("2025-03-20"),
                        t("2025-04-10"),
                        t("2025-04-20"),
                        t("2025-05-05"),
                    ],
                ),
                ("d".into(), vec![t("2025-02-10")]),
            ]),
            post_project_issues: BTreeMap::from([("a".into(), 2), ("b".into(), 9)]),
            post_project_comments: BTreeMap::from([("a".into(), 5), ("b".into(), 7)]),
            responses: BTreeMap::from([
                (
                    "a".into(),
                    vec![
                        fr("2025-03-20", Some("2025-03-21")),
                        fr("2025-04-10", Some("2025-04-10T12:00:00Z")),
                        fr("2025-04-20", None),
                        // After the quarter: not counted.
                        fr("2025-05-05", Some("2025-05-06")),
                    ],
                ),
                // Answered after "now": still waiting as of now.
                ("c".into(), vec![fr("2025-03-01", Some("2025-07-01"))]),
                ("d".into(), vec![fr("2025-02-10", Some("2025-02-12"))]),
            ]),
            organizations: vec!["a".into(), "z".into()],
        };
        let m = compute(
            &facts,
            day("2025-02-01"),
            day("2025-05-01"),
            t("2025-06-01"),
        );
        assert_eq!(m.pipeline, 3);
        assert_eq!(m.initial_meetings, 2);
        assert_eq!(m.active_conversations, 1);
        assert_eq!(m.projects_initiated, 1);
        assert_eq!(m.conversion_percent, Some(33.3));
        assert_eq!(m.weeks_to_start, vec![8.0]);
        let funnel: Vec<usize> = m.funnel.iter().map(|(_, n)| *n).collect();
        assert_eq!(funnel, vec![3, 3, 2, 1, 1, 1, 1, 0]);
        // a: 04-10 and 04-20 after completion; d: 02-10 (completed before the quarter).
        assert_eq!(m.post_project_mrs, 3);
        // b has no completed engagement: its counts are ignored.
        assert_eq!(m.post_project_issues, 2);
        assert_eq!(m.post_project_comments, 5);
        // Answered: 24 h, 12 h (a), 48 h (d); waiting: a's of 04-20 and c's (answered later).
        assert_eq!(
            m.first_response,
            ResponseTimes {
                answered: 3,
                waiting: 2,
                median_hours: Some(24.0),
                mean_hours: Some(28.0),
            }
        );
        let a = &m.organizations[0];
        assert_eq!(
            a.first_response,
            ResponseTimes {
                answered: 2,
                waiting: 1,
                median_hours: Some(18.0),
                mean_hours: Some(18.0),
            }
        );
        assert_eq!(m.organizations[2].first_response.waiting, 1);
        assert_eq!(m.contributing_organizations, 2);
        assert_eq!(m.multi_contributing_organizations, 1);
        assert_eq!(m.multiple_contributions_percent, Some(50.0));
        assert_eq!(m.mean_days_between_contributions, Some(15.5));
        let orgs: Vec<&str> = m.organizations.iter().map(|l| l.org.as_str()).collect();
        assert_eq!(orgs, vec!["a", "b", "c", "d", "e", "z"]);
        let z = &m.organizations[5];
        assert_eq!((z.stage.as_deref(), z.mrs, z.contacted), (None, 0, None));
    }

    #[test]
    fn no_facts_no_numbers() {
        let m = compute(
            &Facts::default(),
            day("2025-02-01"),
            day("2025-05-01"),
            t("2025-03-01"),
        );
        assert_eq!(m.pipeline, 0);
        assert_eq!(m.conversion_percent, None);
        assert_eq!(m.median_weeks_to_start, None);
        assert_eq!(m.mean_days_between_contributions, None);
    }

    #[test]
    fn median_mean_and_distribution() {
        for (xs, med, avg) in [
            (vec![], None, None),
            (vec![8.0], Some(8.0), Some(8.0)),
            (vec![8.0, 10.0], Some(9.0), Some(9.0)),
            (vec![2.0, 9.0, 13.0], Some(9.0), Some(8.0)),
        ] {
            assert_eq!((median(&xs), mean(&xs)), (med, avg), "{xs:?}");
        }
        let d = distribution(&[1.0, 4.0, 8.0, 10.0, 10.5, 15.0], 8.0, 10.0);
        let counts: Vec<usize> = d.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, vec![1, 1, 2, 1, 1]);
        assert_eq!(d[2].0, "8-10 target");
    }

    #[test]
    fn dashboard_is_created_once_then_updated_only_when_it_differs() {
        let body = "# report";
        let created = dashboard_actions(None, "p", "FY26Q1", body, true);
        let Some(Action::CreateIssue {
            description,
            confidential,
            ..
        }) = created.first()
        else {
            panic!("{created:?}")
        };
        assert!(description.starts_with("<!-- cocreate:dashboard:FY26Q1 -->\n"));
        assert!(*confidential);
        assert!(dashboard_actions(Some((4, description)), "p", "FY26Q1", body, true).is_empty());
        let edit = dashboard_actions(Some((4, description)), "p", "FY26Q1", "# new", true);
        assert!(
            matches!(edit.as_slice(), [Action::EditIssue { issue, description: Some(_), .. }] if issue.iid == 4)
        );
    }
}

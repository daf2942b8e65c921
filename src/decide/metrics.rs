//! The program's success metrics for one quarter: a pure function of GitLab's history (label
//! events, `closed_at` and state events, creation and note times), the quarter and "now".
//!
//! Every number is **as of the quarter's end** (or now, while the quarter runs): only what
//! happened before that instant counts, so a quarter that is over keeps its numbers whatever
//! happens later. Every window is half-open, `[start, end)`: an event at exactly the quarter's
//! end belongs to the next quarter, everywhere.
//!
//! A stage is "reached" when it or any later stage label is first added; the stage "at" an
//! instant is the last stage label added before it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

pub use super::funnel::Stage;
use super::response;

/// Midnight UTC of a day.
pub fn at_midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The quarter `[start, end)` and the instant its numbers are taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The quarter's end, or now while it runs.
    pub as_of: DateTime<Utc>,
}

impl Window {
    /// The quarter from its first day to the day after its last, as of `now`.
    pub fn new(start: NaiveDate, end: NaiveDate, now: DateTime<Utc>) -> Self {
        let (start, end) = (at_midnight(start), at_midnight(end));
        Self {
            start,
            end,
            as_of: now.min(end),
        }
    }

    /// `t` in `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// `t` in `[from.max(start), end)`: after something that happened at `from`.
    pub fn contains_from(&self, from: DateTime<Utc>, t: DateTime<Utc>) -> bool {
        from.max(self.start) <= t && t < self.end
    }
}

/// One tracking issue: its organization, when each stage label was added, and whether (and
/// when) it was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Engagement {
    pub iid: u64,
    pub org: String,
    /// Closed today.
    pub closed: bool,
    /// When it was closed (GitLab clears it when an issue is reopened).
    pub closed_at: Option<DateTime<Utc>>,
    /// Its closings and reopenings (when, closed afterwards), when read: only where today's
    /// state and `closed_at` cannot tell whether it was open at the quarter's end
    /// ([`Engagement::state_unclear_at`]).
    pub state_changes: Option<Vec<(DateTime<Utc>, bool)>>,
    /// (when, which stage) of every stage label added, oldest first.
    pub stage_added: Vec<(DateTime<Utc>, Stage)>,
    /// It carried the SPIFF target label at the quarter's end (from its label history).
    pub spiff: bool,
    /// It carried the case-study candidate label at the quarter's end.
    pub case_study: bool,
}

impl Engagement {
    /// When the engagement first reached `stage` (or a later one).
    pub fn reached(&self, stage: Stage) -> Option<DateTime<Utc>> {
        self.stage_added
            .iter()
            .filter(|(_, s)| *s >= stage)
            .map(|(t, _)| *t)
            .min()
    }

    /// The stage at `t`: the last stage label added before `t` (a label added at `t` is not
    /// there yet).
    pub fn stage_at(&self, t: DateTime<Utc>) -> Option<Stage> {
        self.stage_added
            .iter()
            .filter(|(at, _)| *at < t)
            .max_by_key(|(at, _)| *at)
            .map(|(_, s)| *s)
    }

    /// Open at `t`: from the state history when read (the last change before `t`; none:
    /// opened), else not closed, or closed at or after `t`. A closed issue without
    /// `closed_at` counts as closed all along.
    pub fn open_at(&self, t: DateTime<Utc>) -> bool {
        if let Some(changes) = &self.state_changes {
            return !changes
                .iter()
                .filter(|(at, _)| *at < t)
                .max_by_key(|(at, _)| *at)
                .is_some_and(|(_, closed)| *closed);
        }
        match (self.closed, self.closed_at) {
            (false, _) => true,
            (true, Some(c)) => c >= t,
            (true, None) => false,
        }
    }

    /// Whether only the state history tells if it was open at `t`: unless it was closed
    /// before `t` and stayed closed, it may have been closed then and reopened since.
    pub fn state_unclear_at(&self, t: DateTime<Utc>) -> bool {
        !(self.closed && self.closed_at.is_some_and(|c| c < t))
    }

    /// A candidate active conversation at `t`: at `contacted` or `meeting` then.
    pub fn conversing_at(&self, t: DateTime<Utc>) -> bool {
        matches!(self.stage_at(t), Some(Stage::Contacted | Stage::Meeting))
    }

    /// When its first stage label was added.
    pub fn first(&self) -> Option<DateTime<Utc>> {
        self.stage_added.iter().map(|(t, _)| *t).min()
    }

    /// In the quarter's pipeline: started before its end, not completed before its start.
    pub fn in_pipeline(&self, w: &Window) -> bool {
        self.first().is_some_and(|t| t < w.end)
            && self.reached(Stage::Completed).is_none_or(|c| c >= w.start)
    }
}

/// One Co-Create MR opened in the quarter and when it first got a response (if it has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FirstResponse {
    pub created_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
}

/// Everything [`compute`] needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Facts {
    pub engagements: Vec<Engagement>,
    /// Creation times of each organization's Co-Create MRs (each MR once).
    pub mrs: BTreeMap<String, Vec<DateTime<Utc>>>,
    /// Merge times of each organization's merged Co-Create MRs (each MR once).
    pub merged: BTreeMap<String, Vec<DateTime<Utc>>>,
    /// Creation times of the issues the organization's people opened in the watched scope
    /// since its project completed (each issue once).
    pub post_project_issues: BTreeMap<String, Vec<DateTime<Utc>>>,
    /// Times of the comments the organization's people wrote since its project completed
    /// (each comment once).
    pub post_project_comments: BTreeMap<String, Vec<DateTime<Utc>>>,
    /// Each organization's Co-Create MRs opened in the quarter, with their first response.
    pub responses: BTreeMap<String, Vec<FirstResponse>>,
    /// Organizations of organizations.yml (listed even without any fact).
    pub organizations: Vec<String>,
    /// Annual recurring revenue by organization slug, when an account export with an `arr`
    /// column was given.
    pub arr: Option<BTreeMap<String, f64>>,
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
    /// Answered means answered before `as_of`; the others are waiting.
    pub fn of<'a>(mrs: impl IntoIterator<Item = &'a FirstResponse>, as_of: DateTime<Utc>) -> Self {
        let mut hours = Vec::new();
        let mut waiting = 0;
        for mr in mrs {
            match mr.responded_at.filter(|t| *t < as_of) {
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

/// Another engagement of an organization than the one its row shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherEngagement {
    pub iid: u64,
    /// Its stage as of the quarter's end.
    pub stage: Option<String>,
    pub completed: Option<NaiveDate>,
}

/// One organization's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrgLine {
    pub org: String,
    /// The tracking issue the line shows ([`engagement_that_matters`]).
    pub engagement: Option<u64>,
    /// Its stage as of the quarter's end, `None` without an engagement.
    pub stage: Option<String>,
    pub contacted: Option<NaiveDate>,
    pub started: Option<NaiveDate>,
    pub weeks_to_start: Option<f64>,
    pub completed: Option<NaiveDate>,
    /// The organization's other engagements that started before the quarter's end.
    pub other_engagements: Vec<OtherEngagement>,
    /// Co-Create MRs created before the quarter's end.
    pub mrs: usize,
    /// Co-Create MRs created in the quarter (any state): a contributing customer when ≥ 1.
    pub quarter_mrs: usize,
    /// Co-Create MRs merged before the quarter's end (as of it).
    pub merged_mrs: usize,
    pub post_project_mrs: usize,
    pub post_project_issues: usize,
    pub post_project_comments: usize,
    /// Time to first response of its Co-Create MRs opened in the quarter.
    pub first_response: ResponseTimes,
    /// Its ARR from the account export (when given and known).
    pub arr: Option<f64>,
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
    pub post_project_issues: usize,
    pub post_project_comments: usize,
    /// Time to first response of every Co-Create MR opened in the quarter.
    pub first_response: ResponseTimes,
    pub contributing_organizations: usize,
    pub multi_contributing_organizations: usize,
    pub multiple_contributions_percent: Option<f64>,
    pub mean_days_between_contributions: Option<f64>,
    /// The handbook's success measure: customers whose people opened at least one Co-Create
    /// MR in the quarter (any state), each counted once.
    pub contributing_customers: usize,
    /// Sum of the ARR of the contributing customers (when an account export was given).
    pub influenced_arr: Option<f64>,
    /// Contributing customers the account export gives no ARR for.
    pub arr_unknown: Vec<String>,
    /// Pipeline engagements of SPIFF target accounts.
    pub spiff_engagements: usize,
    /// Organizations whose engagement was a case-study candidate at the quarter's end.
    pub case_study_candidates: Vec<String>,
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

/// The engagement an organization's row shows: of those started before the quarter's end,
/// the latest one in the quarter's pipeline, else the latest one. The rest are "other"
/// engagements, oldest first.
pub fn engagement_that_matters<'a>(
    engagements: impl IntoIterator<Item = &'a Engagement>,
    w: &Window,
) -> (Option<&'a Engagement>, Vec<&'a Engagement>) {
    let mut started: Vec<&Engagement> = engagements
        .into_iter()
        .filter(|e| e.first().is_some_and(|t| t < w.end))
        .collect();
    started.sort_by_key(|e| (e.first(), e.iid));
    let pick = started
        .iter()
        .rposition(|e| e.in_pipeline(w))
        .or_else(|| started.len().checked_sub(1));
    match pick {
        Some(i) => {
            let shown = started.remove(i);
            (Some(shown), started)
        }
        None => (None, started),
    }
}

/// When the organization's first project completed, before `as_of`.
pub fn completed_at<'a>(
    engagements: impl IntoIterator<Item = &'a Engagement>,
    as_of: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    engagements
        .into_iter()
        .filter_map(|e| e.reached(Stage::Completed))
        .filter(|c| *c < as_of)
        .min()
}

fn stage_name(s: Option<Stage>) -> Option<String> {
    s.map(|s| s.name().to_owned())
}

/// The metrics of the quarter `w`. Pure.
pub fn compute(facts: &Facts, w: &Window) -> Metrics {
    let pipeline: Vec<&Engagement> = facts
        .engagements
        .iter()
        .filter(|e| e.in_pipeline(w))
        .collect();
    let initial_meetings = pipeline
        .iter()
        .filter(|e| e.reached(Stage::Meeting).is_some_and(|t| w.contains(t)))
        .count();
    let active_conversations = facts
        .engagements
        .iter()
        .filter(|e| e.conversing_at(w.as_of) && e.open_at(w.as_of))
        .count();
    let started: Vec<&Engagement> = facts
        .engagements
        .iter()
        .filter(|e| e.reached(Stage::Active).is_some_and(|t| w.contains(t)))
        .collect();
    let mut weeks_to_start: Vec<f64> = started
        .iter()
        .filter_map(|e| {
            Some(weeks(
                e.reached(Stage::Contacted)?,
                e.reached(Stage::Active)?,
            ))
        })
        .collect();
    weeks_to_start.sort_by(f64::total_cmp);
    let funnel = Stage::ALL
        .into_iter()
        .map(|s| {
            let n = pipeline
                .iter()
                .filter(|e| e.reached(s).is_some_and(|t| t < w.end))
                .count();
            (s.name().to_owned(), n)
        })
        .collect();

    // Organizations: policy ones, those with an engagement started or an MR opened before
    // the quarter's end.
    let mut orgs: BTreeSet<String> = facts.organizations.iter().cloned().collect();
    orgs.extend(
        facts
            .engagements
            .iter()
            .filter(|e| e.first().is_some_and(|t| t < w.end))
            .map(|e| e.org.clone()),
    );
    orgs.extend(
        facts
            .mrs
            .iter()
            .filter(|(_, ts)| ts.iter().any(|t| *t < w.end))
            .map(|(o, _)| o.clone()),
    );
    let mut lines = Vec::new();
    let mut gaps = Vec::new();
    let mut all_responses = Vec::new();
    for org in &orgs {
        let mine = || facts.engagements.iter().filter(|e| &e.org == org);
        let (e, others) = engagement_that_matters(mine(), w);
        let mut mrs: Vec<DateTime<Utc>> = facts
            .mrs
            .get(org)
            .map(|v| v.iter().copied().filter(|t| *t < w.end).collect())
            .unwrap_or_default();
        mrs.sort();
        gaps.extend(
            mrs.windows(2)
                .map(|p| (p[1] - p[0]).num_seconds() as f64 / 86_400.0),
        );
        let quarter_mrs = mrs.iter().filter(|t| w.contains(**t)).count();
        let merged_mrs = facts
            .merged
            .get(org)
            .map(|v| v.iter().filter(|t| **t < w.end && **t <= w.as_of).count())
            .unwrap_or(0);
        let done = completed_at(mine(), w.as_of);
        let after = |times: Option<&Vec<DateTime<Utc>>>| -> usize {
            done.map(|c| {
                times
                    .into_iter()
                    .flatten()
                    .filter(|t| w.contains_from(c, **t))
                    .count()
            })
            .unwrap_or(0)
        };
        let contacted = e
            .and_then(|e| e.reached(Stage::Contacted))
            .filter(|t| *t < w.end);
        let active = e
            .and_then(|e| e.reached(Stage::Active))
            .filter(|t| *t < w.end);
        let responses: Vec<&FirstResponse> = facts
            .responses
            .get(org)
            .into_iter()
            .flatten()
            .filter(|r| w.contains(r.created_at))
            .collect();
        all_responses.extend(responses.iter().copied());
        lines.push(OrgLine {
            org: org.clone(),
            engagement: e.map(|e| e.iid),
            stage: stage_name(e.and_then(|e| e.stage_at(w.as_of))),
            contacted: contacted.map(|t| t.date_naive()),
            started: active.map(|t| t.date_naive()),
            weeks_to_start: contacted.zip(active).map(|(c, a)| weeks(c, a)),
            completed: e
                .and_then(|e| e.reached(Stage::Completed))
                .filter(|c| *c < w.as_of)
                .map(|t| t.date_naive()),
            other_engagements: others
                .iter()
                .map(|o| OtherEngagement {
                    iid: o.iid,
                    stage: stage_name(o.stage_at(w.as_of)),
                    completed: o
                        .reached(Stage::Completed)
                        .filter(|c| *c < w.as_of)
                        .map(|t| t.date_naive()),
                })
                .collect(),
            mrs: mrs.len(),
            quarter_mrs,
            merged_mrs,
            post_project_mrs: done
                .map(|c| mrs.iter().filter(|t| w.contains_from(c, **t)).count())
                .unwrap_or(0),
            post_project_issues: after(facts.post_project_issues.get(org)),
            post_project_comments: after(facts.post_project_comments.get(org)),
            first_response: ResponseTimes::of(responses, w.as_of),
            arr: facts.arr.as_ref().and_then(|a| a.get(org).copied()),
        });
    }
    let contributing = lines.iter().filter(|l| l.mrs >= 1).count();
    let multi = lines.iter().filter(|l| l.mrs >= 2).count();
    let customers: Vec<&OrgLine> = lines.iter().filter(|l| l.quarter_mrs >= 1).collect();
    let influenced_arr = facts
        .arr
        .as_ref()
        .map(|_| customers.iter().filter_map(|l| l.arr).sum::<f64>());
    let arr_unknown = match &facts.arr {
        Some(_) => customers
            .iter()
            .filter(|l| l.arr.is_none())
            .map(|l| l.org.clone())
            .collect(),
        None => Vec::new(),
    };
    let spiff_engagements = pipeline.iter().filter(|e| e.spiff).count();
    let mut case_study_candidates: Vec<String> = facts
        .engagements
        .iter()
        .filter(|e| e.case_study && e.first().is_some_and(|t| t < w.end))
        .map(|e| e.org.clone())
        .collect();
    case_study_candidates.sort();
    case_study_candidates.dedup();
    Metrics {
        spiff_engagements,
        case_study_candidates,
        pipeline: pipeline.len(),
        initial_meetings,
        active_conversations,
        projects_initiated: started.len(),
        conversion_percent: percent(started.len(), pipeline.len()),
        median_weeks_to_start: median(&weeks_to_start),
        mean_weeks_to_start: mean(&weeks_to_start),
        weeks_to_start,
        funnel,
        post_project_organizations: orgs
            .iter()
            .filter(|o| {
                completed_at(facts.engagements.iter().filter(|e| &e.org == *o), w.as_of).is_some()
            })
            .count(),
        post_project_mrs: lines.iter().map(|l| l.post_project_mrs).sum(),
        post_project_issues: lines.iter().map(|l| l.post_project_issues).sum(),
        post_project_comments: lines.iter().map(|l| l.post_project_comments).sum(),
        first_response: ResponseTimes::of(all_responses, w.as_of),
        contributing_organizations: contributing,
        multi_contributing_organizations: multi,
        multiple_contributions_percent: percent(multi, contributing),
        mean_days_between_contributions: mean(&gaps),
        contributing_customers: customers.len(),
        influenced_arr,
        arr_unknown,
        organizations: lines,
    }
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

    /// FY26Q1 (fiscal year from February): `[2025-02-01, 2025-05-01)`, as of `now`.
    fn q1(now: &str) -> Window {
        Window::new(day("2025-02-01"), day("2025-05-01"), t(now))
    }

    fn fr(created: &str, responded: Option<&str>) -> FirstResponse {
        FirstResponse {
            created_at: t(created),
            responded_at: responded.map(t),
        }
    }

    /// An engagement, closed at `closed` (if given), with its stage labels.
    fn eng(iid: u64, org: &str, closed: Option<&str>, stages: &[(&str, &str)]) -> Engagement {
        Engagement {
            iid,
            org: org.into(),
            closed: closed.is_some(),
            closed_at: closed.map(t),
            state_changes: None,
            stage_added: stages
                .iter()
                .map(|(d, s)| (t(d), Stage::parse(s).expect("stage")))
                .collect(),
            spiff: false,
            case_study: false,
        }
    }

    fn times(ts: &[&str]) -> Vec<DateTime<Utc>> {
        ts.iter().map(|s| t(s)).collect()
    }

    #[test]
    fn metrics_of_a_small_timeline() {
        let facts = Facts {
            engagements: vec![
                // contacted → active: 8 weeks; completed in the quarter.
                eng(
                    1,
                    "a",
                    None,
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
                    None,
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
                    Some("2025-03-10"),
                    &[("2025-02-20", "prospect"), ("2025-03-01", "contacted")],
                ),
                // Completed before the quarter: not in its pipeline.
                eng(
                    4,
                    "d",
                    None,
                    &[
                        ("2024-10-01", "prospect"),
                        ("2024-12-01", "active"),
                        ("2025-01-15", "completed"),
                    ],
                ),
                // Starts after the quarter: not even listed.
                eng(5, "e", None, &[("2025-05-10", "prospect")]),
            ],
            mrs: BTreeMap::from([
                (
                    "a".into(),
                    times(&["2025-03-20", "2025-04-10", "2025-04-20", "2025-05-05"]),
                ),
                ("d".into(), times(&["2025-02-10"])),
            ]),
            // a: one before its 04-01 completion, one after; b never completed.
            post_project_issues: BTreeMap::from([
                ("a".into(), times(&["2025-03-25", "2025-04-15"])),
                ("b".into(), times(&["2025-04-15"])),
            ]),
            post_project_comments: BTreeMap::from([(
                "a".into(),
                times(&["2025-04-01T15:00:00Z", "2025-04-12", "2025-05-02"]),
            )]),
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
                // Answered after the quarter's end: still waiting as of it.
                ("c".into(), vec![fr("2025-03-01", Some("2025-05-20"))]),
                ("d".into(), vec![fr("2025-02-10", Some("2025-02-12"))]),
            ]),
            organizations: vec!["a".into(), "z".into()],
            arr: None,
            merged: BTreeMap::new(),
        };
        let m = compute(&facts, &q1("2025-06-01"));
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
        // a's of 04-15; b has no completed engagement.
        assert_eq!(m.post_project_issues, 1);
        // a's of 04-01 15:00 and 04-12; 05-02 is after the quarter.
        assert_eq!(m.post_project_comments, 2);
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
        // a (3 MRs in the quarter) and d (1).
        assert_eq!(m.contributing_customers, 2);
        assert_eq!((m.influenced_arr, m.arr_unknown.len()), (None, 0));
        let orgs: Vec<&str> = m.organizations.iter().map(|l| l.org.as_str()).collect();
        assert_eq!(orgs, vec!["a", "b", "c", "d", "z"]);
        let z = &m.organizations[4];
        assert_eq!((z.stage.as_deref(), z.mrs, z.contacted), (None, 0, None));
    }

    #[test]
    fn no_facts_no_numbers() {
        let m = compute(&Facts::default(), &q1("2025-03-01"));
        assert_eq!(m.pipeline, 0);
        assert_eq!(m.conversion_percent, None);
        assert_eq!(m.median_weeks_to_start, None);
        assert_eq!(m.mean_days_between_contributions, None);
        assert_eq!(m.contributing_customers, 0);
    }

    #[test]
    fn every_boundary_is_half_open() {
        // (what happens when, meetings, funnel at `meeting`, stage at the end, active
        // conversations, MRs in the quarter, answered)
        let cases = [
            ("2025-02-01T00:00:00Z", 1, 1, "meeting", 1, 1, 1),
            ("2025-04-30T23:59:59Z", 1, 1, "meeting", 1, 1, 1),
            ("2025-05-01T00:00:00Z", 0, 0, "contacted", 1, 0, 0),
            ("2025-01-31T23:59:59Z", 0, 1, "meeting", 1, 0, 0),
        ];
        for (at, meetings, funnel, stage, active, quarter_mrs, answered) in cases {
            let facts = Facts {
                engagements: vec![eng(
                    1,
                    "a",
                    None,
                    &[("2025-01-01", "contacted"), (at, "meeting")],
                )],
                mrs: BTreeMap::from([("a".into(), times(&[at]))]),
                responses: BTreeMap::from([(
                    "a".into(),
                    // Answered at `at` (when that is after it was opened); one opened at `at`.
                    vec![
                        fr("2025-02-01", Some(at).filter(|a| t(a) >= t("2025-02-01"))),
                        fr(at, None),
                    ],
                )]),
                ..Facts::default()
            };
            let m = compute(&facts, &q1("2026-06-01"));
            assert_eq!(m.initial_meetings, meetings, "{at}");
            assert_eq!(m.funnel[Stage::Meeting.index()].1, funnel, "{at}");
            let a = &m.organizations[0];
            assert_eq!(a.stage.as_deref(), Some(stage), "{at}");
            assert_eq!(m.active_conversations, active, "{at}");
            assert_eq!(a.quarter_mrs, quarter_mrs, "{at}");
            // The MR opened on 02-01 and answered at `at`: only an answer before the end.
            assert_eq!(a.first_response.answered, answered, "{at}");
        }
    }

    #[test]
    fn active_conversations_are_those_open_at_the_quarters_end() {
        // (closed at, active conversation in FY26Q1)
        let cases = [
            (None, 1),
            (Some("2025-06-15"), 1), // closed after the quarter: open at its end
            (Some("2025-05-01"), 1), // closed at exactly the end: still open then
            (Some("2025-04-30T23:00:00Z"), 0),
            (Some("2025-03-01"), 0),
        ];
        for (closed, want) in cases {
            let facts = Facts {
                engagements: vec![eng(
                    1,
                    "a",
                    closed,
                    &[("2025-02-02", "prospect"), ("2025-02-10", "contacted")],
                )],
                ..Facts::default()
            };
            for now in ["2025-05-02", "2026-05-02"] {
                assert_eq!(
                    compute(&facts, &q1(now)).active_conversations,
                    want,
                    "{closed:?} {now}"
                );
            }
        }
        // Mid-quarter the numbers are as of now: contacted on 02-10, not yet on 02-05.
        let facts = Facts {
            engagements: vec![eng(
                1,
                "a",
                None,
                &[("2025-02-02", "prospect"), ("2025-02-10", "contacted")],
            )],
            ..Facts::default()
        };
        assert_eq!(compute(&facts, &q1("2025-02-05")).active_conversations, 0);
        assert_eq!(compute(&facts, &q1("2025-02-11")).active_conversations, 1);
        // Closed on 03-01, reopened in June: `closed_at` is gone, the history tells.
        let mut reopened = facts.engagements[0].clone();
        assert!(reopened.state_unclear_at(t("2025-05-01")));
        reopened.state_changes = Some(vec![(t("2025-03-01"), true), (t("2025-06-01"), false)]);
        for (at, open) in [
            ("2025-02-20", true),
            ("2025-03-01", true),
            ("2025-03-02", false),
            ("2025-06-02", true),
        ] {
            assert_eq!(reopened.open_at(t(at)), open, "{at}");
        }
        let facts_reopened = Facts {
            engagements: vec![reopened],
            ..Facts::default()
        };
        assert_eq!(
            compute(&facts_reopened, &q1("2026-01-01")).active_conversations,
            0
        );
        // Closed before the end and still closed: no history needed.
        let mut closed = facts.engagements[0].clone();
        (closed.closed, closed.closed_at) = (true, Some(t("2025-04-01")));
        assert!(!closed.state_unclear_at(t("2025-05-01")));
        assert!(closed.state_unclear_at(t("2025-03-01")));
        // A closed issue without `closed_at` counts as closed.
        let mut e = facts.engagements[0].clone();
        e.closed = true;
        assert!(!e.open_at(t("2025-02-11")));
    }

    #[test]
    fn the_row_shows_the_engagement_that_matters() {
        let old = eng(
            3,
            "a",
            Some("2024-12-01"),
            &[
                ("2024-06-01", "prospect"),
                ("2024-08-01", "active"),
                ("2024-11-01", "completed"),
            ],
        );
        let new = eng(
            9,
            "a",
            None,
            &[("2025-01-10", "contacted"), ("2025-03-01", "active")],
        );
        let later = eng(12, "a", None, &[("2025-06-01", "prospect")]);
        let w = q1("2026-01-01");
        // (engagements, shown, others)
        let cases: [(Vec<&Engagement>, Option<u64>, Vec<u64>); 5] = [
            (vec![&old, &new], Some(9), vec![3]),
            (vec![&new, &old], Some(9), vec![3]),
            // Only an old one: shown although it is not in the quarter.
            (vec![&old], Some(3), vec![]),
            // One that starts after the quarter is not part of it at all.
            (vec![&old, &later], Some(3), vec![]),
            (vec![&later], None, vec![]),
        ];
        for (engs, shown, others) in cases {
            let (e, o) = engagement_that_matters(engs.iter().copied(), &w);
            assert_eq!(e.map(|e| e.iid), shown);
            assert_eq!(o.iter().map(|e| e.iid).collect::<Vec<_>>(), others);
        }
        let facts = Facts {
            engagements: vec![old.clone(), new.clone()],
            mrs: BTreeMap::from([("a".into(), times(&["2024-12-10", "2025-03-10"]))]),
            ..Facts::default()
        };
        let m = compute(&facts, &w);
        let a = &m.organizations[0];
        assert_eq!(
            (a.engagement, a.stage.as_deref(), a.started, a.completed),
            (Some(9), Some("active"), Some(day("2025-03-01")), None)
        );
        assert_eq!(
            a.other_engagements,
            vec![OtherEngagement {
                iid: 3,
                stage: Some("completed".into()),
                completed: Some(day("2024-11-01")),
            }]
        );
        // Post-project activity runs from the organization's first completion.
        assert_eq!((a.post_project_mrs, m.post_project_organizations), (1, 1));
    }

    #[test]
    fn contributing_customers_and_their_arr() {
        let facts = Facts {
            mrs: BTreeMap::from([
                // Two MRs in the quarter: one customer.
                ("a".into(), times(&["2025-02-10", "2025-03-10"])),
                // Only before the quarter: a contributor, not this quarter's customer.
                ("b".into(), times(&["2024-12-10"])),
                ("c".into(), times(&["2025-04-30T23:59:59Z"])),
                // At exactly the end: next quarter's.
                ("d".into(), times(&["2025-05-01"])),
            ]),
            arr: Some(BTreeMap::from([
                ("a".into(), 1_000_000.0),
                ("b".into(), 50_000.0),
            ])),
            ..Facts::default()
        };
        let m = compute(&facts, &q1("2025-08-01"));
        assert_eq!(m.contributing_customers, 2); // a, c
        assert_eq!(m.contributing_organizations, 3); // a, b, c (before the end)
        assert_eq!(m.influenced_arr, Some(1_000_000.0));
        assert_eq!(m.arr_unknown, vec!["c".to_owned()]);
        let lines: Vec<(&str, usize, Option<f64>)> = m
            .organizations
            .iter()
            .map(|l| (l.org.as_str(), l.quarter_mrs, l.arr))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("a", 2, Some(1_000_000.0)),
                ("b", 0, Some(50_000.0)),
                ("c", 1, None)
            ]
        );
    }

    #[test]
    fn median_and_mean() {
        for (xs, med, avg) in [
            (vec![], None, None),
            (vec![8.0], Some(8.0), Some(8.0)),
            (vec![8.0, 10.0], Some(9.0), Some(9.0)),
            (vec![2.0, 9.0, 13.0], Some(9.0), Some(8.0)),
        ] {
            assert_eq!((median(&xs), mean(&xs)), (med, avg), "{xs:?}");
        }
    }
}

//! Reading the report's facts from GitLab (the IO half; the metrics are
//! [`crate::decide::metrics::compute`]).
//!
//! Everything read is history with a timestamp, so the facts of a quarter that is over do not
//! change: label events, `closed_at` and state events, creation times, note and event times. Lists are read
//! through the outermost watched scopes only ([`scope_prefixes`]) and every item is kept once
//! (by its id), so a project inside a watched group is never counted twice.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Deserialize;

use crate::decide::engagement::IssueRef;
use crate::decide::metrics::{completed_at, Engagement, Facts, FirstResponse, Stage, Window};
use crate::decide::response;
use crate::decide::timeline::Bots;
use crate::domain::MrRef;
use crate::gitlab::{path_id, scope_prefixes, ApiUserRef, FactSource, Get, GitlabError};
use crate::handlers::Live;
use crate::policy::Policies;

#[derive(Deserialize)]
struct ApiTrackingIssue {
    iid: u64,
    state: String,
    #[serde(default)]
    labels: Vec<String>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    closed_at: Option<DateTime<Utc>>,
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
struct ApiStateEvent {
    created_at: DateTime<Utc>,
    state: String,
}

#[derive(Deserialize)]
struct ApiMrBrief {
    iid: u64,
    project_id: u64,
    created_at: DateTime<Utc>,
    #[serde(default)]
    merged_at: Option<DateTime<Utc>>,
    author: ApiUserRef,
}

#[derive(Deserialize)]
struct ApiIssueBrief {
    id: u64,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct ApiEvent {
    id: u64,
    created_at: DateTime<Utc>,
}

/// GitLab's `created_before` is inclusive: the quarter's end is asked for, and an item
/// created at exactly that instant is dropped here (`[start, end)`).
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Reads the facts of the quarter `w`. Cost: the pages of the tracking-issue list (those
/// created before the quarter's end), one label-event page per such issue, one state-event
/// page per issue at `contacted`/`meeting` at the end that was not closed before it (and
/// stayed closed), one MR-list page
/// per organization and outermost watched scope, one notes page per Co-Create MR opened in
/// the quarter, and, for each person of an organization whose project completed, one page of
/// their comment events and one issue-list page per outermost scope.
pub async fn gather(
    live: &Live,
    policies: &Policies,
    bot: &str,
    w: &Window,
) -> Result<Facts, GitlabError> {
    let client = &live.client;
    let labels = &policies.routing.labels;
    let project = &policies.routing.tracking.project;
    let issues: Vec<ApiTrackingIssue> = Get::new(format!("projects/{}/issues", path_id(project)))
        .param("labels", labels.engagement.clone())
        .param("state", "all")
        .param("scope", "all")
        .param("created_before", iso(w.end))
        .all(client)
        .await
        .map_err(|e| GitlabError::new(format!("listing the tracking issues in {project}"), e))?;
    let mut engagements = Vec::new();
    for issue in issues.into_iter().filter(|i| i.created_at < w.end) {
        let Some(org) = crate::decide::org_from_labels(&issue.labels, &labels.org_prefix) else {
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
        let mut stage_added: Vec<(DateTime<Utc>, Stage)> = events
            .iter()
            .filter(|e| e.action == "add")
            .filter_map(|e| {
                let name = e.label.as_ref()?.name.strip_prefix(&labels.stage_prefix)?;
                Some((e.created_at, Stage::parse(name)?))
            })
            .collect();
        stage_added.sort();
        // Whether a label was on at the quarter's end: its last add or remove before then.
        let on_at_end = |name: &str| {
            let mut on: Vec<(DateTime<Utc>, bool)> = events
                .iter()
                .filter(|e| e.created_at < w.end && e.created_at <= w.as_of)
                .filter(|e| e.label.as_ref().is_some_and(|l| l.name == name))
                .map(|e| (e.created_at, e.action == "add"))
                .collect();
            on.sort();
            on.last().is_some_and(|(_, added)| *added)
        };
        let mut e = Engagement {
            iid: issue.iid,
            org: org.to_owned(),
            closed: issue.state == "closed",
            closed_at: issue.closed_at,
            state_changes: None,
            stage_added,
            spiff: on_at_end(&labels.spiff),
            case_study: on_at_end(&labels.case_study),
        };
        // Open at the end? Today's state and `closed_at` tell unless it may have been
        // closed then and reopened since: then its state history does.
        if e.conversing_at(w.as_of) && e.state_unclear_at(w.as_of) {
            let events: Vec<ApiStateEvent> = Get::new(format!(
                "projects/{}/issues/{}/resource_state_events",
                path_id(project),
                issue.iid
            ))
            .all(client)
            .await
            .map_err(|err| {
                GitlabError::new(
                    format!(
                        "reading the state history of {}",
                        IssueRef {
                            project: project.clone(),
                            iid: issue.iid
                        }
                    ),
                    err,
                )
            })?;
            e.state_changes = Some(
                events
                    .into_iter()
                    .filter_map(|s| match s.state.as_str() {
                        "closed" => Some((s.created_at, true)),
                        "reopened" => Some((s.created_at, false)),
                        _ => None,
                    })
                    .collect(),
            );
        }
        engagements.push(e);
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
    let mut mrs = BTreeMap::new();
    let mut merged = BTreeMap::new();
    let mut responses = BTreeMap::new();
    for slug in &slugs {
        let mut seen = BTreeSet::new();
        let mut times = Vec::new();
        let mut merges = Vec::new();
        let mut firsts = Vec::new();
        for scope in &scopes {
            let list: Vec<ApiMrBrief> = Get::new(format!("{scope}merge_requests"))
                .param("scope", "all")
                .param("state", "all")
                .param("labels", format!("{}{slug}", labels.org_prefix))
                .param("created_before", iso(w.end))
                .all(client)
                .await
                .map_err(|e| GitlabError::new(format!("listing the MRs of `{slug}`"), e))?;
            for mr in list {
                // Each MR once, whatever lists it.
                if !seen.insert((mr.project_id, mr.iid)) {
                    continue;
                }
                times.push(mr.created_at);
                merges.extend(mr.merged_at);
                if w.contains(mr.created_at) {
                    firsts.push(first_response(live, &mr, bots).await?);
                }
            }
        }
        mrs.insert(slug.clone(), times);
        merged.insert(slug.clone(), merges);
        responses.insert(slug.clone(), firsts);
    }
    // Issues and comments after completion: only organizations whose project completed.
    let mut post_project_issues = BTreeMap::new();
    let mut post_project_comments = BTreeMap::new();
    for slug in &slugs {
        let mine = engagements.iter().filter(|e| &e.org == slug);
        let Some(completed) = completed_at(mine, w.as_of) else {
            continue;
        };
        let Some(org) = crate::domain::OrgSlug::parse(slug)
            .ok()
            .and_then(|s| policies.organizations.get(&s).cloned())
        else {
            continue;
        };
        let from = completed.max(w.start);
        let mut comments: BTreeMap<u64, DateTime<Utc>> = BTreeMap::new();
        for user in &org.usernames {
            for (id, at) in comment_events(live, user, slug, from, w.end).await? {
                comments.insert(id, at);
            }
        }
        post_project_comments.insert(slug.clone(), comments.into_values().collect());
        let mut opened: BTreeMap<u64, DateTime<Utc>> = BTreeMap::new();
        for user in &org.usernames {
            for scope in &scopes {
                let list: Vec<ApiIssueBrief> = Get::new(format!("{scope}issues"))
                    .param("scope", "all")
                    .param("state", "all")
                    .param("author_username", user.clone())
                    .param("created_after", iso(from))
                    .param("created_before", iso(w.end))
                    .all(client)
                    .await
                    .map_err(|e| GitlabError::new(format!("listing the issues of `{user}`"), e))?;
                opened.extend(list.into_iter().map(|i| (i.id, i.created_at)));
            }
        }
        post_project_issues.insert(slug.clone(), opened.into_values().collect());
    }
    Ok(Facts {
        engagements,
        mrs,
        merged,
        post_project_issues,
        post_project_comments,
        responses,
        organizations,
        arr: None,
    })
}

/// A person's comments (GitLab's `commented` contribution events, anywhere the token can
/// see) in `[from, end)`, by event id. The events API filters by whole days, both bounds
/// exclusive: the days around the window are asked for and the times are checked here.
async fn comment_events(
    live: &Live,
    user: &str,
    slug: &str,
    from: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(u64, DateTime<Utc>)>, GitlabError> {
    let day_before: NaiveDate = from
        .date_naive()
        .checked_sub_days(Days::new(1))
        .unwrap_or(NaiveDate::MIN);
    let listed: Result<Vec<ApiEvent>, _> = Get::new(format!("users/{}/events", path_id(user)))
        .param("action", "commented")
        .param("after", day_before.to_string())
        .param("before", end.date_naive().to_string())
        .all(&live.client)
        .await
        .map_err(|e| GitlabError::new(format!("reading the comments of `{user}`"), e));
    match listed {
        Ok(events) => Ok(events
            .into_iter()
            .filter(|e| from <= e.created_at && e.created_at < end)
            .map(|e| (e.id, e.created_at))
            .collect()),
        // A username of organizations.yml that GitLab does not know wrote nothing.
        Err(e) if e.is_not_found() => {
            tracing::warn!(user = %user, org = %slug, "no such GitLab user; check organizations.yml");
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
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

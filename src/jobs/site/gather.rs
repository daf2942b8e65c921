//! What the site reads from GitLab besides the report's facts ([`crate::jobs::report::gather`]):
//! the curated issues and the open Co-Create MRs. Both through the outermost watched scopes,
//! each item once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::gitlab::{scope_prefixes, ApiUserRef, Get, GitlabError};
use crate::handlers::Live;
use crate::policy::Policies;

#[derive(Deserialize)]
struct ApiReferences {
    full: String,
}

#[derive(Deserialize)]
struct ApiProjectVisibility {
    visibility: String,
}

#[derive(Deserialize)]
struct ApiListedIssue {
    id: u64,
    iid: u64,
    project_id: u64,
    title: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    confidential: bool,
    created_at: DateTime<Utc>,
    web_url: String,
    references: ApiReferences,
}

#[derive(Deserialize)]
struct ApiOpenMr {
    id: u64,
    iid: u64,
    title: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    draft: bool,
    created_at: DateTime<Utc>,
    web_url: String,
    #[serde(default)]
    reviewers: Vec<ApiUserRef>,
    references: ApiReferences,
}

/// One issue of the curated list: public-safe fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CuratedIssue {
    pub title: String,
    /// The issue's labels without the program's own (organization, stage, engagement).
    pub labels: Vec<String>,
    /// `group/project`.
    pub project: String,
    pub reference: String,
    pub created_at: DateTime<Utc>,
    pub web_url: String,
}

/// One open Co-Create MR (internal: it names the organization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMr {
    pub reference: String,
    pub title: String,
    pub web_url: String,
    pub org: Option<String>,
    pub draft: bool,
    pub created_at: DateTime<Utc>,
    pub reviewers: Vec<String>,
}

/// `group/project#12` → `group/project`.
fn project_of(full: &str) -> String {
    full.rsplit_once(['#', '!'])
        .map(|(p, _)| p)
        .unwrap_or(full)
        .to_owned()
}

/// Whether a label is the program's own bookkeeping (never shown on the public list).
fn internal_label(policies: &Policies, label: &str) -> bool {
    let l = &policies.routing.labels;
    label.starts_with(&l.org_prefix)
        || label.starts_with(&l.stage_prefix)
        || label.starts_with(&l.pathway_prefix)
        || [&l.engagement, &l.intake, &l.onsite, &l.overdue]
            .iter()
            .any(|x| x.as_str() == label)
}

/// The open, non-confidential issues of the public projects of the watched scope carrying
/// any curated label (an issue of a private or internal project is never on the public list,
/// whatever the bot's token can read). Cost: one issue-list page per curated label and
/// outermost watched scope, and one project read per project with such an issue.
pub async fn curated_issues(
    live: &Live,
    policies: &Policies,
) -> Result<Vec<CuratedIssue>, GitlabError> {
    let mut by_id: BTreeMap<u64, (u64, CuratedIssue)> = BTreeMap::new();
    for scope in scope_prefixes(&policies.routing.watch) {
        for label in &policies.routing.site.curated_labels {
            let list: Vec<ApiListedIssue> = Get::new(format!("{scope}issues"))
                .param("scope", "all")
                .param("state", "opened")
                .param("confidential", "false")
                .param("labels", label.clone())
                .all(&live.client)
                .await
                .map_err(|e| {
                    GitlabError::new(format!("listing the issues labelled `{label}`"), e)
                })?;
            let tracking = &policies.routing.tracking.project;
            // Never a tracking or intake issue, whatever its labels and confidentiality.
            let public = |i: &ApiListedIssue| {
                !i.confidential
                    && !project_of(&i.references.full).eq_ignore_ascii_case(tracking)
                    && !i.labels.iter().any(|l| {
                        *l == policies.routing.labels.engagement
                            || *l == policies.routing.labels.intake
                    })
            };
            for i in list.into_iter().filter(public) {
                by_id.entry(i.id).or_insert_with(|| {
                    (
                        i.project_id,
                        CuratedIssue {
                            title: i.title,
                            labels: i
                                .labels
                                .into_iter()
                                .filter(|l| !internal_label(policies, l))
                                .collect(),
                            project: project_of(&i.references.full),
                            reference: format!("{}#{}", project_of(&i.references.full), i.iid),
                            created_at: i.created_at,
                            web_url: i.web_url,
                        },
                    )
                });
            }
        }
    }
    let mut public_projects = BTreeMap::new();
    for project_id in by_id.values().map(|(p, _)| *p) {
        if public_projects.contains_key(&project_id) {
            continue;
        }
        let p: ApiProjectVisibility = Get::new(format!("projects/{project_id}"))
            .one(&live.client)
            .await
            .map_err(|e| GitlabError::new(format!("reading project {project_id}"), e))?;
        public_projects.insert(project_id, p.visibility == "public");
    }
    let mut out: Vec<CuratedIssue> = by_id
        .into_values()
        .filter(|(p, _)| public_projects.get(p).copied().unwrap_or(false))
        .map(|(_, i)| i)
        .collect();
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(a.reference.cmp(&b.reference))
    });
    Ok(out)
}

/// The open Co-Create MRs of the watched scope, oldest first.
/// Cost: one MR-list page per outermost watched scope.
pub async fn open_mrs(live: &Live, policies: &Policies) -> Result<Vec<OpenMr>, GitlabError> {
    let labels = &policies.routing.labels;
    let mut by_id: BTreeMap<u64, OpenMr> = BTreeMap::new();
    for scope in scope_prefixes(&policies.routing.watch) {
        let list: Vec<ApiOpenMr> = Get::new(format!("{scope}merge_requests"))
            .param("scope", "all")
            .param("state", "opened")
            .param("labels", labels.cocreate.clone())
            .all(&live.client)
            .await
            .map_err(|e| GitlabError::new("listing the open Co-Create MRs", e))?;
        for mr in list {
            let project = project_of(&mr.references.full);
            by_id.entry(mr.id).or_insert_with(|| OpenMr {
                reference: format!("{project}!{}", mr.iid),
                title: mr.title,
                web_url: mr.web_url,
                org: crate::decide::org_from_labels(&mr.labels, &labels.org_prefix)
                    .map(str::to_owned),
                draft: mr.draft,
                created_at: mr.created_at,
                reviewers: mr.reviewers.into_iter().map(|r| r.username).collect(),
            });
        }
    }
    let mut out: Vec<OpenMr> = by_id.into_values().collect();
    out.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(a.reference.cmp(&b.reference))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_of_a_reference() {
        assert_eq!(project_of("vendor/product#12"), "vendor/product");
        assert_eq!(project_of("vendor/sub/p!3"), "vendor/sub/p");
        assert_eq!(project_of("odd"), "odd");
    }

    #[test]
    fn the_programs_own_labels_are_internal() {
        let p = Policies::embedded().expect("policies");
        for l in [
            "Co-Create org::example-aero",
            "Co-Create stage::active",
            "Co-Create engagement",
        ] {
            assert!(internal_label(&p, l), "{l}");
        }
        for l in ["co-create", "quick win", "backend"] {
            assert!(!internal_label(&p, l), "{l}");
        }
    }
}

//! Reading the facts the rules need from GitLab.
//!
//! User profiles, customer-group member lists, roster ids and statuses are cached (they change
//! rarely, and GitLab rate-limits user reads); merge requests and notes are always read fresh,
//! because the rules are level-triggered on their current state.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;

use super::endpoints::{
    path_id, scope_prefixes, ApiCommitStatus, ApiIssue, ApiMergeRequest, ApiNote, ApiStatus,
    ApiUser, Get,
};
use super::{Context, GitlabClient, GitlabError, TtlCache};
use crate::decide::commands::BotNote;
use crate::decide::engagement::{linked_mrs, IssueRef, TrackingIssue};
use crate::decide::timeline::Activity;
use crate::decide::{RosterFacts, RosterMember};
use crate::domain::{Availability, MrRef, OrgSlug, UserFacts, UserId};
use crate::messages::Marker;
use crate::policy::Policies;

/// A tracking issue as listed, before the MRs linked in the bot's notes on it are read
/// ([`FactSource::tracking_links`]): enough to know its assignees, not what it links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTracking(pub TrackingIssue);

impl ListedTracking {
    pub fn issue(&self) -> &TrackingIssue {
        &self.0
    }
}

/// Cached fact reads over one GitLab instance.
#[derive(Debug)]
pub struct FactSource {
    bot_username: String,
    users: TtlCache<UserId, ApiUser>,
    group_members: TtlCache<String, Arc<HashSet<UserId>>>,
    user_ids: TtlCache<String, UserId>,
    statuses: TtlCache<String, Availability>,
    /// Per issue: notes read so far and the bot markers in them (see `issue_markers`).
    issue_notes: TtlCache<String, (usize, Arc<Vec<Marker>>)>,
}

impl FactSource {
    pub fn new(bot_username: String) -> Self {
        Self {
            bot_username,
            users: TtlCache::new(Duration::from_secs(3600), 50_000),
            group_members: TtlCache::new(Duration::from_secs(600), 1_000),
            user_ids: TtlCache::new(Duration::from_secs(3600), 10_000),
            statuses: TtlCache::new(Duration::from_secs(300), 10_000),
            issue_notes: TtlCache::new(Duration::from_secs(600), 10_000),
        }
    }

    pub fn bot_username(&self) -> &str {
        &self.bot_username
    }

    /// A user's profile plus the customer groups (from the policies) they belong to.
    pub async fn user(
        &self,
        c: &GitlabClient,
        id: UserId,
        policies: &Policies,
    ) -> Result<UserFacts, GitlabError> {
        let profile = async {
            if let Some(u) = self.users.get(&id) {
                return Ok(u);
            }
            let u: ApiUser = Get::new(format!("users/{id}"))
                .one(c)
                .await
                .doing(|| format!("reading user {id}"))?;
            self.users.put(id, u.clone());
            Ok::<_, GitlabError>(u)
        };
        // The profile and the customer groups' member lists, concurrently (both cached).
        let groups = policies.organizations.all_groups();
        let lists = try_join_all(groups.iter().map(|g| self.group_members(c, g)));
        let (user, members) = futures_util::future::try_join(profile, lists).await?;
        let member_of = groups
            .into_iter()
            .zip(members)
            .filter(|(_, m)| m.contains(&id))
            .map(|(g, _)| g)
            .collect();
        Ok(UserFacts {
            id: user.id,
            username: user.username,
            name: user.name,
            bot: user.bot,
            public_email: user.public_email.filter(|e| !e.is_empty()),
            organization: user.organization.filter(|o| !o.is_empty()),
            member_of,
        })
    }

    async fn group_members(
        &self,
        c: &GitlabClient,
        group: &str,
    ) -> Result<Arc<HashSet<UserId>>, GitlabError> {
        if let Some(m) = self.group_members.get(&group.to_owned()) {
            return Ok(m);
        }
        #[derive(serde::Deserialize)]
        struct Member {
            id: UserId,
        }
        let members: Vec<Member> = Get::new(format!("groups/{}/members/all", path_id(group)))
            .all(c)
            .await
            .doing(|| format!("listing members of customer group `{group}`"))?;
        let set = Arc::new(members.into_iter().map(|m| m.id).collect::<HashSet<_>>());
        self.group_members.put(group.to_owned(), set.clone());
        Ok(set)
    }

    /// The MR as it is now; `None` if it no longer exists.
    pub async fn merge_request(
        &self,
        c: &GitlabClient,
        mr: MrRef,
    ) -> Result<Option<ApiMergeRequest>, GitlabError> {
        match Get::new(format!(
            "projects/{}/merge_requests/{}",
            mr.project_id, mr.iid
        ))
        .one(c)
        .await
        .doing(|| format!("reading {mr}"))
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every note on this MR, oldest first (for whose-turn decisions).
    pub async fn mr_notes(&self, c: &GitlabClient, mr: MrRef) -> Result<Vec<ApiNote>, GitlabError> {
        Get::new(format!(
            "projects/{}/merge_requests/{}/notes",
            mr.project_id, mr.iid
        ))
        .param("sort", "asc")
        .param("order_by", "created_at")
        .all(c)
        .await
        .doing(|| format!("listing notes of {mr}"))
    }

    /// What happened on an MR, from its notes, for the pure rules (whose turn it is, first
    /// response). Notes without a creation time are left out.
    pub fn activity_of(notes: &[ApiNote]) -> Vec<Activity> {
        notes
            .iter()
            .filter_map(|n| {
                Some(Activity {
                    at: n.created_at?,
                    username: n.author.username.clone(),
                    system: n.system,
                    body: n.body.clone(),
                })
            })
            .collect()
    }

    /// Every marker (fixed and keyed) in the bot's notes on this MR.
    pub async fn all_bot_markers(
        &self,
        c: &GitlabClient,
        mr: MrRef,
    ) -> Result<Vec<Marker>, GitlabError> {
        Ok(self.bot_markers_in(&self.mr_notes(c, mr).await?))
    }

    /// The markers (`<!-- cocreate:… -->`) of the bot's own notes among `notes`. Markers in
    /// anyone else's note are text: they count only in notes the bot's own user wrote.
    pub fn bot_markers_in(&self, notes: &[ApiNote]) -> Vec<Marker> {
        self.bot_notes_in(notes)
            .into_iter()
            .flat_map(|n| n.markers)
            .collect()
    }

    /// The bot's own notes among `notes`, with their markers and times.
    pub fn bot_notes_in(&self, notes: &[ApiNote]) -> Vec<BotNote> {
        notes
            .iter()
            .filter(|n| !n.system && n.author.username.eq_ignore_ascii_case(&self.bot_username))
            .map(|n| BotNote {
                markers: Marker::all_in(&n.body),
                at: n.created_at,
            })
            .collect()
    }

    /// The markers of the notes the bot already wrote on this MR.
    pub async fn bot_markers(
        &self,
        c: &GitlabClient,
        mr: MrRef,
    ) -> Result<Vec<Marker>, GitlabError> {
        let mut markers: Vec<Marker> = self
            .all_bot_markers(c, mr)
            .await?
            .into_iter()
            .filter(|m| Marker::ALL.contains(m))
            .collect();
        markers.sort();
        markers.dedup();
        Ok(markers)
    }

    /// Markers (`<!-- cocreate:… -->`) in the bot's notes on an issue.
    ///
    /// Incremental: the markers and the number of notes read are kept for a while per issue,
    /// and the next call reads from the page where the last one stopped (notes listed oldest
    /// first, new ones come last). A tracking issue collects one link note per MR of its
    /// organization, so without this every MR event read all of them. A deleted note can
    /// shift notes to an earlier page, but only notes already read; their markers are kept.
    pub async fn issue_markers(
        &self,
        c: &GitlabClient,
        issue: &IssueRef,
    ) -> Result<Vec<Marker>, GitlabError> {
        let key = issue.to_string();
        let (seen, mut markers) = self
            .issue_notes
            .get(&key)
            .map(|(seen, markers)| (seen, markers.as_ref().clone()))
            .unwrap_or_default();
        let first_page = seen as u64 / 100 + 1;
        let notes: Vec<ApiNote> = Get::new(format!(
            "projects/{}/issues/{}/notes",
            path_id(&issue.project),
            issue.iid
        ))
        .param("sort", "asc")
        .param("order_by", "created_at")
        .all_from(c, first_page)
        .await
        .doing(|| format!("listing notes of issue {issue}"))?;
        let read = (first_page as usize - 1) * 100 + notes.len();
        markers.extend(self.bot_markers_in(&notes));
        markers.sort();
        markers.dedup();
        self.issue_notes.put(key, (read, Arc::new(markers.clone())));
        Ok(markers)
    }

    /// An issue as it is now.
    pub async fn issue(
        &self,
        c: &GitlabClient,
        issue: &IssueRef,
    ) -> Result<Option<ApiIssue>, GitlabError> {
        match Get::new(format!(
            "projects/{}/issues/{}",
            path_id(&issue.project),
            issue.iid
        ))
        .one(c)
        .await
        .doing(|| format!("reading issue {issue}"))
        {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The organization's open tracking issues in the tracking project, with the MRs already
    /// linked to each (markers in the description and in the bot's notes). `None` when the
    /// tracking project does not exist (or the bot cannot see it): engagement tracking is then
    /// skipped, loudly, and MR routing goes on.
    pub async fn tracking_issues(
        &self,
        c: &GitlabClient,
        policies: &Policies,
        org: &OrgSlug,
    ) -> Result<Option<Vec<TrackingIssue>>, GitlabError> {
        let Some(listed) = self.tracking_list(c, policies, org).await? else {
            return Ok(None);
        };
        Ok(Some(self.tracking_links(c, listed).await?))
    }

    /// The organization's open tracking issues as listed (one read): who is assigned, whether
    /// confidential, and the MRs linked in a description the bot wrote. The links in the bot's
    /// notes come from [`FactSource::tracking_links`]. `None` as for `tracking_issues`.
    pub async fn tracking_list(
        &self,
        c: &GitlabClient,
        policies: &Policies,
        org: &OrgSlug,
    ) -> Result<Option<Vec<ListedTracking>>, GitlabError> {
        let labels = &policies.routing.labels;
        let project = &policies.routing.tracking.project;
        let listed = Get::new(format!("projects/{}/issues", path_id(project)))
            .param("state", "opened")
            .param(
                "labels",
                format!("{},{}", labels.engagement, labels.org(org)),
            )
            .all::<ApiIssue>(c)
            .await
            .doing(|| format!("listing the tracking issues of `{org}` in {project}"));
        let issues = match listed {
            Ok(i) => i,
            Err(e) if e.is_not_found() => {
                tracing::error!(%project, "tracking project not found: engagement tracking is skipped; fix `tracking.project` in routing.yml or give the bot access");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let out = issues
            .into_iter()
            .map(|i| {
                // A description counts only when the bot wrote it (the issues it opens
                // itself); an intake's description is the account team's text, and markers
                // there are text.
                let by_bot = i
                    .author
                    .as_ref()
                    .is_some_and(|a| a.username.eq_ignore_ascii_case(&self.bot_username));
                let markers = if by_bot {
                    Marker::all_in(i.description.as_deref().unwrap_or(""))
                } else {
                    Vec::new()
                };
                ListedTracking(TrackingIssue {
                    issue: IssueRef {
                        project: project.clone(),
                        iid: i.iid,
                    },
                    confidential: i.confidential,
                    assignees: i
                        .assignees
                        .iter()
                        .map(|a| (a.id, a.username.clone()))
                        .collect(),
                    linked: linked_mrs(&markers),
                })
            })
            .collect();
        Ok(Some(out))
    }

    /// The listed tracking issues completed with the MRs linked in the bot's notes (one
    /// incremental notes read per issue, all concurrently).
    pub async fn tracking_links(
        &self,
        c: &GitlabClient,
        listed: Vec<ListedTracking>,
    ) -> Result<Vec<TrackingIssue>, GitlabError> {
        let markers =
            try_join_all(listed.iter().map(|t| self.issue_markers(c, &t.0.issue))).await?;
        Ok(listed
            .into_iter()
            .zip(markers)
            .map(|(ListedTracking(mut t), m)| {
                t.linked.extend(linked_mrs(&m));
                t
            })
            .collect())
    }

    /// The latest state of the `cocreate/cca` status on a commit, if any.
    pub async fn cca_status(
        &self,
        c: &GitlabClient,
        project_id: u64,
        sha: &str,
    ) -> Result<Option<String>, GitlabError> {
        let statuses: Vec<ApiCommitStatus> = Get::new(format!(
            "projects/{project_id}/repository/commits/{sha}/statuses"
        ))
        .param("name", crate::decide::STATUS_NAME)
        .one(c)
        .await
        .doing(|| format!("reading the statuses of commit {sha}"))?;
        Ok(statuses
            .into_iter()
            .find(|s| s.name == crate::decide::STATUS_NAME)
            .map(|s| s.status))
    }

    /// The roster's ids, statuses and current Co-Create review load.
    pub async fn roster(
        &self,
        c: &GitlabClient,
        policies: &Policies,
        org: Option<&OrgSlug>,
    ) -> Result<RosterFacts, GitlabError> {
        let routing = &policies.routing;
        let org_label = org.map(|o| routing.labels.org(o));
        // The open MRs and each member's id, then status, all concurrently (ids and statuses
        // are cached).
        let lookups = try_join_all(routing.roster.reviewers.iter().map(|username| async move {
            if !routing.roster.skip_busy {
                let id = self.user_id(c, username).await?;
                return Ok::<_, GitlabError>((username, id, Availability::Available));
            }
            // The status is read by username, so beside the id; a name GitLab does not know
            // has no status either (404), which then does not count.
            let (id, status) =
                futures_util::future::join(self.user_id(c, username), self.status(c, username))
                    .await;
            match id? {
                Some(id) => Ok((username, Some(id), status?)),
                None => Ok((username, None, Availability::Available)),
            }
        }));
        let (open, looked_up) =
            futures_util::future::try_join(self.open_cocreate_mrs(c, policies), lookups).await?;
        let mut members = Vec::new();
        for (username, id, availability) in looked_up {
            let reviews: Vec<&ApiMergeRequest> = open
                .values()
                .filter(|m| {
                    m.reviewers
                        .iter()
                        .any(|r| r.username.eq_ignore_ascii_case(username))
                })
                .collect();
            members.push(RosterMember {
                username: username.clone(),
                id,
                availability,
                open_reviews: reviews.len(),
                org_reviews: reviews
                    .iter()
                    .filter(|m| org_label.as_ref().is_some_and(|l| m.labels.contains(l)))
                    .count(),
            });
        }
        // A roster name GitLab does not know cannot be assigned: keep it out of the choice.
        members.retain(|m| {
            if m.id.is_none() {
                tracing::warn!(username = %m.username, "roster member not found on GitLab; check routing.yml");
            }
            m.id.is_some()
        });
        Ok(RosterFacts {
            members,
            preferred: None,
        })
    }

    /// Open MRs labelled Co-Create in the watched scope (the whole instance when none is set).
    pub async fn open_cocreate_mrs(
        &self,
        c: &GitlabClient,
        policies: &Policies,
    ) -> Result<BTreeMap<MrRef, ApiMergeRequest>, GitlabError> {
        self.mrs_in_scope(
            c,
            policies,
            &[
                ("state", "opened".into()),
                ("labels", policies.routing.labels.cocreate.clone()),
            ],
        )
        .await
    }

    /// MRs of the watched projects and groups matching `params` (every page, 100 per page).
    pub async fn mrs_in_scope(
        &self,
        c: &GitlabClient,
        policies: &Policies,
        params: &[(&'static str, String)],
    ) -> Result<BTreeMap<MrRef, ApiMergeRequest>, GitlabError> {
        // One listing per watched scope, concurrently.
        let lists = try_join_all(scope_prefixes(&policies.routing.watch).into_iter().map(
            |prefix| async move {
                let mut q = Get::new(format!("{prefix}merge_requests"));
                if prefix.is_empty() {
                    // The instance-wide list defaults to the bot's own MRs.
                    q = q.param("scope", "all");
                }
                for (k, v) in params {
                    q = q.param(k, v.clone());
                }
                q.all::<ApiMergeRequest>(c).await.doing(|| {
                    "listing merge requests of the watched projects and groups".to_string()
                })
            },
        ))
        .await?;
        Ok(lists
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    MrRef {
                        project_id: m.project_id,
                        iid: m.iid,
                    },
                    m,
                )
            })
            .collect())
    }

    /// A username's id (cached); `None` when GitLab does not know the name.
    pub async fn user_id(
        &self,
        c: &GitlabClient,
        username: &str,
    ) -> Result<Option<UserId>, GitlabError> {
        if let Some(id) = self.user_ids.get(&username.to_owned()) {
            return Ok(Some(id));
        }
        #[derive(serde::Deserialize)]
        struct U {
            id: UserId,
            username: String,
        }
        let found: Vec<U> = Get::new("users")
            .param("username", username)
            .one(c)
            .await
            .doing(|| format!("looking up user `{username}`"))?;
        let id = found
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .map(|u| u.id);
        if let Some(id) = id {
            self.user_ids.put(username.to_owned(), id);
        }
        Ok(id)
    }

    async fn status(&self, c: &GitlabClient, username: &str) -> Result<Availability, GitlabError> {
        if let Some(a) = self.statuses.get(&username.to_owned()) {
            return Ok(a);
        }
        let s: ApiStatus = Get::new(format!("users/{}/status", path_id(username)))
            .one(c)
            .await
            .doing(|| format!("reading the status of `{username}`"))?;
        let a = match s.availability.as_deref() {
            Some("busy") => Availability::Busy,
            _ => Availability::Available,
        };
        self.statuses.put(username.to_owned(), a);
        Ok(a)
    }
}

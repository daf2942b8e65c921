//! The executor's side of tracking-issue reservations (see [`crate::queue::tracking`]): before
//! an organization's tracking issue is created under a shared lock, its reservation is taken,
//! and an unfinished earlier one is finished by finding its issue in GitLab by the hidden
//! marker of the description the bot would write.

use super::endpoints::{path_id, ApiIssue, Get};
use super::{Context, GitlabClient, GitlabError};
use crate::messages::Marker;
use crate::queue::{QueueError, Reserved, TrackingReservations};

/// How far before an unfinished reservation its issue may have been created (the replicas'
/// clocks differ by well under this).
const CLOCK_SLACK_MS: i64 = 60_000;

/// Why the tracking issue is not created now (the executor's error says it).
#[derive(Debug)]
pub(super) enum NotNow {
    /// The organization's lock is no longer the caller's.
    LockLost,
    /// An earlier creation may still land (for `wait`), or was found and recorded.
    Pending {
        why: String,
        wait: Option<std::time::Duration>,
    },
    /// The reservation store failed.
    Store(QueueError),
    /// Looking for an earlier creation failed.
    Gitlab(GitlabError),
}

/// Takes organization `key`'s reservation for a tracking issue with `description` in
/// `project`: `Ok` when this holder may create it now (the executor then records the iid, or
/// releases or settles the reservation when GitLab answered with an error).
pub(super) async fn reserve(
    client: &GitlabClient,
    key: &str,
    reservations: &dyn TrackingReservations,
    project: &str,
    description: &str,
) -> Result<(), NotNow> {
    let fail = |e: QueueError| match e {
        QueueError::LockLost { .. } => NotNow::LockLost,
        other => NotNow::Store(other),
    };
    let seen = match reservations.reserve(project).await.map_err(fail)? {
        Reserved::Ours => return Ok(()),
        // Read under the lock, the organization has no open tracking issue: the one recorded
        // was closed (or lost its labels). A new engagement gets a new one.
        recorded @ Reserved::Recorded { .. } => recorded,
        Reserved::InFlight {
            at_ms, settles_in, ..
        } => {
            return Err(NotNow::Pending {
                why: format!(
                    "an earlier attempt reserved it at {} and its creation may still land",
                    rfc3339(at_ms)
                ),
                wait: Some(settles_in),
            })
        }
        unfinished @ Reserved::Unfinished { at_ms, .. } => {
            let found = find_by_marker(client, project, description, at_ms)
                .await
                .map_err(NotNow::Gitlab)?;
            if let Some(iid) = found {
                reservations.record(project, iid).await.map_err(fail)?;
                tracing::warn!(org = key, %project, iid, "tracking issue created by an earlier attempt found and recorded; the event is decided again");
                return Err(NotNow::Pending {
                    why: format!(
                        "#{iid} was created by an earlier attempt: recorded, decided again"
                    ),
                    wait: None,
                });
            }
            unfinished
        }
    };
    if reservations.take_over(project, &seen).await.map_err(fail)? {
        Ok(())
    } else {
        Err(NotNow::Pending {
            why: "its reservation changed while it was read".to_owned(),
            wait: None,
        })
    }
}

/// The bot's issue in `project`, created since shortly before `since_ms`, whose description
/// carries the first hidden marker of `description` (the lowest iid when several do).
async fn find_by_marker(
    client: &GitlabClient,
    project: &str,
    description: &str,
    since_ms: i64,
) -> Result<Option<u64>, GitlabError> {
    let Some(marker) = Marker::all_in(description).into_iter().next() else {
        tracing::warn!(%project, "a tracking issue without a hidden marker cannot be looked for; creating it");
        return Ok(None);
    };
    let issues: Vec<ApiIssue> = Get::new(format!("projects/{}/issues", path_id(project)))
        .param("scope", "created_by_me")
        .param("state", "all")
        .param(
            "created_after",
            rfc3339(since_ms.saturating_sub(CLOCK_SLACK_MS)),
        )
        .all(client)
        .await
        .doing(|| format!("looking for an unfinished tracking issue ({marker}) in {project}"))?;
    Ok(issues
        .into_iter()
        .filter(|i| Marker::all_in(i.description.as_deref().unwrap_or("")).contains(&marker))
        .map(|i| i.iid)
        .min())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

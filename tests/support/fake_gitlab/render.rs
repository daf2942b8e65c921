//! JSON renderers (shapes from tests/fixtures/gitlab/api).

use super::*;

pub(super) fn avatar_url(user_id: u64) -> String {
    format!("{WEB_BASE}/uploads/-/system/user/avatar/{user_id}/avatar.png")
}

/// `UserBasic`: users_list.json entries, MR `author` / `reviewers`.
pub(super) fn user_basic_json(user: &User) -> Value {
    let u = &user.spec;
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "locked": false,
        "avatar_url": avatar_url(u.id),
        "web_url": format!("{WEB_BASE}/{}", u.username),
    })
}

/// user_single.json (`GET /users/:id`).
pub(super) fn user_json(user: &User) -> Value {
    let u = &user.spec;
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "locked": false,
        "avatar_url": avatar_url(u.id),
        "web_url": format!("{WEB_BASE}/{}", u.username),
        "created_at": user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "bio": "",
        "bot": u.bot,
        "location": null,
        "public_email": u.public_email.clone().unwrap_or_default(),
        "linkedin": "",
        "twitter": "",
        "discord": "",
        "github": "",
        "website_url": "",
        "organization": u.organization.clone().unwrap_or_default(),
        "job_title": "",
        "pronouns": null,
        "work_information": u.organization,
        "followers": 0,
        "following": 0,
        "local_time": null,
        "is_followed": false,
    })
}

/// `GET /user`: user_single.json plus the private fields GitLab adds for the token's user.
pub(super) fn current_user_json(user: &User) -> Value {
    let body = user_json(user);
    let email = user
        .spec
        .public_email
        .clone()
        .unwrap_or_else(|| format!("{}@example.com", user.spec.username));
    let created_at = body["created_at"].clone();
    let extra = json!({
        "last_sign_in_at": created_at,
        "confirmed_at": created_at,
        "last_activity_on": null,
        "email": email,
        "commit_email": email,
        "theme_id": 1,
        "color_scheme_id": 1,
        "projects_limit": 100000,
        "current_sign_in_at": created_at,
        "identities": [],
        "can_create_group": true,
        "can_create_project": true,
        "two_factor_enabled": false,
        "external": false,
        "private_profile": false,
    });
    merge_objects([body, extra])
}

/// group_members_all.json entries.
pub(super) fn member_json(w: &World, user_id: u64, access_level: u64) -> Value {
    let user = w.user_or_placeholder(user_id);
    let body = user_basic_json(&user);
    let extra = json!({
        "created_at": user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "created_by": user_basic_json(&w.user_or_placeholder(w.bot_id)),
        "expires_at": null,
        "access_level": access_level,
        "group_saml_identity": null,
        "membership_state": "active",
    });
    merge_objects([body, extra])
}

/// Note author as in note_merge_request_single.json (UserBasic plus `email`, `created_at`).
pub(super) fn note_author_json(user: &User) -> Value {
    let mut body = user_basic_json(user);
    body["email"] = json!(user.spec.public_email.clone().unwrap_or_default());
    body["created_at"] = json!(user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true));
    body
}

/// What a note belongs to.
pub(super) struct Noteable {
    /// `"MergeRequest"` or `"Issue"`.
    pub(super) kind: &'static str,
    pub(super) id: u64,
    pub(super) iid: u64,
    pub(super) project_id: u64,
}

impl Noteable {
    pub(super) fn of_mr(mr: &Mr) -> Self {
        Noteable {
            kind: "MergeRequest",
            id: mr.id,
            iid: mr.iid,
            project_id: mr.project_id,
        }
    }

    pub(super) fn of_issue(issue: &Issue) -> Self {
        Noteable {
            kind: "Issue",
            id: issue.id,
            iid: issue.iid,
            project_id: issue.project_id,
        }
    }
}

/// note_merge_request_single.json / notes_issue_list.json entries.
pub(super) fn note_json(w: &World, noteable: &Noteable, note: &Note) -> Value {
    json!({
        "id": note.id,
        "type": null,
        "body": note.body,
        "author": note_author_json(&w.user_or_placeholder(note.author_id)),
        "created_at": fmt_time(note.created_at),
        "updated_at": fmt_time(note.updated_at),
        "system": note.system,
        "noteable_id": noteable.id,
        "noteable_type": noteable.kind,
        "project_id": noteable.project_id,
        "noteable_iid": noteable.iid,
        "commands_changes": {},
        "resolvable": false,
        "confidential": note.internal,
        "internal": note.internal,
        "imported": false,
        "imported_from": "none",
    })
}

/// merge_request_single.json (also used for list entries and the PUT answer).
pub(super) fn mr_json(w: &World, mr: &Mr) -> Value {
    let author = user_basic_json(&w.user_or_placeholder(mr.author_id));
    let reviewers: Vec<Value> = mr
        .reviewer_ids
        .iter()
        .map(|&id| user_basic_json(&w.user_or_placeholder(id)))
        .collect();
    let merged = mr.state == "merged";
    let closed = mr.state == "closed";
    let detailed_merge_status = match (mr.state.as_str(), mr.draft) {
        ("opened", true) => "draft_status",
        ("opened", false) => "mergeable",
        _ => "not_open",
    };
    let updated_at = fmt_time(mr.updated_at);
    let when = |yes: bool, value: Value| if yes { value } else { Value::Null };
    let user_notes_count = mr.notes.iter().filter(|n| !n.system).count();
    let base_sha = format!("{:040x}", mr.id);
    let reference = format!("!{}", mr.iid);
    // Several `json!` calls: one this large exceeds the default macro recursion limit.
    merge_objects([
        json!({
            "id": mr.id,
            "iid": mr.iid,
            "project_id": mr.project_id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "imported": false,
            "imported_from": "none",
            "created_at": fmt_time(mr.created_at),
            "updated_at": updated_at,
            "merged_by": when(merged, author.clone()),
            "merge_user": when(merged, author.clone()),
            "merged_at": when(merged, json!(updated_at)),
            "merge_after": null,
            "prepared_at": fmt_time(mr.created_at),
            "closed_by": when(closed, author.clone()),
            "closed_at": when(closed, json!(updated_at)),
        }),
        json!({
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": user_notes_count,
            "upvotes": 0,
            "downvotes": 0,
            "author": author,
            "assignees": [],
            "assignee": null,
            "reviewers": reviewers,
            "source_project_id": mr.project_id,
            "target_project_id": mr.project_id,
            "labels": mr.labels,
            "draft": mr.draft,
            "work_in_progress": mr.draft,
            "milestone": null,
            "merge_when_pipeline_succeeds": false,
            "merge_status": "can_be_merged",
            "detailed_merge_status": detailed_merge_status,
        }),
        json!({
            "sha": mr.sha,
            "merge_commit_sha": null,
            "squash_commit_sha": null,
            "discussion_locked": null,
            "should_remove_source_branch": null,
            "force_remove_source_branch": true,
            "allow_collaboration": false,
            "allow_maintainer_to_push": false,
            "reference": reference,
            "references": {
                "short": reference,
                "relative": reference,
                "full": format!("{}!{}", mr.project_path, mr.iid),
            },
            "web_url": format!("{WEB_BASE}/{}/-/merge_requests/{}", mr.project_path, mr.iid),
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": null,
                "human_total_time_spent": null,
            },
        }),
        json!({
            "squash": false,
            "task_completion_status": { "count": 0, "completed_count": 0 },
            "has_conflicts": false,
            "blocking_discussions_resolved": true,
            "approvals_before_merge": null,
            "subscribed": false,
            "changes_count": "1",
            "latest_build_started_at": null,
            "latest_build_finished_at": null,
            "first_deployed_to_production_at": null,
            "pipeline": null,
            "head_pipeline": null,
            "diff_refs": {
                "base_sha": base_sha,
                "head_sha": mr.sha,
                "start_sha": base_sha,
            },
            "merge_error": null,
            "first_contribution": false,
            "user": { "can_merge": true },
        }),
    ])
}

/// issue_single.json (also list entries, the POST and PUT answers and link targets).
pub(super) fn issue_json(w: &World, issue: &Issue) -> Value {
    let project_path = w.project_path(issue.project_id);
    let author = user_basic_json(&w.user_or_placeholder(issue.author_id));
    let assignees: Vec<Value> = issue
        .assignee_ids
        .iter()
        .map(|&id| user_basic_json(&w.user_or_placeholder(id)))
        .collect();
    let assignee = assignees.first().cloned().unwrap_or(Value::Null);
    let closed_by = issue.closed_by.map_or(Value::Null, |id| {
        user_basic_json(&w.user_or_placeholder(id))
    });
    let user_notes_count = issue.notes.iter().filter(|n| !n.system).count();
    let reference = format!("#{}", issue.iid);
    let api = format!(
        "{WEB_BASE}/api/v4/projects/{}/issues/{}",
        issue.project_id, issue.iid
    );
    merge_objects([
        json!({
            "id": issue.id,
            "iid": issue.iid,
            "project_id": issue.project_id,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": fmt_time(issue.created_at),
            "updated_at": fmt_time(issue.updated_at),
            "closed_at": issue.closed_at.map(fmt_time),
            "closed_by": closed_by,
            "labels": issue.labels,
            "milestone": null,
            "assignees": assignees,
            "assignee": assignee,
            "author": author,
            "type": "ISSUE",
            "upvotes": 0,
            "downvotes": 0,
            "merge_requests_count": 0,
            "user_notes_count": user_notes_count,
        }),
        json!({
            "subscribed": false,
            "moved_to_id": null,
            "start_date": null,
            "due_date": null,
            "imported": false,
            "imported_from": "none",
            "web_url": format!("{WEB_BASE}/{project_path}/-/issues/{}", issue.iid),
            "references": {
                "short": reference,
                "relative": reference,
                "full": format!("{project_path}#{}", issue.iid),
            },
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": null,
                "human_total_time_spent": null,
            },
            "has_tasks": false,
            "task_status": "",
            "confidential": issue.confidential,
            "discussion_locked": false,
            "issue_type": "issue",
            "severity": "UNKNOWN",
            "_links": {
                "self": api,
                "notes": format!("{api}/notes"),
                "award_emoji": format!("{api}/award_emoji"),
                "project": format!("{WEB_BASE}/api/v4/projects/{}", issue.project_id),
                "closed_as_duplicate_of": null,
            },
            "task_completion_status": { "count": 0, "completed_count": 0 },
        }),
    ])
}

/// resource_label_events_issue.json entries.
pub(super) fn label_event_json(w: &World, issue: &Issue, event: &LabelEvent) -> Value {
    json!({
        "id": event.id,
        "user": user_basic_json(&w.user_or_placeholder(event.user_id)),
        "created_at": fmt_time(event.created_at),
        "resource_type": "Issue",
        "resource_id": issue.id,
        "label": {
            "id": event.label.id,
            "name": event.label.name,
            "color": event.label.color,
            "description": event.label.description,
        },
        "action": event.action,
    })
}

/// Concatenates JSON objects (later keys win).
pub(super) fn merge_objects<const N: usize>(parts: [Value; N]) -> Value {
    let mut out = serde_json::Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            out.extend(map);
        }
    }
    Value::Object(out)
}

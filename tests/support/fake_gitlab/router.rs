//! The router (method + path segments -> handler) and the lookups that return the 404 GitLab
//! would send.

use super::*;

/// Dispatches on method + percent-decoded path segments below `/api/v4/`.
pub(super) fn route(w: &mut World, ctx: &Ctx<'_>, segments: &[&str]) -> HandlerResult {
    match (ctx.method.as_str(), segments) {
        ("GET", ["user"]) => get_current_user(w),
        ("GET", ["users"]) => list_users(w, ctx),
        ("GET", ["users", id]) => get_user(w, id),
        ("GET", ["users", id_or_username, "status"]) => get_user_status(w, id_or_username),
        ("GET", ["users", id_or_username, "events"]) => list_user_events(w, ctx, id_or_username),
        ("GET", ["groups", group, "members", "all"]) => list_group_members_all(w, ctx, group),
        ("GET", ["merge_requests"]) => list_mrs(w, ctx, ListScope::Instance),
        ("GET", ["groups", group, "merge_requests"]) => {
            let full_path = lookup_group(w, group)?.full_path.clone();
            list_mrs(w, ctx, ListScope::Group(full_path))
        }
        ("GET", ["projects", project, "merge_requests"]) => {
            let project_id = lookup_project(w, project)?;
            list_mrs(w, ctx, ListScope::Project(project_id))
        }
        ("GET", ["projects", project, "merge_requests", iid]) => get_mr(w, project, iid),
        ("PUT", ["projects", project, "merge_requests", iid]) => put_mr(w, ctx, project, iid),
        ("GET", ["projects", project, "merge_requests", iid, "notes"]) => {
            list_mr_notes(w, ctx, project, iid)
        }
        ("POST", ["projects", project, "merge_requests", iid, "notes"]) => {
            post_mr_note(w, ctx, project, iid)
        }
        ("GET", ["issues"]) => list_issues(w, ctx, ListScope::Instance),
        ("GET", ["groups", group, "issues"]) => {
            let full_path = lookup_group(w, group)?.full_path.clone();
            list_issues(w, ctx, ListScope::Group(full_path))
        }
        ("GET", ["projects", project, "issues"]) => {
            let project_id = lookup_project(w, project)?;
            list_issues(w, ctx, ListScope::Project(project_id))
        }
        ("POST", ["projects", project, "issues"]) => post_issue(w, ctx, project),
        ("GET", ["projects", project, "issues", iid]) => get_issue(w, project, iid),
        ("PUT", ["projects", project, "issues", iid]) => put_issue(w, ctx, project, iid),
        ("GET", ["projects", project, "issues", iid, "notes"]) => {
            list_issue_notes(w, ctx, project, iid)
        }
        ("POST", ["projects", project, "issues", iid, "notes"]) => {
            post_issue_note(w, ctx, project, iid)
        }
        ("GET", ["projects", project, "issues", iid, "links"]) => list_issue_links(w, project, iid),
        ("POST", ["projects", project, "issues", iid, "links"]) => {
            post_issue_link(w, ctx, project, iid)
        }
        ("GET", ["projects", project, "issues", iid, "resource_label_events"]) => {
            list_issue_label_events(w, ctx, project, iid)
        }
        ("GET", ["projects", project, "issues", iid, "resource_state_events"]) => {
            list_issue_state_events(w, ctx, project, iid)
        }
        ("POST", ["projects", project, "statuses", sha]) => post_status(w, ctx, project, sha),
        ("GET", [kind @ ("groups" | "projects"), owner, "labels"]) => {
            let key = owner_key(w, kind, owner)?;
            list_labels(w, ctx, &key)
        }
        ("POST", [kind @ ("groups" | "projects"), owner, "labels"]) => {
            let key = owner_key(w, kind, owner)?;
            create_label(w, ctx, &key)
        }
        ("PUT", [kind @ ("groups" | "projects"), owner, "labels", id]) => {
            let key = owner_key(w, kind, owner)?;
            update_label(w, ctx, &key, id)
        }
        ("GET", [kind @ ("groups" | "projects"), owner, "hooks"]) => {
            let key = owner_key(w, kind, owner)?;
            super::hook_events::list_hooks(w, ctx, &key)
        }
        ("GET", [kind @ ("groups" | "projects"), owner, "hooks", id, "events"]) => {
            let key = owner_key(w, kind, owner)?;
            super::hook_events::list_events(w, ctx, &key, id)
        }
        ("POST", [kind @ ("groups" | "projects"), owner, "hooks"]) => {
            let key = owner_key(w, kind, owner)?;
            create_hook(w, ctx, &key)
        }
        ("POST", [kind @ ("groups" | "projects"), owner, "hooks", id, "test", trigger]) => {
            let key = owner_key(w, kind, owner)?;
            super::hook_test::test_hook(w, ctx, &key, id, trigger)
        }
        ("PUT", [kind @ ("groups" | "projects"), owner, "hooks", id]) => {
            let key = owner_key(w, kind, owner)?;
            update_hook(w, ctx, &key, id)
        }
        ("GET", ["projects", project, "repository", "commits", sha, "statuses"]) => {
            list_statuses(w, ctx, project, sha)
        }
        _ => repository::route(w, ctx, segments)
            .unwrap_or_else(|| Err(Reply::error(404, "404 Not Found"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Lookups (return the 404 GitLab would send)
// ---------------------------------------------------------------------------------------------

pub(super) fn lookup_user<'w>(w: &'w World, id: &str) -> Result<&'w User, Reply> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| w.users.get(&id))
        .ok_or_else(|| Reply::message(404, "404 User Not Found"))
}

pub(super) fn lookup_user_by_id_or_username<'w>(
    w: &'w World,
    key: &str,
) -> Result<&'w User, Reply> {
    lookup_user(w, key).or_else(|_| {
        w.user_by_username(key)
            .ok_or_else(|| Reply::message(404, "404 User Not Found"))
    })
}

/// Numeric id or full path (already percent-decoded).
pub(super) fn lookup_group<'w>(w: &'w World, key: &str) -> Result<&'w Group, Reply> {
    let found = match key.parse::<u64>() {
        Ok(id) => w.groups.get(&id),
        Err(_) => w
            .groups
            .values()
            .find(|g| g.full_path.eq_ignore_ascii_case(key)),
    };
    found.ok_or_else(|| Reply::message(404, "404 Group Not Found"))
}

/// Numeric id or `path_with_namespace` (already percent-decoded) -> project id.
pub(super) fn lookup_project(w: &World, key: &str) -> Result<u64, Reply> {
    let found = match key.parse::<u64>() {
        Ok(id) => w.projects.contains_key(&id).then_some(id),
        Err(_) => w
            .projects
            .iter()
            .find(|(_, path)| path.eq_ignore_ascii_case(key))
            .map(|(id, _)| *id),
    };
    found.ok_or_else(|| Reply::message(404, "404 Project Not Found"))
}

pub(super) fn find_issue_key(w: &World, project: &str, iid: &str) -> Result<(u64, u64), Reply> {
    let project_id = lookup_project(w, project)?;
    let iid: u64 = iid.parse().map_err(|_| invalid_param("issue_iid"))?;
    if w.issues.contains_key(&(project_id, iid)) {
        Ok((project_id, iid))
    } else {
        Err(Reply::message(404, "404 Not found"))
    }
}

pub(super) fn find_mr_key(w: &World, project: &str, iid: &str) -> Result<(u64, u64), Reply> {
    let project_id = lookup_project(w, project)?;
    let iid: u64 = iid
        .parse()
        .map_err(|_| invalid_param("merge_request_iid"))?;
    if w.mrs.contains_key(&(project_id, iid)) {
        Ok((project_id, iid))
    } else {
        Err(Reply::message(404, "404 Not found"))
    }
}

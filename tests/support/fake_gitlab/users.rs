//! Handlers: users, user status and group members.

use super::*;

/// `GET /user`
pub(super) fn get_current_user(w: &mut World) -> HandlerResult {
    let bot = w.user_or_placeholder(w.bot_id);
    Ok(Reply::json(200, current_user_json(&bot)))
}

/// `GET /users?username=..&search=..`
pub(super) fn list_users(w: &mut World, ctx: &Ctx<'_>) -> HandlerResult {
    let username = ctx.query.get("username").map(str::to_lowercase);
    let search = ctx.query.get("search").map(str::to_lowercase);
    // GitLab's default order is id desc.
    let users: Vec<&User> = w
        .users
        .values()
        .rev()
        .filter(|u| {
            username
                .as_deref()
                .is_none_or(|name| u.spec.username.to_lowercase() == name)
        })
        .filter(|u| {
            search.as_deref().is_none_or(|s| {
                u.spec.username.to_lowercase().contains(s) || u.spec.name.to_lowercase().contains(s)
            })
        })
        .collect();
    paginate(w, ctx, &users, |u| user_basic_json(u))
}

/// `GET /users/:id`
pub(super) fn get_user(w: &mut World, id: &str) -> HandlerResult {
    let user = lookup_user(w, id)?;
    Ok(Reply::json(200, user_json(user)))
}

/// `GET /users/:id_or_username/status`
pub(super) fn get_user_status(w: &mut World, id_or_username: &str) -> HandlerResult {
    let user = lookup_user_by_id_or_username(w, id_or_username)?;
    Ok(Reply::json(
        200,
        json!({
            "emoji": null,
            "availability": user.availability,
            "message": null,
            "message_html": "",
            "clear_status_at": null,
        }),
    ))
}

/// `GET /groups/:id/members/all` (direct plus inherited members, each user once).
pub(super) fn list_group_members_all(w: &mut World, ctx: &Ctx<'_>, group: &str) -> HandlerResult {
    let group = lookup_group(w, group)?;
    let mut lineage: Vec<&Group> = w
        .groups
        .values()
        .filter(|g| {
            g.full_path == group.full_path
                || group.full_path.starts_with(&format!("{}/", g.full_path))
        })
        .collect();
    // The group itself first, then its ancestors from nearest to farthest.
    lineage.sort_by_key(|g| std::cmp::Reverse(g.full_path.len()));
    let mut members: Vec<(u64, u64)> = Vec::new();
    for g in lineage {
        for &(user_id, access_level) in &g.members {
            if !members.iter().any(|(id, _)| *id == user_id) {
                members.push((user_id, access_level));
            }
        }
    }
    paginate(w, ctx, &members, |&(user_id, access_level)| {
        member_json(w, user_id, access_level)
    })
}

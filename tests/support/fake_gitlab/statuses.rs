//! Handlers: commit statuses.

use super::*;

/// A commit status (`POST /projects/:id/statuses/:sha`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub id: u64,
    pub sha: String,
    pub name: String,
    pub status: String,
    pub description: String,
    pub created_at: String,
}

pub(super) fn status_json(w: &World, project_id: u64, st: &CommitStatus) -> Value {
    let mut v = fixture("api/commit_status_create_response.json");
    let bot = &w.users[&w.bot_id].spec;
    v["id"] = json!(st.id);
    v["sha"] = json!(st.sha);
    v["name"] = json!(st.name);
    v["status"] = json!(st.status);
    v["description"] = json!(st.description);
    v["created_at"] = json!(st.created_at);
    v["author"]["id"] = json!(bot.id);
    v["author"]["username"] = json!(bot.username);
    v["author"]["name"] = json!(bot.name);
    v["target_url"] = json!(format!("{WEB_BASE}/projects/{project_id}"));
    v
}

pub(super) fn post_status(w: &mut World, ctx: &Ctx<'_>, project: &str, sha: &str) -> HandlerResult {
    let project_id = lookup_project(w, project)?;
    let params = ctx.params()?;
    let state = params
        .get("state")
        .ok_or_else(|| Reply::error(400, "state is missing"))?
        .to_owned();
    if ![
        "pending", "running", "success", "failed", "canceled", "skipped",
    ]
    .contains(&state.as_str())
    {
        return Err(Reply::error(400, "state does not have a valid value"));
    }
    let name = params
        .get("name")
        .or(params.get("context"))
        .unwrap_or("default")
        .to_owned();
    let list = w.statuses.entry((project_id, sha.to_owned())).or_default();
    if list
        .iter()
        .rev()
        .find(|s| s.name == name)
        .is_some_and(|s| s.status == state)
    {
        // GitLab refuses a transition to the state the status already has.
        return Err(Reply::message(
            400,
            &format!("Cannot transition status via :{state} from :{state}"),
        ));
    }
    let id = w.next_status_id;
    w.next_status_id += 1;
    let created_at = w.clock.tick().to_rfc3339_opts(SecondsFormat::Millis, true);
    let st = CommitStatus {
        id,
        sha: sha.to_owned(),
        name,
        status: state,
        description: params.get("description").unwrap_or("").to_owned(),
        created_at,
    };
    w.statuses
        .entry((project_id, sha.to_owned()))
        .or_default()
        .push(st.clone());
    Ok(Reply::json(201, status_json(w, project_id, &st)))
}

pub(super) fn list_statuses(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    sha: &str,
) -> HandlerResult {
    let project_id = lookup_project(w, project)?;
    let name = ctx.query.get("name").map(str::to_owned);
    let mut items: Vec<CommitStatus> = w
        .statuses
        .get(&(project_id, sha.to_owned()))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| name.as_deref().is_none_or(|n| n == s.name))
        .collect();
    items.reverse();
    paginate(w, ctx, &items, |s| status_json(w, project_id, s))
}

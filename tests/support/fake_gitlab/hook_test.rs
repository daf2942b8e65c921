//! `POST /projects/:id/hooks/:hook_id/test/:trigger` and `POST /groups/:id/hooks/:hook_id/test/:trigger`
//! (GitLab 16.11 / 17.1+): GitLab builds a sample payload for the trigger from the project's
//! data, calls the hook at once (also a disabled one) and records the call in the hook's
//! events. A 2xx answer re-enables the hook (its failure count and `disabled_until` reset);
//! the API then answers `201 {"message": "201 Created"}`, otherwise `422` with the reason.
//! `400` for a trigger that is not one of the hook triggers, `404` for an unknown hook, `429`
//! past 5 tests a minute per owner (GitLab's `web_hook_test` rate limit).
//!
//! Samples (GitLab's `project.merge_requests.first` / `project.issues.first`): the fake builds
//! them for `merge_requests_events` and `issues_events` from the owner's first MR or issue (for
//! a group hook, the first in the group's projects); without one it answers 422 "Ensure the
//! project has merge requests." / "… issues.". Other valid triggers answer 422 "Testing not
//! available for this hook" here (a simplification: GitLab has samples for them too).
//!
//! The call is made outside the world's lock (the receiver may read the fake meanwhile).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{Ctx, Delivery, HandlerResult, Mutex, Reply, World, WEB_BASE};
use chrono::TimeDelta;

/// GitLab's `ProjectHook.triggers` values.
const TRIGGERS: &[&str] = &[
    "push_events",
    "tag_push_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "merge_requests_events",
    "job_events",
    "pipeline_events",
    "wiki_page_events",
    "deployment_events",
    "feature_flag_events",
    "releases_events",
    "emoji_events",
    "resource_access_token_events",
];

/// Tests allowed per owner and minute.
const TESTS_PER_MINUTE: usize = 5;

/// GitLab's webhook timeout (10 s by default).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The route: validates, builds the sample delivery and leaves it for [`finish`], which makes
/// the call once the world is unlocked.
pub(super) fn test_hook(
    w: &mut World,
    _ctx: &Ctx<'_>,
    key: &str,
    id: &str,
    trigger: &str,
) -> HandlerResult {
    let hook = w
        .hooks
        .get(key)
        .and_then(|hs| hs.iter().find(|h| h.id.to_string() == id))
        .cloned()
        .ok_or_else(|| Reply::message(404, "404 Not found"))?;
    if !TRIGGERS.contains(&trigger) {
        return Err(Reply::error(400, "trigger does not have a valid value"));
    }
    let now = w.clock.peek();
    let recent = &mut w.hook_log.tests;
    recent.retain(|(owner, at)| owner != key || now - *at < TimeDelta::minutes(1));
    if recent.iter().filter(|(owner, _)| owner == key).count() >= TESTS_PER_MINUTE {
        return Err(Reply::message(
            429,
            "This endpoint has been requested too many times. Try again later.",
        ));
    }
    recent.push((key.to_owned(), now));
    let projects = w.owner_projects(key);
    let (event, body) = match trigger {
        "merge_requests_events" => {
            let first = w
                .mrs
                .iter()
                .filter(|(k, _)| projects.contains(&k.0))
                .min_by_key(|(_, m)| m.id)
                .map(|(k, _)| *k)
                .ok_or_else(|| Reply::message(422, "Ensure the project has merge requests."))?;
            let mut body = w.mr_hook_body(first, "");
            // A sample is not an action: GitLab's sample has none.
            if let Some(a) = body["object_attributes"].as_object_mut() {
                a.remove("action");
            }
            ("Merge Request Hook", body)
        }
        "issues_events" => {
            let first = w
                .issues
                .iter()
                .filter(|(k, _)| projects.contains(&k.0))
                .min_by_key(|(_, i)| i.id)
                .map(|(k, _)| *k)
                .ok_or_else(|| Reply::message(422, "Ensure the project has issues."))?;
            let (_, event, mut body) = w.issue_hook_body(first, "");
            if let Some(a) = body["object_attributes"].as_object_mut() {
                a.remove("action");
            }
            (event, body)
        }
        _ => return Err(Reply::message(422, "Testing not available for this hook")),
    };
    w.next_delivery += 1;
    w.hook_log.pending_test = Some(Delivery {
        url: hook.url.clone(),
        token: hook.token.clone(),
        event: event.to_owned(),
        uuid: format!("00000000-0000-4000-9000-{:012}", w.next_delivery),
        body,
        hook: format!("{key}/hooks/{}", hook.id),
        trigger: super::hook_events::trigger_of(trigger),
    });
    Ok(Reply::message(201, "201 Created"))
}

impl World {
    /// The project ids an owner (`projects/<id>`, `groups/<id>`) covers.
    fn owner_projects(&self, key: &str) -> Vec<u64> {
        match key.split_once('/') {
            Some(("projects", id)) => id.parse().into_iter().collect(),
            Some(("groups", id)) => {
                let Some(g) = id.parse::<u64>().ok().and_then(|id| self.groups.get(&id)) else {
                    return Vec::new();
                };
                let prefix = format!("{}/", g.full_path);
                self.projects
                    .iter()
                    .filter(|(_, path)| path.starts_with(&prefix))
                    .map(|(&id, _)| id)
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// After the route answered: makes a pending test call, records it (a 2xx re-enables the
/// hook) and turns the answer into 201 or 422.
pub(super) fn finish(world: &Mutex<World>, reply: Reply) -> Reply {
    let Some(d) = super::lock(world).hook_log.pending_test.take() else {
        return reply;
    };
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), "GitLab/18.6.0".into()),
        ("X-Gitlab-Event".into(), d.event.clone()),
        ("X-Gitlab-Event-UUID".into(), d.uuid.clone()),
        ("X-Gitlab-Instance".into(), WEB_BASE.into()),
    ];
    if let Some(t) = &d.token {
        headers.push(("X-Gitlab-Token".into(), t.clone()));
    }
    let body = serde_json::to_vec(&d.body).unwrap_or_default();
    let started = Instant::now();
    let answer = post(&d.url, &headers, &body);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut w = super::lock(world);
    w.record_hook_call(&d, &headers, answer.clone(), ms);
    let status = match &answer {
        Some((s, _)) if (200..300).contains(s) => return reply,
        Some((s, _)) => format!("{s}"),
        None => "internal error".to_owned(),
    };
    let reply = Reply::message(422, &format!("Hook execution failed: {status}"));
    if let Some(call) = w.calls.last_mut() {
        call.status = 422;
    }
    reply
}

/// One blocking HTTP/1.1 POST to an `http://` URL; `None` when nothing answered.
fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> Option<(u16, String)> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?.to_owned();
    let port = url.port_or_known_default()?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()?
        .next()?;
    let mut stream = TcpStream::connect_timeout(&addr, CALL_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(CALL_TIMEOUT)).ok()?;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        &url[url::Position::BeforePath..],
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

//! Our webhooks as GitLab sees them. After four failed deliveries in a row GitLab stops
//! calling a hook for a while (`alert_status: temporarily_disabled`, until `disabled_until`,
//! up to 24 h) and, after 40, for good (`disabled`); it never says so to the receiver. `serve`
//! reads its hooks (found by `setup`'s URL in the watched scope and the tracking project)
//! every `--hook-check` and publishes what it found: the gauge
//! `cocreate_webhook_disabled{hook="groups/50/hooks/7"}` (1 while disabled), a warning in
//! `/readyz`'s body naming the hook and until when, and one WARN log line per change.
//!
//! Readiness itself does not change: a disabled hook is not fixed by taking this instance out
//! of rotation; on the contrary, re-enabling it (GitLab's test delivery, see
//! [`reenable_hint`]) needs `serve` to answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::decide::setup::wanted_hooks;
use crate::gitlab::{ApiHook, Get, GitlabClient};
use crate::policy::Policies;

/// How to get a disabled hook called again.
pub fn reenable_hint() -> &'static str {
    "once serve is reachable, re-enable it: run `cocreate setup` (it sends GitLab's test delivery, \
     which re-enables a hook whose test succeeds), or in GitLab: Settings > Webhooks > Test \
     (a successful test re-enables it), or POST /<owner>/hooks/<id>/test/<trigger>"
}

/// What to say about a hook in state `alert_status` (`executable`, `temporarily_disabled`,
/// `disabled`): nothing while GitLab calls it.
pub fn warning(hook: &str, alert_status: &str, disabled_until: Option<&str>) -> Option<String> {
    match alert_status {
        "executable" | "" => None,
        "temporarily_disabled" => Some(format!(
            "webhook {hook} is temporarily disabled by GitLab after failing deliveries (until {}); {}",
            disabled_until.unwrap_or("unknown"),
            reenable_hint()
        )),
        other => Some(format!(
            "webhook {hook} is disabled by GitLab ({other}) after too many failed deliveries; {}",
            reenable_hint()
        )),
    }
}

/// One hook of ours and its state in GitLab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookStatus {
    /// `groups/50/hooks/7`.
    pub hook: String,
    pub alert_status: String,
    pub disabled_until: Option<String>,
}

impl HookStatus {
    pub fn warning(&self) -> Option<String> {
        warning(
            &self.hook,
            &self.alert_status,
            self.disabled_until.as_deref(),
        )
    }
}

/// Reads the state of every hook with `url` in the watched scope, the tracking project and,
/// when policies come from a GitLab project, that project (one list page per owner).
pub async fn read(
    client: &GitlabClient,
    policies: &Policies,
    url: &str,
    policy_project: Option<&str>,
) -> Result<Vec<HookStatus>, String> {
    let routing = &policies.routing;
    let policy = policy_project.map(|project| crate::decide::setup::PolicySource {
        project,
        // Only the owner matters here.
        reference: "",
    });
    let mut out = Vec::new();
    for wanted in wanted_hooks(&routing.watch, &routing.tracking.project, policy.as_ref()) {
        let hooks: Vec<ApiHook> = Get::new(format!("{}/hooks", wanted.owner))
            .all(client)
            .await
            .map_err(|e| format!("GET {}/hooks: {e}", wanted.owner))?;
        out.extend(
            hooks
                .into_iter()
                .filter(|h| h.url == url)
                .map(|h| HookStatus {
                    hook: format!("{}/hooks/{}", wanted.owner, h.id),
                    alert_status: h.alert_status.unwrap_or_else(|| "executable".to_owned()),
                    disabled_until: h.disabled_until,
                }),
        );
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct Seen {
    hooks: BTreeMap<String, HookStatus>,
    /// Why the last check failed (cleared by one that succeeds).
    error: Option<String>,
    checked: bool,
}

/// The last check's outcome, shared with `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct HookHealth {
    seen: Arc<Mutex<Seen>>,
}

impl HookHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A check found `hooks`: sets the gauges, and logs each hook whose state changed (and a
    /// disabled one the first time it is seen).
    pub fn record(&self, hooks: Vec<HookStatus>) {
        let mut seen = self.lock();
        for h in &hooks {
            let disabled = h.warning();
            metrics::gauge!("cocreate_webhook_disabled", "hook" => h.hook.clone())
                .set(if disabled.is_some() { 1.0 } else { 0.0 });
            let before = seen.hooks.get(&h.hook);
            let changed = match before {
                Some(b) => b.alert_status != h.alert_status || b.disabled_until != h.disabled_until,
                None => disabled.is_some(),
            };
            if changed {
                match &disabled {
                    Some(why) => {
                        tracing::warn!(hook = %h.hook, alert_status = %h.alert_status, "{why}")
                    }
                    None => {
                        tracing::warn!(hook = %h.hook, "webhook {} is executable again: GitLab calls it", h.hook)
                    }
                }
            }
        }
        for gone in seen
            .hooks
            .keys()
            .filter(|k| !hooks.iter().any(|h| &h.hook == *k))
        {
            metrics::gauge!("cocreate_webhook_disabled", "hook" => gone.clone()).set(0.0);
        }
        if seen.error.take().is_some() {
            tracing::warn!("webhook state is readable again");
        }
        seen.hooks = hooks.into_iter().map(|h| (h.hook.clone(), h)).collect();
        seen.checked = true;
    }

    /// A check failed (GitLab down, the token without the role): keeps the last state.
    pub fn record_error(&self, error: String) {
        let mut seen = self.lock();
        if seen.error.as_deref() != Some(error.as_str()) {
            tracing::warn!(%error, "cannot read the state of our webhooks; keeping the last one");
        }
        seen.error = Some(error);
    }

    /// The warnings for `/readyz`: one per disabled hook, and a failed check.
    pub fn warnings(&self) -> Vec<String> {
        let seen = self.lock();
        let mut out: Vec<String> = seen
            .hooks
            .values()
            .filter_map(HookStatus::warning)
            .collect();
        if let Some(e) = &seen.error {
            out.push(format!("cannot read the state of our webhooks: {e}"));
        }
        out
    }

    /// The hooks as last read (`None` before the first check).
    pub fn hooks(&self) -> Option<Vec<HookStatus>> {
        let seen = self.lock();
        seen.checked.then(|| seen.hooks.values().cloned().collect())
    }
}

/// What the periodic check needs.
#[derive(Debug, Clone)]
pub struct HookCheck {
    /// The URL `setup` registered (serve's public `/webhook`): it identifies our hooks.
    pub webhook_url: String,
    pub every: Duration,
    /// The policy project, when policies come from GitLab (its hook sends the pushes).
    pub policy_project: Option<String>,
}

/// Checks now and every `check.every` until `stop`. `policies` gives the policies in force
/// at each check (they may be reloaded).
pub async fn run(
    client: GitlabClient,
    policies: impl Fn() -> Arc<Policies> + Send,
    check: HookCheck,
    health: HookHealth,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let policy_project = check.policy_project.as_deref();
        match read(&client, &policies(), &check.webhook_url, policy_project).await {
            Ok(hooks) => health.record(hooks),
            Err(e) => health.record_error(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(check.every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(hook: &str, alert: &str, until: Option<&str>) -> HookStatus {
        HookStatus {
            hook: hook.into(),
            alert_status: alert.into(),
            disabled_until: until.map(str::to_owned),
        }
    }

    #[test]
    fn a_disabled_hook_is_a_warning_naming_it_and_until_when_until_it_is_executable_again() {
        let h = HookHealth::default();
        assert_eq!(h.hooks(), None);
        h.record(vec![status("groups/50/hooks/7", "executable", None)]);
        assert!(h.warnings().is_empty());
        h.record(vec![status(
            "groups/50/hooks/7",
            "temporarily_disabled",
            Some("2026-12-01T13:00:00Z"),
        )]);
        let w = h.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("groups/50/hooks/7"), "{w:?}");
        assert!(w[0].contains("until 2026-12-01T13:00:00Z"), "{w:?}");
        assert!(w[0].contains("cocreate setup"), "{w:?}");
        h.record_error("GET groups/50/hooks: 502".into());
        assert_eq!(
            h.warnings().len(),
            2,
            "the last state is kept, the failure said"
        );
        h.record(vec![status("groups/50/hooks/7", "disabled", None)]);
        let w = h.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("(disabled)"), "{w:?}");
        h.record(vec![status("groups/50/hooks/7", "executable", None)]);
        assert!(h.warnings().is_empty());
        assert_eq!(h.hooks().map(|v| v.len()), Some(1));
    }
}

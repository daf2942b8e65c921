//! `cocreate setup`: the labels the tool uses (with colors and descriptions) and its webhook, on
//! the watched groups and projects. Pure planning: existing state in, the missing writes out, so
//! a second run plans nothing.

use serde::Serialize;

use super::Action;
use crate::policy::Policies;

/// A label the tool wants to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelSpec {
    pub name: String,
    pub color: String,
    pub description: String,
}

/// A label as GitLab has it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ExistingLabel {
    pub id: u64,
    pub name: String,
    pub color: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A webhook as GitLab has it (its secret token cannot be read back).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ExistingHook {
    pub id: u64,
    pub url: String,
    #[serde(default)]
    pub merge_requests_events: bool,
    #[serde(default)]
    pub issues_events: bool,
    #[serde(default)]
    pub confidential_issues_events: bool,
    #[serde(default)]
    pub note_events: bool,
    #[serde(default)]
    pub confidential_note_events: bool,
}

/// The events the tool subscribes to.
pub const HOOK_EVENTS: [&str; 5] = [
    "merge_requests_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
];

impl ExistingHook {
    fn has_our_events(&self) -> bool {
        self.merge_requests_events
            && self.issues_events
            && self.confidential_issues_events
            && self.note_events
            && self.confidential_note_events
    }
}

/// A secret carried by an action: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Every label the tool writes, from the policies.
pub fn wanted_labels(policies: &Policies) -> Vec<LabelSpec> {
    let l = &policies.routing.labels;
    let spec = |name: &str, color: &str, description: &str| LabelSpec {
        name: name.to_owned(),
        color: color.to_owned(),
        description: description.to_owned(),
    };
    let mut out = vec![
        spec(
            &l.cocreate,
            "#6699cc",
            "Merge request from a Co-Create organization (set by cocreate)",
        ),
        spec(
            &l.community,
            "#a8d695",
            "Contribution from outside the company (set by cocreate)",
        ),
        spec(
            &l.cca_signed,
            "#009966",
            "A Corporate Contributor Agreement is on file (set by cocreate)",
        ),
        spec(
            &l.cca_missing,
            "#dc143c",
            "No Corporate Contributor Agreement on file: not mergeable yet (set by cocreate)",
        ),
        spec(
            &l.cca_expired,
            "#ed9121",
            "The Corporate Contributor Agreement expired (set by cocreate)",
        ),
    ];
    for o in policies.organizations.all() {
        out.push(spec(
            &l.org(&o.slug),
            "#8fbc8f",
            &format!("Co-Create organization `{}` (set by cocreate)", o.slug),
        ));
    }
    out
}

/// Creates missing labels and repairs color or description drift; never deletes.
pub fn plan_labels(owner: &str, existing: &[ExistingLabel], wanted: &[LabelSpec]) -> Vec<Action> {
    wanted
        .iter()
        .filter_map(|w| match existing.iter().find(|e| e.name == w.name) {
            None => Some(Action::CreateLabel {
                owner: owner.to_owned(),
                name: w.name.clone(),
                color: w.color.clone(),
                description: w.description.clone(),
            }),
            Some(e)
                if !e.color.eq_ignore_ascii_case(&w.color)
                    || e.description.as_deref().unwrap_or("") != w.description =>
            {
                Some(Action::UpdateLabel {
                    owner: owner.to_owned(),
                    id: e.id,
                    name: w.name.clone(),
                    color: w.color.clone(),
                    description: w.description.clone(),
                })
            }
            Some(_) => None,
        })
        .collect()
}

/// Registers the webhook (with the secret) or turns on events missing from an existing one.
pub fn plan_hook(
    owner: &str,
    existing: &[ExistingHook],
    url: &str,
    token: Option<&Secret>,
) -> Vec<Action> {
    match existing.iter().find(|h| h.url == url) {
        None => vec![Action::CreateHook {
            owner: owner.to_owned(),
            url: url.to_owned(),
            token: token.cloned(),
        }],
        Some(h) if !h.has_our_events() => vec![Action::UpdateHook {
            owner: owner.to_owned(),
            id: h.id,
            url: url.to_owned(),
        }],
        Some(_) => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_created_repaired_and_left_alone() {
        let wanted = vec![
            LabelSpec {
                name: "A".into(),
                color: "#111111".into(),
                description: "a".into(),
            },
            LabelSpec {
                name: "B".into(),
                color: "#222222".into(),
                description: "b".into(),
            },
            LabelSpec {
                name: "C".into(),
                color: "#333333".into(),
                description: "c".into(),
            },
        ];
        let existing = vec![
            ExistingLabel {
                id: 1,
                name: "B".into(),
                color: "#222222".into(),
                description: Some("b".into()),
            },
            ExistingLabel {
                id: 2,
                name: "C".into(),
                color: "#FF0000".into(),
                description: Some("c".into()),
            },
            ExistingLabel {
                id: 3,
                name: "people's".into(),
                color: "#000000".into(),
                description: None,
            },
        ];
        let plan = plan_labels("groups/vendor", &existing, &wanted);
        assert_eq!(plan.len(), 2);
        assert!(matches!(&plan[0], Action::CreateLabel { name, .. } if name == "A"));
        assert!(matches!(&plan[1], Action::UpdateLabel { id: 2, .. }));
    }

    #[test]
    fn hook_is_created_once_and_repaired() {
        let secret = Secret("s3cret".into());
        let plan = plan_hook(
            "projects/2",
            &[],
            "https://bot.example.com/webhook",
            Some(&secret),
        );
        assert_eq!(plan.len(), 1);
        assert!(!format!("{plan:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&plan)
            .expect("json")
            .contains("s3cret"));
        let ours = ExistingHook {
            id: 7,
            url: "https://bot.example.com/webhook".into(),
            merge_requests_events: true,
            issues_events: true,
            confidential_issues_events: true,
            note_events: true,
            confidential_note_events: true,
        };
        assert!(plan_hook(
            "projects/2",
            std::slice::from_ref(&ours),
            &ours.url,
            Some(&secret)
        )
        .is_empty());
        let partial = ExistingHook {
            note_events: false,
            ..ours.clone()
        };
        assert!(matches!(
            plan_hook("projects/2", &[partial], &ours.url, None).as_slice(),
            [Action::UpdateHook { id: 7, .. }]
        ));
    }
}

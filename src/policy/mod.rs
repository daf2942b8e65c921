//! The user-facing configuration: `policies/*.yml`.
//!
//! Each file has its own module with serde types (`deny_unknown_fields`, so a typo is an error,
//! not a silently ignored key) and a validation step that turns the raw document into checked
//! domain types. Every error names the file, line and column, and says what to do.

mod agreements;
mod organizations;
mod routing;
mod segmentation;

use std::fmt;
use std::path::{Path, PathBuf};

pub use agreements::{Agreement, Agreements};
pub use organizations::{AccountTeam, Organization, Organizations, Tier};
pub use routing::{
    AccountTeamMode, EngagementStalls, Labels, Recognition, ReviewSlo, Roster, Routing, Site,
    Strategy, Tracking, Watch,
};
pub use segmentation::{Segmentation, Subscription, Targets, TierRules, Weights};

/// The example policies shipped in `policies/`, embedded so the binary runs on a fresh machine.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "organizations.yml",
        include_str!("../../policies/organizations.yml"),
    ),
    ("routing.yml", include_str!("../../policies/routing.yml")),
    (
        "agreements.yml",
        include_str!("../../policies/agreements.yml"),
    ),
    (
        "segmentation.yml",
        include_str!("../../policies/segmentation.yml"),
    ),
];

/// Every policy, loaded and validated.
#[derive(Debug, Clone)]
pub struct Policies {
    pub organizations: Organizations,
    pub routing: Routing,
    /// CCAs on file (`agreements.yml` is optional: without it, no organization has one).
    pub agreements: Agreements,
    /// Scoring weights, tiers and program targets (`segmentation.yml` is optional: without it,
    /// the action plan's values).
    pub segmentation: Segmentation,
    /// Where they came from (a directory, or "embedded examples"), for logs and `/readyz`.
    pub source: String,
}

/// One problem in one policy file, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in a policy directory (we report every one, not just the first).
#[derive(Debug, Clone, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A validation error found after parsing, located by a `Spanned` value.
pub(crate) struct Located {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl Located {
    pub(crate) fn at<T>(span: &serde_saphyr::Spanned<T>, message: impl Into<String>) -> Self {
        Self {
            line: span.referenced.line(),
            column: span.referenced.column(),
            message: message.into(),
        }
    }
}

fn parse_file<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, PolicyError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let loc = e.location();
        PolicyError {
            file: file.to_owned(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: first_line(&e.to_string()),
        }
    })
}

/// saphyr renders a source snippet after the message; keep the message, the position is ours.
fn first_line(rendered: &str) -> String {
    rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(rendered)
        .trim()
        .to_owned()
}

impl Policies {
    /// Loads and validates `organizations.yml`, `routing.yml` and (optional) `agreements.yml`.
    pub fn load(dir: &Path) -> Result<Self, PolicyErrors> {
        if !dir.is_dir() {
            return Err(PolicyErrors(vec![PolicyError {
                file: dir.to_owned(),
                line: None,
                column: None,
                message: "is not a directory; point COCREATE_POLICIES (or --policies) at the directory holding organizations.yml and routing.yml".into(),
            }]));
        }
        let read = |name: &str| -> Result<(PathBuf, String), PolicyError> {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|t| (path.clone(), t))
                .map_err(|e| PolicyError {
                    file: path,
                    line: None,
                    column: None,
                    message: format!("cannot be read ({e}); every policy directory needs this file, copy it from the examples in the cocreate repository"),
                })
        };
        let files = [read("organizations.yml"), read("routing.yml")];
        let mut errors = Vec::new();
        let mut texts = Vec::new();
        for optional in ["agreements.yml", "segmentation.yml"] {
            if dir.join(optional).exists() {
                match read(optional) {
                    Ok(t) => texts.push(t),
                    Err(e) => errors.push(e),
                }
            }
        }
        for f in files {
            match f {
                Ok(t) => texts.push(t),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        let sources: Vec<(PathBuf, &str)> =
            texts.iter().map(|(p, t)| (p.clone(), t.as_str())).collect();
        Self::from_sources(&sources, dir.display().to_string())
    }

    /// The example policies compiled into the binary.
    pub fn embedded() -> Result<Self, PolicyErrors> {
        let sources: Vec<(PathBuf, &str)> = EMBEDDED
            .iter()
            .map(|(n, t)| (PathBuf::from(format!("policies/{n}")), *t))
            .collect();
        Self::from_sources(&sources, "embedded example policies".into())
    }

    /// Parses and validates named sources, e.g. `("organizations.yml", text)`.
    pub fn from_sources(sources: &[(PathBuf, &str)], source: String) -> Result<Self, PolicyErrors> {
        let find = |name: &str| {
            sources
                .iter()
                .find(|(p, _)| p.file_name().is_some_and(|f| f == name))
        };
        let mut errors = Vec::new();
        let missing = |name: &str| PolicyError {
            file: PathBuf::from(name),
            line: None,
            column: None,
            message: "is missing".into(),
        };
        let orgs = match find("organizations.yml") {
            Some((path, text)) => parse_file::<organizations::OrganizationsDoc>(path, text)
                .map_err(|e| vec![e])
                .and_then(|doc| organizations::validate(doc).map_err(|ls| locate(path, ls)))
                .map_err(|es| errors.extend(es))
                .ok(),
            None => {
                errors.push(missing("organizations.yml"));
                None
            }
        };
        let routing = match find("routing.yml") {
            Some((path, text)) => parse_file::<routing::RoutingDoc>(path, text)
                .map_err(|e| vec![e])
                .and_then(|doc| routing::validate(doc).map_err(|ls| locate(path, ls)))
                .map_err(|es| errors.extend(es))
                .ok(),
            None => {
                errors.push(missing("routing.yml"));
                None
            }
        };
        let agreements = match find("agreements.yml") {
            Some((path, text)) => parse_file::<agreements::AgreementsDoc>(path, text)
                .map_err(|e| vec![e])
                .and_then(|doc| {
                    agreements::validate(doc, orgs.as_ref()).map_err(|ls| locate(path, ls))
                })
                .map_err(|es| errors.extend(es))
                .ok(),
            None => Some(Agreements::default()),
        };
        let segmentation = match find("segmentation.yml") {
            Some((path, text)) => parse_file::<segmentation::SegmentationDoc>(path, text)
                .map_err(|e| vec![e])
                .and_then(|doc| segmentation::validate(doc).map_err(|ls| locate(path, ls)))
                .map_err(|es| errors.extend(es))
                .ok(),
            None => Some(Segmentation::default()),
        };
        match (orgs, routing, agreements, segmentation) {
            (Some(organizations), Some(routing), Some(agreements), Some(segmentation))
                if errors.is_empty() =>
            {
                Ok(Self {
                    organizations,
                    routing,
                    agreements,
                    segmentation,
                    source,
                })
            }
            _ => Err(PolicyErrors(errors)),
        }
    }
}

fn locate(path: &Path, located: Vec<Located>) -> Vec<PolicyError> {
    located
        .into_iter()
        .map(|l| PolicyError {
            file: path.to_owned(),
            line: Some(l.line),
            column: Some(l.column),
            message: l.message,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_examples_are_valid() {
        let p = Policies::embedded().expect("the shipped example policies must validate");
        assert!(!p.organizations.all().is_empty());
        assert!(!p.routing.roster.reviewers.is_empty());
    }

    #[test]
    fn repository_policies_dir_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        Policies::load(&dir).expect("policies/ must pass `policies check`");
    }

    fn errors_of(org_yaml: &str) -> Vec<String> {
        let routing = EMBEDDED[1].1;
        let sources = vec![
            (PathBuf::from("organizations.yml"), org_yaml),
            (PathBuf::from("routing.yml"), routing),
        ];
        match Policies::from_sources(&sources, "test".into()) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn agreements_are_checked_against_organizations() {
        let sources = vec![
            (PathBuf::from("organizations.yml"), EMBEDDED[0].1),
            (PathBuf::from("routing.yml"), EMBEDDED[1].1),
            (
                PathBuf::from("agreements.yml"),
                "agreements:\n  - organization: example-nope\n    signed: 2026-01-01\n    version: v\n    reference: r\n  - organization: example-aero\n    signed: 2026-13-01\n    version: v\n    reference: r\n",
            ),
        ];
        let errs: Vec<String> = match Policies::from_sources(&sources, "t".into()) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        };
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "agreements.yml:2:19: organization `example-nope` is not in organizations.yml"
            ),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("agreements.yml:7:13: `signed` must be a date"),
            "{errs:?}"
        );
    }

    fn segmentation_errors(yaml: &str) -> Vec<String> {
        let sources = vec![
            (PathBuf::from("organizations.yml"), EMBEDDED[0].1),
            (PathBuf::from("routing.yml"), EMBEDDED[1].1),
            (PathBuf::from("segmentation.yml"), yaml),
        ];
        match Policies::from_sources(&sources, "t".into()) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_site_settings_default_and_are_checked() {
        let p = Policies::embedded().expect("valid");
        assert_eq!(p.routing.site, super::Site::default());
        assert_eq!(
            p.routing.site.curated_labels,
            ["co-create", "quick win", "Seeking community contributions"]
        );
        let errors = |site: &str| -> Vec<String> {
            let routing = format!(
                "{}\n{site}",
                EMBEDDED[1].1.split("\nsite:").next().unwrap_or("")
            );
            let sources = vec![
                (PathBuf::from("organizations.yml"), EMBEDDED[0].1),
                (PathBuf::from("routing.yml"), routing.as_str()),
            ];
            match Policies::from_sources(&sources, "t".into()) {
                Ok(_) => vec![],
                Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
            }
        };
        assert!(errors("site:\n  issue_list_url: https://cocreate.example.com/\n").is_empty());
        let e = errors("site:\n  curated_label: [x]\n");
        assert!(e.len() == 1 && e[0].contains("curated_label"), "{e:?}");
        let e = errors("site:\n  issue_list_url: javascript:alert(1)\n");
        assert!(e.len() == 1 && e[0].contains("not an http(s) URL"), "{e:?}");
        assert!(errors(
            "site:\n  contribution_guide_url: https://docs.example.com/contributing/\n"
        )
        .is_empty());
        let e = errors("site:\n  contribution_guide_url: docs/contributing.md\n");
        assert!(
            e.len() == 1
                && e[0].contains("site.contribution_guide_url")
                && e[0].contains("write the full address"),
            "{e:?}"
        );
        let e = errors("site:\n  contribution_guide: https://docs.example.com/\n");
        assert!(e.len() == 1 && e[0].contains("contribution_guide"), "{e:?}");
    }

    #[test]
    fn shipped_segmentation_equals_the_built_in_default() {
        let p = Policies::embedded().expect("valid");
        assert_eq!(p.segmentation, Segmentation::default());
    }

    #[test]
    fn segmentation_errors_name_file_line_and_column() {
        let shipped = EMBEDDED[3].1;
        let bad_month =
            shipped.replace("fiscal_year_start_month: 2", "fiscal_year_start_month: 13");
        let errs = segmentation_errors(&bad_month);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("segmentation.yml:7:26: fiscal_year_start_month must be 1-12"),
            "{errs:?}"
        );
        let typo = shipped.replace("  projects: 7 ", "  projcts: 7 ");
        let errs = segmentation_errors(&typo);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("segmentation.yml:10:3: "), "{errs:?}");
        assert!(errs[0].contains("projcts"), "{errs:?}");
        let bad = shipped
            .replace(
                "subscriptions: [premium, ultimate]",
                "subscriptions: [premium, platinum]",
            )
            .replace("seats: 10\n", "seats: -1\n");
        let errs = segmentation_errors(&bad);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("weights.seats must be a number of 0 or more"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("`platinum` is not a subscription"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("segmentation.yml:44:30: "), "{errs:?}");
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let errs = errors_of(
            "organizations:\n  - slug: example-aero\n    name: Example Aero\n    tier: 1\n    usernmes: [a]\n",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("organizations.yml:5:5: "), "{errs:?}");
        assert!(errs[0].contains("usernmes"), "{errs:?}");
    }

    #[test]
    fn bad_slug_and_duplicate_and_tier_are_all_reported_with_positions() {
        let errs = errors_of(concat!(
            "organizations:\n",
            "  - slug: Example_Aero\n    name: A\n    tier: 1\n    usernames: [a]\n",
            "  - slug: dup\n    name: B\n    tier: 4\n    usernames: [b]\n",
            "  - slug: dup\n    name: C\n    tier: 2\n    usernames: [a]\n",
        ));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs[0].starts_with("organizations.yml:2:11: slug `Example_Aero`"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("organizations.yml:8:11: tier must be 1, 2 or 3"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("organizations.yml:10:11: slug `dup` is used twice"),
            "{errs:?}"
        );
        assert!(
            errs[3].contains("username `a` is claimed by both"),
            "{errs:?}"
        );
    }

    #[test]
    fn organization_without_any_recognition_rule_is_an_error() {
        let errs = errors_of("organizations:\n  - slug: lonely\n    name: L\n    tier: 2\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("no way to recognise its people"),
            "{errs:?}"
        );
    }
}

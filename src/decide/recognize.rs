//! Which Co-Create organization, if any, a GitLab user belongs to.

use serde::Serialize;

use crate::domain::{OrgSlug, UserFacts};
use crate::policy::Organizations;

/// Why we believe a user belongs to an organization (strongest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum Evidence {
    Username,
    Group(String),
    EmailDomain(String),
    /// Only when the organization's policy opts in with `trust_profile_organization`.
    ProfileOrganization,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recognition {
    pub slug: OrgSlug,
    pub evidence: Evidence,
}

/// Recognises the user's organization: by username, then customer-group membership, then the
/// verified public e-mail's domain, then (opt-in only) the free-text profile organization.
/// The first organization in file order wins within one kind of evidence.
pub fn recognize(user: &UserFacts, orgs: &Organizations) -> Option<Recognition> {
    let username = user.username.to_ascii_lowercase();
    if let Some(r) = orgs.all().iter().find(|o| o.usernames.contains(&username)) {
        return Some(Recognition {
            slug: r.slug.clone(),
            evidence: Evidence::Username,
        });
    }
    if let Some(r) = orgs.all().iter().find_map(|o| {
        o.groups
            .iter()
            .find(|g| user.member_of.contains(g))
            .map(|g| Recognition {
                slug: o.slug.clone(),
                evidence: Evidence::Group(g.clone()),
            })
    }) {
        return Some(r);
    }
    if let Some(domain) = user
        .public_email
        .as_deref()
        .and_then(|e| e.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
    {
        if let Some(o) = orgs
            .all()
            .iter()
            .find(|o| o.email_domains.contains(&domain))
        {
            return Some(Recognition {
                slug: o.slug.clone(),
                evidence: Evidence::EmailDomain(domain),
            });
        }
    }
    let profile = user.organization.as_deref().map(str::trim).unwrap_or("");
    if profile.is_empty() {
        return None;
    }
    orgs.all().iter().find_map(|o| {
        o.trust_profile_organization
            .as_deref()
            .filter(|t| t.trim().eq_ignore_ascii_case(profile))
            .map(|_| Recognition {
                slug: o.slug.clone(),
                evidence: Evidence::ProfileOrganization,
            })
    })
}

/// The organization an item (tracking issue, MR, issue) is labelled for: the slug of its first
/// `<org_prefix><slug>` label (`Co-Create org::example-aero` → `example-aero`). A label that is
/// the prefix alone names no organization.
pub fn org_from_labels<'a>(labels: &'a [String], org_prefix: &str) -> Option<&'a str> {
    labels
        .iter()
        .filter_map(|l| l.strip_prefix(org_prefix))
        .find(|slug| !slug.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policies;

    fn user(username: &str, email: Option<&str>, org: Option<&str>, groups: &[&str]) -> UserFacts {
        UserFacts {
            id: 1,
            username: username.into(),
            name: "N".into(),
            bot: false,
            public_email: email.map(Into::into),
            organization: org.map(Into::into),
            member_of: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn recognition_table() {
        // Give example-telco a customer group for the group rows.
        let orgs_yaml = concat!(
            "organizations:\n",
            "  - slug: example-aero\n    name: A\n    tier: 1\n    usernames: [Aero-Dev-1]\n    email_domains: [aero.example.com]\n",
            "  - slug: example-telco\n    name: T\n    tier: 2\n    groups: [customers/telco]\n",
            "  - slug: example-bank\n    name: B\n    tier: 3\n    email_domains: [bank.example.com]\n    trust_profile_organization: Example Bank\n",
            "  - slug: example-hint\n    name: H\n    tier: 3\n    email_domains: [hint.example.com]\n",
        );
        let p = Policies::from_sources(
            &[
                ("organizations.yml".into(), orgs_yaml),
                ("routing.yml".into(), crate::policy::EMBEDDED[1].1),
            ],
            "t".into(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let slug = |s: &str| OrgSlug::parse(s).expect("slug");
        let rows: Vec<(UserFacts, Option<(OrgSlug, Evidence)>)> = vec![
            (
                user("aero-dev-1", None, None, &[]),
                Some((slug("example-aero"), Evidence::Username)),
            ),
            (
                user("AERO-DEV-1", None, None, &[]),
                Some((slug("example-aero"), Evidence::Username)),
            ),
            (
                user("someone", None, None, &["customers/telco"]),
                Some((
                    slug("example-telco"),
                    Evidence::Group("customers/telco".into()),
                )),
            ),
            (
                user("someone", Some("x@AERO.example.com"), None, &[]),
                Some((
                    slug("example-aero"),
                    Evidence::EmailDomain("aero.example.com".into()),
                )),
            ),
            // Subdomains and look-alikes do not match.
            (
                user("someone", Some("x@evil.aero.example.com"), None, &[]),
                None,
            ),
            (
                user("someone", Some("x@aero.example.com.evil.test"), None, &[]),
                None,
            ),
            // Profile organization counts only where the policy opts in.
            (
                user("someone", None, Some(" example bank "), &[]),
                Some((slug("example-bank"), Evidence::ProfileOrganization)),
            ),
            (user("someone", None, Some("H"), &[]), None),
            (
                user("outsider", Some("o@example.com"), Some("Example Aero"), &[]),
                None,
            ),
            // Username beats a group of another organization.
            (
                user("aero-dev-1", None, None, &["customers/telco"]),
                Some((slug("example-aero"), Evidence::Username)),
            ),
        ];
        for (u, want) in rows {
            let got = recognize(&u, &p.organizations).map(|r| (r.slug, r.evidence));
            assert_eq!(got, want, "user {u:?}");
        }
    }

    #[test]
    fn organization_from_labels_table() {
        const P: &str = "Co-Create org::";
        let rows: &[(&str, &[&str], Option<&str>)] = &[
            ("no labels", &[], None),
            ("other labels only", &["Co-Create", "stage::meeting"], None),
            (
                "one org label",
                &["Co-Create", "Co-Create org::example-aero"],
                Some("example-aero"),
            ),
            (
                "the first of two wins",
                &["Co-Create org::b", "Co-Create org::a"],
                Some("b"),
            ),
            (
                "the prefix alone names none",
                &["Co-Create org::", "Co-Create org::x"],
                Some("x"),
            ),
            ("the prefix is case-sensitive", &["co-create org::x"], None),
        ];
        for (name, labels, want) in rows {
            let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
            assert_eq!(org_from_labels(&labels, P), *want, "{name}");
        }
    }
}

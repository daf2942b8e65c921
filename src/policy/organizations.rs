//! `organizations.yml`: who the Co-Create organizations are and how their people are recognised.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Located;
use crate::domain::OrgSlug;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrganizationsDoc {
    #[serde(default)]
    organizations: Vec<OrganizationDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganizationDoc {
    slug: Spanned<String>,
    name: String,
    tier: Spanned<u8>,
    #[serde(default)]
    usernames: Vec<Spanned<String>>,
    #[serde(default)]
    email_domains: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<String>,
    /// Opt-in: treat this exact free-text profile `organization` as proof of membership.
    #[serde(default)]
    trust_profile_organization: Option<String>,
    #[serde(default)]
    account_team: AccountTeam,
    #[serde(default)]
    slack_channel: Option<String>,
}

/// The account team of one organization (GitLab usernames, without `@`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccountTeam {
    #[serde(default)]
    pub csm: Option<String>,
    #[serde(default)]
    pub ae: Option<String>,
    #[serde(default)]
    pub sa: Option<String>,
}

/// The program tier of an organization (1 is the strongest fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tier(u8);

impl Tier {
    pub fn get(self) -> u8 {
        self.0
    }
}

/// One validated Co-Create organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub slug: OrgSlug,
    pub name: String,
    pub tier: Tier,
    /// Lowercased GitLab usernames.
    pub usernames: Vec<String>,
    /// Lowercased e-mail domains (`aero.example.com`); subdomains do not match.
    pub email_domains: Vec<String>,
    /// Customer groups (full path or numeric id) whose members count as the organization's people.
    pub groups: Vec<String>,
    pub trust_profile_organization: Option<String>,
    pub account_team: AccountTeam,
    /// Defaults to `#cocreate-initiative-<slug>`.
    pub slack_channel: String,
}

/// All organizations, in file order.
#[derive(Debug, Clone, Default)]
pub struct Organizations {
    list: Vec<Organization>,
}

impl Organizations {
    pub fn all(&self) -> &[Organization] {
        &self.list
    }

    pub fn get(&self, slug: &OrgSlug) -> Option<&Organization> {
        self.list.iter().find(|o| &o.slug == slug)
    }

    /// Every customer group named by any organization (to read their members once each).
    pub fn all_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.list.iter().flat_map(|o| o.groups.clone()).collect();
        groups.sort();
        groups.dedup();
        groups
    }

    #[cfg(test)]
    pub fn from_list(list: Vec<Organization>) -> Self {
        Self { list }
    }
}

pub(super) fn validate(doc: OrganizationsDoc) -> Result<Organizations, Vec<Located>> {
    let mut errors = Vec::new();
    let mut list = Vec::new();
    let mut seen_slugs: BTreeMap<String, ()> = BTreeMap::new();
    let mut username_owner: BTreeMap<String, String> = BTreeMap::new();
    let mut domain_owner: BTreeMap<String, String> = BTreeMap::new();
    for org in doc.organizations {
        let slug = match OrgSlug::parse(&org.slug.value) {
            Ok(s) => Some(s),
            Err(msg) => {
                errors.push(Located::at(&org.slug, msg));
                None
            }
        };
        if !(1..=3).contains(&org.tier.value) {
            errors.push(Located::at(
                &org.tier,
                format!("tier must be 1, 2 or 3 (found {})", org.tier.value),
            ));
        }
        if seen_slugs.insert(org.slug.value.clone(), ()).is_some() {
            errors.push(Located::at(
                &org.slug,
                format!(
                    "slug `{}` is used twice; every organization needs its own slug",
                    org.slug.value
                ),
            ));
        }
        let recognisable = !org.usernames.is_empty()
            || !org.email_domains.is_empty()
            || !org.groups.is_empty()
            || org.trust_profile_organization.is_some();
        if !recognisable {
            errors.push(Located::at(
                &org.slug,
                format!(
                    "organization `{}` has no way to recognise its people: add `usernames`, `email_domains` or `groups`",
                    org.slug.value
                ),
            ));
        }
        let mut usernames = Vec::new();
        for u in &org.usernames {
            let name = u.value.trim_start_matches('@').to_ascii_lowercase();
            if let Some(owner) = username_owner.insert(name.clone(), org.slug.value.clone()) {
                if owner != org.slug.value {
                    errors.push(Located::at(
                        u,
                        format!(
                            "username `{name}` is claimed by both `{owner}` and `{}`; a person belongs to one organization",
                            org.slug.value
                        ),
                    ));
                }
            }
            usernames.push(name);
        }
        let mut email_domains = Vec::new();
        for d in &org.email_domains {
            let domain = d.value.trim_start_matches('@').to_ascii_lowercase();
            if domain.is_empty() || !domain.contains('.') || domain.contains('@') {
                errors.push(Located::at(
                    d,
                    format!(
                        "`{}` is not an e-mail domain (write it like `aero.example.com`)",
                        d.value
                    ),
                ));
            }
            if let Some(owner) = domain_owner.insert(domain.clone(), org.slug.value.clone()) {
                if owner != org.slug.value {
                    errors.push(Located::at(
                        d,
                        format!(
                            "e-mail domain `{domain}` is claimed by both `{owner}` and `{}`",
                            org.slug.value
                        ),
                    ));
                }
            }
            email_domains.push(domain);
        }
        if let Some(slug) = slug {
            let slack_channel = org
                .slack_channel
                .unwrap_or_else(|| format!("#cocreate-initiative-{slug}"));
            list.push(Organization {
                slug,
                name: org.name,
                tier: Tier(org.tier.value),
                usernames,
                email_domains,
                groups: org.groups,
                trust_profile_organization: org.trust_profile_organization,
                account_team: org.account_team,
                slack_channel,
            });
        }
    }
    if errors.is_empty() {
        Ok(Organizations { list })
    } else {
        Err(errors)
    }
}

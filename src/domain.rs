//! Domain words as types: an organization's slug, a merge request's address, a GitLab user.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The short, stable identifier of a Co-Create organization (`example-aero`).
///
/// Lowercase ASCII letters, digits and `-`; it appears in labels (`Co-Create org::<slug>`)
/// and Slack channel names, so it is validated when policies load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    /// Validates and wraps a slug; the error says what is wrong in words a policy author understands.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("an organization slug cannot be empty".into());
        }
        if raw.len() > 63 {
            return Err(format!("slug `{raw}` is longer than 63 characters"));
        }
        let ok = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok || raw.starts_with('-') || raw.ends_with('-') {
            return Err(format!(
                "slug `{raw}` may only contain lowercase letters, digits and inner `-` (e.g. `example-aero`)"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A GitLab user id.
pub type UserId = u64;

/// A merge request, addressed as GitLab's API addresses it: numeric project id and the MR's iid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MrRef {
    pub project_id: u64,
    pub iid: u64,
}

impl fmt::Display for MrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "project {} !{}", self.project_id, self.iid)
    }
}

/// What we know about a GitLab user: from the API when a token is configured, else from the payload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserFacts {
    pub id: UserId,
    pub username: String,
    pub name: String,
    /// GitLab's `bot` flag (project/group access tokens, service accounts).
    pub bot: bool,
    /// The user's public e-mail (GitLab only shows verified addresses here).
    pub public_email: Option<String>,
    /// The free-text profile field; a hint, never proof, unless a policy opts in.
    pub organization: Option<String>,
    /// Customer groups (as written in `organizations.yml`) the user is a member of.
    pub member_of: Vec<String>,
}

/// Availability of a roster member, from `GET /users/:id/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Availability {
    Available,
    Busy,
}

/// A project or group as it appears in a GitLab API path: numeric ids stay, full paths are
/// percent-encoded (`group/project` is `group%2Fproject`).
pub fn path_id(raw: &str) -> String {
    if raw.chars().all(|c| c.is_ascii_digit()) {
        raw.to_owned()
    } else {
        url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
    }
}

//! `agreements.yml`: the Corporate Contributor Agreements (CCA) on file. Changed only by CLA
//! managers through merge requests, so git history is the audit trail.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Located, Organizations};
use crate::domain::OrgSlug;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgreementsDoc {
    /// Where contributors send signing requests (an e-mail address; configuration, not code).
    #[serde(default)]
    signing_contact: Option<String>,
    #[serde(default = "default_warning_days")]
    expiry_warning_days: u32,
    #[serde(default)]
    agreements: Vec<AgreementDoc>,
}

fn default_warning_days() -> u32 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreementDoc {
    organization: Spanned<String>,
    signed: Spanned<String>,
    #[serde(default)]
    expires: Option<Spanned<String>>,
    version: String,
    /// Where the signed copy is kept (a document-store reference, not the document).
    reference: String,
}

/// One signed agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub organization: OrgSlug,
    pub signed: NaiveDate,
    pub expires: Option<NaiveDate>,
    pub version: String,
    pub reference: String,
}

/// The agreements on file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agreements {
    pub signing_contact: Option<String>,
    pub expiry_warning_days: u32,
    list: Vec<Agreement>,
}

impl Agreements {
    /// The organization's most recently signed agreement.
    pub fn latest(&self, org: &OrgSlug) -> Option<&Agreement> {
        self.list
            .iter()
            .filter(|a| &a.organization == org)
            .max_by_key(|a| a.signed)
    }

    pub fn all(&self) -> &[Agreement] {
        &self.list
    }
}

fn date(span: &Spanned<String>, field: &str, errors: &mut Vec<Located>) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(span.value.trim(), "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            errors.push(Located::at(
                span,
                format!(
                    "`{field}` must be a date like 2026-01-31, not `{}`",
                    span.value
                ),
            ));
            None
        }
    }
}

pub(super) fn validate(
    doc: AgreementsDoc,
    orgs: Option<&Organizations>,
) -> Result<Agreements, Vec<Located>> {
    let mut errors = Vec::new();
    let mut list = Vec::new();
    if let Some(c) = &doc.signing_contact {
        if !c.contains('@') {
            // No span on a plain string: report at the first agreement or line 1 via caller.
            errors.push(Located {
                line: 1,
                column: 1,
                message: format!("signing_contact `{c}` is not an e-mail address"),
            });
        }
    }
    for a in doc.agreements {
        let slug = match OrgSlug::parse(&a.organization.value) {
            Ok(s) => Some(s),
            Err(m) => {
                errors.push(Located::at(&a.organization, m));
                None
            }
        };
        if let (Some(slug), Some(orgs)) = (&slug, orgs) {
            if orgs.get(slug).is_none() {
                errors.push(Located::at(
                    &a.organization,
                    format!("organization `{slug}` is not in organizations.yml; add it there first or fix the slug"),
                ));
            }
        }
        let signed = date(&a.signed, "signed", &mut errors);
        let expires = a.expires.as_ref().and_then(|e| {
            let d = date(e, "expires", &mut errors)?;
            if signed.is_some_and(|s| d <= s) {
                errors.push(Located::at(e, "`expires` must be after `signed`"));
            }
            Some(d)
        });
        if let (Some(organization), Some(signed)) = (slug, signed) {
            list.push(Agreement {
                organization,
                signed,
                expires,
                version: a.version,
                reference: a.reference,
            });
        }
    }
    if errors.is_empty() {
        Ok(Agreements {
            signing_contact: doc.signing_contact,
            expiry_warning_days: doc.expiry_warning_days,
            list,
        })
    } else {
        Err(errors)
    }
}

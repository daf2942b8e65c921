//! `segmentation.yml`: how `cocreate score` weighs and tiers customers, and the program targets
//! `cocreate report` measures against (the FY26Q1 action plan's numbers). Optional: without
//! the file the action plan's values ([`Segmentation::default`]) apply.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Located;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SegmentationDoc {
    fiscal_year_start_month: Spanned<u32>,
    targets: TargetsDoc,
    weights: WeightsDoc,
    full_at: FullAtDoc,
    subscription_fraction: SubscriptionDoc,
    #[serde(default)]
    preferred_industries: Vec<String>,
    tiers: TiersDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsDoc {
    projects: Spanned<u32>,
    prospects: Spanned<u32>,
    conversion_percent: Spanned<f64>,
    time_to_start_weeks: WeeksDoc,
    top: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeeksDoc {
    min: Spanned<f64>,
    max: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsDoc {
    issues_mrs: Spanned<f64>,
    features: Spanned<f64>,
    subscription: Spanned<f64>,
    seats: Spanned<f64>,
    industry: Spanned<f64>,
    prior_oss: Spanned<f64>,
    usage_growth: Spanned<f64>,
    relationship: Spanned<f64>,
    tech_overlap: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullAtDoc {
    issues_mrs: Spanned<f64>,
    features: Spanned<f64>,
    seats: Spanned<f64>,
    usage_growth_percent: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionDoc {
    free: Spanned<f64>,
    premium: Spanned<f64>,
    ultimate: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TiersDoc {
    tier1: Tier1Doc,
    tier2: Tier2Doc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier1Doc {
    min_issues_mrs: Spanned<u64>,
    subscriptions: Vec<Spanned<String>>,
    prior_oss: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier2Doc {
    min_tech_overlap: Spanned<u8>,
}

/// A GitLab subscription tier, as account exports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    Free,
    Premium,
    Ultimate,
}

impl Subscription {
    /// Case-insensitive `free`, `premium` or `ultimate` (also `core`/`starter`/`bronze`,
    /// `silver`, `gold`, the older names).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "free" | "core" | "starter" | "bronze" => Some(Self::Free),
            "premium" | "silver" => Some(Self::Premium),
            "ultimate" | "gold" => Some(Self::Ultimate),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Free => "Free",
            Self::Premium => "Premium",
            Self::Ultimate => "Ultimate",
        }
    }
}

/// The program's targets for one quarter.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Targets {
    pub projects: u32,
    pub prospects: u32,
    pub conversion_percent: f64,
    pub time_to_start_weeks_min: f64,
    pub time_to_start_weeks_max: f64,
    pub top: u32,
}

/// Points per criterion.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Weights {
    pub issues_mrs: f64,
    pub features: f64,
    pub subscription: f64,
    pub seats: f64,
    pub industry: f64,
    pub prior_oss: f64,
    pub usage_growth: f64,
    pub relationship: f64,
    pub tech_overlap: f64,
}

impl Weights {
    pub fn total(&self) -> f64 {
        self.issues_mrs
            + self.features
            + self.subscription
            + self.seats
            + self.industry
            + self.prior_oss
            + self.usage_growth
            + self.relationship
            + self.tech_overlap
    }
}

/// Where a criterion's fraction reaches 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FullAt {
    pub issues_mrs: f64,
    pub features: f64,
    pub seats: f64,
    pub usage_growth_percent: f64,
}

/// The tier rules of the action plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TierRules {
    pub tier1_min_issues_mrs: u64,
    pub tier1_subscriptions: Vec<Subscription>,
    pub tier1_prior_oss: bool,
    pub tier2_min_tech_overlap: u8,
}

/// The validated `segmentation.yml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segmentation {
    /// 1-12: FY N starts in this month of calendar year N-1 (of N itself when 1).
    pub fiscal_year_start_month: u32,
    pub targets: Targets,
    pub weights: Weights,
    pub full_at: FullAt,
    /// Fraction (0..1) of the subscription weight per tier: free, premium, ultimate.
    pub subscription_fraction: [f64; 3],
    pub preferred_industries: Vec<String>,
    pub tiers: TierRules,
}

impl Default for Segmentation {
    /// The FY26Q1 action plan's values (the same as the shipped `policies/segmentation.yml`).
    fn default() -> Self {
        Self {
            fiscal_year_start_month: 2,
            targets: Targets {
                projects: 7,
                prospects: 21,
                conversion_percent: 33.0,
                time_to_start_weeks_min: 8.0,
                time_to_start_weeks_max: 10.0,
                top: 25,
            },
            weights: Weights {
                issues_mrs: 20.0,
                features: 10.0,
                subscription: 15.0,
                seats: 10.0,
                industry: 10.0,
                prior_oss: 15.0,
                usage_growth: 5.0,
                relationship: 10.0,
                tech_overlap: 5.0,
            },
            full_at: FullAt {
                issues_mrs: 20.0,
                features: 10.0,
                seats: 2000.0,
                usage_growth_percent: 50.0,
            },
            subscription_fraction: [0.0, 0.6, 1.0],
            preferred_industries: vec!["Finance".into(), "Manufacturing".into(), "Telco".into()],
            tiers: TierRules {
                tier1_min_issues_mrs: 10,
                tier1_subscriptions: vec![Subscription::Premium, Subscription::Ultimate],
                tier1_prior_oss: true,
                tier2_min_tech_overlap: 3,
            },
        }
    }
}

impl Segmentation {
    pub fn subscription_fraction(&self, s: Subscription) -> f64 {
        match s {
            Subscription::Free => self.subscription_fraction[0],
            Subscription::Premium => self.subscription_fraction[1],
            Subscription::Ultimate => self.subscription_fraction[2],
        }
    }

    /// Is `industry` one of the preferred ones (case-insensitive)?
    pub fn preferred_industry(&self, industry: &str) -> bool {
        self.preferred_industries
            .iter()
            .any(|p| p.trim().eq_ignore_ascii_case(industry.trim()))
    }
}

fn non_negative(v: &Spanned<f64>, what: &str, errors: &mut Vec<Located>) -> f64 {
    if !v.value.is_finite() || v.value < 0.0 {
        errors.push(Located::at(
            v,
            format!("{what} must be a number of 0 or more, not {}", v.value),
        ));
    }
    v.value
}

fn positive(v: &Spanned<f64>, what: &str, errors: &mut Vec<Located>) -> f64 {
    if !v.value.is_finite() || v.value <= 0.0 {
        errors.push(Located::at(
            v,
            format!("{what} must be more than 0, not {}", v.value),
        ));
    }
    v.value
}

fn fraction(v: &Spanned<f64>, what: &str, errors: &mut Vec<Located>) -> f64 {
    if !(0.0..=1.0).contains(&v.value) {
        errors.push(Located::at(
            v,
            format!("{what} must be between 0 and 1, not {}", v.value),
        ));
    }
    v.value
}

pub(super) fn validate(doc: SegmentationDoc) -> Result<Segmentation, Vec<Located>> {
    let mut e = Vec::new();
    let month = doc.fiscal_year_start_month.value;
    if !(1..=12).contains(&month) {
        e.push(Located::at(
            &doc.fiscal_year_start_month,
            format!("fiscal_year_start_month must be 1-12 (2 = February), not {month}"),
        ));
    }
    let t = &doc.targets;
    if t.projects.value == 0 {
        e.push(Located::at(
            &t.projects,
            "targets.projects must be at least 1",
        ));
    }
    if t.prospects.value < t.projects.value {
        e.push(Located::at(
            &t.prospects,
            format!(
                "targets.prospects ({}) must be at least targets.projects ({}); the plan keeps 3x",
                t.prospects.value, t.projects.value
            ),
        ));
    }
    let conversion = t.conversion_percent.value;
    if !(conversion > 0.0 && conversion <= 100.0) {
        e.push(Located::at(
            &t.conversion_percent,
            format!("targets.conversion_percent must be in (0, 100], not {conversion}"),
        ));
    }
    let wmin = positive(
        &t.time_to_start_weeks.min,
        "time_to_start_weeks.min",
        &mut e,
    );
    let wmax = positive(
        &t.time_to_start_weeks.max,
        "time_to_start_weeks.max",
        &mut e,
    );
    if wmax < wmin {
        e.push(Located::at(
            &t.time_to_start_weeks.max,
            "time_to_start_weeks.max must not be below min",
        ));
    }
    if t.top.value == 0 {
        e.push(Located::at(&t.top, "targets.top must be at least 1"));
    }
    let w = &doc.weights;
    let weights = Weights {
        issues_mrs: non_negative(&w.issues_mrs, "weights.issues_mrs", &mut e),
        features: non_negative(&w.features, "weights.features", &mut e),
        subscription: non_negative(&w.subscription, "weights.subscription", &mut e),
        seats: non_negative(&w.seats, "weights.seats", &mut e),
        industry: non_negative(&w.industry, "weights.industry", &mut e),
        prior_oss: non_negative(&w.prior_oss, "weights.prior_oss", &mut e),
        usage_growth: non_negative(&w.usage_growth, "weights.usage_growth", &mut e),
        relationship: non_negative(&w.relationship, "weights.relationship", &mut e),
        tech_overlap: non_negative(&w.tech_overlap, "weights.tech_overlap", &mut e),
    };
    if weights.total() <= 0.0 {
        e.push(Located::at(
            &w.issues_mrs,
            "the weights add up to 0: give at least one criterion points",
        ));
    }
    let f = &doc.full_at;
    let full_at = FullAt {
        issues_mrs: positive(&f.issues_mrs, "full_at.issues_mrs", &mut e),
        features: positive(&f.features, "full_at.features", &mut e),
        seats: positive(&f.seats, "full_at.seats", &mut e),
        usage_growth_percent: positive(
            &f.usage_growth_percent,
            "full_at.usage_growth_percent",
            &mut e,
        ),
    };
    let s = &doc.subscription_fraction;
    let subscription_fraction = [
        fraction(&s.free, "subscription_fraction.free", &mut e),
        fraction(&s.premium, "subscription_fraction.premium", &mut e),
        fraction(&s.ultimate, "subscription_fraction.ultimate", &mut e),
    ];
    let mut tier1_subscriptions = Vec::new();
    for raw in &doc.tiers.tier1.subscriptions {
        match Subscription::parse(&raw.value) {
            Some(s) => tier1_subscriptions.push(s),
            None => e.push(Located::at(
                raw,
                format!(
                    "`{}` is not a subscription: use free, premium or ultimate",
                    raw.value
                ),
            )),
        }
    }
    let overlap = &doc.tiers.tier2.min_tech_overlap;
    if overlap.value > 5 {
        e.push(Located::at(
            overlap,
            format!(
                "tier2.min_tech_overlap is on the 0-5 scale, not {}",
                overlap.value
            ),
        ));
    }
    if !e.is_empty() {
        return Err(e);
    }
    Ok(Segmentation {
        fiscal_year_start_month: month,
        targets: Targets {
            projects: t.projects.value,
            prospects: t.prospects.value,
            conversion_percent: conversion,
            time_to_start_weeks_min: wmin,
            time_to_start_weeks_max: wmax,
            top: t.top.value,
        },
        weights,
        full_at,
        subscription_fraction,
        preferred_industries: doc.preferred_industries,
        tiers: TierRules {
            tier1_min_issues_mrs: doc.tiers.tier1.min_issues_mrs.value,
            tier1_subscriptions,
            tier1_prior_oss: doc.tiers.tier1.prior_oss,
            tier2_min_tech_overlap: overlap.value,
        },
    })
}

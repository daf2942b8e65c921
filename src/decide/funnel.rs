//! The engagement funnel's stages and the triage pathways, as types that know their order and
//! their label names (`Co-Create stage::<name>`, `Co-Create pathway::<name>`).

use serde::Serialize;

/// A funnel stage, in program order: a later stage means the engagement got further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Prospect,
    Contacted,
    Meeting,
    Aligned,
    Onboarding,
    Active,
    Completed,
    Sustaining,
}

impl Stage {
    /// Every stage, in funnel order.
    pub const ALL: [Stage; 8] = [
        Stage::Prospect,
        Stage::Contacted,
        Stage::Meeting,
        Stage::Aligned,
        Stage::Onboarding,
        Stage::Active,
        Stage::Completed,
        Stage::Sustaining,
    ];

    /// The name in its label.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prospect => "prospect",
            Stage::Contacted => "contacted",
            Stage::Meeting => "meeting",
            Stage::Aligned => "aligned",
            Stage::Onboarding => "onboarding",
            Stage::Active => "active",
            Stage::Completed => "completed",
            Stage::Sustaining => "sustaining",
        }
    }

    /// The stage a label name stands for (exact, as the labels are created).
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its position in the funnel (0 = prospect).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Past `aligned`: the program expects a decided (minor or major) pathway by then.
    pub fn needs_pathway(self) -> bool {
        self > Stage::Aligned
    }
}

/// The triage outcome of the initiative process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pathway {
    NotAligned,
    Minor,
    Major,
}

impl Pathway {
    pub const ALL: [Pathway; 3] = [Pathway::NotAligned, Pathway::Minor, Pathway::Major];

    pub fn name(self) -> &'static str {
        match self {
            Pathway::NotAligned => "not-aligned",
            Pathway::Minor => "minor",
            Pathway::Major => "major",
        }
    }

    pub fn parse(name: &str) -> Option<Pathway> {
        Pathway::ALL.into_iter().find(|p| p.name() == name)
    }

    /// A contribution was agreed on (minor or major).
    pub fn is_contribution(self) -> bool {
        matches!(self, Pathway::Minor | Pathway::Major)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_know_their_order_and_names() {
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Stage::parse(s.name()), Some(s));
        }
        assert!(Stage::Contacted < Stage::Meeting && Stage::Active < Stage::Completed);
        let needs: Vec<&str> = Stage::ALL
            .into_iter()
            .filter(|s| s.needs_pathway())
            .map(Stage::name)
            .collect();
        assert_eq!(needs, ["onboarding", "active", "completed", "sustaining"]);
        assert_eq!(Stage::parse("Active"), None);
    }

    #[test]
    fn pathways_know_which_are_contributions() {
        for p in Pathway::ALL {
            assert_eq!(Pathway::parse(p.name()), Some(p));
        }
        let yes: Vec<&str> = Pathway::ALL
            .into_iter()
            .filter(|p| p.is_contribution())
            .map(Pathway::name)
            .collect();
        assert_eq!(yes, ["minor", "major"]);
    }
}

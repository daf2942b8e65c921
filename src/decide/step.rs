//! The one protocol for "decide, read more, decide again".
//!
//! A rule that may need facts it was not given answers [`Step::Need`] with the reads it still
//! wants (its own type, so a rule's reads are visible in its signature); the handler reads
//! exactly those, concurrently, and asks again. A rule given everything it asked for acts.
//! Handlers ask at most three times (a first pass on cheap facts, then at most two rounds of
//! reads); [`Rounds`] counts them.

use serde::Serialize;

/// A rule's answer: act on the facts it has, or name the facts it still needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", content = "of", rename_all = "snake_case")]
pub enum Step<A, N> {
    /// Everything needed is known: this is what to do (possibly nothing).
    Act(A),
    /// Read these, then decide again.
    Need(N),
}

impl<A, N> Step<A, N> {
    /// The action, if the rule could decide.
    pub fn act(self) -> Option<A> {
        match self {
            Step::Act(a) => Some(a),
            Step::Need(_) => None,
        }
    }

    /// The reads, if the rule asked for any.
    pub fn need(&self) -> Option<&N> {
        match self {
            Step::Act(_) => None,
            Step::Need(n) => Some(n),
        }
    }

    pub fn map_act<B>(self, f: impl FnOnce(A) -> B) -> Step<B, N> {
        match self {
            Step::Act(a) => Step::Act(f(a)),
            Step::Need(n) => Step::Need(n),
        }
    }
}

/// How many rounds of reads a handler has done; a rule that still asks after
/// [`Rounds::MAX`] rounds is a bug in the rule (it asked for something the handler cannot
/// read), which the handler reports instead of looping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rounds(u8);

impl Rounds {
    pub const MAX: u8 = 2;

    /// Counts one more round of reads; `false` when the budget is spent.
    pub fn start_round(&mut self) -> bool {
        if self.0 >= Self::MAX {
            return false;
        }
        self.0 += 1;
        true
    }

    pub fn done(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_two_rounds_of_reads() {
        let mut r = Rounds::default();
        assert!(r.start_round());
        assert!(r.start_round());
        assert!(!r.start_round(), "a third round is refused");
        assert_eq!(r.done(), 2);
    }

    #[test]
    fn act_and_need_are_told_apart() {
        let act: Step<u8, &str> = Step::Act(1);
        let need: Step<u8, &str> = Step::Need("roster");
        assert_eq!(act.need(), None);
        assert_eq!(need.need(), Some(&"roster"));
        assert_eq!(act.map_act(|a| a + 1).act(), Some(2));
        assert_eq!(need.act(), None);
    }
}

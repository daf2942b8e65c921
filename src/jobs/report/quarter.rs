//! Fiscal quarters: `FY26Q1` and its first day and the day after its last.

use chrono::{Datelike, Months, NaiveDate};
use serde::Serialize;

use super::ReportError;

/// A fiscal quarter: `FY26Q1` is quarter 1 of fiscal year 2026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quarter {
    /// Four-digit fiscal year.
    pub fiscal_year: i32,
    /// 1-4.
    pub quarter: u32,
}

impl Quarter {
    /// `FY26Q1`, `fy2026q1`, `FY26-Q1`.
    pub fn parse(raw: &str) -> Result<Self, ReportError> {
        let bad = || ReportError::BadQuarter(raw.to_owned());
        let s = raw.trim().to_ascii_uppercase().replace(['-', ' '], "");
        let rest = s.strip_prefix("FY").ok_or_else(bad)?;
        let (year, q) = rest.split_once('Q').ok_or_else(bad)?;
        let quarter: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&quarter) || !year.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let fiscal_year = match year.len() {
            2 => 2000 + year.parse::<i32>().map_err(|_| bad())?,
            4 => year.parse::<i32>().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        Ok(Self {
            fiscal_year,
            quarter,
        })
    }

    /// The quarter a day falls in. FY N starts in `start_month` of calendar year N-1 when
    /// `start_month` > 1, and on January 1 of N when it is 1.
    pub fn containing(day: NaiveDate, start_month: u32) -> Self {
        let m = start_month.clamp(1, 12);
        let offset = (day.month() + 12 - m) % 12;
        let fiscal_year = if m == 1 || day.month() < m {
            day.year()
        } else {
            day.year() + 1
        };
        Self {
            fiscal_year,
            quarter: offset / 3 + 1,
        }
    }

    /// First day and the day after the last day.
    pub fn bounds(self, start_month: u32) -> (NaiveDate, NaiveDate) {
        let m = start_month.clamp(1, 12);
        let first_year = if m == 1 {
            self.fiscal_year
        } else {
            self.fiscal_year - 1
        };
        let fy_start = NaiveDate::from_ymd_opt(first_year, m, 1).unwrap_or(NaiveDate::MIN);
        let start = fy_start
            .checked_add_months(Months::new(3 * (self.quarter.clamp(1, 4) - 1)))
            .unwrap_or(fy_start);
        let end = start.checked_add_months(Months::new(3)).unwrap_or(start);
        (start, end)
    }

    pub fn label(self) -> String {
        format!("FY{:02}Q{}", self.fiscal_year.rem_euclid(100), self.quarter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn quarters_parse_and_have_bounds() {
        // (text, start month, first day, day after the last)
        let cases = [
            ("FY26Q1", 2, "2025-02-01", "2025-05-01"),
            ("fy26q4", 2, "2025-11-01", "2026-02-01"),
            ("FY2026Q2", 2, "2025-05-01", "2025-08-01"),
            ("FY26Q1", 1, "2026-01-01", "2026-04-01"),
            ("FY26-Q3", 1, "2026-07-01", "2026-10-01"),
            ("FY26Q1", 10, "2025-10-01", "2026-01-01"),
            ("FY26Q2", 10, "2026-01-01", "2026-04-01"),
        ];
        for (text, m, first, end) in cases {
            let q = Quarter::parse(text).expect(text);
            assert_eq!(q.bounds(m), (day(first), day(end)), "{text} start {m}");
            // Every day of the quarter is in it, and the day before/after is not.
            for d in [day(first), day(end).pred_opt().expect("day")] {
                assert_eq!(Quarter::containing(d, m), q, "{d} start {m}");
            }
            assert_ne!(Quarter::containing(day(end), m), q);
            assert_ne!(Quarter::containing(day(first).pred_opt().expect("d"), m), q);
        }
        assert_eq!(Quarter::parse("fy2026q1").expect("q").label(), "FY26Q1");
        for bad in ["26Q1", "FY26Q5", "FY26Q0", "FY6Q1", "FYabQ1", "FY26"] {
            assert!(Quarter::parse(bad).is_err(), "{bad}");
        }
    }
}

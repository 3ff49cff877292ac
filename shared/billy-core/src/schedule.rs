//! Schedule math: period n starts at `anchor + n × interval × frequency`, always computed from the
//! anchor (never from the previous period), so dates never drift. A missing anchor day (the 31st,
//! 29 February) falls on the month's last day, and later months return to the anchor day.

use crate::error::{DomainError, DomainResult};
use chrono::{DateTime, Datelike, Duration, Months, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Frequency {
    pub fn parse(raw: &str) -> DomainResult<Self> {
        match raw {
            "daily" => Ok(Self::Daily),
            "weekly" => Ok(Self::Weekly),
            "monthly" => Ok(Self::Monthly),
            "yearly" => Ok(Self::Yearly),
            _ => Err(DomainError::invalid(
                "frequency_invalid",
                "frequency must be one of daily, weekly, monthly, yearly",
                Some("frequency"),
            )),
        }
    }

    /// The largest interval accepted: three years of periods.
    pub const fn max_interval(self) -> u32 {
        match self {
            Self::Daily => 3 * 366,
            Self::Weekly => 3 * 53,
            Self::Monthly => 36,
            Self::Yearly => 3,
        }
    }
}

/// How often a plan bills: `frequency × interval` ("every 3 months" is monthly × 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cadence {
    pub frequency: Frequency,
    pub interval: u32,
}

/// The most periods one catch-up enumerates at once; a longer gap is billed over several runs.
pub const MAX_CATCH_UP_PERIODS: usize = 1000;

impl Cadence {
    pub fn new(frequency: Frequency, interval: u32) -> DomainResult<Self> {
        if interval == 0 || interval > frequency.max_interval() {
            return Err(DomainError::invalid(
                "interval_invalid",
                format!("interval must be from 1 to {} for a {frequency:?} plan", frequency.max_interval())
                    .to_lowercase(),
                Some("interval"),
            ));
        }
        Ok(Self { frequency, interval })
    }

    /// Start of period `n` (period 0 starts at the anchor).
    pub fn period_start(&self, anchor: DateTime<Utc>, n: u64) -> DomainResult<DateTime<Utc>> {
        let steps = n.checked_mul(u64::from(self.interval)).ok_or_else(out_of_range)?;
        let days = |per: u64| -> DomainResult<DateTime<Utc>> {
            let d = i64::try_from(steps.checked_mul(per).ok_or_else(out_of_range)?).map_err(|_| out_of_range())?;
            anchor.checked_add_signed(Duration::try_days(d).ok_or_else(out_of_range)?).ok_or_else(out_of_range)
        };
        match self.frequency {
            Frequency::Daily => days(1),
            Frequency::Weekly => days(7),
            Frequency::Monthly => add_months_clamped(anchor, steps),
            Frequency::Yearly => add_months_clamped(anchor, steps.checked_mul(12).ok_or_else(out_of_range)?),
        }
    }

    /// `[start, end)` of period `n`.
    pub fn period(&self, anchor: DateTime<Utc>, n: u64) -> DomainResult<Period> {
        let next = n.checked_add(1).ok_or_else(out_of_range)?;
        Ok(Period { index: n, start: self.period_start(anchor, n)?, end: self.period_start(anchor, next)? })
    }

    /// The period containing `at`, or `None` before the anchor.
    pub fn period_at(&self, anchor: DateTime<Utc>, at: DateTime<Utc>) -> DomainResult<Option<Period>> {
        if at < anchor {
            return Ok(None);
        }
        // Whole periods elapsed, counted in days, weeks or calendar months. Day and week periods
        // have fixed lengths, so that count is exact. A month count can be one too many — when
        // `at` is earlier in its month than the anchor's day and time (15 February 09:00 has
        // counted a month from 15 January 10:30, or from 31 January, whose next period starts on
        // 28 February) — never one too few: one step back corrects it.
        let interval = i64::from(self.interval);
        let elapsed = match self.frequency {
            Frequency::Daily => (at - anchor).num_days() / interval,
            Frequency::Weekly => (at - anchor).num_weeks() / interval,
            Frequency::Monthly => months_between(anchor, at) / interval,
            Frequency::Yearly => months_between(anchor, at) / (12 * interval),
        };
        let n = u64::try_from(elapsed).map_err(|_| out_of_range())?;
        let period = self.period(anchor, n)?;
        if at < period.start {
            // n >= 1 here: period 0 starts at the anchor, at or before `at`
            return self.period(anchor, n - 1).map(Some);
        }
        Ok(Some(period))
    }

    /// Every period with index >= `from` that starts at or before `until`, in order, at most
    /// `MAX_CATCH_UP_PERIODS`: what a billing run that was late must still bill, once each.
    pub fn periods_starting_until(
        &self,
        anchor: DateTime<Utc>,
        from: u64,
        until: DateTime<Utc>,
    ) -> DomainResult<Vec<Period>> {
        self.periods_while(anchor, from, |p| p.start <= until)
    }

    /// Every period with index >= `from` that has ended by `until` (for billing in arrears).
    pub fn periods_ending_until(
        &self,
        anchor: DateTime<Utc>,
        from: u64,
        until: DateTime<Utc>,
    ) -> DomainResult<Vec<Period>> {
        self.periods_while(anchor, from, |p| p.end <= until)
    }

    /// Periods from index `from` on, in order, while `keep` holds (at most `MAX_CATCH_UP_PERIODS`).
    fn periods_while(
        &self,
        anchor: DateTime<Utc>,
        from: u64,
        keep: impl Fn(&Period) -> bool,
    ) -> DomainResult<Vec<Period>> {
        let mut out = Vec::new();
        let mut n = from;
        while out.len() < MAX_CATCH_UP_PERIODS {
            let period = self.period(anchor, n)?;
            if !keep(&period) {
                break;
            }
            out.push(period);
            n += 1;
        }
        Ok(out)
    }
}

/// One billing period `[start, end)` and its index from the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub index: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }
}

fn out_of_range() -> DomainError {
    DomainError::invalid("date_out_of_range", "the schedule runs past the supported date range", None)
}

/// Adds whole months keeping the anchor's day when it exists, else the month's last day.
fn add_months_clamped(anchor: DateTime<Utc>, months: u64) -> DomainResult<DateTime<Utc>> {
    let months = u32::try_from(months).map_err(|_| out_of_range())?;
    // chrono's `checked_add_months` clamps to the last day of shorter months and is computed from
    // the anchor each time, so 31 Jan → 28/29 Feb → 31 Mar.
    anchor.checked_add_months(Months::new(months)).ok_or_else(out_of_range)
}

/// Calendar months from `from`'s month to `to`'s (31 January → 1 February is one).
fn months_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    i64::from(to.year() - from.year()) * 12 + i64::from(to.month()) - i64::from(from.month())
}

/// Parses an RFC 3339 time (any offset) and normalises it to UTC.
pub fn parse_time(raw: &str, param: &str) -> DomainResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw.trim()).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        DomainError::invalid(
            "date_invalid",
            format!("{param} must be an RFC 3339 date-time such as 2026-01-31T00:00:00Z"),
            Some(param),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use proptest::prelude::*;

    fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 10, 30, 0).unwrap()
    }

    /// The oracle of the drift test: `at` falls on the anchor's day of month, or on the last day
    /// of a month too short to have it.
    fn on_anchor_day(anchor: DateTime<Utc>, at: DateTime<Utc>) -> bool {
        let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap();
        let last_day = first.checked_add_months(Months::new(1)).unwrap().pred_opt().unwrap().day();
        at.day() == anchor.day().min(last_day)
    }

    #[test]
    fn the_drift_oracle_knows_month_ends() {
        let anchor = t(2026, 1, 31);
        assert!(on_anchor_day(anchor, t(2026, 3, 31)));
        assert!(on_anchor_day(anchor, t(2026, 2, 28)), "February has no 31st");
        assert!(!on_anchor_day(anchor, t(2026, 2, 27)));
        assert!(!on_anchor_day(anchor, t(2026, 4, 29)));
        assert!(on_anchor_day(anchor, t(2024, 2, 29)), "a leap year's February ends on the 29th");
        assert!(!on_anchor_day(t(2026, 1, 15), t(2026, 2, 28)), "a month end is not a 15th");
        assert!(on_anchor_day(anchor, t(2026, 12, 31)));
    }

    fn monthly(interval: u32) -> Cadence {
        Cadence::new(Frequency::Monthly, interval).unwrap()
    }

    #[test]
    fn a_31st_anchor_falls_on_month_ends_then_returns_to_the_31st() {
        // GIVEN a monthly plan anchored on 31 January 2026 (not a leap year)
        let anchor = t(2026, 1, 31);
        let starts: Vec<_> = (0..5).map(|n| monthly(1).period_start(anchor, n).unwrap()).collect();
        // THEN Feb 28, Mar 31, Apr 30, May 31
        assert_eq!(starts, vec![t(2026, 1, 31), t(2026, 2, 28), t(2026, 3, 31), t(2026, 4, 30), t(2026, 5, 31)]);
    }

    #[test]
    fn leap_years_clamp_29_february_for_yearly_plans() {
        let anchor = t(2024, 2, 29);
        let yearly = Cadence::new(Frequency::Yearly, 1).unwrap();
        let starts: Vec<_> = (0..5).map(|n| yearly.period_start(anchor, n).unwrap()).collect();
        assert_eq!(starts, vec![t(2024, 2, 29), t(2025, 2, 28), t(2026, 2, 28), t(2027, 2, 28), t(2028, 2, 29)]);
        // and a 30 January monthly anchor in a leap year gives 29 February
        assert_eq!(monthly(1).period_start(t(2024, 1, 30), 1).unwrap(), t(2024, 2, 29));
    }

    #[test]
    fn every_three_months_counts_from_the_anchor() {
        let anchor = t(2026, 11, 30);
        let q = monthly(3);
        assert_eq!(q.period_start(anchor, 1).unwrap(), t(2027, 2, 28));
        assert_eq!(q.period_start(anchor, 2).unwrap(), t(2027, 5, 30));
        assert_eq!(q.period_start(anchor, 4).unwrap(), t(2027, 11, 30));
    }

    #[test]
    fn weekly_and_daily_periods_are_exact_multiples_of_days() {
        let anchor = t(2026, 3, 1);
        let weekly = Cadence::new(Frequency::Weekly, 2).unwrap();
        assert_eq!(weekly.period_start(anchor, 3).unwrap(), t(2026, 4, 12)); // 42 days later
        let daily = Cadence::new(Frequency::Daily, 1).unwrap();
        assert_eq!(daily.period(anchor, 0).unwrap().seconds(), 86_400);
    }

    #[test]
    fn interval_must_be_from_1_to_the_frequency_bound() {
        assert!(Cadence::new(Frequency::Monthly, 0).is_err());
        assert!(Cadence::new(Frequency::Monthly, 37).is_err());
        assert!(Cadence::new(Frequency::Monthly, 36).is_ok());
        // at most three years of periods whatever the frequency
        for (frequency, max) in [(Frequency::Daily, 1098), (Frequency::Weekly, 159), (Frequency::Yearly, 3)] {
            assert!(Cadence::new(frequency, max).is_ok(), "{frequency:?}");
            assert!(Cadence::new(frequency, max + 1).is_err(), "{frequency:?}");
        }
        assert!(Frequency::parse("hourly").is_err());
    }

    #[test]
    fn frequencies_are_named_as_the_api_shows_them() {
        for (name, frequency) in [
            ("daily", Frequency::Daily),
            ("weekly", Frequency::Weekly),
            ("monthly", Frequency::Monthly),
            ("yearly", Frequency::Yearly),
        ] {
            assert_eq!(Frequency::parse(name).unwrap(), frequency);
            assert_eq!(serde_json::to_value(frequency).unwrap(), name);
        }
        assert!(matches!(Frequency::parse("Monthly"), Err(DomainError::Invalid { code: "frequency_invalid", .. })));
    }

    #[test]
    fn the_period_containing_a_time_is_found_and_none_before_the_anchor() {
        let anchor = t(2026, 1, 31);
        let p = monthly(1).period_at(anchor, t(2026, 3, 15)).unwrap().unwrap();
        assert_eq!((p.index, p.start, p.end), (1, t(2026, 2, 28), t(2026, 3, 31)));
        // the boundary instant belongs to the new period
        assert_eq!(monthly(1).period_at(anchor, t(2026, 3, 31)).unwrap().unwrap().index, 2);
        assert!(monthly(1).period_at(anchor, t(2026, 1, 1)).unwrap().is_none());
    }

    #[test]
    fn catch_up_enumerates_every_missed_period_in_order() {
        // GIVEN billing last ran for period 0 and was down until 10 April
        let anchor = t(2026, 1, 31);
        let due = monthly(1).periods_starting_until(anchor, 1, t(2026, 4, 10)).unwrap();
        // THEN periods 1 (Feb 28) and 2 (Mar 31) are due, in order; period 3 (Apr 30) is not yet
        assert_eq!(
            due.iter().map(|p| (p.index, p.start)).collect::<Vec<_>>(),
            vec![(1, t(2026, 2, 28)), (2, t(2026, 3, 31))]
        );
        // AND in arrears only periods that have ended count: 0 and 1 ended by 10 April
        let ended = monthly(1).periods_ending_until(anchor, 0, t(2026, 4, 10)).unwrap();
        assert_eq!(ended.iter().map(|p| p.index).collect::<Vec<_>>(), vec![0, 1]);
        // AND a start in the future has nothing due
        assert!(monthly(1).periods_starting_until(t(2027, 1, 1), 0, t(2026, 4, 10)).unwrap().is_empty());
    }

    #[test]
    fn a_long_outage_is_caught_up_1000_periods_at_a_time() {
        // GIVEN a daily plan whose billing was down for 1,500 days
        let anchor = t(2022, 1, 1);
        let daily = Cadence::new(Frequency::Daily, 1).unwrap();
        let until = anchor + Duration::days(1500);
        // THEN one run enumerates the first 1,000 periods, the next run the rest, in order
        let first = daily.periods_starting_until(anchor, 0, until).unwrap();
        assert_eq!(first.len(), MAX_CATCH_UP_PERIODS);
        assert_eq!((first[0].index, first[999].index), (0, 999));
        let rest = daily.periods_starting_until(anchor, 1000, until).unwrap();
        assert_eq!((rest.len(), rest[0].index, rest.last().unwrap().start), (501, 1000, until));
    }

    #[test]
    fn inputs_with_offsets_are_normalised_to_utc() {
        assert_eq!(
            parse_time("2026-01-31T21:30:00-03:00", "start").unwrap(),
            Utc.with_ymd_and_hms(2026, 2, 1, 0, 30, 0).unwrap()
        );
        assert!(parse_time("2026-02-30T00:00:00Z", "start").is_err());
        assert!(parse_time("yesterday", "start").is_err());
    }

    fn any_anchor() -> impl Strategy<Value = DateTime<Utc>> {
        (1970i32..2100, 1u32..=12, 1u32..=31, 0u32..24, 0u32..60)
            .prop_filter_map("valid date", |(y, m, d, h, mi)| Utc.with_ymd_and_hms(y, m, d, h, mi, 0).single())
    }

    proptest! {
        #[test]
        fn period_starts_never_drift_over_1000_periods(anchor in any_anchor(), interval in 1u32..=12) {
            let cadence = monthly(interval);
            for n in 0..1000u64 {
                let start = cadence.period_start(anchor, n).unwrap();
                // on the anchor day, or the last day of a shorter month; same time of day
                prop_assert!(on_anchor_day(anchor, start), "{anchor} n={n} → {start}");
                prop_assert_eq!(start.time(), anchor.time());
                // exactly n × interval calendar months after the anchor
                let months = (start.year() - anchor.year()) * 12 + i32::try_from(start.month()).unwrap() - i32::try_from(anchor.month()).unwrap();
                prop_assert_eq!(i64::from(months), i64::try_from(n).unwrap() * i64::from(interval));
            }
        }

        #[test]
        fn periods_tile_time_without_gaps_or_overlaps(anchor in any_anchor(), freq in 0usize..4, interval in 1u32..=3) {
            let frequency = [Frequency::Daily, Frequency::Weekly, Frequency::Monthly, Frequency::Yearly][freq];
            let cadence = Cadence::new(frequency, interval).unwrap();
            let mut previous_end = anchor;
            for n in 0..50 {
                let p = cadence.period(anchor, n).unwrap();
                prop_assert_eq!(p.start, previous_end);
                prop_assert!(p.end > p.start);
                // its first and last second, and its middle, are found in it
                for inside in [p.start, p.start + (p.end - p.start) / 2, p.end - Duration::seconds(1)] {
                    prop_assert_eq!(cadence.period_at(anchor, inside).unwrap(), Some(p));
                }
                previous_end = p.end;
            }
        }
    }
}

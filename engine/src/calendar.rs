//! The working calendar: working days and hours in a time zone, holidays, and working weekend
//! days (the transferred Saturdays of the Russian production calendar). Deadlines counted in
//! working time ("2 working hours") are computed here.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// When people work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The zone the hours and dates are in.
    pub timezone: Tz,
    /// Working weekdays, Monday first.
    pub weekdays: [bool; 7],
    /// Working intervals of a day, sorted, not overlapping (e.g. 09:00–13:00, 14:00–18:00).
    pub hours: Vec<(NaiveTime, NaiveTime)>,
    /// Days off that would otherwise be working days.
    pub holidays: BTreeSet<NaiveDate>,
    /// Working days that would otherwise be days off.
    pub working_weekends: BTreeSet<NaiveDate>,
}

/// How far ahead the calendar looks for working time before giving up (a calendar validated by
/// the config always has working time within a week of any date not in a holiday run).
const HORIZON_DAYS: i64 = 3660;

/// The longest working-time duration a rule may give, in working days (about 17 months of
/// five-day weeks): working time is counted day by day within the calendar's ten-year horizon,
/// which leaves room for holidays.
pub const MAX_WORKING_DAYS: i64 = 366;

impl Default for Calendar {
    /// Monday to Friday, 09:00–18:00 UTC, no holidays.
    fn default() -> Self {
        Calendar {
            timezone: Tz::UTC,
            weekdays: [true, true, true, true, true, false, false],
            hours: vec![(hm(9, 0), hm(18, 0))],
            holidays: BTreeSet::new(),
            working_weekends: BTreeSet::new(),
        }
    }
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid time")
}

impl Calendar {
    /// Whether people work on this local date at all.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        if self.working_weekends.contains(&date) {
            return true;
        }
        self.weekdays[date.weekday().num_days_from_monday() as usize]
            && !self.holidays.contains(&date)
    }

    /// The working time of one full working day.
    pub fn day_length(&self) -> Duration {
        self.hours.iter().map(|(a, b)| *b - *a).sum()
    }

    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        // A local time skipped by a DST change maps to the moment the clocks jumped to.
        match self.timezone.from_local_datetime(&local).earliest() {
            Some(t) => t.with_timezone(&Utc),
            None => {
                let mut probe = local;
                while let Some(next) = probe.checked_add_signed(Duration::minutes(15)) {
                    probe = next;
                    if let Some(t) = self.timezone.from_local_datetime(&probe).earliest() {
                        return t.with_timezone(&Utc);
                    }
                }
                local.and_utc()
            }
        }
    }

    /// The working intervals of a local date, as instants.
    fn intervals(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.is_working_day(date) {
            return vec![];
        }
        self.hours
            .iter()
            .map(|(a, b)| {
                (
                    self.instant(date.and_time(*a)),
                    self.instant(date.and_time(*b)),
                )
            })
            .collect()
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.timezone).date_naive()
    }

    /// The moment `amount` of working time after `start`. A deadline that uses up the last
    /// minute of a working day falls at the end of that day, not the start of the next.
    /// Saturates at [`crate::time::LATEST`] (a moment that never comes) if the calendar has
    /// no working time left within its horizon (ten years); [`Calendar::checked_add_working`]
    /// says so instead.
    pub fn add_working(&self, start: DateTime<Utc>, amount: Duration) -> DateTime<Utc> {
        self.checked_add_working(start, amount)
            .unwrap_or(crate::time::LATEST)
    }

    /// The moment `amount` of working time after `start`, or `None` if the calendar does not
    /// have that much working time within ten years of `start`.
    pub fn checked_add_working(
        &self,
        start: DateTime<Utc>,
        amount: Duration,
    ) -> Option<DateTime<Utc>> {
        let mut left = amount;
        if left <= Duration::zero() {
            return Some(start);
        }
        let first = self
            .local_date(start)
            .checked_sub_days(chrono::Days::new(1))?;
        for day in 0..HORIZON_DAYS {
            let date = first.checked_add_days(chrono::Days::new(day as u64))?;
            for (a, b) in self.intervals(date) {
                let from = a.max(start);
                if from >= b {
                    continue;
                }
                let available = b - from;
                if left <= available {
                    return from.checked_add_signed(left);
                }
                left -= available;
            }
        }
        None
    }

    /// The most working time a rule may ask for: [`MAX_WORKING_DAYS`] working days of this
    /// calendar.
    pub fn max_working(&self) -> Duration {
        self.day_length() * MAX_WORKING_DAYS as i32
    }

    /// Reads a duration of working time written in a rule (`2h`, `1d 4h`): a day is one
    /// working day of this calendar (its [`Calendar::day_length`]) and a week five. At most
    /// [`Calendar::max_working`].
    pub fn working_duration(&self, text: &str) -> Result<Duration, String> {
        let day = self.day_length();
        crate::time::DurationParts::parse(text)?
            .length(day, day * 5, self.max_working())
            .ok_or_else(|| {
                format!(
                    "working-time duration '{}' is too long: at most {MAX_WORKING_DAYS} working days",
                    text.trim()
                )
            })
    }

    /// The moment a duration written in a rule (`2h`, `1d 4h`) after `start`. In working time
    /// it is read by [`Calendar::working_duration`]; otherwise days and weeks are calendar
    /// ones. An error says what is wrong with the text, or that the moment is out of reach.
    pub fn after(
        &self,
        start: DateTime<Utc>,
        text: &str,
        working: bool,
    ) -> Result<DateTime<Utc>, String> {
        let out_of_range = || format!("'{text}' after {start} is out of range");
        if !working {
            let d = crate::time::parse_duration(text)?;
            return start.checked_add_signed(d).ok_or_else(out_of_range);
        }
        let total = self.working_duration(text)?;
        self.checked_add_working(start, total).ok_or_else(|| {
            format!("the calendar has no {text} of working time within ten years after {start}")
        })
    }

    /// Working time between two instants (zero if `to` is not after `from`).
    pub fn working_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        if to <= from {
            return Duration::zero();
        }
        let mut total = Duration::zero();
        let (Some(mut date), Some(last)) = (
            self.local_date(from).pred_opt(),
            self.local_date(to).succ_opt(),
        ) else {
            return Duration::zero();
        };
        while date <= last {
            for (a, b) in self.intervals(date) {
                let (s, e) = (a.max(from), b.min(to));
                if e > s {
                    total += e - s;
                }
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        total
    }

    /// Whether `t` falls in working hours.
    pub fn is_working_time(&self, t: DateTime<Utc>) -> bool {
        let d = self.local_date(t);
        [d.pred_opt(), Some(d)]
            .into_iter()
            .flatten()
            .flat_map(|d| self.intervals(d))
            .any(|(a, b)| a <= t && t < b)
    }
}

/// Parses `mon`…`sun` (or full English names).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    s.parse::<Weekday>().ok()
}

/// Parses `09:00-18:00`.
pub fn parse_hours(s: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (a, b) = s.split_once('-')?;
    let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
    let b = if b.trim() == "24:00" {
        NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999)?
    } else {
        NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?
    };
    (a < b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moscow() -> Calendar {
        Calendar {
            timezone: "Europe/Moscow".parse().unwrap(),
            hours: vec![(hm(9, 0), hm(13, 0)), (hm(14, 0), hm(18, 0))],
            holidays: [NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()].into(),
            working_weekends: [NaiveDate::from_ymd_opt(2026, 3, 14).unwrap()].into(),
            ..Calendar::default()
        }
    }

    /// Moscow local time → UTC (Moscow is UTC+3 all year).
    fn msk(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap() - Duration::hours(3)
    }

    #[test]
    fn working_hours_within_a_day_skip_the_lunch_break() {
        let c = moscow();
        assert_eq!(
            c.add_working(msk(2, 12, 0), Duration::hours(2)),
            msk(2, 15, 0)
        );
        assert_eq!(
            c.add_working(msk(2, 9, 0), Duration::hours(8)),
            msk(2, 18, 0),
            "the last minute of the day ends the day"
        );
    }

    #[test]
    fn working_hours_carry_across_the_night() {
        let c = moscow();
        assert_eq!(
            c.add_working(msk(3, 17, 0), Duration::hours(2)),
            msk(4, 10, 0)
        );
        assert_eq!(
            c.add_working(msk(3, 22, 0), Duration::hours(2)),
            msk(4, 11, 0),
            "started after hours"
        );
        assert_eq!(
            c.add_working(msk(3, 5, 0), Duration::minutes(30)),
            msk(3, 9, 30),
            "started before hours"
        );
    }

    #[test]
    fn working_hours_skip_weekends_and_holidays_but_not_working_weekends() {
        let c = moscow();
        // Friday 6 March 17:00 + 2h → Monday 9 March is a holiday → Tuesday 10 March 10:00.
        assert_eq!(
            c.add_working(msk(6, 17, 0), Duration::hours(2)),
            msk(10, 10, 0)
        );
        // Friday 13 March 17:00 + 2h → Saturday 14 March is a working Saturday.
        assert_eq!(
            c.add_working(msk(13, 17, 0), Duration::hours(2)),
            msk(14, 10, 0)
        );
        assert!(c.is_working_day(NaiveDate::from_ymd_opt(2026, 3, 14).unwrap()));
        assert!(!c.is_working_day(NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()));
    }

    #[test]
    fn a_working_day_is_the_length_of_the_working_hours() {
        let c = moscow();
        assert_eq!(c.day_length(), Duration::hours(8));
        assert_eq!(c.add_working(msk(2, 11, 0), c.day_length()), msk(3, 11, 0));
    }

    #[test]
    fn working_time_between_counts_only_working_hours() {
        let c = moscow();
        assert_eq!(
            c.working_between(msk(6, 17, 0), msk(10, 10, 0)),
            Duration::hours(2)
        );
        assert_eq!(
            c.working_between(msk(2, 12, 30), msk(2, 14, 30)),
            Duration::hours(1)
        );
        assert_eq!(
            c.working_between(msk(3, 0, 0), msk(2, 0, 0)),
            Duration::zero()
        );
        assert!(c.is_working_time(msk(2, 9, 0)));
        assert!(!c.is_working_time(msk(2, 13, 30)));
        assert!(!c.is_working_time(msk(7, 10, 0)));
    }

    #[test]
    fn daylight_saving_changes_keep_local_office_hours() {
        let c = Calendar {
            timezone: "Europe/Berlin".parse().unwrap(),
            ..Calendar::default()
        };
        // Berlin moves from UTC+1 to UTC+2 on Sunday 29 March 2026.
        let fri = Utc.with_ymd_and_hms(2026, 3, 27, 16, 0, 0).unwrap(); // 17:00 local
        assert_eq!(
            c.add_working(fri, Duration::hours(2)),
            Utc.with_ymd_and_hms(2026, 3, 30, 8, 0, 0).unwrap()
        ); // Mon 10:00 local
    }

    #[test]
    fn working_durations_are_working_days_and_bounded() {
        let c = moscow();
        assert_eq!(c.working_duration("1d 4h"), Ok(Duration::hours(12)));
        assert_eq!(c.working_duration("1w"), Ok(Duration::hours(40)));
        assert_eq!(c.working_duration("366d"), Ok(c.max_working()));
        for long in ["367d", "74w", "9999999999d", "2929h", "366d 1m"] {
            let e = c.working_duration(long).unwrap_err();
            assert!(
                e.contains("too long: at most 366 working days"),
                "{long}: {e}"
            );
        }
        assert!(c.working_duration("").is_err());
        assert!(c.working_duration("99999999999999999999w").is_err());
        assert!(c.working_duration("2 parsecs").is_err());
        assert!(c.working_duration("xd").is_err());
        let far = c.after(msk(2, 9, 0), "366d", true).unwrap();
        assert!(far > msk(2, 9, 0) + Duration::days(366), "{far}");
    }

    #[test]
    fn working_durations_have_the_syntax_of_every_other_duration() {
        let c = moscow();
        // One parser: what `parse_duration` refuses, working time refuses with the same words
        // (a sign once slipped through as a negative working time).
        for text in [
            "-1d", "+1d", "-2w", "+3h", "1d -4h", "1 d", "d", "1dd", "1.5d",
        ] {
            let plain = crate::time::parse_duration(text).unwrap_err();
            assert_eq!(c.working_duration(text), Err(plain), "{text}");
        }
        assert_eq!(
            c.working_duration("2w 1d 30m 15s"),
            Ok(Duration::hours(88) + Duration::seconds(1815))
        );
        assert_eq!(c.working_duration("1d 1d"), Ok(Duration::hours(16)));
        assert_eq!(c.working_duration("90min"), Ok(Duration::minutes(90)));
    }

    #[test]
    fn a_calendar_without_working_time_says_so_instead_of_overflowing() {
        let c = Calendar {
            weekdays: [false; 7],
            ..Calendar::default()
        };
        let start = msk(2, 9, 0);
        assert_eq!(c.checked_add_working(start, Duration::hours(1)), None);
        assert_eq!(
            c.add_working(start, Duration::hours(1)),
            crate::time::LATEST
        );
        let e = c.after(start, "2h", true).unwrap_err();
        assert!(e.contains("no 2h of working time within ten years"), "{e}");
        assert_eq!(
            c.after(DateTime::<Utc>::MAX_UTC, "1s", false),
            Err(format!(
                "'1s' after {} is out of range",
                DateTime::<Utc>::MAX_UTC
            ))
        );
    }

    #[test]
    fn hours_parse() {
        assert_eq!(parse_hours("09:00-18:00"), Some((hm(9, 0), hm(18, 0))));
        assert_eq!(parse_hours("18:00-09:00"), None);
        assert_eq!(parse_hours("9-18"), None);
        assert_eq!(parse_weekday("sat"), Some(Weekday::Sat));
    }
}

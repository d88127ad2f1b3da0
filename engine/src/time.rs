//! Times and durations a person gives: the one parser for every time typed on the command line
//! (`--now`, `--since`, `--until`, `task add --due`), written in a scenario, or read from a
//! file, and the bounds every time and duration must keep.
//!
//! **Zone.** A time without an offset is read in the calendar's time zone. A local time the
//! clocks skip when daylight saving time begins does not exist and is refused, naming it; a
//! local time that happens twice when it ends is the earlier of the two.
//!
//! **Bounds.** Times lie in [`EARLIEST`]..=[`LATEST`] (1970-01-01 to 2999-12-31, UTC) and
//! durations are at most [`MAX_DURATION`] (3660 days, ten years). Any time plus any duration
//! then stays far inside the four-digit years the log stores as sortable text and inside
//! chrono's range, so no deadline, delay or window computed from them can overflow or sort
//! wrong; nothing a CRM deals with lies outside them.
//!
//! **Durations.** [`DurationParts`] is the one reader of duration syntax (`30m`, `2h`, `1d 4h`);
//! [`parse_duration`] counts its days as calendar days, the calendar's `working_duration` as
//! working days.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The earliest time accepted: 1970-01-01T00:00:00Z.
pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// The latest time accepted: 2999-12-31T23:59:59Z.
pub const LATEST: DateTime<Utc> = match DateTime::from_timestamp(32_503_679_999, 0) {
    Some(t) => t,
    None => panic!("2999-12-31T23:59:59Z is a valid time"),
};

/// The longest duration accepted anywhere (a rule's `after`, `delay`, `window`, `period`, a
/// `wait`, a stage target, a `+2h` offset): 3660 days, ten years.
pub const MAX_DURATION: Duration = Duration::days(3660);

/// Why a typed time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a time in any accepted form.
    #[error("bad time '{text}': write 2026-03-02T09:00:00Z, 2026-03-02T12:00:00+03:00, '2026-03-02 12:00' or 2026-03-02{} (a time without an offset is in the calendar's time zone, {zone})", if *relative { ", or +2h from now" } else { "" })]
    Bad {
        /// The text given.
        text: String,
        /// The calendar's zone.
        zone: String,
        /// Whether `+2h` was allowed here.
        relative: bool,
    },
    /// A local time skipped by a daylight-saving change.
    #[error(
        "time '{text}' does not exist in {zone}: the clocks skip it when daylight saving time begins; give a time outside the gap or with an offset"
    )]
    Nonexistent {
        /// The text given.
        text: String,
        /// The calendar's zone.
        zone: String,
    },
    /// Outside [`EARLIEST`]..=[`LATEST`].
    #[error("time '{text}' is out of range: times must lie between 1970-01-01 and 2999-12-31")]
    OutOfRange {
        /// The text given.
        text: String,
    },
    /// A `+…` offset that is not a valid duration.
    #[error("bad time '{text}': {message}")]
    Duration {
        /// The text given.
        text: String,
        /// What is wrong with the duration.
        message: String,
    },
}

/// Whether `t` lies within the accepted range.
pub fn in_range(t: DateTime<Utc>) -> bool {
    (EARLIEST..=LATEST).contains(&t)
}

/// Reads a time a person typed: RFC 3339 with an offset (`2026-03-02T09:00:00+03:00`,
/// `…Z`), a local date and time (`2026-03-02 09:00`, `2026-03-02T09:00:00`, seconds and
/// fractions optional) or a date (`2026-03-02`, its midnight) in `zone`, or — when `now` is
/// given — `+2h`, `+1d 4h` after `now`. The result is bounded (see the module docs).
pub fn parse_time(
    text: &str,
    zone: Tz,
    now: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, TimeError> {
    let t = text.trim();
    let t = match (t.strip_prefix('+'), now) {
        (Some(rest), Some(now)) => {
            let d = parse_duration(rest).map_err(|message| TimeError::Duration {
                text: text.to_owned(),
                message,
            })?;
            now.checked_add_signed(d)
                .ok_or_else(|| TimeError::OutOfRange {
                    text: text.to_owned(),
                })?
        }
        _ => absolute(t, zone).ok_or_else(|| TimeError::Bad {
            text: text.to_owned(),
            zone: zone.name().to_owned(),
            relative: now.is_some(),
        })??,
    };
    if !in_range(t) {
        return Err(TimeError::OutOfRange {
            text: text.to_owned(),
        });
    }
    Ok(t)
}

/// `None` if `t` is in no accepted form; `Some(Err)` if it names a local time that does not
/// exist.
fn absolute(t: &str, zone: Tz) -> Option<Result<DateTime<Utc>, TimeError>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(Ok(dt.with_timezone(&Utc)));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(local(t, n, zone));
        }
    }
    let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    Some(local(t, d.and_hms_opt(0, 0, 0)?, zone))
}

/// A local time in `zone`: the earlier instant if it happens twice, an error if never.
fn local(text: &str, n: NaiveDateTime, zone: Tz) -> Result<DateTime<Utc>, TimeError> {
    match zone.from_local_datetime(&n) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.with_timezone(&Utc)),
        LocalResult::None => Err(TimeError::Nonexistent {
            text: text.to_owned(),
            zone: zone.name().to_owned(),
        }),
    }
}

/// A duration as written (`1d 4h`, `2w`, `90min`), its days and weeks not yet given a length:
/// the one reader of duration syntax. [`parse_duration`] counts calendar days and weeks,
/// [`crate::calendar::Calendar::working_duration`] working ones; each gives the parts a length
/// and a bound through [`DurationParts::length`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationParts {
    /// The sum of the `w` tokens.
    pub weeks: i128,
    /// The sum of the `d` tokens.
    pub days: i128,
    /// The sum of the `s`, `m` (or `min`) and `h` tokens, in seconds.
    pub seconds: i128,
}

/// The nanoseconds of a duration, exactly.
fn nanos(d: Duration) -> i128 {
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

impl DurationParts {
    /// Reads whitespace-separated tokens, each a whole number of digits (no sign) and a unit:
    /// `s`, `m` or `min`, `h`, `d`, `w`. The error says how to write a duration.
    pub fn parse(text: &str) -> Result<DurationParts, String> {
        let bad = || format!("bad duration '{text}': write it like 30m, 2h, 1d or 1d 4h");
        let mut parts = DurationParts {
            weeks: 0,
            days: 0,
            seconds: 0,
        };
        let mut seen = false;
        for part in text.split_whitespace() {
            let split = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (n, unit) = part.split_at(split);
            let n = i128::from(n.parse::<i64>().map_err(|_| bad())?);
            // Sums saturate (far past any bound) rather than overflow.
            let (slot, scale) = match unit {
                "s" => (&mut parts.seconds, 1),
                "m" | "min" => (&mut parts.seconds, 60),
                "h" => (&mut parts.seconds, 3600),
                "d" => (&mut parts.days, 1),
                "w" => (&mut parts.weeks, 1),
                _ => return Err(bad()),
            };
            *slot = slot.saturating_add(n * scale);
            seen = true;
        }
        if !seen {
            return Err(bad());
        }
        Ok(parts)
    }

    /// The length, with a day `day` long and a week `week` long, if it is at most `max`;
    /// `None` if it is longer.
    pub fn length(&self, day: Duration, week: Duration, max: Duration) -> Option<Duration> {
        let total = self
            .weeks
            .saturating_mul(nanos(week))
            .saturating_add(self.days.saturating_mul(nanos(day)))
            .saturating_add(self.seconds.saturating_mul(1_000_000_000));
        if total > nanos(max) {
            return None;
        }
        // At most `max`, so both parts fit.
        let secs = i64::try_from(total / 1_000_000_000).ok()?;
        let sub = i64::try_from(total % 1_000_000_000).ok()?;
        Duration::try_seconds(secs)?.checked_add(&Duration::nanoseconds(sub))
    }
}

/// Parses durations like `90s`, `30m`, `2h`, `1d`, `1d 4h` (days are calendar days here), at
/// most [`MAX_DURATION`] (3660 days, ten years) so that nothing computed from one
/// can overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    DurationParts::parse(text)?
        .length(Duration::days(1), Duration::weeks(1), MAX_DURATION)
        .ok_or_else(|| {
            format!(
                "duration '{}' is too long: at most 3660d (ten years)",
                text.trim()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    const MOSCOW: Tz = chrono_tz::Europe::Moscow;
    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    #[test]
    fn a_time_without_offset_is_in_the_calendar_zone() {
        for text in [
            "2026-03-02 15:00",
            "2026-03-02 15:00:00",
            "2026-03-02T15:00",
            "2026-03-02T15:00:00.000",
        ] {
            assert_eq!(
                parse_time(text, MOSCOW, None),
                Ok(utc(2026, 3, 2, 12, 0)),
                "{text}"
            );
        }
        assert_eq!(
            parse_time("2026-03-02", MOSCOW, None),
            Ok(utc(2026, 3, 1, 21, 0)),
            "a date is its local midnight"
        );
        assert_eq!(
            parse_time("2026-03-02 15:00", Tz::UTC, None),
            Ok(utc(2026, 3, 2, 15, 0))
        );
    }

    #[test]
    fn a_time_with_an_offset_keeps_it() {
        assert_eq!(
            parse_time("2026-03-02T15:00:00Z", MOSCOW, None),
            Ok(utc(2026, 3, 2, 15, 0))
        );
        assert_eq!(
            parse_time(" 2026-03-02T15:00:00+01:00 ", MOSCOW, None),
            Ok(utc(2026, 3, 2, 14, 0))
        );
    }

    #[test]
    fn relative_times_count_from_now_only_where_allowed() {
        let now = utc(2026, 3, 2, 9, 0);
        assert_eq!(
            parse_time("+2h", MOSCOW, Some(now)),
            Ok(utc(2026, 3, 2, 11, 0))
        );
        assert_eq!(
            parse_time("+1d 4h", MOSCOW, Some(now)),
            Ok(utc(2026, 3, 3, 13, 0))
        );
        assert!(matches!(
            parse_time("+2h", MOSCOW, None),
            Err(TimeError::Bad {
                relative: false,
                ..
            })
        ));
        let e = parse_time("+3000000d", MOSCOW, Some(now)).unwrap_err();
        assert!(matches!(e, TimeError::Duration { .. }), "{e}");
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[test]
    fn times_outside_the_bounds_are_refused() {
        for text in [
            "9999-12-31 23:59",
            "3000-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "0001-01-01",
        ] {
            let e = parse_time(text, Tz::UTC, None).unwrap_err();
            assert_eq!(e, TimeError::OutOfRange { text: text.into() }, "{text}");
            assert!(e.to_string().contains("between 1970-01-01 and 2999-12-31"));
        }
        assert_eq!(parse_time("2999-12-31 23:59:59", Tz::UTC, None), Ok(LATEST));
        assert_eq!(parse_time("1970-01-01", Tz::UTC, None), Ok(EARLIEST));
        let late = LATEST - Duration::hours(1);
        assert!(matches!(
            parse_time("+2h", Tz::UTC, Some(late)),
            Err(TimeError::OutOfRange { .. })
        ));
    }

    #[test]
    fn a_skipped_local_time_is_refused_and_a_repeated_one_is_the_earlier() {
        // Berlin: 2026-03-29 02:00 → 03:00 (gap); 2026-10-25 03:00 → 02:00 (02:30 twice).
        let e = parse_time("2026-03-29 02:30", BERLIN, None).unwrap_err();
        assert_eq!(
            e,
            TimeError::Nonexistent {
                text: "2026-03-29 02:30".into(),
                zone: "Europe/Berlin".into()
            }
        );
        assert!(
            e.to_string()
                .contains("'2026-03-29 02:30' does not exist in Europe/Berlin")
        );
        assert_eq!(
            parse_time("2026-10-25 02:30", BERLIN, None),
            Ok(utc(2026, 10, 25, 0, 30)),
            "02:30 summer time (UTC+2) comes first"
        );
    }

    #[test]
    fn garbage_is_refused_with_the_accepted_forms() {
        for text in ["", "tomorrow", "2026-13-01", "2026-03-02 25:00", "+"] {
            let e = parse_time(text, MOSCOW, Some(utc(2026, 3, 2, 9, 0))).unwrap_err();
            assert!(
                matches!(e, TimeError::Bad { .. } | TimeError::Duration { .. }),
                "{text}: {e}"
            );
        }
        let e = parse_time("soon", MOSCOW, None).unwrap_err();
        assert!(e.to_string().contains("Europe/Moscow"), "{e}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1d 4h").unwrap(), Duration::hours(28));
        assert_eq!(parse_duration("30m").unwrap(), Duration::minutes(30));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_duration("3660d").unwrap(), Duration::days(3660));
        for long in [
            "3661d",
            "3000000d",
            "9999999999d",
            "523w",
            "87841h",
            "3660d 1s",
        ] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("too long: at most 3660d"), "{long}: {e}");
        }
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(
            DurationParts::parse("2w 1d 90min 1h 5s"),
            Ok(DurationParts {
                weeks: 2,
                days: 1,
                seconds: 5405 + 3600
            })
        );
        assert!(DurationParts::parse("9223372036854775807w 9223372036854775807w").is_ok());
        assert!(parse_duration("9223372036854775807w 9223372036854775807w").is_err());
    }
}

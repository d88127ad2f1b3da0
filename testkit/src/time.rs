//! Fixed times: every test runs on Monday 2 March 2026, a working day in the default calendar
//! (Europe/Moscow, UTC+3).

use chrono::{DateTime, TimeZone, Utc};

/// The instant the binary's clock is fixed at (`LEADFLOW_NOW`) in [`crate::cli::Env`]:
/// Monday 2 March 2026, 09:00 UTC (12:00 in Moscow). Equal to [`t0`].
pub const NOW: &str = "2026-03-02T09:00:00Z";

/// Monday 2 March 2026, 09:00 UTC (12:00 in Moscow): the start of the store and end-to-end
/// tests, and [`NOW`].
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

/// Monday 2 March 2026, 10:00 in Moscow (07:00 UTC), an hour into the working day: the start
/// of the rules runtime's tests.
pub fn monday_10() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap()
}

/// An RFC 3339 instant; panics naming a malformed one.
pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_t0_and_monday_10_is_ten_in_moscow() {
        assert_eq!(at(NOW), t0());
        assert_eq!(monday_10().to_rfc3339(), "2026-03-02T07:00:00+00:00");
    }
}

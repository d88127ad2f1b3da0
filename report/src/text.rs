//! Times and durations for people: the one format of each (the CLI's tables, the reports and
//! the dashboard all use these).

use chrono::{DateTime, Utc};

/// An instant in the calendar's zone: `2026-03-02 12:00 MSK` (or `… +03:00` where the zone
/// has no abbreviation).
pub fn time(tz: chrono_tz::Tz, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&tz);
    let abbreviation = local.format("%Z").to_string();
    if abbreviation.starts_with(['+', '-']) {
        local.format("%Y-%m-%d %H:%M %:z").to_string()
    } else {
        format!("{} {abbreviation}", local.format("%Y-%m-%d %H:%M"))
    }
}

/// `3d 4h`, `2h 5m`, `40s`.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

//! What the log stores, as every backend hands it out: the recorded event, what an append or a
//! command wrote, a pending timer, and the text format of stored times.
//!
//! The store (SQLite now, PostgreSQL later) produces these; the robots and the rules runtime
//! read them through [`crate::workspace`]. Nothing here does I/O.

use crate::event::{DecodeError, Event};
use crate::ids::StreamId;
use chrono::{DateTime, Datelike, Timelike, Utc};

/// A SHA-256 chain hash.
pub type Hash = [u8; 32];

/// A stored event that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// Its payload does not decode.
    #[error("event at position {position}: {source}")]
    Decode {
        /// Where it is.
        position: i64,
        /// Why it does not decode.
        #[source]
        source: DecodeError,
    },
    /// A field is not what leadflow writes.
    #[error("corrupt row at position {position}: {why}")]
    Corrupt {
        /// Where it is.
        position: i64,
        /// What is wrong.
        why: String,
    },
}

/// The format of stored times.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Formats a time the way the log stores it: RFC 3339, UTC, microseconds, sortable as text
/// (`2026-03-02T09:00:00.000000Z`).
///
/// The text always has four-digit years, so text order is time order whatever the value: a
/// time before year 0 is stored as `0000-01-01T00:00:00.000000Z` and one after 9999 as
/// `9999-12-31T23:59:59.999999Z` (the nearest times the format can hold; chrono's own form,
/// `+10240-…`, would sort before every other time and break the timer queue). Times people
/// and rules give are bounded far inside this range (`leadflow_engine::time`), so only a
/// hand-made event can reach the clamp.
///
/// Hot (every event and projection row has a few), so the common case is written digit by
/// digit; leap seconds go through chrono's formatter, which the fast path matches byte for
/// byte.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    let (year, nanos) = (t.year(), t.nanosecond());
    if year < 0 {
        return "0000-01-01T00:00:00.000000Z".to_owned();
    }
    if year > 9999 {
        return "9999-12-31T23:59:59.999999Z".to_owned();
    }
    if nanos >= 1_000_000_000 {
        return t.format(TIME_FORMAT).to_string();
    }
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 6, nanos / 1000);
    String::from_utf8(b.to_vec()).expect("ASCII digits")
}

/// Parses a stored time (any RFC 3339 time; the format [`fmt_time`] writes is read without
/// going through chrono's general parser).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    parse_stored_time(s).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` exactly; `None` for anything else (including leap seconds).
fn parse_stored_time(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 27 || b[26] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = date.and_hms_micro_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?)?;
    Some(time.and_utc())
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Global position, from 1, without gaps.
    pub position: i64,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream, from 1.
    pub version: i64,
    /// Stored type name, e.g. `lead.created`.
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: i64,
    /// JSON payload as stored.
    pub payload: String,
    /// Business time (RFC 3339).
    pub occurred_at: String,
    /// When it was committed (RFC 3339).
    pub recorded_at: String,
    /// `employee:…`, `robot:…`, `system` or `api:…`.
    pub actor: String,
    /// Position of the event that caused this one.
    pub causation: Option<i64>,
    /// Position of the first event of the chain.
    pub correlation: i64,
    /// The chain hash.
    pub hash: Hash,
}

impl RecordedEvent {
    /// The payload as it is shown to people and clients: parsed (the text itself if it does
    /// not parse), with an endpoint's signing secret (`endpoint.added`) as `***` — it stays
    /// in the log, which delivery signs with, but is never shown.
    pub fn shown_payload(&self) -> serde_json::Value {
        let mut payload = serde_json::from_str::<serde_json::Value>(&self.payload)
            .unwrap_or_else(|_| serde_json::Value::String(self.payload.clone()));
        if self.event_type == "endpoint.added"
            && let Some(secret) = payload.get_mut("secret")
        {
            *secret = serde_json::Value::String("***".into());
        }
        payload
    }

    /// The event as JSON, the shape of `leadflow events --json` and the API's `/events`: every
    /// field, the payload as [`RecordedEvent::shown_payload`], the hash in hex.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "position": self.position,
            "stream": self.stream.to_string(),
            "version": self.version,
            "type": self.event_type,
            "schema_version": self.schema_version,
            "payload": self.shown_payload(),
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "actor": self.actor,
            "causation": self.causation,
            "correlation": self.correlation,
            "hash": crate::hex(&self.hash),
        })
    }

    /// The domain event, upcast to the current schema.
    pub fn decode(&self) -> Result<Event, StoredError> {
        Event::decode(&self.event_type, self.schema_version as u32, &self.payload).map_err(
            |source| StoredError::Decode {
                position: self.position,
                source,
            },
        )
    }

    /// The business time.
    pub fn occurred_at(&self) -> Result<DateTime<Utc>, StoredError> {
        parse_time(&self.occurred_at).ok_or_else(|| StoredError::Corrupt {
            position: self.position,
            why: format!("occurred_at '{}' is not a time", self.occurred_at),
        })
    }
}

/// What one append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stream appended to.
    pub stream: StreamId,
    /// Position of the first event appended.
    pub first_position: i64,
    /// Position of the last event appended.
    pub last_position: i64,
    /// The stream's version after the append.
    pub version: i64,
}

/// What executing a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The stream the command targeted (for a create: the new entity).
    pub stream: StreamId,
    /// The events appended; empty if the command changed nothing.
    pub events: Vec<Event>,
    /// Where they were appended; `None` if nothing was.
    pub appended: Option<Appended>,
}

/// A pending timer: a row of the `timers` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTimer {
    /// The position of the event that set it.
    pub id: i64,
    /// When it falls due.
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// `deadline`, `robots` or `task`.
    pub what: String,
    /// The deadline's name, or the rule of delayed robots.
    pub name: Option<String>,
    /// For delayed robots: the stage they were put off in.
    pub stage: Option<String>,
    /// For delayed robots: whether they survive the entity leaving that stage.
    pub survive_move: bool,
}

/// An external robot's request without an outcome, and who has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// The `robot.requested` event.
    pub request: RecordedEvent,
    /// Until when a process that took it (`robot.started`) has it; `None`: nobody took it.
    pub claimed_until: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chrono_fmt(t: DateTime<Utc>) -> String {
        t.format(TIME_FORMAT).to_string()
    }

    #[test]
    fn stored_times_format_and_parse_as_chrono_does() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut times = vec![
            DateTime::UNIX_EPOCH,
            Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
        ];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 400_000_000_000) as i64 - 62_000_000_000;
            times.push(DateTime::from_timestamp(secs, (x >> 40) as u32 % 1_000_000_000).unwrap());
        }
        for t in times {
            if !(0..=9999).contains(&t.year()) {
                continue;
            }
            let s = fmt_time(t);
            assert_eq!(s, chrono_fmt(t), "{t:?}");
            let chrono_parsed = DateTime::parse_from_rfc3339(&s)
                .ok()
                .map(|t| t.with_timezone(&Utc));
            assert_eq!(parse_time(&s), chrono_parsed, "{s}");
        }
    }

    #[test]
    fn stored_times_sort_as_the_times_do_whatever_their_year() {
        let mut times = vec![
            DateTime::<Utc>::MIN_UTC,
            Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10_240, 8, 21, 20, 41, 43).unwrap(),
            DateTime::<Utc>::MAX_UTC,
        ];
        times.sort();
        let stored: Vec<String> = times.iter().map(|&t| fmt_time(t)).collect();
        for (pair, t) in stored.windows(2).zip(&times) {
            assert!(
                pair[0] <= pair[1],
                "{} sorts after {} ({t})",
                pair[0],
                pair[1]
            );
        }
        for s in &stored {
            assert_eq!(s.len(), 27, "{s}");
            assert!(parse_time(s).is_some(), "{s} does not read back");
        }
        assert_eq!(
            fmt_time(Utc.with_ymd_and_hms(10_240, 8, 21, 20, 41, 43).unwrap()),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            fmt_time(DateTime::<Utc>::MIN_UTC),
            "0000-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn other_rfc3339_times_still_parse() {
        for s in [
            "2026-03-02T12:00:00+03:00",
            "2026-03-02T09:00:00Z",
            "2026-03-02T09:00:00.5Z",
            "2026-03-02t09:00:00.000000z",
            "2016-12-31T23:59:60.000000Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc));
            assert!(want.is_some(), "{s}");
            assert_eq!(parse_time(s), want, "{s}");
        }
        for s in [
            "2026-13-02T09:00:00.000000Z",
            "2026-03-02T09:00:00.00000xZ",
            "",
        ] {
            assert_eq!(parse_time(s), None, "{s}");
        }
    }
}

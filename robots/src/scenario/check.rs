//! Checks: the events a step expects (or forbids) in its window of the log, the state of
//! entities, and the [`Mismatch`]es that say what was expected and what was found.

use super::error::ScenarioError;
use super::format::{Expectation, StateCheck, Step};
use leadflow_engine::stored::{RecordedEvent, parse_time};
use leadflow_engine::workspace::Backend;
use serde_json::Value;
use std::fmt;

impl Expectation {
    fn type_matches(&self, ty: &str) -> bool {
        match self.event_type.strip_suffix('*') {
            Some(prefix) => ty.starts_with(prefix),
            None => ty == self.event_type,
        }
    }

    fn actor_matches(&self, actor: &str) -> bool {
        match &self.actor {
            None => true,
            Some(want) if want.contains(':') || want == "system" => actor == want,
            Some(want) => actor.split_once(':').is_some_and(|(_, who)| who == want),
        }
    }

    /// Whether the event is this one, apart from `with` and `contains`.
    fn roughly(&self, e: &WindowEvent) -> bool {
        self.type_matches(&e.rec.event_type)
            && self
                .stream
                .as_ref()
                .is_none_or(|s| *s == e.rec.stream.to_string())
            && self.actor_matches(&e.rec.actor)
    }

    /// How the event's payload falls short of `with` and `contains`, if it does.
    fn payload_differs(&self, e: &WindowEvent) -> Option<String> {
        if let Some(with) = &self.with
            && let Some(d) = differ(with, Some(&e.payload), "")
        {
            return Some(d);
        }
        if let Some(text) = &self.contains
            && !e.rec.payload.contains(text.as_str())
        {
            return Some(format!("the payload does not contain '{text}'"));
        }
        None
    }

    fn matches(&self, e: &WindowEvent) -> bool {
        self.roughly(e) && self.payload_differs(e).is_none()
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.event_type)?;
        if let Some(s) = &self.stream {
            write!(f, " in {s}")?;
        }
        if let Some(a) = &self.actor {
            write!(f, " by {a}")?;
        }
        if let Some(w) = &self.with {
            write!(f, " with {w}")?;
        }
        if let Some(c) = &self.contains {
            write!(f, " containing '{c}'")?;
        }
        Ok(())
    }
}

/// Something that was not as a step expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The step, counted from 1.
    pub step: usize,
    /// The line of the step in the scenario file.
    pub line: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} (line {}): {}",
            self.step, self.line, self.message
        )
    }
}

/// An event of the window under check, with its payload parsed.
struct WindowEvent {
    rec: RecordedEvent,
    payload: Value,
}

impl WindowEvent {
    /// `12 incident.recorded lead-1 [robot:missed]`, with an incident's kind and text.
    fn line(&self) -> String {
        let mut s = format!(
            "{} {} {} [{}]",
            self.rec.position, self.rec.event_type, self.rec.stream, self.rec.actor
        );
        if self.rec.event_type == "incident.recorded" {
            let kind = self
                .payload
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let text = self
                .payload
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("");
            s.push_str(&format!(" ({kind}: {text})"));
        }
        s
    }
}

/// The events after position `after`, with their payloads.
/// Checks a step's `expect` and `absent` against the events after position `after`.
pub(super) fn check_window<D: Backend>(
    store: &D,
    step: &Step,
    after: i64,
    fail: &mut dyn FnMut(String),
) -> Result<(), ScenarioError> {
    let events = read_window(store, after)?;
    check_events(step, &events, after, fail);
    Ok(())
}

fn read_window<D: Backend>(store: &D, after: i64) -> Result<Vec<WindowEvent>, ScenarioError> {
    let mut out = Vec::new();
    let mut from = after;
    loop {
        let page = store.read_after(from, 1000)?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        from = last.position;
        out.extend(page.into_iter().map(|rec| {
            let payload = serde_json::from_str(&rec.payload).unwrap_or(Value::Null);
            WindowEvent { rec, payload }
        }));
    }
}

/// The window, one event a line, for messages.
fn describe_window(events: &[WindowEvent], after: i64) -> String {
    const SHOWN: usize = 60;
    if events.is_empty() {
        return format!("the window (events after position {after}) is empty");
    }
    let mut s = format!(
        "the window (positions {}–{}) has:",
        events[0].rec.position,
        events[events.len() - 1].rec.position
    );
    for e in events.iter().take(SHOWN) {
        s.push_str("\n    ");
        s.push_str(&e.line());
    }
    if events.len() > SHOWN {
        s.push_str(&format!("\n    … and {} more", events.len() - SHOWN));
    }
    s
}

fn check_events(step: &Step, events: &[WindowEvent], after: i64, fail: &mut dyn FnMut(String)) {
    let mut from = 0;
    let mut previous: Option<usize> = None;
    for (n, want) in step.expect.iter().enumerate() {
        if let Some(i) = (from..events.len()).find(|i| want.matches(&events[*i])) {
            from = i + 1;
            previous = Some(i);
            continue;
        }
        let mut message = format!("expected event #{} ({want})", n + 1);
        if let Some(p) = previous {
            message.push_str(&format!(
                " after #{n} (position {} {})",
                events[p].rec.position, events[p].rec.event_type
            ));
        }
        message.push_str(", but none matched");
        if let Some(early) = events[..from].iter().find(|e| want.matches(e)) {
            message.push_str(&format!(
                "; one is at position {}, before the previous expectation's match (the order differs)",
                early.rec.position
            ));
        } else {
            let near: Vec<String> = events[from..]
                .iter()
                .filter(|e| want.roughly(e))
                .filter_map(|e| {
                    want.payload_differs(e).map(|d| {
                        format!(
                            "position {}: {d}; its payload is {}",
                            e.rec.position,
                            short(&e.rec.payload)
                        )
                    })
                })
                .take(3)
                .collect();
            if !near.is_empty() {
                message.push_str("; the nearest: ");
                message.push_str(&near.join("; "));
            }
        }
        message.push_str("; ");
        message.push_str(&describe_window(events, after));
        fail(message);
    }
    for unwanted in &step.absent {
        let found: Vec<String> = events
            .iter()
            .filter(|e| unwanted.matches(e))
            .map(|e| format!("{} {}", e.line(), short(&e.rec.payload)))
            .collect();
        if !found.is_empty() {
            fail(format!(
                "expected no {unwanted} in the window, but found: {}",
                found.join("; ")
            ));
        }
    }
}

/// A payload cut to a readable length.
fn short(payload: &str) -> String {
    const MAX: usize = 300;
    if payload.chars().count() <= MAX {
        return payload.to_owned();
    }
    let cut: String = payload.chars().take(MAX).collect();
    format!("{cut}…")
}

pub(super) fn check_state<D: Backend>(
    store: &D,
    check: &StateCheck,
) -> Result<Option<String>, ScenarioError> {
    let entity = store.load(check.stream)?;
    let Some(entity) = entity else {
        return Ok(check
            .exists
            .then(|| format!("expected {} to exist, but it does not", check.stream)));
    };
    if !check.exists {
        return Ok(Some(format!(
            "expected {} not to exist, but it does",
            check.stream
        )));
    }
    let json = match &entity {
        leadflow_engine::Entity::Lead(l) => serde_json::to_value(l),
        leadflow_engine::Entity::Deal(d) => serde_json::to_value(d),
        leadflow_engine::Entity::Contact(c) => serde_json::to_value(c),
        leadflow_engine::Entity::Company(c) => serde_json::to_value(c),
        leadflow_engine::Entity::Task(t) => serde_json::to_value(t),
    }
    .unwrap_or(Value::Null);
    let mut problems = Vec::new();
    let mut shown = json.clone();
    if let Value::Object(m) = &mut shown {
        m.retain(|_, v| !v.is_null());
    }
    if let Some(d) = differ(&Value::Object(check.expected.clone()), Some(&json), "") {
        problems.push(d);
    }
    for path in &check.unset {
        let mut here = Some(&json);
        for part in path.split('.') {
            here = here.and_then(|v| v.get(part));
        }
        if let Some(v) = here.filter(|v| leadflow_engine::model::is_filled(v)) {
            problems.push(format!("{path}: expected it unset, found {v}"));
        }
    }
    Ok((!problems.is_empty()).then(|| {
        format!(
            "{}: {}; it is {}",
            check.stream,
            problems.join("; "),
            short(&shown.to_string())
        )
    }))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Where `actual` falls short of `expected` (every key of an object, every item of a list,
/// equal scalars; times compare as instants): the first difference, or `None`.
fn differ(expected: &Value, actual: Option<&Value>, path: &str) -> Option<String> {
    let here = if path.is_empty() { "the payload" } else { path };
    let actual = match actual {
        None | Some(Value::Null) if expected.is_null() => return None,
        None | Some(Value::Null) => {
            return Some(format!("{here}: expected {expected}, found nothing"));
        }
        Some(a) => a,
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .find_map(|(k, v)| differ(v, a.get(k), &join(path, k))),
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{here}: expected {expected}, found {actual}"));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (e, a))| differ(e, Some(a), &format!("{here}[{i}]")))
        }
        (e, a) if same_scalar(e, a) => None,
        (e, a) => Some(format!("{here}: expected {e}, found {a}")),
    }
}

fn same_scalar(e: &Value, a: &Value) -> bool {
    match (e, a) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((parse_time(x), parse_time(y)), (Some(x), Some(y)) if x == y)
        }
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subsets_match_and_say_where_they_differ() {
        let actual = json!({"kind": "missed_deadline", "employee": "ivanov", "n": [1, 2]});
        assert_eq!(
            differ(&json!({"kind": "missed_deadline"}), Some(&actual), ""),
            None
        );
        assert_eq!(
            differ(&json!({"kind": "escalation"}), Some(&actual), "").unwrap(),
            "kind: expected \"escalation\", found \"missed_deadline\""
        );
        assert!(
            differ(&json!({"rule": "x"}), Some(&actual), "")
                .unwrap()
                .contains("found nothing")
        );
        assert!(differ(&json!({"n": [1]}), Some(&actual), "").is_some());
        // Times match as instants, whatever the offset they are written with.
        assert_eq!(
            differ(
                &json!({"due_at": "2026-03-10T09:30:00+03:00"}),
                Some(&json!({"due_at": "2026-03-10T06:30:00Z"})),
                ""
            ),
            None
        );
    }
}

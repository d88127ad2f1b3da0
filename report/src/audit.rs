//! The audit's reads for people (docs/AUDIT.md): an entity's timeline with what is still
//! pending ([`timeline`], `leadflow history` and the dashboard's card) and an event's chain of
//! causes with each robot step's rule and condition as it was then ([`explain`],
//! `leadflow explain` and the dashboard's explain page).

use crate::Error;
use crate::text::time;
use chrono::{DateTime, Utc};
use leadflow_engine::explain::{self, Frozen, Origin};
use leadflow_engine::model::Task;
use leadflow_engine::react::{responsible_of, task_parent, variables};
use leadflow_engine::stored::RecordedEvent;
use leadflow_engine::{Config, EntityKind, Event, StreamId};
use leadflow_store::query::{self, Timer, TimerFilter};
use leadflow_store::{Store, history};
use serde_json::{Value, json};

/// Chains longer than this are cut (a cause is always earlier, so a chain ends; this bounds
/// what one `explain` shows).
pub const MAX_CHAIN: usize = 1000;

/// When an event occurred, for people (its stored text when it does not parse).
pub fn occurred(config: &Config, e: &RecordedEvent) -> String {
    e.occurred_at().map_or_else(
        |_| e.occurred_at.clone(),
        |t| time(config.calendar.timezone, t),
    )
}

/// An event in words (its type when it does not decode).
pub fn words(config: &Config, e: &RecordedEvent) -> String {
    let tz = config.calendar.timezone;
    match e.decode() {
        Ok(ev) => explain::describe(config, e, &ev, &|t| time(tz, t)),
        Err(err) => format!("{} ({err})", e.event_type),
    }
}

/// The hash of the rule set in force at `position`, from the activations (in order).
pub fn in_force(activations: &[(i64, String)], position: i64) -> Option<&str> {
    let i = activations.partition_point(|(p, _)| *p < position);
    i.checked_sub(1).map(|i| activations[i].1.as_str())
}

/// A stream's timeline and what is still pending on it.
pub struct Timeline {
    /// Its events, oldest first.
    pub events: Vec<RecordedEvent>,
    /// The rule sets' activations up to its last event (position, hash), for [`in_force`].
    pub activations: Vec<(i64, String)>,
    /// Its pending deadlines and delayed robots.
    pub timers: Vec<Timer>,
    /// Its open tasks (a lead's or deal's).
    pub tasks: Vec<Task>,
}

impl Timeline {
    /// The rule and rule set (hash) that caused `e`, when a robot did.
    pub fn rule_of<'a>(&'a self, e: &'a RecordedEvent) -> Option<(&'a str, Option<&'a str>)> {
        explain::rule_of(&e.actor).map(|r| (r, in_force(&self.activations, e.position)))
    }
}

/// The timeline of `stream`; `Rejected(NotFound)` when it has no events.
pub fn timeline(store: &Store, stream: StreamId) -> Result<Timeline, Error> {
    let events = store.read_stream(stream)?;
    if events.is_empty() {
        return Err(
            leadflow_store::Error::Rejected(leadflow_engine::Rejection::NotFound { stream }).into(),
        );
    }
    let last = events.last().map_or(0, |e| e.position);
    let activations = history::activations(store, last)?;
    let timers = query::timers(
        store,
        &TimerFilter {
            stream: Some(stream),
            ..Default::default()
        },
    )?;
    let tasks = match stream.kind {
        EntityKind::Lead | EntityKind::Deal => query::open_tasks_of(store, stream)?,
        _ => Vec::new(),
    };
    Ok(Timeline {
        events,
        activations,
        timers,
        tasks,
    })
}

/// A pending timer in words: `deadline «qualify»`, `delayed robots of rule x`.
pub fn timer_words(t: &Timer) -> String {
    match t.what.as_str() {
        "deadline" => format!("deadline «{}»", t.name.as_deref().unwrap_or("-")),
        "robots" => format!(
            "delayed robots of rule {}",
            t.name.as_deref().unwrap_or("-")
        ),
        other => other.to_owned(),
    }
}

/// An event's chain of causes, newest first, with each step said.
pub struct Explained {
    /// The events, from the one asked about back to what started it.
    pub chain: Vec<RecordedEvent>,
    /// A JSON document per event: position, stream, type, text, actor, `step` (`robot`,
    /// `timer`, `command`) and, for a robot's, `rule` (its id, rule set, file, trigger and the
    /// condition re-evaluated with the values it read).
    pub steps: Vec<Value>,
    /// What started the chain: `{kind, actor, position, complete}`.
    pub started: Value,
}

impl Explained {
    /// The first event of the chain (what started it).
    pub fn first(&self) -> Option<&RecordedEvent> {
        self.chain.last()
    }
}

/// Explains the event at `position`: `Usage` for a position below 1, `Unknown` past the head.
pub fn explain(store: &Store, config: &Config, position: i64) -> Result<Explained, Error> {
    if position < 1 {
        return Err(Error::Usage(format!(
            "position {position}: positions start at 1"
        )));
    }
    let chain = history::causes(store, position, MAX_CHAIN)?;
    let Some(first) = chain.last() else {
        let head = store.last_position()?;
        return Err(Error::Unknown(format!(
            "no event at position {position}: the log ends at position {head}"
        )));
    };
    let mut steps = Vec::new();
    for (i, e) in chain.iter().enumerate() {
        let cause = chain.get(i + 1);
        let kind = if let Some(rule) = explain::rule_of(&e.actor) {
            ("robot", Some(robot_step(store, config, e, rule, cause)?))
        } else if leadflow_engine::react::CHAIN_STARTS.contains(&e.event_type.as_str()) {
            ("timer", None)
        } else {
            ("command", None)
        };
        steps.push(json!({
            "position": e.position,
            "stream": e.stream.to_string(),
            "version": e.version,
            "type": e.event_type,
            "text": words(config, e),
            "occurred_at": e.occurred_at,
            "actor": e.actor,
            "causation": e.causation,
            "correlation": e.correlation,
            "step": kind.0,
            "rule": kind.1,
        }));
    }
    let origin = Origin::of(first);
    let started = json!({
        "kind": origin.as_str(),
        "actor": first.actor,
        "position": first.position,
        "complete": first.causation.is_none(),
    });
    Ok(Explained {
        chain,
        steps,
        started,
    })
}

/// What `explain` says about one robot step: its rule as the rule set in force had it, the
/// trigger, and the condition re-evaluated on the state as of the trigger.
fn robot_step(
    store: &Store,
    config: &Config,
    step: &RecordedEvent,
    rule: &str,
    trigger: Option<&RecordedEvent>,
) -> Result<Value, Error> {
    let set = match history::ruleset_at(store, step.position)? {
        Some(rec) => match rec.decode() {
            Ok(Event::RulesetActivated(s)) => Some(s),
            _ => None,
        },
        None => None,
    };
    let mut out = json!({
        "id": rule,
        "ruleset": set.as_ref().map(|s| s.hash.clone()),
        "trigger": trigger.map(|t| t.position),
    });
    let Some(set) = set else {
        out["note"] = json!("no rule set was activated before this event");
        return Ok(out);
    };
    let stored = match explain::stored_rule(&set, rule) {
        Ok(Some(r)) => r,
        Ok(None) => {
            out["note"] = json!(format!(
                "rule set {} has no rule '{rule}'",
                explain::short_hash(&set.hash)
            ));
            return Ok(out);
        }
        Err(m) => {
            out["note"] = json!(m);
            return Ok(out);
        }
    };
    out["file"] = json!(stored.file);
    out["description"] = json!(stored.description);
    let Some(source) = stored.condition else {
        out["condition"] = Value::Null;
        return Ok(out);
    };
    let Some(trigger) = trigger else {
        out["condition"] = json!({"source": source.trim()});
        return Ok(out);
    };
    // Robots that resume, and an external robot's answer, act on a condition checked
    // earlier: at the step that put them off or asked (further down the chain).
    if matches!(
        trigger.event_type.as_str(),
        "robots.resumed" | "robot.completed" | "robot.started"
    ) {
        out["condition"] = json!({
            "source": source.trim(),
            "note": "checked when the rule first fired (an earlier step of this chain)",
        });
        return Ok(out);
    }
    // A condition the explanation cannot re-evaluate is said so on its step (the chain is
    // still explained).
    out["condition"] = match condition_then(store, config, &source, trigger, step) {
        Ok(evaluation) => evaluation,
        Err(Error::Refused(m)) => json!({
            "source": source.trim(),
            "note": format!("could not be re-evaluated: {m}"),
        }),
        Err(e) => return Err(e),
    };
    Ok(out)
}

/// A rule's condition evaluated as the rules saw it at `trigger`: the trigger's stream (and
/// a task's lead or deal) folded up to the trigger, the responsible's incidents then, the
/// time of the robot's step.
fn condition_then(
    store: &Store,
    config: &Config,
    source: &str,
    trigger: &RecordedEvent,
    step: &RecordedEvent,
) -> Result<Value, Error> {
    let decode = |e: leadflow_engine::stored::StoredError| Error::Store(e.into());
    let at = trigger.position;
    let mut frozen = Frozen::default();
    let subject = if trigger.stream.kind.is_entity() {
        let events = history::stream_until(store, trigger.stream, at)?;
        if let Some(r) = events
            .iter()
            .rev()
            .find(|e| e.event_type == "lead.repeat_detected")
        {
            frozen.repeats.push((trigger.stream, r.clone()));
        }
        explain::fold(&events).map_err(decode)?
    } else {
        None
    };
    let related = match task_parent(subject.as_ref()) {
        Some(s) => explain::fold(&history::stream_until(store, s, at)?).map_err(decode)?,
        None => None,
    };
    let now: DateTime<Utc> = step.occurred_at().map_err(decode)?;
    let responsible = responsible_of(subject.as_ref());
    if let Some(r) = &responsible {
        let since = now - leadflow_engine::react::INCIDENT_WINDOW;
        for kind in [Some("missed_deadline"), None] {
            let n = history::incidents_until(store, r.as_str(), kind, since, at)?;
            frozen.incidents.push((kind.map(str::to_owned), n));
        }
    }
    frozen.entities.extend(subject.iter().cloned());
    frozen.entities.extend(related.iter().cloned());
    let event = trigger.decode().map_err(decode)?;
    let vars = variables(
        &mut frozen,
        config,
        trigger,
        &event,
        subject.as_ref(),
        related.as_ref(),
        responsible.as_ref(),
        now,
        leadflow_engine::react::Reads::All,
    )
    .map_err(|e| Error::Refused(e.to_string()))?;
    let e = explain::evaluate(source, &vars);
    let mut values = serde_json::Map::new();
    for (path, v) in &e.values {
        values.insert(path.clone(), v.clone().unwrap_or(Value::Null));
    }
    Ok(json!({
        "source": e.source,
        "result": e.result.as_ref().ok(),
        "error": e.result.as_ref().err(),
        "values": values,
        "absent": e.values.iter().filter(|(_, v)| v.is_none()).map(|(p, _)| p).collect::<Vec<_>>(),
        "read": e.values.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        "state_at": at,
    }))
}

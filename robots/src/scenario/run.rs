//! Running a scenario: the script on a [`Backend`] and a virtual clock.

use super::check::{Mismatch, check_state, check_window};
use super::error::ScenarioError;
use super::format::{Action, Scenario};
use crate::runtime::TICKS_PER_INSTANT;
use crate::{Registry, Report, Runtime};
use chrono::{DateTime, Utc};
use leadflow_engine::calendar::Calendar;
use leadflow_engine::verb::build;
use leadflow_engine::workspace::{Backend, Stamp, WorkspaceError};
use leadflow_engine::{Actor, EventMeta};

/// What one step did: the clock when it ended and the events it appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// The step, counted from 1.
    pub step: usize,
    /// The virtual clock after it.
    pub at: DateTime<Utc>,
    /// Its events are those at positions after this ...
    pub after: i64,
    /// ... up to and including this.
    pub last: i64,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Everything that was not as expected, in step order; empty when the scenario passed.
    pub mismatches: Vec<Mismatch>,
    /// Events appended during the run (the rule-set activation included).
    pub events: usize,
    /// Per step: the clock and the positions of its events.
    pub steps: Vec<StepRun>,
    /// What the rules did over the whole run.
    pub report: Report,
    /// The virtual clock at the end.
    pub end: DateTime<Utc>,
}

impl Outcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl Scenario {
    /// A runtime for this scenario's configuration and rules, with the built-in robots.
    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.config.clone(), self.rules.clone(), Registry::builtin())
    }
}

/// Runs a scenario on the caller's database (a fresh in-memory store; a file, to look at the
/// log afterwards). The rules react only to what the scenario appends: the rule set is
/// activated at the start.
pub fn run_in<D: Backend>(scenario: &Scenario, store: &mut D) -> Result<Outcome, ScenarioError> {
    let runtime = scenario.runtime();
    let first = store.last_position()?;
    let mut now = scenario.start;
    let mut report = Report::default();
    runtime.activate(store, now)?;
    report.add(&runtime.process(store, now)?);
    let mut window = first;
    let mut mismatches = Vec::new();
    let mut runs = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let number = i + 1;
        let mut fail = |message: String| {
            mismatches.push(Mismatch {
                step: number,
                line: step.line,
                message,
            })
        };
        let after = store.last_position()?;
        match &step.action {
            Action::Check => {}
            Action::Command {
                verb,
                actor,
                args,
                expect_error,
            } => {
                let outcome = match build(*verb, args, now, &scenario.config) {
                    Err(m) => Err(m),
                    Ok(cmd) => {
                        let meta = EventMeta::root(now, actor.clone());
                        match store.write(Stamp::At(now), |ws| {
                            ws.execute(&scenario.config, &cmd, &meta)
                        }) {
                            Ok(done) => Ok(done),
                            Err(WorkspaceError::Rejected(r)) => Err(r.to_string()),
                            Err(e) => return Err(e.into()),
                        }
                    }
                };
                let who = match actor {
                    Actor::Employee(e) => e.to_string(),
                    other => other.to_string(),
                };
                match (outcome, expect_error) {
                    (Ok(_), None) => {}
                    (Err(m), Some(want)) if m.contains(want.as_str()) => {}
                    (Err(m), None) => fail(format!(
                        "{} as {who} was refused: {m} (if that is intended, add expect_error = \"...\" with part of the message)",
                        verb.as_str()
                    )),
                    (Err(m), Some(want)) => fail(format!(
                        "expected {} as {who} to be refused with a message containing '{want}', but it was refused with: {m}",
                        verb.as_str()
                    )),
                    (Ok(done), Some(want)) => {
                        let types: Vec<&str> = done.events.iter().map(|e| e.event_type()).collect();
                        fail(format!(
                            "expected {} as {who} to be refused with a message containing '{want}', but it was accepted: {} appended to {}",
                            verb.as_str(),
                            if types.is_empty() {
                                "nothing".to_owned()
                            } else {
                                types.join(", ")
                            },
                            done.stream
                        ));
                    }
                }
                report.add(&runtime.process(store, now)?);
            }
            Action::Advance(d) => match now
                .checked_add_signed(*d)
                .filter(|t| leadflow_engine::time::in_range(*t))
            {
                Some(target) => advance(
                    scenario,
                    &runtime,
                    store,
                    &mut now,
                    target,
                    &mut report,
                    &mut fail,
                )?,
                None => fail(format!(
                    "advancing the clock from {} passes 2999-12-31, the latest time leadflow takes",
                    fmt_local(now, &scenario.config.calendar)
                )),
            },
            Action::Until(target) => {
                if *target < now {
                    fail(format!(
                        "until {} is before the virtual clock, which is at {}",
                        fmt_local(*target, &scenario.config.calendar),
                        fmt_local(now, &scenario.config.calendar)
                    ));
                } else {
                    advance(
                        scenario,
                        &runtime,
                        store,
                        &mut now,
                        *target,
                        &mut report,
                        &mut fail,
                    )?;
                }
            }
        }
        if step.checks_events {
            check_window(store, step, window, &mut fail)?;
            window = store.last_position()?;
        }
        for check in &step.state {
            if let Some(m) = check_state(store, check)? {
                fail(m);
            }
        }
        runs.push(StepRun {
            step: number,
            at: now,
            after,
            last: store.last_position()?,
        });
    }
    Ok(Outcome {
        mismatches,
        events: (store.last_position()? - first) as usize,
        steps: runs,
        report,
        end: now,
    })
}

/// A time in the calendar's zone, for messages.
fn fmt_local(t: DateTime<Utc>, calendar: &Calendar) -> String {
    t.with_timezone(&calendar.timezone)
        .format("%a %Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// Moves the clock to `target` through [`Runtime::advance`]; a clock stuck on the way is a
/// mismatch.
fn advance<D: Backend>(
    scenario: &Scenario,
    runtime: &Runtime,
    store: &mut D,
    now: &mut DateTime<Utc>,
    target: DateTime<Utc>,
    report: &mut Report,
    fail: &mut dyn FnMut(String),
) -> Result<(), ScenarioError> {
    let done = runtime.advance(store, *now, target)?;
    if let Some(at) = done.stuck_at {
        fail(format!(
            "timers keep falling due at {} ({TICKS_PER_INSTANT} ticks there): a rule schedules something due at once, over and over; the clock jumps to the target",
            fmt_local(at, &scenario.config.calendar)
        ));
    }
    report.add(&done.report);
    *now = target;
    Ok(())
}

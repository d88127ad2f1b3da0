//! Scenarios: a rule set, a script of commands and clock advances, and the events and state
//! expected along the way, run against a fresh store on a virtual clock (`leadflow simulate`,
//! the examples in `examples/scenarios/`, and the tests that keep them true).
//!
//! # The file
//!
//! A scenario is one TOML file (`scenario.toml`, usually in a folder beside its `rules/`):
//!
//! ```toml
//! name = "B. Qualification with deadline and escalation"
//! description = "..."                   # optional
//! rules = "rules"                       # rule folder (or one file), relative to this file; default "rules"
//! config = "../../leadflow.toml"        # optional file or folder; default: the built-in default config
//! start = "2026-03-02T10:00:00+03:00"   # the virtual clock's start
//!
//! [[steps]]
//! note = "a web-form lead arrives"      # optional, for people reading the file
//! as = "admin"                          # actor: an employee id, system, or api:NAME; default: the
//!                                       # config's default_actor, else admin, else system
//! do = "lead.create"                    # the command (see below)
//! args = { title = "Countertop", phones = ["+7 912 000-00-01"], source = "web_form" }
//! expect_error = "missing required"     # optional: the command must be refused with this in the message
//!
//! [[steps]]
//! advance = "2h"                        # move the clock on (calendar time: 1d = 24h) ...
//! # until = "2026-03-03T09:00:00+03:00" # ... or to a moment (a time without offset is in the calendar's zone)
//!
//! [[steps]]
//! expect = [ { stream = "lead-1", type = "deadline.elapsed" },
//!            { type = "incident.recorded", with = { kind = "missed_deadline" } } ]
//! absent = ["escalation.recorded"]
//! state = [ { stream = "lead-1", stage = "in_work", responsible = "ivanov", fields.material = "granite" } ]
//! ```
//!
//! A step does at most one thing — a command (`do`) or a clock move (`advance` or `until`) —
//! and then checks; a step may also only check.
//!
//! **Commands** and their `args`: `lead.create`, `deal.create`, `contact.create`,
//! `company.create` take the fields of a new entity (as the CLI's `create` does: `title`,
//! `name`, `phones`, `emails`, `source`, `client_type`, `responsible`, `stage`, `fields = {..}`,
//! `comment`, `contact`, `company`; deals `pipeline`, `amount`, `lead`; companies `inn`,
//! `bank_account`, `bik`); `lead.update`, `deal.update`, `contact.update`, `company.update`
//! take `id` and the fields to change (built-in names or custom field ids); `lead.move` and
//! `deal.move` take `id`, `stage` and `reason`; `lead.assign` and `deal.assign` take `id` and
//! `to`; `task.create` takes `kind`, `title`, `assignee`, `due` (a duration from now, `1d`
//! by default; `working_time = true` counts working hours) or `due_at` (a time), `lead`,
//! `deal`; `task.complete` takes `id` and `result`. An `id` is a number or a stream id
//! (`lead-3`). After each command the rules run until nothing is left to process, as after a
//! CLI command; timers do not fire until the clock moves.
//!
//! **Moving the clock** fires what falls due on the way, each at its own time and in order —
//! deadlines, delayed robots, task due times, cron schedules and idle rules — and ends with a
//! tick at the target.
//!
//! **Checks.** `expect` lists events that must have been appended since the previous step
//! that had `expect` or `absent` (the *window*; the first window starts with the run), in this
//! order, other events in between allowed. An expectation is a type (`"lead.created"`, or a
//! prefix such as `"deadline.*"`) or a table: `type`, and optionally `stream` (`lead-1`),
//! `actor` (`robot:qualification-deadline`, `employee:ivanov`, `system`, or just the part
//! after the colon), `with` (a table every key of which must be in the event's JSON payload
//! with that value; nested tables and lists match the same way; times match as instants) and
//! `contains` (text that must appear in the payload). `absent` lists expectations no event of
//! the window may meet. `state` checks the current state of entities: `stream`, then any keys
//! of the entity (`stage`, `responsible`, `contact`, `fields.material`... compared like
//! `with`), `unset = ["contact", "fields.inn"]` (must be empty) and `exists = false`.
//!
//! # Running
//!
//! [`Scenario::load`] reads and checks everything — the scenario file, the configuration and
//! the rule set — and reports every problem with `file:line:column`. [`run_in`] runs it on a
//! database the caller opens (any [`Backend`]: an in-memory store, a file) and returns an [`Outcome`] whose
//! [`Mismatch`]es say which step expected what and what was found. A refused command is a
//! mismatch unless the step has `expect_error`.
//!
//! # Where to change what
//!
//! - `format.rs` — the loaded scenario: [`Scenario`], [`Step`], [`Action`], [`Expectation`],
//!   [`StateCheck`]. A new kind of step or check starts here.
//! - `load.rs` — reading and checking a scenario file ([`Scenario::load`]): the TOML layout,
//!   the configuration and rule set it names, every problem at `file:line:column` through the
//!   engine's shared diagnostics (`leadflow_engine::diag`).
//! - the commands a step gives are built by `leadflow_engine::verb` ([`Verb`] and its
//!   `build`), the one mapping from named arguments to commands, which the CLI's entity
//!   commands use too: a new command or argument is added there, for both.
//! - `run.rs` — [`run_in`]: the script on any [`Backend`], the virtual clock, the [`Outcome`].
//! - `check.rs` — event and state expectations against the log and the entities, and the
//!   [`Mismatch`] messages that say what was expected and what was found.
//! - `error.rs` — [`ScenarioError`]: why a scenario could not be loaded or run at all.
//!
//! [`Backend`]: leadflow_engine::workspace::Backend

mod check;
mod error;
mod format;
mod load;
mod run;

pub use check::Mismatch;
pub use error::ScenarioError;
pub use format::{Action, Expectation, Scenario, StateCheck, Step};
pub use leadflow_engine::verb::Verb;
pub use load::SCENARIO_FILE;
pub use run::{Outcome, StepRun, run_in};

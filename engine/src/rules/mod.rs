//! Rule sets: a folder of TOML files of rules — trigger → optional CEL condition → robots —
//! loaded whole or not at all, with every problem reported at its file, line and column.
//!
//! A loaded [`RuleSet`] indexes its rules by trigger, so finding the rules an event may fire
//! costs a hash lookup, not a scan of every rule.
//!
//! Where to change what:
//! - `model.rs` — the model ([`Rule`], [`Trigger`], [`RobotCall`], [`RuleSet`]) and the
//!   trigger-key index: [`TriggerKey`], [`RuleSet::by_key`], `crate::react::trigger_keys` (which keys an
//!   event answers to). A new trigger starts here.
//! - `load.rs` — [`RuleSet::load`]: parsing TOML rule files into the model, every check of a
//!   trigger, condition and robot parameter, the `file:line:col` of each problem, and building
//!   the index.
//! - `cycles.rs` — the warnings about rules that can trigger each other forever.
//! - `schema.rs` — [`json_schema`], the JSON Schema of a rule file for editors.

mod cycles;
mod load;
mod model;
mod schema;

pub use crate::diag::Location;
pub use load::check_cron;
pub use model::{RobotCall, Rule, RuleSet, TRIGGERS, Trigger, TriggerKey};
pub use schema::json_schema;

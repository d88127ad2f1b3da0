//! What leadflow's tests share, each written once: fixed times ([`time`]), the configuration
//! and rules loaded from text ([`setup`]), stores for a test and commands executed in them as
//! an actor at a time ([`mod@exec`]), leads ([`lead`]), the log read back ([`log`]), tables read
//! with SQL from a database in a temporary file ([`Db`]), the store's named queries a test
//! compares ([`query`]), and the harness that runs the real `leadflow` binary in a folder
//! `leadflow init` set up ([`cli`]), the service on a real socket ([`serve`], [`http`]) and a
//! webhook receiver ([`receiver`]), and mutated bytes for property tests ([`fuzz`]).
//!
//! Tests speak SQL only through this crate: a store a test inspects with SQL lives in a
//! temporary file, and [`Db`] reads (or tampers with) it over connections of its own, never
//! through the store's. Only [`query`] still reaches the store's connection, for the two reads
//! that cannot be made from another one.
//!
//! `rusqlite` is re-exported for the few tests that tamper with a file through
//! [`Db::attack`] with parameters.
//!
//! The common items are re-exported at the root: `use leadflow_testkit::*;` brings them in.

pub mod cli;
pub mod db;
pub mod exec;
pub mod fuzz;
pub mod http;
pub mod lead;
pub mod log;
pub mod query;
pub mod receiver;
pub mod serve;
pub mod setup;
pub mod time;

pub use db::{Db, WriteLock};
pub use exec::{admin, exec, exec_as, ivanov, memory_store, meta, try_exec};
pub use lead::{
    comment_event, countertop_lead, create_lead, fields, lead_stream, load_lead, numbered_lead,
};
pub use log::{
    all_events, all_streams, assert_log_is_sound, assert_projections_replay, payloads, types,
};
pub use rusqlite;
pub use setup::{
    ASSIGN_AND_QUALIFY_RULES, config, config_from, repo, rule_set, runtime, runtime_with,
    scenario_folder, source, try_rule_set,
};
pub use tempfile::TempDir;
pub use time::{monday_10, t0};

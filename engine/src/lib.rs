//! leadflow's domain: the sales entities, the commands that change them, the events those commands
//! produce, and the pure functions that fold events into state.
//!
//! Nothing here performs I/O. The engine knows nothing about SQLite, files, sockets, the wall
//! clock or async runtimes: callers hand it a [`Config`], the current state of the entities a
//! command touches, and the time from a [`Clock`], and get back events or a [`Rejection`].

pub mod access;
pub mod backtest;
pub mod calendar;
pub mod clock;
pub mod command;
pub mod condition;
pub mod config;
pub mod decide;
pub mod diag;
pub mod event;
pub mod explain;
pub mod field;
pub mod hex;
pub mod ids;
pub mod memory;
pub mod model;
pub mod projection;
pub mod react;
pub mod report;
pub mod robot;
pub mod rules;
pub mod stored;
pub mod template;
pub mod time;
pub mod verb;
pub mod workspace;

pub use clock::{Clock, ManualClock};
pub use command::Command;
pub use config::{Config, ConfigError, ConfigErrors, Source};
pub use decide::{Decision, Lookup, Rejection, decide};
pub use event::{Actor, DecodeError, Event, EventMeta};
pub use hex::hex;
pub use ids::{EntityKind, StreamId};
pub use model::Entity;
pub use time::TimeError;

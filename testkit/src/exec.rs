//! Stores for a test and commands executed in them as an actor at a time, each in a write
//! transaction of its own.

use chrono::{DateTime, Utc};
use leadflow_engine::{Actor, Command, Config, EventMeta};
use leadflow_store::{Error, Executed, Store};

/// An in-memory store, for a test that reads it back through the store's API only (one that
/// reads tables with SQL uses a [`crate::Db`]).
pub fn memory_store() -> Store {
    Store::open_in_memory().unwrap()
}

/// `admin`, the person tests act as when rules must react (a human, from the configuration).
pub fn admin() -> Actor {
    Actor::Employee("admin".into())
}

/// `ivanov`, the first-line employee most store and end-to-end tests act as.
pub fn ivanov() -> Actor {
    Actor::Employee("ivanov".into())
}

/// Metadata for a command by `actor` at `at` that starts its own chain.
pub fn meta(at: DateTime<Utc>, actor: Actor) -> EventMeta {
    EventMeta::root(at, actor)
}

/// Executes `cmd` by `actor` at `at` in its own write transaction.
pub fn try_exec(
    store: &mut Store,
    config: &Config,
    actor: Actor,
    at: DateTime<Utc>,
    cmd: &Command,
) -> Result<Executed, Error> {
    let meta = meta(at, actor);
    store.write(at, |tx| tx.execute(config, cmd, &meta))
}

/// Executes `cmd` by `actor` at `at`, which must succeed; panics naming the command and why.
pub fn exec_as(
    store: &mut Store,
    config: &Config,
    actor: Actor,
    at: DateTime<Utc>,
    cmd: &Command,
) -> Executed {
    try_exec(store, config, actor, at, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Executes `cmd` by [`admin`] at `at`, which must succeed.
pub fn exec(store: &mut Store, config: &Config, at: DateTime<Utc>, cmd: &Command) -> Executed {
    exec_as(store, config, admin(), at, cmd)
}

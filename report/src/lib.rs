//! What leadflow shows people, written once for the CLI and the dashboard of `leadflow serve`:
//! the head-of-sales reports' figures ([`figures`]) and their SVG charts ([`charts`]), times
//! and durations in words ([`text`]), and the audit's timeline of an entity and explanation of
//! an event ([`audit`]).
//!
//! It reads the store (its named queries) and the engine; it prints nothing and reads no clock
//! (the caller gives "now").

pub mod audit;
pub mod charts;
pub mod figures;
pub mod text;

/// Why a report or an audit read could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filter that does not make sense (a period that is empty, a time that does not parse).
    #[error("{0}")]
    Usage(String),
    /// Something named that the configuration or the log does not have.
    #[error("{0}")]
    Unknown(String),
    /// A condition that could not be re-evaluated.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] leadflow_store::Error),
}

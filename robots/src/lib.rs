//! leadflow's robots: the implementations of the engine's robot trait (set_stage, assign,
//! convert_lead, notify…) and the registry that finds them by name.
//!
//! The rules engine and its robots are the next layer of the product; until they land this crate
//! only reserves its place in the workspace, so that the CLI's dependency graph already has the
//! shape it will keep.

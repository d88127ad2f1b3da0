//! The Bitrix24 REST conventions (../shared/BITRIX24.md): requests, envelopes, paging,
//! filters, batch and the id mapping, as pure functions the facade's handlers use. No HTTP,
//! no SQL and no clock here.
//!
//! A handler is one call of [`respond`] (bytes, content type, query string and method path
//! in; status and JSON body out), or three steps: [`Params::from_request`] reads the query
//! and the body,
//! [`dispatch::call`] runs the method against a [`Crm`] (the store and the writer behind a
//! trait), and [`Reply::of`] wraps the outcome with the `time` block of the two instants the
//! handler measured. docs/BITRIX24-FACADE.md says what is supported.
//!
//! - `params` — query strings, form and JSON bodies, read the PHP way;
//! - `method` — the method of a path;
//! - `envelope` — `result`/`time`, list pages, batch results, error envelopes;
//! - `filter` — `filter`/`order`/`select`/`start` → a [`ListRequest`];
//! - `mapping` — Bitrix24 ids ↔ leadflow's, with defaults;
//! - `records` — leadflow records → Bitrix24 records, Bitrix24 `fields` → commands;
//! - `catalog` — `crm.*.fields`, `crm.status.list`, `crm.category.list`, stage history, users;
//! - `dispatch` — the [`Crm`] trait, one call, `batch`;
//! - `events` — the form-encoded body of an outgoing event;
//! - `memory` — an in-memory [`Crm`] for tests and sandboxes;
//! - `error` — the one [`Error`] with its status and code.

pub mod catalog;
pub mod dispatch;
pub mod envelope;
pub mod error;
pub mod events;
pub mod filter;
pub mod mapping;
pub mod memory;
pub mod method;
pub mod params;
pub mod records;

pub use dispatch::{Binding, Crm, Listed, call, respond};
pub use envelope::{Answer, Json, Reply, Start, Timing};
pub use error::Error;
pub use filter::ListRequest;
pub use mapping::Mapping;
pub use method::{Method, Op};
pub use params::Params;
pub use records::Found;

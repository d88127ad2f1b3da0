//! `leadflow serve`: the HTTP service.
//!
//! One process is a whole deployment: the native JSON API (`/api/v1`), the Bitrix24-compatible
//! REST facade (`/rest/<user>/<secret>/<method>`), web-form intake (`/intake/<form>`), health,
//! readiness and metrics; the rules react to every event and timers fire on time. Every write
//! goes through one writer thread that commits requests in groups (one fsync per batch) and
//! answers each only after the commit that holds its events; reads use read-only connections.
//!
//! The crate starts no runtime, reads no wall clock of its own and prints nothing: the binary
//! gives it a listener, a clock and a shutdown signal (the mini-redis shape).

pub mod bitrix;

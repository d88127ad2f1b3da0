//! Remembered responses: the service keeps the answer to every write request that carried an
//! `Idempotency-Key`, so that a retry with the same key and body gets the first answer and
//! appends nothing. Not a projection (it is not derived from the log, and replay leaves it
//! alone): service state written in the transaction that holds the request's events, so an
//! answer is remembered exactly when its events are committed.

use crate::error::Error;
use crate::log::Tx;
use rusqlite::{OptionalExtension, params};

/// A response remembered for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The SHA-256 (hex) of what was asked: method, path and body.
    pub request_hash: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The body answered.
    pub body: String,
    /// When (stored time format).
    pub at: String,
}

impl Tx<'_> {
    /// The response remembered for `key` of `scope` (the token that sent it), if any.
    pub fn recall_response(&self, scope: &str, key: &str) -> Result<Option<Remembered>, Error> {
        Ok(self
            .sql()
            .query_row(
                "SELECT request_hash, status, body, at FROM responses WHERE scope = ?1 AND key = ?2",
                params![scope, key],
                |r| {
                    Ok(Remembered {
                        request_hash: r.get(0)?,
                        status: r.get(1)?,
                        body: r.get(2)?,
                        at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Remembers the response to `key` of `scope`, with this transaction's time.
    pub fn remember_response(
        &mut self,
        scope: &str,
        key: &str,
        request_hash: &str,
        status: u16,
        body: &str,
    ) -> Result<(), Error> {
        let at = self.recorded_at().to_owned();
        self.sql().execute(
            "INSERT OR REPLACE INTO responses (scope, key, request_hash, status, body, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![scope, key, request_hash, status, body, at],
        )?;
        Ok(())
    }

    /// Forgets the responses remembered before `before` (stored time format); how many.
    pub fn forget_responses(&mut self, before: &str) -> Result<usize, Error> {
        Ok(self
            .sql()
            .execute("DELETE FROM responses WHERE at < ?1", params![before])?)
    }
}

//! The `tokens` table's read for decisions: the state of the token of a name (see
//! [`leadflow_engine::Lookup::token`]). Its rows are written in [`super::side`]; the queries
//! the CLI and the service make are in [`crate::query`].

use crate::error::Error;
use leadflow_engine::StreamId;
use leadflow_engine::decide::TokenState;
use rusqlite::{Connection, OptionalExtension};

/// The token named `name` in the main schema: the one not revoked if any, else the newest
/// revoked; with its stream's version (this transaction's appends included).
pub(crate) fn token_state(conn: &Connection, name: &str) -> Result<Option<TokenState>, Error> {
    let row: Option<(String, bool, i64)> = conn
        .prepare_cached(
            "SELECT t.stream, t.revoked_at IS NOT NULL, s.version FROM tokens t \
             JOIN streams s ON s.kind = 'token' AND s.entity_id = CAST(substr(t.stream, 7) AS INTEGER) \
             WHERE t.name = ?1 ORDER BY t.revoked_at IS NOT NULL, s.entity_id DESC LIMIT 1",
        )?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((stream, revoked, version)) = row else {
        return Ok(None);
    };
    let stream: StreamId = stream.parse().map_err(|why| Error::Corrupt {
        position: 0,
        why: format!("tokens.stream '{stream}': {why}"),
    })?;
    Ok(Some(TokenState {
        stream,
        version,
        revoked,
    }))
}

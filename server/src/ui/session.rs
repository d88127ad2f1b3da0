//! Dashboard sessions: signing in with a token's secret (checked as the API checks it,
//! `auth::authenticate`), the session cookie, and the guards of every POST.
//!
//! - The cookie (`leadflow_session`) holds a random id only: `HttpOnly` (no script reads it),
//!   `SameSite=Strict` (no other site's page sends it), `Path=/`. The session keeps the
//!   token's secret *hash*, never the secret; every request looks the token up again (a
//!   revoked token ends its sessions within `auth::TOKEN_CACHE_TTL`). Sessions live in the
//!   service's memory: a restart signs everyone out. An idle session ends after [`IDLE`].
//! - Every POST is checked twice against cross-site requests: its `Origin` (or, without one,
//!   its `Referer`) must be this service's own host, and the form must carry the session's
//!   form token (`csrf`), compared in constant time.
//! - The cookie and the secret never reach a log line: the request log writes the method
//!   and path only (`ops`), and neither is ever put in a path.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub(crate) const COOKIE: &str = "leadflow_session";

/// An unused session ends after this long.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);

/// The most sessions kept (the oldest idle ones go first).
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
struct Session {
    /// The token's secret hash.
    hash: String,
    /// The form token every POST must carry.
    csrf: String,
    /// When it was last used.
    seen: Instant,
}

/// The dashboard's sessions, by id.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// `n` random bytes as hex.
fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no random bytes for a session: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    /// A new session for the token of secret hash `hash`: its id and form token.
    pub(crate) fn open(&self, hash: String) -> Result<(String, String), ApiError> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let mut map = self
            .by_id
            .lock()
            .map_err(|_| ApiError::Internal("sessions lock".into()))?;
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.seen.elapsed() < IDLE);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.seen)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                hash,
                csrf: csrf.clone(),
                seen: Instant::now(),
            },
        );
        Ok((id, csrf))
    }

    /// The secret hash and form token of session `id`, if it is open (and not idle too long).
    fn get(&self, id: &str) -> Option<(String, String)> {
        let mut map = self.by_id.lock().ok()?;
        match map.get_mut(id) {
            Some(s) if s.seen.elapsed() < IDLE => {
                s.seen = Instant::now();
                Some((s.hash.clone(), s.csrf.clone()))
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends session `id`.
    pub(crate) fn close(&self, id: &str) {
        if let Ok(mut map) = self.by_id.lock() {
            map.remove(id);
        }
    }
}

/// The session id the request's `Cookie` headers carry.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that opens session `id`.
pub(crate) fn set_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"))
        .unwrap_or_else(|_| clear_cookie())
}

/// The `Set-Cookie` value that removes the cookie.
pub(crate) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("leadflow_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A signed-in request: the token's caller, the session's form token and id.
#[derive(Clone)]
pub(crate) struct Signed {
    pub caller: Caller,
    pub csrf: String,
    pub session: String,
}

/// The request's session, if it has one that is open and whose token is still valid (a
/// revoked token's session is closed here).
pub(crate) async fn signed(state: &AppState, parts: &Parts) -> Result<Option<Signed>, ApiError> {
    let Some(id) = session_id(&parts.headers) else {
        return Ok(None);
    };
    let Some((hash, csrf)) = state.sessions.get(&id) else {
        return Ok(None);
    };
    // No address: the session proves who this is, so the failed-sign-in limit of the
    // address (shared behind a proxy or NAT) does not lock signed-in people out, and a
    // revoked token's session ending is not counted as a failed attempt.
    match crate::auth::authenticate_hash(state, None, hash, None).await {
        Ok(caller) => Ok(Some(Signed {
            caller,
            csrf,
            session: id,
        })),
        Err(ApiError::Unauthorized(_)) => {
            state.sessions.close(&id);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Refuses a POST that does not come from this service's own pages: its `Origin` (or, when
/// the browser sent none, its `Referer`) must name the host it was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |why: &str| {
        ApiError::Forbidden(format!(
            "cross-site form refused: {why}; use the dashboard's own pages"
        ))
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| refused("the request names no Host"))?;
    let own = |url: &str| {
        ["http://", "https://"].iter().any(|scheme| {
            url.strip_prefix(scheme).is_some_and(|rest| {
                rest == host || rest.strip_prefix(host).is_some_and(|r| r.starts_with('/'))
            })
        })
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        return if own(origin) {
            Ok(())
        } else {
            Err(refused(&format!("it comes from origin '{origin}'")))
        };
    }
    match headers.get(header::REFERER).and_then(|r| r.to_str().ok()) {
        Some(r) if own(r) => Ok(()),
        Some(_) => Err(refused("it comes from another site's page")),
        None => Err(refused("the request has neither Origin nor Referer")),
    }
}

/// Whether the form token `given` is the session's, compared in constant time.
pub(crate) fn csrf_matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

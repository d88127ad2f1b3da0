//! Who is calling: the API token (`Authorization: Bearer <secret>`, or the secret of a Bitrix24
//! webhook URL), its role and the employee it acts for; and the check every route makes
//! ([`Caller::may`]), whose refusal is a 403 saying which role lacks what.
//!
//! Secrets stay secret: a secret is hashed (SHA-256) and looked up by its hash, so no
//! comparison runs over the secret itself; it never reaches a log line, a metric label or an
//! error message. Repeated failed attempts from one address are slowed down: after
//! [`FAILURES_ALLOWED`] within [`FAILURE_WINDOW`] the address gets 429 until the window passes.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use leadflow_engine::access::Want;
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::{Actor, StreamId};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts an address may make within [`FAILURE_WINDOW`] before it is refused (429).
pub const FAILURES_ALLOWED: u32 = 10;

/// The window failed attempts are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How long a token found by its secret is taken from memory without asking the database
/// again: tokens are made and revoked by `leadflow token` in another process, so a revoked
/// token is refused by a running service within this long.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

/// Tokens recently found, by their secret's hash (never the secret): most requests then need
/// no read of the `tokens` table (a blocking read task and a query, a tenth of a request's
/// work). Only tokens found are kept, each for [`TOKEN_CACHE_TTL`]; an unknown secret is
/// looked up every time (and counted as a failure).
#[derive(Default)]
pub struct TokenCache {
    by_hash: Mutex<HashMap<String, (Found, Instant)>>,
}

/// What a request needs of its token.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    role: String,
    employee: Option<String>,
}

/// At most this many tokens are kept (expired ones are dropped when it is reached).
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Found> {
        let map = self.by_hash.lock().ok()?;
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(f, _)| f.clone())
    }

    /// Keeps `found` as it was read by a lookup that began `at` (its lifetime counts from
    /// then, so a revocation committed while the read waited is not kept longer).
    fn put(&self, hash: String, found: Found, at: Instant) {
        if let Ok(mut map) = self.by_hash.lock() {
            if map.len() >= TOKEN_CACHE_MAX {
                map.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
                if map.len() >= TOKEN_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(hash, (found, at));
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`api:<name>` in the log).
    pub token: String,
    /// Its role.
    pub role: String,
    /// The employee it acts for, if any.
    pub employee: Option<EmployeeId>,
}

impl Caller {
    /// The actor its events record: `api:<token>` or `api:<token>@<employee>`.
    pub fn actor(&self) -> Actor {
        Actor::Api {
            token: self.token.clone(),
            employee: self.employee.clone(),
        }
    }

    /// Whether the caller's role may do `want` (403 with the reason if not).
    pub fn may(&self, state: &AppState, want: &Want) -> Result<(), ApiError> {
        state
            .config
            .access
            .check(&self.role, self.employee.as_ref(), want)
            .map_err(|d| ApiError::Forbidden(format!("token '{}': {d}", self.token)))
    }

    /// Whether the caller's role may run `command`, checked in the writer's transaction on the
    /// entity as it stands there (its pipeline; a new task's: its lead's or deal's): 403 if
    /// not, 404 for a missing entity.
    pub fn may_execute(
        &self,
        tx: &mut leadflow_store::Tx<'_>,
        config: &leadflow_engine::Config,
        command: &leadflow_engine::Command,
    ) -> Result<(), ApiError> {
        use leadflow_engine::model::Entity;
        let pipeline = match (command.target(), command) {
            (leadflow_engine::command::Target::Existing(stream), _) => match tx.load(stream)? {
                Some(e) => crate::api::entities::pipeline_of(&e, &mut |s| {
                    crate::api::entities::stream_pipeline_in(tx, s)
                })?,
                None => return Err(ApiError::NotFound(format!("{stream} does not exist"))),
            },
            // A new task is in the pipeline of what it is on (a missing one is decide's 422).
            (_, leadflow_engine::Command::CreateTask(t)) => {
                let parent = match (t.deal, t.lead) {
                    (Some(d), _) => Some(StreamId::new(leadflow_engine::ids::EntityKind::Deal, d)),
                    (None, Some(l)) => {
                        Some(StreamId::new(leadflow_engine::ids::EntityKind::Lead, l))
                    }
                    (None, None) => None,
                };
                match parent.map(|p| tx.load(p)).transpose()?.flatten() {
                    Some(Entity::Lead(l)) => Some(l.pipeline),
                    Some(Entity::Deal(d)) => Some(d.pipeline),
                    _ => None,
                }
            }
            _ => None,
        };
        config
            .access
            .check(
                &self.role,
                self.employee.as_ref(),
                &Want::of_command(command, config, pipeline.as_ref()),
            )
            .map_err(|d| ApiError::Forbidden(format!("token '{}': {d}", self.token)))
    }

    /// Whether the caller may see the events of `stream` (of a lead or deal in `pipeline`).
    pub fn may_see(
        &self,
        state: &AppState,
        stream: StreamId,
        pipeline: Option<&leadflow_engine::ids::PipelineId>,
    ) -> bool {
        state
            .config
            .access
            .may_see(&self.role, self.employee.as_ref(), stream.kind, pipeline)
    }
}

/// Failed attempts by address.
#[derive(Default)]
pub struct Failures {
    by_address: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    /// Refuses an address that failed too often lately.
    pub(crate) fn check(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        let map = self
            .by_address
            .lock()
            .map_err(|_| ApiError::Internal("lock".into()))?;
        match map.get(&ip) {
            Some((n, since)) if *n >= FAILURES_ALLOWED && since.elapsed() < FAILURE_WINDOW => {
                Err(ApiError::TooManyRequests(format!(
                    "too many failed attempts from this address; wait {} s",
                    (FAILURE_WINDOW - since.elapsed()).as_secs().max(1)
                )))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt.
    pub(crate) fn fail(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        if let Ok(mut map) = self.by_address.lock() {
            let e = map.entry(ip).or_insert((0, Instant::now()));
            if e.1.elapsed() >= FAILURE_WINDOW {
                *e = (0, Instant::now());
            }
            e.0 += 1;
            if map.len() > 100_000 {
                map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            }
        }
    }
}

/// The client's address, when the server was started with connection info.
pub(crate) fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The caller of a secret, for `ip`: 401 for an unknown or revoked one (counted), 429 after too
/// many failures. `acting_for` is a Bitrix24 URL's user: the employee the request acts for
/// instead of the token's own.
pub async fn authenticate(
    state: &AppState,
    ip: Option<IpAddr>,
    secret: &str,
    acting_for: Option<EmployeeId>,
) -> Result<Caller, ApiError> {
    let hash = leadflow_engine::access::secret_hash(secret);
    authenticate_hash(state, ip, hash, acting_for).await
}

/// [`authenticate`] by the secret's hash (what a dashboard session keeps instead of the
/// secret): the same lookup, the same refusals.
pub async fn authenticate_hash(
    state: &AppState,
    ip: Option<IpAddr>,
    hash: String,
    acting_for: Option<EmployeeId>,
) -> Result<Caller, ApiError> {
    state.failures.check(ip)?;
    let row = match state.tokens.get(&hash) {
        Some(found) => Some(found),
        None => {
            let asked = Instant::now();
            let h = hash.clone();
            let row = state
                .readers
                .read(move |st| Ok(leadflow_store::query::token_by_hash(st, &h)?))
                .await?
                .filter(leadflow_store::query::TokenRow::is_active)
                .map(|r| Found {
                    name: r.name,
                    role: r.role,
                    employee: r.employee,
                });
            if let Some(found) = &row {
                state.tokens.put(hash, found.clone(), asked);
            }
            row
        }
    };
    let Some(row) = row else {
        state.failures.fail(ip);
        metrics::counter!("leadflow_auth_failures_total").increment(1);
        return Err(ApiError::Unauthorized(
            "unknown or revoked token: make one with `leadflow token create NAME --role ROLE`"
                .into(),
        ));
    };
    // A token made for an employee acts for that employee only: a Bitrix24 URL naming
    // another user would reach that user's pipelines.
    if let (Some(own), Some(asked)) = (&row.employee, &acting_for)
        && own != asked.as_str()
    {
        state.failures.fail(ip);
        metrics::counter!("leadflow_auth_failures_total").increment(1);
        return Err(ApiError::Unauthorized(format!(
            "this token acts for the employee '{own}', not for '{asked}': use the user id of '{own}' in the URL"
        )));
    }
    Ok(Caller {
        token: row.name,
        role: row.role,
        employee: acting_for.or(row.employee.map(EmployeeId)),
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let ip = client_ip(parts);
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            state.failures.check(ip)?;
            return Err(ApiError::Unauthorized(
                "send a token: Authorization: Bearer <secret> (`leadflow token create`)".into(),
            ));
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <secret>`".into())
            })?;
        let caller = authenticate(state, ip, secret, None).await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

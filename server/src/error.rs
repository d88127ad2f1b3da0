//! The service's one error type: every failure a handler can meet, mapped to an HTTP status
//! and the JSON body `{"error": {"code", "message", "field"?, "current_version"?}}` in one
//! place (as `cli/src/error.rs` maps the CLI's to exit codes). Bad input is a 4xx that names
//! the problem; 5xx is kept for real outages (a client retries those).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leadflow_engine::Rejection;
use leadflow_robots::RobotError;
use serde_json::json;

/// What went wrong, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be read (malformed JSON, a wrong type, an unknown field).
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 401: no credentials, or wrong ones.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such entity or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the entity changed since the version the client saw.
    #[error("{message}")]
    Conflict { message: String, current: i64 },
    /// 412: `If-Match` names another version (the body gives the current one).
    #[error("{message}")]
    PreconditionFailed { message: String, current: i64 },
    /// 413: the body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content type this route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: understood, and refused by the business rules (or an idempotency key reused
    /// with another body).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 429: too many failed attempts from this address, or too many requests.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: the service cannot take the request now (shutting down, writer queue full,
    /// database locked or failing); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a defect or a broken database; the log says more.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming the field.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// A 400 about the request as a whole.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Unprocessable { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PreconditionFailed { .. } => "version_mismatch",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"code": self.code(), "message": self.to_string()});
        match self {
            ApiError::BadRequest { field: Some(f), .. }
            | ApiError::Unprocessable { field: Some(f), .. } => e["field"] = json!(f),
            ApiError::Conflict { current, .. } | ApiError::PreconditionFailed { current, .. } => {
                e["current_version"] = json!(current);
            }
            _ => {}
        }
        json!({ "error": e })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, axum::Json(self.body())).into_response();
        // A 503 is worth retrying at once; a 429 (the failed-attempt limiter, the only one
        // that gives it) only once its window is over, which is at most the window's length
        // from now: a client that waits what Retry-After says is let in.
        let retry_after = match self {
            ApiError::Unavailable(_) => Some(1),
            ApiError::TooManyRequests(_) => Some(crate::auth::FAILURE_WINDOW.as_secs().max(1)),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The machine-readable code of a business refusal, and the field it is about, if any.
pub fn rejection_code(r: &Rejection) -> (&'static str, Option<String>) {
    use Rejection as R;
    match r {
        R::NotFound { .. } => ("not_found", None),
        R::WrongKind { .. } => ("wrong_kind", None),
        R::UnknownPipeline { .. } => ("unknown_pipeline", Some("pipeline".into())),
        R::UnknownStage { .. } => ("unknown_stage", Some("stage".into())),
        R::AlreadyInStage { .. } => ("already_in_stage", Some("stage".into())),
        R::ForbiddenTransition { .. } => ("forbidden_transition", Some("stage".into())),
        R::MissingRequired { .. } => ("missing_required", None),
        R::ReasonRequired { .. } => ("reason_required", Some("reason".into())),
        R::UnknownReason { .. } => ("unknown_reason", Some("reason".into())),
        R::UnexpectedReason { .. } => ("unexpected_reason", Some("reason".into())),
        R::UnknownField { field, .. } => ("unknown_field", Some(field.clone())),
        R::ReadOnlyField { field, .. } => ("read_only_field", Some(field.clone())),
        R::InvalidValue { field, .. } => ("invalid_value", Some(field.clone())),
        R::UnknownSource { .. } => ("unknown_source", Some("source".into())),
        R::UnknownEmployee { .. } => ("unknown_employee", None),
        R::InactiveEmployee { .. } => ("inactive_employee", None),
        R::NotInTeam { .. } => ("not_in_team", None),
        R::TaskAlreadyCompleted { .. } => ("already_completed", None),
        R::InvalidTokenName { .. } => ("invalid_token_name", Some("name".into())),
        R::TokenExists { .. } => ("token_exists", Some("name".into())),
        R::UnknownRole { .. } => ("unknown_role", Some("role".into())),
        R::UnknownToken { .. } => ("unknown_token", Some("name".into())),
        R::TokenAlreadyRevoked { .. } => ("token_revoked", Some("name".into())),
        R::DeleteConverted { .. } => ("converted", None),
        R::EndpointRemoved { .. } => ("endpoint_removed", None),
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        if let Rejection::NotFound { stream } = &r {
            return ApiError::NotFound(format!("{stream} does not exist"));
        }
        let (code, field) = rejection_code(&r);
        ApiError::Unprocessable {
            code,
            message: r.to_string(),
            field,
        }
    }
}

impl From<leadflow_report::Error> for ApiError {
    fn from(e: leadflow_report::Error) -> ApiError {
        use leadflow_report::Error as E;
        match e {
            E::Usage(m) | E::Unknown(m) => ApiError::bad_request("invalid_argument", m),
            E::Refused(m) => ApiError::Internal(m),
            E::Store(e) => e.into(),
        }
    }
}

impl From<leadflow_store::Error> for ApiError {
    fn from(e: leadflow_store::Error) -> ApiError {
        use leadflow_store::Error as E;
        match e {
            E::Rejected(r) => r.into(),
            E::Conflict { stream, actual, .. } => ApiError::Conflict {
                message: format!(
                    "{stream} changed meanwhile: it is at version {actual}; reload and retry"
                ),
                current: actual,
            },
            E::Locked { .. } | E::DiskFull { .. } | E::DiskIo { .. } => {
                ApiError::Unavailable(e.to_string())
            }
            E::BadList { field, why } => {
                ApiError::bad_field(field.clone(), format!("{field}: {why}"))
            }
            E::Tampered { .. } => ApiError::Unavailable(format!(
                "the log fails its checks, so nothing is written: {e}"
            )),
            // The file or its disk cannot be used now (made read-only, moved away, unreadable,
            // busy): an outage the operator fixes, so the client is told to retry (503).
            E::ReadOnly { .. }
            | E::Unreadable { .. }
            | E::Open { .. }
            | E::Missing { .. }
            | E::Empty { .. } => {
                tracing::error!(error = %e, "the database cannot be used");
                ApiError::Unavailable(format!("the database cannot be used now: {e}"))
            }
            // A database that is not what leadflow wrote (not one, newer, corrupt rows, an
            // undecodable event), or a defect: 500. (The store names the file-level SQLite
            // failures — read-only, full, I/O, busy — as the variants above.)
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal(format!("the database failed: {other}"))
            }
        }
    }
}

impl From<leadflow_engine::workspace::WorkspaceError> for ApiError {
    fn from(e: leadflow_engine::workspace::WorkspaceError) -> ApiError {
        leadflow_store::Error::from(e).into()
    }
}

impl From<RobotError> for ApiError {
    fn from(e: RobotError) -> ApiError {
        match e {
            RobotError::Store(b) => leadflow_engine::workspace::WorkspaceError::Backend(b).into(),
            RobotError::Rejected(r) => r.into(),
            RobotError::Failed(m) => ApiError::Internal(format!("the rules failed: {m}")),
        }
    }
}

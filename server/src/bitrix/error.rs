//! The facade's one error type: each variant knows its HTTP status, its Bitrix24 `error` code
//! and its `error_description` (BITRIX24.md §3).

use thiserror::Error;

/// Why a Bitrix24 call failed. [`Error::status`], [`Error::code`] and the message
/// (`Display`, the `error_description`) make the error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The method is not one the facade serves.
    #[error("Method not found!")]
    MethodNotFound,
    /// The body or query could not be read: bad UTF-8, malformed JSON, too deep or too big.
    #[error("{0}")]
    InvalidRequest(String),
    /// A parameter or field is wrong; the message names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// `crm.*.get/update/delete` without a usable id.
    #[error("ID is not defined or invalid.")]
    IdNotDefined,
    /// No such record.
    #[error("Not found")]
    NotFound,
    /// leadflow refused the change (a stage requirement, a closed stage…); its message.
    #[error("{0}")]
    Rejected(String),
    /// The record changed meanwhile; retrying reads the new version.
    #[error("{0}")]
    Conflict(String),
    /// The token's role may not do this; the message says which role lacks what.
    #[error("{0}")]
    AccessDenied(String),
    /// `event.bind` of an event and handler already bound (Bitrix24's words).
    #[error("Handler already binded")]
    HandlerAlreadyBound,
    /// More than 50 commands in one batch.
    #[error("Max batch length exceeded")]
    BatchLengthExceeded,
    /// A batch inside a batch.
    #[error("Method is not allowed for batch usage")]
    BatchMethodNotAllowed,
    /// The webhook's user or secret is wrong.
    #[error("Wrong authorization data")]
    NoAuthFound,
    /// Too many requests.
    #[error("Too many requests")]
    QueryLimitExceeded,
    /// The service cannot answer now (the writer's queue is full, the database is locked or
    /// unreadable): retrying later may work; the message says why.
    #[error("{0}")]
    Unavailable(String),
    /// The service failed (a defect, or a database that is not leadflow's); the message says
    /// why.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status. Never 200: an error is an error (batch inner errors aside).
    pub fn status(&self) -> u16 {
        match self {
            Error::MethodNotFound => 404,
            // Bitrix24 answers a missing record with 400 and `Not found`.
            Error::NotFound
            | Error::InvalidRequest(_)
            | Error::InvalidArgument(_)
            | Error::IdNotDefined
            | Error::Rejected(_)
            | Error::HandlerAlreadyBound
            | Error::BatchLengthExceeded => 400,
            Error::Conflict(_) => 409,
            Error::NoAuthFound => 401,
            Error::AccessDenied(_) => 403,
            Error::BatchMethodNotAllowed => 405,
            Error::QueryLimitExceeded | Error::Unavailable(_) => 503,
            Error::Internal(_) => 500,
        }
    }

    /// The Bitrix24 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MethodNotFound => "ERROR_METHOD_NOT_FOUND",
            Error::InvalidRequest(_) => "INVALID_REQUEST",
            Error::InvalidArgument(_) => "INVALID_ARG_VALUE",
            // Bitrix24's crm methods answer these with an empty code.
            Error::IdNotDefined | Error::NotFound | Error::Rejected(_) => "",
            Error::Conflict(_) => "ERROR_CONFLICT",
            Error::HandlerAlreadyBound => "ERROR_CORE",
            Error::AccessDenied(_) => "ACCESS_DENIED",
            Error::BatchLengthExceeded => "ERROR_BATCH_LENGTH_EXCEEDED",
            Error::BatchMethodNotAllowed => "ERROR_BATCH_METHOD_NOT_ALLOWED",
            Error::NoAuthFound => "NO_AUTH_FOUND",
            Error::QueryLimitExceeded => "QUERY_LIMIT_EXCEEDED",
            Error::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Error::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// `{"error": CODE, "error_description": TEXT}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": self.code(), "error_description": self.to_string()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statuses_follow_the_bitrix24_table() {
        assert_eq!(Error::MethodNotFound.status(), 404);
        assert_eq!(
            Error::MethodNotFound.to_json(),
            serde_json::json!({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})
        );
        assert_eq!(Error::IdNotDefined.status(), 400);
        assert_eq!(Error::IdNotDefined.code(), "");
        assert_eq!(Error::QueryLimitExceeded.status(), 503);
        assert_eq!(Error::Unavailable("x".into()).status(), 503);
        assert_eq!(Error::Internal("x".into()).status(), 500);
        assert_eq!(Error::AccessDenied("x".into()).status(), 403);
        assert_eq!(Error::BatchLengthExceeded.status(), 400);
        assert_eq!(Error::BatchMethodNotAllowed.status(), 405);
        assert_eq!(
            Error::HandlerAlreadyBound.to_json(),
            serde_json::json!({"error": "ERROR_CORE", "error_description": "Handler already binded"})
        );
        assert_eq!(Error::HandlerAlreadyBound.status(), 400);
    }
}

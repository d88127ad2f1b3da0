//! Who is calling: the API token (`Authorization: Bearer <secret>`, or the secret of a
//! Bitrix24 webhook URL), its role and the employee it acts for.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use leadflow_engine::Actor;
use leadflow_engine::ids::EmployeeId;

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
    /// The actor its events record.
    pub fn actor(&self) -> Actor {
        Actor::Api(self.token.clone())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let _ = (parts, state);
        // Tokens and roles arrive with the access commit; until then every caller is the
        // service's own administrator.
        Ok(Caller {
            token: "anonymous".into(),
            role: "admin".into(),
            employee: None,
        })
    }
}

//! The one API error type: each variant knows its status code and its stable `code`; internal
//! failures are logged in full and answered with a short message, never with internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ssp_api::{ErrorBody, ErrorDetail};

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is not allowed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No valid token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this to an object they can see (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such object — or one the caller may not see: both answer the same (404).
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow it (409).
    #[error("{0}")]
    Conflict(String),
    /// A quota would be exceeded (409, code `quota_exceeded`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// LXD is busy with another operation on the object, even after waiting a while (409,
    /// code `busy`): a moment later the same request may well succeed.
    #[error("{0}")]
    Busy(String),
    /// LXD is not reachable (503).
    #[error("{0}")]
    Unavailable(String),
    /// Too many failed tries lately: try again after the seconds given (429, code
    /// `throttled`, with `Retry-After`).
    #[error("{0}")]
    Throttled(String, u64),
    /// Anything else (500); the details go to the log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The not-found answer for `kind` `name`, identical whether it is missing or foreign.
    pub fn not_found(kind: &str, name: &str) -> Self {
        ApiError::NotFound(format!("{kind} {name} does not exist"))
    }

    /// `error` from LXD while acting on container `object` (`alice/dev`): a busy instance is
    /// named, with what holds it; anything else as [`From`] maps it.
    pub fn lxd_on(object: &str, error: ssp_lxd::Error) -> Self {
        match error.busy_with() {
            Some(kind) => ApiError::Busy(busy_message(object, kind)),
            None => error.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::QuotaExceeded(_) => (StatusCode::CONFLICT, "quota_exceeded"),
            ApiError::Busy(_) => (StatusCode::CONFLICT, "busy"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Throttled(..) => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                "internal error; the daemon's log has the details".to_string()
            }
            other => other.to_string(),
        };
        let mut response =
            (status, Json(ErrorBody { error: ErrorDetail { code: code.into(), message } })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        if let ApiError::Throttled(_, seconds) = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*seconds));
        }
        response
    }
}

impl From<ssp_store::Error> for ApiError {
    fn from(error: ssp_store::Error) -> Self {
        match error {
            ssp_store::Error::NotFound { kind, name } => ApiError::not_found(kind, &name),
            ssp_store::Error::Exists { .. } | ssp_store::Error::Conflict(_) | ssp_store::Error::Refused(_) => {
                ApiError::Conflict(error.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ssp_lxd::Error> for ApiError {
    fn from(error: ssp_lxd::Error) -> Self {
        match error {
            ssp_lxd::Error::Connect { .. } => {
                ApiError::Unavailable(format!("the LXD daemon is not reachable ({error}); an admin must start it"))
            }
            ssp_lxd::Error::Timeout { .. } => {
                ApiError::Unavailable(format!("LXD did not answer in time ({error}); try again shortly"))
            }
            // Handlers that know the object use `ApiError::lxd_on`; this is the fallback.
            busy if busy.is_busy() => ApiError::Busy(busy_message("the container", busy.busy_with().unwrap_or(""))),
            other => ApiError::Internal(format!("LXD: {other}")),
        }
    }
}

/// "OBJECT is busy with an LXD KIND operation; try again in a moment".
pub(crate) fn busy_message(object: &str, kind: &str) -> String {
    let operation =
        if kind.is_empty() { "another LXD operation".to_string() } else { format!("an LXD {kind} operation") };
    format!("{object} is busy with {operation}; try again in a moment")
}

impl From<ssp_core::names::NameError> for ApiError {
    fn from(error: ssp_core::names::NameError) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<ssp_core::size::SizeError> for ApiError {
    fn from(error: ssp_core::size::SizeError) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<ssp_core::sshkey::KeyError> for ApiError {
    fn from(error: ssp_core::sshkey::KeyError) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose parse errors answer in the API's error format (400) rather than
/// axum's plain text.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!("request body: {}", rejection.body_text()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    fn busy(kind: &str) -> ssp_lxd::Error {
        ssp_lxd::Error::OperationFailed {
            id: "x".into(),
            description: "Restarting instance".into(),
            message: format!("Instance is busy running a \"{kind}\" operation"),
        }
    }

    #[test]
    fn busy_is_a_conflict_that_says_what_is_in_the_way() {
        let named = ApiError::lxd_on("alice/dev", busy("update"));
        assert!(
            matches!(&named, ApiError::Busy(m) if m == "alice/dev is busy with an LXD update operation; try again in a moment"),
            "{named:?}"
        );
        assert_eq!(named.parts(), (axum::http::StatusCode::CONFLICT, "busy"));
        let unnamed: ApiError = busy("stop").into();
        assert!(matches!(&unnamed, ApiError::Busy(m) if m.contains("busy with an LXD stop operation")), "{unnamed:?}");
        let other = ApiError::lxd_on("alice/dev", ssp_lxd::Error::InvalidName { name: ".".into() });
        assert!(matches!(other, ApiError::Internal(_)));
    }
}

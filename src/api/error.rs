//! The one error type of the API, and the mapping of warp's own rejections
//! into the same `{"error": {"code", "message"}}` shape.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::auth::HashingStopped;
use crate::db::DbError;
use crate::limits::Refusal;

/// An error a client sees: a status, a stable code, and a message naming
/// the problem; for invalid fields, the field.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
    /// Seconds after which trying again makes sense (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A refusal with its own code (`locked`, `banned`, …) for clients
    /// to tell apart.
    pub fn forbidden_as(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// The answer to anything a banned user tries: that they are banned,
    /// until when and why.
    pub fn banned(ban: &crate::db::Ban) -> ApiError {
        let mut message = match &ban.until {
            Some(until) => format!("you are banned until {until}"),
            None => "you are banned".to_string(),
        };
        if let Some(reason) = ban.reason.as_deref().filter(|r| !r.is_empty()) {
            message.push_str(&format!(": {reason}"));
        }
        ApiError::forbidden_as("banned", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    pub fn too_many_requests(what: &str, wait: std::time::Duration) -> ApiError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many {what}; try again in {seconds} s"),
            )
        }
    }

    /// The answer to an action a rate limit refused.
    pub fn limited(what: &str, refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Wait(wait) => ApiError::too_many_requests(what, wait),
            Refusal::Db(error) => error.into(),
        }
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on the server",
        )
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> ApiError {
        match error {
            DbError::Busy => ApiError::unavailable("the database is busy; try again shortly"),
            DbError::Conflict => ApiError::conflict("that already exists"),
            DbError::Schema(detail) => {
                tracing::error!(%detail, "database schema");
                ApiError::internal()
            }
            DbError::Other(detail) => {
                // The detail goes to the log, not to the client.
                tracing::error!(%detail, "database error");
                ApiError::internal()
            }
        }
    }
}

impl From<HashingStopped> for ApiError {
    fn from(_: HashingStopped) -> ApiError {
        ApiError::unavailable("the server is stopping; try again shortly")
    }
}

impl warp::reject::Reject for ApiError {}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
                field: self.field,
            },
        };
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// A handler's outcome as a response.
pub fn respond<T: Reply>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(reply) => reply.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Turns every rejection, ours and warp's, into the JSON error shape.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    // A request is tried against every route; the most specific complaint
    // wins, and "wrong method" only when nothing more specific was found.
    let error = if let Some(error) = rejection.find::<ApiError>() {
        error.clone()
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is over 64 KiB",
        )
    } else if rejection.find::<reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a Content-Length with the body",
        )
    } else if let Some(error) = rejection.find::<reject::InvalidQuery>() {
        ApiError::bad_request(format!("bad query string: {error}"))
    } else if let Some(error) = rejection.find::<reject::InvalidHeader>() {
        ApiError::bad_request(error.to_string())
    } else if let Some(error) = rejection.find::<reject::MissingHeader>() {
        ApiError::bad_request(error.to_string())
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        )
    } else if rejection.is_not_found() {
        ApiError::not_found("no such page or endpoint")
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::internal()
    };
    Ok(error.into_response())
}

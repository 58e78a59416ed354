//! The HTTP API: one file per resource, each exposing `routes(state)`, plus
//! the shared pieces every endpoint uses: the JSON body filter, field
//! validation, CORS for configured origins, and the error type.
//!
//! Handlers validate, call `db`, and reply. They hold no SQL and no stream
//! logic.

pub mod admin;
pub mod auth;
pub mod comments;
pub mod error;
pub mod events;
pub mod identity;
pub mod likes;
pub mod preview;
pub mod search;
pub mod status;
pub mod threads;

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::server::PeerAddr;
use crate::State;
use error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY: u64 = 64 * 1024;

/// Every route of the server, with errors in one JSON shape and CORS
/// headers for configured origins.
pub fn routes(
    state: State,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let api = auth::routes(state.clone())
        .or(threads::routes(state.clone()))
        .unify()
        .or(threads::pin_routes(state.clone()))
        .unify()
        .or(admin::routes(state.clone()))
        .unify()
        .or(comments::routes(state.clone()))
        .unify()
        .or(likes::routes(state.clone()))
        .unify()
        .or(preview::routes(state.clone()))
        .unify()
        .or(search::routes(state.clone()))
        .unify()
        .or(events::routes(state.clone()))
        .unify()
        .or(status::routes(state.clone()))
        .unify()
        .or(crate::web::routes(state.clone()))
        .unify()
        .or(preflight())
        .unify()
        .recover(error::recover)
        .unify();
    let origins = state.config.cors_origins.clone();
    let metrics = state.metrics.clone();
    let log = warp::log::custom(move |info| {
        let route = route_label(info.path());
        let status = info.status().as_u16();
        metrics.record_request(method_label(info.method()), route, status);
        tracing::debug!(method = %info.method(), route, status, elapsed = ?info.elapsed(), "request");
    });
    // An unreadable Origin header counts as none (no CORS headers).
    let origin = warp::header::optional::<String>("origin")
        .or(warp::any().map(|| None))
        .unify();
    origin
        .and(api)
        .map(move |origin: Option<String>, response: Response| {
            with_cors(&origins, origin.as_deref(), response)
        })
        .with(log)
        .map(Reply::into_response)
}

/// The method as a fixed label (anything unusual is "other"), so counting a
/// request allocates nothing and odd methods cannot add series.
fn method_label(method: &warp::http::Method) -> &'static str {
    use warp::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// A request path with its ids taken out, so metrics have one series per
/// endpoint rather than one per thread.
fn route_label(path: &str) -> &'static str {
    const FIXED: &[&str] = &[
        "/",
        "/healthz",
        "/metrics",
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/community/threads",
        "/api/community/comment",
        "/api/community/like",
        "/api/community/preview",
        "/api/community/search",
        events::PATH,
        "/api/community/stats",
        "/api/admin/log",
    ];
    if let Some(fixed) = FIXED.iter().find(|fixed| **fixed == path) {
        return fixed;
    }
    if path.starts_with("/api/community/threads/") {
        "/api/community/threads/:id"
    } else if path.starts_with("/api/admin/users/") {
        "/api/admin/users/:id/ban"
    } else if path.starts_with("/api/community/comments/") {
        "/api/community/comments/:id"
    } else if path.starts_with("/t/") {
        "/t/:id"
    } else if path.starts_with("/assets/") {
        "/assets/:name"
    } else {
        "other"
    }
}

/// The body as JSON of type `T`: `Content-Type: application/json`, at most
/// [`MAX_BODY`] bytes, and well-formed, else a clear 415, 413 or 400.
pub fn json_body<T: DeserializeOwned + Send>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and_then(|content_type: Option<String>, body: Bytes| async move {
            let is_json = content_type.as_deref().is_some_and(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
            if !is_json {
                return Err(warp::reject::custom(ApiError::unsupported_media_type(
                    "send the body as JSON, with Content-Type: application/json",
                )));
            }
            serde_json::from_slice::<T>(&body).map_err(|error| {
                warp::reject::custom(ApiError::bad_request(format!(
                    "the body is not valid JSON for this endpoint: {error}"
                )))
            })
        })
}

/// Checks a required text field's presence and length in characters.
pub fn text_field(
    field: &'static str,
    value: Option<String>,
    min: usize,
    max: usize,
) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))?;
    let length = value.chars().count();
    if length < min || value.trim().is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if length > max {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be at most {max} characters (got {length})"),
        ));
    }
    Ok(value)
}

/// An id given by the client (path or body): ids are short, printable text.
/// The HTML a post's `content` renders to, its `@name`s of existing users
/// linked. Every write of a thread's or comment's content goes through
/// here, so what is stored beside the source is always this function's.
pub async fn render_content(state: &State, content: &str) -> Result<String, ApiError> {
    let mentioned = crate::markdown::mentioned(content);
    let known = if mentioned.is_empty() {
        Vec::new()
    } else {
        state.db.registered_usernames(mentioned).await?
    };
    let user = |name: &str| known.iter().find(|k| k.eq_ignore_ascii_case(name)).cloned();
    Ok(crate::markdown::render(content, &user))
}

pub fn id_field(field: &'static str, value: Option<String>) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))?;
    if value.is_empty() || value.len() > 64 || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} is not a valid id"),
        ));
    }
    Ok(value)
}

/// The client's address: the connection's peer or, with `--behind-proxy`,
/// the last address in `X-Forwarded-For` (the one the proxy itself added).
pub fn client_ip(state: &State) -> impl Filter<Extract = (IpAddr,), Error = Rejection> + Clone {
    let behind_proxy = state.config.behind_proxy;
    warp::ext::optional::<PeerAddr>()
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .map(move |peer: Option<PeerAddr>, forwarded: Option<String>| {
            let forwarded = forwarded.filter(|_| behind_proxy).and_then(|list| {
                list.rsplit(',')
                    .next()
                    .and_then(|last| last.trim().parse().ok())
            });
            forwarded
                .unwrap_or_else(|| peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip()))
        })
}

/// A JSON reply with a status.
pub fn json_reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// `OPTIONS` for any path: a CORS preflight from a configured origin gets
/// its allowances (added by `with_cors`), anyone else an empty 204.
fn preflight() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // Matched by hand: `warp::options()` would answer every other request
    // to an unknown path with 405 instead of 404.
    warp::method().and_then(|method: warp::http::Method| async move {
        if method == warp::http::Method::OPTIONS {
            Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
        } else {
            Err(warp::reject::not_found())
        }
    })
}

fn with_cors(origins: &[String], origin: Option<&str>, mut response: Response) -> Response {
    let Some(origin) = origin.filter(|origin| origins.iter().any(|o| o == origin)) else {
        return response;
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert("access-control-allow-origin", value);
        headers.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
        headers.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        headers.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("Content-Type, Authorization, Last-Event-ID"),
        );
        headers.insert("vary", HeaderValue::from_static("Origin"));
    }
    response
}

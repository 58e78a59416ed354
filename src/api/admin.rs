//! What only admins do: ban and unban users, and read the moderation log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::{respond, ApiError};
use super::{id_field, identity, json_body, json_reply};
use crate::auth::Viewer;
use crate::db::{Banning, Json, Role, User};
use crate::State;

/// Longest ban reason, in characters.
pub const MAX_REASON: usize = 500;
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    ban(state.clone())
        .or(unban(state.clone()))
        .unify()
        .or(log(state))
        .unify()
}

/// The admin behind a request, else 403 (401 when signed out).
fn admin(viewer: Viewer) -> Result<User, ApiError> {
    match viewer.user {
        Some(user) if user.role == Role::Admin => Ok(user),
        Some(_) => Err(ApiError::forbidden("only admins may do this")),
        None => Err(ApiError::unauthorized("sign in first")),
    }
}

#[derive(Deserialize)]
struct BanBody {
    reason: Option<String>,
    /// When the ban ends (RFC 3339); absent or null: until lifted.
    until: Option<String>,
}

/// PUT /api/admin/users/:id/ban
fn ban(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "admin" / "users" / String / "ban")
        .and(warp::put())
        .and(identity::author(state.clone()))
        .and(json_body())
        .then(move |id, viewer, body| {
            let state = state.clone();
            async move { respond(handle_ban(state, id, viewer, body).await) }
        })
}

async fn handle_ban(
    state: State,
    id: String,
    viewer: Viewer,
    body: BanBody,
) -> Result<Response, ApiError> {
    let admin = admin(viewer)?;
    let id = id_field("id", Some(id))?;
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if let Some(reason) = &reason {
        let length = reason.chars().count();
        if length > MAX_REASON {
            return Err(ApiError::invalid(
                "reason",
                format!("reason must be at most {MAX_REASON} characters (got {length})"),
            ));
        }
    }
    let until = body
        .until
        .map(|text| {
            let at = DateTime::parse_from_rfc3339(&text)
                .map_err(|_| {
                    ApiError::invalid(
                        "until",
                        "until must be an RFC 3339 time, such as 2030-01-31T12:00:00Z",
                    )
                })?
                .with_timezone(&Utc);
            if at <= Utc::now() {
                return Err(ApiError::invalid("until", "until must be in the future"));
            }
            Ok(at)
        })
        .transpose()?;
    if id == admin.id {
        return Err(ApiError::forbidden("you cannot ban yourself"));
    }
    match state.db.ban(id, admin.id, reason, until).await? {
        Banning::Done => {
            Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
        }
        Banning::Missing => Err(ApiError::not_found("no such user")),
        Banning::Admin => Err(ApiError::forbidden(
            "admins cannot be banned: make them a member with `stoa role` first",
        )),
    }
}

/// DELETE /api/admin/users/:id/ban
fn unban(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "admin" / "users" / String / "ban")
        .and(warp::delete())
        .and(identity::author(state.clone()))
        .then(move |id: String, viewer: Viewer| {
            let state = state.clone();
            async move {
                respond(
                    async move {
                        let admin = admin(viewer)?;
                        let id = id_field("id", Some(id))?;
                        if !state.db.unban(id, admin.id).await? {
                            return Err(ApiError::not_found("no such user"));
                        }
                        Ok(
                            warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT)
                                .into_response(),
                        )
                    }
                    .await,
                )
            }
        })
}

#[derive(Deserialize)]
struct LogQuery {
    limit: Option<usize>,
    before: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogPage {
    entries: Vec<Json>,
    next_cursor: Option<i64>,
}

/// GET /api/admin/log?limit=&before=
fn log(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "admin" / "log")
        .and(warp::get())
        .and(warp::query::<LogQuery>())
        .and(identity::viewer(state.clone()))
        .then(move |query: LogQuery, viewer: Viewer| {
            let state = state.clone();
            async move {
                respond(
                    async move {
                        admin(viewer)?;
                        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
                        if !(1..=MAX_PAGE).contains(&limit) {
                            return Err(ApiError::invalid(
                                "limit",
                                format!("limit must be 1 to {MAX_PAGE}"),
                            ));
                        }
                        let entries = state.db.moderation_log(limit, query.before).await?;
                        let next_cursor = (entries.len() == limit)
                            .then(|| entries.last().and_then(entry_id))
                            .flatten();
                        Ok(json_reply(
                            StatusCode::OK,
                            &LogPage {
                                entries,
                                next_cursor,
                            },
                        ))
                    }
                    .await,
                )
            }
        })
}

/// An entry's `id`, for the cursor of the page after it.
fn entry_id(entry: &Json) -> Option<i64> {
    #[derive(Deserialize)]
    struct Id {
        id: i64,
    }
    serde_json::from_str::<Id>(entry.get()).ok().map(|e| e.id)
}

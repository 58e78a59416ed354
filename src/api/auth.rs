//! Accounts and sessions: register, login, logout, me.

use serde::{Deserialize, Serialize};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::{respond, ApiError};
use super::{client_ip, json_body, json_reply};
use crate::auth::{self, Viewer};
use crate::db::users::{self, User};
use crate::db::{sessions, DbError};
use crate::State;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    register(state.clone())
        .or(login(state.clone()))
        .unify()
        .or(logout(state.clone()))
        .unify()
        .or(me(state))
        .unify()
}

#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Serialize)]
struct SignedIn {
    user: User,
    token: String,
}

/// POST /api/auth/register
fn register(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "auth" / "register")
        .and(warp::post())
        .and(sign_in_allowed(&state))
        .and(json_body())
        .then(move |body| {
            let state = state.clone();
            async move { respond(handle_register(state, body).await) }
        })
}

async fn handle_register(state: State, body: Credentials) -> Result<Response, ApiError> {
    let username = valid_username(body.username)?;
    let password = valid_password(body.password)?;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        username,
    };
    let hash = auth::off_thread(move || auth::hash_password(&password)).await?;
    let stored = user.clone();
    state
        .db
        .write(move |tx| users::insert(tx, &stored, &hash))
        .await
        .map_err(|error| match error {
            DbError::Conflict => ApiError::conflict("that username is taken"),
            other => other.into(),
        })?;
    signed_in(&state, user, StatusCode::CREATED).await
}

/// POST /api/auth/login
fn login(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "auth" / "login")
        .and(warp::post())
        .and(sign_in_allowed(&state))
        .and(json_body())
        .then(move |body| {
            let state = state.clone();
            async move { respond(handle_login(state, body).await) }
        })
}

async fn handle_login(state: State, body: Credentials) -> Result<Response, ApiError> {
    let username = body.username.unwrap_or_default();
    let password = body.password.unwrap_or_default();
    let found = state
        .db
        .read(move |tx| users::by_username(tx, &username))
        .await?;
    // Verify against some hash even for an unknown user, so the answer
    // takes as long either way and does not tell which usernames exist.
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, auth::decoy_hash()),
    };
    let verified = auth::off_thread(move || auth::verify_password(&password, &hash)).await?;
    match user {
        Some(user) if verified => signed_in(&state, user, StatusCode::OK).await,
        _ => Err(ApiError::unauthorized("wrong username or password")),
    }
}

async fn signed_in(state: &State, user: User, status: StatusCode) -> Result<Response, ApiError> {
    let token = auth::start_session(&state.db, user.id.clone()).await?;
    let cookie = auth::session_cookie(&token);
    let mut response = json_reply(status, &SignedIn { user, token });
    response.headers_mut().insert(
        "set-cookie",
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?,
    );
    Ok(response)
}

/// POST /api/auth/logout
fn logout(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "auth" / "logout")
        .and(warp::post())
        .and(auth::viewer(state.clone()))
        .then(move |viewer: Viewer| {
            let state = state.clone();
            async move { respond(handle_logout(state, viewer).await) }
        })
}

async fn handle_logout(state: State, viewer: Viewer) -> Result<Response, ApiError> {
    if let Some(hash) = viewer.token_hash {
        state
            .db
            .write(move |tx| sessions::delete(tx, &hash))
            .await?;
    }
    let mut response =
        warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
    response.headers_mut().insert(
        "set-cookie",
        HeaderValue::from_str(&auth::cleared_cookie()).map_err(|_| ApiError::internal())?,
    );
    Ok(response)
}

/// GET /api/auth/me
fn me(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    #[derive(Serialize)]
    struct Me {
        user: User,
    }
    warp::path!("api" / "auth" / "me")
        .and(warp::get())
        .and(auth::viewer(state))
        .map(|viewer: Viewer| {
            respond(
                viewer
                    .user
                    .map(|user| json_reply(StatusCode::OK, &Me { user }))
                    .ok_or_else(|| ApiError::unauthorized("not signed in")),
            )
        })
}

/// Registrations and sign-ins from one address are rate limited, so
/// guessing passwords is slow.
fn sign_in_allowed(state: &State) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let state = state.clone();
    client_ip(&state)
        .and_then(move |address| {
            let result = match &state.limits.sign_ins {
                Some(limiter) => limiter.check(&address).map_err(|wait| {
                    warp::reject::custom(ApiError::too_many_requests("sign-in attempts", wait))
                }),
                None => Ok(()),
            };
            async move { result }
        })
        .untuple_one()
}

fn valid_username(username: Option<String>) -> Result<String, ApiError> {
    let username = username.ok_or_else(|| ApiError::invalid("username", "username is required"))?;
    let allowed = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !(3..=32).contains(&username.len()) || !allowed {
        return Err(ApiError::invalid(
            "username",
            "username must be 3 to 32 characters of letters, digits, _ and -",
        ));
    }
    Ok(username)
}

fn valid_password(password: Option<String>) -> Result<String, ApiError> {
    let password = password.ok_or_else(|| ApiError::invalid("password", "password is required"))?;
    if !(8..=256).contains(&password.chars().count()) {
        return Err(ApiError::invalid(
            "password",
            "password must be 8 to 256 characters",
        ));
    }
    Ok(password)
}

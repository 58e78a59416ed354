//! Accounts and sessions: register, login, logout, me.

use serde::{Deserialize, Serialize};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::{respond, ApiError};
use super::identity;
use super::{client_ip, json_body, json_reply};
use crate::auth::{self, Viewer};
use crate::db::{DbError, User};
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
        .and(identity::https(&state))
        .and(json_body())
        .then(move |https, body| {
            let state = state.clone();
            async move { respond(handle_register(state, https, body).await) }
        })
}

async fn handle_register(
    state: State,
    https: bool,
    body: Credentials,
) -> Result<Response, ApiError> {
    let username = valid_username(body.username)?;
    let password = valid_password(body.password)?;
    // Everyone starts as a member: roles are given with `stoa role`.
    let user = User::member(uuid::Uuid::now_v7().to_string(), username);
    let hash = state
        .hasher
        .run(move || auth::hash_password(&password))
        .await?;
    let token = auth::new_token();
    state
        .db
        .register(
            user.clone(),
            hash,
            auth::token_hash(&token),
            auth::session_expiry(),
        )
        .await
        .map_err(|error| match error {
            DbError::Conflict => ApiError::conflict("that username is taken"),
            other => other.into(),
        })?;
    signed_in(user, token, https, StatusCode::CREATED)
}

/// POST /api/auth/login
fn login(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "auth" / "login")
        .and(warp::post())
        .and(sign_in_allowed(&state))
        .and(identity::https(&state))
        .and(json_body())
        .then(move |https, body| {
            let state = state.clone();
            async move { respond(handle_login(state, https, body).await) }
        })
}

async fn handle_login(state: State, https: bool, body: Credentials) -> Result<Response, ApiError> {
    let username = body.username.unwrap_or_default();
    let password = body.password.unwrap_or_default();
    let found = state.db.credentials(username).await?;
    // Verify against some hash even for an unknown user, so the answer
    // takes as long either way and does not tell which usernames exist.
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, auth::decoy_hash()),
    };
    let verified = state
        .hasher
        .run(move || auth::verify_password(&password, &hash))
        .await?;
    match user {
        Some(User { ban: Some(ban), .. }) if verified => Err(ApiError::banned(&ban)),
        Some(user) if verified => {
            let token = auth::start_session(&state.db, user.id.clone()).await?;
            signed_in(user, token, https, StatusCode::OK)
        }
        _ => Err(ApiError::unauthorized("wrong username or password")),
    }
}

/// The answer that signs `user` in with `token`: in the body and as the
/// session cookie.
fn signed_in(
    user: User,
    token: String,
    https: bool,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let cookie = identity::session_cookie(&token, https);
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
        .and(identity::viewer(state.clone()))
        .and(identity::https(&state))
        .then(move |viewer: Viewer, https| {
            let state = state.clone();
            async move { respond(handle_logout(state, viewer, https).await) }
        })
}

async fn handle_logout(state: State, viewer: Viewer, https: bool) -> Result<Response, ApiError> {
    if let Some(hash) = viewer.token_hash {
        state.db.end_session(hash).await?;
    }
    let mut response =
        warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
    response.headers_mut().insert(
        "set-cookie",
        HeaderValue::from_str(&identity::cleared_cookie(https))
            .map_err(|_| ApiError::internal())?,
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
        .and(identity::viewer(state))
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
        .and_then(move |address: std::net::IpAddr| {
            let state = state.clone();
            async move {
                match &state.limits.sign_ins {
                    Some(limiter) => limiter
                        .check(&address.to_string())
                        .await
                        .map_err(|refusal| {
                            warp::reject::custom(ApiError::limited("sign-in attempts", refusal))
                        }),
                    None => Ok(()),
                }
            }
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

//! Who is asking, over HTTP: the session cookie, the bearer token, and the
//! filters that resolve the current user and guard writes against
//! cross-site requests and past the write rate.

use warp::Filter;

use super::error::ApiError;
use crate::auth::{self, Viewer};
use crate::State;

pub const COOKIE: &str = "stoa_session";

pub fn session_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
        auth::SESSION_DAYS * 24 * 3600
    )
}

pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}

/// Where the token came from: a cookie is sent by the browser on its own,
/// so cookie-authenticated writes get the cross-site checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Cookie,
    Bearer,
}

fn presented_token(
    authorization: Option<String>,
    cookie: Option<String>,
) -> Option<(String, Source)> {
    if let Some(value) = authorization {
        if let Some(token) = value.strip_prefix("Bearer ") {
            return Some((token.trim().to_string(), Source::Bearer));
        }
    }
    cookie.map(|token| (token, Source::Cookie))
}

/// The person behind a request, and where their token came from (`None`
/// when signed out).
fn identified(
    state: State,
) -> impl Filter<Extract = ((Viewer, Option<Source>),), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::cookie::optional::<String>(COOKIE))
        .and_then(move |authorization, cookie| {
            let state = state.clone();
            async move {
                let Some((token, source)) = presented_token(authorization, cookie) else {
                    return Ok::<_, warp::Rejection>((Viewer::SIGNED_OUT, None));
                };
                let viewer = auth::resolve(&state.db, &token)
                    .await
                    .map_err(|error| warp::reject::custom(ApiError::from(error)))?;
                let source = viewer.user.is_some().then_some(source);
                Ok((viewer, source))
            }
        })
}

/// The viewer of a read: signed in or not (an unknown token reads as
/// signed out).
pub fn viewer(state: State) -> impl Filter<Extract = (Viewer,), Error = warp::Rejection> + Clone {
    identified(state).map(|(viewer, _): (Viewer, Option<Source>)| viewer)
}

/// The signed-in author of a write, within their write rate. A
/// cookie-authenticated write whose `Origin` is neither this server nor a
/// configured origin is refused: it is another site acting with the
/// visitor's cookie.
pub fn author(state: State) -> impl Filter<Extract = (Viewer,), Error = warp::Rejection> + Clone {
    identified(state.clone())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and_then(move |(viewer, source): (Viewer, Option<Source>), origin: Option<String>, host: Option<String>| {
            let state = state.clone();
            async move {
                if let Some(ban) = &viewer.banned {
                    return Err(warp::reject::custom(ApiError::banned(ban)));
                }
                let Some(user) = &viewer.user else {
                    return Err(warp::reject::custom(ApiError::unauthorized("sign in first")));
                };
                if source == Some(Source::Cookie) {
                    if let Some(origin) = origin {
                        let own = host.is_some_and(|host| {
                            origin == format!("http://{host}") || origin == format!("https://{host}")
                        });
                        if !own && !state.config.cors_origins.contains(&origin) {
                            return Err(warp::reject::custom(ApiError::forbidden(format!(
                                "requests from origin {origin} may not use this site's session cookie"
                            ))));
                        }
                    }
                }
                if let Some(limiter) = &state.limits.writes {
                    limiter
                        .check(&user.id)
                        .await
                        .map_err(|refusal| warp::reject::custom(ApiError::limited("writes", refusal)))?;
                }
                Ok(viewer)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_wins_over_the_cookie() {
        let token = presented_token(Some("Bearer abc".into()), Some("def".into()));
        assert_eq!(token, Some(("abc".into(), Source::Bearer)));
        let token = presented_token(None, Some("def".into()));
        assert_eq!(token, Some(("def".into(), Source::Cookie)));
    }
}

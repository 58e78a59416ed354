//! Who is asking, over HTTP: the session cookie, the bearer token, and the
//! filters that resolve the current user and guard writes against
//! cross-site requests and past the write rate.

use warp::Filter;

use super::error::ApiError;
use crate::auth::{self, Viewer};
use crate::State;

pub const COOKIE: &str = "stoa_session";

/// The session cookie; `Secure` (sent over HTTPS only) when the visitor
/// reached the forum over HTTPS.
pub fn session_cookie(token: &str, https: bool) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{}",
        auth::SESSION_DAYS * 24 * 3600,
        if https { "; Secure" } else { "" }
    )
}

pub fn cleared_cookie(https: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}",
        if https { "; Secure" } else { "" }
    )
}

/// The scheme the visitor used: `https` when `--public-url` says so, or,
/// with `--behind-proxy`, when the proxy's `X-Forwarded-Proto` says so
/// (a client reaching stoa directly could send any header).
fn scheme(config: &crate::Config, forwarded_proto: Option<&str>) -> &'static str {
    let public_https = config
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    let proxied_https = config.behind_proxy
        && forwarded_proto.is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    if public_https || proxied_https {
        "https"
    } else {
        "http"
    }
}

/// Whether the request reached the forum over HTTPS (see [`scheme`]).
pub fn https(
    state: &State,
) -> impl Filter<Extract = (bool,), Error = std::convert::Infallible> + Clone {
    let state = state.clone();
    warp::header::optional::<String>("x-forwarded-proto")
        .or(warp::any().map(|| None))
        .unify()
        .map(move |proto: Option<String>| scheme(&state.config, proto.as_deref()) == "https")
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
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and_then(
            move |(viewer, source): (Viewer, Option<Source>),
                  origin: Option<String>,
                  host: Option<String>,
                  proto: Option<String>| {
                let state = state.clone();
                async move {
                    if let Some(ban) = &viewer.banned {
                        return Err(warp::reject::custom(ApiError::banned(ban)));
                    }
                    let Some(user) = &viewer.user else {
                        return Err(warp::reject::custom(ApiError::unauthorized(
                            "sign in first",
                        )));
                    };
                    if source == Some(Source::Cookie) {
                        if let Some(origin) = origin {
                            let refusal = cross_site(
                                &state.config,
                                &origin,
                                host.as_deref(),
                                proto.as_deref(),
                            );
                            if let Some(message) = refusal {
                                return Err(warp::reject::custom(ApiError::forbidden(message)));
                            }
                        }
                    }
                    if let Some(limiter) = &state.limits.writes {
                        limiter.check(&user.id).await.map_err(|refusal| {
                            warp::reject::custom(ApiError::limited("writes", refusal))
                        })?;
                    }
                    Ok(viewer)
                }
            },
        )
}

/// Why a cookie-authenticated write from `origin` is refused, or `None`
/// when that origin is this site (as the `Host` header or `--public-url`
/// names it) or a configured `--cors-origin`. The message says what an
/// operator would change, since the usual cause is a proxy that dropped
/// the port from `Host`.
fn cross_site(
    config: &crate::Config,
    origin: &str,
    host: Option<&str>,
    forwarded_proto: Option<&str>,
) -> Option<String> {
    let own = host.is_some_and(|host| {
        origin == format!("http://{host}") || origin == format!("https://{host}")
    });
    if own
        || config.public_url.as_deref() == Some(origin)
        || config.cors_origins.iter().any(|allowed| allowed == origin)
    {
        return None;
    }
    let here = match host {
        Some(host) => format!("{}://{host}", scheme(config, forwarded_proto)),
        None => "unknown (the request has no Host header)".to_string(),
    };
    Some(format!(
        "requests from origin {origin} may not use this site's session cookie: this server \
         takes its own address to be {here}. If {origin} is this forum, the proxy in front \
         must pass the Host header with its port (nginx: proxy_set_header Host $http_host) \
         or stoa must be started with --public-url {origin}; if it is another site, allow it \
         with --cors-origin {origin}"
    ))
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

    fn config() -> crate::Config {
        crate::Config::for_db(crate::config::Database::Sqlite("x.db".into()))
    }

    #[test]
    fn a_host_without_its_port_gets_a_message_naming_the_fix() {
        let message = cross_site(
            &config(),
            "http://forum.test:8443",
            Some("forum.test"),
            None,
        )
        .expect("refused");
        assert!(message.contains("http://forum.test"), "{message}");
        assert!(
            message.contains("proxy_set_header Host $http_host"),
            "{message}"
        );
        assert!(
            message.contains("--public-url http://forum.test:8443"),
            "{message}"
        );
        assert_eq!(
            cross_site(
                &config(),
                "http://forum.test:8443",
                Some("forum.test:8443"),
                None
            ),
            None
        );
    }

    #[test]
    fn the_public_url_is_this_sites_origin() {
        let mut config = config();
        config.public_url = Some("https://forum.test".into());
        assert_eq!(
            cross_site(&config, "https://forum.test", Some("127.0.0.1:8080"), None),
            None
        );
        assert!(cross_site(&config, "https://evil.test", Some("127.0.0.1:8080"), None).is_some());
        assert_eq!(scheme(&config, None), "https");
    }

    #[test]
    fn forwarded_proto_counts_only_behind_a_proxy() {
        let mut config = config();
        assert_eq!(scheme(&config, Some("https")), "http");
        config.behind_proxy = true;
        assert_eq!(scheme(&config, Some("https")), "https");
        assert_eq!(scheme(&config, Some("http")), "http");
    }
}

//! Who is asking: passwords (Argon2), session tokens (only their SHA-256 is
//! stored), the session cookie, and the filters that resolve the current
//! user and guard writes against cross-site requests.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use warp::Filter;

use crate::api::error::ApiError;
use crate::db::users::User;
use crate::db::{sessions, Db};
use crate::State;

pub const COOKIE: &str = "stoa_session";
const SESSION_DAYS: i64 = 30;

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password within our length limit")
        .to_string()
}

/// Argon2 takes about 19 MiB and tens of milliseconds per hash; at most
/// this many run at once, so a burst of sign-ups (from however many
/// addresses) queues instead of taking the server's memory and cores.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs password work on the blocking pool, a bounded number at a time.
pub async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = HASHING.acquire().await.map_err(|_| ApiError::internal())?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::internal())
}

/// A hash of no real password, to verify against when a username is
/// unknown, so a failed login takes as long either way.
pub fn decoy_hash() -> String {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY
        .get_or_init(|| hash_password("decoy password"))
        .clone()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random session token (256 bits, hex).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Times as stored: RFC 3339 UTC with milliseconds, so they compare as text.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Stores a new session for `user_id` and returns its token.
pub async fn start_session(db: &Db, user_id: String) -> Result<String, ApiError> {
    let token = new_token();
    let hash = token_hash(&token);
    let expires = timestamp(Utc::now() + chrono::Duration::days(SESSION_DAYS));
    db.write(move |tx| sessions::insert(tx, &hash, &user_id, &expires))
        .await?;
    Ok(token)
}

pub fn session_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
        SESSION_DAYS * 24 * 3600
    )
}

pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}

/// The person behind a request, if signed in.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: Option<User>,
    /// The hash of the token that signed them in (for logging out).
    pub token_hash: Option<String>,
}

impl Viewer {
    pub fn id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.id.as_str())
    }
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

async fn resolve(
    db: Db,
    token: Option<(String, Source)>,
) -> Result<(Viewer, Option<Source>), ApiError> {
    let Some((token, source)) = token else {
        return Ok((
            Viewer {
                user: None,
                token_hash: None,
            },
            None,
        ));
    };
    let hash = token_hash(&token);
    let lookup = hash.clone();
    let now = timestamp(Utc::now());
    let user = db
        .read(move |tx| sessions::user_for(tx, &lookup, &now))
        .await?;
    let signed_in = user.is_some();
    Ok((
        Viewer {
            user,
            token_hash: signed_in.then_some(hash),
        },
        signed_in.then_some(source),
    ))
}

/// The person behind a request, and where their token came from.
fn identified(
    state: State,
) -> impl Filter<Extract = ((Viewer, Option<Source>),), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::cookie::optional::<String>(COOKIE))
        .and_then(move |authorization, cookie| {
            let db = state.db.clone();
            async move {
                resolve(db, presented_token(authorization, cookie))
                    .await
                    .map_err(warp::reject::custom)
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
                        .map_err(|wait| warp::reject::custom(ApiError::too_many_requests("writes", wait)))?;
                }
                Ok(viewer)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let hash = hash_password("correct horse");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[test]
    fn a_bearer_token_wins_over_the_cookie() {
        let token = presented_token(Some("Bearer abc".into()), Some("def".into()));
        assert_eq!(token, Some(("abc".into(), Source::Bearer)));
        let token = presented_token(None, Some("def".into()));
        assert_eq!(token, Some(("def".into(), Source::Cookie)));
    }
}

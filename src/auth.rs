//! Who is asking: passwords (Argon2, a bounded number hashed at once per
//! server), session tokens (only their SHA-256 is stored) and the viewer
//! they resolve to. The HTTP side (the cookie, the filters, cross-site
//! checks) is in `api/identity.rs`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::db::{Ban, Db, DbResult, User};

/// How long a session lasts.
pub const SESSION_DAYS: i64 = 30;

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password within our length limit")
        .to_string()
}

/// Argon2 takes about 19 MiB and tens of milliseconds per hash; at most
/// [`Hasher::AT_ONCE`] run at once in one server, so a burst of sign-ups
/// (from however many addresses) queues instead of taking the server's
/// memory and cores.
pub struct Hasher {
    permits: Semaphore,
}

/// Password work could not run (the server is stopping).
#[derive(Debug)]
pub struct HashingStopped;

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher {
            permits: Semaphore::new(Hasher::AT_ONCE),
        }
    }
}

impl Hasher {
    pub const AT_ONCE: usize = 2;

    /// Runs password work on the blocking pool, a bounded number at a time.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingStopped> {
        let _permit = self.permits.acquire().await.map_err(|_| HashingStopped)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HashingStopped)
    }
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

/// Stores a new session for `user_id` and returns its token.
pub async fn start_session(db: &Db, user_id: String) -> DbResult<String> {
    let token = new_token();
    db.start_session(token_hash(&token), user_id, session_expiry())
        .await?;
    Ok(token)
}

/// When a session started now ends.
pub fn session_expiry() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::days(SESSION_DAYS)
}

/// The person behind a request, if signed in.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: Option<User>,
    /// The hash of the token that signed them in (for logging out).
    pub token_hash: Option<String>,
    /// A banned user's token: they read as signed out, and their writes
    /// are refused saying why.
    pub banned: Option<Ban>,
}

impl Viewer {
    pub const SIGNED_OUT: Viewer = Viewer {
        user: None,
        token_hash: None,
        banned: None,
    };

    pub fn id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.id.as_str())
    }
}

/// Who a presented token signs in: nobody when it is unknown or expired,
/// or when its user is banned (then `banned` says so).
pub async fn resolve(db: &Db, token: &str) -> DbResult<Viewer> {
    let hash = token_hash(token);
    Ok(match db.session_user(hash.clone()).await? {
        None => Viewer::SIGNED_OUT,
        Some(User { ban: Some(ban), .. }) => Viewer {
            user: None,
            token_hash: Some(hash),
            banned: Some(ban),
        },
        Some(user) => Viewer {
            user: Some(user),
            token_hash: Some(hash),
            banned: None,
        },
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

    #[tokio::test]
    async fn a_server_hashes_at_most_its_share_at_once() {
        let hasher = std::sync::Arc::new(Hasher::default());
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let (hasher, running, most) = (hasher.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    hasher
                        .run(move || {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = running.fetch_add(1, SeqCst) + 1;
                            most.fetch_max(now, SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            running.fetch_sub(1, SeqCst);
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap();
        }
        assert_eq!(
            most.load(std::sync::atomic::Ordering::SeqCst),
            Hasher::AT_ONCE
        );
    }
}

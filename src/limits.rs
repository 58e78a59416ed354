//! Rate limits: token buckets keyed by user (writes) or by client address
//! (registration and login, so password guessing is slow). On one node
//! they are kept in the process; when nodes share a database (PostgreSQL)
//! they are kept in it, so a user at the limit on one node is at it on
//! every node.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::{Db, DbError};

/// Buckets kept before full (idle) ones are forgotten, so a flood of
/// distinct keys cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

/// A token bucket per key: `burst` actions at once, refilled at `per_minute`.
pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `None` when `per_minute` is 0: no limit.
    pub fn new(per_minute: f64, burst: u32) -> Option<RateLimiter<K>> {
        (per_minute > 0.0).then(|| RateLimiter {
            per_second: per_minute / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `key`, or says how long until one is free.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_TRACKED {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

/// Why an action may not go ahead now.
#[derive(Debug)]
pub enum Refusal {
    /// The bucket is empty: try again after this long.
    Wait(Duration),
    /// The shared buckets could not be read.
    Db(DbError),
}

/// One limit, in this process or in the shared database.
pub enum Limiter {
    Local(RateLimiter<String>),
    Shared {
        db: Db,
        /// Keeps the keys of different limits apart.
        name: &'static str,
        per_second: f64,
        burst: f64,
    },
}

impl Limiter {
    /// `None` when `per_minute` is 0: no limit. Kept in `db` when it is
    /// shared by several nodes.
    pub fn new(db: &Db, name: &'static str, per_minute: f64, burst: u32) -> Option<Limiter> {
        let local = RateLimiter::new(per_minute, burst)?;
        Some(if db.is_shared() {
            Limiter::Shared {
                db: db.clone(),
                name,
                per_second: local.per_second,
                burst: local.burst,
            }
        } else {
            Limiter::Local(local)
        })
    }

    /// Takes one token for `key`, or says why not.
    pub async fn check(&self, key: &str) -> Result<(), Refusal> {
        match self {
            Limiter::Local(limiter) => limiter.check(&key.to_string()).map_err(Refusal::Wait),
            Limiter::Shared {
                db,
                name,
                per_second,
                burst,
            } => match db
                .take_token(format!("{name}:{key}"), *per_second, *burst)
                .await
            {
                Ok(None) => Ok(()),
                Ok(Some(wait)) => Err(Refusal::Wait(wait)),
                Err(error) => Err(Refusal::Db(error)),
            },
        }
    }
}

/// The server's limits, each off when its rate is 0.
pub struct Limits {
    pub writes: Option<Limiter>,
    pub sign_ins: Option<Limiter>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = RateLimiter::new(60.0, 3).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&"u", start).is_ok());
        }
        let wait = limiter.check_at(&"u", start).unwrap_err();
        assert!((0.9..=1.0).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(
            limiter.check_at(&"other", start).is_ok(),
            "keys are separate"
        );
        assert!(limiter
            .check_at(&"u", start + Duration::from_secs(1))
            .is_ok());
        assert!(limiter
            .check_at(&"u", start + Duration::from_secs(1))
            .is_err());
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        assert!(RateLimiter::<String>::new(0.0, 10).is_none());
    }
}

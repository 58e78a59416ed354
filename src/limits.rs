//! Rate limits: token buckets keyed by user (writes) or by client address
//! (registration and login, so password guessing is slow).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The server's limits, each off when its rate is 0.
pub struct Limits {
    pub writes: Option<RateLimiter<String>>,
    pub sign_ins: Option<RateLimiter<IpAddr>>,
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

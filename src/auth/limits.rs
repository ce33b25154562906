//! Rate limits: GCRA per client IP (anonymous calls) and per API key, shared by every
//! instance through Redis (the same algorithm in a Lua script, on Redis's clock) when it
//! is configured, else with `governor` in this process. Should Redis fail, the limits
//! go on in-process until it answers again (logged once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};
use tracing::warn;

use crate::store::redis::RedisStore;

/// Whom a limit counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bucket {
    Ip(IpAddr),
    Key(String),
}

impl Bucket {
    /// The policy's name in the `RateLimit-Policy` / `RateLimit` headers.
    pub fn policy(&self) -> &'static str {
        match self {
            Self::Ip(_) => "per-ip",
            Self::Key(_) => "per-key",
        }
    }

    fn redis_key(&self) -> String {
        match self {
            Self::Ip(ip) => format!("isobar:ratelimit:{{ip:{ip}}}"),
            Self::Key(name) => format!("isobar:ratelimit:{{key:{name}}}"),
        }
    }
}

/// A GCRA limit: `rate` per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub rate: u32,
    pub burst: u32,
}

impl Limit {
    /// The seconds it takes to earn a whole burst back: the window of the policy.
    pub fn window_secs(&self) -> u64 {
        u64::from(self.burst).div_ceil(u64::from(self.rate.max(1))).max(1)
    }
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; `remaining` more may come at once, the whole burst is back in `reset`.
    Allowed { remaining: u32, reset: Duration },
    /// Over the limit: the next one is allowed after `retry_after`.
    Denied { retry_after: Duration },
}

/// GCRA with the theoretical arrival time (TAT) in Redis, in microseconds of Redis's
/// clock. ARGV: emission interval, burst tolerance (both µs). Answers
/// {allowed (1/0), wait µs, remaining, reset µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then
  return {0, tat - tolerance - now, 0, tat - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1000)
return {1, 0, math.floor((now + tolerance - new_tat) / interval) + 1, new_tat - now}
";

type Local = DefaultKeyedRateLimiter<Bucket, StateInformationMiddleware>;

pub struct RateLimits {
    redis: Option<Arc<RedisStore>>,
    redis_failing: AtomicBool,
    /// One in-process limiter per limit (keys may have rates of their own).
    local: Mutex<HashMap<Limit, Arc<Local>>>,
}

impl RateLimits {
    pub fn new(redis: Option<Arc<RedisStore>>) -> Self {
        Self { redis, redis_failing: AtomicBool::new(false), local: Mutex::default() }
    }

    /// Counts one request of `bucket` against `limit`.
    pub async fn check(&self, bucket: &Bucket, limit: Limit) -> Verdict {
        let limit = Limit { rate: limit.rate.max(1), burst: limit.burst.max(1) };
        if let Some(redis) = &self.redis {
            match self.check_redis(redis, bucket, limit).await {
                Ok(verdict) => {
                    if self.redis_failing.swap(false, Ordering::Relaxed) {
                        warn!("rate limits are shared through Redis again");
                    }
                    return verdict;
                }
                Err(e) => {
                    if !self.redis_failing.swap(true, Ordering::Relaxed) {
                        warn!(error = %e, "rate limits cannot reach Redis; each instance limits on its own meanwhile");
                    }
                }
            }
        }
        self.check_local(bucket, limit)
    }

    async fn check_redis(
        &self,
        redis: &RedisStore,
        bucket: &Bucket,
        limit: Limit,
    ) -> Result<Verdict, crate::store::StoreError> {
        let interval = 1_000_000 / u64::from(limit.rate);
        let tolerance = interval * u64::from(limit.burst - 1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(GCRA).arg(1).arg(bucket.redis_key()).arg(interval).arg(tolerance);
        let (allowed, wait, remaining, reset): (i64, i64, i64, i64) = redis.query(&cmd).await?;
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(if allowed == 1 {
            Verdict::Allowed { remaining: remaining.clamp(0, i64::from(limit.burst)) as u32, reset: micros(reset) }
        } else {
            Verdict::Denied { retry_after: micros(wait) }
        })
    }

    fn check_local(&self, bucket: &Bucket, limit: Limit) -> Verdict {
        let limiter = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            local
                .entry(limit)
                .or_insert_with(|| {
                    let rate = NonZeroU32::new(limit.rate).unwrap_or(NonZeroU32::MIN);
                    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
                    let quota = Quota::per_second(rate).allow_burst(burst);
                    Arc::new(governor::RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>())
                })
                .clone()
        };
        match limiter.check_key(bucket) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let used = limit.burst.saturating_sub(remaining);
                let reset = Duration::from_secs_f64(f64::from(used) / f64::from(limit.rate));
                Verdict::Allowed { remaining, reset }
            }
            Err(not_until) => Verdict::Denied { retry_after: not_until.wait_time_from(DefaultClock::default().now()) },
        }
    }

    /// Forgets in-process buckets that are full again (call now and then).
    pub fn forget_idle(&self) {
        for limiter in self.local.lock().unwrap_or_else(PoisonError::into_inner).values() {
            limiter.retain_recent();
        }
    }
}

/// Caps on open connections (WebSockets) per bucket.
#[derive(Default)]
pub struct ConnectionSlots {
    open: Arc<Mutex<HashMap<Bucket, usize>>>,
}

/// One open connection of a bucket; the count goes down when it is dropped.
pub struct Slot {
    open: Arc<Mutex<HashMap<Bucket, usize>>>,
    bucket: Bucket,
}

impl ConnectionSlots {
    /// A slot for `bucket` unless it has `cap` open already (`Err(cap)`).
    pub fn acquire(&self, bucket: Bucket, cap: usize) -> Result<Slot, usize> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(bucket.clone()).or_insert(0);
        if *count >= cap {
            return Err(cap);
        }
        *count += 1;
        Ok(Slot { open: self.open.clone(), bucket })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.bucket) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.bucket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_burst_is_allowed_then_the_rate_and_each_bucket_counts_apart() {
        let limits = RateLimits::new(None);
        let limit = Limit { rate: 1, burst: 3 };
        let a = Bucket::Ip("192.0.2.1".parse().unwrap());
        let mut remaining = Vec::new();
        for _ in 0..3 {
            match limits.check(&a, limit).await {
                Verdict::Allowed { remaining: r, .. } => remaining.push(r),
                denied => panic!("{denied:?}"),
            }
        }
        assert_eq!(remaining, [2, 1, 0]);
        let Verdict::Denied { retry_after } = limits.check(&a, limit).await else { panic!("the 4th passed") };
        assert!(retry_after > Duration::from_millis(900) && retry_after <= Duration::from_secs(1), "{retry_after:?}");
        let b = Bucket::Key("ci".into());
        assert!(matches!(limits.check(&b, limit).await, Verdict::Allowed { remaining: 2, .. }));
        assert_eq!(limit.window_secs(), 3);
    }

    #[test]
    fn connection_slots_are_capped_per_bucket_and_come_back_when_dropped() {
        let slots = ConnectionSlots::default();
        let ip = Bucket::Ip("192.0.2.9".parse().unwrap());
        let first = slots.acquire(ip.clone(), 2).unwrap();
        let _second = slots.acquire(ip.clone(), 2).unwrap();
        assert!(matches!(slots.acquire(ip.clone(), 2), Err(2)));
        assert!(slots.acquire(Bucket::Key("k".into()), 2).is_ok());
        drop(first);
        assert!(slots.acquire(ip, 2).is_ok());
    }
}

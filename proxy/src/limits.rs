//! Per-client limits that are plain state machines: the request-rate token bucket, and the
//! count of connections per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// A token bucket: `rate` requests a second on average, bursts up to twice that.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_second: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        RateLimiter {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionCounter {
    /// Counts a new connection from `ip` unless `limit` (0 = none) is reached.
    pub fn try_open(&self, ip: IpAddr, limit: usize) -> bool {
        let mut open = self.open.lock();
        let count = open.entry(ip).or_insert(0);
        if limit > 0 && *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    pub fn close(&self, ip: IpAddr) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }

    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.lock().get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, t0);
        let burst = (0..100).filter(|_| limiter.allow(t0)).count();
        assert_eq!(burst, 20, "a burst of twice the rate");
        assert!(!limiter.allow(t0));
        // 0.5 s later: 5 more.
        let t1 = t0 + Duration::from_millis(500);
        let more = (0..100).filter(|_| limiter.allow(t1)).count();
        assert_eq!(more, 5);
        // Long idle: never more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| limiter.allow(t2)).count(), 20);
    }

    #[test]
    fn connections_per_address() {
        let counter = ConnectionCounter::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(counter.try_open(a, 2));
        assert!(counter.try_open(a, 2));
        assert!(!counter.try_open(a, 2));
        assert!(counter.try_open(b, 2));
        counter.close(a);
        assert!(counter.try_open(a, 2));
        assert_eq!(counter.open_from(a), 2);
        assert!(counter.try_open(a, 0), "0 = no limit");
    }
}

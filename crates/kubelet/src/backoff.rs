//! Crash back-off as upstream: 10 s after the first failed restart, doubling to 5 min, and
//! forgotten once a container has run for 10 minutes. The same curve paces image pulls
//! (ImagePullBackOff).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long starts over at [`INITIAL`].
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    until: Instant,
}

impl Backoff {
    /// Whether `key` must still wait; `Some(remaining)` if so.
    pub fn waiting(&self, key: &str, now: Instant) -> Option<Duration> {
        self.entries.get(key).and_then(|e| e.until.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// Records a failure at `now`: the next attempt may happen after the returned delay.
    pub fn fail(&mut self, key: &str, now: Instant) -> Duration {
        let delay = match self.entries.get(key) {
            Some(e) => (e.delay * 2).min(MAX),
            None => INITIAL,
        };
        self.entries.insert(key.to_string(), Entry { delay, until: now + delay });
        delay
    }

    /// The delay currently applied to `key`.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_five_minutes() {
        let mut b = Backoff::default();
        let t = Instant::now();
        let delays: Vec<u64> = (0..7).map(|_| b.fail("c", t).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300]);
        assert!(b.waiting("c", t).is_some());
        assert!(b.waiting("c", t + Duration::from_secs(301)).is_none());
        b.reset("c");
        assert_eq!(b.fail("c", t).as_secs(), 10);
    }
}

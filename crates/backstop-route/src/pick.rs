//! Choosing a target: the first priority group with a usable target, then within it
//! rendezvous hashing for a sticky key or weighted power of two choices over Peak-EWMA
//! cost and budget headroom.

use crate::config::MAX_TARGETS;
use crate::hints::mix;
use crate::router::RouterState;
use crate::stats::target_counters::SKIPPED_NO_BUDGET;
use crate::target::Room;

/// What one request has done so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attempted {
    /// Targets already called (or passed over for good) by this request, one bit each.
    pub(crate) tried: u64,
    /// Targets passed over for lack of budget (counted once per request).
    pub(crate) no_budget: u64,
    /// After a context-length error: only targets whose window is at least this.
    pub(crate) min_window: u64,
    pub(crate) tokens: u64,
    pub(crate) sticky: Option<u64>,
}

/// The usable targets of one group, on the stack (no allocation per pick).
struct Candidates {
    index: [u8; MAX_TARGETS],
    headroom: [f64; MAX_TARGETS],
    len: usize,
}

impl RouterState {
    /// The target this request should call next, or `None` when no target of any group is
    /// usable now (all tried, cooling, open, full or too small).
    pub(crate) fn select(&self, req: &mut Attempted, now: u64) -> Option<usize> {
        for group in self.groups.iter() {
            let candidates = self.candidates(group, req, now);
            if candidates.len > 0 {
                return Some(self.choose(&candidates, req.sticky, now));
            }
        }
        None
    }

    fn candidates(&self, group: &[u8], req: &mut Attempted, now: u64) -> Candidates {
        let mut out = Candidates {
            index: [0; MAX_TARGETS],
            headroom: [1.0; MAX_TARGETS],
            len: 0,
        };
        for &i in group {
            let bit = 1u64 << i;
            if req.tried & bit != 0 {
                continue;
            }
            let target = &self.targets[usize::from(i)];
            if !target.fits(req.tokens, req.min_window)
                || target.cooling(now)
                || target.breaker.readiness().is_err()
            {
                continue;
            }
            let headroom = match target.room(req.tokens, now) {
                Room::Unlimited => 1.0,
                Room::Some(fraction) => fraction,
                Room::None => {
                    if req.no_budget & bit == 0 {
                        req.no_budget |= bit;
                        target.count(SKIPPED_NO_BUDGET);
                    }
                    continue;
                }
            };
            out.index[out.len] = i;
            out.headroom[out.len] = headroom;
            out.len += 1;
        }
        out
    }

    fn choose(&self, c: &Candidates, sticky: Option<u64>, now: u64) -> usize {
        if c.len == 1 {
            return usize::from(c.index[0]);
        }
        if let Some(key) = sticky {
            return self.rendezvous(c, key);
        }
        // The first candidate in proportion to weight, the second uniformly among the
        // others: with equal scores each target is then chosen exactly in proportion to its
        // weight (P(i) = Σ_j (w_i + w_j) / (W (n - 1)) · w_i / (w_i + w_j) = w_i / W).
        let total: f64 = (0..c.len).map(|k| self.weight_of(c, k)).sum();
        let mut point = fastrand::f64() * total;
        let mut a = c.len - 1;
        for k in 0..c.len {
            point -= self.weight_of(c, k);
            if point < 0.0 {
                a = k;
                break;
            }
        }
        let mut b = fastrand::usize(..c.len - 1);
        if b >= a {
            b += 1;
        }
        let (sa, sb) = (self.score(c, a, now), self.score(c, b, now));
        // The better of the two wins in proportion to its score, so equal targets split by
        // weight and a target twice as slow (or twice as loaded) loses 8 to 1.
        let winner = if fastrand::f64() * (sa + sb) < sa {
            a
        } else {
            b
        };
        usize::from(c.index[winner])
    }

    fn weight_of(&self, c: &Candidates, k: usize) -> f64 {
        self.targets[usize::from(c.index[k])].weight
    }

    /// Weight × budget headroom / cost³, where cost is the Peak-EWMA latency times the
    /// calls in flight plus one (tower's and Finagle's load). The cube makes the choice
    /// nearly as sharp as classic P2C's "lower cost wins" while equal targets still split by
    /// weight.
    fn score(&self, c: &Candidates, k: usize, now: u64) -> f64 {
        let target = &self.targets[usize::from(c.index[k])];
        let pending = target.pending.load(std::sync::atomic::Ordering::Relaxed);
        let cost = target.ewma.get(now) * (pending as f64 + 1.0) / 1e6;
        target.weight * c.headroom[k] / (cost * cost * cost)
    }

    /// Weighted rendezvous (highest random weight) hashing: each target scores
    /// `-w / ln(u)` with `u` uniform from the key and the target's name, so a key stays on
    /// one target, and removing or adding a target moves only the keys it held or takes.
    fn rendezvous(&self, c: &Candidates, key: u64) -> usize {
        let mut best = (f64::MIN, usize::from(c.index[0]));
        for k in 0..c.len {
            let target = &self.targets[usize::from(c.index[k])];
            let h = mix(key ^ target.name_hash);
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -target.weight / u.ln();
            if score > best.0 {
                best = (score, usize::from(c.index[k]));
            }
        }
        best.1
    }

    /// While every target cools down: the one that failed longest ago among those that fit
    /// the request and whose circuit and budget would admit it.
    pub(crate) fn least_recently_failed(&self, req: &Attempted, now: u64) -> Option<usize> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                req.tried & (1u64 << i) == 0
                    && t.fits(req.tokens, req.min_window)
                    && t.breaker.readiness().is_ok()
                    && !matches!(t.room(req.tokens, now), Room::None)
            })
            .min_by_key(|(_, t)| t.last_failure.load(std::sync::atomic::Ordering::Relaxed))
            .map(|(i, _)| i)
    }
}

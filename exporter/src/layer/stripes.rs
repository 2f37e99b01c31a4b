//! Counters striped per thread: each thread adds to its own cache lines, a scrape sums them.
//!
//! A shared atomic counter costs a cache-line transfer between cores on every request once
//! several threads serve traffic; striping keeps the request path on lines no other core
//! writes to (as long as there are at least as many stripes as busy threads).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Words in one cache-line-aligned block (two 64-byte lines, against adjacent-line prefetch).
const WORDS_PER_LINE: usize = 16;

#[repr(align(128))]
struct Line([AtomicU64; WORDS_PER_LINE]);

impl Default for Line {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe number (before the modulo of each `Stripes`).
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// The number of stripes worth having on this machine: a power of two ≥ the cores, ≤ 64.
pub(super) fn default_stripes() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .next_power_of_two()
        .min(64)
}

/// `words` unsigned counters, one copy per stripe.
pub(super) struct Stripes {
    lines: Box<[Line]>,
    lines_per_stripe: usize,
    mask: usize,
}

impl Stripes {
    /// `stripes` must be a power of two.
    pub(super) fn new(words: usize, stripes: usize) -> Self {
        debug_assert!(stripes.is_power_of_two());
        let lines_per_stripe = words.div_ceil(WORDS_PER_LINE).max(1);
        Self {
            lines: (0..lines_per_stripe * stripes)
                .map(|_| Line::default())
                .collect(),
            lines_per_stripe,
            mask: stripes - 1,
        }
    }

    fn slot(&self, stripe: usize, word: usize) -> &AtomicU64 {
        let line = stripe * self.lines_per_stripe + word / WORDS_PER_LINE;
        &self.lines[line].0[word % WORDS_PER_LINE]
    }

    fn mine(&self, word: usize) -> &AtomicU64 {
        self.slot(THREAD.with(|t| *t) & self.mask, word)
    }

    /// Adds `n` (wrapping: adding `u64::MAX` subtracts one) to this thread's copy.
    pub(super) fn add(&self, word: usize, n: u64) {
        self.mine(word).fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `value` to a word holding the bits of an `f64`.
    pub(super) fn add_f64(&self, word: usize, value: f64) {
        let slot = self.mine(word);
        // Uncontended in the common case: the first compare-exchange succeeds.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// The wrapping sum of every stripe's copy of `word`.
    pub(super) fn sum(&self, word: usize) -> u64 {
        (0..=self.mask).fold(0u64, |total, stripe| {
            total.wrapping_add(self.slot(stripe, word).load(Ordering::Relaxed))
        })
    }

    /// The sum of every stripe's copy of an `f64` word.
    pub(super) fn sum_f64(&self, word: usize) -> f64 {
        (0..=self.mask)
            .map(|stripe| f64::from_bits(self.slot(stripe, word).load(Ordering::Relaxed)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cover_every_thread_and_wrap_for_decrements() {
        let stripes = std::sync::Arc::new(Stripes::new(20, 4));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let stripes = std::sync::Arc::clone(&stripes);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        stripes.add(17, 1);
                        stripes.add(3, 1);
                        stripes.add(3, u64::MAX);
                        stripes.add_f64(19, 0.5);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        assert_eq!(stripes.sum(17), 8000);
        assert_eq!(stripes.sum(3), 0);
        assert_eq!(stripes.sum(0), 0);
        assert_eq!(stripes.sum_f64(19), 4000.0);
    }
}

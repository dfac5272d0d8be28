//! The gateway's random choices — which ready pod answers, whether a weighted
//! canary takes a request, whether a simulated error happens — from one generator,
//! seeded when a run must be reproducible (the tests seed it).

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The gateway's source of randomness.
pub struct Dice(Mutex<StdRng>);

impl Dice {
    /// Seeded with `seed`: the same requests make the same choices. `None` seeds
    /// from the operating system.
    pub fn new(seed: Option<u64>) -> Dice {
        Dice(Mutex::new(match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        }))
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.lock().random_range(0..n)
    }

    /// An index into a slice of `len` items.
    pub fn index(&self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        self.lock().random::<f64>()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Dice;

    #[test]
    fn one_seed_one_sequence() {
        let (a, b) = (Dice::new(Some(7)), Dice::new(Some(7)));
        let draws = |d: &Dice| (0..32).map(|_| d.below(100)).collect::<Vec<_>>();
        assert_eq!(draws(&a), draws(&b));
        assert_ne!(draws(&a), draws(&Dice::new(Some(8))));
    }

    #[test]
    fn draws_stay_in_range() {
        let d = Dice::new(Some(1));
        assert!((0..1000).all(|_| d.below(3) < 3));
        assert_eq!(d.below(0), 0);
        assert!((0..1000).map(|_| d.unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}

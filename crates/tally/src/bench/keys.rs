//! Key choice: uniform, or Zipf-distributed so that a few counters get most of the load.

use super::Distribution;
use anyhow::{Context, Result};
use rand::Rng;
use rand_distr::Distribution as _;

pub enum KeyChooser {
    Uniform { counters: u64 },
    Zipf { zipf: rand_distr::Zipf<f64> },
}

impl KeyChooser {
    pub fn new(distribution: Distribution, counters: u64, exponent: f64) -> Result<Self> {
        Ok(match distribution {
            Distribution::Uniform => KeyChooser::Uniform { counters },
            Distribution::Zipf => KeyChooser::Zipf {
                zipf: rand_distr::Zipf::new(counters as f64, exponent)
                    .context("invalid Zipf parameters")?,
            },
        })
    }

    /// Returns a key index in `0..counters`; with Zipf, index 0 is the most frequent.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        match self {
            KeyChooser::Uniform { counters } => rng.random_range(0..*counters),
            KeyChooser::Zipf { zipf } => zipf.sample(rng) as u64 - 1,
        }
    }
}

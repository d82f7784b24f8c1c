//! Seeded randomness: every sample gets its own generator derived from (seed, epoch, index), so
//! the same seed gives the same pixels whatever the thread count or order of work.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of sample `index` in `epoch` of a run seeded with `seed`.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(mix(mix(seed) ^ epoch) ^ index))
}

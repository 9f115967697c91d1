//! Deduplication: exact (normalised text keys) and near (MinHash + LSH + union-find).

pub mod exact;
pub mod lsh;
pub mod minhash;

pub use exact::{exact, exact_keys, ExactIndex, ExactResult};
pub use lsh::{lsh_params, near, NearIndex, NearParams};
pub use minhash::MinHasher;

//! frx-core: the per-row kernels of frx, in pure Rust.
//!
//! Every kernel is batch-shaped: it takes a whole column (an Arrow-style string column, see
//! [`text::StrColumn`]) or whole arrays, works across rows with rayon, and returns plain vectors.
//! Results never depend on the number of threads: randomness is derived from a seed and the
//! row index, and every order-dependent step (first occurrence, union-find) runs in row order.

pub mod dedup;
pub mod error;
pub mod features;
pub mod graph;
pub mod judge;
pub mod refusal;
pub mod rng;
pub mod text;

pub use error::{FrxError, Result};

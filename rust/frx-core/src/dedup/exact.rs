//! Exact deduplication on normalised text.
//!
//! Keys are xxh3-128 of [`crate::text::normalize_into`]; computed in parallel, then grouped in
//! row order so "first occurrence kept" holds whatever the thread count.

use crate::error::Result;
use crate::text::{normalize_into, StrColumn};
use hashbrown::HashMap;
use rayon::prelude::*;
use std::hash::{BuildHasherDefault, Hasher};
use xxhash_rust::xxh3::xxh3_128;

/// Keys are already uniform hashes: use their low bits as the table hash.
#[derive(Default)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

pub(crate) type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// Rows per rayon task: large enough to amortise scheduling, small enough to balance.
pub(crate) const ROWS_PER_TASK: usize = 2048;

/// The exact-dedup key of every row (`None` for nulls); an error if a row is not UTF-8.
pub fn exact_keys(col: &StrColumn<'_>) -> Result<Vec<Option<u128>>> {
    let keys: Result<Vec<Option<u128>>> = (0..col.len())
        .into_par_iter()
        .with_min_len(ROWS_PER_TASK)
        .map_init(
            || Vec::with_capacity(256),
            |buf, i| {
                Ok(col.try_get(i)?.map(|s| {
                    normalize_into(s, buf);
                    xxh3_128(buf)
                }))
            },
        )
        .collect();
    keys.map_err(|e| col.first_error(e))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactResult {
    /// `true` for the first row of each group (and for every null row).
    pub keep: Vec<bool>,
    /// Index of the first row with the same normalised text; a null row is its own group.
    pub group: Vec<i64>,
}

/// Exact dedup that remembers every key it has seen, batch after batch (across shards).
/// Rows get global ids in the order they are added.
#[derive(Default)]
pub struct ExactIndex {
    first: HashMap<u128, i64, Prehashed>,
    rows: i64,
}

impl ExactIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows added so far.
    pub fn len(&self) -> usize {
        self.rows as usize
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// For each new row, the global id of the first row with the same normalised text (its own
    /// id if it is the first, or if it is null: nulls are never duplicates of anything).
    /// An error if a row is not UTF-8 (then nothing is added).
    pub fn add(&mut self, col: &StrColumn<'_>) -> Result<Vec<i64>> {
        let keys = exact_keys(col)?;
        self.first.reserve(keys.len());
        let base = self.rows;
        self.rows += keys.len() as i64;
        Ok(keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let id = base + i as i64;
                match k {
                    None => id,
                    Some(k) => *self.first.entry(*k).or_insert(id),
                }
            })
            .collect())
    }
}

/// Exact dedup of a column. Null rows are never duplicates of anything: they are kept. An error
/// if a row is not UTF-8.
pub fn exact(col: &StrColumn<'_>) -> Result<ExactResult> {
    let group = ExactIndex::new().add(col)?;
    let keep = group
        .iter()
        .enumerate()
        .map(|(i, &g)| g == i as i64)
        .collect();
    Ok(ExactResult { keep, group })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::OwnedColumn;

    #[test]
    fn keeps_first_of_each_normalised_group() {
        let c = OwnedColumn::from_options(&[
            Some("Hello  world"),
            Some("hello world"),
            None,
            Some("HELLO WORLD "),
            None,
            Some("other"),
            Some(""),
            Some("   "),
        ]);
        let r = exact(&c.view()).unwrap();
        assert_eq!(r.group, vec![0, 0, 2, 0, 4, 5, 6, 6]);
        assert_eq!(
            r.keep,
            vec![true, false, true, false, true, true, true, false]
        );
    }

    #[test]
    fn index_remembers_across_batches() {
        let mut idx = ExactIndex::new();
        let a = OwnedColumn::from_options(&[Some("x"), None, Some("y")]);
        let b = OwnedColumn::from_options(&[Some("Y"), None, Some("z"), Some("X ")]);
        assert_eq!(idx.add(&a.view()).unwrap(), vec![0, 1, 2]);
        assert_eq!(idx.add(&b.view()).unwrap(), vec![2, 4, 5, 0]);
        assert_eq!(idx.len(), 7);
    }

    #[test]
    fn zero_rows() {
        let c = OwnedColumn::from_strs::<&str>(&[]);
        assert_eq!(
            exact(&c.view()).unwrap(),
            ExactResult {
                keep: vec![],
                group: vec![]
            }
        );
    }
}

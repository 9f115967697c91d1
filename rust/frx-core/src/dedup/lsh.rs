//! Near-duplicate index: MinHash signatures, LSH banding, verification by estimated Jaccard,
//! and union-find clusters. The index grows batch by batch, so one index can dedup across
//! shards, and it answers read-only queries (contamination checks against a reference set).
//!
//! Rows get global ids in insertion order. A row's cluster id is the smallest id in its cluster,
//! so the row with that id is the one to keep. Clusters are single-link: two rows share a
//! cluster when a chain of verified pairs (estimated Jaccard >= threshold) joins them.

use super::exact::{Prehashed, ROWS_PER_TASK};
use super::minhash::{estimate_jaccard, MinHasher, Scratch, EMPTY};
use crate::error::{invalid, Result};
use crate::text::StrColumn;
use hashbrown::HashMap;
use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

const NONE: u32 = u32::MAX;
/// Weight of missed pairs against needless candidates when choosing LSH bands.
const FN_WEIGHT: f64 = 0.9;

/// Chooses `(bands, rows)` with `bands * rows <= num_perm` that minimise a weighted sum of the
/// false positive area (pairs below `threshold` that become candidates) and the false negative
/// area (pairs above it that do not), for the S-curve `1 - (1 - s^rows)^bands`. Every candidate
/// is verified by its estimated Jaccard, so a false positive costs only time while a false
/// negative is a missed duplicate: misses weigh 9 times more (FN_WEIGHT).
pub fn lsh_params(threshold: f64, num_perm: usize) -> (usize, usize) {
    fn area(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
        let steps = 200;
        let dx = (hi - lo) / steps as f64;
        (0..steps)
            .map(|i| f(lo + (i as f64 + 0.5) * dx))
            .sum::<f64>()
            * dx
    }
    let mut best = (1, num_perm, f64::INFINITY);
    for bands in 1..=num_perm {
        for rows in 1..=num_perm / bands {
            let p = |s: f64| 1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32);
            let fp = area(p, 0.0, threshold);
            let fneg = area(|s| 1.0 - p(s), threshold, 1.0);
            let cost = (1.0 - FN_WEIGHT) * fp + FN_WEIGHT * fneg;
            if cost < best.2 {
                best = (bands, rows, cost);
            }
        }
    }
    (best.0, best.1)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NearParams {
    pub threshold: f64,
    pub num_perm: usize,
    pub ngram: usize,
    pub seed: u64,
}

impl Default for NearParams {
    fn default() -> Self {
        NearParams {
            threshold: 0.7,
            num_perm: 128,
            ngram: 3,
            seed: 0,
        }
    }
}

pub struct NearIndex {
    params: NearParams,
    hasher: MinHasher,
    bands: usize,
    rows: usize,
    /// Signatures of all rows, `num_perm` per row.
    sigs: Vec<u32>,
    /// Clusters; a root is the smallest id of its cluster.
    uf: UnionFind,
    /// One bucket table per band.
    tables: Vec<BandTable>,
    /// Whether each row was put in the band tables (rows with no tokens and rows with an
    /// identical twin are not).
    indexed: Vec<bool>,
    /// Hash of a whole signature -> first row with it (rows with an identical signature are
    /// joined directly and not added to the bands: they could only find what it finds).
    whole: HashMap<u64, u32, Prehashed>,
}

impl NearIndex {
    pub fn new(params: NearParams) -> Result<Self> {
        if !(params.threshold > 0.0 && params.threshold <= 1.0) {
            return invalid(format!(
                "threshold must be in (0, 1], got {}",
                params.threshold
            ));
        }
        let hasher = MinHasher::new(params.num_perm, params.ngram, params.seed)?;
        let (bands, rows) = lsh_params(params.threshold, params.num_perm);
        Ok(NearIndex {
            params,
            hasher,
            bands,
            rows,
            sigs: Vec::new(),
            uf: UnionFind::default(),
            tables: (0..bands).map(|_| BandTable::default()).collect(),
            indexed: Vec::new(),
            whole: HashMap::default(),
        })
    }

    pub fn params(&self) -> NearParams {
        self.params
    }
    pub fn bands(&self) -> usize {
        self.bands
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn len(&self) -> usize {
        self.uf.parent.len()
    }
    pub fn is_empty(&self) -> bool {
        self.uf.parent.is_empty()
    }

    /// Signatures of a column, row-major, `num_perm` per row (null rows are all [`EMPTY`]); an
    /// error if a row is not UTF-8.
    pub fn signatures(&self, col: &StrColumn<'_>) -> Result<Vec<u32>> {
        let mut sigs = vec![EMPTY; col.len() * self.params.num_perm];
        self.fill_signatures(col, &mut sigs)?;
        Ok(sigs)
    }

    fn fill_signatures(&self, col: &StrColumn<'_>, out: &mut [u32]) -> Result<()> {
        out.par_chunks_mut(self.params.num_perm)
            .with_min_len(ROWS_PER_TASK)
            .enumerate()
            .try_for_each_init(Scratch::default, |scratch, (i, sig)| {
                match col.try_get(i)? {
                    Some(s) => self.hasher.signature(s, scratch, sig),
                    None => sig.fill(EMPTY),
                }
                Ok(())
            })
            .map_err(|e| col.first_error(e))
    }

    /// Band keys (`bands` per row) and whole-signature hashes of row-major signatures.
    fn keys(&self, sigs: &[u32]) -> (Vec<u64>, Vec<u64>) {
        let (p, b, r) = (self.params.num_perm, self.bands, self.rows);
        let n = sigs.len() / p;
        let mut keys = vec![0u64; n * b];
        let mut whole = vec![0u64; n];
        keys.par_chunks_mut(b.max(1))
            .zip(whole.par_iter_mut())
            .zip(sigs.par_chunks(p))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|((k, w), sig)| {
                for (band, key) in k.iter_mut().enumerate() {
                    *key = xxh3_64_with_seed(as_bytes(&sig[band * r..(band + 1) * r]), band as u64);
                }
                *w = xxh3_64_with_seed(as_bytes(sig), u64::MAX);
            });
        (keys, whole)
    }

    fn sig(&self, id: u32) -> &[u32] {
        row(&self.sigs, self.params.num_perm, id)
    }

    /// Adds a batch of rows and returns, for each new row, its cluster id at the moment it was
    /// added: the smallest id it is joined to through rows added up to and including it. A row
    /// is a near-duplicate of an earlier row iff its answer differs from its own id. Answers do
    /// not depend on how rows are split into batches; a later row can still bridge two earlier
    /// clusters, and [`NearIndex::clusters`] gives that final view.
    pub fn add(&mut self, col: &StrColumn<'_>) -> Result<Vec<i64>> {
        let n = col.len();
        let base = self.len();
        if base + n >= NONE as usize {
            return invalid("near-duplicate index is full (4 billion rows)");
        }
        let (p, nb) = (self.params.num_perm, self.bands);
        // Signatures go straight into the index's store.
        let mut sigs = std::mem::take(&mut self.sigs);
        sigs.resize((base + n) * p, EMPTY);
        let filled = self.fill_signatures(col, &mut sigs[base * p..]);
        if filled.is_err() {
            sigs.truncate(base * p); // the index stays as it was
        }
        self.sigs = sigs;
        filled?;
        let (keys, whole) = self.keys(&self.sigs[base * p..]);
        self.uf.grow(base + n);
        for t in &mut self.tables {
            t.reserve(base + n, &self.indexed);
        }
        self.indexed.resize(base + n, false);

        // Pass 1, in row order: rows with no tokens are similar to nothing and never indexed;
        // a row whose whole signature equals an earlier row's is that row's twin: it joins it
        // and is not indexed (it could only find what that row finds).
        self.whole.reserve(n);
        let mut twin_of: Vec<u32> = vec![NONE; n];
        let mut fresh: Vec<u32> = Vec::with_capacity(n);
        for (j, &wh) in whole.iter().enumerate() {
            let id = (base + j) as u32;
            let sig = row(&self.sigs, p, id);
            if sig.iter().all(|&v| v == EMPTY) {
                continue;
            }
            match self.whole.get(&wh) {
                Some(&twin) if row(&self.sigs, p, twin) == sig => twin_of[j] = twin,
                Some(_) => fresh.push(id),
                None => {
                    self.whole.insert(wh, id);
                    fresh.push(id);
                }
            }
        }

        // Pass 2, band by band (one band's table stays in cache): the candidate pairs, each
        // row with the earlier rows sharing its bucket.
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut cands: Vec<u32> = Vec::new();
        for (band, table) in self.tables.iter_mut().enumerate() {
            let key_of = |id: u32| keys[(id as usize - base) * nb + band];
            for (k, &id) in fresh.iter().enumerate() {
                if let Some(&ahead) = fresh.get(k + PREFETCH_ROWS) {
                    table.prefetch(key_of(ahead));
                }
                let key = key_of(id);
                cands.clear();
                table.chain(key, &mut cands);
                table.push(id, key);
                pairs.extend(cands.iter().map(|&c| (id, c)));
            }
        }
        for &id in &fresh {
            self.indexed[id as usize] = true;
        }
        pairs.sort_unstable();
        pairs.dedup();

        // Pass 3, in row order: join each row to its verified earlier candidates, then read its
        // cluster id. The answer for a row depends only on the rows before it, so it is the
        // same however the rows are split into batches.
        let threshold = self.params.threshold;
        let mut answers = Vec::with_capacity(n);
        let mut next_pair = 0;
        for (j, &twin) in twin_of.iter().enumerate() {
            let id = (base + j) as u32;
            if twin != NONE {
                self.uf.union(twin, id);
            }
            while next_pair < pairs.len() && pairs[next_pair].0 == id {
                let c = pairs[next_pair].1;
                next_pair += 1;
                if self.uf.find(c) != self.uf.find(id)
                    && estimate_jaccard(row(&self.sigs, p, c), row(&self.sigs, p, id)) >= threshold
                {
                    self.uf.union(c, id);
                }
            }
            answers.push(self.uf.find(id) as i64);
        }
        Ok(answers)
    }

    /// Cluster id of every row added so far.
    pub fn clusters(&mut self) -> Vec<i64> {
        (0..self.len())
            .map(|i| self.uf.find(i as u32) as i64)
            .collect()
    }

    /// For each row of `col`, the indexed row most similar to it with estimated Jaccard >=
    /// threshold (ties to the smaller id) and that similarity; `(-1, 0.0)` when there is none.
    /// The index is not changed.
    pub fn query(&self, col: &StrColumn<'_>) -> Result<(Vec<i64>, Vec<f64>)> {
        let sigs = self.signatures(col)?;
        let (keys, whole) = self.keys(&sigs);
        let (p, nb) = (self.params.num_perm, self.bands);
        Ok((0..col.len())
            .into_par_iter()
            .with_min_len(256)
            .map_init(Vec::new, |cands: &mut Vec<u32>, j| {
                let sig = &sigs[j * p..(j + 1) * p];
                if sig.iter().all(|&v| v == EMPTY) {
                    return (-1, 0.0);
                }
                cands.clear();
                for (t, &key) in self.tables.iter().zip(&keys[j * nb..(j + 1) * nb]) {
                    t.chain(key, cands);
                }
                if let Some(&twin) = self.whole.get(&whole[j]) {
                    cands.push(twin);
                }
                cands.sort_unstable();
                cands.dedup();
                let mut best = (-1i64, 0.0f64);
                for &c in cands.iter() {
                    let s = estimate_jaccard(self.sig(c), sig);
                    if s >= self.params.threshold && s > best.1 {
                        best = (c as i64, s);
                    }
                }
                best
            })
            .unzip())
    }
}

/// Union-find over row ids; the root of a set is its smallest id.
#[derive(Default)]
struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    fn grow(&mut self, n: usize) {
        let from = self.parent.len();
        self.parent.extend((from..n).map(|i| i as u32));
    }

    #[inline]
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let gp = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = gp;
            x = gp;
        }
        x
    }

    #[inline]
    fn union(&mut self, x: u32, y: u32) {
        let (rx, ry) = (self.find(x), self.find(y));
        if rx != ry {
            let (lo, hi) = if rx < ry { (rx, ry) } else { (ry, rx) };
            self.parent[hi as usize] = lo;
        }
    }
}

#[inline]
fn row(sigs: &[u32], p: usize, id: u32) -> &[u32] {
    &sigs[id as usize * p..(id as usize + 1) * p]
}

/// Rows whose bucket slots are prefetched ahead of the row being inserted.
const PREFETCH_ROWS: usize = 16;

/// The buckets of one LSH band. A direct-mapped slot array (a power of two, at least one slot
/// per row)
/// holds, per slot, the newest row whose band key maps there and a 32-bit Bloom filter of the
/// keys of all rows chained from it; `next` chains each row to the previous row in its slot.
/// Band keys are uniform hashes: the slot is their top bits, the Bloom bits come from their low
/// bits. A lookup is one cache line (prefetched ahead), and the filter answers "no earlier row
/// has this key" without walking the chain, which is the common case for unique texts.
#[derive(Default)]
struct BandTable {
    slots: Vec<u64>,
    bits: u32,
    next: Vec<u32>,
    keys: Vec<u64>,
}

const EMPTY_SLOT: u64 = NONE as u64;

#[inline(always)]
fn bloom(key: u64) -> u64 {
    ((1u64 << (key & 31)) | (1u64 << ((key >> 5) & 31))) << 32
}

impl BandTable {
    #[inline(always)]
    fn slot(&self, key: u64) -> usize {
        (key >> (64 - self.bits)) as usize
    }

    /// Makes room for `rows` rows in total, re-slotting indexed rows if the table grows.
    fn reserve(&mut self, rows: usize, indexed: &[bool]) {
        self.next.resize(rows, NONE);
        self.keys.resize(rows, 0);
        let want = rows.next_power_of_two().max(1024);
        if want <= self.slots.len() {
            return;
        }
        self.bits = want.trailing_zeros();
        self.slots = vec![EMPTY_SLOT; want];
        for (id, _) in indexed.iter().enumerate().filter(|(_, &on)| on) {
            self.push(id as u32, self.keys[id]);
        }
    }

    #[inline(always)]
    fn prefetch(&self, key: u64) {
        #[cfg(target_arch = "x86_64")]
        if !self.slots.is_empty() {
            let p = self.slots.as_ptr().wrapping_add(self.slot(key));
            // SAFETY: prefetching is a hint; the address is inside `slots`.
            unsafe {
                std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// Appends the rows whose band key equals `key`, newest first.
    #[inline]
    fn chain(&self, key: u64, out: &mut Vec<u32>) {
        if self.slots.is_empty() {
            return;
        }
        let v = self.slots[self.slot(key)];
        let b = bloom(key);
        if v & b != b {
            return;
        }
        let mut c = v as u32;
        while c != NONE {
            if self.keys[c as usize] == key {
                out.push(c);
            }
            c = self.next[c as usize];
        }
    }

    #[inline]
    fn push(&mut self, id: u32, key: u64) {
        let s = self.slot(key);
        let v = self.slots[s];
        self.next[id as usize] = v as u32;
        self.keys[id as usize] = key;
        self.slots[s] = (v & !0xFFFF_FFFF) | bloom(key) | id as u64;
    }
}

fn as_bytes(x: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

/// Near-duplicate clusters of one column: each row's cluster id (the index of its first row),
/// after all rows are in (transitive closure over verified pairs).
pub fn near(col: &StrColumn<'_>, params: NearParams) -> Result<Vec<i64>> {
    let mut index = NearIndex::new(params)?;
    index.add(col)?;
    Ok(index.clusters())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::OwnedColumn;

    #[test]
    fn params_follow_the_threshold() {
        let (b, r) = lsh_params(0.7, 128);
        assert!(b * r <= 128);
        // Favouring recall: pairs at the threshold are candidates 90% of the time, pairs 0.1
        // above it nearly always, pairs 0.3 below it rarely.
        let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
        assert!(p(0.7) > 0.9 && p(0.8) > 0.99 && p(0.4) < 0.1, "b={b} r={r}");
        let (b9, r9) = lsh_params(0.9, 128);
        assert!(r9 as f64 / b9 as f64 > r as f64 / b as f64);
    }

    #[test]
    fn clusters_planted_duplicates() {
        let base = "the committee will meet on tuesday to discuss the budget for the new library building downtown";
        let c = OwnedColumn::from_options(&[
            Some(base),
            Some("completely different words about cooking pasta with garlic and olive oil tonight"),
            Some("The committee will meet on Tuesday to discuss the budget for the new library building downtown!"),
            None,
            Some("the committee will meet on tuesday to discuss the budget for the new library building uptown"),
            Some(""),
        ]);
        let ids = near(&c.view(), NearParams::default()).unwrap();
        assert_eq!(ids, vec![0, 1, 0, 3, 0, 5]);
    }

    #[test]
    fn batches_and_queries_see_earlier_rows() {
        let mut idx = NearIndex::new(NearParams::default()).unwrap();
        let r = OwnedColumn::from_strs(&["how do i kill a python process that hangs on exit"]);
        assert_eq!(idx.add(&r.view()).unwrap(), vec![0]);
        let q = OwnedColumn::from_strs(&[
            "How do I kill a Python process that hangs on exit?",
            "bake bread",
        ]);
        let (ids, sims) = idx.query(&q.view()).unwrap();
        assert_eq!(ids, vec![0, -1]);
        assert_eq!(sims[0], 1.0);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.add(&q.view()).unwrap(), vec![0, 2]);
        assert!(NearIndex::new(NearParams {
            threshold: 0.0,
            ..Default::default()
        })
        .is_err());
    }
}

//! Hashed word n-gram features for the learned refusal classifier.
//!
//! A token is a maximal run of ASCII letters, digits and apostrophes, or of non-ASCII bytes,
//! lowercased (ASCII only). Each token gives a unigram and, with the previous token, a bigram;
//! both are tagged by region: *opening* when the token starts before `opening_bytes`, *body*
//! after it. The first [`LEAD_TOKENS`] tokens also give a position-tagged unigram, because how a
//! response starts says most about a refusal. Features are hashed (64-bit FNV-1a, then a
//! multiply-shift) into `2^bits` buckets; a row's features are returned CSR-style, duplicates
//! kept (they add up), in token order.

use rayon::prelude::*;

use crate::error::Result;
use crate::text::StrColumn;

/// Position-tagged unigrams for this many leading tokens.
pub const LEAD_TOKENS: usize = 3;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'\'' || b >= 0x80
}

/// FNV-1a of the lowercased token bytes.
#[inline]
fn token_hash(tok: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in tok {
        h ^= b.to_ascii_lowercase() as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Bucket of a feature: `kind` separates unigram/bigram/lead and region, `a`, `b` token hashes.
#[inline]
pub fn bucket(kind: u64, a: u64, b: u64, bits: u32) -> u32 {
    let h = (a ^ kind.wrapping_mul(MIX))
        .wrapping_mul(MIX)
        .rotate_left(29)
        ^ b;
    (h.wrapping_mul(MIX) >> (64 - bits)) as u32
}

/// Feature kinds (mixed into the hash).
pub const UNI: u64 = 1;
pub const BI: u64 = 2;
pub const LEAD: u64 = 3;

fn row_features(text: &[u8], opening_bytes: usize, bits: u32, out: &mut Vec<u32>) {
    let mut i = 0;
    let mut prev: Option<u64> = None;
    let mut k = 0usize;
    while i < text.len() {
        if !is_word_byte(text[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let ascii = text[i] < 0x80;
        while i < text.len() && is_word_byte(text[i]) && (text[i] < 0x80) == ascii {
            i += 1;
        }
        let h = token_hash(&text[start..i]);
        let region = if start < opening_bytes { 0 } else { 8 };
        out.push(bucket(UNI + region, h, 0, bits));
        if let Some(p) = prev {
            out.push(bucket(BI + region, p, h, bits));
        }
        if k < LEAD_TOKENS {
            out.push(bucket(LEAD + 16 * k as u64, h, 0, bits));
        }
        prev = Some(h);
        k += 1;
    }
}

/// Hashed features of every row: `(indptr, indices)`; null rows have none. Only the first
/// `max_bytes` bytes of a row are used (a token cut at that point counts as it stands).
/// `bits` must be in 1..=31. An error if a row is not UTF-8.
pub fn hashed_ngrams(
    col: &StrColumn,
    bits: u32,
    opening_bytes: usize,
    max_bytes: usize,
) -> Result<(Vec<i64>, Vec<u32>)> {
    assert!((1..=31).contains(&bits), "bits must be in 1..=31");
    const CHUNK: usize = 4096;
    let n = col.len();
    let parts: Result<Vec<(Vec<usize>, Vec<u32>)>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let mut lens = Vec::with_capacity(hi - lo);
            let mut idx = Vec::new();
            for r in lo..hi {
                let before = idx.len();
                if let Some(t) = col.try_get(r)? {
                    let b = t.as_bytes();
                    row_features(&b[..b.len().min(max_bytes)], opening_bytes, bits, &mut idx);
                }
                lens.push(idx.len() - before);
            }
            Ok((lens, idx))
        })
        .collect();
    let parts = parts.map_err(|e| col.first_error(e))?;
    let total: usize = parts.iter().map(|p| p.1.len()).sum();
    let mut indptr = Vec::with_capacity(n + 1);
    let mut indices = Vec::with_capacity(total);
    indptr.push(0i64);
    for (lens, idx) in parts {
        for l in lens {
            let last = *indptr.last().unwrap();
            indptr.push(last + l as i64);
        }
        indices.extend_from_slice(&idx);
    }
    Ok((indptr, indices))
}

/// The hashed part of a linear model's scores, without materialising the features: for each
/// row, `sum over its features f of weights[f]` (a row of `k` values), times
/// `1 / sqrt(number of features)` (at least 1). `weights` is `(2^bits, k)` row-major; the result
/// is `(rows, k)` row-major; null rows score 0. Equal to summing over [`hashed_ngrams`]'s output
/// (each product rounded to f32, sums in f64, then rounded to f32). An error if a row is not
/// UTF-8.
pub fn hashed_scores(
    col: &StrColumn,
    bits: u32,
    opening_bytes: usize,
    max_bytes: usize,
    weights: &[f32],
    k: usize,
) -> Result<Vec<f32>> {
    assert!((1..=31).contains(&bits), "bits must be in 1..=31");
    assert!(
        k > 0 && weights.len() == k << bits,
        "weights must be (2^bits, k)"
    );
    let mut out = vec![0f32; col.len() * k];
    out.par_chunks_mut(k)
        .enumerate()
        .with_min_len(256)
        .try_for_each_init(
            || (Vec::new(), vec![0f64; k]),
            |(feats, acc), (r, row)| {
                let Some(t) = col.try_get(r)? else {
                    return Ok(());
                };
                feats.clear();
                let b = t.as_bytes();
                row_features(&b[..b.len().min(max_bytes)], opening_bytes, bits, feats);
                let scale = (1.0 / (feats.len().max(1) as f64).sqrt()) as f32;
                acc.fill(0.0);
                for &f in feats.iter() {
                    let w = &weights[f as usize * k..f as usize * k + k];
                    for (a, &x) in acc.iter_mut().zip(w) {
                        *a += (x * scale) as f64;
                    }
                }
                for (o, &a) in row.iter_mut().zip(acc.iter()) {
                    *o = a as f32;
                }
                Ok(())
            },
        )
        .map_err(|e| col.first_error(e))?;
    Ok(out)
}

/// Per row, the number of space bytes and whether a line starts a list item (see
/// [`crate::judge::has_list_item`]): the learned step's dense length and list features. Null
/// rows give 0 and false. An error if a row is not UTF-8.
pub fn row_stats(col: &StrColumn) -> Result<(Vec<u32>, Vec<bool>)> {
    let stats = col.par_map(1024, |t| {
        t.map_or((0, false), |t| {
            let b = t.as_bytes();
            let spaces = b.iter().map(|&x| (x == b' ') as u32).sum();
            (spaces, crate::judge::has_list_item(b))
        })
    })?;
    Ok(stats.into_iter().unzip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::OwnedColumn;

    #[test]
    fn tokens_regions_and_nulls() {
        let col = OwnedColumn::from_options(&[Some("I can't help."), None, Some(""), Some("a b")]);
        let (indptr, idx) = hashed_ngrams(&col.view(), 20, 4, usize::MAX).unwrap();
        // "I" "can't" "help": 3 unigrams + 2 bigrams + 3 lead; null and empty: nothing.
        assert_eq!(indptr, vec![0, 8, 8, 8, 8 + 2 + 1 + 2]);
        let i = token_hash(b"i");
        let cant = token_hash(b"can't");
        assert_eq!(idx[0], bucket(UNI, i, 0, 20));
        assert_eq!(idx[1], bucket(LEAD, i, 0, 20));
        // "can't" starts at byte 2 < 4: opening; "help" at 8: body.
        assert_eq!(idx[2], bucket(UNI, cant, 0, 20));
        assert_eq!(idx[3], bucket(BI, i, cant, 20));
        assert_eq!(idx[5], bucket(UNI + 8, token_hash(b"help"), 0, 20));
        assert!(idx.iter().all(|&b| b < (1 << 20)));
    }

    #[test]
    fn scores_are_the_features_summed() {
        let col = OwnedColumn::from_options(&[
            Some("I can't help. 1. Do x"),
            None,
            Some(""),
            Some("a b a b a"),
        ]);
        let (bits, k) = (6u32, 3usize);
        let w: Vec<f32> = (0..(k << bits)).map(|i| (i as f32 * 0.37).sin()).collect();
        let got = hashed_scores(&col.view(), bits, 5, usize::MAX, &w, k).unwrap();
        let (indptr, idx) = hashed_ngrams(&col.view(), bits, 5, usize::MAX).unwrap();
        for r in 0..4 {
            let f = &idx[indptr[r] as usize..indptr[r + 1] as usize];
            let scale = 1.0 / (f.len().max(1) as f64).sqrt();
            for c in 0..k {
                let want: f64 = f
                    .iter()
                    .map(|&j| w[j as usize * k + c] as f64 * scale)
                    .sum();
                assert!(
                    (got[r * k + c] as f64 - want).abs() < 1e-5,
                    "row {r} class {c}"
                );
            }
        }
        let (spaces, lists) = row_stats(&col.view()).unwrap();
        assert_eq!(spaces, vec![5, 0, 0, 4]);
        assert_eq!(lists, vec![false, false, false, false]);
        let col = OwnedColumn::from_strs(&["Steps:\n 2) go", "-x\n- y"]);
        assert_eq!(row_stats(&col.view()).unwrap().1, vec![true, true]);
    }

    #[test]
    fn case_insensitive() {
        let col = OwnedColumn::from_strs(&["Sorry BUT", "sorry but"]);
        let (indptr, idx) = hashed_ngrams(&col.view(), 16, 100, usize::MAX).unwrap();
        let k = indptr[1] as usize;
        assert_eq!(idx[..k], idx[k..]);
    }
}

//! MinHash signatures of word n-gram shingles, built entirely in Rust.
//!
//! Text is normalised ([`crate::text::normalize_into`]) and split into tokens: maximal runs of
//! alphanumeric characters. Shingles are the `ngram` consecutive tokens at each position (a text
//! with fewer tokens than `ngram` has one shingle, all its tokens; a text with no tokens has
//! none). Each shingle is hashed to 64 bits and each of the `num_perm` hash functions is a
//! multiply-add-shift `((a_i * h + b_i) >> 32)` with seeded odd `a_i`, taking the minimum over
//! shingles. The inner loop is written so the compiler vectorises it; on x86-64 a copy compiled
//! for AVX-512 or AVX2 is chosen at run time, with identical results.

use crate::error::{invalid, Result};
use crate::rng::mix64;
use crate::text::normalize_into;
use xxhash_rust::xxh3::xxh3_64;

/// Signature value of a text with no tokens: it is similar to nothing.
pub const EMPTY: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub struct MinHasher {
    num_perm: usize,
    ngram: usize,
    seed: u64,
    a: Vec<u64>,
    b: Vec<u64>,
    kernel: Kernel,
}

/// Per-thread scratch space, reused across rows.
#[derive(Default)]
pub struct Scratch {
    norm: Vec<u8>,
    tokens: Vec<u64>,
    shingles: Vec<u64>,
}

type Kernel = fn(&[u64], &[u64], &[u64], &mut [u32]);

impl MinHasher {
    pub fn new(num_perm: usize, ngram: usize, seed: u64) -> Result<Self> {
        if !(1..=1024).contains(&num_perm) {
            return invalid(format!(
                "num_perm must be between 1 and 1024, got {num_perm}"
            ));
        }
        if !(1..=16).contains(&ngram) {
            return invalid(format!("ngram must be between 1 and 16, got {ngram}"));
        }
        let a = (0..num_perm as u64)
            .map(|i| mix64(seed ^ mix64(2 * i)) | 1)
            .collect();
        let b = (0..num_perm as u64)
            .map(|i| mix64(seed ^ mix64(2 * i + 1)))
            .collect();
        Ok(MinHasher {
            num_perm,
            ngram,
            seed,
            a,
            b,
            kernel: pick_kernel(),
        })
    }

    pub fn num_perm(&self) -> usize {
        self.num_perm
    }
    pub fn ngram(&self) -> usize {
        self.ngram
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Shingle hashes of `text` into `scratch.shingles` (unsorted, may repeat).
    pub fn shingles<'s>(&self, text: &str, scratch: &'s mut Scratch) -> &'s [u64] {
        normalize_into(text, &mut scratch.norm);
        tokenize(&scratch.norm, &mut scratch.tokens);
        let t = &scratch.tokens;
        let out = &mut scratch.shingles;
        out.clear();
        if t.is_empty() {
            return out;
        }
        let n = self.ngram.min(t.len());
        for w in t.windows(n) {
            let mut h = w[0];
            for &x in &w[1..] {
                h = (h.rotate_left(23) ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
            out.push(mix64(h ^ n as u64));
        }
        out
    }

    /// Signature of `text` into `sig` (length `num_perm`); all [`EMPTY`] if it has no tokens.
    pub fn signature(&self, text: &str, scratch: &mut Scratch, sig: &mut [u32]) {
        debug_assert_eq!(sig.len(), self.num_perm);
        sig.fill(EMPTY);
        self.shingles(text, scratch);
        (self.kernel)(&scratch.shingles, &self.a, &self.b, sig);
    }
}

/// Token hashes: maximal runs of alphanumeric characters of normalised text.
fn tokenize(norm: &[u8], out: &mut Vec<u64>) {
    out.clear();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < norm.len() {
        let b = norm[i];
        let (alnum, width) = if b < 0x80 {
            (b.is_ascii_alphanumeric(), 1)
        } else {
            // SAFETY: `norm` is UTF-8 and `i` is at a character boundary.
            let c = unsafe { std::str::from_utf8_unchecked(&norm[i..]) }
                .chars()
                .next()
                .unwrap();
            (c.is_alphanumeric(), c.len_utf8())
        };
        match (alnum, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(xxh3_64(&norm[s..i]));
                start = None;
            }
            _ => {}
        }
        i += width;
    }
    if let Some(s) = start {
        out.push(xxh3_64(&norm[s..]));
    }
}

#[inline(always)]
fn minhash_generic(shingles: &[u64], a: &[u64], b: &[u64], sig: &mut [u32]) {
    let n = sig.len();
    let (a, b) = (&a[..n], &b[..n]);
    for &h in shingles {
        for i in 0..n {
            let v = (a[i].wrapping_mul(h).wrapping_add(b[i]) >> 32) as u32;
            sig[i] = sig[i].min(v);
        }
    }
}

fn minhash_portable(shingles: &[u64], a: &[u64], b: &[u64], sig: &mut [u32]) {
    minhash_generic(shingles, a, b, sig)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn minhash_avx512_inner(shingles: &[u64], a: &[u64], b: &[u64], sig: &mut [u32]) {
    minhash_generic(shingles, a, b, sig)
}

#[cfg(target_arch = "x86_64")]
fn minhash_avx512(shingles: &[u64], a: &[u64], b: &[u64], sig: &mut [u32]) {
    // SAFETY: only selected by `pick_kernel` after the CPU reported these features.
    unsafe { minhash_avx512_inner(shingles, a, b, sig) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn minhash_avx2_inner(shingles: &[u64], a: &[u64], b: &[u64], sig: &mut [u32]) {
    minhash_generic(shingles, a, b, sig)
}

#[cfg(target_arch = "x86_64")]
fn minhash_avx2(shingles: &[u64], a: &[u64], b: &[u64], sig: &mut [u32]) {
    // SAFETY: only selected by `pick_kernel` after the CPU reported AVX2.
    unsafe { minhash_avx2_inner(shingles, a, b, sig) }
}

fn pick_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("FRX_NO_SIMD").is_none() {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
            {
                return minhash_avx512;
            }
            if is_x86_feature_detected!("avx2") {
                return minhash_avx2;
            }
        }
    }
    minhash_portable
}

/// Share of equal positions between two signatures: the MinHash estimate of Jaccard similarity.
#[inline]
pub fn estimate_jaccard(x: &[u32], y: &[u32]) -> f64 {
    let same = x.iter().zip(y).filter(|(p, q)| p == q).count();
    same as f64 / x.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn sig(m: &MinHasher, s: &str) -> Vec<u32> {
        let mut out = vec![0; m.num_perm()];
        m.signature(s, &mut Scratch::default(), &mut out);
        out
    }

    #[test]
    fn shingles_of_short_and_empty_texts() {
        let m = MinHasher::new(16, 3, 0).unwrap();
        let mut s = Scratch::default();
        assert_eq!(m.shingles("", &mut s).len(), 0);
        assert_eq!(m.shingles(" ?! ", &mut s).len(), 0);
        assert_eq!(m.shingles("two words", &mut s).len(), 1);
        assert_eq!(m.shingles("one two three four", &mut s).len(), 2);
        assert!(sig(&m, "...").iter().all(|&v| v == EMPTY));
    }

    #[test]
    fn case_punctuation_and_width_do_not_matter() {
        let m = MinHasher::new(64, 3, 1).unwrap();
        assert_eq!(
            sig(&m, "How do I kill a Python process?"),
            sig(&m, "how do i KILL a python process")
        );
        assert_eq!(sig(&m, "ＡＢＣ def ghi"), sig(&m, "abc, def; ghi"));
    }

    #[test]
    fn kernels_agree() {
        let m = MinHasher::new(128, 2, 9).unwrap();
        let mut s = Scratch::default();
        let sh = m
            .shingles("the quick brown fox jumps over the lazy dog again", &mut s)
            .to_vec();
        let mut want = vec![EMPTY; 128];
        minhash_portable(&sh, &m.a, &m.b, &mut want);
        let mut got = vec![EMPTY; 128];
        (m.kernel)(&sh, &m.a, &m.b, &mut got);
        assert_eq!(want, got);
    }

    #[test]
    fn estimate_tracks_true_jaccard() {
        let m = MinHasher::new(256, 1, 3).unwrap();
        let words: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let a = words[..120].join(" ");
        let b = words[60..].join(" ");
        let sa: HashSet<_> = words[..120].iter().collect();
        let sb: HashSet<_> = words[60..].iter().collect();
        let truth = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
        let est = estimate_jaccard(&sig(&m, &a), &sig(&m, &b));
        assert!((est - truth).abs() < 0.1, "estimate {est} vs {truth}");
    }
}

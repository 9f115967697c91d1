//! Refusal pattern matcher: a lexicon of literal phrases (Aho-Corasick) and regular expressions
//! (the `regex` crate), compiled once and run over a whole column.
//!
//! Matching ignores ASCII case, and treats the apostrophes `'`, `’` and `‘` as one character,
//! without copying the text: each phrase is compiled in every apostrophe spelling and regular
//! expressions get a character class in place of each apostrophe. Phrases match anywhere
//! (use a pattern with `\b` for word boundaries). Regular expressions are case-insensitive.
//!
//! [`Matcher::scan`] reports every occurrence of every pattern (overlapping ones included) with
//! its character offset (a Python string index) and whether it starts inside the first sentence,
//! so a judge can tell an opening "I can't help with that" from one quoted later in a story.

use crate::dedup::exact::ROWS_PER_TASK;
use crate::error::{FrxError, Result};
use crate::text::StrColumn;
use aho_corasick::automaton::OverlappingState;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
use hashbrown::HashMap;
use regex::bytes::{Regex, RegexBuilder};
use teddy::Teddy;

mod teddy;

/// Characters treated as the same apostrophe.
pub const APOSTROPHES: [char; 3] = ['\'', '\u{2019}', '\u{2018}'];
/// A phrase may hold at most this many apostrophes (it is compiled in 3^k spellings).
const MAX_APOSTROPHES: usize = 4;

pub struct Matcher {
    num_phrases: usize,
    /// Phrase automaton: anchored when a prefilter is in use (it is only started at the
    /// positions the prefilter lets through), unanchored otherwise.
    ac: Option<AhoCorasick>,
    prefilter: Option<Prefilter>,
    /// Automaton pattern index -> lexicon pattern ids (identical spellings share an entry).
    variant_ids: Vec<Vec<u32>>,
    regexes: Vec<Regex>,
    /// Report only matches at the start of a word (see [`Matcher::words`]).
    word_starts: bool,
}

/// All occurrences found by [`Matcher::scan`], sorted by (row, start, pattern).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    pub row: Vec<i64>,
    pub pattern: Vec<u32>,
    /// Offset of the match in characters (Unicode code points) from the start of the row.
    pub start: Vec<i64>,
    pub first_sentence: Vec<bool>,
}

/// Every apostrophe spelling of a phrase (3^k for k apostrophes).
fn spellings(phrase: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in phrase.chars() {
        if APOSTROPHES.contains(&c) {
            out = out
                .iter()
                .flat_map(|p| APOSTROPHES.iter().map(move |a| format!("{p}{a}")))
                .collect();
        } else {
            out.iter_mut().for_each(|p| p.push(c));
        }
    }
    out
}

/// Rewrites every unescaped apostrophe in a regular expression as a class of all of them.
fn widen_apostrophes(pattern: &str) -> String {
    let class: String = format!("[{}]", APOSTROPHES.iter().collect::<String>());
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut escaped = false;
    for c in pattern.chars() {
        if !escaped && APOSTROPHES.contains(&c) {
            out.push_str(&class);
        } else {
            out.push(c);
        }
        escaped = !escaped && c == '\\';
    }
    out
}

impl Matcher {
    /// Compiles `phrases` (ids `0..phrases.len()`) and `patterns` (ids after the phrases).
    pub fn new<S: AsRef<str>, T: AsRef<str>>(phrases: &[S], patterns: &[T]) -> Result<Self> {
        let mut variants: Vec<String> = Vec::new();
        let mut variant_ids: Vec<Vec<u32>> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (pid, phrase) in phrases.iter().enumerate() {
            let phrase = phrase.as_ref();
            if phrase.is_empty() {
                return Err(FrxError::Pattern(format!("phrase {pid} is empty")));
            }
            if phrase.chars().filter(|c| APOSTROPHES.contains(c)).count() > MAX_APOSTROPHES {
                return Err(FrxError::Pattern(format!(
                    "phrase {pid} ({phrase:?}) has more than {MAX_APOSTROPHES} apostrophes; write it as a pattern"
                )));
            }
            for v in spellings(phrase) {
                let key = v.to_ascii_lowercase();
                let slot = *seen.entry(key).or_insert_with(|| {
                    variants.push(v);
                    variant_ids.push(Vec::new());
                    variants.len() - 1
                });
                variant_ids[slot].push(pid as u32);
            }
        }
        let prefilter = Prefilter::new(&variants);
        let start = if prefilter.is_some() {
            StartKind::Anchored
        } else {
            StartKind::Unanchored
        };
        let ac = if variants.is_empty() {
            None
        } else {
            let build = |kind: Option<AhoCorasickKind>| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .start_kind(start)
                    .kind(kind)
                    .build(&variants)
            };
            // A dense DFA is fastest; for very large lexicons let the crate choose (an NFA).
            let ac = build(Some(AhoCorasickKind::DFA))
                .or_else(|_| build(None))
                .map_err(|e| FrxError::Pattern(format!("cannot compile phrases: {e}")))?;
            Some(ac)
        };
        let regexes = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                RegexBuilder::new(&widen_apostrophes(p.as_ref()))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| {
                        let msg = e.to_string().replace('\n', " ");
                        FrxError::Pattern(format!(
                            "pattern {i} ({:?}) is invalid: {msg}",
                            p.as_ref()
                        ))
                    })
                    .and_then(|r| {
                        if r.is_match(b"") {
                            Err(FrxError::Pattern(format!(
                                "pattern {i} ({:?}) matches the empty string",
                                p.as_ref()
                            )))
                        } else {
                            Ok(r)
                        }
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Matcher {
            num_phrases: phrases.len(),
            ac,
            prefilter,
            variant_ids,
            regexes,
            word_starts: false,
        })
    }

    /// Like [`Matcher::new`] with phrases only, reporting only the matches that start a word:
    /// at the start of the text or after a byte that is not an ASCII letter or digit ("I can't"
    /// in "I can't help", not in "AI can't feel"). The prefilter then skips the rest cheaply.
    pub fn words<S: AsRef<str>>(phrases: &[S]) -> Result<Self> {
        let mut m = Self::new(phrases, &[] as &[&str])?;
        m.word_starts = true;
        Ok(m)
    }

    /// The portable prefilter only (tests compare it with the vectorized one).
    #[cfg(test)]
    fn portable(mut self) -> Self {
        if let Some(pf) = &mut self.prefilter {
            pf.teddy = None;
        }
        self
    }

    pub fn num_patterns(&self) -> usize {
        self.num_phrases + self.regexes.len()
    }

    /// Calls `f(start, automaton pattern)` for every phrase match, in order of start; stops
    /// early when `f` returns `false`.
    fn phrase_matches(&self, text: &[u8], mut f: impl FnMut(usize, usize) -> bool) {
        let Some(ac) = &self.ac else { return };
        let starts = |i: usize| !self.word_starts || i == 0 || !text[i - 1].is_ascii_alphanumeric();
        match &self.prefilter {
            None => {
                for m in ac.find_overlapping_iter(text) {
                    if starts(m.start()) && !f(m.start(), m.pattern().as_usize()) {
                        return;
                    }
                }
            }
            Some(pf) => pf.candidates(text, self.word_starts, |i| {
                if !starts(i) {
                    return true;
                }
                // Every phrase spelling that starts exactly at i (the crate's overlapping
                // iterator refuses anchored input, so step the overlapping state by hand).
                let input = Input::new(text).span(i..text.len()).anchored(Anchored::Yes);
                let mut state = OverlappingState::start();
                loop {
                    ac.try_find_overlapping(input.clone(), &mut state)
                        .expect("anchored search on an anchored automaton");
                    // Match states also carry phrases that are suffixes of the path taken
                    // (they start later and are reported from their own position).
                    match state.get_match() {
                        None => return true,
                        Some(m) if m.start() == i && !f(i, m.pattern().as_usize()) => return false,
                        Some(_) => {}
                    }
                }
            }),
        }
    }

    fn any_one(&self, text: &[u8]) -> bool {
        let mut hit = false;
        self.phrase_matches(text, |_, _| {
            hit = true;
            false
        });
        hit || self.regexes.iter().any(|r| r.is_match(text))
    }

    /// Whether any pattern occurs in each row (`false` for null rows); an error if a row is not
    /// UTF-8 (see [`StrColumn::par_map`]).
    pub fn any(&self, col: &StrColumn<'_>) -> Result<Vec<bool>> {
        col.par_map(ROWS_PER_TASK / 8, |t| {
            t.is_some_and(|t| self.any_one(t.as_bytes()))
        })
    }

    /// Every occurrence of every pattern, with positions (see [`Scan`]); an error if a row is
    /// not UTF-8.
    pub fn scan(&self, col: &StrColumn<'_>) -> Result<Scan> {
        // Character offsets and the first sentence are worked out per row on the thread that
        // scanned it, while the row is in its cache (a second pass over the rows missed it).
        let per_row = col.par_map(ROWS_PER_TASK / 8, |t| {
            let Some(t) = t else { return Vec::new() };
            let text = t.as_bytes();
            let hits = self.scan_one(text);
            if hits.is_empty() {
                return Vec::new();
            }
            let end = first_sentence_end(text);
            let (mut at_byte, mut at_char) = (0usize, 0i64);
            hits.into_iter()
                .map(|(start, pid)| {
                    let start = start as usize;
                    at_char += count_chars(&text[at_byte..start]);
                    at_byte = start;
                    (at_char, pid, start < end)
                })
                .collect()
        })?;
        let total = per_row.iter().map(Vec::len).sum();
        let mut out = Scan {
            row: Vec::with_capacity(total),
            pattern: Vec::with_capacity(total),
            start: Vec::with_capacity(total),
            first_sentence: Vec::with_capacity(total),
        };
        for (i, hits) in per_row.into_iter().enumerate() {
            for (start, pid, first) in hits {
                out.row.push(i as i64);
                out.pattern.push(pid);
                out.start.push(start);
                out.first_sentence.push(first);
            }
        }
        Ok(out)
    }

    /// Byte offsets and pattern ids of all matches in one text, sorted by (offset, id).
    pub fn scan_bytes(&self, text: &[u8]) -> Vec<(i64, u32)> {
        self.scan_one(text)
    }

    fn scan_one(&self, text: &[u8]) -> Vec<(i64, u32)> {
        let mut hits = Vec::new();
        self.phrase_matches(text, |start, v| {
            hits.extend(self.variant_ids[v].iter().map(|&pid| (start as i64, pid)));
            true
        });
        for (k, r) in self.regexes.iter().enumerate() {
            let pid = (self.num_phrases + k) as u32;
            hits.extend(r.find_iter(text).map(|m| (m.start() as i64, pid)));
        }
        hits.sort_unstable();
        hits
    }
}

/// Finds the positions where a phrase may start, so the (anchored) automaton runs only there.
///
/// Layers over bytes folded with `| 0x20` (which maps the two cases of a letter to one value
/// and never separates bytes that match case-insensitively, so no layer can miss a match; each
/// has false positives, which the next removes):
/// * a first pass over the text, one of two:
///   * where the CPU has AVX2 (x86-64) or NEON (AArch64) and every phrase spelling has at
///     least 4 bytes, the vectorized filter of [`teddy`], 64 positions a step, over the first
///     4 bytes of every spelling (with [`Matcher::words`], also only at the start of a word);
///   * otherwise, when every spelling has at least `WM_MIN` bytes, a Wu-Manber skip loop over
///     the first `m` bytes of every spelling (`m` the shortest spelling, at most `WM_MAX`): a
///     window of `m` bytes is examined through its last 3 bytes (5 bits of each), and slides
///     by the smallest distance at which that 3-gram occurs in any prefix, usually several
///     bytes at once; with neither, every position;
/// * a 64 Kbit set of the hashes of the first 4 bytes (fewer if a phrase is shorter) of every
///   spelling, checked at each position the first pass lets through;
/// * then the hash of the first [`LONG`] bytes in a second set, unless a spelling shorter
///   than that has those first 4 bytes. Common words open many phrases ("I do", "and ",
///   "not "): this layer keeps "I don't know" from starting the automaton for "I don't feel
///   comfortable".
struct Prefilter {
    width: usize,
    mask: u32,
    bits: Box<Bits>,
    /// Checked where `bits` lets a position through: the hashes of the first [`LONG`] bytes of
    /// every spelling that long (`long`), and of the first 4 bytes of the shorter ones
    /// (`short`, which let a position through on their own).
    long: Box<Bits>,
    short: Box<Bits>,
    /// Wu-Manber window length (0 when not used) and shift table. Fixed-size arrays, so the
    /// hashed indexes need no bounds checks.
    m: usize,
    shift: Box<[u8; 1 << SHIFT_BITS]>,
    /// The vectorized filter, used in place of the skip loop where the CPU has one.
    teddy: Option<Teddy>,
}

const PREFILTER_BITS: u32 = 16;
/// Bytes hashed by the prefilter's second layer.
const LONG: usize = 8;
const SHIFT_BITS: u32 = 15;
const WM_MIN: usize = 6;
const WM_MAX: usize = 32;

type Bits = [u64; 1 << (PREFILTER_BITS - 6)];

#[inline(always)]
fn set(bits: &mut Bits, h: usize) {
    bits[h >> 6] |= 1 << (h & 63);
}

#[inline(always)]
fn has(bits: &Bits, h: usize) -> bool {
    bits[h >> 6] & (1 << (h & 63)) != 0
}

/// Hash of `b[..LONG]`, folded like [`Prefilter::hash`].
#[inline(always)]
fn hash_long(b: &[u8]) -> usize {
    let w = u64::from_le_bytes(b[..LONG].try_into().unwrap()) | 0x2020_2020_2020_2020;
    (w.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - PREFILTER_BITS)) as usize
}

/// Index of a 3-byte window in the shift table: the low 5 bits of each byte. Both cases of a
/// letter share their low 5 bits, so matching windows always share an index (some other bytes
/// share it too, which only shortens shifts). Shifts and masks only: short latency.
#[inline(always)]
fn index3(w: u32) -> usize {
    ((w & 0x1F) | ((w >> 3) & 0x3E0) | ((w >> 6) & 0x7C00)) as usize
}

#[inline(always)]
fn window3(b: &[u8]) -> u32 {
    b[0] as u32 | (b[1] as u32) << 8 | (b[2] as u32) << 16
}

impl Prefilter {
    fn new(variants: &[String]) -> Option<Self> {
        let shortest = variants.iter().map(|v| v.len()).min()?;
        let width = shortest.min(4);
        if width < 2 {
            return None;
        }
        let mask = if width == 4 {
            u32::MAX
        } else {
            (1u32 << (8 * width)) - 1
        };
        let mut pf = Prefilter {
            width,
            mask,
            bits: Box::new([0; 1 << (PREFILTER_BITS - 6)]),
            long: Box::new([0; 1 << (PREFILTER_BITS - 6)]),
            short: Box::new([0; 1 << (PREFILTER_BITS - 6)]),
            m: 0,
            shift: Box::new([0; 1 << SHIFT_BITS]),
            teddy: None,
        };
        if width == teddy::WIDTH {
            pf.teddy = Teddy::new(variants);
        }
        for v in variants {
            let h = pf.hash(Self::load(v.as_bytes(), 0));
            set(&mut pf.bits, h);
            match v.as_bytes().get(..LONG) {
                Some(b) => set(&mut pf.long, hash_long(b)),
                None => set(&mut pf.short, h),
            }
        }
        if shortest >= WM_MIN {
            let m = shortest.min(WM_MAX);
            pf.shift.fill((m - 2) as u8);
            for v in variants {
                let p = &v.as_bytes()[..m];
                for end in 2..m {
                    let h = index3(window3(&p[end - 2..=end]));
                    pf.shift[h] = pf.shift[h].min((m - 1 - end) as u8);
                }
            }
            pf.m = m;
        }
        Some(pf)
    }

    #[inline(always)]
    fn load(text: &[u8], i: usize) -> u32 {
        match text.get(i..i + 4) {
            Some(w) => u32::from_le_bytes(w.try_into().unwrap()),
            None => {
                let mut w = [0u8; 4];
                let rest = &text[i..];
                w[..rest.len()].copy_from_slice(rest);
                u32::from_le_bytes(w)
            }
        }
    }

    #[inline(always)]
    fn hash(&self, window: u32) -> usize {
        let key = (window | 0x2020_2020) & self.mask;
        (key.wrapping_mul(0x9E37_79B1) >> (32 - PREFILTER_BITS)) as usize
    }

    #[inline(always)]
    fn maybe_starts(&self, text: &[u8], i: usize) -> bool {
        let h = self.hash(Self::load(text, i));
        has(&self.bits, h)
            && (has(&self.short, h)
                || text
                    .get(i..i + LONG)
                    .is_some_and(|b| has(&self.long, hash_long(b))))
    }

    /// Calls `f(i)` at every position that may start a match until `f` returns false. With the
    /// skip loop the positions come in four interleaved increasing runs (callers sort).
    /// `words`: the caller only wants starts of words (a hint: other positions may come too).
    #[inline]
    fn candidates(&self, text: &[u8], words: bool, mut f: impl FnMut(usize) -> bool) {
        if text.len() < self.width {
            return;
        }
        if let Some(t) = &self.teddy {
            let pass = |i: usize| !self.maybe_starts(text, i) || f(i);
            if words {
                t.run::<true>(text, pass);
            } else {
                t.run::<false>(text, pass);
            }
            return;
        }
        if self.m == 0 {
            for i in 0..=text.len() - self.width {
                if self.maybe_starts(text, i) && !f(i) {
                    return;
                }
            }
            return;
        }
        let (m, n) = (self.m, text.len());
        if n < m {
            return;
        }
        // A window is text[end + 1 - m..=end]. Its shift is looked up through the 3 bytes ending
        // at `end`. The loop is bound by the latency of that lookup, so two independent lanes
        // (window ends in [m - 1, mid) and [mid, n)) run interleaved.
        let ptr = text.as_ptr();
        let shift_at = |end: usize| -> usize {
            debug_assert!(end >= 3 && end < n);
            // SAFETY: m >= WM_MIN > 3 so end >= 3, and end < n: bytes end-3..=end exist.
            let w = u32::from_le(unsafe { ptr.add(end - 3).cast::<u32>().read_unaligned() });
            self.shift[index3(w >> 8)] as usize
        };
        // Returns false when `f` asked to stop.
        let mut hit = |end: usize| {
            let start = end + 1 - m;
            !self.maybe_starts(text, start) || f(start)
        };
        // Four lanes over consecutive quarters of the window ends, stepped in turn: the loop is
        // bound by the latency of one table lookup, so independent lanes overlap.
        let total = n - m + 1;
        let (l1, l2, l3) = (m - 1 + total / 4, m - 1 + total / 2, m - 1 + 3 * total / 4);
        let (mut a, mut b, mut c, mut d) = (m - 1, l1, l2, l3);
        macro_rules! step {
            ($e:ident) => {{
                let s = shift_at($e);
                if s == 0 {
                    if !hit($e) {
                        return;
                    }
                    $e += 1;
                } else {
                    $e += s;
                }
            }};
        }
        while a < l1 && b < l2 && c < l3 && d < n {
            step!(a);
            step!(b);
            step!(c);
            step!(d);
        }
        for (mut end, limit) in [(a, l1), (b, l2), (c, l3), (d, n)] {
            while end < limit {
                let s = shift_at(end);
                if s > 0 {
                    end += s;
                    continue;
                }
                if !hit(end) {
                    return;
                }
                end += 1;
            }
        }
    }
}

#[inline]
fn count_chars(b: &[u8]) -> i64 {
    b.iter().filter(|&&x| (x & 0xC0) != 0x80).count() as i64
}

/// Byte offset where the first sentence ends: after leading whitespace, the first line break,
/// or the first `.`, `!` or `?` followed by whitespace or the end of the text.
pub fn first_sentence_end(text: &[u8]) -> usize {
    let begin = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let mut i = begin;
    while let Some(off) = memchr::memchr3(b'.', b'!', b'?', &text[i..]).map(|o| o + i) {
        if let Some(nl) = memchr::memchr(b'\n', &text[i..off]) {
            return i + nl;
        }
        if off + 1 >= text.len() || text[off + 1].is_ascii_whitespace() {
            return off + 1;
        }
        i = off + 1;
    }
    memchr::memchr(b'\n', &text[i..]).map_or(text.len(), |nl| i + nl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::OwnedColumn;

    #[test]
    fn finds_all_spellings_and_positions() {
        let m = Matcher::new(&["I can't", "sorry"], &[r"\bas an ai\b"]).unwrap();
        let c = OwnedColumn::from_options(&[
            Some("Sorry, I can\u{2019}t help. As an AI, no."),
            None,
            Some("Here is a story. She said \"I CAN'T\" and left."),
            Some("nothing here"),
            Some("é sorry"),
        ]);
        let s = m.scan(&c.view()).unwrap();
        assert_eq!(s.row, vec![0, 0, 0, 2, 4]);
        assert_eq!(s.pattern, vec![1, 0, 2, 0, 1]);
        assert_eq!(s.start, vec![0, 7, 21, 27, 2]);
        assert_eq!(s.first_sentence, vec![true, true, false, false, true]);
        assert_eq!(
            m.any(&c.view()).unwrap(),
            vec![true, false, true, false, true]
        );
    }

    #[test]
    fn overlapping_and_shared_spellings() {
        let m = Matcher::new(&["cannot", "I cannot", "CANNOT"], &[] as &[&str]).unwrap();
        let c = OwnedColumn::from_strs(&["I cannot"]);
        let s = m.scan(&c.view()).unwrap();
        assert_eq!(s.pattern, vec![1, 0, 2]);
        assert_eq!(s.start, vec![0, 2, 2]);
    }

    /// Every (byte offset, phrase) where a spelling of a phrase occurs, ignoring ASCII case:
    /// the definition, checked position by position.
    fn naive(text: &[u8], phrases: &[String], words: bool) -> Vec<(i64, u32)> {
        let spelled: Vec<Vec<String>> = phrases.iter().map(|p| spellings(p)).collect();
        let mut out = Vec::new();
        for i in 0..text.len() {
            if words && i > 0 && text[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            for (pid, p) in spelled.iter().enumerate() {
                let at = |v: &String| {
                    text.get(i..i + v.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(v.as_bytes()))
                };
                if p.iter().any(at) {
                    out.push((i as i64, pid as u32));
                }
            }
        }
        out
    }

    /// The vectorized prefilter, the portable one and the definition agree.
    fn prefilters_agree(
        phrases: &[String],
        text: &str,
        words: bool,
    ) -> std::result::Result<(), String> {
        let plain: Vec<&str> = Vec::new();
        let m = if words {
            Matcher::words(phrases)
        } else {
            Matcher::new(phrases, &plain)
        };
        let Ok(m) = m else { return Ok(()) }; // too many apostrophes
        let want = naive(text.as_bytes(), phrases, words);
        let fast = m.scan_bytes(text.as_bytes());
        let portable = m.portable().scan_bytes(text.as_bytes());
        if fast != want || portable != want {
            return Err(format!(
                "want {want:?}, vectorized {fast:?}, portable {portable:?}"
            ));
        }
        Ok(())
    }

    /// Filler and phrases (some upper-cased) in turn: `picks` holds (filler, phrase index,
    /// upper-case).
    fn planted(phrases: &[String], picks: &[(String, usize, bool)]) -> String {
        let mut text = String::new();
        for (filler, k, upper) in picks {
            text.push_str(filler);
            let p = &phrases[k % phrases.len()];
            text.push_str(&if *upper { p.to_uppercase() } else { p.clone() });
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(150))]
        /// On texts long enough for many steps and batches, with lexicons of many prefixes
        /// (several to a bucket) that share letters.
        #[test]
        fn prefilters_agree_with_the_definition(
            phrases in proptest::collection::vec("[aAbB' ’é]{4,9}", 1..40),
            picks in proptest::collection::vec(("[aAbBc ’'.é1]{0,80}", 0usize..40, proptest::bool::ANY), 0..60),
            words: bool,
        ) {
            let text = planted(&phrases, &picks);
            proptest::prop_assert_eq!(prefilters_agree(&phrases, &text, words), Ok(()));
        }

        /// Phrases of 6+ bytes: the portable prefilter is the skip loop. Few phrases over a
        /// wider alphabet, so that it skips far.
        #[test]
        fn skip_loop_agrees_with_the_definition(
            phrases in proptest::collection::vec("[aAbB' ’é]{6,12}", 1..5),
            picks in proptest::collection::vec(("[aAbBcdxy ’'.é1]{0,40}", 0usize..5, proptest::bool::ANY), 0..12),
            words: bool,
        ) {
            let text = planted(&phrases, &picks);
            proptest::prop_assert_eq!(prefilters_agree(&phrases, &text, words), Ok(()));
        }
    }

    #[test]
    fn vectorized_prefilter_where_the_cpu_has_it() {
        let m = Matcher::new(&["I can't", "sorry"], &[] as &[&str]).unwrap();
        let teddy = m.prefilter.as_ref().unwrap().teddy.is_some();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(teddy, std::is_x86_feature_detected!("avx2"));
        #[cfg(target_arch = "aarch64")]
        assert_eq!(teddy, std::arch::is_aarch64_feature_detected!("neon"));
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        assert!(!teddy);
        // Phrases shorter than 4 bytes, or too many prefixes: the portable prefilter only.
        let short = Matcher::new(&["abc", "sorry"], &[] as &[&str]).unwrap();
        assert!(short.prefilter.as_ref().unwrap().teddy.is_none());
        let many: Vec<String> = (0..300).map(|i| format!("{i:04}xyz")).collect();
        let many = Matcher::new(&many, &[] as &[&str]).unwrap();
        assert!(many.prefilter.as_ref().unwrap().teddy.is_none());
        let c = OwnedColumn::from_strs(&["row 0299xyz here"]);
        assert_eq!(many.scan(&c.view()).unwrap().pattern, vec![299]);
    }

    #[test]
    fn words_only_at_word_starts() {
        let m = Matcher::words(&["can't", "AI"]).unwrap();
        let text = "AI can't; xcan't 2can't _can't é can't\ncan'tAI";
        let starts: Vec<i64> = m.scan_bytes(text.as_bytes()).iter().map(|h| h.0).collect();
        // "xcan't" and "2can't" are inside words; '_', 'é' and a newline end a word.
        assert_eq!(starts, vec![0, 3, 25, 34, 40]);
    }

    #[test]
    fn bad_lexicons_are_errors() {
        assert!(Matcher::new(&[""], &[] as &[&str]).is_err());
        assert!(Matcher::new(&["a'b'c'd'e'f"], &[] as &[&str]).is_err());
        assert!(Matcher::new(&[] as &[&str], &["("]).is_err());
        assert!(Matcher::new(&[] as &[&str], &["x*"]).is_err());
    }

    #[test]
    fn sentence_ends() {
        assert_eq!(first_sentence_end(b"  Hi there. Next"), 11);
        assert_eq!(first_sentence_end(b"v1.2 is out\nmore"), 11);
        assert_eq!(first_sentence_end(b"no end"), 6);
        assert_eq!(first_sentence_end(b"Wait!"), 5);
        assert_eq!(
            widen_apostrophes(r"can't \' [a']"),
            r"can['’‘]t \' [a['’‘]]"
        );
    }
}

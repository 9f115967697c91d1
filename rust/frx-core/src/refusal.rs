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
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use hashbrown::HashMap;
use rayon::prelude::*;
use regex::bytes::{Regex, RegexBuilder};

/// Characters treated as the same apostrophe.
pub const APOSTROPHES: [char; 3] = ['\'', '\u{2019}', '\u{2018}'];
/// A phrase is compiled in at most this many spellings (one per apostrophe combination).
const MAX_VARIANTS: usize = 81;

pub struct Matcher {
    num_phrases: usize,
    /// Overlapping matcher for `scan`; leftmost matcher for `any` (stops at the first hit).
    ac_all: Option<AhoCorasick>,
    ac_first: Option<AhoCorasick>,
    /// Automaton pattern index -> lexicon pattern ids (identical spellings share an entry).
    variant_ids: Vec<Vec<u32>>,
    regexes: Vec<Regex>,
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

fn spellings(phrase: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in phrase.chars() {
        if APOSTROPHES.contains(&c) && out.len() * APOSTROPHES.len() <= MAX_VARIANTS {
            out = out
                .iter()
                .flat_map(|p| APOSTROPHES.iter().map(move |a| format!("{p}{a}")))
                .collect();
        } else {
            let c = if APOSTROPHES.contains(&c) { '\'' } else { c };
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
        let build = |kind: MatchKind| -> Result<Option<AhoCorasick>> {
            if variants.is_empty() {
                return Ok(None);
            }
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(kind)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&variants)
                .map(Some)
                .or_else(|_| {
                    // Too many phrases for a dense DFA: let the crate choose (an NFA).
                    AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .match_kind(kind)
                        .build(&variants)
                        .map(Some)
                })
                .map_err(|e| FrxError::Pattern(format!("cannot compile phrases: {e}")))
        };
        let ac_all = build(MatchKind::Standard)?;
        let ac_first = build(MatchKind::LeftmostFirst)?;
        let regexes = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                RegexBuilder::new(&widen_apostrophes(p.as_ref()))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| {
                        let msg = e.to_string().replace('\n', " ");
                        FrxError::Pattern(format!("pattern {i} ({:?}) is invalid: {msg}", p.as_ref()))
                    })
                    .and_then(|r| {
                        if r.is_match(b"") {
                            Err(FrxError::Pattern(format!("pattern {i} ({:?}) matches the empty string", p.as_ref())))
                        } else {
                            Ok(r)
                        }
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Matcher { num_phrases: phrases.len(), ac_all, ac_first, variant_ids, regexes })
    }

    pub fn num_patterns(&self) -> usize {
        self.num_phrases + self.regexes.len()
    }

    fn any_one(&self, text: &[u8]) -> bool {
        self.ac_first.as_ref().is_some_and(|ac| ac.is_match(text))
            || self.regexes.iter().any(|r| r.is_match(text))
    }

    /// Whether any pattern occurs in each row (`false` for null rows).
    pub fn any(&self, col: &StrColumn<'_>) -> Vec<bool> {
        (0..col.len())
            .into_par_iter()
            .with_min_len(ROWS_PER_TASK / 8)
            .map(|i| !col.is_null(i) && self.any_one(col.bytes(i)))
            .collect()
    }

    /// Every occurrence of every pattern, with positions (see [`Scan`]).
    pub fn scan(&self, col: &StrColumn<'_>) -> Scan {
        let per_row: Vec<Vec<(i64, u32)>> = (0..col.len())
            .into_par_iter()
            .with_min_len(ROWS_PER_TASK / 8)
            .map(|i| if col.is_null(i) { Vec::new() } else { self.scan_one(col.bytes(i)) })
            .collect();
        let mut out = Scan::default();
        for (i, hits) in per_row.into_iter().enumerate() {
            if hits.is_empty() {
                continue;
            }
            let text = col.bytes(i);
            let end = first_sentence_end(text);
            let (mut at_byte, mut at_char) = (0usize, 0i64);
            for (start, pid) in hits {
                let start = start as usize;
                at_char += count_chars(&text[at_byte..start]);
                at_byte = start;
                out.row.push(i as i64);
                out.pattern.push(pid);
                out.start.push(at_char);
                out.first_sentence.push(start < end);
            }
        }
        out
    }

    /// Byte offsets and pattern ids of all matches in one text, sorted by (offset, id).
    fn scan_one(&self, text: &[u8]) -> Vec<(i64, u32)> {
        let mut hits = Vec::new();
        if let Some(ac) = &self.ac_all {
            for m in ac.find_overlapping_iter(text) {
                for &pid in &self.variant_ids[m.pattern().as_usize()] {
                    hits.push((m.start() as i64, pid));
                }
            }
        }
        for (k, r) in self.regexes.iter().enumerate() {
            let pid = (self.num_phrases + k) as u32;
            hits.extend(r.find_iter(text).map(|m| (m.start() as i64, pid)));
        }
        hits.sort_unstable();
        hits
    }
}

#[inline]
fn count_chars(b: &[u8]) -> i64 {
    b.iter().filter(|&&x| (x & 0xC0) != 0x80).count() as i64
}

/// Byte offset where the first sentence ends: after leading whitespace, the first line break,
/// or the first `.`, `!` or `?` followed by whitespace or the end of the text.
pub fn first_sentence_end(text: &[u8]) -> usize {
    let begin = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
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
        let s = m.scan(&c.view());
        assert_eq!(s.row, vec![0, 0, 0, 2, 4]);
        assert_eq!(s.pattern, vec![1, 0, 2, 0, 1]);
        assert_eq!(s.start, vec![0, 7, 21, 27, 2]);
        assert_eq!(s.first_sentence, vec![true, true, false, false, true]);
        assert_eq!(m.any(&c.view()), vec![true, false, true, false, true]);
    }

    #[test]
    fn overlapping_and_shared_spellings() {
        let m = Matcher::new(&["cannot", "I cannot", "CANNOT"], &[] as &[&str]).unwrap();
        let c = OwnedColumn::from_strs(&["I cannot"]);
        let s = m.scan(&c.view());
        assert_eq!(s.pattern, vec![1, 0, 2]);
        assert_eq!(s.start, vec![0, 2, 2]);
    }

    #[test]
    fn bad_lexicons_are_errors() {
        assert!(Matcher::new(&[""], &[] as &[&str]).is_err());
        assert!(Matcher::new(&[] as &[&str], &["("]).is_err());
        assert!(Matcher::new(&[] as &[&str], &["x*"]).is_err());
    }

    #[test]
    fn sentence_ends() {
        assert_eq!(first_sentence_end(b"  Hi there. Next"), 11);
        assert_eq!(first_sentence_end(b"v1.2 is out\nmore"), 11);
        assert_eq!(first_sentence_end(b"no end"), 6);
        assert_eq!(first_sentence_end(b"Wait!"), 5);
        assert_eq!(widen_apostrophes(r"can't \' [a']"), r"can['’‘]t \' [a['’‘]]");
    }
}

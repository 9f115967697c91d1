//! String columns and text normalisation.
//!
//! A [`StrColumn`] is a read-only view of an Arrow string column: one UTF-8 byte buffer, one
//! offsets buffer (32- or 64-bit, as in Arrow's `string` and `large_string`) and an optional
//! validity mask. Bindings build it straight over Arrow's buffers, so nothing is copied.
//!
//! [`normalize_into`] is the one normalisation used by every dedup kernel:
//! NFKC, full Unicode case folding, curly quotes to straight ones, and every run of whitespace
//! to one space with none at either end. It equals Python's
//! `" ".join(unicodedata.normalize("NFKC", s).casefold().translate(QUOTES).split())`.

use crate::error::{invalid, FrxError, Result};
use caseless::Caseless;
use rayon::prelude::*;
use unicode_normalization::UnicodeNormalization;

/// Offsets of a string column, Arrow `string` (i32) or `large_string` (i64).
#[derive(Clone, Copy, Debug)]
pub enum Offsets<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Offsets<'_> {
    #[inline]
    fn len(&self) -> usize {
        match self {
            Offsets::I32(o) => o.len(),
            Offsets::I64(o) => o.len(),
        }
    }

    #[inline]
    fn get(&self, i: usize) -> i64 {
        match self {
            Offsets::I32(o) => o[i] as i64,
            Offsets::I64(o) => o[i],
        }
    }
}

/// A borrowed string column with optional nulls. Its shape is checked when it is made; each
/// row is checked to be UTF-8 when a kernel reads it ([`StrColumn::try_get`]), so the text is
/// brought into the cache once, by the thread that works on it, with no pass of its own.
#[derive(Clone, Copy, Debug)]
pub struct StrColumn<'a> {
    data: &'a [u8],
    offsets: Offsets<'a>,
    valid: Option<&'a [bool]>,
}

impl<'a> StrColumn<'a> {
    /// Checks the buffers' shape: offsets non-decreasing and inside `data`, no row boundary
    /// inside a UTF-8 sequence, `valid` (if any) one entry per row.
    pub fn new(data: &'a [u8], offsets: Offsets<'a>, valid: Option<&'a [bool]>) -> Result<Self> {
        if offsets.len() == 0 {
            return invalid("string column: offsets must hold at least one entry");
        }
        let n = offsets.len() - 1;
        if let Some(v) = valid {
            if v.len() != n {
                return invalid(format!(
                    "string column: validity has {} entries for {n} rows",
                    v.len()
                ));
            }
        }
        let first = offsets.get(0);
        let last = offsets.get(n);
        if first < 0 || last < first || last as u64 > data.len() as u64 {
            return invalid("string column: offsets fall outside the data buffer");
        }
        let mut prev = first;
        for i in 1..=n {
            let o = offsets.get(i);
            if o < prev {
                return invalid("string column: offsets are not non-decreasing");
            }
            // A row boundary must not cut a UTF-8 sequence in two.
            if (o as usize) < data.len() && (data[o as usize] & 0xC0) == 0x80 {
                return Err(not_utf8(i - 1));
            }
            prev = o;
        }
        Ok(StrColumn {
            data,
            offsets,
            valid,
        })
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn is_null(&self, i: usize) -> bool {
        self.valid.is_some_and(|v| !v[i])
    }

    /// The bytes of row `i` (empty for a null row).
    #[inline]
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        let (s, e) = (
            self.offsets.get(i) as usize,
            self.offsets.get(i + 1) as usize,
        );
        &self.data[s..e]
    }

    /// Row `i`, or `None` for a null row; an error if the row is not UTF-8.
    #[inline]
    pub fn try_get(&self, i: usize) -> Result<Option<&'a str>> {
        if self.is_null(i) {
            return Ok(None);
        }
        let b = self.bytes(i);
        if simdutf8::basic::from_utf8(b).is_err() {
            return Err(not_utf8(i));
        }
        // SAFETY: checked just above.
        Ok(Some(unsafe { std::str::from_utf8_unchecked(b) }))
    }

    /// Asks the CPU to start loading row `i` (its first [`PREFETCH_BYTES`]) into the cache, so
    /// that reading it next overlaps with work on the row before.
    #[inline]
    fn prefetch(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let b = self.bytes(i);
            for at in (0..b.len().min(PREFETCH_BYTES)).step_by(64) {
                // SAFETY: a prefetch only hints the cache; `at` is inside the row.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().add(at).cast()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    /// `f` of every row (`None` for a null row), in parallel in tasks of at least `min_len` rows,
    /// in row order; each row is read with [`StrColumn::try_get`], and an error names the first
    /// row that is not UTF-8 (whichever thread met one first).
    pub fn par_map<T: Send>(
        &self,
        min_len: usize,
        f: impl Fn(Option<&'a str>) -> T + Sync + Send,
    ) -> Result<Vec<T>> {
        let out: Result<Vec<T>> = (0..self.len())
            .into_par_iter()
            .with_min_len(min_len)
            .map(|i| {
                if i + 1 < self.len() {
                    self.prefetch(i + 1);
                }
                self.try_get(i).map(&f)
            })
            .collect();
        out.map_err(|e| self.first_error(e))
    }

    /// The error naming the first row that is not UTF-8 (`e` itself if there is none): a
    /// parallel pass stops at whichever bad row a thread meets first; the message names the
    /// first, so it does not depend on the threads.
    pub fn first_error(&self, e: FrxError) -> FrxError {
        (0..self.len())
            .find(|&i| self.try_get(i).is_err())
            .map_or(e, not_utf8)
    }

    /// Total bytes of all rows.
    pub fn data_len(&self) -> usize {
        (self.offsets.get(self.len()) - self.offsets.get(0)) as usize
    }
}

/// How much of the next row [`StrColumn::par_map`] asks the CPU to load ahead. The refusal
/// prefilter asks for its own text 2 KB ahead as it goes; with 4 KB here as well, the judge and
/// `any` were 5-10% slower on 1.6 KB rows (a plain pass over each row, `row_stats`, was 7%
/// faster with 4 KB: the judge is the one that matters).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_BYTES: usize = 1024;

fn not_utf8(row: usize) -> FrxError {
    FrxError::InvalidArgument(format!("string column: row {row} is not valid UTF-8"))
}

/// An owned column, for tests and for callers that start from Rust strings.
#[derive(Clone, Debug, Default)]
pub struct OwnedColumn {
    pub data: Vec<u8>,
    pub offsets: Vec<i64>,
    pub valid: Option<Vec<bool>>,
}

impl OwnedColumn {
    pub fn from_strs<S: AsRef<str>>(rows: &[S]) -> Self {
        Self::from_options(&rows.iter().map(|s| Some(s.as_ref())).collect::<Vec<_>>())
    }

    pub fn from_options(rows: &[Option<&str>]) -> Self {
        let mut c = OwnedColumn {
            offsets: vec![0],
            ..Default::default()
        };
        for r in rows {
            c.data.extend_from_slice(r.unwrap_or("").as_bytes());
            c.offsets.push(c.data.len() as i64);
        }
        if rows.iter().any(Option::is_none) {
            c.valid = Some(rows.iter().map(Option::is_some).collect());
        }
        c
    }

    pub fn view(&self) -> StrColumn<'_> {
        StrColumn::new(
            &self.data,
            Offsets::I64(&self.offsets),
            self.valid.as_deref(),
        )
        .expect("an OwnedColumn is always valid")
    }
}

// ASCII byte classes for the fast path: 0 keep, 1 upper-case letter, 2 whitespace.
// Whitespace is Python's `str.isspace` on ASCII: \t \n \v \f \r, \x1c-\x1f and space.
const ASCII_CLASS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = b'A';
    while b <= b'Z' {
        t[b as usize] = 1;
        b += 1;
    }
    let mut w = 0x09;
    while w <= 0x0d {
        t[w] = 2;
        w += 1;
    }
    let mut w = 0x1c;
    while w <= 0x20 {
        t[w] = 2;
        w += 1;
    }
    t
};

/// Python's `str.isspace`: Unicode White_Space plus the four ASCII information separators.
#[inline]
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Curly single quotes and primes become `'`; curly double quotes become `"`.
#[inline]
pub fn straighten_quote(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => '"',
        _ => c,
    }
}

/// Normalises `s` into `out` (cleared first). See the module docs for the exact definition.
pub fn normalize_into(s: &str, out: &mut Vec<u8>) {
    if !normalize_ascii(s.as_bytes(), out) {
        out.clear();
        normalize_unicode(s, out);
    }
}

// ASCII byte -> normalised byte: upper case to lower, every whitespace byte to a space.
const ASCII_FOLD: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = match ASCII_CLASS[b] {
            1 => b as u8 | 0x20,
            2 => b' ',
            _ => b as u8,
        };
        b += 1;
    }
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// ASCII path. Eight bytes at a time (SWAR on a u64) when the eight hold no control byte and
/// no space that follows a space: then they are only lower-cased and copied. Otherwise byte by
/// byte, branch-free: write the folded byte and advance the cursor unless it is a space after
/// a space (or at the start). One trailing space is dropped at the end. Returns `false`
/// (leaving `out` unspecified) if `s` turns out not to be ASCII.
#[inline]
fn normalize_ascii(s: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(s.len());
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    let mut j = 0usize;
    let mut prev_space = true;
    let mut high = 0u64;
    let scalar = |b: u8, j: &mut usize, prev_space: &mut bool| {
        let f = ASCII_FOLD[(b & 0x7f) as usize];
        let space = f == b' ';
        // SAFETY: the cursor never passes the input position, and capacity >= s.len().
        unsafe { dst.add(*j).write(f) };
        *j += (!(space & *prev_space)) as usize;
        *prev_space = space;
    };
    let chunks = s.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        let x = u64::from_le_bytes(c.try_into().unwrap());
        high |= x;
        // Per-byte flags in bit 7 of each byte, exact for ASCII bytes (no carries between
        // bytes since every byte sum stays below 0x100); non-ASCII input is redone anyway.
        let upper = (x.wrapping_add(LO * (0x80 - b'A' as u64))
            & !x.wrapping_add(LO * (0x80 - b'[' as u64)))
            & HI;
        let control = !x.wrapping_add(LO * (0x80 - 0x20)) & HI;
        let y = x ^ (LO * 0x20);
        let space = !(y.wrapping_add(LO * 0x7f) | y) & HI;
        let double = (space & (space >> 8)) | ((prev_space as u64) * (space & 0x80));
        if (control | double | (x & HI)) == 0 {
            let lower = x | (upper >> 2);
            // SAFETY: j + 8 <= i + 8 <= s.len() <= capacity.
            unsafe {
                dst.add(j)
                    .cast::<[u8; 8]>()
                    .write_unaligned(lower.to_le_bytes())
            };
            j += 8;
            prev_space = (space >> 63) != 0;
        } else {
            for &b in c {
                scalar(b, &mut j, &mut prev_space);
            }
        }
    }
    for &b in tail {
        high |= b as u64;
        scalar(b, &mut j, &mut prev_space);
    }
    if high & HI != 0 {
        return false;
    }
    // SAFETY: the first j bytes were written above.
    unsafe { out.set_len(j) };
    if out.last() == Some(&b' ') {
        out.pop();
    }
    true
}

fn normalize_unicode(s: &str, out: &mut Vec<u8>) {
    let mut pending_space = false;
    let mut buf = [0u8; 4];
    for c in s.nfkc().default_case_fold() {
        let c = straighten_quote(c);
        if is_space(c) {
            pending_space = true;
            continue;
        }
        if pending_space {
            if !out.is_empty() {
                out.push(b' ');
            }
            pending_space = false;
        }
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}

/// Convenience: the normalised form as a `String`.
pub fn normalize(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    normalize_into(s, &mut out);
    // Normalisation only ever writes whole UTF-8 characters.
    String::from_utf8(out).expect("normalised text is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_inside_a_row_names_the_row() {
        let data = b"okfine\xe9x\xc3\xa9";
        let offsets = [0i64, 2, 6, 8, 10];
        let col = StrColumn::new(data, Offsets::I64(&offsets), None).unwrap();
        let err = col.par_map(1, |t| t.is_some()).unwrap_err();
        assert_eq!(err.to_string(), "string column: row 2 is not valid UTF-8");
        let fixed = b"okfine\xc3\xa9x\xc3\xa9";
        let offsets = [0i64, 2, 6, 8, 9, 11];
        let col = StrColumn::new(fixed, Offsets::I64(&offsets), None).unwrap();
        assert_eq!(
            col.par_map(1, |t| t.map(str::len)).unwrap(),
            vec![Some(2), Some(4), Some(2), Some(1), Some(2)]
        );
    }

    #[test]
    fn rows_checked_as_they_are_read() {
        // Rows 2 and 4 are not UTF-8; row 2 is null in the second column.
        let data = b"okfine\xe9xyz\xff";
        let offsets = [0i64, 2, 6, 7, 10, 11];
        let per_row = StrColumn::new(data, Offsets::I64(&offsets), None).unwrap();
        assert_eq!(per_row.try_get(1).unwrap(), Some("fine"));
        assert!(per_row.try_get(2).is_err());
        for min_len in [1, 2, 100] {
            let err = per_row.par_map(min_len, |t| t.map(str::len)).unwrap_err();
            assert_eq!(err.to_string(), "string column: row 2 is not valid UTF-8");
        }
        let valid = [true, true, false, true, true];
        let nulls = StrColumn::new(data, Offsets::I64(&offsets), Some(&valid)).unwrap();
        let err = nulls.par_map(1, |t| t.map(str::len)).unwrap_err();
        assert_eq!(err.to_string(), "string column: row 4 is not valid UTF-8");
        let ok = StrColumn::new(data, Offsets::I64(&offsets[..3]), None).unwrap();
        assert_eq!(
            ok.par_map(1, |t| t.map(str::len)).unwrap(),
            vec![Some(2), Some(4)]
        );
    }

    #[test]
    fn ascii_and_unicode_paths_agree_on_ascii() {
        for s in [
            "  Hello\tWORLD \n",
            "",
            "   ",
            "a\x0bb\x1cc",
            "Don't STOP",
            "How Do I Kill A Python Process?  Now  ",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ[@`{ abcdefgh  ijklmnop\x01q\x7f",
            "12345678 12345678        x",
        ] {
            let mut fast = Vec::new();
            assert!(normalize_ascii(s.as_bytes(), &mut fast));
            let mut slow = Vec::new();
            normalize_unicode(s, &mut slow);
            assert_eq!(fast, slow, "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn swar_ascii_path_equals_char_path(s in "[ -~\t\n\x0b\x0c\r\x1c-\x1f\x00-\x08]{0,80}") {
            let mut fast = Vec::new();
            proptest::prop_assert!(normalize_ascii(s.as_bytes(), &mut fast));
            let mut slow = Vec::new();
            normalize_unicode(&s, &mut slow);
            proptest::prop_assert_eq!(fast, slow);
        }

        #[test]
        fn non_ascii_is_detected(s in "[a-z ]{0,20}[é€😀][a-zA-Z ]{0,20}") {
            let mut out = Vec::new();
            proptest::prop_assert!(!normalize_ascii(s.as_bytes(), &mut out));
        }
    }

    #[test]
    fn folds_width_case_quotes_and_space() {
        assert_eq!(normalize("ＨＥＬＬＯ\u{3000}Straße"), "hello strasse");
        assert_eq!(
            normalize("It\u{2019}s \u{201C}fine\u{201D}"),
            "it's \"fine\""
        );
        assert_eq!(normalize("\u{FB01}ne\u{00A0}\u{00A0}day"), "fine day");
        assert_eq!(normalize("e\u{0301}"), "\u{00E9}");
    }

    #[test]
    fn column_rejects_bad_buffers() {
        let data = b"abc";
        assert!(StrColumn::new(data, Offsets::I64(&[0, 4]), None).is_err());
        assert!(StrColumn::new(data, Offsets::I64(&[2, 1]), None).is_err());
        assert!(StrColumn::new(data, Offsets::I64(&[]), None).is_err());
        assert!(StrColumn::new(data, Offsets::I64(&[0, 3]), Some(&[true, true])).is_err());
        // A row that is not UTF-8 is an error when it is read, not before.
        let bad = [b'a', 0xC3];
        let col = StrColumn::new(&bad, Offsets::I32(&[0, 2]), None).unwrap();
        assert!(col.try_get(0).is_err());
        let split = "é".as_bytes();
        assert!(StrColumn::new(split, Offsets::I32(&[0, 1, 2]), None).is_err());
        let c = StrColumn::new(data, Offsets::I32(&[0, 1, 3]), Some(&[true, false])).unwrap();
        assert_eq!(
            (c.try_get(0).unwrap(), c.try_get(1).unwrap()),
            (Some("a"), None)
        );
    }
}

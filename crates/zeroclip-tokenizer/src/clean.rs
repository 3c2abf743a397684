//! Text cleaning before the split, as the reference's `basic_clean`, `whitespace_clean` and `.lower()`.
//!
//! `basic_clean` is `ftfy.fix_text` (ftfy 6.3 defaults), then `html.unescape` twice, then
//! `strip()`. This module reproduces every `fix_text` step except mojibake repair
//! (`fix_encoding` and its sub-steps: re-decoding text that was decoded in the wrong encoding).
//! Texts on which that step acts are flagged by the fixture script and are the only ones allowed
//! to differ; the crate's README.md lists this and the other known differences.

use crate::html;
use crate::tables::{Class, Tables};
use std::borrow::Cow;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// ftfy's `max_decode_length`: a line longer than this many characters is fixed in pieces.
const MAX_SEGMENT_CHARS: usize = 1_000_000;

/// The whole cleaning pipeline: `whitespace_clean(basic_clean(text)).lower()`.
pub(crate) fn clean(text: &str, t: &Tables) -> String {
    let fixed = fix_text(text, t);
    let once = html::unescape(&fixed, t);
    let twice = html::unescape(&once, t);
    let stripped = twice.trim_matches(|c| t.is_py_space(c));
    if stripped.is_ascii() {
        return ascii_whitespace_clean_lower(stripped);
    }
    lower(&whitespace_clean(stripped, t), t)
}

/// `whitespace_clean` then `.lower()` for ASCII text, in one pass (the common case for labels).
fn ascii_whitespace_clean_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for b in s.bytes() {
        if matches!(b, b'\t'..=b'\r' | b' ') {
            in_space = true;
        } else {
            if in_space && !out.is_empty() {
                out.push(' ');
            }
            in_space = false;
            out.push(b.to_ascii_lowercase() as char);
        }
    }
    out
}

/// True for text that every `fix_text` step leaves unchanged, checked cheaply: printable ASCII
/// without `&` or escape characters is the shape of almost every label.
fn is_plain(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'&')
}

/// `ftfy.fix_text` without mojibake repair, segment by segment as ftfy splits the text.
pub(crate) fn fix_text<'a>(text: &'a str, t: &Tables) -> Cow<'a, str> {
    if is_plain(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    // "auto": entities are decoded until a segment contains `<`, then never again in this text.
    let mut unescape = true;
    for line in text.split_inclusive('\n') {
        for segment in chunks(line, MAX_SEGMENT_CHARS) {
            if unescape && segment.contains('<') {
                unescape = false;
            }
            out.push_str(&fix_segment(segment, unescape, t));
        }
    }
    Cow::Owned(out)
}

fn chunks(s: &str, n: usize) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.char_indices().nth(n).map_or(rest.len(), |(i, _)| i);
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

/// `fix_and_explain` on one segment: the fixers in ftfy's order, repeated until nothing changes.
fn fix_segment(segment: &str, unescape: bool, t: &Tables) -> String {
    let mut text = segment.to_owned();
    loop {
        let mut next = if unescape {
            html::ftfy_unescape(&text, t)
        } else {
            text.clone()
        };
        next = map_chars(&next, |c, out| match c {
            // fix_c1_controls: C1 controls read as windows-1252 (the five bytes it leaves
            // undefined stay as they are, as ftfy's "sloppy" codec does).
            '\u{80}'..='\u{9f}' => {
                out.push(windows_1252(c));
                true
            }
            _ => false,
        });
        next = map_chars(&next, |c, out| match ligature(c) {
            Some(s) => {
                out.push_str(s);
                true
            }
            None => false,
        });
        next = map_chars(&next, |c, out| {
            match (c >= '\u{3000}').then(|| t.data().width.get(&c)).flatten() {
                Some(s) => {
                    out.push_str(s);
                    true
                }
                None => false,
            }
        });
        next = map_chars(&next, |c, out| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => {
                out.push('\'');
                true
            }
            '\u{201c}'..='\u{201f}' => {
                out.push('"');
                true
            }
            _ => false,
        });
        next = fix_line_breaks(next);
        if next.contains('\x1b') {
            next = remove_terminal_escapes(&next, t);
        }
        next = map_chars(&next, |c, _| is_removed_control(c));
        next = nfc(next, t);
        if next == text {
            return text;
        }
        text = next;
    }
}

/// Rewrites `s` char by char; `f` returns true when it handled the char (pushing its
/// replacement, possibly nothing). Allocates only when some char is handled.
fn map_chars(s: &str, mut f: impl FnMut(char, &mut String) -> bool) -> String {
    let mut out = String::new();
    let mut copied = 0;
    let mut scratch = String::new();
    for (i, c) in s.char_indices() {
        scratch.clear();
        if f(c, &mut scratch) {
            out.push_str(&s[copied..i]);
            out.push_str(&scratch);
            copied = i + c.len_utf8();
        }
    }
    if copied == 0 {
        return s.to_owned();
    }
    out.push_str(&s[copied..]);
    out
}

fn windows_1252(c: char) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    HIGH[(c as usize) - 0x80]
}

/// ftfy's `LIGATURES`: Latin ligatures and digraphs only.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

fn fix_line_breaks(s: String) -> String {
    if !s.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']) {
        return s;
    }
    s.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// Removes `\x1b\[(\d|;)*[a-zA-Z]` (with `re`'s Unicode `\d`), left to right, non-overlapping.
fn remove_terminal_escapes(s: &str, t: &Tables) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(esc) = rest.find('\x1b') {
        out.push_str(&rest[..esc]);
        let after = &rest[esc..];
        let mut matched = None;
        if let Some(params) = after.strip_prefix("\x1b[") {
            let len: usize = params
                .chars()
                .take_while(|&c| c == ';' || t.is_decimal(c))
                .map(char::len_utf8)
                .sum();
            if params[len..].starts_with(|c: char| c.is_ascii_alphabetic()) {
                matched = Some(2 + len + 1);
            }
        }
        match matched {
            Some(n) => rest = &after[n..],
            None => {
                out.push('\x1b');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// ftfy's `CONTROL_CHARS`.
fn is_removed_control(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\x0b' | '\x0e'..='\x1f' | '\x7f' | '\u{206a}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
}

/// NFC as Python 3.11's `unicodedata` (Unicode 14). Characters unassigned in Unicode 14 are
/// starters that compose with nothing there, so they split the text into pieces that normalize
/// independently; normalizing only the pieces keeps newer Unicode data from leaking in.
fn nfc(s: String, t: &Tables) -> String {
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut piece = 0;
    for (i, c) in s.char_indices() {
        if !c.is_ascii() && !t.is_assigned(c) {
            out.extend(s[piece..i].nfc());
            out.push(c);
            piece = i + c.len_utf8();
        }
    }
    out.extend(s[piece..].nfc());
    out
}

/// `re.sub(r'\s+', ' ', text).strip()` with the `regex` module's `\s` (Unicode White_Space).
fn whitespace_clean(s: &str, t: &Tables) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if t.class(c) == Class::Space {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out.trim_matches(|c| t.is_py_space(c)).to_owned()
}

/// Python 3.11's `str.lower()`: its own per-character table, and the final-sigma rule for `Σ`.
fn lower(s: &str, t: &Tables) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    // Rust's `str::to_lowercase` applies the same final-sigma context rule; walking its output in
    // step with the input reads off its choice for each `Σ`.
    let std_lower = if s.contains('Σ') {
        Some(s.to_lowercase())
    } else {
        None
    };
    let mut std_chars = std_lower.as_deref().unwrap_or("").chars();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if std_lower.is_some() {
            if c == 'Σ' {
                out.push(std_chars.next().unwrap_or('σ'));
                continue;
            }
            for _ in c.to_lowercase() {
                std_chars.next();
            }
        }
        match t.lower(c) {
            Some(l) => out.push_str(l),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        clean(s, Tables::get())
    }

    #[test]
    fn ftfy_fixes_label_text() {
        assert_eq!(c("ﬁne ﬂower"), "fine flower");
        assert_eq!(c("\u{201c}It\u{2019}s\u{201d}"), "\"it's\"");
        assert_eq!(c("ＬＯＵＤ　ＮＯＩＳＥＳ"), "loud noises");
        assert_eq!(c("\x1b[36;44mblue\x1b[0m"), "blue");
        assert_eq!(c("a\x00b\u{feff}c"), "abc");
        assert_eq!(c("e\u{301}"), "é");
        assert_eq!(c("a\u{85}b"), "a…b");
    }

    #[test]
    fn entities_whitespace_and_case() {
        assert_eq!(c("  A &amp;amp; B\t\n C  "), "a & b c");
        assert_eq!(c("<b>&amp;amp;</b>"), "<b>&</b>");
        assert_eq!(c("\u{a0}x\u{2003}y\u{3000}"), "x y");
        assert_eq!(c("ΟΔΟΣ ΣΑΣ"), "οδος σας");
        assert_eq!(c("İ"), "i\u{307}");
    }

    #[test]
    fn segments_stop_unescaping_after_a_tag() {
        assert_eq!(
            fix_text("&amp;\n<b>&amp;\n&amp;", Tables::get()),
            "&\n<b>&amp;\n&amp;"
        );
    }
}

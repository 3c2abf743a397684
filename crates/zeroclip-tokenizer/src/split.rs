//! The pre-tokenizer: `re.findall` of the reference pattern, hand-compiled.
//!
//! The pattern is
//! `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//! with IGNORECASE. At each position the first alternative that matches wins (leftmost-first);
//! where none matches (whitespace, or U+0345, which IGNORECASE leaves in no class), `findall`
//! moves on one character. IGNORECASE also lets `ſ` (U+017F) stand for `s` in the literals.

use crate::tables::{Class, Tables};

const SPECIALS: [&str; 2] = ["<|startoftext|>", "<|endoftext|>"];
const CONTRACTIONS: [&str; 7] = ["s", "t", "re", "ve", "m", "ll", "d"];

/// Calls `f` with every token of `text`, in order.
pub(crate) fn split<'a>(text: &'a str, t: &Tables, mut f: impl FnMut(&'a str)) {
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let len = token_len(rest, t);
        if len > 0 {
            f(&rest[..len]);
            i += len;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
}

/// Length in bytes of the token starting `s`, or 0 when no alternative matches there.
fn token_len(s: &str, t: &Tables) -> usize {
    if s.starts_with('<') {
        for lit in SPECIALS {
            if let Some(n) = match_literal(s, lit) {
                return n;
            }
        }
    }
    if let Some(after) = s.strip_prefix('\'') {
        for lit in CONTRACTIONS {
            if let Some(n) = match_literal(after, lit) {
                return 1 + n;
            }
        }
    }
    let Some(first) = s.chars().next() else {
        return 0;
    };
    match t.class(first) {
        Class::Letter | Class::Other => {
            let class = t.class(first);
            s.char_indices()
                .find(|&(_, c)| t.class(c) != class)
                .map_or(s.len(), |(i, _)| i)
        }
        Class::Number => first.len_utf8(),
        Class::Space | Class::Unmatched => 0,
    }
}

/// Case-insensitive prefix match of an ASCII literal, as the `regex` module's IGNORECASE does it.
fn match_literal(s: &str, lit: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    for want in lit.bytes() {
        let (_, c) = chars.next()?;
        let ok = if c.is_ascii() {
            c.to_ascii_lowercase() as u8 == want
        } else {
            (want == b's' && c == 'ſ') || (want == b'k' && c == '\u{212a}')
        };
        if !ok {
            return None;
        }
    }
    Some(chars.next().map_or(s.len(), |(i, _)| i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        split(s, Tables::get(), |tok| v.push(tok));
        v
    }

    #[test]
    fn alternatives_in_reference_order() {
        assert_eq!(tokens("it's a dog"), ["it", "'s", "a", "dog"]);
        assert_eq!(tokens("x<|endoftext|>y"), ["x", "<|endoftext|>", "y"]);
        assert_eq!(tokens("!!<|endoftext|>"), ["!!<|", "endoftext", "|>"]);
        assert_eq!(tokens("123ab"), ["1", "2", "3", "ab"]);
        assert_eq!(tokens("'ll've'x"), ["'ll", "'ve", "'", "x"]);
        assert_eq!(tokens("it'ſ"), ["it", "'ſ"]);
        assert_eq!(tokens("a\u{345}b"), ["a", "b"]);
        assert_eq!(tokens("hi... ?!"), ["hi", "...", "?!"]);
    }
}

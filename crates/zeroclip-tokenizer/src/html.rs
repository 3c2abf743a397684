//! HTML character references, decoded as Python's `html.unescape` and ftfy's `unescape_html`.
//!
//! The reference runs both: ftfy's cautious version inside `fix_text` (only `&name;` forms with a
//! semicolon, plus all-caps Latin names) and then the standard library's permissive one twice
//! (names without semicolons, longest-prefix matching, numeric references with their HTML5
//! replacement rules).

use crate::tables::Tables;
use std::borrow::Cow;

/// `html.unescape`: `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` replaced.
pub(crate) fn unescape<'a>(text: &'a str, t: &Tables) -> Cow<'a, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match reference_at(after, t) {
            Some((consumed, replacement)) => {
                out.push_str(&replacement);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Matches a character reference right after an `&`: bytes consumed and the replacement text.
fn reference_at(s: &str, t: &Tables) -> Option<(usize, String)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (radix, start) = if matches!(b.get(1), Some(b'x' | b'X')) {
            (16, 2)
        } else {
            (10, 1)
        };
        let digits = b[start..]
            .iter()
            .take_while(|d| {
                if radix == 16 {
                    d.is_ascii_hexdigit()
                } else {
                    d.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let end = start + digits;
        let consumed = end + usize::from(b.get(end) == Some(&b';'));
        return Some((consumed, numeric(&s[start..end], radix, t)));
    }
    // A name: 1 to 32 characters outside `\t\n\f <&#;`, then an optional `;`.
    let mut end = 0;
    let mut count = 0;
    for (i, c) in s.char_indices() {
        if count == 32 || matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end = i + c.len_utf8();
        count += 1;
    }
    if count == 0 {
        return None;
    }
    let consumed = end + usize::from(s[end..].starts_with(';'));
    let name = &s[..consumed];
    if let Some(v) = t.data().html5.get(name) {
        return Some((consumed, v.to_string()));
    }
    // The longest known prefix of at least two characters wins; the rest stays as text.
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).collect();
    for x in (2..bounds.len()).rev() {
        if let Some(v) = t.data().html5.get(&name[..bounds[x]]) {
            return Some((consumed, format!("{v}{}", &name[bounds[x]..])));
        }
    }
    Some((consumed, format!("&{name}")))
}

/// The replacement of a numeric reference, as `html._replace_charref`.
fn numeric(digits: &str, radix: u32, t: &Tables) -> String {
    // Saturate: every number past U+10FFFF gets the same answer, so the exact value is moot.
    let num = digits.bytes().fold(0u64, |acc, d| {
        let v = (d as char).to_digit(radix).unwrap_or(0) as u64;
        (acc * radix as u64 + v).min(0x7FFF_FFFF)
    }) as u32;
    if let Some(r) = t.data().invalid_charrefs.get(&num) {
        return r.to_string();
    }
    if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
        return "\u{FFFD}".to_owned();
    }
    if t.data().invalid_codepoints.contains(&num) {
        return String::new();
    }
    char::from_u32(num).map(String::from).unwrap_or_default()
}

/// ftfy's `unescape_html`: `&#?[0-9A-Za-z]{1,24};` replaced when it is a known entity with a
/// semicolon, an all-caps Latin entity, or a numeric reference that decodes to no `;`.
pub(crate) fn ftfy_unescape(text: &str, t: &Tables) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let b = after.as_bytes();
        let start = if b.get(1) == Some(&b'#') { 2 } else { 1 };
        let run = b[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        if (1..=24).contains(&run) && b.get(start + run) == Some(&b';') {
            let entity = &after[..start + run + 1];
            out.push_str(&ftfy_fixup(entity, t));
            rest = &after[entity.len()..];
        } else {
            out.push('&');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

fn ftfy_fixup(entity: &str, t: &Tables) -> String {
    let name = &entity[1..];
    if name.ends_with(';') {
        if let Some(v) = t
            .data()
            .html5
            .get(name)
            .or_else(|| t.data().ftfy_upper.get(name))
        {
            return v.to_string();
        }
    }
    if entity.starts_with("&#") {
        let unescaped = unescape(entity, t);
        if unescaped.contains(';') {
            return entity.to_owned();
        }
        return unescaped.into_owned();
    }
    entity.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> String {
        unescape(s, Tables::get()).into_owned()
    }

    fn f(s: &str) -> String {
        ftfy_unescape(s, Tables::get())
    }

    #[test]
    fn stdlib_unescape_forms() {
        assert_eq!(u("a &amp; b"), "a & b");
        assert_eq!(u("&amp"), "&");
        assert_eq!(u("&notit;"), "¬it;");
        assert_eq!(u("&#65;&#x42;&#X43"), "ABC");
        assert_eq!(u("&#0;"), "\u{FFFD}");
        assert_eq!(u("&#128;"), "€");
        assert_eq!(u("&#1;"), "");
        assert_eq!(u("&#x110000;"), "\u{FFFD}");
        assert_eq!(u("&#;&#x;& x"), "&#;&#x;& x");
        assert_eq!(u("&unknown;"), "&unknown;");
    }

    #[test]
    fn ftfy_unescape_is_stricter() {
        assert_eq!(f("&amp"), "&amp");
        assert_eq!(f("&notit;"), "&notit;");
        assert_eq!(f("P&EACUTE;REZ"), "PÉREZ");
        assert_eq!(f("&#59;"), "&#59;");
        assert_eq!(f("&#x41;"), "A");
        assert_eq!(f("&amp;amp;"), "&amp;");
    }
}

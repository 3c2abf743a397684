//! The reference's character data, parsed once from `data/unicode_tables.txt`.
//!
//! The reference consults three Unicode databases of different ages: Python 3.11's `unicodedata`
//! and `str.lower` (Unicode 14), and the `regex` module's newer classes for the split pattern.
//! `scripts/make_tokenizer_fixtures.py` dumps what the reference itself answers, so using these
//! tables (rather than Rust's own, newer Unicode data) gives the reference's answers for every
//! code point, including ones assigned after Unicode 14.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const TABLES: &str = include_str!("../data/unicode_tables.txt");

/// Which alternative of the split pattern a character belongs to (under IGNORECASE).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    /// `\s`: never part of a token.
    Space,
    /// `[\p{L}]`: letter runs.
    Letter,
    /// `[\p{N}]`: one character per token.
    Number,
    /// `[^\s\p{L}\p{N}]`: punctuation and symbol runs.
    Other,
    /// Matches no class at all (U+0345 under IGNORECASE): silently skipped, as `findall` does.
    Unmatched,
}

/// Split classes of ASCII, which labels are made of: known without parsing anything.
const ASCII_CLASS: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = match b as u8 {
            b'\t'..=b'\r' | b' ' => Class::Space,
            b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
            b'0'..=b'9' => Class::Number,
            _ => Class::Other,
        };
        b += 1;
    }
    t
};

/// The lookup tables of the cleaning and splitting steps. ASCII answers are compiled in; the
/// parsed data is only built the first time a non-ASCII character (or an entity) needs it.
pub(crate) struct Tables {
    data: OnceLock<Data>,
}

/// The parsed contents of `data/unicode_tables.txt`.
pub(crate) struct Data {
    class_starts: Vec<u32>,
    class_values: Vec<Class>,
    lower: HashMap<char, Box<str>>,
    isspace: Vec<(u32, u32)>,
    decimal: Vec<(u32, u32)>,
    assigned: Vec<(u32, u32)>,
    pub(crate) width: HashMap<char, Box<str>>,
    pub(crate) html5: HashMap<Box<str>, Box<str>>,
    pub(crate) ftfy_upper: HashMap<Box<str>, Box<str>>,
    pub(crate) invalid_charrefs: HashMap<u32, Box<str>>,
    pub(crate) invalid_codepoints: HashSet<u32>,
}

fn hex(s: &str) -> u32 {
    u32::from_str_radix(s, 16).expect("tables: hex number")
}

fn hex_text<'a>(fields: impl Iterator<Item = &'a str>) -> Box<str> {
    fields
        .map(|f| char::from_u32(hex(f)).expect("tables: code point"))
        .collect::<String>()
        .into_boxed_str()
}

fn in_ranges(ranges: &[(u32, u32)], cp: u32) -> bool {
    let i = ranges.partition_point(|&(_, end)| end < cp);
    i < ranges.len() && ranges[i].0 <= cp
}

impl Tables {
    /// The tables, parsed on first use; the data is compiled in, so parsing cannot fail at run time
    /// unless the generated file itself is malformed (a build defect the tests catch).
    pub(crate) fn get() -> &'static Tables {
        static TABLES_CELL: Tables = Tables {
            data: OnceLock::new(),
        };
        &TABLES_CELL
    }

    /// The parsed tables, built on first use.
    pub(crate) fn data(&self) -> &Data {
        self.data.get_or_init(|| Data::parse(TABLES))
    }

    /// The split-pattern class of `c`.
    #[inline]
    pub(crate) fn class(&self, c: char) -> Class {
        if c.is_ascii() {
            ASCII_CLASS[c as usize]
        } else {
            self.data().class_of_slow(c as u32)
        }
    }

    /// Python 3.11's `str.lower()` of a single character (without the final-sigma context).
    pub(crate) fn lower(&self, c: char) -> Option<&str> {
        self.data().lower.get(&c).map(|s| &**s)
    }

    /// Python's `str.isspace()`, the set `str.strip()` removes.
    #[inline]
    pub(crate) fn is_py_space(&self, c: char) -> bool {
        if c.is_ascii() {
            matches!(c, '\t'..='\r' | '\x1c'..='\x1f' | ' ')
        } else {
            in_ranges(&self.data().isspace, c as u32)
        }
    }

    /// Python `re`'s `\d` (Unicode decimal digits, Unicode 14).
    pub(crate) fn is_decimal(&self, c: char) -> bool {
        in_ranges(&self.data().decimal, c as u32)
    }

    /// Whether `c` is assigned in Python 3.11's `unicodedata` (Unicode 14).
    pub(crate) fn is_assigned(&self, c: char) -> bool {
        in_ranges(&self.data().assigned, c as u32)
    }
}

impl Data {
    fn parse(text: &str) -> Data {
        let mut t = Data {
            class_starts: Vec::new(),
            class_values: Vec::new(),
            lower: HashMap::new(),
            isspace: Vec::new(),
            decimal: Vec::new(),
            assigned: Vec::new(),
            width: HashMap::new(),
            html5: HashMap::new(),
            ftfy_upper: HashMap::new(),
            invalid_charrefs: HashMap::new(),
            invalid_codepoints: HashSet::new(),
        };
        let mut section = "";
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                section = rest.split(']').next().unwrap_or("");
                continue;
            }
            let mut fields = line.split(' ');
            let first = fields.next().unwrap_or("");
            match section {
                "split_class" => {
                    let class = match fields.next() {
                        Some("S") => Class::Space,
                        Some("L") => Class::Letter,
                        Some("N") => Class::Number,
                        Some("X") => Class::Unmatched,
                        _ => Class::Other,
                    };
                    t.class_starts.push(hex(first));
                    t.class_values.push(class);
                }
                "lower" => {
                    let c = char::from_u32(hex(first)).expect("tables: code point");
                    t.lower.insert(c, hex_text(fields));
                }
                "isspace" | "decimal" | "assigned" => {
                    let range = (hex(first), hex(fields.next().unwrap_or(first)));
                    match section {
                        "isspace" => t.isspace.push(range),
                        "decimal" => t.decimal.push(range),
                        _ => t.assigned.push(range),
                    }
                }
                "width" => {
                    let c = char::from_u32(hex(first)).expect("tables: code point");
                    t.width.insert(c, hex_text(fields));
                }
                "html5" => {
                    t.html5.insert(first.into(), hex_text(fields));
                }
                "ftfy_upper" => {
                    t.ftfy_upper.insert(first.into(), hex_text(fields));
                }
                "invalid_charrefs" => {
                    t.invalid_charrefs.insert(hex(first), hex_text(fields));
                }
                "invalid_codepoints" => {
                    t.invalid_codepoints.insert(hex(first));
                }
                _ => {}
            }
        }
        t
    }

    fn class_of_slow(&self, cp: u32) -> Class {
        let i = self.class_starts.partition_point(|&s| s <= cp);
        if i == 0 {
            Class::Other
        } else {
            self.class_values[i - 1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_hand_picked_characters() {
        let t = Tables::get();
        assert_eq!(t.class('a'), Class::Letter);
        assert_eq!(t.class('7'), Class::Number);
        assert_eq!(t.class('½'), Class::Number);
        assert_eq!(t.class('!'), Class::Other);
        assert_eq!(t.class('\u{3000}'), Class::Space);
        assert_eq!(t.class('\u{85}'), Class::Space);
        assert_eq!(t.class('\u{1c}'), Class::Other);
        assert_eq!(t.class('\u{345}'), Class::Unmatched);
        assert_eq!(t.class('日'), Class::Letter);
    }

    #[test]
    fn compiled_ascii_classes_equal_the_reference_table() {
        let data = Tables::get().data();
        for b in 0..128u32 {
            assert_eq!(
                ASCII_CLASS[b as usize],
                data.class_of_slow(b),
                "byte {b:#x}"
            );
        }
    }

    #[test]
    fn python_lower_and_space_sets() {
        let t = Tables::get();
        assert_eq!(t.lower('A'), Some("a"));
        assert_eq!(t.lower('İ'), Some("i\u{307}"));
        assert_eq!(t.lower('a'), None);
        assert!(t.is_py_space('\u{1f}'));
        assert!(t.is_py_space('\u{a0}'));
        assert!(!t.is_py_space('\u{200b}'));
        assert!(t.is_decimal('٣'));
        assert!(!t.is_decimal('½'));
        assert!(t.is_assigned('a'));
        assert!(!t.is_assigned('\u{378}'));
        assert_eq!(t.data().html5.get("amp;").map(|s| &**s), Some("&"));
        assert_eq!(t.data().ftfy_upper.get("EACUTE;").map(|s| &**s), Some("É"));
    }
}

//! The byte-level BPE model: vocabulary, merge ranks, `bpe()` and `decode`, as `SimpleTokenizer`.
//!
//! Ids follow the reference's vocabulary order: the 256 byte symbols in `bytes_to_unicode`
//! order, the same 256 with `</w>`, the 48,894 merges of `bpe_simple_vocab_16e6.txt.gz`, then
//! `<|startoftext|>` and `<|endoftext|>`. Symbols are handled as ids rather than strings; a merge
//! maps an id pair to the id of the joined string, so merging ids equals merging strings.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader};

const VOCAB_GZ: &[u8] = include_bytes!("../data/bpe_simple_vocab_16e6.txt.gz");
/// `merges[1:49152-256-2+1]`: the reference reads this many merge lines after the header.
const N_MERGES: usize = 49152 - 256 - 2;

/// A multiplicative hasher for the u64 pair keys: the default SipHash would dominate BPE time.
#[derive(Default)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        // The product's high half is well mixed; fold it down so the bucket bits see it too.
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Rank of a pair no merge rule covers: above every real rank.
const NO_RULE: u32 = u32::MAX;

type PairMap = HashMap<u64, (u32, u32), BuildHasherDefault<PairHasher>>;

/// The reference's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the others to
/// U+0100 onwards; returned in dictionary order, which is also the id order.
pub(crate) fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (0x21..=0x7e)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (b as u8, char::from_u32(c).expect("byte symbol")))
        .collect()
}

/// Vocabulary and merges.
pub(crate) struct Bpe {
    /// Id of the (non-`</w>`) symbol of each byte.
    byte_id: [u32; 256],
    /// `(left << 32) | right` → (rank, merged id).
    merges: PairMap,
    /// The bytes each id stands for once byte-decoded (`</w>` included, as the reference).
    pub(crate) token_bytes: Vec<Box<[u8]>>,
}

impl Bpe {
    pub(crate) fn load() -> Bpe {
        let table = bytes_to_unicode();
        let mut byte_id = [0u32; 256];
        // Byte of each symbol character (all below U+0144).
        let mut char_byte = [0u8; 0x144];
        for (i, &(b, c)) in table.iter().enumerate() {
            byte_id[b as usize] = i as u32;
            char_byte[c as usize] = b;
        }
        let to_bytes = |symbol: &str| -> Vec<u8> {
            symbol
                .chars()
                .map(|c| char_byte.get(c as usize).copied().unwrap_or(b'?'))
                .collect()
        };
        let reader = BufReader::new(flate2::read::GzDecoder::new(VOCAB_GZ));
        let merge_lines: Vec<String> = reader
            .lines()
            .skip(1)
            .take(N_MERGES)
            .collect::<Result<_, _>>()
            .expect("embedded BPE vocabulary is valid gzip and UTF-8");

        // Each vocabulary string as the bytes it decodes to. The byte/character map is a
        // bijection and `</w>` is made of characters that stand for themselves, so byte strings
        // are equal exactly when the reference's vocabulary strings are.
        let mut token_bytes: Vec<Box<[u8]>> = Vec::with_capacity(512 + N_MERGES + 2);
        token_bytes.extend(table.iter().map(|&(b, _)| Box::from([b])));
        token_bytes.extend(
            table
                .iter()
                .map(|&(b, _)| Box::from([b, b'<', b'/', b'w', b'>'])),
        );
        let mut merge_pairs = Vec::with_capacity(N_MERGES);
        for line in &merge_lines {
            let (a, b) = line.split_once(' ').expect("merge line has two symbols");
            let (a, b) = (to_bytes(a), to_bytes(b));
            token_bytes.push([a.as_slice(), b.as_slice()].concat().into());
            merge_pairs.push((a, b));
        }
        token_bytes.push(Box::from(&b"<|startoftext|>"[..]));
        token_bytes.push(Box::from(&b"<|endoftext|>"[..]));

        // `dict(zip(vocab, range(...)))`: a repeated string keeps its last id.
        let mut encoder: HashMap<&[u8], u32, BuildHasherDefault<PairHasher>> =
            HashMap::with_capacity_and_hasher(token_bytes.len(), Default::default());
        for (i, s) in token_bytes.iter().enumerate() {
            encoder.insert(s, i as u32);
        }
        let mut merges = PairMap::with_capacity_and_hasher(N_MERGES, Default::default());
        for (rank, (a, b)) in merge_pairs.iter().enumerate() {
            let (Some(&ia), Some(&ib)) = (encoder.get(a.as_slice()), encoder.get(b.as_slice()))
            else {
                continue; // a symbol no word can contain, so the rule can never fire
            };
            // The merged symbol's bytes, pushed above at 512 + rank (256 bytes, 256 `</w>` forms).
            let merged = encoder[&*token_bytes[512 + rank]];
            // `dict(zip(merges, ...))`: a repeated pair keeps its last rank.
            merges.insert(key(ia, ib), (rank as u32, merged));
        }
        Bpe {
            byte_id,
            merges,
            token_bytes,
        }
    }

    /// Appends the ids of one pre-token (any non-empty byte string) to `out`: `bpe(token)`.
    ///
    /// Each round merges every occurrence of the lowest-ranked adjacent pair, left to right, as
    /// the reference does; the ranks of pairs left of the first merge are kept between rounds.
    pub(crate) fn encode_word(&self, token: &[u8], out: &mut Vec<u32>) {
        let mut word: Vec<u32> = token.iter().map(|&b| self.byte_id[b as usize]).collect();
        let Some(last) = word.last_mut() else {
            return;
        };
        *last += 256; // the `</w>` form of the final symbol
        let mut pairs: Vec<(u32, u32)> = word.windows(2).map(|w| self.rule(w[0], w[1])).collect();
        while word.len() > 1 {
            // `min_by_key` keeps the first minimum: the leftmost occurrence of the best pair.
            let Some((start, &(rank, merged))) = pairs.iter().enumerate().min_by_key(|(_, p)| p.0)
            else {
                break;
            };
            if rank == NO_RULE {
                break;
            }
            let (first, second) = (word[start], word[start + 1]);
            let (mut i, mut j) = (start, start);
            while i < word.len() {
                if word[i] == first && i + 1 < word.len() && word[i + 1] == second {
                    word[j] = merged;
                    i += 2;
                } else {
                    word[j] = word[i];
                    i += 1;
                }
                j += 1;
            }
            word.truncate(j);
            pairs.truncate(start.saturating_sub(1));
            for k in pairs.len()..word.len() - 1 {
                pairs.push(self.rule(word[k], word[k + 1]));
            }
        }
        out.extend_from_slice(&word);
    }

    /// (rank, merged id) of the rule for the pair `a b`, rank `NO_RULE` when there is none.
    #[inline]
    fn rule(&self, a: u32, b: u32) -> (u32, u32) {
        self.merges.get(&key(a, b)).copied().unwrap_or((NO_RULE, 0))
    }

    /// The reference `decode`: concatenated bytes, UTF-8 with replacement, `</w>` → space.
    pub(crate) fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            match self.token_bytes.get(id as usize) {
                Some(b) => bytes.extend_from_slice(b),
                // The reference raises KeyError; an unknown id shows as U+FFFD instead.
                None => bytes.extend_from_slice("\u{FFFD}".as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }
}

#[inline]
fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_follow_the_reference_order() {
        let t = bytes_to_unicode();
        assert_eq!(t.len(), 256);
        assert_eq!(t[0], (b'!', '!'));
        assert_eq!(t[93], (b'~', '~'));
        assert_eq!(t[188], (0, '\u{100}'));
        assert_eq!(t[255], (0xad, '\u{143}'));
    }

    #[test]
    fn single_byte_word_is_its_end_of_word_symbol() {
        let bpe = Bpe::load();
        let mut out = Vec::new();
        bpe.encode_word(b"a", &mut out);
        assert_eq!(out, [320]); // "a</w>" = 64 + 256
        assert_eq!(bpe.decode(&out), "a ");
    }
}

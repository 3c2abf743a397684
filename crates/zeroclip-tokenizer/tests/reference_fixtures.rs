//! Golden comparison with OpenAI's `clip` tokenizer, over the fixtures that
//! `scripts/make_tokenizer_fixtures.py` made by calling the reference.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use zeroclip_tokenizer::{Error, Tokenizer};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/tokenizer/"
);

fn records(name: &str) -> Vec<Value> {
    let path = format!("{DIR}{name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| serde_json::from_str(&line.expect("fixture line")).expect("fixture JSON"))
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn encode_and_decode_match_the_reference() {
    let t = Tokenizer::global();
    let recs = records("encode.jsonl.gz");
    assert!(recs.len() >= 5000, "only {} fixture strings", recs.len());
    let (mut failures, mut flagged, mut flagged_differing) = (Vec::new(), 0, 0);
    for rec in &recs {
        let text = rec["text"].as_str().expect("text");
        let want = ids(&rec["ids"]);
        let want_decode = rec["decode"].as_str().expect("decode");
        // Decoding the reference's own ids tests decode independently of encode.
        assert_eq!(
            t.decode(&want),
            want_decode,
            "decode of reference ids of {text:?}"
        );
        let got = t.encode(text);
        let same = got == want && t.decode(&got) == want_decode;
        if rec.get("mojibake").is_some() {
            flagged += 1;
            flagged_differing += usize::from(!same);
        } else if !same {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
    }
    eprintln!(
        "{} strings; {flagged} flagged for mojibake repair, {flagged_differing} of them differ",
        recs.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} texts differ from the reference (first 20):\n{}",
        failures.len(),
        recs.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn tokenize_rows_truncation_and_overflow_match_the_reference() {
    let t = Tokenizer::global();
    for case in records("tokenize.jsonl.gz") {
        let text = case["text"].as_str().expect("text");
        let ctx = case["context_length"].as_u64().expect("context_length") as usize;
        let truncate = case["truncate"].as_bool().expect("truncate");
        let got = t.tokenize(&[text], ctx, truncate);
        match (&case.get("row"), got) {
            (Some(row), Ok(batch)) => {
                let want = ids(row);
                assert_eq!(batch.row(0), want, "{text:?} ctx {ctx} truncate {truncate}");
                let first_eot = want.iter().position(|&id| id == zeroclip_tokenizer::EOT);
                assert_eq!(Some(batch.eot_positions[0]), first_eot);
            }
            (
                None,
                Err(Error::TooLong {
                    tokens,
                    context_length,
                    ..
                }),
            ) => {
                assert!(
                    !truncate && tokens > ctx && context_length == ctx,
                    "{text:?}"
                );
            }
            (want, got) => panic!(
                "{text:?} ctx {ctx} truncate {truncate}: want {want:?}, got {:?}",
                got.map(|b| b.ids)
            ),
        }
    }
}

#[test]
fn decode_of_arbitrary_id_sequences_matches_the_reference() {
    let t = Tokenizer::global();
    for case in records("decode.jsonl.gz") {
        let want = case["decode"].as_str().expect("decode");
        assert_eq!(t.decode(&ids(&case["ids"])), want, "ids {:?}", case["ids"]);
    }
}

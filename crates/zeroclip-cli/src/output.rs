//! Writes `zeroclip classify` results as they come, in the order of the inputs: a table like the
//! reference example's printout, one JSON array, JSON lines, or CSV. Every input gets a record,
//! with its predictions or its error.

use serde::Serialize;
use std::io::{self, Write};
use zeroclip::Prediction;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Per input: its path, then each label with its probability.
    Table,
    /// One JSON array with one object per input.
    Json,
    /// The same objects as `json`, one per line.
    Jsonl,
    /// `input,rank,label,score,error`, one row per prediction or error.
    Csv,
}

/// The result for one input.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Record<'a> {
    /// The input's predictions, best first.
    Ok {
        input: &'a str,
        predictions: &'a [Prediction],
    },
    /// Why the input failed.
    Err { input: &'a str, error: &'a str },
}

/// Streams records in one format.
pub struct Writer<W: Write> {
    format: Format,
    out: W,
    written: usize,
}

impl<W: Write> Writer<W> {
    /// Starts the output (the CSV header; JSON's opening bracket comes with the first record).
    pub fn new(format: Format, mut out: W) -> io::Result<Self> {
        if format == Format::Csv {
            writeln!(out, "input,rank,label,score,error")?;
        }
        Ok(Self {
            format,
            out,
            written: 0,
        })
    }

    /// Writes one record and flushes, so that long runs show results as they come.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        match self.format {
            Format::Json => {
                self.out
                    .write_all(if self.written == 0 { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, record)?;
            }
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, record)?;
                writeln!(self.out)?;
            }
            Format::Csv => write_csv(&mut self.out, record)?,
            Format::Table => write_table(&mut self.out, record, self.written == 0)?,
        }
        self.written += 1;
        self.out.flush()
    }

    /// Ends the output (JSON's closing bracket).
    pub fn finish(mut self) -> io::Result<()> {
        if self.format == Format::Json {
            self.out
                .write_all(if self.written == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()
    }
}

fn write_table(out: &mut impl Write, record: &Record, first: bool) -> io::Result<()> {
    if !first {
        writeln!(out)?;
    }
    match record {
        Record::Ok { input, predictions } => {
            writeln!(out, "{input}")?;
            let width = predictions
                .iter()
                .map(|p| p.label.chars().count())
                .max()
                .unwrap_or(0);
            for p in predictions.iter() {
                writeln!(out, "  {:<width$}  {:.7}", p.label, p.score)?;
            }
        }
        Record::Err { input, error } => {
            writeln!(out, "{input}")?;
            writeln!(out, "  error: {error}")?;
        }
    }
    Ok(())
}

fn write_csv(out: &mut impl Write, record: &Record) -> io::Result<()> {
    match record {
        Record::Ok { input, predictions } => {
            for (rank, p) in predictions.iter().enumerate() {
                writeln!(
                    out,
                    "{},{},{},{},",
                    csv_field(input),
                    rank + 1,
                    csv_field(&p.label),
                    p.score
                )?;
            }
        }
        Record::Err { input, error } => {
            writeln!(out, "{},,,,{}", csv_field(input), csv_field(error))?;
        }
    }
    Ok(())
}

/// RFC 4180 quoting: fields with a comma, quote or line break are quoted, quotes doubled.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format) -> String {
        let preds = vec![
            Prediction {
                label: "a diagram".into(),
                score: 0.75,
            },
            Prediction {
                label: "a dog, maybe".into(),
                score: 0.25,
            },
        ];
        let mut buf = Vec::new();
        let mut w = Writer::new(format, &mut buf).unwrap();
        w.write(&Record::Ok {
            input: "x.png",
            predictions: &preds,
        })
        .unwrap();
        w.write(&Record::Err {
            input: "bad \"1\".png",
            error: "cannot decode",
        })
        .unwrap();
        w.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn every_format_holds_both_records() {
        assert_eq!(
            render(Format::Table),
            "x.png\n  a diagram     0.7500000\n  a dog, maybe  0.2500000\n\nbad \"1\".png\n  error: cannot decode\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render(Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"input": "x.png", "predictions": [
                    {"label": "a diagram", "score": 0.75}, {"label": "a dog, maybe", "score": 0.25}]},
                {"input": "bad \"1\".png", "error": "cannot decode"}
            ])
        );
        let lines: Vec<serde_json::Value> = render(Format::Jsonl)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(serde_json::Value::Array(lines), json);
        assert_eq!(
            render(Format::Csv),
            "input,rank,label,score,error\nx.png,1,a diagram,0.75,\nx.png,2,\"a dog, maybe\",0.25,\n\"bad \"\"1\"\".png\",,,,cannot decode\n"
        );
    }

    #[test]
    fn empty_json_is_an_empty_array() {
        let mut buf = Vec::new();
        Writer::new(Format::Json, &mut buf)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(buf, b"[]\n");
    }
}

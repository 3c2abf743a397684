//! `zeroclip eval --plot`: one figure (SVG or PNG, by extension) with the confusion matrix as a
//! heat map (rows: true class, normalized by its images), recall per class, and the reliability
//! diagram (accuracy against confidence in 15 bins, before and after the adapter's temperature).
//!
//! With more than [`MAX_SHOWN`] classes the heat map shows the classes with the most errors and the
//! bar chart the lowest recalls, and their titles say so: a 1,000-class matrix is unreadable.

use super::eval_report::Report;
use anyhow::bail;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use std::path::Path;
use zeroclip::eval::calibration::reliability;
use zeroclip::eval::ECE_BINS;

/// The most classes drawn in the heat map and the bar chart.
pub const MAX_SHOWN: usize = 30;
/// Up to this many classes each heat-map cell shows its count.
const ANNOTATE_UP_TO: usize = 12;
/// The figure's size in pixels.
pub const SIZE: (u32, u32) = (1600, 900);

/// Largest font file read: TrueType fonts with wide coverage are a few MiB.
const MAX_FONT_BYTES: u64 = 64 << 20;

/// Where a font for the labels is looked for when `ZEROCLIP_FONT` is not set.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Checks the plot's file type and finds a font, before the model runs.
pub fn check_path(path: &Path) -> anyhow::Result<()> {
    match extension(path).as_deref() {
        Some("svg") | Some("png") => {}
        _ => bail!(
            "--plot {}: the file name must end in .svg or .png",
            path.display()
        ),
    }
    register_font()
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Registers a TrueType font as "sans-serif" for the labels (once per process).
fn register_font() -> anyhow::Result<()> {
    static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let explicit = std::env::var("ZEROCLIP_FONT").ok();
        let candidates: Vec<String> = match &explicit {
            Some(p) => vec![p.clone()],
            None => FONT_PATHS.iter().map(|s| s.to_string()).collect(),
        };
        for path in &candidates {
            // A FIFO or a device named by ZEROCLIP_FONT is refused at once, not waited on or
            // read without end.
            let read = zeroclip_fs::read_capped(Path::new(path), MAX_FONT_BYTES);
            if let (Err(e), Some(_)) = (&read, &explicit) {
                return Err(format!("ZEROCLIP_FONT {path}: {e}"));
            }
            if let Ok(bytes) = read {
                // plotters keeps registered fonts for the whole process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{path} is not a TrueType font"));
            }
        }
        Err(format!(
            "no font for the plot's labels (looked for {}); set ZEROCLIP_FONT to a .ttf file",
            candidates.join(", ")
        ))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Draws the figure to `path` (SVG or PNG by extension).
pub fn draw(
    path: &Path,
    report: &Report,
    logits: &[Vec<f32>],
    targets: &[usize],
    temperature: f64,
) -> anyhow::Result<()> {
    check_path(path)?;
    let fail = |e: String| anyhow::anyhow!(e);
    if extension(path).as_deref() == Some("png") {
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        panels(root, report, logits, targets, temperature).map_err(|e| fail(e.to_string()))
    } else {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        panels(root, report, logits, targets, temperature).map_err(|e| fail(e.to_string()))
    }
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn panels<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    logits: &[Vec<f32>],
    targets: &[usize],
    temperature: f64,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(SIZE.0 * 55 / 100);
    let (top, bottom) = right.split_vertically(SIZE.1 / 2);
    heat_map(&left, report)?;
    recall_bars(&top, report)?;
    reliability_diagram(&bottom, logits, targets, temperature)?;
    root.present()
}

/// The classes with the most errors (false negatives plus false positives), in class order.
fn most_confused_classes(report: &Report, k: usize) -> Vec<usize> {
    let c = &report.metrics.confusion;
    let n = c.len();
    let errors = |i: usize| -> u64 { (0..n).filter(|&j| j != i).map(|j| c[i][j] + c[j][i]).sum() };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(errors(i)));
    order.truncate(k);
    order.sort_unstable();
    order
}

fn label_font(n: usize) -> TextStyle<'static> {
    let size = if n <= 12 { 14 } else { 11 };
    ("sans-serif", size).into_font().into()
}

fn heat_map<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
) -> DrawResult<DB> {
    let n = report.classes.len();
    let shown: Vec<usize> = if n > MAX_SHOWN {
        most_confused_classes(report, MAX_SHOWN)
    } else {
        (0..n).collect()
    };
    let k = shown.len() as i32;
    let title = if n > MAX_SHOWN {
        format!("Confusion matrix: the {k} most confused of {n} classes (row-normalized)")
    } else {
        "Confusion matrix (row-normalized)".to_string()
    };
    // Rows are named "i  class" top to bottom; columns by the same i, to stay short.
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(190)
        .build_cartesian_2d(segments(k), segments(k))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(shown.len())
        .y_labels(shown.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if (0..k).contains(i) => i.to_string(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if (0..k).contains(i) => {
                let row = k - 1 - i;
                format!("{row}  {}", short(&report.classes[shown[row as usize]]))
            }
            _ => String::new(),
        })
        .x_label_style(label_font(shown.len()))
        .y_label_style(label_font(shown.len()))
        .x_desc("predicted (row number)")
        .y_desc("true")
        .draw()?;
    let c = &report.metrics.confusion;
    let mut cells = Vec::new();
    for (r, &t) in shown.iter().enumerate() {
        let support = report.metrics.per_class[t].support.max(1) as f64;
        for (col, &p) in shown.iter().enumerate() {
            let v = c[t][p] as f64 / support;
            let y = k - 1 - r as i32;
            let color = RGBColor(
                (255.0 - 247.0 * v) as u8,
                (255.0 - 207.0 * v) as u8,
                (255.0 - 148.0 * v) as u8,
            );
            cells.push(Rectangle::new(
                [
                    (SegmentValue::Exact(col as i32), SegmentValue::Exact(y)),
                    (
                        SegmentValue::Exact(col as i32 + 1),
                        SegmentValue::Exact(y + 1),
                    ),
                ],
                color.filled(),
            ));
        }
    }
    chart.draw_series(cells)?;
    if shown.len() <= ANNOTATE_UP_TO {
        // Few classes: write each cell's image count, light on dark cells.
        let centered = Pos::new(HPos::Center, VPos::Center);
        let mut texts = Vec::new();
        for (r, &t) in shown.iter().enumerate() {
            let support = report.metrics.per_class[t].support.max(1) as f64;
            for (col, &p) in shown.iter().enumerate() {
                let color: &'static RGBColor = if c[t][p] as f64 / support > 0.5 {
                    &WHITE
                } else {
                    &BLACK
                };
                let style = TextStyle::from(("sans-serif", 14).into_font())
                    .pos(centered)
                    .color(color);
                let at = (
                    SegmentValue::CenterOf(col as i32),
                    SegmentValue::CenterOf(k - 1 - r as i32),
                );
                texts.push(Text::new(c[t][p].to_string(), at, style));
            }
        }
        chart.draw_series(texts)?;
    }
    Ok(())
}

/// `k` segments, one per class drawn (plotters' segmented range includes its upper end).
fn segments(k: i32) -> SegmentedCoord<RangedCoordi32> {
    (0..(k - 1).max(0)).into_segmented()
}

/// Long class names are cut so that labels stay inside their margin.
fn short(name: &str) -> String {
    if name.chars().count() <= 22 {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(21).collect::<String>())
    }
}

fn recall_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
) -> DrawResult<DB> {
    let m = report.metrics;
    let n = report.classes.len();
    let mut shown: Vec<usize> = (0..n).collect();
    let title = if n > MAX_SHOWN {
        shown.sort_by(|&a, &b| m.per_class[a].recall.total_cmp(&m.per_class[b].recall));
        shown.truncate(MAX_SHOWN);
        format!("Recall: the {MAX_SHOWN} lowest of {n} classes")
    } else {
        "Recall per class".to_string()
    };
    let k = shown.len() as i32;
    // Horizontal bars, the first class at the top, so that names need no rotation.
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(0f64..1f64, segments(k))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(shown.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if (0..k).contains(i) => {
                short(&report.classes[shown[(k - 1 - i) as usize]])
            }
            _ => String::new(),
        })
        .y_label_style(label_font(shown.len()))
        .x_desc("recall")
        .draw()?;
    chart.draw_series(shown.iter().enumerate().map(|(i, &c)| {
        let y = k - 1 - i as i32;
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(y)),
                (m.per_class[c].recall, SegmentValue::Exact(y + 1)),
            ],
            RGBColor(49, 130, 189).filled(),
        )
    }))?;
    Ok(())
}

fn reliability_diagram<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    logits: &[Vec<f32>],
    targets: &[usize],
    temperature: f64,
) -> DrawResult<DB> {
    let mut temperatures = vec![1.0];
    if temperature != 1.0 {
        temperatures.push(temperature);
    }
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Reliability ({ECE_BINS} bins; bars: accuracy per confidence bin)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("confidence")
        .y_desc("accuracy")
        .draw()?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.5)))?;
    let colors = [RGBColor(49, 130, 189), RGBColor(230, 85, 13)];
    for (t, color) in temperatures.iter().zip(colors) {
        let bins = reliability(logits, targets, *t, ECE_BINS);
        let ece = zeroclip::eval::calibration(logits, targets, *t).ece;
        chart
            .draw_series(bins.iter().filter(|b| b.count > 0).map(|b| {
                Rectangle::new(
                    [(b.lower, 0.0), (b.upper, b.accuracy)],
                    color.stroke_width(2),
                )
            }))?
            .label(format!("T = {t:.3}, ECE {:.2} %", 100.0 * ece))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroclip::eval::{calibration, Metrics};

    /// 1,000 classes: the figure shows the 30 most confused and says so.
    #[test]
    fn a_thousand_classes_draw_the_most_confused_only() {
        let classes: Vec<String> = (0..1000).map(|i| format!("class {i}")).collect();
        let mut logits = Vec::new();
        let mut targets = Vec::new();
        for i in 0..3000usize {
            let t = i % 1000;
            // Classes 0..40 are confused with their neighbour; the rest are right.
            let p = if t < 40 && i % 3 != 0 { t + 1 } else { t };
            let mut row = vec![0f32; 1000];
            row[p] = 5.0;
            logits.push(row);
            targets.push(t);
        }
        let metrics = Metrics::compute(&logits, &targets, 1000).unwrap();
        let report = Report {
            dataset: "synthetic".into(),
            model: "none".into(),
            classes: &classes,
            templates: vec!["{}".into()],
            adapter: None,
            metrics: &metrics,
            calibrations: vec![calibration(&logits, &targets, 1.0)],
            unreadable: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        draw(&path, &report, &logits, &targets, 1.0).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("the 30 most confused of 1000 classes"));
        assert!(svg.contains("Recall: the 30 lowest of 1000 classes"));
        assert!(svg.contains("class 7") && !svg.contains("class 999"));
        assert!(svg.contains(r#"width="1600""#) && svg.contains(r#"height="900""#));
    }
}

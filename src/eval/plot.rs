//! `tellscan eval --plot DIR`: three PNG figures of the fused score, drawn with plotters.
//!
//! - `roc.png`: the ROC curve with the diagonal of a random ranking;
//! - `histogram.png`: the score distribution of each class, 20 bins of 5 points side by side,
//!   each bar the share of its class;
//! - `reliability.png`: 10 bins of score/100, the mean predicted probability against the
//!   observed share of AI images in each bin, with the diagonal of perfect calibration.
//!
//! The curves come from the pure functions of [`super::metrics`] ([`metrics::roc_points`],
//! [`metrics::histogram`], [`metrics::reliability_bins`]); this file only draws them.
//! plotters renders into an RGB buffer and the `image` crate writes it as PNG. Text is set in
//! a 20 KB ASCII cut of DejaVu Sans compiled into the binary (`assets/fonts/`, Bitstream Vera
//! licence), so no system font library is needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::metrics;

/// Width and height of `roc.png`.
pub const ROC_SIZE: (u32, u32) = (640, 640);
/// Width and height of `histogram.png`.
pub const HISTOGRAM_SIZE: (u32, u32) = (960, 540);
/// Width and height of `reliability.png`.
pub const RELIABILITY_SIZE: (u32, u32) = (640, 640);

/// Bins of the score histogram (5 points each).
pub const HISTOGRAM_BINS: usize = 20;
/// Bins of the reliability diagram.
pub const RELIABILITY_BINS: usize = 10;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-ascii.ttf");
const REAL: RGBColor = RGBColor(31, 119, 180);
const AI: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(150, 150, 150);

fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    ok.then_some(()).ok_or_else(|| anyhow!("the bundled plot font does not load"))
}

/// Draw the three figures of the fused scores (0-100; `positive` = AI or partial) into `dir`
/// (created if missing) and return their paths. A figure that needs both classes says so in
/// its title when one is missing.
pub fn write_all(dir: &Path, scores: &[f64], positive: &[bool]) -> anyhow::Result<Vec<PathBuf>> {
    register_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let figures: [(&str, (u32, u32), Figure); 3] = [
        ("roc.png", ROC_SIZE, draw_roc),
        ("histogram.png", HISTOGRAM_SIZE, draw_histogram),
        ("reliability.png", RELIABILITY_SIZE, draw_reliability),
    ];
    let mut paths = Vec::new();
    for (name, size, draw) in figures {
        let path = dir.join(name);
        let mut buffer = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buffer, size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            draw(&root, scores, positive).with_context(|| format!("cannot draw {name}"))?;
            root.present().map_err(plot_error)?;
        }
        image::RgbImage::from_raw(size.0, size.1, buffer)
            .ok_or_else(|| anyhow!("plot buffer of the wrong size"))?
            .save_with_format(&path, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type Figure = fn(&Area<'_>, &[f64], &[bool]) -> anyhow::Result<()>;

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart with the figures' common frame: a title, margins, label areas and the axes' ranges.
fn chart<'a, 'b>(
    root: &'a Area<'b>,
    title: impl AsRef<str>,
    y_label_area: u32,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> anyhow::Result<Chart<'a, 'b>> {
    ChartBuilder::on(root)
        .caption(title.as_ref(), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d(x, y)
        .map_err(plot_error)
}

/// The series legend in the figures' common style.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

fn counts(positive: &[bool]) -> (usize, usize) {
    let ai = positive.iter().filter(|&&p| p).count();
    (ai, positive.len() - ai)
}

fn draw_roc(root: &Area<'_>, scores: &[f64], positive: &[bool]) -> anyhow::Result<()> {
    let points = metrics::roc_points(scores, positive);
    let (n_ai, n_real) = counts(positive);
    let title = match &points {
        Some(p) => {
            format!("ROC, fused score: AUC {:.3} (ai {n_ai}, real {n_real})", metrics::trapezoid_area(p))
        }
        None => format!("ROC: needs both classes (ai {n_ai}, real {n_real})"),
    };
    let mut chart = chart(root, title, 52, 0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate (real scored at or above the threshold)")
        .y_desc("true-positive rate (ai)")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], GREY.stroke_width(1)))
        .map_err(plot_error)?
        .label("random ranking")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY));
    if let Some(points) = points {
        chart
            .draw_series(LineSeries::new(points, AI.stroke_width(2)))
            .map_err(plot_error)?
            .label("fused score")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], AI.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

fn draw_histogram(root: &Area<'_>, scores: &[f64], positive: &[bool]) -> anyhow::Result<()> {
    let (n_ai, n_real) = counts(positive);
    let class_shares = |ai: bool| {
        let values: Vec<f64> =
            scores.iter().zip(positive).filter(|(_, &p)| p == ai).map(|(&s, _)| s).collect();
        let total = values.len().max(1) as f64;
        metrics::histogram(&values, 0.0, 100.0, HISTOGRAM_BINS)
            .into_iter()
            .map(|c| c as f64 / total)
            .collect::<Vec<_>>()
    };
    let (real, ai) = (class_shares(false), class_shares(true));
    let top = real.iter().chain(&ai).copied().fold(0.0, f64::max).max(0.05) * 1.1;
    let mut chart =
        chart(root, format!("Fused score by class (real {n_real}, ai {n_ai})"), 56, 0f64..100f64, 0f64..top)?;
    chart
        .configure_mesh()
        .x_labels(11)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .disable_x_mesh()
        .x_desc("score (bins of 5; 60 Likely AI, 85 AI generated)")
        .y_desc("share of the class")
        .draw()
        .map_err(plot_error)?;
    let width = 100.0 / HISTOGRAM_BINS as f64;
    for (values, colour, offset, name) in [(&real, REAL, 0.5, "real"), (&ai, AI, 2.5, "ai")] {
        chart
            .draw_series(values.iter().enumerate().map(|(b, &share)| {
                let x0 = b as f64 * width + offset * width / 5.0;
                Rectangle::new([(x0, 0.0), (x0 + 2.0 * width / 5.0, share)], colour.mix(0.85).filled())
            }))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    for threshold in [super::DECISION_THRESHOLD, super::STRONG_THRESHOLD] {
        chart
            .draw_series(LineSeries::new([(threshold, 0.0), (threshold, top)], GREY.stroke_width(1)))
            .map_err(plot_error)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperMiddle)?;
    Ok(())
}

fn draw_reliability(root: &Area<'_>, scores: &[f64], positive: &[bool]) -> anyhow::Result<()> {
    let probabilities: Vec<f64> = scores.iter().map(|s| s / 100.0).collect();
    let bins = metrics::reliability_bins(&probabilities, positive, RELIABILITY_BINS);
    let title = match metrics::expected_calibration_error(&probabilities, positive, RELIABILITY_BINS) {
        Some(ece) => format!("Reliability, score/100: ECE {ece:.3} (n {})", scores.len()),
        None => "Reliability: no scored images".to_string(),
    };
    let mut chart = chart(root, title, 52, 0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("mean predicted probability (score/100) in the bin")
        .y_desc("observed share of ai in the bin")
        .draw()
        .map_err(plot_error)?;
    // the bins themselves, shaded by how many images they hold
    let most = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    chart
        .draw_series(bins.iter().filter_map(|b| {
            let observed = b.observed?;
            let shade = 0.15 + 0.45 * b.count as f64 / most;
            Some(Rectangle::new([(b.lo, 0.0), (b.hi, observed)], REAL.mix(shade).filled()))
        }))
        .map_err(plot_error)?
        .label("bins (darker: more images)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], REAL.mix(0.5).filled()));
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], GREY.stroke_width(1)))
        .map_err(plot_error)?
        .label("calibrated")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY));
    let curve: Vec<(f64, f64)> = bins.iter().filter_map(|b| Some((b.mean_predicted?, b.observed?))).collect();
    chart.draw_series(LineSeries::new(curve.clone(), AI.stroke_width(2))).map_err(plot_error)?;
    chart
        .draw_series(curve.into_iter().map(|p| Circle::new(p, 4, AI.filled())))
        .map_err(plot_error)?
        .label("mean score/100 vs ai share")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, AI.filled()));
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_three_decodable_pngs_of_the_documented_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let scores = [3.0, 12.0, 45.0, 58.0, 61.0, 72.0, 88.0, 97.0, 100.0, 0.0];
        let positive = [false, false, false, true, false, true, true, true, true, false];
        let paths = write_all(&dir.path().join("plots"), &scores, &positive).unwrap();
        let expected =
            [("roc.png", ROC_SIZE), ("histogram.png", HISTOGRAM_SIZE), ("reliability.png", RELIABILITY_SIZE)];
        assert_eq!(paths.len(), expected.len());
        for (path, (name, size)) in paths.iter().zip(expected) {
            assert!(path.ends_with(name), "{}", path.display());
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Png);
            let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), size, "{name}");
            // something besides the white background was drawn, text included in the red
            // curve's legend and the title
            let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
            assert!(inked > 2000, "{name}: {inked} non-white pixels");
            assert!(img.pixels().any(|p| p.0 == [AI.0, AI.1, AI.2]), "{name} has no ai colour");
        }
    }

    #[test]
    fn one_class_or_no_image_still_gives_three_figures() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_all(dir.path(), &[70.0, 90.0], &[true, true]).unwrap().len(), 3);
        assert_eq!(write_all(dir.path(), &[], &[]).unwrap().len(), 3);
    }
}

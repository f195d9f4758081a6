//! Pictures of a run, each written as PNG and SVG: loss and retrieval curves, the t-SNE map
//! of paired embeddings, the similarity heatmap, the matched-cosine histogram and parity
//! plots of tensor regression.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::output::{temp_sibling, write_atomic};

pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A picture drawable on any plotters backend.
pub trait Figure {
    const SIZE: (u32, u32) = (1000, 700);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Renders `figure` to `dir/name.png` and `dir/name.svg` (each written atomically).
pub fn save<F: Figure>(figure: &F, dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // plotters draws text only with a registered font; DejaVu Sans ships with the binary.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let png = dir.join(format!("{name}.png"));
    let tmp = temp_sibling(&png, ".png");
    {
        let area = BitMapBackend::new(&tmp, F::SIZE).into_drawing_area();
        area.fill(&WHITE)
            .and_then(|_| figure.draw(&area))
            .and_then(|_| area.present())
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", png.display()))?;
    }
    std::fs::rename(&tmp, &png).with_context(|| format!("cannot write {}", png.display()))?;
    let svg_path = dir.join(format!("{name}.svg"));
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, F::SIZE).into_drawing_area();
        area.fill(&WHITE)
            .and_then(|_| figure.draw(&area))
            .and_then(|_| area.present())
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", svg_path.display()))?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;
    Ok(vec![png, svg_path])
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// The series labels in a translucent box (every chart here draws them alike).
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .draw()
}

/// Named series of (x, y) points on shared axes.
pub struct Curves {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Horizontal reference lines (e.g. chance level).
    pub references: Vec<(String, f64)>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

impl Figure for Curves {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let points = || self.series.iter().flat_map(|(_, s)| s.iter());
        let (x0, x1) = range(points().map(|p| p.0));
        let (y0, y1) = range(
            points()
                .map(|p| p.1)
                .chain(self.references.iter().map(|r| r.1)),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 26))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 15))
            .draw()?;
        for (k, (name, s)) in coincident_merged(&self.series, y1 - y0)
            .into_iter()
            .enumerate()
        {
            let color = PALETTE[k % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            // Markers show where the measurements are (few of them, joined by straight lines).
            chart.draw_series(s.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        for (name, y) in &self.references {
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, *y), (x1, *y)],
                    BLACK.mix(0.5).stroke_width(1),
                ))?
                .label(name)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
        }
        draw_legend(&mut chart)?;
        Ok(())
    }
}

/// Series whose points agree to within a millionth of the y span are drawn once, under their
/// names joined by " = ": otherwise the later line hides the earlier one and a reader sees a
/// series missing (flat FTCP and its full-rank PCA rotation give equal probes).
fn coincident_merged(
    series: &[(String, Vec<(f64, f64)>)],
    y_span: f64,
) -> Vec<(String, &[(f64, f64)])> {
    let tolerance = y_span.abs() * 1e-6;
    let same = |a: &[(f64, f64)], b: &[(f64, f64)]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(p, q)| p.0 == q.0 && (p.1 - q.1).abs() <= tolerance)
    };
    let mut merged: Vec<(String, &[(f64, f64)])> = Vec::new();
    for (name, points) in series {
        match merged.iter_mut().find(|(_, m)| same(m, points)) {
            Some((joined, _)) => {
                joined.push_str(" = ");
                joined.push_str(name);
            }
            None => merged.push((name.clone(), points)),
        }
    }
    merged
}

/// t-SNE map of paired embeddings: structures as circles, texts as stars, lines joining the
/// first `connect` pairs.
pub struct PairMap {
    pub title: String,
    pub structure: Vec<[f64; 2]>,
    pub text: Vec<[f64; 2]>,
    pub connect: usize,
}

impl Figure for PairMap {
    const SIZE: (u32, u32) = (1000, 800);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let all = || self.structure.iter().chain(&self.text);
        let (x0, x1) = range(all().map(|p| p[0]));
        let (y0, y1) = range(all().map(|p| p[1]));
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .label_style(("sans-serif", 13))
            .draw()?;
        let line = BLACK.mix(0.25);
        chart.draw_series(
            self.structure
                .iter()
                .zip(&self.text)
                .take(self.connect)
                .map(|(s, t)| PathElement::new(vec![(s[0], s[1]), (t[0], t[1])], line)),
        )?;
        let blue = PALETTE[0].mix(0.65);
        let orange = PALETTE[1].mix(0.65);
        chart
            .draw_series(
                self.structure
                    .iter()
                    .map(|p| Circle::new((p[0], p[1]), 4, blue.filled())),
            )?
            .label("structure")
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, blue.filled()));
        chart
            .draw_series(
                self.text
                    .iter()
                    .map(|p| Cross::new((p[0], p[1]), 5, orange.stroke_width(2))),
            )?
            .label("text")
            .legend(move |(x, y)| Cross::new((x + 10, y), 5, orange.stroke_width(2)));
        draw_legend(&mut chart)?;
        Ok(())
    }
}

/// `k × k` cosine similarities, structures as rows and texts as columns.
pub struct Heatmap {
    pub title: String,
    pub k: usize,
    pub values: Vec<f32>,
}

impl Figure for Heatmap {
    const SIZE: (u32, u32) = (900, 800);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (main, bar) = area.split_horizontally(800);
        let k = self.k as i32;
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0..k, 0..k)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("text")
            .y_desc("structure")
            .label_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series((0..k).flat_map(|i| {
            (0..k).map(move |j| {
                let v = self.values[(i * k + j) as usize] as f64;
                Rectangle::new([(j, k - 1 - i), (j + 1, k - i)], color(v).filled())
            })
        }))?;
        let mut scale = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(55)
            .margin_right(10)
            .y_label_area_size(45)
            .build_cartesian_2d(0..1, -1.0..1.0f64)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .label_style(("sans-serif", 12))
            .draw()?;
        scale.draw_series((0..100).map(|s| {
            let v = -1.0 + s as f64 * 0.02;
            Rectangle::new([(0, v), (1, v + 0.02)], color(v).filled())
        }))?;
        Ok(())
    }
}

/// Diverging blue–white–red for cosines in [-1, 1].
fn color(v: f64) -> RGBColor {
    let t = v.clamp(-1.0, 1.0);
    let mix = |a: f64, b: f64, w: f64| (a + (b - a) * w).round() as u8;
    if t < 0.0 {
        let w = -t;
        RGBColor(
            mix(255.0, 59.0, w),
            mix(255.0, 76.0, w),
            mix(255.0, 192.0, w),
        )
    } else {
        RGBColor(
            mix(255.0, 180.0, t),
            mix(255.0, 4.0, t),
            mix(255.0, 38.0, t),
        )
    }
}

/// Histograms of matched and unmatched cosines on one axis (densities).
pub struct CosineHistogram {
    pub title: String,
    pub matched: Vec<f64>,
    pub unmatched: Vec<f64>,
    pub bins: usize,
}

impl Figure for CosineHistogram {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (lo, hi) = range(self.matched.iter().chain(&self.unmatched).copied());
        let width = (hi - lo) / self.bins as f64;
        let density = |v: &[f64]| -> Vec<f64> {
            let mut h = vec![0.0; self.bins];
            for x in v {
                let b = (((x - lo) / width) as usize).min(self.bins - 1);
                h[b] += 1.0;
            }
            let total = (v.len().max(1) as f64) * width;
            h.iter().map(|c| c / total).collect()
        };
        let (m, u) = (density(&self.matched), density(&self.unmatched));
        let top = m.iter().chain(&u).copied().fold(0.0, f64::max) * 1.08 + 1e-9;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("cosine similarity")
            .y_desc("density")
            .label_style(("sans-serif", 15))
            .draw()?;
        for (name, h, c) in [
            ("unmatched pairs", &u, PALETTE[1]),
            ("matched pairs", &m, PALETTE[0]),
        ] {
            let style = c.mix(0.55).filled();
            chart
                .draw_series(h.iter().enumerate().map(|(b, v)| {
                    let x = lo + b as f64 * width;
                    Rectangle::new([(x, 0.0), (x + width, *v)], style)
                }))?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], style));
        }
        draw_legend(&mut chart)?;
        Ok(())
    }
}

/// Predicted against true values, one panel per tensor component, with the identity line.
pub struct ParityPlot {
    pub title: String,
    pub names: Vec<String>,
    /// Per component: (true, predicted) of the evaluated rows, and the panel's caption.
    pub panels: Vec<(Vec<(f64, f64)>, String)>,
    /// Training rows, drawn faintly behind (may be empty).
    pub background: Vec<Vec<(f64, f64)>>,
}

impl Figure for ParityPlot {
    const SIZE: (u32, u32) = (1200, 1150);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, ("sans-serif", 26))?;
        let cols = if self.panels.len() == 4 { 2 } else { 3 };
        let rows = self.panels.len().div_ceil(cols).max(1);
        let cells = area.split_evenly((rows, cols));
        for (c, (panel, (points, caption))) in cells.iter().zip(&self.panels).enumerate() {
            let faint = self.background.get(c).map_or(&[][..], Vec::as_slice);
            let all = || {
                points
                    .iter()
                    .chain(faint)
                    .flat_map(|(t, p)| [*t, *p].into_iter())
            };
            let (lo, hi) = range(all());
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{}: {caption}", self.names[c]), ("sans-serif", 17))
                .margin(8)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(lo..hi, lo..hi)?;
            chart
                .configure_mesh()
                .x_desc("true")
                .y_desc("predicted")
                .label_style(("sans-serif", 12))
                .draw()?;
            chart.draw_series(LineSeries::new(
                vec![(lo, lo), (hi, hi)],
                BLACK.mix(0.5).stroke_width(1),
            ))?;
            let grey = BLACK.mix(0.15);
            chart.draw_series(
                faint
                    .iter()
                    .map(|&(t, p)| Circle::new((t, p), 2, grey.filled())),
            )?;
            let blue = PALETTE[0].mix(0.7);
            chart.draw_series(
                points
                    .iter()
                    .map(|&(t, p)| Circle::new((t, p), 3, blue.filled())),
            )?;
        }
        Ok(())
    }
}

/// Grouped bars: one group per category, one bar per series.
pub struct Bars {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<(String, Vec<f64>)>,
}

impl Figure for Bars {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let values = || self.series.iter().flat_map(|(_, v)| v.iter().copied());
        let (lo, hi) = range(values().chain([0.0]));
        let n = self.categories.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 26))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n as f64, lo.min(0.0)..hi)?;
        let names = self.categories.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 15))
            .draw()?;
        let width = 0.8 / self.series.len().max(1) as f64;
        for (k, (name, v)) in self.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            chart
                .draw_series(v.iter().enumerate().map(|(i, y)| {
                    let x0 = i as f64 + 0.1 + k as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *y)], color.filled())
                }))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled())
                });
        }
        draw_legend(&mut chart)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::coincident_merged;

    #[test]
    fn coincident_series_are_drawn_once_under_both_names() {
        let ftcp = vec![(5.0, 0.5087), (10.0, 0.4506), (100.0, 0.2567)];
        // A rotation of the same rows: equal up to rounding.
        let pca = vec![
            (5.0, 0.5087 + 1e-12),
            (10.0, 0.4506),
            (100.0, 0.2567 - 1e-12),
        ];
        let ssl = vec![(5.0, 0.5256), (10.0, 0.4738), (100.0, 0.2380)];
        // Equal values at other x are a different series.
        let shifted = vec![(5.0, 0.5087), (20.0, 0.4506), (100.0, 0.2567)];
        let series = vec![
            ("FTCP".to_string(), ftcp),
            ("SSL".to_string(), ssl.clone()),
            ("PCA".to_string(), pca),
            ("shifted".to_string(), shifted),
        ];
        let merged = coincident_merged(&series, 0.3);
        let names: Vec<&str> = merged.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["FTCP = PCA", "SSL", "shifted"]);
        assert_eq!(merged[1].1, ssl.as_slice());
        // A difference a plot could show keeps the series apart.
        let mut close = series[0].1.clone();
        close[1].1 += 0.001;
        let apart = vec![
            ("a".to_string(), series[0].1.clone()),
            ("b".to_string(), close),
        ];
        assert_eq!(coincident_merged(&apart, 0.3).len(), 2);
    }
}

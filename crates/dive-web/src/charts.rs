//! Bar charts drawn on the server as inline SVG: no script, and no inline style (the CSP forbids
//! both) — geometry goes in SVG attributes, colours in stylesheet classes. Each chart carries a
//! `<title>` and a `<desc>` with the numbers, and the pages show the same numbers in a table.

use askama::Template;

/// Drawing area, in SVG user units (the SVG scales to its container).
const WIDTH: u32 = 720;
const HEIGHT: u32 = 240;
/// Room for the y-axis labels at the left and the x-axis labels below.
const LEFT: u32 = 48;
const BOTTOM: u32 = 28;
const TOP: u32 = 10;
/// Horizontal grid lines (and y labels) above zero: five, so that steps of a 1, 2 or 5 × 10ⁿ
/// axis stay round (0.2, 0.4, 1, 2, …).
const TICKS: u32 = 5;
/// The widest a bar gets (a chart of one deployment is not one wide slab).
const MAX_BAR: u32 = 40;

pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// A stylesheet class, e.g. `bar-ok`.
    pub class: &'static str,
    /// The bar's own tooltip (`<title>` inside the rect).
    pub label: String,
}

pub struct Tick {
    pub y: u32,
    pub text: String,
}

pub struct XLabel {
    pub x: u32,
    pub text: String,
}

/// One chart, ready to render (`chart.html`, escaped like every template).
#[derive(Template)]
#[template(path = "chart.html")]
pub struct Chart {
    /// Unique on the page (ids of `<title>` and `<desc>`).
    pub id: &'static str,
    pub title: String,
    pub desc: String,
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub baseline: u32,
    pub rects: Vec<Rect>,
    pub ticks: Vec<Tick>,
    pub x_labels: Vec<XLabel>,
    /// (class, text) of each series.
    pub legend: Vec<(&'static str, String)>,
}

/// One bar of a (possibly stacked) bar chart: its x-axis label and its segments from the bottom,
/// each (value, class, series name).
pub struct Column {
    pub label: String,
    pub segments: Vec<(f64, &'static str, &'static str)>,
}

/// A "nice" axis maximum ≥ `max`: 1, 2 or 5 times a power of ten, so tick labels read well.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

fn fmt_value(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Stacked bars, one per column, left to right. `unit` follows every number (e.g. " s").
/// At most `max_labels` x labels are drawn (evenly spaced) so they never overlap.
pub fn bars(
    id: &'static str,
    title: String,
    desc: String,
    columns: &[Column],
    unit: &str,
    max_labels: usize,
) -> Chart {
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let baseline = HEIGHT - BOTTOM;
    let total = |c: &Column| c.segments.iter().map(|s| s.0.max(0.0)).sum::<f64>();
    let top = nice_max(columns.iter().map(total).fold(0.0, f64::max));
    let n = columns.len().max(1) as u32;
    let slot = plot_w / n;
    let bar_w = (slot * 7 / 10).clamp(1, MAX_BAR);
    let mut rects = Vec::new();
    let mut legend: Vec<(&'static str, String)> = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let x = LEFT + i as u32 * slot + (slot - bar_w) / 2;
        let mut y = baseline;
        for &(v, class, series) in &c.segments {
            if !legend.iter().any(|(k, _)| *k == class) {
                legend.push((class, series.to_string()));
            }
            let h = ((v.max(0.0) / top) * f64::from(plot_h)).round() as u32;
            if h == 0 {
                continue;
            }
            y -= h.min(y - TOP);
            rects.push(Rect {
                x,
                y,
                w: bar_w,
                h,
                class,
                label: format!("{}: {series} {}{unit}", c.label, fmt_value(v)),
            });
        }
    }
    let ticks = (0..=TICKS)
        .map(|k| Tick {
            y: baseline - plot_h * k / TICKS,
            text: format!("{}{unit}", fmt_value(top * f64::from(k) / f64::from(TICKS))),
        })
        .collect();
    let every = columns.len().div_ceil(max_labels.max(1)).max(1);
    let x_labels = columns
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, c)| XLabel {
            x: LEFT + i as u32 * slot + slot / 2,
            text: c.label.clone(),
        })
        .collect();
    Chart {
        id,
        title,
        desc,
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        baseline,
        rects,
        ticks,
        x_labels,
        legend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(label: &str, a: f64, b: f64) -> Column {
        Column {
            label: label.into(),
            segments: vec![(a, "bar-ok", "allowed"), (b, "bar-bad", "denied")],
        }
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(730.0), 1000.0);
    }

    #[test]
    fn stacked_bars_scale_to_the_tallest_column_and_stay_inside_the_plot() {
        let c = bars(
            "t",
            "T".into(),
            "D".into(),
            &[
                col("10:00", 3.0, 1.0),
                col("10:01", 0.0, 0.0),
                col("10:02", 8.0, 2.0),
            ],
            "",
            10,
        );
        // Zero-height segments are not drawn.
        assert_eq!(c.rects.len(), 4);
        let plot_h = HEIGHT - TOP - BOTTOM;
        // The tallest column (10) reaches the top of a 10-high axis.
        let tallest: u32 = c.rects[2..].iter().map(|r| r.h).sum();
        assert!(tallest.abs_diff(plot_h) <= 1, "{tallest} vs {plot_h}");
        assert!(
            c.rects
                .iter()
                .all(|r| r.y >= TOP && r.y + r.h <= c.baseline)
        );
        // Stacked: the second segment sits on the first.
        assert_eq!(c.rects[1].y + c.rects[1].h, c.rects[0].y);
        assert_eq!(c.legend.len(), 2);
        assert_eq!(c.ticks.last().map(|t| t.text.as_str()), Some("10"));
        assert_eq!(c.rects[0].label, "10:00: allowed 3");
    }

    #[test]
    fn labels_are_thinned_and_the_svg_is_accessible_and_escaped() {
        let cols: Vec<Column> = (0..60).map(|i| col(&format!("m{i}"), 1.0, 0.0)).collect();
        let c = bars("d", "A <b>".into(), "x & y".into(), &cols, " s", 12);
        assert!(c.x_labels.len() <= 12);
        let svg = c.render().unwrap();
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("aria-labelledby=\"d-title d-desc\""));
        assert!(
            svg.contains("A &#60;b&#62;") || svg.contains("A &lt;b&gt;"),
            "{svg}"
        );
        assert!(!svg.contains("style="), "no inline style: {svg}");
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn an_empty_chart_still_renders_its_axis() {
        let c = bars("e", "E".into(), "none".into(), &[], "", 10);
        assert!(c.rects.is_empty());
        assert_eq!(c.ticks.len() as u32, TICKS + 1);
        assert!(c.render().is_ok());
    }
}

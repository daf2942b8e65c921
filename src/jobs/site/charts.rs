//! The site's charts: horizontal bar charts as inline SVG, drawn at build time by `plotters`
//! (its SVG backend only: no fonts, no bitmap code). Every chart is shown next to a table of
//! the same numbers, so it is never the only place a number is.

use plotters::prelude::*;

/// A bar chart and the numbers it shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Chart {
    /// A stable id (`funnel`, …), used for the figure's anchor.
    pub id: String,
    pub title: String,
    /// The header of the value column of its table.
    pub unit: String,
    /// (label, value as shown) in display order.
    pub rows: Vec<(String, String)>,
    /// The SVG markup (no script, no external reference).
    pub svg: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart `{id}`: {message}")]
pub struct ChartError {
    id: String,
    message: String,
}

/// `3` for 3.0, `2.5` for 2.5.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

const BAR: RGBColor = RGBColor(0x4b, 0x3f, 0x9e);

/// Draws `rows` as horizontal bars, the first at the top.
pub fn bars(
    id: &str,
    title: &str,
    unit: &str,
    rows: Vec<(String, f64)>,
) -> Result<Chart, ChartError> {
    let err = |e: &dyn std::fmt::Display| ChartError {
        id: id.to_owned(),
        message: e.to_string(),
    };
    let n = rows.len().max(1) as i32;
    let max = rows.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let top = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let height = 40 + 28 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        // Bars from the top: row i sits in segment n-1-i.
        let labels: Vec<String> = rows.iter().rev().map(|(l, _)| l.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(170)
            .build_cartesian_2d(0.0..top, (0..n).into_segmented())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(5)
            .label_style(("sans-serif", 14))
            // Counts: whole numbers only (a tick at 0.5 gets no label).
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-9 {
                    format!("{}", v.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_labels(n as usize)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
                let seg = n - 1 - i as i32;
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(seg)),
                        (*v, SegmentValue::Exact(seg + 1)),
                    ],
                    BAR.filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    // Named for screen readers; the table next to it has the numbers.
    let svg = svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-labelledby=\"{id}-title\" "),
        1,
    );
    Ok(Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        unit: unit.to_owned(),
        rows: rows.into_iter().map(|(l, v)| (l, number(v))).collect(),
        svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_plain_svg_with_one_bar_per_row() {
        let c = bars(
            "funnel",
            "Funnel",
            "engagements",
            vec![
                ("prospect".into(), 4.0),
                ("contacted".into(), 3.0),
                ("done".into(), 0.0),
            ],
        )
        .expect("drawn");
        assert!(c.svg.starts_with("<svg role=\"img\""), "{}", c.svg);
        assert!(c.svg.contains("prospect") && c.svg.contains("contacted"));
        for banned in ["<script", "href=", "http://", "https://"] {
            let rest = c.svg.replace("http://www.w3.org/2000/svg", "");
            assert!(!rest.contains(banned), "{banned} in {}", c.svg);
        }
        // Two bars with a width (the zero row has none): filled rects besides the background.
        assert!(c.svg.matches("<rect").count() >= 3, "{}", c.svg);
    }
}

//! The reports' charts and `report --format html`'s page: one self-contained page — inline CSS, the report's table and its
//! charts as inline SVG drawn with plotters' SVG backend (bars and the traffic-light grid).
//! Text in the charts is SVG `<text>` the browser sets in its own sans-serif: no font is read
//! here and nothing is loaded from the network (no `src`, `href` or `url(` in the page).
//! The dashboard embeds the same charts ([`svg`]) in its pages.

use leadflow_engine::report::Light;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use std::fmt::Write as _;

/// Bar colours.
pub const BLUE: RGBColor = RGBColor(52, 101, 164);
pub const GREEN: RGBColor = RGBColor(46, 139, 87);
pub const RED: RGBColor = RGBColor(204, 51, 51);
pub const YELLOW: RGBColor = RGBColor(230, 180, 30);
pub const GREY: RGBColor = RGBColor(160, 160, 160);

/// One series of bars.
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// A value per label.
    pub values: Vec<f64>,
    /// Its colour.
    pub color: RGBColor,
}

/// A chart of the page.
pub enum Chart {
    /// Horizontal bars: a group per label, a bar per series.
    Bars {
        /// The chart's title.
        title: String,
        /// A group of bars per label.
        labels: Vec<String>,
        /// A bar per series in each group.
        series: Vec<Series>,
        /// What the values count (after each value).
        unit: String,
    },
    /// Coloured squares, one per cell: its label, light and what it stands for.
    Grid {
        /// The chart's title.
        title: String,
        /// Label, light, what it stands for.
        cells: Vec<(String, Light, String)>,
    },
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page.
pub fn page(
    title: &str,
    period: &str,
    headers: &[&str],
    rows: &[Vec<String>],
    notes: &[String],
    charts: &[Chart],
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}th{{background:#f2f2f2}}\
         .chart{{margin:1em 0}}.note{{color:#555}}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p>{}</p>\n",
        esc(title),
        esc(title),
        esc(period)
    );
    for c in charts {
        let _ = writeln!(out, "<div class=\"chart\">{}</div>", svg(c));
    }
    out.push_str("<table>\n<tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    for n in notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(n));
    }
    out.push_str("</body>\n</html>");
    out
}

/// One chart as an `<svg>` element (a chart that cannot be drawn says so instead).
pub fn svg(chart: &Chart) -> String {
    let mut s = String::new();
    let drawn = match chart {
        Chart::Bars {
            title,
            labels,
            series,
            unit,
        } => bars(&mut s, title, labels, series, unit),
        Chart::Grid { title, cells } => grid(&mut s, title, cells),
    };
    match drawn {
        Ok(()) => s,
        Err(e) => format!("<p>chart not drawn: {}</p>", esc(&e)),
    }
}

/// Black sans-serif text of a size (the browser's sans-serif: no font is read here).
fn text_style(size: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).color(&BLACK)
}

/// Horizontal bars, labels on the left, each bar's value at its end.
fn bars(
    out: &mut String,
    title: &str,
    labels: &[String],
    series: &[Series],
    unit: &str,
) -> Result<(), String> {
    const LABEL_W: i32 = 220;
    const BAR_H: i32 = 14;
    const WIDTH: i32 = 760;
    let per_group = series.len().max(1) as i32 * BAR_H + 10;
    let height = 60 + per_group * labels.len().max(1) as i32;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let span = f64::from(WIDTH - LABEL_W - 80);
    let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    {
        let root = SVGBackend::with_string(out, (WIDTH as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        root.draw(&Text::new(title.to_owned(), (10, 8), text_style(16)))
            .map_err(e)?;
        let mut x = LABEL_W;
        for s in series {
            root.draw(&Rectangle::new([(x, 32), (x + 12, 44)], s.color.filled()))
                .map_err(e)?;
            root.draw(&Text::new(s.name.clone(), (x + 16, 32), text_style(12)))
                .map_err(e)?;
            x += 20 + 8 * s.name.chars().count() as i32;
        }
        for (i, label) in labels.iter().enumerate() {
            let top = 52 + per_group * i as i32;
            let short: String = label.chars().take(32).collect();
            root.draw(&Text::new(short, (10, top + 2), text_style(12)))
                .map_err(e)?;
            for (j, s) in series.iter().enumerate() {
                let v = s.values.get(i).copied().unwrap_or(0.0);
                let y = top + j as i32 * BAR_H;
                let w = (v / max * span).round() as i32;
                root.draw(&Rectangle::new(
                    [(LABEL_W, y), (LABEL_W + w.max(1), y + BAR_H - 2)],
                    s.color.filled(),
                ))
                .map_err(e)?;
                let value = if v.fract() == 0.0 {
                    format!("{v:.0}{unit}")
                } else {
                    format!("{v:.1}{unit}")
                };
                root.draw(&Text::new(value, (LABEL_W + w + 4, y), text_style(11)))
                    .map_err(e)?;
            }
        }
        root.present().map_err(e)?;
    }
    Ok(())
}

/// The traffic-light grid: a coloured square per cell with its label under it.
fn grid(out: &mut String, title: &str, cells: &[(String, Light, String)]) -> Result<(), String> {
    const COLS: i32 = 8;
    const CELL_W: i32 = 92;
    const CELL_H: i32 = 58;
    let rows = (cells.len() as i32 + COLS - 1) / COLS;
    let height = 40 + CELL_H * rows.max(1);
    let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    {
        let root = SVGBackend::with_string(out, ((COLS * CELL_W + 20) as u32, height as u32))
            .into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        root.draw(&Text::new(title.to_owned(), (10, 8), text_style(16)))
            .map_err(e)?;
        for (i, (label, light, _)) in cells.iter().enumerate() {
            let (col, row) = (i as i32 % COLS, i as i32 / COLS);
            let (x, y) = (10 + col * CELL_W, 36 + row * CELL_H);
            let color = match light {
                Light::Red => RED,
                Light::Yellow => YELLOW,
                Light::Green => GREEN,
            };
            root.draw(&Rectangle::new([(x, y), (x + 28, y + 28)], color.filled()))
                .map_err(e)?;
            let short: String = label.chars().take(14).collect();
            root.draw(&Text::new(short, (x, y + 32), text_style(10)))
                .map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    Ok(())
}

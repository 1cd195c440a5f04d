//! The run as a picture (`docs/bench.svg` for BENCHMARKS.md): per phase p50 and
//! p99 latency and PostgreSQL backend CPU per request, ours beside Node's, with
//! issue 12's references (ours) at the end. Log scales: a GET and the nightly reset
//! differ by two orders of magnitude.

use plotters::prelude::*;

use crate::phases::{Headline, PhaseFigures};
use crate::summary::{PeerSummary, Summary};

type Figure = fn(&Headline) -> Option<f64>;

const PANELS: [(&str, Figure); 3] = [
    ("p50 latency, µs (in-process)", |h| h.p50_us),
    ("p99 latency, µs (in-process)", |h| h.p99_us),
    ("PostgreSQL backend CPU per request, µs", |h| {
        h.pg_cpu_us_per_request
    }),
];
const OURS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const NODE: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const REFERENCE: RGBColor = RGBColor(0x99, 0x99, 0x99);

/// One category of the x axis: ours, Node's (if any), and whether it is a reference.
struct Bar {
    name: String,
    ours: Option<f64>,
    node: Option<f64>,
    reference: bool,
}

pub fn write(
    path: &std::path::Path,
    rust: &Summary,
    node: Option<&PeerSummary>,
) -> Result<(), String> {
    let mut svg = String::new();
    draw(&mut svg, rust, node).map_err(|e| format!("chart: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw(
    svg: &mut String,
    rust: &Summary,
    node: Option<&PeerSummary>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut names = rust.phase_order.clone();
    let phases = names.len();
    names.extend(rust.references.keys().cloned());
    let root = SVGBackend::with_string(svg, (1280, 1080)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Rust (in-process handlers) {}, {} UTC",
        if node.is_some() {
            "beside the Node peer, same workload, same run"
        } else {
            "(no Node peer in this run)"
        },
        rust.date.get(..16).unwrap_or("").replace('T', " ")
    );
    let root = root.titled(&title, ("sans-serif", 18))?;
    for (area, (caption, figure)) in root.split_evenly((3, 1)).iter().zip(PANELS) {
        let bars: Vec<Bar> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let reference = i >= phases;
                let ours = if reference {
                    rust.references.get(name)
                } else {
                    rust.phases.get(name)
                };
                Bar {
                    name: name.clone(),
                    ours: ours.map(PhaseFigures::headline).as_ref().and_then(figure),
                    node: node.and_then(|n| figure(&n.phase(name))),
                    reference,
                }
            })
            .collect();
        panel(area, caption, &bars)?;
    }
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    bars: &[Bar],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let values = bars.iter().flat_map(|b| [b.ours, b.node]).flatten();
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return Ok(());
    }
    // Whole decades around the figures, a zero (no WAL, say) drawn at the floor.
    let lo = 10f64.powf(lo.max(1.0).log10().floor());
    let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            match bars.get(i as usize) {
                Some(b) if (x - i).abs() < 1e-6 => b.name.clone(),
                _ => String::new(),
            }
        })
        .x_label_style(("sans-serif", 10))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let bar = |x0: f64, x1: f64, v: f64, color: RGBColor| {
        Rectangle::new([(x0, lo), (x1, v.max(lo))], color.filled())
    };
    let label = |x: f64, v: f64| {
        Text::new(
            format_value(v),
            (x, v.max(lo) * 1.08),
            ("sans-serif", 9).into_font().color(&BLACK),
        )
    };
    let ours: Vec<(usize, f64, bool)> = bars
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.ours.map(|v| (i, v, b.reference)))
        .collect();
    let node: Vec<(usize, f64)> = bars
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.node.map(|v| (i, v)))
        .collect();
    let at = |i: usize| i as f64;
    chart
        .draw_series(
            ours.iter()
                .filter(|b| !b.2)
                .map(|&(i, v, _)| bar(at(i) - 0.4, at(i) - 0.02, v, OURS)),
        )?
        .label("Rust (ours)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], OURS.filled()));
    if !node.is_empty() {
        chart
            .draw_series(
                node.iter()
                    .map(|&(i, v)| bar(at(i) + 0.02, at(i) + 0.4, v, NODE)),
            )?
            .label("Node peer (after)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], NODE.filled()));
    }
    if ours.iter().any(|b| b.2) {
        chart
            .draw_series(
                ours.iter()
                    .filter(|b| b.2)
                    .map(|&(i, v, _)| bar(at(i) - 0.4, at(i) - 0.02, v, REFERENCE)),
            )?
            .label("reference statement (ours)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], REFERENCE.filled()));
    }
    chart.draw_series(ours.iter().map(|&(i, v, _)| label(at(i) - 0.4, v)))?;
    chart.draw_series(node.iter().map(|&(i, v)| label(at(i) + 0.02, v)))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
    Ok(())
}

/// 1234.6 → "1,235"; 23.4 → "23.4".
fn format_value(v: f64) -> String {
    if v >= 100.0 {
        let digits = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_on_the_bars_are_grouped_by_thousands_and_small_ones_keep_a_decimal() {
        assert_eq!(format_value(1234.6), "1,235");
        assert_eq!(format_value(1_234_567.0), "1,234,567");
        assert_eq!(format_value(100.0), "100");
        assert_eq!(format_value(23.44), "23.4");
    }

    #[test]
    fn a_summary_without_the_peer_still_draws_every_phase_and_reference() {
        let figures = |p50_us, p99_us, cpu| PhaseFigures {
            latency: crate::stats::Latency {
                p50_us,
                p99_us,
                ..Default::default()
            },
            pg_cpu_us_per_request: Some(cpu),
            ..Default::default()
        };
        let rust = Summary {
            date: "2026-12-01T12:00:00Z".into(),
            phase_order: vec!["get_known".into(), "daily_reset".into()],
            phases: [
                ("get_known".into(), figures(450.0, 900.0, 40.0)),
                ("daily_reset".into(), figures(30000.0, 30000.0, 0.0)),
            ]
            .into(),
            references: [("reference_pk_select".into(), figures(300.0, 700.0, 20.0))].into(),
            ..Default::default()
        };
        let mut svg = String::new();
        draw(&mut svg, &rust, None).unwrap();
        for text in [
            "get_known",
            "daily_reset",
            "reference_pk_select",
            "450",
            "30,000",
            "Rust (ours)",
        ] {
            assert!(svg.contains(text), "{text} missing from the chart");
        }
        assert!(
            !svg.contains("Node peer (after)"),
            "no Node legend without the peer"
        );
    }
}

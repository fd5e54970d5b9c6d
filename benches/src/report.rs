//! Turning rounds into the report: medians per workload and engine, the markdown table
//! (with crust/CRIU ratios when CRIU ran), and a hand-written SVG of time against memory
//! size.

use std::fmt::Write as _;

use crate::engine::{Figures, Outcome};
use crate::workload::{size_label, Workload};

/// What an engine came to on one workload over all its rounds.
#[derive(Debug, Clone)]
pub enum Summary {
    /// Medians over the good rounds; `failed` rounds broke (and are named in `note`).
    Measured { median: Figures, runs: usize, failed: usize, note: Option<String> },
    /// Refused as not supported.
    Unsupported(String),
    /// Every round broke; the first reason.
    Failed(String),
    /// Not run.
    NotRun,
}

impl Summary {
    /// Medians of the measured rounds, else the first refusal or failure.
    pub fn from_outcomes(outcomes: &[Outcome]) -> Summary {
        let measured: Vec<Figures> = outcomes
            .iter()
            .filter_map(|o| if let Outcome::Measured(f) = o { Some(*f) } else { None })
            .collect();
        let first_problem = outcomes.iter().find_map(|o| match o {
            Outcome::Unsupported(reason) => Some(Summary::Unsupported(reason.clone())),
            Outcome::Failed(reason) => Some(Summary::Failed(reason.clone())),
            Outcome::Measured(_) => None,
        });
        if measured.is_empty() {
            return first_problem.unwrap_or(Summary::NotRun);
        }
        let median_of = |pick: &dyn Fn(&Figures) -> f64| median(measured.iter().map(pick).collect());
        let freezes: Vec<f64> = measured.iter().filter_map(|f| f.freeze_ms).collect();
        let median = Figures {
            freeze_ms: (!freezes.is_empty()).then(|| median(freezes)),
            dump_ms: median_of(&|f| f.dump_ms),
            restore_ms: median_of(&|f| f.restore_ms),
            image_bytes: median_of(&|f| f.image_bytes as f64) as u64,
            dump_rss_kib: median_of(&|f| f.dump_rss_kib as f64) as u64,
            restore_rss_kib: median_of(&|f| f.restore_rss_kib as f64) as u64,
            dump_cpu_ms: median_of(&|f| f.dump_cpu_ms),
            restore_cpu_ms: median_of(&|f| f.restore_cpu_ms),
        };
        let failed = outcomes.len() - measured.len();
        let note = first_problem.map(|p| match p {
            Summary::Unsupported(r) | Summary::Failed(r) => r,
            _ => String::new(),
        });
        Summary::Measured { median, runs: measured.len(), failed, note }
    }

    fn figures(&self) -> Option<&Figures> {
        match self {
            Summary::Measured { median, .. } => Some(median),
            _ => None,
        }
    }
}

/// Median (mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// One workload's line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// crust's figures.
    pub crust: Summary,
    /// CRIU's, when `--vs-criu` ran it.
    pub criu: Option<Summary>,
}

const COLUMNS: [(&str, fn(&Figures) -> Option<f64>); 8] = [
    ("freeze ms", |f| f.freeze_ms),
    ("dump ms", |f| Some(f.dump_ms)),
    ("restore ms", |f| Some(f.restore_ms)),
    ("dump CPU ms", |f| Some(f.dump_cpu_ms)),
    ("restore CPU ms", |f| Some(f.restore_cpu_ms)),
    ("image MiB", |f| Some(f.image_bytes as f64 / (1 << 20) as f64)),
    ("dump RSS MiB", |f| Some(f.dump_rss_kib as f64 / 1024.0)),
    ("restore RSS MiB", |f| Some(f.restore_rss_kib as f64 / 1024.0)),
];

/// The markdown table: one line per workload; with CRIU, each cell is
/// `crust / criu (ratio x)`.
pub fn markdown_table(rows: &[Row]) -> String {
    let with_criu = rows.iter().any(|r| r.criu.is_some());
    let mut out = String::new();
    let _ = write!(out, "| workload | runs |");
    for (name, _) in COLUMNS {
        if with_criu {
            let _ = write!(out, " {name}: crust / CRIU (ratio) |");
        } else {
            let _ = write!(out, " {name} |");
        }
    }
    out.push('\n');
    out.push_str("|---|---|");
    for _ in COLUMNS {
        out.push_str("---|");
    }
    out.push('\n');
    for row in rows {
        let _ = write!(out, "| {} | {} |", row.workload.name, runs_cell(&row.crust, row.criu.as_ref()));
        let crust_figures = row.crust.figures();
        let criu_figures = row.criu.as_ref().and_then(Summary::figures);
        if crust_figures.is_none() && (!with_criu || criu_figures.is_none()) {
            // Nothing measured: one explanation across the figures.
            let _ = write!(out, " {} |", problem_cell(&row.crust, row.criu.as_ref()));
            for _ in 1..COLUMNS.len() {
                out.push_str(" |");
            }
            out.push('\n');
            continue;
        }
        for (index, (_, pick)) in COLUMNS.iter().enumerate() {
            let crust_value = crust_figures.and_then(pick);
            let crust_text = match (crust_value, &row.crust) {
                (Some(v), _) => format_value(v),
                (None, Summary::Measured { .. }) => "-".into(),
                (None, other) if index == 0 => short_problem(other),
                (None, _) => "-".into(),
            };
            if with_criu {
                let criu_value = criu_figures.and_then(pick);
                let criu_text = match (criu_value, row.criu.as_ref()) {
                    (Some(v), _) => format_value(v),
                    (None, Some(Summary::Measured { .. })) => "-".into(),
                    (None, Some(other)) if index == 0 => short_problem(other),
                    _ => "-".into(),
                };
                let ratio = match (crust_value, criu_value) {
                    (Some(a), Some(b)) if b > 0.0 => format!(" ({:.2}x)", a / b),
                    _ => String::new(),
                };
                let _ = write!(out, " {crust_text} / {criu_text}{ratio} |");
            } else {
                let _ = write!(out, " {crust_text} |");
            }
        }
        out.push('\n');
    }
    out
}

fn runs_cell(crust: &Summary, criu: Option<&Summary>) -> String {
    let count = |s: &Summary| match s {
        Summary::Measured { runs, failed, .. } if *failed > 0 => format!("{runs} (+{failed} failed)"),
        Summary::Measured { runs, .. } => runs.to_string(),
        _ => "0".into(),
    };
    match criu {
        Some(c) => format!("{} / {}", count(crust), count(c)),
        None => count(crust),
    }
}

fn short_problem(summary: &Summary) -> String {
    match summary {
        Summary::Unsupported(reason) => format!("unsupported ({})", escape(reason)),
        Summary::Failed(reason) => format!("FAILED ({})", escape(reason)),
        Summary::NotRun => "not run".into(),
        Summary::Measured { .. } => String::new(),
    }
}

fn problem_cell(crust: &Summary, criu: Option<&Summary>) -> String {
    match criu {
        Some(c) => format!("crust: {}; CRIU: {}", short_problem(crust), short_problem(c)),
        None => short_problem(crust),
    }
}

fn escape(text: &str) -> String {
    let text = text.replace('|', "\\|").replace('\n', " ");
    if text.chars().count() > 160 {
        format!("{}...", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Notes on rounds that failed although others of the same cell were measured.
pub fn failure_notes(rows: &[Row]) -> Vec<String> {
    let mut notes = Vec::new();
    for row in rows {
        for (engine, summary) in [("crust", Some(&row.crust)), ("CRIU", row.criu.as_ref())] {
            if let Some(Summary::Measured { failed, note: Some(note), .. }) = summary {
                if *failed > 0 {
                    notes.push(format!("{} {engine}: {failed} round(s) failed: {}", row.workload.name, escape(note)));
                }
            }
        }
    }
    notes
}

/// An SVG plot of dump and restore time against anonymous memory size (log2 x axis),
/// one line per engine and figure.
pub fn time_vs_size_svg(rows: &[Row]) -> String {
    let (width, height) = (720.0, 440.0);
    let (left, right, top, bottom) = (70.0, 190.0, 30.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    type Pick = fn(&Figures) -> f64;
    let series: [(&str, bool, Pick, &str, &str); 4] = [
        ("crust dump", false, |f| f.dump_ms, "#d62728", ""),
        ("crust restore", false, |f| f.restore_ms, "#1f77b4", ""),
        ("CRIU dump", true, |f| f.dump_ms, "#d62728", "6,4"),
        ("CRIU restore", true, |f| f.restore_ms, "#1f77b4", "6,4"),
    ];
    let anon: Vec<&Row> = rows.iter().filter(|r| r.workload.anon_bytes().is_some()).collect();
    let mut lines: Vec<(&str, &str, &str, Vec<(f64, f64)>)> = Vec::new();
    for (label, is_criu, pick, color, dash) in series {
        let points: Vec<(f64, f64)> = anon
            .iter()
            .filter_map(|row| {
                let summary = if is_criu { row.criu.as_ref()? } else { &row.crust };
                let bytes = row.workload.anon_bytes()? as f64;
                Some((bytes, pick(summary.figures()?)))
            })
            .collect();
        if !points.is_empty() {
            lines.push((label, color, dash, points));
        }
    }
    let all_x: Vec<f64> = lines.iter().flat_map(|l| l.3.iter().map(|p| p.0)).collect();
    let max_y = lines.iter().flat_map(|l| l.3.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{width}" height="{height}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">dump and restore time against touched anonymous memory</text>"#,
        left + plot_w / 2.0
    );
    if all_x.is_empty() {
        let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">no memory workload measured</text></svg>"#, width / 2.0, height / 2.0);
        return svg;
    }
    let min_x = all_x.iter().cloned().fold(f64::INFINITY, f64::min).log2();
    let max_x = all_x.iter().cloned().fold(0.0, f64::max).log2();
    let span_x = (max_x - min_x).max(1.0);
    let top_y = nice_ceiling(max_y.max(1.0));
    let to_x = |bytes: f64| left + (bytes.log2() - min_x) / span_x * plot_w;
    let to_y = |ms: f64| top + plot_h - ms / top_y * plot_h;
    // Axes, grid and ticks.
    let _ = writeln!(svg, r##"<g stroke="#888" fill="none"><rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/></g>"##);
    for step in 0..=5 {
        let ms = top_y * step as f64 / 5.0;
        let y = to_y(ms);
        let _ = writeln!(svg, r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##, left + plot_w);
        let _ = writeln!(svg, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, left - 6.0, y + 4.0, format_value(ms));
    }
    let mut ticks: Vec<f64> = all_x.clone();
    ticks.sort_by(|a, b| a.total_cmp(b));
    ticks.dedup();
    for bytes in ticks {
        let x = to_x(bytes);
        let _ = writeln!(svg, r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#eee"/>"##, top + plot_h);
        let _ = writeln!(svg, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, top + plot_h + 16.0, size_label(bytes as u64));
    }
    let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">memory (log scale)</text>"#, left + plot_w / 2.0, height - 12.0);
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">milliseconds (median)</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    // Lines and legend.
    for (index, (label, color, dash, points)) in lines.iter().enumerate() {
        let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", to_x(x), to_y(y))).collect();
        let dash_attr = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let _ = writeln!(svg, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>"#, path.join(" "));
        for &(x, y) in points {
            let _ = writeln!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, to_x(x), to_y(y));
        }
        let legend_y = top + 10.0 + index as f64 * 20.0;
        let legend_x = left + plot_w + 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash_attr}/><text x="{}" y="{}">{label}</text>"#,
            legend_x + 28.0,
            legend_x + 34.0,
            legend_y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `value`.
fn nice_ceiling(value: f64) -> f64 {
    let power = 10f64.powf(value.log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if factor * power >= value {
            return factor * power;
        }
    }
    10.0 * power
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(dump_ms: f64) -> Figures {
        Figures { freeze_ms: Some(1.0), dump_ms, restore_ms: dump_ms / 2.0, image_bytes: 1 << 20, dump_rss_kib: 1024, restore_rss_kib: 2048, dump_cpu_ms: dump_ms / 4.0, restore_cpu_ms: dump_ms / 8.0 }
    }

    #[test]
    fn medians_and_ratios() {
        let crust = Summary::from_outcomes(&[
            Outcome::Measured(figures(10.0)),
            Outcome::Measured(figures(30.0)),
            Outcome::Measured(figures(20.0)),
        ]);
        let criu = Summary::from_outcomes(&[Outcome::Measured(figures(40.0))]);
        let rows = vec![
            Row { workload: Workload::anon(64 << 20), crust, criu: Some(criu) },
            Row {
                workload: Workload::counted("threads", 100),
                crust: Summary::from_outcomes(&[Outcome::Unsupported("a process with 100 threads is not supported yet".into())]),
                criu: Some(Summary::from_outcomes(&[Outcome::Measured(figures(5.0))])),
            },
        ];
        let table = markdown_table(&rows);
        assert!(table.contains("| anon-64M | 3 / 1 | 1.00 / 1.00 (1.00x) | 20.0 / 40.0 (0.50x) |"), "{table}");
        assert!(table.contains("unsupported (a process with 100 threads is not supported yet) / 1.00 |"), "{table}");
        let svg = time_vs_size_svg(&rows);
        assert!(svg.starts_with("<svg") && svg.contains("crust dump") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(1200.0), 2000.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}

/// The floors table (`floor.rs`): for each memory workload with floors, the median write,
/// exit and read floors, each engine's dump as a multiple of write and exit, and its
/// restore as a multiple of read; empty when no floor was measured.
pub fn floors_table(rows: &[Row], floors: &[Vec<crate::floor::Floor>]) -> String {
    let times = |summary: &Summary| match summary {
        Summary::Measured { median, .. } => Some((median.dump_ms, median.restore_ms)),
        _ => None,
    };
    let mut text = String::new();
    for (row, floors) in rows.iter().zip(floors) {
        if floors.is_empty() {
            continue;
        }
        if text.is_empty() {
            text.push_str(
                "Floors (`benches/src/floor.rs`), timed without an engine: the pages written into a new file of \
                 the images' filesystem and the target killed and waited for (dump: write + exit, which neither \
                 engine avoids), and that cached file read into fresh anonymous memory, faulted in first, on one \
                 thread (restore: CRIU's way; crust puts the pages of big areas in without zeroing them first, on \
                 every CPU, and goes under it). Medians of one measure per round; each engine's median as a \
                 multiple of the floor.\n\n\
                 | workload | write floor ms | exit floor ms | dump: crust / CRIU (x write + exit) | read floor ms | restore: crust / CRIU (x floor) |\n\
                 |---|---|---|---|---|---|\n",
            );
        }
        let write = median(floors.iter().map(|f| f.write_ms).collect());
        let exit = median(floors.iter().map(|f| f.exit_ms).collect());
        let read = median(floors.iter().map(|f| f.read_ms).collect());
        let cell = |floor: f64, pick: fn((f64, f64)) -> f64| -> String {
            let one = |summary: Option<&Summary>| {
                summary.and_then(times).map_or("-".to_string(), |t| format!("{:.2}x", pick(t) / floor))
            };
            format!("{} / {}", one(Some(&row.crust)), one(row.criu.as_ref()))
        };
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.0} | {} | {:.0} | {} |",
            row.workload.name,
            write,
            exit,
            cell(write + exit, |t| t.0),
            read,
            cell(read, |t| t.1)
        );
    }
    text
}

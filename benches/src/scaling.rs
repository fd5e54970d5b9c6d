//! `crust-bench --scaling`: dump and restore time against the count of one kind of state
//! (VMAs, threads, processes, fds), each engine on the same workloads, written as
//! `scaling.md` (figures and the growth exponent of each curve) and `scaling.svg` (four
//! log-log panels).
//!
//! The growth exponent between two points is `log(t2/t1) / log(n2/n1)`: 1 is linear, 2 is
//! quadratic. A curve whose last exponent is above [`SUPERLINEAR`] is flagged: the issue
//! that asked for the plot counts it as a bug.

use std::fmt::Write as _;

use crate::engine::Figures;
use crate::report::Summary;

/// One axis of the plot: a workload kind and the counts it runs at.
#[derive(Debug, Clone)]
pub struct Dimension {
    /// The workload program's KIND (`vmas`, `threads`, `tree`, `fds`).
    pub kind: &'static str,
    /// What the count is, for titles: `VMAs`, `threads`, `processes`, `fds`.
    pub label: &'static str,
    /// Counts to run, ascending.
    pub counts: Vec<u64>,
}

/// The counts of the full run, or of `--quick`.
pub fn dimensions(quick: bool) -> Vec<Dimension> {
    let pick = |full: &[u64], short: &[u64]| if quick { short.to_vec() } else { full.to_vec() };
    vec![
        Dimension { kind: "vmas", label: "VMAs", counts: pick(&[10, 100, 1_000, 10_000, 100_000], &[10, 1_000]) },
        Dimension { kind: "threads", label: "threads", counts: pick(&[1, 10, 100, 1_000], &[1, 100]) },
        Dimension { kind: "tree", label: "processes", counts: pick(&[1, 10, 100, 1_000], &[1, 10]) },
        Dimension { kind: "fds", label: "fds", counts: pick(&[10, 100, 1_000, 10_000, 100_000], &[10, 1_000]) },
    ]
}

/// Why a count cannot run on this machine, if it cannot: the `vmas` workload needs one
/// mapping per count plus its own (`vm.max_map_count`); the `fds` workload raises
/// RLIMIT_NOFILE to count + 1024, which needs that much hard limit (raising the hard limit
/// needs CAP_SYS_RESOURCE).
pub fn machine_limit(kind: &str, count: u64, max_map_count: u64, nofile_hard: u64) -> Option<String> {
    match kind {
        "vmas" if count + 200 > max_map_count => {
            Some(format!("{count} VMAs: vm.max_map_count is {max_map_count} (raise it with sysctl to run this point)"))
        }
        "fds" if count + 1024 > nofile_hard => {
            Some(format!("{count} fds: the hard RLIMIT_NOFILE is {nofile_hard} and raising it needs CAP_SYS_RESOURCE"))
        }
        _ => None,
    }
}

/// This machine's `vm.max_map_count` and hard RLIMIT_NOFILE (from /proc/self/limits);
/// `u64::MAX` where unreadable or unlimited.
pub fn machine_limits() -> (u64, u64) {
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(u64::MAX);
    let nofile_hard = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| nofile_hard_limit(&text))
        .unwrap_or(u64::MAX);
    (max_map_count, nofile_hard)
}

/// The hard limit on the `Max open files` line of /proc/PID/limits. Pure.
fn nofile_hard_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let hard = line["Max open files".len()..].split_whitespace().nth(1)?;
    if hard == "unlimited" {
        return Some(u64::MAX);
    }
    hard.parse().ok()
}

/// One measured point: a count and each engine's summary there.
#[derive(Debug, Clone)]
pub struct Point {
    /// The count of the dimension's state.
    pub count: u64,
    /// crust's figures.
    pub crust: Summary,
    /// CRIU's, with `--vs-criu`.
    pub criu: Option<Summary>,
}

/// A dimension's points, in count order, with the counts skipped and why.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Which dimension.
    pub dimension: Dimension,
    /// The points that ran.
    pub points: Vec<Point>,
    /// The counts this machine cannot run, with the reason.
    pub skipped: Vec<String>,
}

/// Above this last-step growth exponent a curve is called superlinear.
pub const SUPERLINEAR: f64 = 1.3;

fn figures(summary: &Summary) -> Option<&Figures> {
    match summary {
        Summary::Measured { median, .. } => Some(median),
        _ => None,
    }
}

/// The growth exponent between consecutive measured points of a series, for the points
/// whose time is above `floor_ms` at both ends (a fixed start-up cost hides the growth
/// of small counts: below it the exponent says nothing).
pub fn exponents(series: &[(u64, f64)], floor_ms: f64) -> Vec<(u64, u64, f64)> {
    series
        .windows(2)
        .filter(|w| w[0].1 > floor_ms && w[1].1 > floor_ms && w[1].0 > w[0].0)
        .map(|w| (w[0].0, w[1].0, (w[1].1 / w[0].1).ln() / (w[1].0 as f64 / w[0].0 as f64).ln()))
        .collect()
}

type Pick = fn(&Figures) -> f64;

const SERIES: [(&str, bool, Pick, &str, &str); 4] = [
    ("crust dump", false, |f| f.dump_ms, "#d62728", ""),
    ("crust restore", false, |f| f.restore_ms, "#1f77b4", ""),
    ("CRIU dump", true, |f| f.dump_ms, "#d62728", "6,4"),
    ("CRIU restore", true, |f| f.restore_ms, "#1f77b4", "6,4"),
];

fn series_of(curve: &Curve, is_criu: bool, pick: Pick) -> Vec<(u64, f64)> {
    curve
        .points
        .iter()
        .filter_map(|p| {
            let summary = if is_criu { p.criu.as_ref()? } else { &p.crust };
            Some((p.count, pick(figures(summary)?)))
        })
        .collect()
}

/// Twice the time of the smallest count, the floor for exponents.
fn floor_of(series: &[(u64, f64)]) -> f64 {
    series.first().map(|p| p.1 * 2.0).unwrap_or(0.0)
}

/// `scaling.md`: per dimension, a table of times and the growth exponents.
pub fn markdown(curves: &[Curve], header: &str) -> String {
    let mut out = String::new();
    out.push_str("# crust benchmarks: scaling\n\n");
    out.push_str(header);
    out.push_str(
        "\n\nEach point is one workload dumped (the dump kills it) and restored with `restore -d`, the restored \
         process verified as in `report.md`. Growth exponent between two counts: log(t2/t1)/log(n2/n1), 1 is \
         linear; it is given where both times are above twice the smallest count's (below that the start-up \
         cost hides the growth). A last exponent above ",
    );
    let _ = write!(out, "{SUPERLINEAR} is marked **superlinear**.\n\n![scaling](scaling.svg)\n");
    for curve in curves {
        let _ = write!(out, "\n## {}\n\n| {} |", curve.dimension.label, curve.dimension.label);
        let with_criu = curve.points.iter().any(|p| p.criu.is_some());
        let names: Vec<&str> = SERIES.iter().filter(|s| with_criu || !s.1).map(|s| s.0).collect();
        for name in &names {
            let _ = write!(out, " {name} ms |");
        }
        out.push_str("\n|---|");
        for _ in &names {
            out.push_str("---|");
        }
        out.push('\n');
        for point in &curve.points {
            let _ = write!(out, "| {} |", point.count);
            for (_, is_criu, pick, _, _) in SERIES.iter().filter(|s| with_criu || !s.1) {
                let summary = if *is_criu { point.criu.as_ref() } else { Some(&point.crust) };
                let cell = match summary {
                    Some(Summary::Measured { median, .. }) => format!("{:.1}", pick(median)),
                    Some(Summary::Unsupported(reason)) => format!("refused: {}", first_line(reason)),
                    Some(Summary::Failed(reason)) => format!("failed: {}", first_line(reason)),
                    Some(Summary::NotRun) | None => "-".into(),
                };
                let _ = write!(out, " {} |", cell.replace('|', "\\|"));
            }
            out.push('\n');
        }
        out.push('\n');
        for (name, is_criu, pick, _, _) in SERIES.iter().filter(|s| with_criu || !s.1) {
            let series = series_of(curve, *is_criu, *pick);
            let steps = exponents(&series, floor_of(&series));
            if steps.is_empty() {
                let _ = writeln!(out, "- {name}: no two points above the floor");
                continue;
            }
            let text: Vec<String> = steps.iter().map(|(a, b, e)| format!("{a}→{b}: {e:.2}")).collect();
            let last = steps.last().map(|s| s.2).unwrap_or(0.0);
            let mark = if last > SUPERLINEAR { " **superlinear**" } else { "" };
            let _ = writeln!(out, "- {name}: growth exponents {}{mark}", text.join(", "));
        }
        for reason in &curve.skipped {
            let _ = writeln!(out, "- not run: {reason}");
        }
    }
    out
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    if line.len() > 80 {
        let mut end = 80;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        &line[..end]
    } else {
        line
    }
}

/// `scaling.svg`: one log-log panel per dimension, dump and restore per engine.
pub fn svg(curves: &[Curve]) -> String {
    let (panel_w, panel_h) = (360.0, 280.0);
    let (left, top, bottom, gap) = (64.0, 36.0, 44.0, 24.0);
    let legend_h = 30.0;
    let columns = 2usize;
    let rows = curves.len().div_ceil(columns).max(1);
    let width = left + columns as f64 * (panel_w + gap);
    let height = legend_h + rows as f64 * (top + panel_h + bottom);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="{width}" height="{height}" fill="white"/>"#);
    for (index, (label, _, _, color, dash)) in SERIES.iter().enumerate() {
        let x = left + index as f64 * 150.0;
        let dash_attr = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" x2="{}" y1="16" y2="16" stroke="{color}" stroke-width="2"{dash_attr}/><text x="{}" y="20">{label}</text>"#,
            x + 28.0,
            x + 34.0
        );
    }
    for (index, curve) in curves.iter().enumerate() {
        let origin_x = left + (index % columns) as f64 * (panel_w + gap);
        let origin_y = legend_h + (index / columns) as f64 * (top + panel_h + bottom) + top;
        panel(&mut svg, curve, origin_x, origin_y, panel_w, panel_h);
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, curve: &Curve, x0: f64, y0: f64, w: f64, h: f64) {
    let lines: Vec<(&str, &str, Vec<(u64, f64)>)> = SERIES
        .iter()
        .map(|(_, is_criu, pick, color, dash)| (*color, *dash, series_of(curve, *is_criu, *pick)))
        .filter(|l| !l.2.is_empty())
        .collect();
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">time against {}</text>"#,
        x0 + w / 2.0,
        y0 - 10.0,
        curve.dimension.label
    );
    let _ = writeln!(svg, r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#888"/>"##);
    let xs: Vec<f64> = lines.iter().flat_map(|l| l.2.iter().map(|p| p.0 as f64)).collect();
    let ys: Vec<f64> = lines.iter().flat_map(|l| l.2.iter().map(|p| p.1.max(0.1))).collect();
    if xs.is_empty() {
        let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">not measured</text>"#, x0 + w / 2.0, y0 + h / 2.0);
        return;
    }
    let (min_x, max_x) = decades(&xs);
    let (min_y, max_y) = decades(&ys);
    let to_x = |v: f64| x0 + (v.log10() - min_x) / (max_x - min_x) * w;
    let to_y = |v: f64| y0 + h - (v.max(0.1).log10() - min_y) / (max_y - min_y) * h;
    let mut decade = min_x;
    while decade <= max_x + 1e-9 {
        let x = to_x(10f64.powf(decade));
        let _ = writeln!(svg, r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{}" stroke="#eee"/>"##, y0 + h);
        let _ = writeln!(svg, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, y0 + h + 14.0, count_label(10f64.powf(decade)));
        decade += 1.0;
    }
    let mut decade = min_y;
    while decade <= max_y + 1e-9 {
        let y = to_y(10f64.powf(decade));
        let _ = writeln!(svg, r##"<line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##, x0 + w);
        let _ = writeln!(svg, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, x0 - 4.0, y + 4.0, count_label(10f64.powf(decade)));
        decade += 1.0;
    }
    let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{} (log)</text>"#, x0 + w / 2.0, y0 + h + 30.0, curve.dimension.label);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">ms (log)</text>"#,
        x0 - 44.0,
        y0 + h / 2.0,
        x0 - 44.0,
        y0 + h / 2.0
    );
    for (color, dash, points) in &lines {
        let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", to_x(x as f64), to_y(y))).collect();
        let dash_attr = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let _ = writeln!(svg, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>"#, path.join(" "));
        for &(x, y) in points {
            let _ = writeln!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#, to_x(x as f64), to_y(y));
        }
    }
}

/// The whole decades (log10) around the values.
fn decades(values: &[f64]) -> (f64, f64) {
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min).log10().floor();
    let max = values.iter().cloned().fold(0.0f64, f64::max).log10().ceil();
    if max <= min {
        (min, min + 1.0)
    } else {
        (min, max)
    }
}

fn count_label(value: f64) -> String {
    if value >= 1000.0 {
        format!("{}k", (value / 1000.0).round())
    } else if value >= 1.0 {
        format!("{}", value.round())
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(dump_ms: f64) -> Summary {
        let median = Figures { dump_ms, restore_ms: dump_ms / 2.0, ..Figures::default() };
        Summary::Measured { median, runs: 1, failed: 0, note: None }
    }

    #[test]
    fn exponents_say_linear_and_quadratic() {
        let linear = [(10, 10.0), (100, 100.0), (1000, 1000.0)];
        let steps = exponents(&linear, 0.0);
        assert_eq!(steps.len(), 2);
        assert!(steps.iter().all(|s| (s.2 - 1.0).abs() < 1e-9));
        let quadratic = [(10, 1.0), (100, 100.0)];
        assert!((exponents(&quadratic, 0.0)[0].2 - 2.0).abs() < 1e-9);
        // Below the floor a step says nothing.
        assert!(exponents(&[(1, 5.0), (10, 5.5), (100, 50.0)], 10.0).is_empty());
    }

    #[test]
    fn the_hard_nofile_limit_is_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95553                95553                processes \n\
                      Max open files            1024                 20000                files     \n";
        assert_eq!(nofile_hard_limit(limits), Some(20000));
        assert_eq!(nofile_hard_limit("Max open files unlimited unlimited files"), Some(u64::MAX));
        assert_eq!(nofile_hard_limit("nothing"), None);
    }

    #[test]
    fn limits_name_the_setting() {
        assert!(machine_limit("vmas", 100_000, 65_530, 20_000).unwrap().contains("vm.max_map_count is 65530"));
        assert!(machine_limit("vmas", 10_000, 65_530, 20_000).is_none());
        assert!(machine_limit("fds", 100_000, 65_530, 20_000).unwrap().contains("CAP_SYS_RESOURCE"));
        assert!(machine_limit("fds", 10_000, 65_530, 20_000).is_none());
        assert!(machine_limit("tree", 1_000, 0, 0).is_none());
    }

    #[test]
    fn the_report_marks_a_superlinear_curve() {
        let dimension = Dimension { kind: "fds", label: "fds", counts: vec![10, 100, 1000, 10000] };
        let curve = Curve {
            dimension,
            points: vec![
                Point { count: 10, crust: measured(1.0), criu: Some(measured(10.0)) },
                Point { count: 100, crust: measured(10.0), criu: Some(measured(30.0)) },
                Point { count: 1000, crust: measured(100.0), criu: Some(measured(300.0)) },
                Point { count: 10000, crust: measured(10000.0), criu: Some(measured(3000.0)) },
            ],
            skipped: vec!["100000 fds: because".into()],
        };
        let text = markdown(std::slice::from_ref(&curve), "header");
        assert!(text.contains("| 10000 | 10000.0 | 5000.0 | 3000.0 | 1500.0 |"), "{text}");
        // The first step is under the floor (twice the smallest count's time).
        assert!(text.contains("- crust dump: growth exponents 100→1000: 1.00, 1000→10000: 2.00 **superlinear**\n"), "{text}");
        assert!(text.contains("- CRIU dump: growth exponents 100→1000: 1.00, 1000→10000: 1.00\n"), "{text}");
        assert!(text.contains("- not run: 100000 fds: because"));
        let picture = svg(&[curve]);
        assert_eq!(picture.matches("<polyline").count(), 4);
        assert!(picture.contains("time against fds"));
    }
}

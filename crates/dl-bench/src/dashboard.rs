//! The dashboard: one self-contained HTML page (inline CSS and SVG, no script, no network)
//! with the ratio table and, per case, a chart over backends and a chart over time.

use std::fmt::Write as _;

use crate::report::{TCH_TARGET, format_ms, rows};
use crate::schema::{PYTORCH, RunResults};

/// Escape text for HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A fixed colour per backend, so a backend keeps its colour across charts.
fn colour(backend: &str) -> &'static str {
    match backend {
        PYTORCH => "#ee4c2c",
        "flex" => "#1f77b4",
        "ndarray" => "#2ca02c",
        "tch" => "#9467bd",
        "tch-cuda" => "#e377c2",
        "wgpu" => "#8c564b",
        "wgpu-vulkan" => "#bcbd22",
        "cuda" => "#17becf",
        _ => "#7f7f7f",
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time (Howard Hinnant's days-to-civil algorithm).
pub fn utc_date(unix_time: u64) -> String {
    let days = (unix_time / 86_400) as i64;
    let secs = unix_time % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// Horizontal bars: the case's median on each backend of `run`, PyTorch included.
pub fn backends_chart(run: &RunResults, id: &str) -> String {
    let bars: Vec<(String, f64)> = run
        .backends()
        .into_iter()
        .filter_map(|b| run.median(id, &b).map(|m| (b, m)))
        .collect();
    let (width, row, left) = (360.0, 22.0, 70.0);
    let height = row * bars.len() as f64 + 8.0;
    let max = bars
        .iter()
        .map(|b| b.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{} by backend">"#,
        escape(id)
    );
    for (i, (backend, median)) in bars.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let w = (width - left - 70.0) * median / max;
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{ty}" text-anchor="end">{name}</text><rect x="{left}" y="{y}" width="{w:.1}" height="{h}" fill="{c}"><title>{name}: {ms} ms</title></rect><text x="{tx:.1}" y="{ty}">{ms} ms</text>"#,
            x = left - 6.0,
            ty = y + 14.0,
            name = escape(backend),
            h = row - 6.0,
            c = colour(backend),
            ms = format_ms(*median),
            tx = left + w + 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One line per backend: the case's median over the runs of `history` (oldest left).
pub fn history_chart(history: &[RunResults], id: &str) -> String {
    let (width, height, pad) = (360.0, 150.0, 34.0);
    let mut backends: Vec<String> = Vec::new();
    for run in history {
        for b in run.backends() {
            if run.median(id, &b).is_some() && !backends.contains(&b) {
                backends.push(b);
            }
        }
    }
    let max = history
        .iter()
        .flat_map(|run| backends.iter().filter_map(|b| run.median(id, b)))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let n = history.len().max(2) - 1;
    let x_of = |i: usize| pad + (width - 2.0 * pad) * i as f64 / n as f64;
    let y_of = |v: f64| height - pad + 10.0 - (height - pad - 4.0) * v / max;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{} over time">"#,
        escape(id)
    );
    let _ = write!(
        svg,
        r##"<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="2" y="14">{top} ms</text><text x="2" y="{b}">0</text>"##,
        b = y_of(0.0),
        r = width - pad,
        top = format_ms(max),
    );
    for (k, backend) in backends.iter().enumerate() {
        let points: Vec<(f64, f64, &RunResults)> = history
            .iter()
            .enumerate()
            .filter_map(|(i, run)| run.median(id, backend).map(|m| (x_of(i), y_of(m), run)))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let c = colour(backend);
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="1.5"/>"#,
            path.join(" ")
        );
        for (x, y, run) in &points {
            let _ = write!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{c}"><title>{} {} {}: {} ms</title></circle>"#,
                escape(backend),
                utc_date(run.unix_time),
                escape(&run.commit),
                format_ms(run.median(id, backend).unwrap_or(0.0)),
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{y}" fill="{c}">{}</text>"#,
            escape(backend),
            x = pad + 70.0 * k as f64,
            y = height - 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The ratio table as HTML, cells coloured by whether they beat PyTorch.
fn ratio_table(run: &RunResults) -> String {
    let backends = run.backends();
    let rust: Vec<&String> = backends.iter().filter(|b| *b != PYTORCH).collect();
    let mut html = String::from("<table><thead><tr><th>case</th>");
    for b in &backends {
        let _ = write!(html, "<th>{} ms</th>", escape(b));
    }
    for b in &rust {
        let _ = write!(html, "<th>{} / pytorch</th>", escape(b));
    }
    html.push_str("<th>target (best CPU)</th><th>met</th></tr></thead><tbody>");
    for row in rows(run) {
        let _ = write!(html, "<tr><td><code>{}</code></td>", escape(&row.id));
        for m in &row.medians {
            let _ = write!(html, "<td>{}</td>", m.map_or("–".into(), format_ms));
        }
        for (b, r) in rust.iter().zip(&row.ratios) {
            let limit = if b.as_str() == "tch" { TCH_TARGET } else { 1.0 };
            match r {
                Some(r) => {
                    let class = if *r <= limit { "good" } else { "bad" };
                    let _ = write!(html, r#"<td class="{class}">{r:.2}</td>"#);
                }
                None => html.push_str("<td>–</td>"),
            }
        }
        let target = row.target.map_or("–".into(), |t| format!("≤ {t:.1}"));
        let met = match row.met() {
            Some(true) => r#"<td class="good">yes</td>"#,
            Some(false) => r#"<td class="bad">no</td>"#,
            None => "<td>–</td>",
        };
        let _ = write!(html, "<td>{target}</td>{met}</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// The whole page for the latest run and the history (the latest run included, same mode).
pub fn render_html(latest: &RunResults, history: &[RunResults]) -> String {
    let same_mode: Vec<RunResults> = history
        .iter()
        .filter(|r| r.mode == latest.mode)
        .cloned()
        .collect();
    let m = &latest.machine;
    let mut html = String::from(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dl-rs benchmarks</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child{text-align:left}.good{background:#dff0d8}.bad{background:#f8d7da}
.charts{display:flex;flex-wrap:wrap;gap:1em}.case{border:1px solid #ddd;padding:0.5em}
svg{font-size:11px;display:block}h3{margin:0.2em 0;font-size:1em}
</style></head><body>
<h1>dl-rs benchmarks against PyTorch</h1>
"#,
    );
    let _ = write!(
        html,
        "<p>Run of {} UTC, commit <code>{}</code>, {} mode, {} warm-up + {} timed iterations, \
         median reported; {} intra-op threads on both sides; {} vs {}.</p>\
         <p>Machine: {}, {} logical CPUs, {}; load average {:.2} before and {:.2} after the run \
         (above the CPU count, other work competed and the times are noisy).</p>",
        utc_date(latest.unix_time),
        escape(&latest.commit),
        latest.mode.name(),
        latest.warmup,
        latest.repetitions,
        latest.threads,
        escape(&latest.burn),
        escape(latest.pytorch.as_deref().unwrap_or("no PyTorch run")),
        escape(&m.cpu),
        m.logical_cpus,
        escape(&m.os),
        m.load_before,
        m.load_after,
    );
    html.push_str("<h2>Time as a ratio to PyTorch (lower is better)</h2>");
    html.push_str(&ratio_table(latest));
    let _ = write!(
        html,
        "<h2>Per case: this run by backend, and {} runs of this mode over time</h2><div class=\"charts\">",
        same_mode.len()
    );
    for id in latest.ids() {
        let _ = write!(
            html,
            r#"<div class="case"><h3>{}</h3>{}{}</div>"#,
            escape(&id),
            backends_chart(latest, &id),
            history_chart(&same_mode, &id)
        );
    }
    html.push_str("</div></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_results;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_date(1_767_225_599), "2025-12-31 23:59");
    }

    #[test]
    fn backend_chart_has_a_bar_per_backend_longest_for_the_slowest() {
        let svg = backends_chart(&sample_results(0, 1.0), "mlp/train/b64");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3);
        // flex (3 ms) is the slowest: full width 220.
        assert!(
            svg.contains(r##"width="220.0" height="16" fill="#1f77b4""##),
            "{svg}"
        );
        assert!(svg.contains("<title>pytorch: 2.00 ms</title>"));
    }

    #[test]
    fn history_chart_draws_one_line_per_backend_with_a_point_per_run() {
        let history = [sample_results(0, 1.0), sample_results(86_400, 2.0)];
        let svg = history_chart(&history, "mlp/train/b64");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert!(svg.contains("1970-01-02 00:00"));
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut run = sample_results(0, 1.0);
        run.commit = "<script>".into();
        let html = render_html(&run, std::slice::from_ref(&run));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script"));
        // No external resource: the only URL is the SVG namespace.
        let without_ns = html.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !without_ns.contains("http"),
            "external reference in the page"
        );
        assert!(!html.contains("src="));
        assert_eq!(html.matches("<svg").count(), 2 * run.ids().len());
        assert!(html.contains(r#"<td class="bad">1.50</td>"#));
        assert!(html.contains(r#"<td class="good">0.75</td>"#));
    }
}

//! What `dynamo bench` measures and reports: per-worker tallies of latency (HDR histograms),
//! errors and the per-second series, merged into a [`Report`] printed as text or JSON and
//! drawn as SVG (plotters).
//!
//! This module must not know how requests are made; workers hand it latencies and errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use dynamo_client::client::ClientError;
use hdrhistogram::Histogram;

/// The kinds of operation, each with its own histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Read,
    Update,
    Insert,
    ReadModifyWrite,
    Ping,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Read,
        Op::Update,
        Op::Insert,
        Op::ReadModifyWrite,
        Op::Ping,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::ReadModifyWrite => "rmw",
            Op::Ping => "ping",
        }
    }
}

/// What one worker measured.
pub(crate) struct Tally {
    histograms: BTreeMap<Op, Histogram<u64>>,
    errors: BTreeMap<String, (u64, String)>,
    pub(crate) siblings_seen: u64,
    /// Operations completed per second of the run.
    per_second: Vec<u64>,
    /// The slowest operation that completed in each second of the run, in µs: where a tail
    /// comes from (a flush, a compaction, a stalled node) shows as the seconds it spikes in.
    slowest_per_second: Vec<u64>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            histograms: BTreeMap::new(),
            errors: BTreeMap::new(),
            siblings_seen: 0,
            per_second: Vec::new(),
            slowest_per_second: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, op: Op, latency: Duration, second: usize) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let histogram = self.histograms.entry(op).or_insert_with(new_histogram);
        histogram.saturating_record(micros);
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
            self.slowest_per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
        self.slowest_per_second[second] = self.slowest_per_second[second].max(micros);
    }

    pub(crate) fn error(&mut self, error: &ClientError) {
        let kind = match error {
            ClientError::Server(reply) => format!("{:?}", reply.kind),
            ClientError::Unreachable(_) => "Unreachable".to_string(),
            other => format!("{other}").chars().take(40).collect(),
        };
        let entry = self
            .errors
            .entry(kind)
            .or_insert_with(|| (0, error.to_string()));
        entry.0 += 1;
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        for (op, histogram) in other.histograms {
            let mine = self.histograms.entry(op).or_insert_with(new_histogram);
            // Both span the same range, so adding cannot fail.
            let _ = mine.add(&histogram);
        }
        for (kind, (count, first)) in other.errors {
            self.errors.entry(kind).or_insert((0, first)).0 += count;
        }
        self.siblings_seen += other.siblings_seen;
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
            self.slowest_per_second.resize(other.per_second.len(), 0);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(other.per_second) {
            *mine += theirs;
        }
        for (mine, theirs) in self
            .slowest_per_second
            .iter_mut()
            .zip(other.slowest_per_second)
        {
            *mine = (*mine).max(theirs);
        }
    }
}

/// 1 µs to 100 s at 3 significant figures.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant bounds are valid")
}

/// The figures of one run.
pub(crate) struct Report {
    header: String,
    elapsed: Duration,
    /// Per operation kind, and "all": (name, count, p50, p90, p99, p99.9, max) in µs.
    rows: Vec<(String, u64, [u64; 5])>,
    pub(crate) total_ops: u64,
    errors: BTreeMap<String, (u64, String)>,
    siblings_seen: u64,
    per_second: Vec<u64>,
    /// See [`Tally::slowest_per_second`].
    slowest_per_second: Vec<u64>,
    load: Option<(Duration, u64)>,
    /// How the client's reads were answered (runs that read through the QUIC client).
    read_paths: Option<dynamo_client::ReadPaths>,
    /// The latency distribution of all operations: (nines, milliseconds), where nines is
    /// -log10(1 - quantile) (1 for p90, 2 for p99, 3 for p99.9), the maximum at 5.
    curve: Vec<(f64, f64)>,
}

/// Quantiles drawn in the latency plots.
const CURVE: [f64; 12] = [
    0.0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999,
];

/// One line of a plot: its name and its points.
pub(crate) type Series = (String, Vec<(f64, f64)>);

/// Draws `series` as lines into the SVG file `path`.
pub(crate) fn plot(
    path: &std::path::Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
) -> Result<()> {
    use plotters::prelude::*;
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()?;
        for (i, (name, line)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

impl Report {
    /// The report of a run described by `header` (what ran, how), from its merged tally.
    pub(crate) fn new(
        header: String,
        tally: &Tally,
        elapsed: Duration,
        load: Option<(Duration, u64)>,
    ) -> Self {
        let figures = |h: &Histogram<u64>| {
            [
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
            ]
        };
        let mut all = new_histogram();
        let mut rows = Vec::new();
        for op in Op::ALL {
            if let Some(h) = tally.histograms.get(&op) {
                let _ = all.add(h);
                rows.push((op.name().to_string(), h.len(), figures(h)));
            }
        }
        if rows.len() > 1 {
            rows.push(("all".to_string(), all.len(), figures(&all)));
        }
        let mut curve: Vec<(f64, f64)> = CURVE
            .iter()
            .map(|&q| (-(1.0 - q).log10(), all.value_at_quantile(q) as f64 / 1000.0))
            .collect();
        curve.push((5.0, all.max() as f64 / 1000.0));
        Self {
            header,
            elapsed,
            rows,
            total_ops: all.len(),
            errors: tally.errors.clone(),
            siblings_seen: tally.siblings_seen,
            per_second: tally.per_second.clone(),
            slowest_per_second: tally.slowest_per_second.clone(),
            load,
            read_paths: None,
            curve,
        }
    }

    /// How long the load phase took, if there was one.
    pub(crate) fn load_seconds(&self) -> Option<f64> {
        self.load.map(|(took, _)| took.as_secs_f64())
    }

    /// Writes of the load phase that failed.
    pub(crate) fn load_failed(&self) -> u64 {
        self.load.map_or(0, |(_, failed)| failed)
    }

    /// Operations per second of the whole run.
    pub(crate) fn throughput(&self) -> f64 {
        self.ops_per_sec(self.total_ops)
    }

    /// The "all" row (or the only one): p50, p90, p99, p99.9 and max in milliseconds.
    pub(crate) fn overall_ms(&self) -> [f64; 5] {
        self.rows.last().map_or([0.0; 5], |(_, _, figures)| {
            figures.map(|us| us as f64 / 1000.0)
        })
    }

    /// The latency distribution (see the field).
    pub(crate) fn curve(&self) -> &[(f64, f64)] {
        &self.curve
    }

    /// Writes `latency.svg`, `throughput.svg` and `slowest.svg` for this run into `dir`.
    pub(crate) fn plots(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        plot(
            &dir.join("latency.svg"),
            &self.header,
            (
                "nines (1 = p90, 2 = p99, 3 = p99.9, 5 = max)",
                "latency, ms",
            ),
            &[("all operations".to_string(), self.curve.clone())],
        )?;
        let over_time = self
            .per_second
            .iter()
            .enumerate()
            .map(|(second, &ops)| (second as f64, ops as f64))
            .collect();
        plot(
            &dir.join("throughput.svg"),
            &self.header,
            ("second of the run", "operations per second"),
            &[("all operations".to_string(), over_time)],
        )?;
        let slowest = self
            .slowest_per_second
            .iter()
            .enumerate()
            .map(|(second, &us)| (second as f64, us as f64 / 1000.0))
            .collect();
        plot(
            &dir.join("slowest.svg"),
            &self.header,
            ("second of the run", "slowest operation of the second, ms"),
            &[("all operations".to_string(), slowest)],
        )
    }

    /// Errors of every kind.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    fn ops_per_sec(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report with how the client's reads were answered, when any read went through it.
    pub(crate) fn with_read_paths(mut self, paths: dynamo_client::ReadPaths) -> Self {
        let reads =
            paths.from_copies + paths.copies_differed + paths.too_few_copies + paths.coordinated;
        self.read_paths = (reads > 0).then_some(paths);
        self
    }

    pub(crate) fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let errors: u64 = self.errors.values().map(|(n, _)| n).sum();
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.header);
        let _ = writeln!(
            out,
            "{:.0} ops/s: {} operations in {:.1} s, {errors} errors",
            self.ops_per_sec(self.total_ops),
            self.total_ops,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "{:<7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "op", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (name, count, [p50, p90, p99, p999, max]) in &self.rows {
            let _ = writeln!(
                out,
                "{name:<7} {count:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
                self.ops_per_sec(*count),
                ms(*p50),
                ms(*p90),
                ms(*p99),
                ms(*p999),
                ms(*max)
            );
        }
        let slowest: Vec<String> = self
            .slowest_per_second
            .iter()
            .map(|&us| format!("{:.1}", ms(us)))
            .collect();
        let _ = writeln!(out, "slowest by second, ms: {}", slowest.join(" "));
        if self.siblings_seen > 0 {
            let _ = writeln!(out, "reads that saw siblings: {}", self.siblings_seen);
        }
        if let Some(paths) = self.read_paths {
            let _ = writeln!(
                out,
                "reads answered: {} from R equal copies; by a coordinator: {} after copies differed, {} after too few copies, {} without copies",
                paths.from_copies, paths.copies_differed, paths.too_few_copies, paths.coordinated
            );
        }
        for (kind, (count, first)) in &self.errors {
            let _ = writeln!(out, "errors {kind}: {count}, the first: {first}");
        }
        out
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let rows: Vec<_> = self
            .rows
            .iter()
            .map(|(name, count, [p50, p90, p99, p999, max])| {
                serde_json::json!({
                    "op": name, "count": count, "ops_per_sec": self.ops_per_sec(*count),
                    "p50_ms": *p50 as f64 / 1000.0, "p90_ms": *p90 as f64 / 1000.0,
                    "p99_ms": *p99 as f64 / 1000.0, "p999_ms": *p999 as f64 / 1000.0,
                    "max_ms": *max as f64 / 1000.0,
                })
            })
            .collect();
        let errors: serde_json::Map<String, serde_json::Value> = self
            .errors
            .iter()
            .map(|(kind, (count, first))| {
                (
                    kind.clone(),
                    serde_json::json!({"count": count, "first": first}),
                )
            })
            .collect();
        serde_json::json!({
            "run": self.header,
            "seconds": self.elapsed.as_secs_f64(),
            "ops": self.total_ops,
            "ops_per_sec": self.ops_per_sec(self.total_ops),
            "operations": rows,
            "errors": errors,
            "siblings_seen": self.siblings_seen,
            "read_paths": self.read_paths.map(|p| serde_json::json!({
                "from_copies": p.from_copies,
                "copies_differed": p.copies_differed,
                "too_few_copies": p.too_few_copies,
                "coordinated": p.coordinated,
            })),
            "ops_per_second_over_time": self.per_second,
            "slowest_ms_over_time": self.slowest_per_second.iter().map(|&us| us as f64 / 1000.0).collect::<Vec<_>>(),
            "load_seconds": self.load.map(|(took, _)| took.as_secs_f64()),
            "load_failed": self.load.map(|(_, failed)| failed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report's figures come from the histograms, per operation and for all together.
    #[test]
    fn a_report_adds_up() {
        let mut tally = Tally::new();
        for ms in 1..=100u64 {
            tally.record(Op::Read, Duration::from_millis(ms), 0);
        }
        tally.record(Op::Update, Duration::from_millis(500), 1);
        let report = Report::new("a run".into(), &tally, Duration::from_secs(2), None);
        assert_eq!(report.total_ops, 101);
        assert!((report.throughput() - 50.5).abs() < 1e-9);
        let [p50, _, _, _, max] = report.overall_ms();
        assert!((p50 - 51.0).abs() < 0.5, "{p50}");
        assert!((max - 500.0).abs() < 1.0, "{max}");
        let text = report.text();
        assert!(
            text.contains("read") && text.contains("update") && text.contains("all"),
            "{text}"
        );
        assert_eq!(
            report.json()["ops_per_second_over_time"],
            serde_json::json!([100, 1])
        );
        assert_eq!(
            report.json()["slowest_ms_over_time"],
            serde_json::json!([100.0, 500.0])
        );
        assert!(
            text.contains("slowest by second, ms: 100.0 500.0"),
            "{text}"
        );
    }
}

//! The replay as a table a person reads.

use std::fmt::Write as _;

use super::run::Outcome;

/// Renders every decision as a row, then the failed expectations and a summary line.
pub fn render(name: &str, outcome: &Outcome) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "TIME".into(),
        "STEP".into(),
        "STATE".into(),
        "ACTION".into(),
        "PODS".into(),
        "WEIGHT".into(),
        "MESSAGE".into(),
    ]];
    for row in &outcome.rows {
        let time = humantime::format_duration(row.at).to_string();
        let step = format!("{}/{}", row.progress.step, row.steps);
        let (action, weight, message) = match &row.decision {
            Ok(d) => (
                d.action.to_string(),
                d.target
                    .traffic
                    .weight
                    .map_or_else(|| "-".to_owned(), |w| w.to_string()),
                d.message.clone(),
            ),
            Err(e) => ("error".into(), "-".into(), e.clone()),
        };
        let message = match &row.note {
            Some(note) => format!("{message}   # {note}"),
            None => message,
        };
        rows.push([
            time,
            step,
            row.progress.state.to_string(),
            action,
            row.pods.to_string(),
            weight,
            message,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    if !name.is_empty() {
        let _ = writeln!(out, "scenario: {name}");
    }
    for row in &rows {
        for (c, cell) in row.iter().enumerate() {
            if c < 6 {
                let _ = write!(out, "{cell:<width$}  ", width = widths[c]);
            } else {
                let _ = write!(out, "{cell}");
            }
        }
        out.push('\n');
    }
    for f in &outcome.failures {
        let _ = writeln!(
            out,
            "FAILED at {} (tick {}): {}",
            humantime::format_duration(f.at),
            f.tick + 1,
            f.message
        );
    }
    let passed = outcome.checked - failed_ticks(outcome);
    let _ = writeln!(
        out,
        "{} decisions; {} passed, {} failed",
        outcome.rows.len(),
        passed,
        failed_ticks(outcome)
    );
    out
}

fn failed_ticks(outcome: &Outcome) -> usize {
    let mut ticks: Vec<usize> = outcome.failures.iter().map(|f| f.tick).collect();
    ticks.dedup();
    ticks.len()
}

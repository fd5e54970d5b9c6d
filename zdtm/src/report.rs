//! Suite results: the human table, the closing `zdtm: N passed, N failed, N skipped`
//! line and the JSON report.

use crate::harness::{TestOutcome, Verdict};

/// One finished test, as reported.
#[derive(Debug)]
pub struct TestResult {
    /// Test name.
    pub name: String,
    /// `host` or `ns`.
    pub flavor: &'static str,
    /// Its outcome.
    pub outcome: TestOutcome,
}

/// Everything the suite ran.
#[derive(Debug, Default)]
pub struct Report {
    /// In run order.
    pub results: Vec<TestResult>,
}

impl Report {
    /// (passed, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for result in &self.results {
            match result.outcome.verdict {
                Verdict::Passed => counts.0 += 1,
                Verdict::Failed(_) => counts.1 += 1,
                Verdict::Skipped(_) => counts.2 += 1,
            }
        }
        counts
    }

    /// `zdtm: N passed, N failed, N skipped`.
    pub fn summary_line(&self) -> String {
        let (passed, failed, skipped) = self.counts();
        format!("zdtm: {passed} passed, {failed} failed, {skipped} skipped")
    }

    /// The JSON document of `--json`.
    pub fn to_json(&self, arch: &str, kernel: &str) -> serde_json::Value {
        let (passed, failed, skipped) = self.counts();
        let tests: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|result| {
                let (kind, reason) = result_and_reason(&result.outcome.verdict);
                serde_json::json!({
                    "name": result.name,
                    "flavor": result.flavor,
                    "result": kind,
                    "reason": reason,
                    "dump_ms": result.outcome.dump_ms,
                    "restore_ms": result.outcome.restore_ms,
                })
            })
            .collect();
        serde_json::json!({
            "arch": arch,
            "kernel": kernel,
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
            "tests": tests,
        })
    }
}

/// `"pass" | "fail" | "skip"` and the reason (null for a pass).
pub fn result_and_reason(verdict: &Verdict) -> (&'static str, Option<String>) {
    match verdict {
        Verdict::Passed => ("pass", None),
        Verdict::Skipped(reason) => ("skip", Some(reason.clone())),
        Verdict::Failed(error) => ("fail", Some(format!("{error:#}"))),
    }
}

/// Header of the human table.
pub fn table_header() -> String {
    format!(
        "{:<20} {:<4} {:<6} {:>9} {:>11}  {}",
        "test", "flav", "result", "dump ms", "restore ms", "reason"
    )
}

/// One row of the human table; a failure's reason keeps only its first line (the full
/// error with log tails is printed under the row).
pub fn table_row(result: &TestResult) -> String {
    let (kind, reason) = result_and_reason(&result.outcome.verdict);
    let millis = |value: Option<u64>| value.map(|ms| ms.to_string()).unwrap_or_else(|| "-".into());
    let first_line = reason
        .as_deref()
        .and_then(|text| text.lines().next())
        .unwrap_or("");
    format!(
        "{:<20} {:<4} {:<6} {:>9} {:>11}  {}",
        result.name,
        result.flavor,
        kind,
        millis(result.outcome.dump_ms),
        millis(result.outcome.restore_ms),
        first_line
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, verdict: Verdict) -> TestResult {
        TestResult {
            name: name.into(),
            flavor: "host",
            outcome: TestOutcome {
                verdict,
                dump_ms: Some(12),
                restore_ms: None,
            },
        }
    }

    #[test]
    fn json_has_exactly_the_agreed_shape() {
        let report = Report {
            results: vec![
                result("a", Verdict::Passed),
                result("b", Verdict::Skipped("needs root".into())),
                result("c", Verdict::Failed(anyhow::anyhow!("dump failed"))),
            ],
        };
        assert_eq!(report.summary_line(), "zdtm: 1 passed, 1 failed, 1 skipped");
        let json = report.to_json("x86_64", "6.1.0");
        assert_eq!(
            json,
            serde_json::json!({
                "arch": "x86_64", "kernel": "6.1.0", "passed": 1, "failed": 1, "skipped": 1,
                "tests": [
                    {"name": "a", "flavor": "host", "result": "pass", "reason": null, "dump_ms": 12, "restore_ms": null},
                    {"name": "b", "flavor": "host", "result": "skip", "reason": "needs root", "dump_ms": 12, "restore_ms": null},
                    {"name": "c", "flavor": "host", "result": "fail", "reason": "dump failed", "dump_ms": 12, "restore_ms": null},
                ]
            })
        );
    }
}

//! Per-deployment reports: a JSONL event log while it runs, then a Markdown and a JSON report.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fmt::{millis, rfc3339_ms};
use crate::scheduler::{DeployEvent, Level, RunOutcome, ServiceReport};

/// Appends deployment events to `events.jsonl`, one JSON object per line.
pub struct EventLog {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl EventLog {
    pub fn create(dir: &Path) -> std::io::Result<EventLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("events.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(EventLog {
            file: std::io::BufWriter::new(file),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Timestamps are written as RFC 3339 (`ts`) as well as unix millis.
    pub fn append(&mut self, e: &DeployEvent) -> std::io::Result<()> {
        let mut v = serde_json::to_value(e).map_err(std::io::Error::other)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("ts".into(), rfc3339_ms(e.ts_ms).into());
        }
        serde_json::to_writer(&mut self.file, &v).map_err(std::io::Error::other)?;
        self.file.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// How this deployment compares with the earlier ones of the same stack.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Comparison {
    /// Earlier finished deployments considered.
    pub previous: usize,
    pub previous_duration_ms: Option<i64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub deployment_id: String,
    pub stack: String,
    pub kind: String,
    /// Final deployment state (COMPLETE, DEGRADED, FAILED, INTERRUPTED).
    pub state: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    pub stack_file: String,
    pub services: Vec<ServiceReport>,
    pub critical_chain: Vec<String>,
    /// Failed start attempts that were retried (or not).
    pub retries: usize,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    pub comparison: Comparison,
    /// What to do next, when something went wrong.
    pub next_steps: Vec<String>,
    /// The deployment's phases (checkpoints) in the order they finished.
    #[serde(default)]
    pub phases: Vec<PhaseReport>,
    /// What the stack file says that the process runtime does not act on (ignored container
    /// keys, services without a class label, unset variables).
    #[serde(default)]
    pub notices: Vec<String>,
}

/// How one phase of a deployment ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseReport {
    pub phase: String,
    /// DONE, FAILED or SKIPPED.
    pub status: String,
    pub duration_ms: i64,
    pub detail: Option<String>,
}

impl Report {
    pub fn from_run(
        header: ReportHeader,
        outcome: &RunOutcome,
        events: &[DeployEvent],
        critical_chain: Vec<String>,
        comparison: Comparison,
        next_steps: Vec<String>,
    ) -> Report {
        let pick = |level: Level| -> Vec<String> {
            events
                .iter()
                .filter(|e| e.level == level)
                .map(|e| match &e.service {
                    Some(s) => format!("{s}: {}", e.message),
                    None => e.message.clone(),
                })
                .collect()
        };
        Report {
            deployment_id: header.deployment_id,
            stack: header.stack,
            kind: header.kind,
            state: header.state,
            started_at: rfc3339_ms(header.started_at_ms),
            finished_at: rfc3339_ms(header.finished_at_ms),
            duration_ms: header.finished_at_ms - header.started_at_ms,
            stack_file: header.stack_file,
            services: outcome.services.values().cloned().collect(),
            critical_chain,
            retries: outcome
                .services
                .values()
                .map(|s| s.attempts.iter().filter(|a| !a.ok).count())
                .sum(),
            warnings: pick(Level::Warn),
            errors: pick(Level::Error),
            comparison,
            next_steps,
            phases: Vec::new(),
            notices: Vec::new(),
        }
    }

    /// Write `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.md"), self.markdown())
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!(
            "# Deployment {} of stack `{}`\n\n",
            self.deployment_id, self.stack
        ));
        md.push_str(&format!(
            "| | |\n|---|---|\n| outcome | **{}** |\n| kind | {} |\n| started | {} |\n| finished | {} |\n| duration | {} |\n| stack file | `{}` |\n| retries | {} |\n\n",
            self.state,
            self.kind,
            self.started_at,
            self.finished_at,
            millis(self.duration_ms),
            self.stack_file,
            self.retries
        ));
        if !self.phases.is_empty() {
            md.push_str("## Phases\n\n| phase | status | duration | detail |\n|---|---|---|---|\n");
            for p in &self.phases {
                md.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    p.phase,
                    p.status,
                    millis(p.duration_ms),
                    p.detail.as_deref().unwrap_or("").replace('|', "\\|")
                ));
            }
            md.push('\n');
        }
        md.push_str("## Services\n\n| service | class | outcome | attempts | started at | ready at | time to ready | note |\n|---|---|---|---|---|---|---|---|\n");
        for s in &self.services {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.name,
                s.class.as_str(),
                s.outcome.as_str(),
                s.attempts.len(),
                opt_ms(s.start_offset_ms),
                opt_ms(s.ready_offset_ms),
                opt_ms(s.time_to_ready_ms),
                s.reason.as_deref().unwrap_or("").replace('|', "\\|"),
            ));
        }
        if !self.critical_chain.is_empty() {
            md.push_str(&format!(
                "\n## Critical chain\n\n{}\n",
                self.critical_chain.join(" → ")
            ));
        }
        for (title, items) in [
            ("Errors", &self.errors),
            ("Warnings", &self.warnings),
            ("Next steps", &self.next_steps),
            ("Notices", &self.notices),
        ] {
            if !items.is_empty() {
                md.push_str(&format!("\n## {title}\n\n"));
                for i in items {
                    md.push_str(&format!("- {i}\n"));
                }
            }
        }
        md.push_str("\n## Compared with earlier deployments\n\n");
        let c = &self.comparison;
        if c.previous == 0 {
            md.push_str("This is the first recorded deployment of this stack.\n");
        } else {
            md.push_str(&format!(
                "{} earlier deployments; previous took {}; p50 {}, p95 {}.\n",
                c.previous,
                opt_ms(c.previous_duration_ms),
                opt_ms(c.p50_ms),
                opt_ms(c.p95_ms)
            ));
        }
        md
    }
}

/// The facts about a deployment that the scheduler does not know.
#[derive(Debug, Clone)]
pub struct ReportHeader {
    pub deployment_id: String,
    pub stack: String,
    pub kind: String,
    pub state: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub stack_file: String,
}

fn opt_ms(v: Option<i64>) -> String {
    v.map(millis).unwrap_or_else(|| "-".into())
}

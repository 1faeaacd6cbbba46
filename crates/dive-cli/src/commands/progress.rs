//! Showing a deployment as it happens: a live per-service table on a terminal, one line per
//! event otherwise, or JSON events: on stdout with `--json`, on stderr (instead of the text
//! lines) with `--log-format json`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use dive_orchestrator::fmt::{duration, millis};
use dive_orchestrator::scheduler::{DeployEvent, Level};

use crate::context::{Context, LogFormat};

pub enum Progress {
    /// Redraws one line per service in place.
    Live(LiveTable),
    /// One line per event (pipes, CI logs).
    Lines { t0: Instant, quiet: bool },
    /// One JSON object per event on stdout.
    Json,
    /// One JSON object per event on stderr, the log stream (`--log-format json`).
    JsonLog { quiet: bool },
}

impl Progress {
    /// `json` is the command's `--json`: events become its output on stdout.
    pub fn new(json: bool, ctx: &Context, services: &[String]) -> Progress {
        let quiet = ctx.verbosity < 0;
        if json {
            Progress::Json
        } else if ctx.log_format == LogFormat::Json {
            Progress::JsonLog { quiet }
        } else if ctx.interactive && !quiet {
            Progress::Live(LiveTable::new(services))
        } else {
            Progress::Lines {
                t0: Instant::now(),
                quiet,
            }
        }
    }

    pub fn show(&mut self, e: &DeployEvent) {
        match self {
            Progress::Json => json_line(std::io::stdout().lock(), e),
            Progress::JsonLog { quiet } => {
                if !(*quiet && e.level == Level::Info) {
                    json_line(std::io::stderr().lock(), e);
                }
            }
            Progress::Lines { t0, quiet } => {
                if *quiet && e.level == Level::Info {
                    return;
                }
                let who = e.service.as_deref().unwrap_or("-");
                let took = e
                    .duration_ms
                    .map(|d| format!(" ({})", millis(d)))
                    .unwrap_or_default();
                eprintln!(
                    "{:>8} {:<5} {:<20} {:<12} {}{}",
                    duration(t0.elapsed()),
                    level(e.level),
                    who,
                    e.event,
                    e.message,
                    took
                );
            }
            Progress::Live(t) => t.update(e),
        }
    }

    /// Leave the terminal tidy before the summary is printed.
    pub fn finish(&mut self) {
        if let Progress::Live(t) = self {
            t.draw();
        }
    }
}

/// Progress is best effort: a failed write must not stop the deployment it reports on.
fn json_line(mut out: impl Write, e: &DeployEvent) {
    let _ = serde_json::to_writer(&mut out, e);
    let _ = writeln!(out);
}

fn level(l: Level) -> &'static str {
    match l {
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "ERROR",
    }
}

pub struct LiveTable {
    t0: Instant,
    rows: BTreeMap<String, (String, String)>, // service -> (state, detail)
    drawn: usize,
    notes: Vec<String>,
}

impl LiveTable {
    fn new(services: &[String]) -> LiveTable {
        LiveTable {
            t0: Instant::now(),
            rows: services
                .iter()
                .map(|s| (s.clone(), ("waiting".to_string(), String::new())))
                .collect(),
            drawn: 0,
            notes: Vec::new(),
        }
    }

    fn update(&mut self, e: &DeployEvent) {
        match &e.service {
            Some(s) => {
                let detail = match e.duration_ms {
                    Some(d) => format!("{} ({})", e.message, millis(d)),
                    None => e.message.clone(),
                };
                self.rows.insert(s.clone(), (e.event.clone(), detail));
            }
            None => self.notes.push(e.message.clone()),
        }
        self.draw();
    }

    fn draw(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.drawn > 0 {
            let _ = write!(err, "\x1b[{}A", self.drawn);
        }
        let mut lines = 0;
        for n in &self.notes {
            let _ = writeln!(err, "\x1b[2K  {n}");
            lines += 1;
        }
        let _ = writeln!(err, "\x1b[2K  deploying… {}", duration(self.t0.elapsed()));
        lines += 1;
        for (svc, (state, detail)) in &self.rows {
            let mark = match state.as_str() {
                "healthy" | "running" | "completed" | "unchanged" => "✔",
                "failed" => "✘",
                "skipped" => "–",
                "waiting" => "·",
                _ => "…",
            };
            let _ = writeln!(err, "\x1b[2K  {mark} {svc:<22} {state:<10} {detail}");
            lines += 1;
        }
        self.drawn = lines;
        let _ = err.flush();
    }
}

//! `dive policy test|eval`: run the Rego unit tests, evaluate one input document.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use dive_policy::{Entrypoint, Input, Outcome, Pdp, Sources, run_tests};

use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run the Rego unit tests (`test_*` rules), like `opa test`; -v lists every test.
    Test {
        /// Directory of .rego files (policies and *_test.rego).
        #[arg(default_value = "policies", value_name = "DIR")]
        dir: PathBuf,
        /// Directory of data documents (default: the embedded ones).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Only run tests whose name contains this.
        #[arg(long, value_name = "TEXT")]
        run: Option<String>,
    },
    /// Decide one input document ({subject, action, resource, context}, or {"input": …}) and print
    /// the decision as JSON.
    Eval {
        /// The input document; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Directory of data documents (default: the embedded ones).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Directory of .rego policies (default: the embedded ones).
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
        /// Which decision to make.
        #[arg(long, value_enum, default_value = "authz")]
        entrypoint: EntrypointArg,
        /// Print the normalised input the policy decides on instead of the decision (to write
        /// Rego tests against).
        #[arg(long)]
        normalized: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EntrypointArg {
    Authz,
    Admin,
    Guardrails,
}

impl From<EntrypointArg> for Entrypoint {
    fn from(e: EntrypointArg) -> Entrypoint {
        match e {
            EntrypointArg::Authz => Entrypoint::Authz,
            EntrypointArg::Admin => Entrypoint::Admin,
            EntrypointArg::Guardrails => Entrypoint::Guardrails,
        }
    }
}

pub fn run(command: PolicyCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Test { dir, data, run } => {
            test(dir, data, run.as_deref(), ctx.verbosity > 0)
        }
        PolicyCommand::Eval {
            input,
            data,
            policies,
            entrypoint,
            normalized,
        } => eval(&input, data, policies, entrypoint.into(), normalized),
    }
}

fn test(
    dir: PathBuf,
    data: Option<PathBuf>,
    filter: Option<&str>,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        return Err(bad_input(format!(
            "{} is not a directory of .rego files",
            dir.display()
        )));
    }
    let snapshot = Sources {
        policy_dir: Some(dir),
        data_dir: data,
    }
    .load()
    .map_err(|e| bad_input(e.to_string()))?;
    let results = run_tests(&snapshot, filter).map_err(|e| bad_input(e.to_string()))?;
    let mut file = None;
    for r in &results {
        let shown = verbose || r.outcome != Outcome::Pass;
        if !shown {
            continue;
        }
        if verbose && file != Some(&r.file) {
            if file.is_some() {
                println!();
            }
            println!("{}:", r.file);
            file = Some(&r.file);
        }
        match &r.outcome {
            Outcome::Pass => println!("{}: PASS ({})", r.name, ms(r.duration)),
            Outcome::Fail => println!("{}: FAIL ({})", r.name, ms(r.duration)),
            Outcome::Error(e) => println!(
                "{}: ERROR ({})\n  {}",
                r.name,
                ms(r.duration),
                e.replace('\n', "\n  ")
            ),
        }
    }
    let passed = results
        .iter()
        .filter(|r| r.outcome == Outcome::Pass)
        .count();
    let failed = results
        .iter()
        .filter(|r| r.outcome == Outcome::Fail)
        .count();
    let errors = results.len() - passed - failed;
    println!("{}", "-".repeat(80));
    if results.is_empty() {
        println!("no tests found");
        return Ok(ExitCode::from(1));
    }
    if passed > 0 {
        println!("PASS: {passed}/{}", results.len());
    }
    if failed > 0 {
        println!("FAIL: {failed}/{}", results.len());
    }
    if errors > 0 {
        println!("ERROR: {errors}/{}", results.len());
    }
    Ok(if passed == results.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1000.0)
}

fn eval(
    input: &PathBuf,
    data: Option<PathBuf>,
    policies: Option<PathBuf>,
    entrypoint: Entrypoint,
    normalized: bool,
) -> anyhow::Result<ExitCode> {
    let text = if input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(input)
            .map_err(|e| bad_input(format!("cannot read {}: {e}", input.display())))?
    };
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad_input(format!("{}: not JSON: {e}", input.display())))?;
    if !doc.is_object() {
        return Err(bad_input(format!(
            "{}: the input document must be a JSON object",
            input.display()
        )));
    }
    let pdp = Pdp::new(Sources {
        policy_dir: policies,
        data_dir: data,
    })
    .map_err(|e| bad_input(e.to_string()))?
    .without_cache();
    let input = Input::from_json(doc);
    if normalized {
        let doc = pdp.normalized_input(entrypoint, &input);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let decision = pdp.decide_at(entrypoint, &input);
    println!("{}", serde_json::to_string_pretty(&decision)?);
    Ok(ExitCode::SUCCESS)
}

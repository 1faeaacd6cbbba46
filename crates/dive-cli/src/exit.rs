//! Exit codes: 0 ok, 1 failure, 2 bad input (usage, malformed files or requests).

use std::process::ExitCode;

use crate::context::LogFormat;

/// An error caused by the caller's input rather than by the system: exit code 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Shorthand for returning a bad-input error from a command.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// Print an error with its causes on stderr — as text, or as one JSON object with
/// `--log-format json` — and choose the exit code.
pub fn report(err: &anyhow::Error, format: LogFormat) -> ExitCode {
    if crate::closed_pipe::is_closed_pipe_error(err) {
        crate::closed_pipe::exit_quietly();
    }
    let code: u8 = if is_bad_input(err) { 2 } else { 1 };
    match format {
        LogFormat::Text => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
        }
        LogFormat::Json => eprintln!("{}", error_json(err, code)),
    }
    ExitCode::from(code)
}

/// The error as a log record: the same `level`/`message` keys as the deployment events.
fn error_json(err: &anyhow::Error, code: u8) -> serde_json::Value {
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    serde_json::json!({
        "level": "error",
        "message": err.to_string(),
        "causes": causes,
        "exit_code": code,
    })
}

fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<BadInput>().is_some())
}

//! Exit codes: 0 ok, 1 failure, 2 bad input (usage, malformed files or requests).

use std::process::ExitCode;

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

/// Print an error with its causes and choose the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if crate::closed_pipe::is_closed_pipe_error(err) {
        crate::closed_pipe::exit_quietly();
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if is_bad_input(err) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<BadInput>().is_some())
}

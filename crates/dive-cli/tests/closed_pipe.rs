//! Output to a closed pipe (`dive history | head -1`) ends the command quietly: killed by
//! SIGPIPE as conventional tools are, with no panic message and no error on stderr.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Run `dive` with its standard output a pipe whose reader is already closed, so that its
/// first write fails deterministically.
fn into_closed_pipe(home: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_dive"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("DIVE_STATE_URL")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn commands_writing_to_a_closed_pipe_end_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // A stack with a service log, so that `stack logs` and `stack ps` have something to print
    // without a supervisor.
    let logs = home.join("stacks/demo/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let many: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(logs.join("app.log"), many).unwrap();
    let stack = tmp.path().join("stack.yml");
    std::fs::write(
        &stack,
        "services:\n  app:\n    command: sleep 1\n    labels: {dive.service.class: core}\n",
    )
    .unwrap();
    let stack = stack.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["home"],
        &["stack", "ps"],
        &["stack", "ps", "--json"],
        &["stack", "logs", "-p", "demo", "-n", "20000"],
        &["stack", "logs", "-p", "demo", "app", "-f"],
        &["stack", "plan", "-f", stack],
        &["history"],
        &["history", "--json"],
        &["metrics"],
        &["orch-db", "status"],
        &["--dry-run", "stack", "up", "-f", stack],
    ];
    for args in cases {
        let out = into_closed_pipe(&home, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
            "dive {args:?}: {:?}; stderr: {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "dive {args:?} wrote to stderr: {stderr}");
    }
}

#[test]
fn a_real_error_is_still_reported_when_stdout_is_open() {
    // The quiet exit is only for a closed output: a failing command still says why.
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dive"))
        .arg("--home")
        .arg(tmp.path())
        .args(["stack", "logs", "-p", "nothing"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: stack nothing has no service logs")
    );
}

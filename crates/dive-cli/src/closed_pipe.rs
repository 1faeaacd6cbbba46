//! Output to a closed pipe (`dive history | head -1`) ends the command quietly, the way
//! command-line tools conventionally do: killed by SIGPIPE (status 141 in a shell), no panic
//! message and no error.
//!
//! Rust ignores SIGPIPE, so such a write fails with EPIPE: `println!` panics and `write!` returns
//! an error. Restoring SIGPIPE's default for the whole process is not an option: the CLI and the
//! supervisor also write to Unix sockets, where a peer that went away must be an error that is
//! reported, not a silent death. So the decision is taken where the failure surfaces, and only
//! when standard output (or error) really is a pipe whose reader has gone.

/// Whether `fd` is a pipe or socket whose reading end has been closed. Regular files and
/// terminals never are.
fn reader_gone(fd: libc::c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLERR != 0
}

/// Standard output or standard error can no longer be written because its reader is gone.
pub fn output_closed() -> bool {
    reader_gone(libc::STDOUT_FILENO) || reader_gone(libc::STDERR_FILENO)
}

/// End the process as if SIGPIPE had not been ignored.
pub fn exit_quietly() -> ! {
    // SAFETY: restoring a signal's default disposition and raising it at ourselves.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached unless SIGPIPE is blocked: exit with the status a shell would show.
    std::process::exit(128 + libc::SIGPIPE)
}

/// `println!`/`eprintln!` to a closed pipe panic with "failed printing to stdout/stderr"; that
/// one panic ends the process quietly instead. Every other panic is reported as before.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_print_failure(info.payload()) && output_closed() {
            exit_quietly();
        }
        default(info);
    }));
}

fn is_print_failure(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.starts_with("failed printing to stdout") || msg.starts_with("failed printing to stderr")
}

/// An error caused by writing to a closed pipe (e.g. `dive stack logs -f | head`), as opposed to
/// a peer socket that went away, which stays an error.
pub fn is_closed_pipe_error(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) && output_closed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_without_reader_is_gone_and_one_with_reader_is_not() {
        let (reader, writer) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        assert!(!reader_gone(writer.as_raw_fd()));
        drop(reader);
        assert!(reader_gone(writer.as_raw_fd()));
    }

    #[test]
    fn a_regular_file_is_never_gone() {
        use std::os::fd::AsRawFd;
        let f = tempfile::tempfile().unwrap();
        assert!(!reader_gone(f.as_raw_fd()));
    }

    #[test]
    fn only_print_failures_are_recognised() {
        let s: Box<dyn std::any::Any + Send> =
            Box::new("failed printing to stdout: Broken pipe (os error 32)".to_string());
        assert!(is_print_failure(s.as_ref()));
        let s: Box<dyn std::any::Any + Send> = Box::new("index out of bounds");
        assert!(!is_print_failure(s.as_ref()));
    }
}

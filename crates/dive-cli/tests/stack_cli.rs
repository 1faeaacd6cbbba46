//! The CLI surface of `dive stack …` and friends, through the real binary: global options after
//! the subcommand, `--log-format json`, `--json` event streams, `--wait-timeout`, `--dry-run` on
//! every mutating command, `logs -f` across a log rotation, and what a terminal gets (live
//! progress, typed confirmation for `nuke`).

mod support;
use support::stack::{Env, ready_after, service};
use support::text;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

#[test]
fn global_options_after_the_subcommand_and_log_format_json() {
    let env = Env::new();
    // No class label: assumed optional, with a notice; `image` is ignored, with a notice.
    let f = env.stack(
        "glob",
        "services:\n  app:\n    image: busybox\n    command: [\"sleep\", \"60\"]\n",
    );
    let file = f.to_str().unwrap();
    let home = env.home.to_str().unwrap();
    let dive = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dive"))
            .args(args)
            .current_dir(&env.dir)
            .env_remove("DIVE_HOME")
            .env_remove("DIVE_STATE_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // --home and --log-format after the subcommand; progress on stderr becomes JSON events.
    let out = dive(&[
        "stack",
        "up",
        "-p",
        "glob",
        "-f",
        file,
        "--home",
        home,
        "--log-format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let events = json_lines(&out.stderr);
    assert!(
        events
            .iter()
            .all(|e| e["event"].is_string() && e["level"].is_string())
    );
    let notices: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "notice")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        notices.iter().any(|n| n.contains("services.app.image"))
            && notices
                .iter()
                .any(|n| n.contains("no dive.service.class label; assuming optional")),
        "{notices:?}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stack glob is up"));
    let report = env.last_report("glob");
    assert!(
        report["notices"].to_string().contains("services.app.image"),
        "{report}"
    );
    // -q after the subcommand: a no-op re-up prints nothing at all.
    let out = dive(&[
        "stack", "up", "-p", "glob", "-f", file, "--home", home, "-q",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
    // --dry-run after the subcommand: nothing stops.
    let out = dive(&["stack", "down", "-p", "glob", "--home", home, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("dry run: would stop 1 services of stack glob"));
    assert_eq!(service(&env.status_json("glob"), "app")["state"], "running");
    // -y after the subcommand never prompts; a nuke still needs --confirm.
    let out = dive(&["nuke", "stack", "glob", "--home", home, "-y"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(env.home.join("stacks/glob").exists());
    // Errors with --log-format json: one JSON record on stderr, exit code 2 for bad input.
    let out = dive(&[
        "stack",
        "up",
        "-f",
        "missing.yml",
        "--home",
        home,
        "--log-format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = json_lines(&out.stderr);
    assert_eq!(err.len(), 1, "{}", text(&out));
    assert_eq!(err[0]["level"], "error");
    assert_eq!(err[0]["exit_code"], 2);
    assert!(err[0]["message"].as_str().unwrap().contains("missing.yml"));
    env.down("glob");
}

#[test]
fn up_json_streams_events_and_a_wait_timeout_interrupts() {
    let env = Env::new();
    let f = env.stack(
        "wt",
        &format!(
            "services:\n{}{}",
            ready_after("quick", 0.0, "core", &[]),
            ready_after("slow", 60.0, "core", &[("quick", "service_healthy")])
        ),
    );
    let t0 = Instant::now();
    let out = env.run(&[
        "stack",
        "up",
        "-p",
        "wt",
        "-f",
        f.to_str().unwrap(),
        "--json",
        "--wait-timeout",
        "1",
    ]);
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines = json_lines(&out.stdout);
    let event = |name: &str, svc: Option<&str>| {
        lines
            .iter()
            .find(|e| e["event"] == name && svc.is_none_or(|s| e["service"] == s))
            .unwrap_or_else(|| panic!("no {name} event for {svc:?} in {lines:?}"))
    };
    event("healthy", Some("quick"));
    event("spawned", Some("slow"));
    let interrupted = event("interrupted", None);
    assert!(
        interrupted["message"]
            .as_str()
            .unwrap()
            .contains("wait timeout of 1s ran out"),
        "{interrupted}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["state"], "INTERRUPTED", "{last}");
    assert_eq!(env.last_report("wt")["state"], "INTERRUPTED");
    // Services already started are left running.
    let st = env.status_json("wt");
    assert_eq!(service(&st, "quick")["state"], "running", "{st}");
    env.down("wt");
}

#[test]
fn dry_run_on_every_mutating_command_changes_nothing() {
    let env = Env::new();
    let yaml = |v: &str| {
        format!(
            "services:\n  app:\n    command: [\"sleep\", \"60\"]\n    environment:\n      V: \"{v}\"\n    labels:\n      dive.service.class: core\n"
        )
    };
    let f = env.stack("dry", &yaml("1"));
    let file = f.to_str().unwrap();
    assert!(env.up("dry", &f).status.success());
    let pid = service(&env.status_json("dry"), "app")["pid"].clone();
    // A changed definition: the dry run says it would restart, and restarts nothing.
    std::fs::write(&f, yaml("2")).unwrap();
    let out = env.run(&["--dry-run", "stack", "up", "-p", "dry", "-f", file]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("restart (definition changed)"),
        "{}",
        text(&out)
    );
    assert_eq!(service(&env.status_json("dry"), "app")["pid"], pid);
    let out = env.run(&["--dry-run", "stack", "down", "-p", "dry"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(service(&env.status_json("dry"), "app")["pid"], pid);
    // An open breaker stays open through a dry-run reset.
    let bad = env.stack(
        "brk",
        "services:\n  bad:\n    command: [\"false\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n    labels:\n      dive.service.class: core\n      dive.service.retries: \"0\"\n",
    );
    for _ in 0..3 {
        assert_eq!(env.up("brk", &bad).status.code(), Some(1));
    }
    let open_breakers = || {
        let out = env.run(&["orch-db", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["open_breakers"].as_array().unwrap().len()
    };
    assert_eq!(open_breakers(), 1);
    let out = env.run(&["--dry-run", "stack", "reset-breaker", "-p", "brk", "bad"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(open_breakers(), 1);
    let out = env.run(&["--dry-run", "nuke", "all", "--confirm"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stack dry") && text(&out).contains("stack brk"));
    assert_eq!(service(&env.status_json("dry"), "app")["pid"], pid);
    let exported = env.dir.join("hub.yml");
    let out = env.run(&[
        "--dry-run",
        "stack",
        "export",
        "hub",
        "-o",
        exported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!exported.exists());
    // And for real: every stack stopped, DIVE_HOME gone, verified.
    let out = env.run(&["nuke", "all", "--confirm"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("verified: nothing of everything under"),
        "{}",
        text(&out)
    );
    assert!(!env.home.exists());
    let pid = pid.as_u64().unwrap();
    let gone =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(" Z "));
    assert!(gone, "service {pid} stopped");
}

#[test]
fn logs_follow_streams_new_lines_across_a_rotation() {
    let env = Env::new();
    // 11,000,000 bytes in 99-byte lines (and an 11-byte last one): more than the 10 MiB at
    // which a service log rotates.
    let f = env.stack(
        "flw",
        r#"services:
  chatty:
    command: ["sh", "-c", 'echo first; while [ ! -f go ]; do sleep 0.05; done; head -c 11000000 /dev/zero | tr "\0" x | fold -w 99; echo; echo last-line; exec sleep 60']
    labels:
      dive.service.class: core
"#,
    );
    assert!(env.up("flw", &f).status.success());
    let mut follow = env
        .cmd(&["stack", "logs", "-p", "flw", "chatty", "-f", "-n", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a followed line")
    };
    assert_eq!(next(), "first", "the tail comes first");
    std::fs::write(env.dir.join("go"), "").unwrap();
    let (mut full, mut other) = (0, Vec::new());
    loop {
        let line = next();
        if line == "last-line" {
            break;
        }
        if line.len() == 99 && line.bytes().all(|b| b == b'x') {
            full += 1;
        } else {
            other.push(line);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(full, 111_111, "every full line followed exactly once");
    assert_eq!(other, vec!["x".repeat(11)]);
    let logs = env.home.join("stacks/flw/logs");
    assert!(logs.join("chatty.log.1").exists(), "the log rotated");
    assert!(std::fs::metadata(logs.join("chatty.log")).unwrap().len() < 10 * 1024 * 1024);
    env.down("flw");
}

/// A pseudo-terminal: the child gets the terminal side as stdin and stderr, the test the other.
struct Pty {
    master: std::fs::File,
    terminal: OwnedFd,
}

fn pty() -> Pty {
    let (mut master, mut terminal) = (0, 0);
    // SAFETY: openpty writes two new descriptors, which are owned from here on.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // openpty's descriptors are inherited across exec; only the child's stdin and stderr may
    // be (else the stack's supervisor would keep the terminal open after `dive` exits).
    for fd in [master, terminal] {
        // SAFETY: fcntl on descriptors we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors were just created and nothing else owns them.
    unsafe {
        Pty {
            master: std::fs::File::from_raw_fd(master),
            terminal: OwnedFd::from_raw_fd(terminal),
        }
    }
}

/// Run `dive` on a terminal, typing `input`; returns (exit code, what the terminal showed).
fn on_terminal(env: &Env, args: &[&str], input: &str) -> (Option<i32>, String) {
    let Pty {
        mut master,
        terminal,
    } = pty();
    let child = env
        .cmd(args)
        .stdin(Stdio::from(terminal.try_clone().unwrap()))
        .stderr(Stdio::from(terminal.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(terminal); // the child holds the only terminal side: reads end when it exits
    master.write_all(input.as_bytes()).unwrap();
    let mut reader = master.try_clone().unwrap();
    let shown = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf); // ends with EIO once the terminal side is closed
        String::from_utf8_lossy(&buf).into_owned()
    });
    let out = child.wait_with_output().unwrap();
    let shown = shown.join().unwrap() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), shown)
}

#[test]
fn a_terminal_gets_live_progress_and_nuke_asks_for_the_name() {
    let env = Env::new();
    let f = env.stack(
        "tty",
        &format!("services:\n{}", ready_after("web", 0.2, "core", &[])),
    );
    let (code, shown) = on_terminal(
        &env,
        &["stack", "up", "-p", "tty", "-f", f.to_str().unwrap()],
        "",
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("deploying…"), "live table: {shown}");
    assert!(shown.contains("✔ web"), "per-service row: {shown}");
    assert!(shown.contains("\x1b[2K"), "redrawn in place: {shown:?}");
    // A wrong name changes nothing (bad input); the right one nukes the stack.
    let (code, shown) = on_terminal(&env, &["nuke", "stack", "tty"], "oops\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("Type \"tty\" to confirm"), "{shown}");
    assert!(env.home.join("stacks/tty").exists());
    let (code, shown) = on_terminal(&env, &["nuke", "stack", "tty"], "tty\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("nothing of stack tty is left"), "{shown}");
    assert!(!env.home.join("stacks/tty").exists());
}

/// The README's example (`dive stack up -f examples/demo/dive-stack.yml`): an init job that
/// unblocks `service_completed_successfully`, native HTTP and TCP probes, `${VAR:-default}` ports.
#[test]
fn the_readme_demo_stack_deploys() {
    let env = Env::new();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    std::fs::create_dir_all(env.dir.join("www")).unwrap();
    for f in ["dive-stack.yml", "www/index.html"] {
        std::fs::copy(demo.join(f), env.dir.join(f)).unwrap();
    }
    let ports: Vec<String> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect();
    let out = env
        .cmd(&["stack", "up", "-f", "dive-stack.yml"])
        .env("DEMO_API_PORT", &ports[0])
        .env("DEMO_WEB_PORT", &ports[1])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r = env.last_report("demo");
    assert_eq!(r["state"], "COMPLETE", "{r}");
    let outcomes: Vec<(String, String)> = r["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&("prepare".into(), "completed".into())),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().filter(|(_, o)| o == "ready").count() == 3,
        "{outcomes:?}"
    );
    env.down("demo");
}

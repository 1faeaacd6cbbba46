//! Talking to a stack's supervisor, starting it when needed, and cleaning up after one that died.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::protocol::{Event, Request, Response, StackStatus};
use super::{OrphanRecord, SupervisorError, SupervisorIdentity};
use crate::paths::StackPaths;
use crate::process::signal_group;

/// A connection to a running supervisor.
pub struct Client {
    stack: String,
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

/// The events a supervisor pushes after `Subscribe`.
pub struct EventStream {
    stack: String,
    lines: Lines<BufReader<OwnedReadHalf>>,
    _write: OwnedWriteHalf,
}

impl EventStream {
    /// The next event; `None` when the supervisor has gone away.
    pub async fn next(&mut self) -> Option<Result<Event, SupervisorError>> {
        match self.lines.next_line().await {
            Ok(Some(line)) => {
                Some(
                    serde_json::from_str(&line).map_err(|_| SupervisorError::Protocol {
                        stack: self.stack.clone(),
                        answer: line,
                    }),
                )
            }
            Ok(None) | Err(_) => None,
        }
    }
}

impl Client {
    /// Connect to the supervisor of `paths`; `NotRunning` if nothing listens.
    pub async fn connect(paths: &StackPaths) -> Result<Client, SupervisorError> {
        let socket = paths.socket();
        let len = socket.as_os_str().len();
        if len > 107 {
            return Err(SupervisorError::SocketPathTooLong {
                path: socket.display().to_string(),
                len,
            });
        }
        let stream = UnixStream::connect(&socket).await.map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) {
                SupervisorError::NotRunning {
                    stack: paths.name.clone(),
                }
            } else {
                SupervisorError::Io {
                    stack: paths.name.clone(),
                    source: e,
                }
            }
        })?;
        let (read, write) = stream.into_split();
        Ok(Client {
            stack: paths.name.clone(),
            lines: BufReader::new(read).lines(),
            write,
        })
    }

    fn io(&self, e: std::io::Error) -> SupervisorError {
        SupervisorError::Io {
            stack: self.stack.clone(),
            source: e,
        }
    }

    /// Send one request and read its response. `Error` responses become `Remote` errors.
    pub async fn request(&mut self, request: &Request) -> Result<Response, SupervisorError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| self.io(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.write.write_all(&line).await.map_err(|e| self.io(e))?;
        let answer = self
            .lines
            .next_line()
            .await
            .map_err(|e| self.io(e))?
            .ok_or_else(|| {
                self.io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ))
            })?;
        match serde_json::from_str::<Response>(&answer) {
            Ok(Response::Error { message }) => Err(SupervisorError::Remote {
                stack: self.stack.clone(),
                message,
            }),
            Ok(r) => Ok(r),
            Err(_) => Err(SupervisorError::Protocol {
                stack: self.stack.clone(),
                answer,
            }),
        }
    }

    pub async fn status(&mut self) -> Result<StackStatus, SupervisorError> {
        match self.request(&Request::Status).await? {
            Response::Status(s) => Ok(s),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Turn this connection into an event stream.
    pub async fn subscribe(mut self) -> Result<EventStream, SupervisorError> {
        match self.request(&Request::Subscribe).await? {
            Response::Ok => Ok(EventStream {
                stack: self.stack,
                lines: self.lines,
                _write: self.write,
            }),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Stop everything and make the supervisor exit; waits until it has.
    pub async fn shutdown(mut self) -> Result<(), SupervisorError> {
        match self.request(&Request::Shutdown).await? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn unexpected(&self, r: &Response) -> SupervisorError {
        SupervisorError::Protocol {
            stack: self.stack.clone(),
            answer: serde_json::to_string(r).unwrap_or_default(),
        }
    }
}

/// How to start a supervisor daemon process (the CLI knows its own executable and arguments).
pub type SpawnDaemon<'a> = &'a dyn Fn() -> std::io::Result<()>;

/// What was found and done about the processes of a supervisor that died.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct OrphanCleanup {
    /// Pid of the dead supervisor, if it left its identity file.
    pub dead_supervisor: Option<u32>,
    /// Services whose processes were still running and were stopped.
    pub killed: Vec<String>,
}

impl OrphanCleanup {
    pub fn is_empty(&self) -> bool {
        self.dead_supervisor.is_none() && self.killed.is_empty()
    }
}

/// True if the supervisor recorded in `supervisor.json` is alive.
pub fn supervisor_alive(paths: &StackPaths) -> bool {
    read_identity(paths).is_some_and(|id| id.process.is_alive())
}

fn read_identity(paths: &StackPaths) -> Option<SupervisorIdentity> {
    let bytes = std::fs::read(paths.supervisor_file()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// If the stack's supervisor is dead, stop the service processes it left behind (matched by pid
/// *and* start time, so an unrelated process that reused a pid is never touched) and remove its
/// stale files. Does nothing while the supervisor is alive.
pub async fn cleanup_orphans(paths: &StackPaths) -> OrphanCleanup {
    let mut report = OrphanCleanup::default();
    if let Some(id) = read_identity(paths) {
        if id.process.is_alive() {
            return report;
        }
        report.dead_supervisor = Some(id.process.pid);
    }
    let records: Vec<OrphanRecord> = std::fs::read(paths.services_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let alive: Vec<&OrphanRecord> = records.iter().filter(|r| r.process.is_alive()).collect();
    for r in &alive {
        let _ = signal_group(r.process.pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive.iter().any(|r| r.process.is_alive()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in &alive {
        let _ = signal_group(r.process.pid, libc::SIGKILL);
        report.killed.push(r.service.clone());
    }
    let _ = std::fs::remove_file(paths.services_file());
    let _ = std::fs::remove_file(paths.supervisor_file());
    let _ = std::fs::remove_file(paths.socket());
    report
}

/// Connect to the stack's supervisor, starting one if none is running (after cleaning up what a
/// dead one left behind). Returns the client and any orphan clean-up that happened.
pub async fn ensure_running(
    paths: &StackPaths,
    spawn: SpawnDaemon<'_>,
) -> Result<(Client, OrphanCleanup), SupervisorError> {
    match Client::connect(paths).await {
        Ok(c) => return Ok((c, OrphanCleanup::default())),
        Err(SupervisorError::NotRunning { .. }) => {}
        Err(e) => return Err(e),
    }
    let cleanup = cleanup_orphans(paths).await;
    std::fs::create_dir_all(&paths.dir).map_err(|e| SupervisorError::Io {
        stack: paths.name.clone(),
        source: e,
    })?;
    spawn().map_err(|e| SupervisorError::Io {
        stack: paths.name.clone(),
        source: e,
    })?;
    let started = Instant::now();
    let limit = Duration::from_secs(10);
    loop {
        match Client::connect(paths).await {
            Ok(c) => return Ok((c, cleanup)),
            Err(SupervisorError::NotRunning { .. }) if started.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(SupervisorError::NotRunning { .. }) => {
                return Err(SupervisorError::StartTimeout {
                    stack: paths.name.clone(),
                    waited_ms: started.elapsed().as_millis(),
                    log: paths.supervisor_log().display().to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    }
}

/// Stop a stack: every service in reverse dependency order, then the supervisor. Returns false
/// when no supervisor was running (after cleaning up any orphans it left).
pub async fn shutdown_stack(paths: &StackPaths) -> Result<(bool, OrphanCleanup), SupervisorError> {
    match Client::connect(paths).await {
        Ok(c) => {
            c.shutdown().await?;
            // The supervisor removes its identity file as it exits; wait for it to be gone.
            for _ in 0..500 {
                if !supervisor_alive(paths) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok((true, OrphanCleanup::default()))
        }
        Err(SupervisorError::NotRunning { .. }) => Ok((false, cleanup_orphans(paths).await)),
        Err(e) => Err(e),
    }
}

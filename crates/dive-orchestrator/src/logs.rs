//! Service log files with size-based rotation (`svc.log`, `svc.log.1`, … `svc.log.N`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Rotation limits for a service log.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// An append-only log file that rotates itself when it grows past `max_bytes`.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    written: u64,
    rotation: Rotation,
}

impl RotatingLog {
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            written,
            rotation,
        })
    }

    /// Append whole lines; rotation happens only between writes, so a line is never split.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.written > 0 && self.written + bytes.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.rotation.keep.max(1);
        let _ = std::fs::remove_file(rotated(&self.path, keep));
        for i in (1..keep).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// `svc.log.N`
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The last `n` lines of a service's log, reading the rotated file too when the current one is short.
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for file in [path.to_path_buf(), rotated(path, 1)] {
        if lines.len() >= n {
            break;
        }
        if let Ok(text) = std::fs::read(&file) {
            let text = String::from_utf8_lossy(&text);
            let mut older: Vec<String> = text.lines().map(str::to_string).collect();
            older.append(&mut lines);
            lines = older;
        }
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

/// Follows a service log as it grows, across rotations: `tail -F` for [`RotatingLog`] files.
///
/// A rotation is seen as a new file (inode) at the path; the rest of the old file — now
/// `svc.log.1` — is read first, so no line written before or after the rotation is lost (as
/// long as the file does not rotate twice between two polls).
pub struct LogFollower {
    path: PathBuf,
    /// Identity (device, inode) of the file being read, once it exists.
    id: Option<(u64, u64)>,
    offset: u64,
}

impl LogFollower {
    /// Start at the current end of the log: only lines written from now on are returned.
    pub fn from_end(path: &Path) -> LogFollower {
        let meta = std::fs::metadata(path).ok();
        LogFollower {
            path: path.to_path_buf(),
            id: meta.as_ref().map(file_id),
            offset: meta.map_or(0, |m| m.len()),
        }
    }

    /// The whole lines appended since the last call (a partial last line waits for its end).
    pub fn poll(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(out); // between rotate's rename and re-create, or not yet written
        };
        let id = file_id(&meta);
        if self.id.is_some_and(|old| old != id) {
            self.drain_rotated(&mut out)?;
            self.offset = 0;
        } else if meta.len() < self.offset {
            self.offset = 0; // truncated in place
        }
        self.id = Some(id);
        self.offset += read_whole_lines(&self.path, self.offset, &mut out)?;
        Ok(out)
    }

    /// The old file was renamed to `.1`: read what was appended to it since the last poll.
    fn drain_rotated(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let old = rotated(&self.path, 1);
        match std::fs::metadata(&old) {
            Ok(m) if Some(file_id(&m)) == self.id => {
                // All of it: a last line without its newline never gets one now.
                read_rest(&old, self.offset, out)?;
                if out.last().is_some_and(|b| *b != b'\n') {
                    out.push(b'\n');
                }
            }
            _ => {} // rotated more than once since the last poll: those lines are gone
        }
        Ok(())
    }
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Append the whole lines of `path` after `offset` to `out`; returns how many bytes they took.
fn read_whole_lines(path: &Path, offset: u64, out: &mut Vec<u8>) -> std::io::Result<u64> {
    let start = out.len();
    read_rest(path, offset, out)?;
    let whole = out[start..]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    out.truncate(start + whole);
    Ok(whole as u64)
}

fn read_rest(path: &Path, offset: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    let mut f = File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    f.read_to_end(out).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_limit_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let mut log = RotatingLog::open(
            &path,
            Rotation {
                max_bytes: 20,
                keep: 2,
            },
        )
        .unwrap();
        for i in 0..10 {
            log.write_all(format!("line {i:04}\n").as_bytes()).unwrap(); // 10 bytes each
        }
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(
            !rotated(&path, 3).exists(),
            "only `keep` rotated files remain"
        );
        let current = std::fs::read_to_string(&path).unwrap();
        assert_eq!(current, "line 0008\nline 0009\n");
        assert_eq!(
            tail_lines(&path, 3),
            vec!["line 0007", "line 0008", "line 0009"]
        );
    }

    #[test]
    fn follower_sees_every_line_once_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let mut log = RotatingLog::open(
            &path,
            Rotation {
                max_bytes: 25,
                keep: 2,
            },
        )
        .unwrap();
        log.write_all(b"before\n").unwrap();
        let mut f = LogFollower::from_end(&path);
        let mut seen = Vec::new();
        for i in 0..12 {
            log.write_all(format!("line {i:04}\n").as_bytes()).unwrap(); // 10 bytes each
            if i % 2 == 1 {
                seen.extend(f.poll().unwrap()); // at most one rotation between polls
            }
        }
        let want: String = (0..12).map(|i| format!("line {i:04}\n")).collect();
        assert!(rotated(&path, 2).exists(), "the log rotated more than once");
        assert_eq!(String::from_utf8(seen).unwrap(), want);
        assert!(f.poll().unwrap().is_empty(), "nothing is returned twice");
    }

    #[test]
    fn follower_waits_for_a_partial_line_and_tolerates_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let mut f = LogFollower::from_end(&path);
        assert!(f.poll().unwrap().is_empty());
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(f.poll().unwrap(), b"one\n");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"o\n").unwrap();
        assert_eq!(f.poll().unwrap(), b"two\n");
    }
}

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
}

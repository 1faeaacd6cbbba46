//! Files a long-running service follows while other processes rewrite them (trusted issuers,
//! partner CAs, the partners file, KAS keys, policy data): what they look like now
//! ([`Stamp`]), and a value derived from them that is re-derived when they change, looked at no
//! more often than a given interval ([`Followed`]).
//!
//! The order matters and lives here once: the stamp is taken *before* the files are read, so a
//! file replaced in between is seen as changed at the next look. The other order could pair the
//! old contents with the new stamp and never read the new contents.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// One file's identity for change detection: size, modification time, inode (a file replaced by
/// a rename gets a new inode even within the clock's granularity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub inode: u64,
}

/// What a set of files looks like now: each path with its [`FileId`], or `None` when it cannot
/// be looked at (missing, unreadable directory). Equal stamps: nothing was seen to change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Stamp(Vec<(PathBuf, Option<FileId>)>);

impl Stamp {
    /// The stamp of these files, in the order given.
    pub fn of<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Stamp {
        Stamp(
            paths
                .into_iter()
                .map(|p| {
                    let p = p.as_ref();
                    (p.to_path_buf(), file_id(p))
                })
                .collect(),
        )
    }

    /// The stamp of one file.
    pub fn of_file(path: &Path) -> Stamp {
        Stamp::of([path])
    }

    /// The stamp of every entry of a directory, sorted by name (a missing directory: empty).
    pub fn of_dir(dir: &Path) -> Stamp {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        paths.sort();
        Stamp::of(paths)
    }

    /// This stamp followed by `other`'s files.
    pub fn and(mut self, other: Stamp) -> Stamp {
        self.0.extend(other.0);
        self
    }

    /// Whether any of the files could not be looked at.
    pub fn any_missing(&self) -> bool {
        self.0.iter().any(|(_, id)| id.is_none())
    }
}

fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileId {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
    })
}

struct State<T> {
    value: Arc<T>,
    stamp: Stamp,
    checked: Instant,
}

/// A value derived from files: [`Followed::current`] returns it, and at most once per `every`
/// looks at the files' stamp and, when it changed, derives the value again.
pub struct Followed<T> {
    every: Duration,
    state: RwLock<State<T>>,
}

impl<T> Followed<T> {
    /// Start from `value`, derived from files that looked like `stamp` before they were read.
    pub fn new(value: T, stamp: Stamp, every: Duration) -> Followed<T> {
        Followed {
            every,
            state: RwLock::new(State {
                value: Arc::new(value),
                stamp,
                checked: Instant::now(),
            }),
        }
    }

    /// The value now. When `every` has passed since the last look, `stamp()` is taken; if it
    /// differs from the stamp of the value in force, `reload(&previous)` derives the new one:
    /// `Some(new)` replaces it (under the stamp taken before reading), `None` keeps the previous
    /// one and leaves the stamp as it was, so the next look tries again.
    pub fn current(
        &self,
        stamp: impl FnOnce() -> Stamp,
        reload: impl FnOnce(&Arc<T>) -> Option<T>,
    ) -> Arc<T> {
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if s.checked.elapsed() < self.every {
                return s.value.clone();
            }
        }
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        // Another caller may have looked while this one waited for the lock.
        if s.checked.elapsed() < self.every {
            return s.value.clone();
        }
        s.checked = Instant::now();
        let now = stamp();
        if now == s.stamp {
            return s.value.clone();
        }
        if let Some(v) = reload(&s.value) {
            s.value = Arc::new(v);
            s.stamp = now;
        }
        s.value.clone()
    }

    /// The value in force, without looking at the files.
    pub fn get(&self) -> Arc<T> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .value
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Move a file's modification time so that a change is seen on coarse clocks too.
    fn touch(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs))
            .unwrap();
    }

    #[test]
    fn stamps_change_with_contents_time_and_presence() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let missing = Stamp::of_file(&a);
        assert!(missing.any_missing());
        std::fs::write(&a, "1").unwrap();
        touch(&a, 1);
        let one = Stamp::of_file(&a);
        assert_ne!(one, missing);
        assert_eq!(one, Stamp::of_file(&a), "unchanged");
        touch(&a, 2);
        assert_ne!(Stamp::of_file(&a), one, "a new time");
        let before = Stamp::of_dir(dir.path());
        std::fs::write(dir.path().join("b.json"), "2").unwrap();
        assert_ne!(
            Stamp::of_dir(dir.path()),
            before,
            "a new file in the directory"
        );
        assert_eq!(Stamp::of_dir(&dir.path().join("nowhere")), Stamp::default());
    }

    #[test]
    fn the_value_follows_the_file_no_more_often_than_asked_and_a_failed_reload_retries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.txt");
        std::fs::write(&f, "1").unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).ok()?.trim().parse::<u32>().ok();
        let every = Duration::from_millis(50);
        let followed = Followed::new(read(&f).unwrap(), Stamp::of_file(&f), every);
        let look = || {
            followed.current(
                || Stamp::of_file(&f),
                |_| read(&f), // None while the file does not parse: keep the previous value
            )
        };
        assert_eq!(*look(), 1);
        std::fs::write(&f, "2").unwrap();
        touch(&f, 10);
        assert_eq!(*look(), 1, "not looked at again within the interval");
        std::thread::sleep(every + Duration::from_millis(10));
        assert_eq!(*look(), 2);
        std::fs::write(&f, "x").unwrap();
        touch(&f, 20);
        std::thread::sleep(every + Duration::from_millis(10));
        assert_eq!(*look(), 2, "a failed reload keeps the value");
        // The file is fixed without its stamp changing from what the failed look saw; the
        // failed reload did not record that stamp, so this look reads it.
        std::fs::write(&f, "3").unwrap();
        touch(&f, 20);
        std::thread::sleep(every + Duration::from_millis(10));
        assert_eq!(*look(), 3);
        assert_eq!(*followed.get(), 3);
    }
}

//! Walking and removing directory trees that a sandbox may have filled.
//!
//! A chat directory is a sandbox's working directory, so whatever a process
//! can make there is expected: symlinks (to inside, outside, themselves),
//! FIFOs, sockets, devices, trees 10,000 levels deep or 100,000 entries
//! wide, entries that vanish or change type while they are read. Everything
//! here is iterative (no recursion per level), opens no symlink, holds a
//! handful of descriptors at any depth, and takes an entry's type from
//! `lstat` when the directory entry does not say it.

use cap_std::fs::{Dir, Metadata, OpenOptions};
use std::ffi::OsString;
use std::io;
use uuid::Uuid;

/// The deepest directory a walk enters (a walk holds no descriptor per
/// level, only the names still to visit).
pub const MAX_WALK_DEPTH: usize = 100_000;

/// The most entries a walk reads before it gives up.
pub const MAX_WALK_ENTRIES: u64 = 1_000_000;

/// Opens the directory `name` in `dir` without following a symlink there.
pub(crate) fn open_subdir(dir: &Dir, name: &std::ffi::OsStr) -> io::Result<Dir> {
    use cap_std::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::DIRECTORY;
    let file = dir.open_with(
        name,
        OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32),
    )?;
    Ok(Dir::from_std_file(file.into_std()))
}

/// An entry's metadata, not following a symlink; `None` if it vanished.
fn lstat(dir: &Dir, name: &std::ffi::OsStr) -> io::Result<Option<Metadata>> {
    match dir.symlink_metadata(name) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The size of the regular file `name` in `dir`, or `None` if there is no
/// regular file there (nothing, or a directory, symlink, FIFO…).
pub(crate) fn regular_file_size(dir: &Dir, name: &str) -> io::Result<Option<u64>> {
    Ok(lstat(dir, name.as_ref())?
        .filter(Metadata::is_file)
        .map(|meta| meta.len()))
}

/// One directory's entries, read whole and closed: the regular files'
/// total size and the subdirectories' names.
fn read_level(dir: &Dir, entries: &mut u64) -> io::Result<(u64, Vec<OsString>)> {
    let (mut bytes, mut subdirs) = (0u64, Vec::new());
    for entry in dir.entries()? {
        let entry = entry?;
        *entries += 1;
        if *entries > MAX_WALK_ENTRIES {
            return Err(io::Error::other(format!(
                "more than {MAX_WALK_ENTRIES} entries under one directory tree"
            )));
        }
        // `lstat` every entry: the directory entry's type may be unknown,
        // and a regular file's size is needed anyway.
        let name = entry.file_name();
        let Some(meta) = lstat(dir, &name)? else {
            continue;
        };
        if meta.is_dir() {
            subdirs.push(name);
        } else if meta.is_file() {
            bytes = bytes.saturating_add(meta.len());
        }
    }
    Ok((bytes, subdirs))
}

/// A directory's identity, to check that `..` leads back where a walk came from.
fn identity(dir: &Dir) -> io::Result<(u64, u64)> {
    let stat = rustix::fs::fstat(dir)?;
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

/// The bytes in regular files under `dir`, at any depth up to
/// [`MAX_WALK_DEPTH`], never following a symlink. The walk holds the
/// directory it is in and goes back up through `..`, checking that it
/// arrives where it came from, so its descriptors do not grow with depth. A
/// tree deeper or wider than the bounds, or one moved about under the walk,
/// is an error that says so.
pub(crate) fn bytes_under(dir: Dir) -> io::Result<u64> {
    let mut entries = 0u64;
    let (mut total, subdirs) = read_level(&dir, &mut entries)?;
    // Each level entered: its identity and the names still to enter below it.
    let mut levels = vec![(identity(&dir)?, subdirs)];
    let mut current = dir;
    while let Some((_, pending)) = levels.last_mut() {
        let Some(name) = pending.pop() else {
            levels.pop();
            let Some((parent, _)) = levels.last() else {
                break;
            };
            let up = rustix::fs::openat(
                &current,
                "..",
                rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            current = Dir::from_std_file(std::fs::File::from(up));
            if identity(&current)? != *parent {
                return Err(io::Error::other(
                    "the directory tree was moved during the walk",
                ));
            }
            continue;
        };
        let sub = match open_subdir(&current, &name) {
            Ok(sub) => sub,
            // Gone, or replaced by something that is not a directory.
            Err(e) if is_vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        if levels.len() >= MAX_WALK_DEPTH {
            return Err(io::Error::other(format!(
                "a directory tree deeper than {MAX_WALK_DEPTH} levels"
            )));
        }
        let (bytes, subdirs) = read_level(&sub, &mut entries)?;
        total = total.saturating_add(bytes);
        levels.push((identity(&sub)?, subdirs));
        current = sub;
    }
    Ok(total)
}

/// An entry that disappeared or stopped being a directory under a walk.
fn is_vanished(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
        Some(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP)
    )
}

/// Removes the directory `name` in `parent` and everything under it, at
/// any depth, with a handful of descriptors: the subdirectories of each
/// directory emptied are first moved up into the top one, so the tree
/// flattens as it goes instead of being descended. `name` must be a
/// directory only this process writes to (one moved out of a chat first).
pub(crate) fn remove_tree(parent: &Dir, name: &str) -> io::Result<()> {
    let top = open_subdir(parent, name.as_ref())?;
    loop {
        let mut found = false;
        for entry in top.entries()? {
            let entry = entry?;
            found = true;
            let entry_name = entry.file_name();
            let Some(meta) = lstat(&top, &entry_name)? else {
                continue;
            };
            if !meta.is_dir() {
                top.remove_file(&entry_name)?;
                continue;
            }
            let sub = open_subdir(&top, &entry_name)?;
            for inner in sub.entries()? {
                let inner_name = inner?.file_name();
                let Some(meta) = lstat(&sub, &inner_name)? else {
                    continue;
                };
                if meta.is_dir() {
                    sub.rename(&inner_name, &top, format!(".lifted-{}", Uuid::now_v7()))?;
                } else {
                    sub.remove_file(&inner_name)?;
                }
            }
            drop(sub);
            top.remove_dir(&entry_name)?;
        }
        if !found {
            break;
        }
    }
    drop(top);
    parent.remove_dir(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    fn root() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        (tmp, dir)
    }

    /// A chain of `depth` directories under `top`, each holding a 3-byte file.
    fn deep(dir: &Dir, top: &str, depth: usize) {
        dir.create_dir(top).unwrap();
        let mut current = dir.open_dir(top).unwrap();
        for _ in 0..depth {
            current.write("f", b"abc").unwrap();
            current.create_dir("d").unwrap();
            current = current.open_dir("d").unwrap();
        }
    }

    #[test]
    fn a_walk_counts_regular_files_at_every_depth_and_nothing_else() {
        let (tmp, dir) = root();
        deep(&dir, "t", 100);
        dir.write("t/top", b"12345").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("t/outside")).unwrap();
        std::os::unix::fs::symlink("t", tmp.path().join("t/loop")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            tmp.path().join("t/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let bytes = bytes_under(dir.open_dir("t").unwrap()).unwrap();
        assert_eq!(bytes, 5 + 3 * 100);
    }

    #[test]
    fn a_walk_goes_far_deeper_than_descriptors_allow_and_back_up() {
        let (_tmp, dir) = root();
        // More levels than a process may have descriptors open.
        deep(&dir, "t", 5000);
        deep(&dir, "t/beside", 3);
        assert_eq!(
            bytes_under(dir.open_dir("t").unwrap()).unwrap(),
            3 * (5000 + 3)
        );
    }

    #[test]
    fn removal_flattens_a_tree_thousands_of_levels_deep() {
        let (_tmp, dir) = root();
        deep(&dir, "t", 3000);
        dir.write("t/loose", b"x").unwrap();
        remove_tree(&dir, "t").unwrap();
        assert!(dir.symlink_metadata("t").is_err());
    }

    #[test]
    fn removal_removes_symlinks_not_what_they_point_at() {
        let (tmp, dir) = root();
        dir.write("kept", b"precious").unwrap();
        dir.create_dir_all("t/a").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("kept"), tmp.path().join("t/a/link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("t/dirlink")).unwrap();
        remove_tree(&dir, "t").unwrap();
        assert_eq!(dir.read("kept").unwrap(), b"precious");
        assert!(dir.symlink_metadata("t").is_err());
    }
}

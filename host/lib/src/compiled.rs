//! Compiled components, cached on disk so that a process starts without
//! compiling: Cranelift takes a tenth of a second or more for the storage
//! component, loading its compiled form well under a millisecond.
//!
//! An entry is named by the SHA-256 of the component and by the engine's
//! compatibility hash (wasmtime version, target, compiler settings), and
//! ends with the SHA-256 of what precedes it. Loading compiled code runs
//! it, so an entry is used only from a directory and a file that nobody but
//! this user can write, only if its digest matches, and only if wasmtime
//! accepts it for this engine; anything else is compiled again and
//! rewritten (atomically), never trusted as it is.

use sha2::{Digest, Sha256};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentSource {
    /// Compiled in this process (no cache, or no usable entry in it).
    Compiled,
    /// Loaded from the compile cache.
    Cached,
}

const DIGEST_BYTES: usize = 32;

/// The component compiled for `engine`: from the cache in `cache` when it
/// holds a trustworthy entry, else compiled (and stored there).
pub(crate) fn load(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&Path>,
) -> wasmtime::Result<(Component, ComponentSource)> {
    let Some(dir) = cache else {
        return Ok((Component::new(engine, wasm)?, ComponentSource::Compiled));
    };
    let entry = dir.join(entry_name(engine, wasm));
    if let Some(component) = read_entry(engine, dir, &entry) {
        return Ok((component, ComponentSource::Cached));
    }
    let component = Component::new(engine, wasm)?;
    if let Err(e) = write_entry(dir, &entry, &component) {
        tracing::warn!(cache = %dir.display(), error = %e, "cannot cache the compiled component");
    }
    Ok((component, ComponentSource::Compiled))
}

fn entry_name(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let component: String = Sha256::digest(wasm)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{component}-{:016x}.cwasm", hasher.finish())
}

/// Whether only this user may change `meta`'s file or directory.
fn private(meta: &fs::Metadata) -> bool {
    meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

/// The cached component, if the entry is there and can be trusted.
fn read_entry(engine: &Engine, dir: &Path, entry: &Path) -> Option<Component> {
    let dir_meta = fs::symlink_metadata(dir).ok()?;
    if !dir_meta.is_dir() || !private(&dir_meta) {
        tracing::warn!(cache = %dir.display(), "the compile cache is writable by others; not used");
        return None;
    }
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(entry)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || !private(&meta) {
        return None;
    }
    // From the descriptor whose owner and mode were checked, not the path.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).ok()?;
    let (artifact, digest) = bytes.split_at_checked(bytes.len().checked_sub(DIGEST_BYTES)?)?;
    if Sha256::digest(artifact).as_slice() != digest {
        tracing::warn!(entry = %entry.display(), "a compile cache entry is damaged; compiling again");
        return None;
    }
    // SAFETY: the artifact was written by `write_entry` from
    // `Component::serialize` (its digest matches and only this user can
    // write it), and wasmtime checks that it fits this engine.
    match unsafe { Component::deserialize(engine, artifact) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(entry = %entry.display(), error = %e, "a compile cache entry does not fit this engine; compiling again");
            None
        }
    }
}

/// Stores a compiled component as `entry`: written beside it, synced, then
/// renamed over it.
fn write_entry(dir: &Path, entry: &Path, component: &Component) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let artifact = component.serialize().map_err(io::Error::other)?;
    let partial = PathBuf::from(format!(
        "{}.{}.partial",
        entry.display(),
        uuid::Uuid::now_v7()
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    let written = file
        .write_all(&artifact)
        .and_then(|()| file.write_all(&Sha256::digest(&artifact)))
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&partial, entry));
    if written.is_err() {
        let _ = fs::remove_file(&partial);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component there is.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    fn entries(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn a_component_is_compiled_once_then_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let engine = Engine::default();
        let (_, first) = load(&engine, EMPTY, Some(&dir)).unwrap();
        let (_, second) = load(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(
            (first, second),
            (ComponentSource::Compiled, ComponentSource::Cached)
        );
        assert_eq!(entries(&dir).len(), 1);
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_compiled_again_and_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let engine = Engine::default();
        load(&engine, EMPTY, Some(&dir)).unwrap();
        let entry = entries(&dir).pop().unwrap();
        let good = fs::read(&entry).unwrap();
        // One byte of the compiled code changed.
        let mut damaged = good.clone();
        damaged[good.len() / 2] ^= 1;
        fs::write(&entry, &damaged).unwrap();
        let (_, source) = load(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(source, ComponentSource::Compiled);
        assert_eq!(fs::read(&entry).unwrap(), good);
        // Bytes that are not a compiled component at all, with a digest
        // that matches them.
        let mut foreign = b"not compiled code".to_vec();
        foreign.extend_from_slice(&Sha256::digest(b"not compiled code"));
        fs::write(&entry, &foreign).unwrap();
        let (_, source) = load(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(source, ComponentSource::Compiled);
        assert_eq!(
            load(&engine, EMPTY, Some(&dir)).unwrap().1,
            ComponentSource::Cached
        );
    }

    #[test]
    fn a_cache_others_can_write_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let engine = Engine::default();
        load(&engine, EMPTY, Some(&dir)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            load(&engine, EMPTY, Some(&dir)).unwrap().1,
            ComponentSource::Compiled
        );
    }

    #[test]
    fn another_engine_configuration_has_its_own_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        load(&Engine::default(), EMPTY, Some(&dir)).unwrap();
        assert_eq!(
            load(&other, EMPTY, Some(&dir)).unwrap().1,
            ComponentSource::Compiled
        );
        assert_eq!(entries(&dir).len(), 2);
    }
}

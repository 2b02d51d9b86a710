//! Small helpers every root test shares: the workspace's binaries, unique
//! names, and temporary directories that go away with the test.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result};

/// A number unique within this process (names of namespaces, pins, dirs).
pub fn unique() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A built binary of this workspace: next to this executable (the bench
/// binary) or one directory up (a test in target/<profile>/deps).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let here = exe.parent().context("executable without a directory")?;
    let candidates = [Some(here), here.parent()];
    candidates.into_iter().flatten().map(|d| d.join(name)).find(|p| p.is_file()).with_context(|| {
        format!(
            "no {name} next to {} or one directory up: build it with `cargo build -p director --bins` \
             (cargo test / nextest from the workspace root do)",
            exe.display()
        )
    })
}

/// A directory removed (with its content) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<temp dir>/director-<what>-<pid>-<n>`, fresh.
    pub fn new(what: &str) -> Result<TempDir> {
        TempDir::under(&std::env::temp_dir(), &format!("director-{what}-{}-{}", std::process::id(), unique()))
    }

    /// `parent/name`, fresh.
    pub fn under(parent: &Path, name: &str) -> Result<TempDir> {
        let p = parent.join(name);
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

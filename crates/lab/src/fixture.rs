//! Scratch copies of the repository's example and test keys with the file
//! modes the checks need: git does not keep modes, and a test must not change
//! the checkout. Secrets (private keys, PSKs, cluster and store keys) get 0600,
//! everything else 0644.

use std::path::{Path, PathBuf};

/// Copy the tree `from` to `to` (created), giving secrets mode 0600.
pub fn copy_with_secret_modes(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_with_secret_modes(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
            set_mode(&dst, if is_secret(&dst) { 0o600 } else { 0o644 })?;
        }
    }
    Ok(())
}

/// Private keys, PSKs and the cluster/store keys, by their names and folders
/// in `keys/`.
pub fn is_secret(p: &Path) -> bool {
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    let under = |dir: &str| p.components().any(|c| c.as_os_str() == dir);
    under("private")
        || under("formats")
        || name.ends_with(".psk")
        || name.ends_with(".key")
        || name.contains("key")
}

/// Set a file's mode.
pub fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// A per-process scratch folder `<base>/<label>-<pid>`, with the folders of
/// processes that are gone removed first.
pub fn scratch(base: &Path, label: &str) -> PathBuf {
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix(label).and_then(|r| r.strip_prefix('-'));
            if pid.is_some_and(|p| {
                p.parse::<u32>()
                    .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
            }) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

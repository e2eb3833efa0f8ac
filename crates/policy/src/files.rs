//! File checks: the only part of validation that touches the file system (run by
//! `load`/`check`, not by `parse_str`).
//!
//! Every file the policy names must exist and be a regular file. Secrets (PSK
//! files, private keys, the cluster key) must not be readable or writable by group
//! or others (`mode & 0o077 == 0`, i.e. 0600 or 0400), as OpenSSH insists for its
//! keys. Certificates and CA certificates are public, so they may be readable by
//! all, but they must not be writable by group or others (`mode & 0o022 == 0`):
//! whoever can rewrite a CA file chooses whom we trust.

use std::path::Path;

use crate::model::{Auth, Policy};
use crate::reader::Cx;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Public,
}

/// Checks every file of `p`, reporting at the key that names it.
pub(crate) fn check_files(p: &Policy, cx: &mut Cx) {
    let mut files: Vec<(String, &Path, Kind, &str)> = Vec::new();
    for (i, peer) in p.peers.iter().enumerate() {
        match &peer.auth {
            Auth::Psk { psk_file } => files.push((
                format!("peer[{i}].psk_file"),
                psk_file,
                Kind::Secret,
                "PSK file",
            )),
            Auth::Cert {
                cert,
                private_key,
                ca,
            } => {
                files.push((format!("peer[{i}].cert"), cert, Kind::Public, "certificate"));
                files.push((
                    format!("peer[{i}].private_key"),
                    private_key,
                    Kind::Secret,
                    "private key",
                ));
                for (k, c) in ca.iter().enumerate() {
                    files.push((
                        format!("peer[{i}].ca[{k}]"),
                        c,
                        Kind::Public,
                        "CA certificate",
                    ));
                }
            }
        }
    }
    if let Some(c) = &p.cluster {
        files.push((
            "cluster.key_file".into(),
            &c.key_file,
            Kind::Secret,
            "cluster key file",
        ));
    }
    for (path, file, kind, what) in files {
        if !cx.spans_has(&path) || !cx.spans.ok(&path) {
            continue;
        }
        if let Some(msg) = problem(file, kind, what) {
            let span = cx.spans.get(&path);
            cx.err(&path, span, msg);
        }
    }
}

fn problem(file: &Path, kind: Kind, what: &str) -> Option<String> {
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("{what} {} does not exist", file.display()))
        }
        Err(e) => return Some(format!("{what} {} cannot be read: {e}", file.display())),
    };
    if !meta.is_file() {
        return Some(format!("{what} {} is not a regular file", file.display()));
    }
    mode_problem(file, &meta, kind, what)
}

#[cfg(unix)]
fn mode_problem(file: &Path, meta: &std::fs::Metadata, kind: Kind, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    match kind {
        Kind::Secret if mode & 0o077 != 0 => Some(format!(
            "{what} {} has mode {mode:04o}: group and others can access it; run `chmod 600 {}`",
            file.display(),
            file.display()
        )),
        Kind::Public if mode & 0o022 != 0 => Some(format!(
            "{what} {} has mode {mode:04o}: group or others can rewrite it; run `chmod go-w {}`",
            file.display(),
            file.display()
        )),
        _ => None,
    }
}

#[cfg(not(unix))]
fn mode_problem(_: &Path, _: &std::fs::Metadata, _: Kind, _: &str) -> Option<String> {
    None
}

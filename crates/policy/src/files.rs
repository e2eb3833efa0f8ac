//! File checks: the only part of validation that touches the file system (run by
//! `load`/`check`, not by `parse_str`).
//!
//! Every file the policy names must exist and be a regular file. Secrets (PSK
//! files, private keys, the cluster key) must not be readable or writable by group
//! or others (`mode & 0o077 == 0`, i.e. 0600 or 0400), as OpenSSH insists for its
//! keys. Certificates and CA certificates are public, so they may be readable by
//! all, but they must not be writable by group or others (`mode & 0o022 == 0`):
//! whoever can rewrite a CA file chooses whom we trust. A PSK file must also
//! hold a key of at least [`MIN_PSK_BYTES`] bytes (#15: an empty PSK file let a
//! peer authenticate with an empty secret).

use std::collections::HashMap;
use std::path::Path;

use crate::model::{Auth, Policy};
use crate::reader::Cx;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Secret,
    /// A secret that must also be long enough: a pre-shared key.
    Psk,
    /// A secret of a fixed form: a store sealing key (32 bytes, as 64 hex
    /// digits or raw).
    StoreKey,
    Public,
}

/// The shortest pre-shared key accepted, in bytes, after trailing newlines
/// (`\n`, `\r`) are trimmed as the daemon trims them. 16 bytes is 128 bits if
/// the key is random; strongSwan warns below 20 characters. An empty PSK would
/// let anyone who knows the identity authenticate.
pub const MIN_PSK_BYTES: usize = 16;

/// A PSK file longer than this is surely not a PSK (and is not read whole).
const MAX_PSK_BYTES: u64 = 64 * 1024;

/// Checks every file of `p`, reporting at the key that names it.
pub(crate) fn check_files(p: &Policy, cx: &mut Cx) {
    let mut files: Vec<(String, &Path, Kind, &str)> = Vec::new();
    for (i, peer) in p.peers.iter().enumerate() {
        match &peer.auth {
            Auth::Psk { psk_file } => files.push((
                format!("peer[{i}].psk_file"),
                psk_file,
                Kind::Psk,
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
    if let Some(ha) = &p.ha {
        let k = &ha.store_keys;
        files.push((
            "ha.store.key_file".into(),
            &k.key_file,
            Kind::StoreKey,
            "store key file",
        ));
        for (i, o) in k.old_keys.iter().enumerate() {
            files.push((
                format!("ha.store.old_keys[{i}].file"),
                &o.file,
                Kind::StoreKey,
                "old store key file",
            ));
        }
    }
    // Many peers may share one file: look at each file once.
    let mut seen: HashMap<(&Path, Kind), Option<String>> = HashMap::new();
    for (path, file, kind, what) in files {
        if !cx.spans_has(&path) || !cx.spans.ok(&path) {
            continue;
        }
        let found = seen
            .entry((file, kind))
            .or_insert_with(|| problem(file, kind, what));
        if let Some(msg) = found.clone() {
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
    mode_problem(file, &meta, kind, what).or_else(|| match kind {
        Kind::Psk => psk_problem(file),
        Kind::StoreKey => store_key_problem(file, what),
        _ => None,
    })
}

/// A store key that is not 32 bytes, written as 64 hex digits (surrounding
/// whitespace ignored) or raw: the forms the store reads.
fn store_key_problem(file: &Path, what: &str) -> Option<String> {
    use std::io::Read;
    let mut raw = Vec::new();
    let read = std::fs::File::open(file).and_then(|f| f.take(4096).read_to_end(&mut raw));
    if let Err(e) = read {
        return Some(format!("{what} {} cannot be read: {e}", file.display()));
    }
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    let hex = text.is_some_and(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || raw.len() == 32 {
        return None;
    }
    Some(format!(
        "{what} {} is not a store key: it must hold 32 bytes as 64 hex digits (make one with `openssl rand -hex 32 > {}`) or 32 raw bytes",
        file.display(),
        file.display()
    ))
}

/// An empty, short or huge pre-shared key.
fn psk_problem(file: &Path) -> Option<String> {
    use std::io::Read;
    let mut raw = Vec::new();
    let read =
        std::fs::File::open(file).and_then(|f| f.take(MAX_PSK_BYTES + 1).read_to_end(&mut raw));
    if let Err(e) = read {
        return Some(format!("PSK file {} cannot be read: {e}", file.display()));
    }
    if raw.len() as u64 > MAX_PSK_BYTES {
        return Some(format!(
            "PSK file {} is larger than {} KiB: it does not hold a pre-shared key",
            file.display(),
            MAX_PSK_BYTES / 1024
        ));
    }
    while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        raw.pop();
    }
    let hint = format!(
        "a pre-shared key must be at least {MIN_PSK_BYTES} bytes; make one with `head -c 32 /dev/urandom | base64 > {}`",
        file.display()
    );
    match raw.len() {
        0 => Some(format!(
            "PSK file {} is empty (after its trailing newline): {hint}",
            file.display()
        )),
        n if n < MIN_PSK_BYTES => Some(format!(
            "PSK file {} holds a {n}-byte key, too short to resist guessing: {hint}",
            file.display()
        )),
        _ => None,
    }
}

#[cfg(unix)]
fn mode_problem(file: &Path, meta: &std::fs::Metadata, kind: Kind, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    match kind {
        Kind::Secret | Kind::Psk | Kind::StoreKey if mode & 0o077 != 0 => Some(format!(
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

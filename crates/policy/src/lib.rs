//! plexgate-policy: the per-site policy file — its typed model, parsing with exact
//! positions, and validation that reports every problem like a compiler.
//!
//! A site operator writes one TOML file per site (see `docs/policy.md` and the
//! examples in `policy/`). [`load`] reads it, parses it, validates it and checks the
//! key files it names; it returns the typed [`Policy`] plus warnings, or all the
//! [`Diagnostics`] (errors and warnings, each with file, line and column). [`check`]
//! is the same for `plexgate policy check FILE`: a [`Report`] whose `Display` prints
//! every diagnostic with the offending line quoted and a caret under it.
//!
//! ```
//! let text = r#"
//! [site]
//! name = "lab"
//! gateway_vipas = ["192.0.2.1"]
//! [[site.interface]]
//! name = "eth0"
//! address = "192.0.2.2/24"
//! "#;
//! let ok = plexgate_policy::parse_str(text, "lab.toml", std::path::Path::new(".")).unwrap();
//! assert_eq!(ok.policy.site.ike_port, 500);
//!
//! let bad = text.replace("192.0.2.1", "198.51.100.1");
//! let diags = plexgate_policy::parse_str(&bad, "lab.toml", std::path::Path::new(".")).unwrap_err();
//! assert_eq!(
//!     diags.short_lines()[0],
//!     "lab.toml:4:18: error: gateway VIPA 198.51.100.1 is not on any local subnet (the interfaces have 192.0.2.0/24)"
//! );
//! ```
//!
//! The crate does no I/O except in [`load`] and [`check`] (reading the policy file
//! and inspecting the key files it names).
#![warn(missing_docs, unreachable_pub)]

pub mod addr;
pub mod diag;
mod files;
pub mod model;
mod parse;
pub mod proposal;
mod reader;
mod validate;

use std::fmt;
use std::path::Path;

pub use addr::{AddrSel, IpRange, PortRange, TrafficSelector, TsAddr};
pub use diag::{Diagnostic, Diagnostics, Note, Position, Severity};
pub use files::MIN_PSK_BYTES;
pub use model::*;
pub use proposal::support::{EspSuite, DH_GROUPS, ESP_SUITES, IKE_ENCR, IKE_INTEG, IKE_PRF};
pub use proposal::{DhGroup, Encr, Esn, EspProposal, IkeProposal, Integ, Prf, ProposalError};

use reader::{Cx, Spans, Table};

/// A policy that passed validation, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The validated policy.
    pub policy: Policy,
    /// Warnings (no errors); may be empty.
    pub warnings: Diagnostics,
}

/// Parses and validates policy `text` without touching the file system: key files
/// are not checked. `file_name` is used in messages; relative paths in the policy
/// are resolved against `base_dir`.
///
/// Returns the policy and its warnings, or every diagnostic if there is at least
/// one error.
pub fn parse_str(text: &str, file_name: &str, base_dir: &Path) -> Result<Checked, Diagnostics> {
    run(text, file_name, base_dir, false)
}

/// Reads, parses and validates the policy file at `path`, including the checks on
/// the key files it names (existence and permissions). Relative paths in the file
/// are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Checked, Diagnostics> {
    let name = path.display().to_string();
    let text = read_policy(path).map_err(|msg| {
        let mut d = Diagnostics::new(name.clone(), "");
        d.error(None, msg);
        d
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    run(&text, &name, base, true).map(|mut c| {
        c.policy.source = path.to_path_buf();
        c
    })
}

/// The largest policy file [`load`] reads. Checking takes about 30 times the
/// file's size in memory (the TOML document with every span), so this bounds
/// the checker near 4 GB; a 50 MB policy, far beyond any real site, checks in
/// seconds.
pub const MAX_POLICY_BYTES: u64 = 128 * 1024 * 1024;

/// The text of the policy file, or why it cannot be had.
fn read_policy(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read the policy file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the policy file: {e}"))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!(
            "the policy file is larger than {} MiB; a policy that size is not a site's policy (and checking it would need gigabytes)",
            MAX_POLICY_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the policy file is not valid UTF-8 (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The result of `plexgate policy check FILE`.
#[derive(Debug, Clone)]
pub struct Report {
    /// The policy, if there were no errors.
    pub policy: Option<Policy>,
    /// All errors and warnings, sorted by position.
    pub diagnostics: Diagnostics,
}

impl Report {
    /// True if the policy has errors (the CLI should exit non-zero).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.has_errors()
    }
}

impl fmt::Display for Report {
    /// Every diagnostic like rustc, then a summary line
    /// (`FILE: 2 errors, 1 warning` or `FILE: ok, 0 warnings`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.diagnostics.fmt(f)
    }
}

/// [`load`] as a [`Report`].
pub fn check(path: &Path) -> Report {
    match load(path) {
        Ok(c) => Report {
            policy: Some(c.policy),
            diagnostics: c.warnings,
        },
        Err(d) => Report {
            policy: None,
            diagnostics: d,
        },
    }
}

fn run(text: &str, file_name: &str, base: &Path, with_files: bool) -> Result<Checked, Diagnostics> {
    let mut diags = Diagnostics::new(file_name, text);
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    for e in &syntax {
        let mut msg = format!("TOML syntax: {}", e.message().trim_end());
        if let Some(v) = e.span().and_then(|sp| unquoted_address(text, sp.start)) {
            msg.push_str(&format!(
                "; addresses are strings and must be quoted: \"{v}\""
            ));
        }
        diags.error(e.span(), msg);
    }
    if !syntax.is_empty() {
        // After a syntax error the recovered document is a guess; checking its
        // meaning would bury the real problem under follow-on errors.
        diags.sort();
        return Err(diags);
    }
    let mut cx = Cx {
        diags,
        spans: Spans::of(doc.get_ref()),
    };
    let root = Table::new(
        String::new(),
        "the top level".into(),
        doc.span(),
        doc.get_ref(),
    );
    let mut policy = parse::parse(root, &mut cx, Path::new(file_name), base);
    validate::validate(&mut policy, &mut cx);
    if with_files {
        files::check_files(&policy, &mut cx);
    }
    let mut diags = cx.diags;
    diags.sort();
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(Checked {
            policy,
            warnings: diags,
        })
    }
}

/// If the line holding byte `at` reads `key = <bare address>` (an IP or CIDR
/// written without quotes), returns the bare value.
fn unquoted_address(text: &str, at: usize) -> Option<&str> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let value = line.split_once('=')?.1.split('#').next()?.trim();
    let looks = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/'))
        && (value.matches('.').count() == 3 || value.contains(':'));
    looks.then_some(value)
}

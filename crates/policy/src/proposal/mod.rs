//! IKE and ESP proposals written as strongSwan-style strings
//! (`aes256gcm16-prfsha384-ecp384`, `aes128-sha256-x25519`, `aes256gcm16-esn`),
//! parsed into structured transforms with their IANA transform IDs.
//!
//! A proposal string is a `-`-separated list of algorithm keywords; each keyword is
//! one transform (RFC 7296 §3.3.2). The checks follow RFC 7296 §3.3 and, mostly,
//! strongSwan: an AEAD cipher carries its own integrity (so no integrity algorithm
//! next to it, and AEAD and non-AEAD ciphers do not mix in one proposal — strongSwan
//! silently splits such a string into two proposals, we ask for two strings);
//! a non-AEAD cipher needs an integrity algorithm; an IKE proposal needs a PRF
//! (taken from the integrity algorithm when not written, as strongSwan does) and a
//! key exchange method; an ESP proposal has no PRF, its optional DH group is the
//! PFS group, and it offers "no ESN" unless `esn` is written.

//= https://www.rfc-editor.org/rfc/rfc7296#section-3.3.3
//#    Protocol    Mandatory Types          Optional Types
//#      IKE         ENCR, PRF, INTEG*, D-H
//#      ESP         ENCR, ESN              INTEG, D-H

//
// `transform` holds the transform types, `words` the keywords and the rules
// that make a proposal of them, `support` what this gateway can use.

use std::fmt;

pub mod support;
mod transform;
mod words;

pub use transform::{DhGroup, Encr, Esn, Integ, Prf};
use words::split;

/// One IKE proposal: every list is non-empty after parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IkeProposal {
    /// Ciphers, all AEAD or all non-AEAD.
    pub encryption: Vec<Encr>,
    /// Integrity algorithms (empty with AEAD ciphers).
    pub integrity: Vec<Integ>,
    /// PRFs (written, or derived from the integrity algorithms).
    pub prf: Vec<Prf>,
    /// Key exchange methods.
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EspProposal {
    /// Ciphers, all AEAD or all non-AEAD.
    pub encryption: Vec<Encr>,
    /// Integrity algorithms (empty with AEAD ciphers).
    pub integrity: Vec<Integ>,
    /// PFS groups for CREATE_CHILD_SA (empty: no PFS).
    pub pfs: Vec<DhGroup>,
    /// ESN choices offered; `[Esn::No]` unless the string says `esn`.
    pub esn: Vec<Esn>,
}

/// Why a proposal string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// A keyword that is not an algorithm we implement.
    #[error("unknown algorithm `{word}` in {kind} proposal `{proposal}`{hint}")]
    Unknown {
        /// "IKE" or "ESP".
        kind: &'static str,
        /// The whole proposal string.
        proposal: String,
        /// The unknown keyword.
        word: String,
        /// "; did you mean …" or the list of known keywords.
        hint: String,
    },
    /// The keywords do not make a usable proposal.
    #[error("{kind} proposal `{proposal}` {problem}")]
    Invalid {
        /// "IKE" or "ESP".
        kind: &'static str,
        /// The whole proposal string.
        proposal: String,
        /// What is wrong, as the end of a sentence.
        problem: String,
    },
}

/// A parsed proposal plus warnings about weak algorithms.
pub type WithWarnings<T> = (T, Vec<String>);

/// Parses an IKE proposal such as `aes256gcm16-prfsha384-ecp384`.
pub fn parse_ike(s: &str) -> Result<WithWarnings<IkeProposal>, ProposalError> {
    let mut w = split("IKE", s)?;
    let invalid = |problem: &str| ProposalError::Invalid {
        kind: "IKE",
        proposal: s.to_string(),
        problem: problem.to_string(),
    };
    if !w.esn.is_empty() {
        return Err(invalid(
            "names esn/noesn, which only applies to ESP proposals",
        ));
    }
    if w.prf.is_empty() {
        // strongSwan: without an explicit PRF the integrity algorithms map to PRFs.
        w.prf = w.integ.iter().map(Integ::as_prf).collect();
    }
    if w.prf.is_empty() {
        return Err(invalid(
            "uses an AEAD cipher but names no PRF (add e.g. prfsha256 or prfsha384)",
        ));
    }
    if w.dh.is_empty() {
        return Err(invalid(
            "has no key exchange method (add e.g. x25519 or ecp384)",
        ));
    }
    Ok((
        IkeProposal {
            encryption: w.encr,
            integrity: w.integ,
            prf: w.prf,
            dh: w.dh,
        },
        w.warnings,
    ))
}

/// Parses an ESP proposal such as `aes256gcm16-esn` or `aes256-sha256-ecp384`.
pub fn parse_esp(s: &str) -> Result<WithWarnings<EspProposal>, ProposalError> {
    let w = split("ESP", s)?;
    if !w.prf.is_empty() {
        return Err(ProposalError::Invalid {
            kind: "ESP",
            proposal: s.to_string(),
            problem: "names a PRF (prf…), which only applies to IKE proposals".into(),
        });
    }
    let esn = if w.esn.is_empty() {
        vec![Esn::No]
    } else {
        w.esn
    };
    Ok((
        EspProposal {
            encryption: w.encr,
            integrity: w.integ,
            pfs: w.dh,
            esn,
        },
        w.warnings,
    ))
}

fn join(f: &mut fmt::Formatter<'_>, words: &[String]) -> fmt::Result {
    f.write_str(&words.join("-"))
}

fn words<T: fmt::Display>(v: &[T]) -> impl Iterator<Item = String> + '_ {
    v.iter().map(|x| x.to_string())
}

impl fmt::Display for IkeProposal {
    /// The strongSwan string, PRF always written out: parsing it gives back the
    /// same proposal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w: Vec<String> = words(&self.encryption)
            .chain(words(&self.integrity))
            .chain(words(&self.prf))
            .chain(words(&self.dh))
            .collect();
        join(f, &w)
    }
}

impl fmt::Display for EspProposal {
    /// The strongSwan string; `esn`/`noesn` only when not the default "no ESN".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w: Vec<String> = words(&self.encryption)
            .chain(words(&self.integrity))
            .chain(words(&self.pfs))
            .collect();
        if self.esn != [Esn::No] {
            w.extend(self.esn.iter().map(|e| match e {
                Esn::Yes => "esn".to_string(),
                Esn::No => "noesn".to_string(),
            }));
        }
        join(f, &w)
    }
}

#[cfg(test)]
mod tests;

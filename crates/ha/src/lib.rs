//! # plexgate-ha — high availability (sans-IO)
//!
//! Two machines live here, both free of I/O and of clocks (time is passed in, as in
//! quinn-proto), so that a whole cluster runs deterministically in one test process:
//!
//! - [`takeover`]: per DVIPA, the roles routing / backup(rank) / standby, driven by
//!   store events, cluster messages and time, returning actions (DESIGN.md flows 6
//!   and 7; seed 001 figures 7A, 7B, 8A, 8B, 14, 15);
//! - [`l2`]: which gateway answers ARP for which address, on which interface, with
//!   which MAC (DESIGN.md flow 8; seeds 000, 002, 003, 004).
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod l2;
pub mod takeover;

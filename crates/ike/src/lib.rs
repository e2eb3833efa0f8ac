//! plexgate-ike: IKEv2 (RFC 7296) as a deterministic sans-IO state machine.
//!
//! The crate never touches sockets or clocks: the daemon hands datagrams to
//! [`Endpoint::handle`] with the current time, and takes what to send from
//! [`Endpoint::poll_transmit`], what happened from [`Endpoint::poll_event`] and when
//! to call back from [`Endpoint::poll_timeout`], in the quinn-proto shape.
//!
//! Modules: [`message`] (codec), [`crypto`] (PRF, keys, SK payload, DH),
//! [`config`] (what the daemon maps the site policy onto), [`endpoint`] (the state
//! machine) and [`record`] (recovery records for takeover).
#![warn(missing_docs, unreachable_pub)]

pub mod bench;
pub mod config;
pub mod crypto;
pub mod endpoint;
pub mod message;
pub mod record;

#[cfg(test)]
mod captures;
#[cfg(test)]
mod testutil;

pub use config::{
    AuthConfig, ChildConfig, Config, EspProposal, EspSupport, EspTransformId, IkeProposal, Limits,
    Mode, PeerConfig, Retransmit, StartAction,
};
pub use crypto::{Rng, SeededRng, SystemRng};
pub use endpoint::{ChildSa, Endpoint, Error, Event, IkeKeyLog, IkeSaId, IkeSaInfo, Transmit};
pub use message::TrafficSelector;
pub use record::{ChildRecord, IkeRecord};

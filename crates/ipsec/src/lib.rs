//! plexgate-ipsec: the ESP data plane, sans I/O.
//!
//! - [`transform`]: AES-GCM (RFC 4106), ChaCha20-Poly1305 (RFC 7634) and
//!   AES-CBC + HMAC-SHA-256-128 (RFC 3602, RFC 4868), keyed once per SA;
//! - [`replay`]: the anti-replay window and ESN inference (RFC 4303 §3.4.3,
//!   Appendix A2);
//! - [`sa`]: [`SaParams`] (a serializable recovery record) and
//!   [`SecurityAssociation`] with zero-allocation `seal` / `open_in_place`;
//! - [`sad`]: the security association database (SAD): SAs by SPI, lifetimes,
//!   events; [`spd`]: the security policy database (SPD, RFC 4301 §4.4.1);
//! - [`selector`]: traffic selectors (RFC 7296 §3.13.1);
//! - [`keylog`]: Wireshark `esp_sa` lines; [`error`]: [`EspError`] and
//!   per-reason [`Counters`].
//!
//! Time is passed in as `std::time::Instant`; nothing here reads a clock,
//! opens a socket or spawns a task.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod error;
pub mod keylog;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod selector;
pub mod spd;
pub mod transform;

pub use error::{Counters, EspError, SaError};
pub use sa::{
    ChildSaConfig, Direction, Lifetime, Limits, Mode, Opened, SaParams, SaStats,
    SecurityAssociation, UdpEncapPorts,
};
pub use sad::{Inbound, Sad, SadEvent};
pub use selector::TrafficSelector;
pub use spd::{Spd, SpdAction, SpdRule};
pub use transform::{ChildKeys, EspCipher, EspTransform};

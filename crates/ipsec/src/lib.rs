//! plexgate-ipsec: the ESP data plane, sans I/O.
//!
//! - [`transform`]: AES-GCM (RFC 4106), ChaCha20-Poly1305 (RFC 7634) and
//!   AES-CBC + HMAC-SHA-256/384/512 (RFC 3602, RFC 4868): ids, sizes and the
//!   list of installable transforms; [`cipher`]: their primitives, keyed once per SA;
//! - [`replay`]: the anti-replay window and ESN inference (RFC 4303 §3.4.3,
//!   Appendix A2);
//! - [`sa`]: [`SaParams`] (a serializable recovery record) and
//!   [`SecurityAssociation`] with zero-allocation `seal` / `open_in_place`;
//! - [`sad`]: the security association database (SAD): inbound SAs by SPI,
//!   outbound SAs chosen by SPD rule and selectors, lifetimes, events;
//!   [`spd`]: the security policy database (SPD, RFC 4301 §4.4.1);
//! - [`selector`]: traffic selectors (RFC 7296 §3.13.1); [`transport`]: what
//!   an inbound transport-mode SA hands on (outer addresses, protocol, payload);
//! - [`keylog`]: Wireshark `esp_sa` and `ikev2_decryption_table` lines;
//!   [`error`]: [`EspError`] and
//!   per-reason [`Counters`].
//!
//! Time is passed in as `std::time::Instant`; nothing here reads a clock,
//! opens a socket or spawns a task.
//!
//! # Example: a Child SA from IKE key material, seal and open
//!
//! ```
//! use plexgate_ipsec::*;
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let cfg = ChildSaConfig {
//!     transform: EspTransform::from_ikev2(20, Some(128), None)?, // AES-GCM-16/128
//!     esn: false,
//!     mode: Mode::Tunnel,
//!     replay_window: replay::DEFAULT_WINDOW,
//!     lifetime: Lifetime::default(),
//!     local_ts: vec![TrafficSelector::host("203.0.113.250".parse()?)],
//!     remote_ts: vec![TrafficSelector::host("192.168.250.1".parse()?)],
//!     local_addr: "10.250.0.2".parse()?,
//!     remote_addr: "10.250.0.1".parse()?,
//!     encap: Some(UdpEncapPorts { local_port: 4500, remote_port: 4500 }),
//!     peer: "c".into(),
//!     child: "net".into(),
//! };
//! // KEYMAT = prf+(SK_d, Ni | Nr) from the IKE crate; we are the responder.
//! let keymat = vec![7u8; 2 * cfg.transform.keymat_len()];
//! let (inbound, outbound) = SaParams::pair_from_keymat(&cfg, &keymat, false, 0xc391_0a43, 0x634a_93ee)?;
//! let mut sad = Sad::new();
//! sad.insert_child(inbound, outbound, "client@example", now)?;
//!
//! // Outbound: SPD says Protect { peer: "c", child: "net" } -> SA -> seal.
//! let reply = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 203, 0, 113, 250, 192, 168, 250, 1];
//! let t = plexgate_wire::ip::FiveTuple::parse(&reply)?;
//! let out = sad.outbound_for("c", "net", &t).unwrap();
//! let mut datagram = [0u8; 2048]; // UDP/4500 payload to send
//! let n = sad.seal(now, out, &reply, 4, &mut datagram)?;
//! assert_eq!(n, 8 + 8 + 20 + 2 + 2 + 16);
//!
//! // Inbound: a UDP/4500 payload classified as ESP is opened in place.
//! # let mut peer_p = sad.inbound(0xc391_0a43).unwrap().params().clone();
//! # peer_p.direction = Direction::Outbound;
//! # let mut peer = SecurityAssociation::new(peer_p, now)?;
//! # let ping = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 250, 1, 203, 0, 113, 250];
//! # let mut buf = [0u8; 2048];
//! # let len = peer.seal(now, &ping, 4, &mut buf)?;
//! let payload = &mut buf[..len];
//! match plexgate_wire::udp_encap::classify(payload)? {
//!     plexgate_wire::udp_encap::UdpEncap::Esp(_) => {
//!         let got = sad.open_in_place(now, payload)?;
//!         let inner = &payload[got.opened.inner.clone()]; // the client's IPv4 packet
//!         assert_eq!(got.opened.next_header, 4);
//!         assert_eq!(inner, &ping[..]);
//!     }
//!     _ => unreachable!(),
//! }
//! assert_eq!(sad.counters.rx_packets, 1);
//! println!("{}", keylog::esp_sa_file(sad.iter().map(|sa| sa.params())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod cipher;
pub mod error;
pub mod keylog;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod selector;
pub mod spd;
pub mod transform;
pub mod transport;

pub use error::{Counters, EspError, SaError};
pub use sa::{
    ChildSaConfig, Direction, Lifetime, Limits, Mode, Opened, SaParams, SaStats,
    SecurityAssociation, UdpEncapPorts,
};
pub use sad::{ChildKey, ChildRef, Inbound, OutHandle, SaKey, Sad, SadEvent};
pub use selector::TrafficSelector;
pub use spd::{Spd, SpdAction, SpdRule};
pub use transform::{ChildKeys, EspCipher, EspTransform, Integ};
pub use transport::TransportPacket;

//! ARP for IPv4 over Ethernet (RFC 826), with the Ethernet II header around it:
//! what plexgate reads and writes on its packet sockets to own addresses on a LAN
//! (answer requests for a VIPA, send gratuitous ARP on takeover, notice another host
//! claiming an address we own).
//!
//! [`EthernetFrame`] and [`ArpPacket`] are checked views in the smoltcp style: after
//! `new_checked` no accessor panics. [`ArpPacket::new_checked`] only checks that the
//! addresses announced by the length fields fit, so a view exists for any hardware
//! or protocol type; [`ArpRepr::parse`] then accepts only Ethernet (6-byte) and IPv4
//! (4-byte) addresses and the two operations of RFC 826. [`ArpFrameRepr`] is the
//! whole 42-byte frame (Ethernet header + ARP) that plexgate sends and receives.
//! Bad input gives an [`ArpError`]; nothing here panics on untrusted bytes.

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Length of the Ethernet II header (destination, source, EtherType).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// ARP hardware type of Ethernet (RFC 826: `ares_hrd$Ethernet`).
pub const HTYPE_ETHERNET: u16 = 1;
/// Length of an ARP packet for Ethernet and IPv4.
pub const ARP_IPV4_LEN: usize = 28;
/// Length of an Ethernet frame carrying ARP for IPv4, without the padding a NIC
/// adds up to the 60-byte minimum.
pub const FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_IPV4_LEN;

/// Why an Ethernet frame or ARP packet could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    /// The buffer is shorter than the header or than the addresses it announces.
    #[error("truncated frame: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// The output buffer is too small.
    #[error("output buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The Ethernet frame does not carry ARP.
    #[error("EtherType {0:#06x} is not ARP")]
    NotArp(u16),
    /// A hardware type other than Ethernet.
    #[error("ARP hardware type {0} is not Ethernet (1)")]
    HardwareType(u16),
    /// A protocol type other than IPv4.
    #[error("ARP protocol type {0:#06x} is not IPv4")]
    ProtocolType(u16),
    /// Address lengths other than 6 (MAC) and 4 (IPv4).
    #[error("ARP address lengths {hardware}/{protocol}, expected 6/4")]
    AddressLengths {
        /// The hardware address length field.
        hardware: u8,
        /// The protocol address length field.
        protocol: u8,
    },
    /// An operation other than request (1) or reply (2).
    #[error("ARP operation {0} is neither request (1) nor reply (2)")]
    Operation(u16),
}

/// Result type of this module.
pub type Result<T> = core::result::Result<T, ArpError>;

fn need(have: usize, needed: usize) -> Result<()> {
    if have < needed {
        Err(ArpError::Truncated { needed, have })
    } else {
        Ok(())
    }
}

fn out_room(have: usize, needed: usize) -> Result<()> {
    if have < needed {
        Err(ArpError::BufferTooSmall { needed, have })
    } else {
        Ok(())
    }
}

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);
    /// `00:00:00:00:00:00` (an ARP request's unknown target hardware address).
    pub const ZERO: EthernetAddress = EthernetAddress([0; 6]);

    /// The address in the first six bytes of `b`, if there are six.
    pub fn from_bytes(b: &[u8]) -> Option<EthernetAddress> {
        let a: [u8; 6] = b.get(..6)?.try_into().ok()?;
        Some(EthernetAddress(a))
    }

    /// The six bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The group bit (least significant bit of the first byte) is set; includes
    /// broadcast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// All zeros.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// A unicast address that is not all zeros: one a host may send from.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// The locally administered bit is set.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (six hex bytes separated by `:` or `-`)")]
pub struct ParseMacError(pub String);

impl FromStr for EthernetAddress {
    type Err = ParseMacError;

    /// Parses `02:bf:0a:00:00:01` or `02-bf-0a-00-00-01` (either case).
    fn from_str(s: &str) -> core::result::Result<Self, ParseMacError> {
        let err = || ParseMacError(s.to_string());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.len() != 2 {
                return Err(err());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(EthernetAddress(out))
    }
}

mod eth_field {
    use core::ops::{Range, RangeFrom};
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const PAYLOAD: RangeFrom<usize> = 14..;
}

/// A checked view of an Ethernet II frame (no 802.1Q tag: a packet socket on a
/// VLAN device, or with the tag offloaded, sees the frame untagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking; prefer [`EthernetFrame::new_checked`].
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that the 14-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        need(buffer.as_ref().len(), ETHERNET_HEADER_LEN)?;
        Ok(Self::new_unchecked(buffer))
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    pub fn dst(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[eth_field::DST]);
        EthernetAddress(a)
    }

    /// Source MAC.
    pub fn src(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[eth_field::SRC]);
        EthernetAddress(a)
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[eth_field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the header (including any padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[eth_field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    pub fn set_dst(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[eth_field::DST].copy_from_slice(&a.0);
    }

    /// Sets the source MAC.
    pub fn set_src(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[eth_field::SRC].copy_from_slice(&a.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[eth_field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[eth_field::PAYLOAD]
    }
}

/// The Ethernet II header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Destination MAC.
    pub dst: EthernetAddress,
    /// Source MAC.
    pub src: EthernetAddress,
    /// EtherType of the payload.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> EthernetRepr {
        EthernetRepr {
            dst: frame.dst(),
            src: frame.src(),
            ethertype: frame.ethertype(),
        }
    }

    /// Writes the header into `buf[..14]`; returns 14.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        out_room(buf.len(), ETHERNET_HEADER_LEN)?;
        let mut f = EthernetFrame::new_unchecked(buf);
        f.set_dst(self.dst);
        f.set_src(self.src);
        f.set_ethertype(self.ethertype);
        Ok(ETHERNET_HEADER_LEN)
    }
}

/// An ARP operation (RFC 826 `ar$op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// `ares_op$REQUEST` (1).
    Request,
    /// `ares_op$REPLY` (2).
    Reply,
    /// Any other value (RARP, InARP, …), which plexgate does not speak.
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            x => ArpOperation::Unknown(x),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(o: ArpOperation) -> u16 {
        match o {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(x) => x,
        }
    }
}

//= https://www.rfc-editor.org/rfc/rfc826
//# 16.bit: (ar$hrd) Hardware address space (e.g., Ethernet,
//#                  Packet Radio Net.)
//# 16.bit: (ar$pro) Protocol address space.  For Ethernet
//#                  hardware, this is from the set of type
//#                  fields ether_typ$<protocol>.
//#  8.bit: (ar$hln) byte length of each hardware address
//#  8.bit: (ar$pln) byte length of each protocol address
//# 16.bit: (ar$op)  opcode (ares_op$REQUEST | ares_op$REPLY)
//# nbytes: (ar$sha) Hardware address of sender of this
//#                  packet, n from the ar$hln field.
//# mbytes: (ar$spa) Protocol address of sender of this
//#                  packet, m from the ar$pln field.
//# nbytes: (ar$tha) Hardware address of target of this
//#                  packet (if known).
//# mbytes: (ar$tpa) Protocol address of target.
mod arp_field {
    use core::ops::Range;
    pub(super) const HTYPE: Range<usize> = 0..2;
    pub(super) const PTYPE: Range<usize> = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Range<usize> = 6..8;
    pub(super) const FIXED_LEN: usize = 8;

    pub(super) fn sha(hlen: u8, _plen: u8) -> Range<usize> {
        FIXED_LEN..FIXED_LEN + usize::from(hlen)
    }
    pub(super) fn spa(hlen: u8, plen: u8) -> Range<usize> {
        let s = sha(hlen, plen).end;
        s..s + usize::from(plen)
    }
    pub(super) fn tha(hlen: u8, plen: u8) -> Range<usize> {
        let s = spa(hlen, plen).end;
        s..s + usize::from(hlen)
    }
    pub(super) fn tpa(hlen: u8, plen: u8) -> Range<usize> {
        let s = tha(hlen, plen).end;
        s..s + usize::from(plen)
    }
}

/// A checked view of an ARP packet (the Ethernet payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking; prefer [`ArpPacket::new_checked`].
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking that the fixed header and the four addresses
    /// whose lengths it announces are present (trailing padding is allowed).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        need(len, arp_field::FIXED_LEN)?;
        need(len, arp_field::tpa(p.hardware_len(), p.protocol_len()).end)?;
        Ok(p)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Hardware type (`ar$hrd`), 1 for Ethernet.
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(arp_field::HTYPE)
    }

    /// Protocol type (`ar$pro`), 0x0800 for IPv4.
    pub fn protocol_type(&self) -> u16 {
        self.u16_at(arp_field::PTYPE)
    }

    /// Hardware address length (`ar$hln`).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[arp_field::HLEN]
    }

    /// Protocol address length (`ar$pln`).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[arp_field::PLEN]
    }

    /// Operation (`ar$op`).
    pub fn operation(&self) -> ArpOperation {
        self.u16_at(arp_field::OPER).into()
    }

    /// Sender hardware address (`ar$sha`), `hardware_len()` bytes.
    pub fn sender_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[arp_field::sha(self.hardware_len(), self.protocol_len())]
    }

    /// Sender protocol address (`ar$spa`), `protocol_len()` bytes.
    pub fn sender_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[arp_field::spa(self.hardware_len(), self.protocol_len())]
    }

    /// Target hardware address (`ar$tha`).
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[arp_field::tha(self.hardware_len(), self.protocol_len())]
    }

    /// Target protocol address (`ar$tpa`).
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[arp_field::tpa(self.hardware_len(), self.protocol_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the operation.
    pub fn set_operation(&mut self, op: ArpOperation) {
        let v: u16 = op.into();
        self.buffer.as_mut()[arp_field::OPER].copy_from_slice(&v.to_be_bytes());
    }
}

/// An ARP packet for Ethernet and IPv4, the only kind plexgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// `ar$sha`.
    pub sender_mac: EthernetAddress,
    /// `ar$spa` (0.0.0.0 in an RFC 5227 probe).
    pub sender_ip: Ipv4Addr,
    /// `ar$tha` (zero in a request).
    pub target_mac: EthernetAddress,
    /// `ar$tpa`.
    pub target_ip: Ipv4Addr,
}

fn ipv4_at(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl ArpRepr {
    /// Parses a checked packet: Ethernet hardware, IPv4 protocol, lengths 6 and 4,
    /// and a request or reply.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr> {
        if p.hardware_type() != HTYPE_ETHERNET {
            return Err(ArpError::HardwareType(p.hardware_type()));
        }
        if p.protocol_type() != ETHERTYPE_IPV4 {
            return Err(ArpError::ProtocolType(p.protocol_type()));
        }
        if (p.hardware_len(), p.protocol_len()) != (6, 4) {
            return Err(ArpError::AddressLengths {
                hardware: p.hardware_len(),
                protocol: p.protocol_len(),
            });
        }
        let operation = p.operation();
        if let ArpOperation::Unknown(x) = operation {
            return Err(ArpError::Operation(x));
        }
        // The lengths are 6 and 4 and new_checked saw all four fields.
        let mac = |b: &[u8]| EthernetAddress::from_bytes(b).unwrap_or_default();
        Ok(ArpRepr {
            operation,
            sender_mac: mac(p.sender_hardware_addr()),
            sender_ip: ipv4_at(p.sender_protocol_addr()),
            target_mac: mac(p.target_hardware_addr()),
            target_ip: ipv4_at(p.target_protocol_addr()),
        })
    }

    /// Length of the packet [`ArpRepr::emit`] writes (28).
    pub const fn buffer_len(&self) -> usize {
        ARP_IPV4_LEN
    }

    /// Writes the packet into `buf[..28]`; returns 28.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        out_room(buf.len(), ARP_IPV4_LEN)?;
        let b = &mut buf[..ARP_IPV4_LEN];
        b[arp_field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[arp_field::PTYPE].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[arp_field::HLEN] = 6;
        b[arp_field::PLEN] = 4;
        let op: u16 = self.operation.into();
        b[arp_field::OPER].copy_from_slice(&op.to_be_bytes());
        b[arp_field::sha(6, 4)].copy_from_slice(&self.sender_mac.0);
        b[arp_field::spa(6, 4)].copy_from_slice(&self.sender_ip.octets());
        b[arp_field::tha(6, 4)].copy_from_slice(&self.target_mac.0);
        b[arp_field::tpa(6, 4)].copy_from_slice(&self.target_ip.octets());
        Ok(ARP_IPV4_LEN)
    }

    /// A request: who has `target_ip`? tell `sender_ip` (at `sender_mac`).
    pub fn request(sender_mac: EthernetAddress, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac,
            sender_ip,
            target_mac: EthernetAddress::ZERO,
            target_ip,
        }
    }

    /// The reply to `request` saying that its target address is at `mac`.
    //= https://www.rfc-editor.org/rfc/rfc826
    //# Swap hardware and protocol fields, putting the local
    //#     hardware and protocol addresses in the sender fields.
    //# Set the ar$op field to ares_op$REPLY
    pub fn reply_to(request: &ArpRepr, mac: EthernetAddress) -> Self {
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac: mac,
            sender_ip: request.target_ip,
            target_mac: request.sender_mac,
            target_ip: request.sender_ip,
        }
    }

    /// An ARP Announcement (gratuitous ARP): `ip` is at `mac`.
    //= https://www.rfc-editor.org/rfc/rfc5227#section-3
    //# An ARP Announcement is identical to the ARP Probe described above,
    //# except that now the sender and target IP addresses are both set to
    //# the host's newly selected IPv4 address.
    pub fn announcement(mac: EthernetAddress, ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: EthernetAddress::ZERO,
            target_ip: ip,
        }
    }

    /// Sender and target IP are the same (an announcement, or a gratuitous reply).
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }

    /// An RFC 5227 probe: a request with sender IP 0.0.0.0.
    pub fn is_probe(&self) -> bool {
        self.operation == ArpOperation::Request && self.sender_ip.is_unspecified()
    }
}

impl fmt::Display for ArpRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            ArpOperation::Request => write!(
                f,
                "ARP request who-has {} tell {} ({})",
                self.target_ip, self.sender_ip, self.sender_mac
            ),
            ArpOperation::Reply => write!(
                f,
                "ARP reply {} is-at {} (to {} at {})",
                self.sender_ip, self.sender_mac, self.target_ip, self.target_mac
            ),
            ArpOperation::Unknown(x) => write!(f, "ARP operation {x}"),
        }
    }
}

/// A whole ARP frame: the Ethernet addresses and the ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpFrameRepr {
    /// Ethernet destination (broadcast for requests and announcements).
    pub eth_dst: EthernetAddress,
    /// Ethernet source.
    pub eth_src: EthernetAddress,
    /// The ARP packet.
    pub arp: ArpRepr,
}

impl ArpFrameRepr {
    /// Parses an Ethernet frame that must carry ARP for Ethernet and IPv4.
    pub fn parse(frame: &[u8]) -> Result<ArpFrameRepr> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != ETHERTYPE_ARP {
            return Err(ArpError::NotArp(eth.ethertype()));
        }
        let arp = ArpPacket::new_checked(eth.payload())?;
        Ok(ArpFrameRepr {
            eth_dst: eth.dst(),
            eth_src: eth.src(),
            arp: ArpRepr::parse(&arp)?,
        })
    }

    /// Writes the 42-byte frame into `buf`; returns 42.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        out_room(buf.len(), FRAME_LEN)?;
        EthernetRepr {
            dst: self.eth_dst,
            src: self.eth_src,
            ethertype: ETHERTYPE_ARP,
        }
        .emit(buf)?;
        self.arp.emit(&mut buf[ETHERNET_HEADER_LEN..])?;
        Ok(FRAME_LEN)
    }

    /// The 42-byte frame.
    pub fn to_bytes(&self) -> [u8; FRAME_LEN] {
        let mut b = [0u8; FRAME_LEN];
        // FRAME_LEN bytes are exactly what emit needs.
        let _ = self.emit(&mut b);
        b
    }
}

#[cfg(test)]
#[path = "arp_tests.rs"]
mod tests;

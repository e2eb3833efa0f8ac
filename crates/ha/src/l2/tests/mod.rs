//! Unit tests of the L2 ownership machine, one file per behaviour, all on virtual
//! time through the in-memory LAN of `harness`.

mod active_standby;
mod adapters;
mod cluster;
mod harness;
mod hostile;
mod proxy;

use std::net::Ipv4Addr;

use crate::l2::{AddressConfig, AddressKind, Config, InterfaceConfig};

pub(crate) fn iface(name: &str, address: &str, prefix_len: u8) -> InterfaceConfig {
    InterfaceConfig {
        name: name.into(),
        address: address.parse().unwrap(),
        prefix_len,
    }
}

pub(crate) fn owned(address: Ipv4Addr, kind: AddressKind) -> AddressConfig {
    AddressConfig { address, kind }
}

/// One interface `eth0` with `own`/24 and the gateway VIPA.
pub(crate) fn one_lan(own: &str, vipa: Ipv4Addr) -> Config {
    Config::new(
        vec![iface("eth0", own, 24)],
        vec![owned(vipa, AddressKind::GatewayVipa)],
    )
}

//! The store's key layout, made in one place. Under the site prefix (etcd:
//! `/plexgate/<site>/` by default; embedded: `<site>/`):
//!
//! | key | value (sealed) | lease |
//! | --- | --- | --- |
//! | `<prefix>ike/<ike>` | [`crate::records::IkeRecord`] | none |
//! | `<prefix>child/<ike>/<spi_in>` | [`crate::records::ChildRecord`] | none |
//! | `<prefix>gw/<gateway>` | [`crate::ownership::GatewayInfo`] | the gateway's |
//! | `<prefix>hb/<gateway>` | [`crate::ownership::Heartbeat`] | the gateway's |
//! | `<prefix>dvipa/<dvipa>/owner` | [`crate::ownership::OwnerRecord`] | the owner's |
//! | `<prefix>dvipa/<dvipa>/rank/<gateway>` | [`crate::ownership::RankRecord`] | none |
//!
//! Each `<…>` component is *blinded*: 24 hex digits of HMAC-SHA-256 under the site's
//! names key ([`Keyring::blind`]) of the SPI pair, SPI, gateway name or address, so
//! that listing the store reveals no SPI, address or name, while every gateway of
//! the site computes the same key for the same thing. Child keys sit under their IKE
//! SA's component, so the children of one IKE SA are one prefix.

use std::net::IpAddr;
use std::sync::Arc;

use crate::seal::Keyring;

/// An IKE SA's SPI pair (initiator's, responder's): what names an IKE SA in the
/// store and links its Child SAs to it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IkeSpis {
    /// The initiator's SPI.
    pub initiator: u64,
    /// The responder's SPI.
    pub responder: u64,
}

impl std::fmt::Display for IkeSpis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}_i {:016x}_r", self.initiator, self.responder)
    }
}

/// Makes the site's store keys.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    ring: Arc<Keyring>,
}

impl Keys {
    /// Keys under `prefix` (a `/` is appended if missing), blinded with `ring`'s
    /// names key.
    pub fn new(prefix: &str, ring: Arc<Keyring>) -> Keys {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix, ring }
    }

    /// The site prefix (ends with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keyring.
    pub fn ring(&self) -> &Arc<Keyring> {
        &self.ring
    }

    fn ike_part(&self, spis: IkeSpis) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&spis.initiator.to_be_bytes());
        b[8..].copy_from_slice(&spis.responder.to_be_bytes());
        self.ring.blind("ike", &b)
    }

    fn addr_part(&self, addr: IpAddr) -> String {
        match addr {
            IpAddr::V4(a) => self.ring.blind("dvipa", &a.octets()),
            IpAddr::V6(a) => self.ring.blind("dvipa", &a.octets()),
        }
    }

    fn gw_part(&self, gateway: &str) -> String {
        self.ring.blind("gw", gateway.as_bytes())
    }

    /// Prefix of every IKE record.
    pub fn ike_prefix(&self) -> String {
        format!("{}ike/", self.prefix)
    }

    /// The IKE record of an IKE SA.
    pub fn ike(&self, spis: IkeSpis) -> String {
        format!("{}ike/{}", self.prefix, self.ike_part(spis))
    }

    /// Prefix of every Child record.
    pub fn child_prefix(&self) -> String {
        format!("{}child/", self.prefix)
    }

    /// Prefix of the Child records of one IKE SA.
    pub fn children_of(&self, ike: IkeSpis) -> String {
        format!("{}child/{}/", self.prefix, self.ike_part(ike))
    }

    /// The Child record of the Child SA with inbound SPI `spi_in` under IKE SA `ike`.
    pub fn child(&self, ike: IkeSpis, spi_in: u32) -> String {
        format!(
            "{}{}",
            self.children_of(ike),
            self.ring.blind("child", &spi_in.to_be_bytes())
        )
    }

    /// Prefix of every gateway's presence key.
    pub fn gateway_prefix(&self) -> String {
        format!("{}gw/", self.prefix)
    }

    /// A gateway's presence key (on its lease).
    pub fn gateway(&self, name: &str) -> String {
        format!("{}gw/{}", self.prefix, self.gw_part(name))
    }

    /// Prefix of every heartbeat key.
    pub fn heartbeat_prefix(&self) -> String {
        format!("{}hb/", self.prefix)
    }

    /// A gateway's heartbeat key (rewritten every heartbeat interval).
    pub fn heartbeat(&self, name: &str) -> String {
        format!("{}hb/{}", self.prefix, self.gw_part(name))
    }

    /// Prefix of every DVIPA's owner and rank keys.
    pub fn dvipa_prefix(&self) -> String {
        format!("{}dvipa/", self.prefix)
    }

    /// The owner key of a DVIPA (its revision is the owner's epoch).
    pub fn dvipa_owner(&self, dvipa: IpAddr) -> String {
        format!("{}dvipa/{}/owner", self.prefix, self.addr_part(dvipa))
    }

    /// Prefix of the rank keys of a DVIPA.
    pub fn dvipa_ranks(&self, dvipa: IpAddr) -> String {
        format!("{}dvipa/{}/rank/", self.prefix, self.addr_part(dvipa))
    }

    /// The rank key of `gateway` for a DVIPA.
    pub fn dvipa_rank(&self, dvipa: IpAddr, gateway: &str) -> String {
        format!("{}{}", self.dvipa_ranks(dvipa), self.gw_part(gateway))
    }

    /// The move-request key of a DVIPA (or ownership group): a takeback or a
    /// planned move asks its owner to hand it over.
    pub fn dvipa_move(&self, dvipa: IpAddr) -> String {
        format!("{}dvipa/{}/move", self.prefix, self.addr_part(dvipa))
    }

    /// Whether `key` is an owner key (`…/dvipa/<x>/owner`).
    pub fn is_owner_key(&self, key: &str) -> bool {
        key.strip_prefix(&self.dvipa_prefix())
            .is_some_and(|rest| rest.ends_with("/owner") && rest.matches('/').count() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::StoreKey;

    fn keys(site: &str, key: u8) -> Keys {
        let ring = Keyring::single(site, StoreKey::from_bytes(&[key; 32]).unwrap());
        Keys::new("/plexgate/test", Arc::new(ring))
    }

    #[test]
    fn keys_are_blinded_stable_and_distinct() {
        let k = keys("site-a", 1);
        let spis = IkeSpis {
            initiator: 0x1122334455667788,
            responder: 0x99aabbccddeeff00,
        };
        let ike = k.ike(spis);
        assert!(ike.starts_with("/plexgate/test/ike/"));
        assert!(!ike.contains("1122334455667788") && !ike.contains("99aabbccddeeff00"));
        assert_eq!(
            ike,
            keys("site-a", 1).ike(spis),
            "same site and key: same name"
        );
        assert_ne!(
            ike,
            keys("site-b", 1).ike(spis),
            "another site: another name"
        );
        assert_ne!(
            ike,
            keys("site-a", 2).ike(spis),
            "another key: another name"
        );
        let child = k.child(spis, 0xc0ffee01);
        assert!(child.starts_with(&k.children_of(spis)));
        assert!(!child.contains("c0ffee01"));
        assert_ne!(k.child(spis, 1), k.child(spis, 2));
        let d: IpAddr = "10.100.0.10".parse().unwrap();
        let owner = k.dvipa_owner(d);
        assert!(k.is_owner_key(&owner));
        assert!(!k.is_owner_key(&k.dvipa_rank(d, "gw-a")));
        assert!(!owner.contains("10.100") && !owner.contains("0a64000a"));
        assert!(k.dvipa_rank(d, "gw-a").starts_with(&k.dvipa_ranks(d)));
        assert!(!k.gateway("gw-a").contains("gw-a"));
        assert_ne!(k.gateway("gw-a"), k.gateway("gw-b"));
    }
}

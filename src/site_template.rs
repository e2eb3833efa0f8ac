//! A site policy for the most common shape — road warriors with a PSK reaching one
//! DVIPA whose connections are spread over targets, each on its own /30 link —
//! rendered as the TOML an operator would write. The demo, the datapath benchmark
//! and the tests build their sites from it, so the file format has one generator.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// A target and the point-to-point link it sits on.
#[derive(Debug, Clone)]
pub struct TargetLink {
    /// Target name (`web-1`).
    pub name: String,
    /// The gateway's interface towards it.
    pub interface: String,
    /// The gateway's address on the /30.
    pub gateway: Ipv4Addr,
    /// The target's address on the /30.
    pub address: Ipv4Addr,
}

impl TargetLink {
    /// Target `name` on the /30 whose gateway side is `gateway` (the target is the next address).
    pub fn new(name: &str, interface: &str, gateway: Ipv4Addr) -> TargetLink {
        TargetLink {
            name: name.into(),
            interface: interface.into(),
            gateway,
            address: Ipv4Addr::from(u32::from(gateway) + 1),
        }
    }
}

/// The site.
#[derive(Debug, Clone)]
pub struct DvipaSite {
    /// `[site] name`.
    pub site: String,
    /// The gateway VIPA (a /24 on interface `uplink`).
    pub vipa: Ipv4Addr,
    /// The gateway's IKE identity.
    pub gateway_id: String,
    /// The clients' IKE identity (`%any` for anyone with the PSK).
    pub client_id: String,
    /// IKE proposals (strongSwan syntax).
    pub ike_proposals: Vec<String>,
    /// ESP proposals.
    pub esp_proposals: Vec<String>,
    /// The clients' inner addresses.
    pub client_net: String,
    /// The DVIPA.
    pub dvipa: Ipv4Addr,
    /// Distributed ports.
    pub ports: Vec<u16>,
    /// Extra lines of the `[[dvipa]]` table (method, weights, plain_traffic, …).
    pub dvipa_extra: String,
    /// The targets.
    pub targets: Vec<TargetLink>,
    /// `[ha]` with an embedded store at this path (gateway `gw-a`, rank 200).
    pub ha_store: Option<PathBuf>,
}

impl DvipaSite {
    /// A site with defaults: PSK clients from 192.168.77.0/24, AES-GCM, port 80,
    /// round-robin, no targets yet.
    pub fn new(site: &str, vipa: Ipv4Addr, dvipa: Ipv4Addr) -> DvipaSite {
        DvipaSite {
            site: site.into(),
            vipa,
            gateway_id: format!("gw@plexgate.{site}"),
            client_id: format!("client@plexgate.{site}"),
            ike_proposals: vec![
                "aes128gcm16-prfsha256-x25519".into(),
                "aes128-sha256-x25519".into(),
            ],
            esp_proposals: vec!["aes128gcm16".into()],
            client_net: "192.168.77.0/24".into(),
            dvipa,
            ports: vec![80],
            dvipa_extra: "method = \"round-robin\"".into(),
            targets: Vec::new(),
            ha_store: None,
        }
    }

    /// `n` targets `web-1..n` on 10.9.0.0/30, 10.9.0.4/30, …; the gateway's
    /// interface towards target i is `iface(i)`.
    pub fn with_targets(mut self, n: usize, iface: impl Fn(usize) -> String) -> DvipaSite {
        self.targets = (0..n)
            .map(|i| {
                TargetLink::new(
                    &format!("web-{}", i + 1),
                    &iface(i),
                    Ipv4Addr::new(10, 9, 0, (4 * i + 1) as u8),
                )
            })
            .collect();
        self
    }

    /// The policy file's text. Key files are `psk` and `cluster.key` next to it.
    pub fn toml(&self) -> String {
        let q = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ports = self
            .ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let (site, vipa, dvipa, net) = (&self.site, self.vipa, self.dvipa, &self.client_net);
        let mut t = format!(
            r#"# Site {site}: road warriors with a PSK reach DVIPA {dvipa}, spread over {n} target(s).
[site]
name = "{site}"
gateway_vipas = ["{vipa}"]

[[site.interface]]
name = "uplink"
address = "{vipa}/24"

[[peer]]
name = "client"
remote_address = "any"
local_id = "{gid}"
remote_id = "{cid}"
auth = "psk"
psk_file = "psk"
proposals = [{ike}]

  [[peer.child]]
  name = "web"
  local_ts = ["{dvipa}/32"]
  remote_ts = ["{net}"]
  esp_proposals = [{esp}]

[[spd]]
name = "web"
direction = "both"
local = "{dvipa}"
remote = "{net}"
action = "protect"
peer = "client"
child = "web"

[[dvipa]]
address = "{dvipa}"
ports = [{ports}]
targets = "all"
{extra}
"#,
            n = self.targets.len(),
            gid = self.gateway_id,
            cid = self.client_id,
            ike = q(&self.ike_proposals),
            esp = q(&self.esp_proposals),
            extra = self.dvipa_extra,
        );
        if self.ha_store.is_some() {
            t.push_str("routing_gateway = \"gw-a\"\n");
        }
        for l in &self.targets {
            let net = Ipv4Addr::from(u32::from(l.gateway) & !3);
            let _ = write!(
                t,
                "\n[[target]]\nname = \"{n}\"\naddress = \"{a}\"\nlink = \"to-{n}\"\n\n[[link]]\nname = \"to-{n}\"\ninterface = \"{i}\"\nlocal = \"{g}\"\nsubnet = \"{net}/30\"\n",
                n = l.name,
                a = l.address,
                i = l.interface,
                g = l.gateway
            );
        }
        t.push_str("\n[cluster]\nkey_file = \"cluster.key\"\ngateway_id = 1\nport = 7600\n");
        if let Some(store) = &self.ha_store {
            let _ = write!(t, "\n[ha]\nname = \"gw-a\"\nrank = 200\n\n[ha.store]\nkind = \"embedded\"\npath = \"{}\"\nkey_file = \"store.key\"\n", store.display());
        }
        t
    }

    /// Write `site.toml`, `psk` and `cluster.key` (mode 0600) into `dir`, and
    /// with `ha_store` a fresh random `store.key` (64 hex digits).
    pub fn write(&self, dir: &Path, psk: &[u8], cluster_key: &[u8]) -> std::io::Result<PathBuf> {
        write_secret(&dir.join("psk"), psk)?;
        write_secret(&dir.join("cluster.key"), cluster_key)?;
        if self.ha_store.is_some() {
            let mut key = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                .map_err(|_| std::io::Error::other("no random bytes for the store key"))?;
            write_secret(&dir.join("store.key"), hex::encode(key).as_bytes())?;
        }
        let p = dir.join("site.toml");
        std::fs::write(&p, self.toml())?;
        Ok(p)
    }
}

/// Write a secret file readable by its owner only.
pub fn write_secret(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sites_pass_the_policy_checker() {
        let dir = std::env::temp_dir().join(format!("pg-sitegen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = DvipaSite::new(
            "t",
            Ipv4Addr::new(10, 10, 0, 2),
            Ipv4Addr::new(10, 100, 0, 10),
        )
        .with_targets(3, |i| format!("web-{}", i + 1));
        s.dvipa_extra =
            "method = \"weighted-round-robin\"\nweights = { web-1 = 3, web-2 = 2, web-3 = 1 }"
                .into();
        s.ha_store = Some(dir.join("store"));
        let p = s
            .write(&dir, b"secret-0123456789", b"cluster-key-0123456789")
            .unwrap();
        let checked = plexgate_policy::load(&p).unwrap_or_else(|d| panic!("{d}\n{}", s.toml()));
        assert_eq!(checked.policy.targets.len(), 3);
        assert_eq!(
            checked.policy.targets[2].address,
            "10.9.0.10".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(checked.policy.dvipas[0].weights.get("web-1"), Some(&3));
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! plexgate against real strongSwan (charon 5.9 with kernel-libipsec), each test in
//! namespaces of its own that are removed even when it fails.
//!
//! Topology: `client` (strongSwan, outer 10.10.0.1, inner 192.168.77.1 on lo)
//! ── veth ── `gateway` (plexgate, outer 10.10.0.2 = the gateway VIPA, inner
//! 10.30.0.10 on lo). The Child SA covers 192.168.77.1/32 === 10.30.0.10/32.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use plexgate_lab::{tcp_transfer, Charon, CharonConfig, ChildConfig, Topology};

const CLIENT_OUT: &str = "10.10.0.1";
const GW_OUT: &str = "10.10.0.2";
const CLIENT_IN: &str = "192.168.77.1";
const GW_IN: &str = "10.30.0.10";

struct Lab {
    // Field order = drop order: processes before namespaces.
    client: Option<Charon>,
    gw: Daemon,
    topo: Topology,
    dir: plexgate_lab::LabDir,
}

fn policy(dir: &std::path::Path, ike: &str, esp: &str, extra_child: &str) -> std::path::PathBuf {
    write_secret(&dir.join("psk"), PSK.as_bytes());
    let text = format!(
        r#"
[site]
name = "interop"
gateway_vipas = ["{GW_OUT}"]

[[site.interface]]
name = "uplink"
address = "{GW_OUT}/24"

[[peer]]
name = "client"
remote_address = "any"
local_id = "gw@plexgate.lab"
remote_id = "client@plexgate.lab"
auth = "psk"
psk_file = "psk"
proposals = [{ike}]

  [[peer.child]]
  name = "net"
  local_ts = ["{GW_IN}/32"]
  remote_ts = ["192.168.77.0/24"]
  esp_proposals = [{esp}]
  {extra_child}

[[spd]]
name = "tunnel"
direction = "both"
local = "{GW_IN}"
remote = "192.168.77.0/24"
action = "protect"
peer = "client"
child = "net"
"#
    );
    let p = dir.join("gateway.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn lab(name: &str, ike: &str, esp: &str, client_ike: &str, client_esp: &str) -> Lab {
    prerequisites();
    let dir = labdir(name);
    let mut topo = Topology::new();
    topo.add_host("client").unwrap();
    topo.add_host("gateway").unwrap();
    topo.link("client", &[&format!("{CLIENT_OUT}/24")], "gateway", &[&format!("{GW_OUT}/24")]).unwrap();
    let (c, g) = (topo.ns("client").unwrap(), topo.ns("gateway").unwrap());
    c.add_loopback_addr(&format!("{CLIENT_IN}/32")).unwrap();
    c.disable_rp_filter().unwrap();
    g.add_loopback_addr(&format!("{GW_IN}/32")).unwrap();
    g.disable_rp_filter().unwrap();
    g.sysctl("net.ipv4.conf.default.rp_filter", "0").unwrap();
    let pol = policy(dir.path(), ike, esp, "");
    let gw = Daemon::gateway(g, dir.path(), &pol, "gw");
    let mut cc = CharonConfig::psk(CLIENT_OUT, GW_OUT, "client@plexgate.lab", "gw@plexgate.lab", PSK);
    cc.ike_proposals = vec![client_ike.to_string()];
    let cc = cc.child(ChildConfig::new("net", &format!("{CLIENT_IN}/32"), &format!("{GW_IN}/32")).esp(&[client_esp]));
    let client = Charon::start(c, cc).unwrap();
    Lab { client: Some(client), gw, topo, dir }
}

impl Lab {
    fn client(&self) -> &Charon {
        self.client.as_ref().unwrap()
    }

    fn connect(&self) {
        let c = self.client();
        if let Err(e) = c.initiate("net") {
            panic!("initiate failed: {e}\ncharon log:\n{}\nplexgate log:\n{}", c.log(), self.gw.log());
        }
        if let Err(e) = c.wait_established("net", Duration::from_secs(15)) {
            panic!("not established: {e}\ncharon log:\n{}\nplexgate log:\n{}", c.log(), self.gw.log());
        }
        c.route_ipsec0(&format!("{GW_IN}/32"), CLIENT_IN).unwrap();
        self.gw.wait_status("Child SA installed", Duration::from_secs(5), |s| child_sa_count(s) >= 2);
    }

    fn ping_and_transfer(&self, mb: usize) {
        let c = self.topo.ns("client").unwrap();
        let g = self.topo.ns("gateway").unwrap();
        if let Err(e) = c.wait_ping(GW_IN, Some(CLIENT_IN), Duration::from_secs(10)) {
            panic!("ping through the tunnel failed: {e}\nplexgate status:\n{}\nlog:\n{}\ncharon:\n{}", self.gw.status(), self.gw.log(), self.client().log());
        }
        let addr = SocketAddr::new(GW_IN.parse::<IpAddr>().unwrap(), 5001);
        let r = tcp_transfer(g, addr, c, mb << 20, 7, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("transfer failed: {e}\nplexgate log:\n{}", self.gw.log()));
        assert_eq!(r.bytes, mb << 20, "bytes received");
        // tcp_transfer itself fails unless both ends agree on the SHA-256 of every byte.
        assert_eq!(r.sha256.len(), 64);
    }
}

#[test]
fn strongswan_initiates_psk_ping_and_tcp() {
    let l = lab("ss-init-psk", "\"aes128-sha256-x25519\"", "\"aes128gcm16\"", "aes128-sha256-x25519", "aes128gcm16");
    l.connect();
    l.ping_and_transfer(8);
    let s = l.gw.status();
    let ike = &s["ike_sas"][0];
    assert_eq!(ike["remote_id"], "client@plexgate.lab", "{s}");
    // The per-SA counters saw the transfer: 8 MB in, acknowledgements out.
    let by_dir = |d: &str| s["child_sas"].as_array().unwrap().iter().find(|c| c["direction"] == d).map(|c| c["bytes"].as_u64().unwrap()).unwrap();
    assert!(by_dir("inbound") > 8 << 20, "inbound byte counter: {s}");
    assert!(by_dir("outbound") > 0, "outbound byte counter: {s}");
    drop(l.dir);
}

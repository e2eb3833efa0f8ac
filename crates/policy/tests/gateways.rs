//! One file for every gateway of a site: `[[link]] gateway` / `target`,
//! `[[ha.peer]] id`, `[ha] address`, and the view of the file as one gateway
//! (`Policy::for_gateway`, what `plexgate run --name` runs).

use std::net::IpAddr;
use std::path::Path;

use plexgate_policy::{parse_str, Policy, ViewError};

/// Two gateways, two targets. Line numbers matter: the tests name them.
const SITE: &str = r#"[site]
name = "t"
gateway_vipas = ["192.0.2.1"]
[[site.interface]]
name = "eth0"
address = "192.0.2.2/24"

[[dvipa]]
address = "10.100.0.10"
ports = [80]
targets = "all"
routing_gateway = "gw-1"
backup = [{ gateway = "gw-2", rank = 100 }]

[[target]]
name = "web-1"
address = "10.9.0.2"
link = "gw1-web-1"

[[target]]
name = "web-2"
address = "10.9.0.6"
link = "gw1-web-2"

[[link]]
name = "gw1-web-1"
interface = "pg-w1"
local = "10.9.0.1"
subnet = "10.9.0.0/30"

[[link]]
name = "gw1-web-2"
interface = "pg-w2"
local = "10.9.0.5"
subnet = "10.9.0.4/30"

[[link]]
name = "gw2-web-1"
gateway = "gw-2"
target = "web-1"
interface = "pg-w1"
local = "fd00:9:1::1"
subnet = "fd00:9:1::/126"
remote = "fd00:9:1::2"

[cluster]
key_file = "cluster.key"
gateway_id = 1

[ha]
name = "gw-1"
rank = 200
address = "192.0.2.11"
  [[ha.peer]]
  name = "gw-2"
  id = 2
  address = "192.0.2.12"
  rank = 100
  [ha.store]
  kind = "embedded"
  path = "store"
  key_file = "store.key"
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn load(text: &str) -> Policy {
    match parse_str(text, "t.toml", Path::new("/etc/plexgate")) {
        Ok(c) => {
            assert!(c.warnings.is_empty(), "{}", c.warnings);
            c.policy
        }
        Err(d) => panic!("{d}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match parse_str(text, "t.toml", Path::new("/etc/plexgate")) {
        Ok(c) => c.warnings.short_lines(),
        Err(d) => d.short_lines(),
    }
}

#[test]
fn links_resolve_their_gateway_and_target() {
    let p = load(SITE);
    let l = |n: &str| p.link(n).unwrap();
    assert_eq!(
        (
            l("gw1-web-1").gateway.as_str(),
            l("gw1-web-1").target.as_str()
        ),
        ("gw-1", "web-1")
    );
    assert_eq!(l("gw1-web-1").remote, ip("10.9.0.2"));
    assert_eq!(
        (
            l("gw2-web-1").gateway.as_str(),
            l("gw2-web-1").target.as_str()
        ),
        ("gw-2", "web-1")
    );
    assert_eq!(p.ha.as_ref().unwrap().peers[0].id, Some(2));
    assert_eq!(p.ha.as_ref().unwrap().address, Some(ip("192.0.2.11")));
    let gws = p.gateways();
    assert_eq!(
        gws.iter()
            .map(|g| (g.name.as_str(), g.id, g.address))
            .collect::<Vec<_>>(),
        vec![
            ("gw-1", Some(1), Some(ip("192.0.2.11"))),
            ("gw-2", Some(2), Some(ip("192.0.2.12")))
        ]
    );
    assert_eq!(p.target_links("web-1").count(), 2);
    assert_eq!(p.links_of("gw-2").count(), 1);
    // The listing names the other gateway's link as such.
    assert!(p.to_string().contains(
        "link gw2-web-1: pg-w1 fd00:9:1::1 in fd00:9:1::/126 <-> fd00:9:1::2 (gateway gw-2 to target web-1)\n"
    ));
}

#[test]
fn the_file_as_its_other_gateway() {
    let p = load(SITE).for_gateway("gw-2").unwrap();
    let ha = p.ha.as_ref().unwrap();
    assert_eq!((ha.name.as_str(), ha.rank), ("gw-2", 100));
    assert_eq!(ha.address, Some(ip("192.0.2.12")));
    assert_eq!(ha.peers.len(), 1);
    assert_eq!(
        (
            ha.peers[0].name.as_str(),
            ha.peers[0].id,
            ha.peers[0].address
        ),
        ("gw-1", Some(1), ip("192.0.2.11"))
    );
    assert_eq!(p.cluster.as_ref().unwrap().gateway_id, 2);
    assert_eq!(
        p.links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["gw2-web-1"]
    );
    // web-1 is reached over gw-2's link, web-2 not at all; the target list
    // (and so the node ids, 1000 + position) is unchanged.
    assert_eq!(p.targets[0].link, "gw2-web-1");
    assert_eq!(p.targets[0].address, ip("fd00:9:1::2"));
    assert_eq!(p.targets[1].name, "web-2");
    assert_eq!(p.targets[1].link, "");
    // The file's own gateway: its links only, targets as written.
    let own = load(SITE).for_gateway("gw-1").unwrap();
    assert_eq!(own.links.len(), 2);
    assert_eq!(own.targets[0].address, ip("10.9.0.2"));
    assert_eq!(own.cluster.as_ref().unwrap().gateway_id, 1);
}

#[test]
fn views_that_cannot_run() {
    let p = load(SITE);
    assert_eq!(
        p.for_gateway("gw-9").unwrap_err(),
        ViewError::UnknownGateway {
            name: "gw-9".into(),
            known: "gw-1, gw-2".into()
        }
    );
    let no_addr = load(&SITE.replace("address = \"192.0.2.11\"\n", ""));
    assert_eq!(
        no_addr.for_gateway("gw-2").unwrap_err().to_string(),
        "[ha] has no `address`: gateway \"gw-2\" needs it to reach this file's gateway \"gw-1\""
    );
    let text = SITE.replace("  id = 2\n", "");
    let d = errors(&text);
    assert_eq!(
        d,
        ["t.toml:54:3: warning: [[ha.peer]] \"gw-2\" has links but no `id` (its cluster node id): targets refuse its cluster messages and GRE, and the file cannot run as it"]
    );
    let no_id = parse_str(&text, "t.toml", Path::new("/")).unwrap().policy;
    assert_eq!(
        no_id.for_gateway("gw-2").unwrap_err(),
        ViewError::NoId("gw-2".into())
    );
}

#[test]
fn link_gateway_and_target_must_exist_and_target_needs_remote() {
    let text = SITE
        .replace("gateway = \"gw-2\"\ntarget", "gateway = \"gw-3\"\ntarget")
        .replace("remote = \"fd00:9:1::2\"\n", "");
    assert_eq!(
        errors(&text),
        [
            "t.toml:39:11: error: link \"gw2-web-1\" names gateway \"gw-3\", which is neither [ha] name nor an [[ha.peer]] (known: gw-1, gw-2)",
            "t.toml:40:10: error: link \"gw2-web-1\" names target \"web-1\" and so needs `remote`: the target's address on this link",
        ]
    );
    let text = SITE.replace("target = \"web-1\"", "target = \"web-9\"");
    assert_eq!(
        errors(&text),
        ["t.toml:40:10: error: link \"gw2-web-1\" names target \"web-9\", but no [[target]] has that name"]
    );
    // A target that `link` puts on gw-1's link cannot be named by that link as
    // another one.
    let text = SITE.replace(
        "name = \"gw1-web-2\"\n",
        "name = \"gw1-web-2\"\ntarget = \"web-1\"\nremote = \"10.9.0.6\"\n",
    );
    assert_eq!(
        errors(&text),
        ["t.toml:33:10: error: link \"gw1-web-2\" names target \"web-1\", but target \"web-2\" sits on it (its `link`)"]
    );
}

#[test]
fn one_link_per_gateway_and_target() {
    let text = SITE.replace("gateway = \"gw-2\"\ntarget", "target");
    assert_eq!(
        errors(&text),
        ["t.toml:38:8: error: link \"gw2-web-1\" is a second link between gateway \"gw-1\" and target \"web-1\"; one link per gateway and target"]
    );
}

#[test]
fn link_subnets_are_unique_per_gateway() {
    // gw-2's link may reuse a subnet of gw-1 (another segment)...
    let text = SITE
        .replace("local = \"fd00:9:1::1\"", "local = \"10.9.0.1\"")
        .replace("subnet = \"fd00:9:1::/126\"", "subnet = \"10.9.0.0/30\"")
        .replace("remote = \"fd00:9:1::2\"", "remote = \"10.9.0.2\"");
    load(&text);
    // ... but one gateway's links may not overlap.
    let text = SITE.replace("subnet = \"10.9.0.4/30\"", "subnet = \"10.9.0.0/29\"");
    let d = errors(&text);
    assert!(
        d.iter().any(|l| l.contains("error: subnet 10.9.0.0/29 of link \"gw1-web-2\" overlaps subnet 10.9.0.0/30 of link \"gw1-web-1\" (both of gateway \"gw-1\")")),
        "{d:?}"
    );
}

#[test]
fn gateway_ids_are_unique_and_not_target_ids() {
    let text = SITE.replace("  id = 2\n", "  id = 1\n");
    assert_eq!(
        errors(&text),
        ["t.toml:56:8: error: gateway \"gw-2\" has cluster node id 1, like gateway \"gw-1\"; node ids must be unique"]
    );
    let text = SITE.replace("  id = 2\n", "  id = 1001\n");
    assert_eq!(
        errors(&text),
        ["t.toml:56:8: error: gateway \"gw-2\" has cluster node id 1001, the id of target \"web-2\" (targets are numbered 1000 + their position)"]
    );
    let text = SITE.replace("  id = 2\n", "  id = 2147483648\n");
    assert!(
        errors(&text)[0].contains("`id` = 2147483648 in"),
        "{:?}",
        errors(&text)
    );
}

#[test]
fn a_site_without_ha_has_no_named_gateways() {
    let text = r#"[site]
name = "t"
gateway_vipas = ["192.0.2.1"]
[[site.interface]]
name = "eth0"
address = "192.0.2.2/24"
[[link]]
name = "l"
gateway = "gw-2"
interface = "x"
local = "10.9.0.1"
subnet = "10.9.0.0/30"
remote = "10.9.0.2"
"#;
    assert_eq!(
        errors(text),
        ["t.toml:9:11: error: link \"l\" names gateway \"gw-2\", but there is no [ha] section naming gateways"]
    );
    let ok = load(&text.replace("gateway = \"gw-2\"\n", ""));
    assert_eq!(ok.gateway_name(), "");
    assert_eq!(ok.links[0].gateway, "");
    assert_eq!(ok.links_of("").count(), 1);
    assert_eq!(ok.for_gateway("").unwrap().links.len(), 1);
}

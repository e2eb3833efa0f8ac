//! Structural parsing: TOML document → typed [`Policy`], with every value's span
//! recorded and every structural problem (unknown key, wrong type, missing key,
//! unparsable address, unknown algorithm, out-of-range number) reported.
//!
//! Values that fail to parse are replaced by a harmless placeholder and marked bad
//! in [`Spans`], so parsing always continues to the end of the file and the
//! semantic checks in `validate` can skip what depends on them. The placeholder
//! model is never handed out: `load` only returns a `Policy` without errors.

//!
//! One module per part of the file: `values` (typed readers shared by all
//! sections: names, durations, ports, paths, choices), `peer` (`[[peer]]` and its
//! children), `spd` (`[[spd]]`), `pool` (`[[dvipa]]`, `[[target]]`, `[[link]]`)
//! and `ha` (`[cluster]`, `[ha]`, `[log]`).

use std::path::Path;

use crate::addr;
use crate::model::*;
use crate::reader::{Cx, Table};

mod ha;
mod l2;
mod peer;
mod pool;
mod spd;
mod values;

use values::{name_of, parsed, parsed_list, port};

/// Parses the document into a policy (with placeholders where values were bad).
pub(crate) fn parse(root: Table<'_, '_>, cx: &mut Cx, source: &Path, base: &Path) -> Policy {
    let mut root = root;
    let site = match root.table(cx, "site", "[site]".into()) {
        Some(t) => site(t, cx),
        None => {
            if root.raw(cx, "site").is_none() {
                cx.err("site", Some(0..0), "the policy has no [site] section; it needs at least `name` and `gateway_vipas`".into());
            }
            Site {
                name: String::new(),
                gateway_vipas: vec![],
                interfaces: vec![],
                ike_port: 500,
                natt_port: 4500,
            }
        }
    };
    let peers = root
        .tables(cx, "peer", "[[peer]]")
        .into_iter()
        .map(|t| peer::peer(t, cx, base))
        .collect();
    let spd = root
        .tables(cx, "spd", "SPD rule")
        .into_iter()
        .map(|t| spd::spd_rule(t, cx))
        .collect();
    let dvipas = root
        .tables(cx, "dvipa", "[[dvipa]]")
        .into_iter()
        .map(|t| pool::dvipa(t, cx))
        .collect();
    let targets = root
        .tables(cx, "target", "[[target]]")
        .into_iter()
        .map(|t| pool::target(t, cx))
        .collect();
    let links = root
        .tables(cx, "link", "[[link]]")
        .into_iter()
        .map(|t| pool::link(t, cx))
        .collect();
    let cluster = root
        .table(cx, "cluster", "[cluster]".into())
        .map(|t| ha::cluster(t, cx, base));
    let ha = root
        .table(cx, "ha", "[ha]".into())
        .map(|t| ha::ha(t, cx, base));
    let log = root
        .table(cx, "log", "[log]".into())
        .map(|t| ha::log(t, cx, base))
        .unwrap_or_default();
    let l2 = root.table(cx, "l2", "[l2]".into()).map(|t| l2::l2(t, cx));
    root.finish(
        cx,
        &[
            "site", "peer", "spd", "dvipa", "target", "link", "cluster", "ha", "log", "l2",
        ],
    );
    Policy {
        source: source.to_path_buf(),
        site,
        peers,
        spd,
        dvipas,
        targets,
        links,
        cluster,
        ha,
        log,
        l2,
    }
}

fn site(mut t: Table<'_, '_>, cx: &mut Cx) -> Site {
    let name = match t.string(cx, "name", true) {
        Some((n, _)) => n,
        None => String::new(),
    };
    let gateway_vipas = parsed_list(&mut t, cx, "gateway_vipas", true, addr::parse_ip);
    let mut interfaces = Vec::new();
    for mut it in t.tables(cx, "interface", "[[site.interface]]") {
        let name = name_of(&mut it, cx, "interface");
        let address = parsed(&mut it, cx, "address", true, addr::parse_if_addr).unwrap_or_default();
        it.finish(cx, &["name", "address"]);
        interfaces.push(Interface { name, address });
    }
    let ike_port = port(&mut t, cx, "ike_port", 500);
    let natt_port = port(&mut t, cx, "natt_port", 4500);
    t.finish(
        cx,
        &[
            "name",
            "gateway_vipas",
            "interface",
            "ike_port",
            "natt_port",
        ],
    );
    Site {
        name,
        gateway_vipas,
        interfaces,
        ike_port,
        natt_port,
    }
}

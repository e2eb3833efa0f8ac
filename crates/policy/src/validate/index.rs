//! Indexes that keep the cross checks near-linear in the size of the policy
//! (#15: the pairwise checks took 6 s for 16,000 targets and hours for a 50 MB
//! file).
//!
//! Addresses of one family are numbers, prefixes are (family, length, network).
//! A [`PrefixIndex`] answers "which stored prefixes contain this range?" by
//! looking up, for each prefix length that is stored at all, the one prefix of
//! that length that could: at most 33 or 129 hash lookups, usually two or
//! three. An [`AddrIndex`] answers "which stored addresses lie in this range?"
//! with an ordered map. Both are exact, not heuristics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::addr::{AddrSel, IpRange};

/// An address as (is IPv4, value).
pub(super) type Num = (bool, u128);

/// A prefix: (is IPv4, prefix length, network address as a number).
pub(super) type Prefix = (bool, u8, u128);

/// An address as a number of its family.
pub(super) fn num(a: IpAddr) -> Num {
    match a {
        IpAddr::V4(v) => (true, u128::from(u32::from(v))),
        IpAddr::V6(v) => (false, u128::from(v)),
    }
}

fn family_bits(v4: bool) -> u8 {
    if v4 {
        32
    } else {
        128
    }
}

/// `x` with its lowest `host_bits` bits cleared.
fn truncate(x: u128, host_bits: u32) -> u128 {
    if host_bits >= 128 {
        0
    } else {
        x & !((1u128 << host_bits) - 1)
    }
}

/// The network of the prefix of length `len` around `x`.
fn network(v4: bool, x: u128, len: u8) -> u128 {
    truncate(x, u32::from(family_bits(v4) - len))
}

/// The smallest prefix that contains the whole range.
pub(super) fn covering_prefix(r: &IpRange) -> Prefix {
    let (v4, s) = num(r.start);
    let (_, e) = num(r.end);
    let host_bits = 128 - (s ^ e).leading_zeros();
    let len = family_bits(v4).saturating_sub(host_bits as u8);
    (v4, len, network(v4, s, len))
}

/// A subnet as a prefix.
pub(super) fn prefix_of(n: &IpNet) -> Prefix {
    let (v4, x) = num(n.network());
    (v4, n.prefix_len(), x)
}

/// Items stored under prefixes; finds those whose prefix contains a range.
#[derive(Debug)]
pub(super) struct PrefixIndex<T> {
    map: HashMap<Prefix, Vec<T>>,
    /// The prefix lengths stored, per family (`[IPv6, IPv4]`).
    lens: [BTreeSet<u8>; 2],
}

impl<T> Default for PrefixIndex<T> {
    fn default() -> Self {
        PrefixIndex {
            map: HashMap::new(),
            lens: [BTreeSet::new(), BTreeSet::new()],
        }
    }
}

impl<T> PrefixIndex<T> {
    /// Stores `item` under prefix `p`.
    pub(super) fn insert(&mut self, p: Prefix, item: T) {
        self.lens[usize::from(p.0)].insert(p.1);
        self.map.entry(p).or_default().push(item);
    }

    /// The stored prefixes that contain prefix `p` (itself included), shortest
    /// first, each with its items in insertion order.
    pub(super) fn containing(&self, p: Prefix) -> impl Iterator<Item = (Prefix, &[T])> + '_ {
        let (v4, len, net) = p;
        self.lens[usize::from(v4)]
            .range(..=len)
            .filter_map(move |&l| {
                let key = (v4, l, network(v4, net, l));
                self.map.get(&key).map(|items| (key, items.as_slice()))
            })
    }
}

/// The key of an address selector: `None` for `any`, else its covering prefix.
type SelKey = Option<Prefix>;

fn sel_key(s: &AddrSel) -> SelKey {
    match s {
        AddrSel::Any => None,
        AddrSel::Range(r) => Some(covering_prefix(r)),
    }
}

/// Items stored under a pair of address selectors (an SPD rule's local and
/// remote); finds the items whose selectors could both contain a given pair.
/// A selector can only contain another if its covering prefix contains the
/// other's (prefixes nest), so the candidates are exactly the buckets keyed by
/// `any` or by a prefix of the query at a stored length.
#[derive(Debug, Default)]
pub(super) struct PairIndex {
    map: HashMap<(SelKey, SelKey), Vec<usize>>,
    /// Stored prefix lengths: `[side][family]`, side 0 local, 1 remote.
    lens: [[BTreeSet<u8>; 2]; 2],
}

impl PairIndex {
    /// Stores `item` under selectors `(a, b)`.
    pub(super) fn insert(&mut self, a: &AddrSel, b: &AddrSel, item: usize) {
        let key = (sel_key(a), sel_key(b));
        for (side, k) in [key.0, key.1].into_iter().enumerate() {
            if let Some((v4, len, _)) = k {
                self.lens[side][usize::from(v4)].insert(len);
            }
        }
        self.map.entry(key).or_default().push(item);
    }

    /// The keys on one side that could contain selector `s`.
    fn candidates(&self, side: usize, s: &AddrSel) -> Vec<SelKey> {
        let mut out = vec![None];
        if let Some((v4, len, net)) = sel_key(s) {
            let lens = self.lens[side][usize::from(v4)].range(..=len);
            out.extend(lens.map(|&l| Some((v4, l, network(v4, net, l)))));
        }
        out
    }

    /// Buckets (each in insertion order) whose selectors could contain `(a, b)`.
    pub(super) fn containing(&self, a: &AddrSel, b: &AddrSel) -> Vec<&[usize]> {
        let (ka, kb) = (self.candidates(0, a), self.candidates(1, b));
        let mut out = Vec::new();
        for x in &ka {
            for y in &kb {
                if let Some(v) = self.map.get(&(*x, *y)) {
                    out.push(v.as_slice());
                }
            }
        }
        out
    }
}

/// Items stored at addresses; finds those inside a range.
#[derive(Debug, Default)]
pub(super) struct AddrIndex {
    map: BTreeMap<Num, Vec<usize>>,
}

impl AddrIndex {
    /// Stores `item` at address `a`.
    pub(super) fn insert(&mut self, a: IpAddr, item: usize) {
        self.map.entry(num(a)).or_default().push(item);
    }

    /// The items at addresses matched by `s`, in address order.
    pub(super) fn within(&self, s: &AddrSel) -> Box<dyn Iterator<Item = (Num, usize)> + '_> {
        fn flat<'a>((k, v): (&'a Num, &'a Vec<usize>)) -> impl Iterator<Item = (Num, usize)> + 'a {
            v.iter().map(move |i| (*k, *i))
        }
        match s {
            AddrSel::Any => Box::new(self.map.iter().flat_map(flat)),
            AddrSel::Range(r) => Box::new(self.map.range(num(r.start)..=num(r.end)).flat_map(flat)),
        }
    }

    /// The first stored address in `start..=end` (numbers of one family).
    pub(super) fn first_in(&self, start: Num, end: Num) -> Option<(Num, usize)> {
        self.map
            .range(start..=end)
            .next()
            .and_then(|(k, v)| v.first().map(|i| (*k, *i)))
    }
}

/// The last address of a prefix, as a number.
pub(super) fn prefix_end(p: Prefix) -> Num {
    let (v4, len, net) = p;
    let host_bits = u32::from(family_bits(v4) - len);
    let mask = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    (v4, net | mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::parse_addr_sel;

    fn range(s: &str) -> IpRange {
        match parse_addr_sel(s).unwrap() {
            AddrSel::Range(r) => r,
            AddrSel::Any => panic!("any"),
        }
    }

    #[test]
    fn covering_prefixes() {
        let p = covering_prefix(&range("10.1.2.3"));
        assert_eq!(p, (true, 32, 0x0a01_0203));
        let p = covering_prefix(&range("10.1.2.0/24"));
        assert_eq!(p, (true, 24, 0x0a01_0200));
        // 10.0.0.5-10.0.0.9 crosses 10.0.0.8: the smallest prefix is /28.
        assert_eq!(covering_prefix(&range("10.0.0.5-10.0.0.9")).1, 28);
        assert_eq!(covering_prefix(&range("0.0.0.0/0")), (true, 0, 0));
        assert_eq!(covering_prefix(&range("::/0")), (false, 0, 0));
        assert_eq!(covering_prefix(&range("2001:db8::/32")).1, 32);
        assert_eq!(prefix_end((true, 24, 0x0a01_0200)), (true, 0x0a01_02ff));
        assert_eq!(prefix_end((false, 0, 0)), (false, u128::MAX));
    }

    #[test]
    fn prefix_index_finds_every_container_and_nothing_else() {
        let mut ix = PrefixIndex::default();
        for (i, s) in [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.2.0.0/16",
            "10.1.2.0/24",
            "::/0",
        ]
        .iter()
        .enumerate()
        {
            ix.insert(covering_prefix(&range(s)), i);
        }
        let found = |s: &str| -> Vec<usize> {
            ix.containing(covering_prefix(&range(s)))
                .flat_map(|(_, items)| items.iter().copied())
                .collect()
        };
        assert_eq!(found("10.1.2.7"), [0, 1, 3]);
        assert_eq!(found("10.1.0.0/16"), [0, 1]);
        assert_eq!(found("11.0.0.1"), Vec::<usize>::new());
        assert_eq!(found("2001:db8::1"), [4]);
    }

    #[test]
    fn pair_index_candidates_contain_the_query() {
        let sel = |s: &str| parse_addr_sel(s).unwrap();
        let mut ix = PairIndex::default();
        ix.insert(&sel("any"), &sel("any"), 0);
        ix.insert(&sel("10.0.0.0/8"), &sel("192.0.2.0/24"), 1);
        ix.insert(&sel("10.1.0.0/16"), &sel("any"), 2);
        ix.insert(&sel("10.2.0.0/16"), &sel("192.0.2.7"), 3);
        ix.insert(&sel("10.1.0.5-10.1.0.9"), &sel("any"), 4);
        let found = |a: &str, b: &str| -> Vec<usize> {
            let mut v: Vec<usize> = ix.containing(&sel(a), &sel(b)).concat();
            v.sort();
            v
        };
        assert_eq!(found("10.1.0.6", "192.0.2.7"), [0, 1, 2, 4]);
        assert_eq!(found("10.2.0.1", "192.0.2.7"), [0, 1, 3]);
        assert_eq!(found("any", "192.0.2.7"), [0]);
        assert_eq!(found("10.1.0.0/16", "any"), [0, 2]);
    }

    #[test]
    fn addr_index_ranges() {
        let mut ix = AddrIndex::default();
        for (i, a) in ["10.0.0.1", "10.0.0.9", "10.0.1.1", "::1"]
            .iter()
            .enumerate()
        {
            ix.insert(a.parse().unwrap(), i);
        }
        let got: Vec<usize> = ix
            .within(&parse_addr_sel("10.0.0.0/24").unwrap())
            .map(|x| x.1)
            .collect();
        assert_eq!(got, [0, 1]);
        assert_eq!(ix.within(&AddrSel::Any).count(), 4);
        assert_eq!(
            ix.first_in((true, 0x0a00_0002), (true, 0x0a00_00ff))
                .map(|x| x.1),
            Some(1)
        );
    }
}

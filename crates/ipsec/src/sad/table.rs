//! SAs of one direction in a dense table with a hash index keyed by a `u32`
//! (the SPI of an inbound SA, the SAD's handle of an outbound one), and a memo
//! of the last key looked up mutably.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast hasher for SPIs. SPIs are chosen at random by us (inbound) or the
/// peer (outbound); a multiply-and-fold spreads them over the table's bits.
#[derive(Default, Clone, Copy)]
pub(crate) struct SpiHasher(u64);

impl Hasher for SpiHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        let x = (u64::from(v) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

pub(crate) type SpiMap<V> = HashMap<u32, V, BuildHasherDefault<SpiHasher>>;

/// SAs of one direction by SPI: a dense vector with a hash index, and a memo
/// of the last SPI looked up mutably. Consecutive packets of one SA (a bulk
/// transfer, a receive batch) then skip the hash probe: one compare and one
/// indexed load.
#[derive(Debug)]
pub(crate) struct SpiTable<V> {
    slots: Vec<(u32, V)>,
    index: SpiMap<usize>,
    /// (SPI, slot) of the last `get_mut` hit; cleared when slots move.
    last: Option<(u32, usize)>,
}

impl<V> Default for SpiTable<V> {
    fn default() -> Self {
        SpiTable {
            slots: Vec::new(),
            index: SpiMap::default(),
            last: None,
        }
    }
}

impl<V> SpiTable<V> {
    pub(crate) fn contains_key(&self, spi: u32) -> bool {
        self.index.contains_key(&spi)
    }

    /// Insert `v` under `spi`, replacing the value already there (as a map
    /// would; `Sad::insert` refuses duplicates before it gets here).
    pub(crate) fn insert(&mut self, spi: u32, v: V) {
        if let Some(&i) = self.index.get(&spi) {
            self.slots[i].1 = v;
            return;
        }
        self.index.insert(spi, self.slots.len());
        self.slots.push((spi, v));
    }

    pub(crate) fn remove(&mut self, spi: u32) -> Option<V> {
        let i = self.index.remove(&spi)?;
        self.last = None;
        let (_, v) = self.slots.swap_remove(i);
        if let Some((moved, _)) = self.slots.get(i) {
            self.index.insert(*moved, i);
        }
        Some(v)
    }

    pub(crate) fn get(&self, spi: u32) -> Option<&V> {
        self.index.get(&spi).map(|&i| &self.slots[i].1)
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, spi: u32) -> Option<&mut V> {
        let i = match self.last {
            Some((s, i)) if s == spi => i,
            _ => {
                let i = *self.index.get(&spi)?;
                self.last = Some((spi, i));
                i
            }
        };
        self.slots.get_mut(i).map(|(_, v)| v)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().map(|(_, v)| v)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.last = None;
        self.slots.iter_mut().map(|(_, v)| v)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        self.slots.iter().map(|(k, v)| (*k, v))
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod spi_table_tests {
    use super::SpiTable;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(u32),
        GetMut(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few SPIs, so that operations meet the same entries often.
        prop_oneof![
            (0u32..6).prop_map(Op::Insert),
            (0u32..6).prop_map(Op::Remove),
            (0u32..6).prop_map(Op::GetMut),
        ]
    }

    proptest! {
        /// The table (with its memo and swap-removal) behaves as a map.
        #[test]
        fn spi_table_behaves_as_a_map(ops in proptest::collection::vec(op(), 0..64)) {
            let mut t: SpiTable<u64> = SpiTable::default();
            let mut m: HashMap<u32, u64> = HashMap::new();
            for (n, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Insert(s) => {
                        t.insert(s, n as u64);
                        m.insert(s, n as u64);
                    }
                    Op::Remove(s) => prop_assert_eq!(t.remove(s), m.remove(&s)),
                    Op::GetMut(s) => {
                        // Write through both, so that a stale memo would show.
                        if let Some(v) = t.get_mut(s) {
                            *v += 1000;
                        }
                        if let Some(v) = m.get_mut(&s) {
                            *v += 1000;
                        }
                    }
                }
                prop_assert_eq!(t.len(), m.len());
                for (s, v) in &m {
                    prop_assert_eq!(t.get(*s), Some(v));
                    prop_assert!(t.contains_key(*s));
                }
                let mut vals: Vec<u64> = t.values().copied().collect();
                let mut want: Vec<u64> = m.values().copied().collect();
                vals.sort_unstable();
                want.sort_unstable();
                prop_assert_eq!(vals, want);
            }
        }
    }
}

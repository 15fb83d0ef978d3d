//! The loopback address pool servers get their addresses from.

use crate::ProviderError;
use std::collections::HashSet;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressPool {
    network: u32,
    prefix: u8,
}

impl AddressPool {
    /// Parses a CIDR inside 127.0.0.0/8 such as `127.77.0.0/16`.
    pub fn parse(cidr: &str) -> Result<Self, ProviderError> {
        let bad = |why: &str| ProviderError::Permanent(format!("address_pool {cidr:?}: {why}"));
        let (addr, prefix) = cidr.split_once('/').ok_or_else(|| bad("expected a.b.c.d/n"))?;
        let addr: Ipv4Addr = addr.trim().parse().map_err(|_| bad("invalid IPv4 address"))?;
        let prefix: u8 = prefix.trim().parse().map_err(|_| bad("invalid prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("prefix length must be between 8 and 30"));
        }
        if addr.octets()[0] != 127 {
            return Err(bad("must be inside 127.0.0.0/8"));
        }
        let mask = u32::MAX << (32 - prefix);
        let network = u32::from(addr) & mask;
        let pool = Self { network, prefix };
        if pool.candidates().next().is_none() {
            return Err(bad("contains no usable address"));
        }
        Ok(pool)
    }

    #[cfg(test)]
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(addr) & mask == self.network
    }

    /// Usable addresses in order: never the pool's network or broadcast address, never
    /// one ending in .0 or .255 (tools treat those as network/broadcast), never
    /// 127.0.0.1 (the machine's own services listen there).
    pub fn candidates(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let size = 1u64 << (32 - self.prefix);
        let first = u64::from(self.network) + 1;
        let last = u64::from(self.network) + size - 2;
        (first..=last).filter_map(|a| u32::try_from(a).ok()).map(Ipv4Addr::from).filter(|a| {
            let last_octet = a.octets()[3];
            last_octet != 0 && last_octet != 255 && *a != Ipv4Addr::LOCALHOST
        })
    }

    /// The first free address for which `usable` holds (the caller probes that
    /// nothing else already listens there).
    pub fn allocate(&self, in_use: &HashSet<Ipv4Addr>, mut usable: impl FnMut(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        self.candidates().filter(|a| !in_use.contains(a)).find(|a| usable(*a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_reserved_addresses() {
        let pool = AddressPool::parse("127.0.0.0/24").unwrap();
        let all: Vec<_> = pool.candidates().collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(127, 0, 0, 254)));
        assert_eq!(all.len(), 253);

        let pool = AddressPool::parse("127.77.0.0/16").unwrap();
        let all: Vec<_> = pool.candidates().collect();
        assert!(all.iter().all(|a| a.octets()[3] != 0 && a.octets()[3] != 255));
        assert_eq!(all.first(), Some(&Ipv4Addr::new(127, 77, 0, 1)));
        assert_eq!(all.len(), 256 * 254);
    }

    #[test]
    fn rejects_outside_loopback_and_bad_input() {
        for bad in ["10.0.0.0/8", "127.0.0.0", "127.0.0.0/31", "127.0.0.0/4", "x/16"] {
            assert!(AddressPool::parse(bad).is_err(), "{bad}");
        }
        // Host bits are ignored: the pool is the enclosing network.
        let pool = AddressPool::parse("127.77.3.9/24").unwrap();
        assert!(pool.contains(Ipv4Addr::new(127, 77, 3, 200)));
        assert!(!pool.contains(Ipv4Addr::new(127, 77, 4, 1)));
    }

    #[test]
    fn allocates_first_free_usable() {
        let pool = AddressPool::parse("127.77.0.0/24").unwrap();
        let used: HashSet<_> = [Ipv4Addr::new(127, 77, 0, 1)].into();
        let got = pool.allocate(&used, |a| a != Ipv4Addr::new(127, 77, 0, 2));
        assert_eq!(got, Some(Ipv4Addr::new(127, 77, 0, 3)));
        let all: HashSet<_> = pool.candidates().collect();
        assert_eq!(pool.allocate(&all, |_| true), None);
    }
}

//! Loopback /24s for tests, out of 127.90.0.0–127.99.255.0: away from the dev default
//! (127.77/16) and the benches (127.81/16), so a developer's `herd dev` or a bench
//! running beside the suite cannot collide with it either.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::Ipv4Addr;
use std::path::PathBuf;

const FIRST: (u8, u8) = (90, 0);
const COUNT: u32 = 10 * 256;

/// A /24 this test holds until it is dropped.
#[derive(Debug)]
pub struct Subnet {
    octets: (u8, u8),
    // The claim: an exclusive lock on this file, released by the kernel when the handle
    // closes, also when the process dies.
    _lock: File,
}

impl Subnet {
    /// Claims the first free /24, starting at a point that depends on the process so
    /// parallel binaries rarely probe the same files.
    pub fn claim() -> Self {
        let dir = lock_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let start = std::process::id() % COUNT;
        for i in 0..COUNT {
            let n = (start + i) % COUNT;
            let octets = (FIRST.0 + (n / 256) as u8, (n % 256) as u8);
            let path = dir.join(format!("127.{}.{}.lock", octets.0, octets.1));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            match file.try_lock() {
                Ok(()) => return Self { octets, _lock: file },
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => panic!("lock {}: {e}", path.display()),
            }
        }
        panic!("every test subnet in 127.90-99.x is taken");
    }

    /// The CIDR the local provider takes as `address_pool`.
    pub fn pool(&self) -> String {
        format!("{}0/24", self.prefix())
    }

    /// The fixed octets with a trailing dot (`127.93.4.`), to recognise its addresses.
    pub fn prefix(&self) -> String {
        format!("127.{}.{}.", self.octets.0, self.octets.1)
    }

    /// Host `n` of the subnet.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octets.0, self.octets.1, n)
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("herd-testkit-subnets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_released() {
        let a = Subnet::claim();
        let b = Subnet::claim();
        assert_ne!(a.pool(), b.pool(), "two live claims share a subnet");
        assert!(a.pool().starts_with("127.9") && a.pool().ends_with(".0/24"), "{}", a.pool());
        assert_eq!(a.host(7).to_string(), format!("{}7", a.prefix()));
        let freed = a.pool();
        drop(a);
        // The first free one from this process's start is the one just released.
        let c = Subnet::claim();
        assert_eq!(c.pool(), freed, "a dropped claim is free again");
    }
}

//! Where tenant-chosen URLs (failover webhooks) may send Herd's requests.
//!
//! A webhook is a request Herd makes on a tenant's behalf from inside the fleet's
//! network, and its outcome lands in the tenant's history: without a rule it reaches
//! the API's own port, etcd, the cloud's metadata service, and maps the network port
//! by port. So a destination must resolve to public unicast addresses only, checked
//! when the hook is set and again at every delivery, and the delivery connects to the
//! addresses that were checked (a name that re-resolves to 127.0.0.1 between check and
//! connect gains nothing). Operators name exceptions (`hooks.allowed_hosts`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// A request's validation and a delivery both wait on the resolver; a dead one
/// must not hold either for long.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A destination that passed the policy: connect to these addresses only.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The URL's host as the HTTP client sees it (no brackets around IPv6).
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

/// `hooks.allowed_hosts`, lowercased: hosts (names or address literals, as written in
/// the URL) exempt from the address rule.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allowed_hosts: Vec<String>,
}

impl EgressPolicy {
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self { allowed_hosts: allowed_hosts.iter().map(|h| normalize_host(h)).collect() }
    }

    /// Resolves `url`'s host and checks every address; the error says why in words a
    /// tenant can act on (never more than the addresses its own name resolved to).
    pub async fn check(&self, url: &str) -> Result<Destination, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
        let port = parsed.port_or_known_default().ok_or("has no port")?;
        let (host, literal) = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            Some(url::Host::Domain(d)) => (d.to_ascii_lowercase(), None),
            None => return Err("has no host".into()),
        };
        let addrs: Vec<SocketAddr> = match literal {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => {
                // A trailing dot is the same name to DNS; check it as one.
                let name = host.trim_end_matches('.');
                match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await {
                    Ok(Ok(a)) => a.collect(),
                    Ok(Err(_)) => return Err(format!("host {host} does not resolve")),
                    Err(_) => return Err(format!("host {host} did not resolve within {}s", RESOLVE_TIMEOUT.as_secs())),
                }
            }
        };
        if addrs.is_empty() {
            return Err(format!("host {host} does not resolve"));
        }
        if !self.allowed_hosts.contains(&normalize_host(&host)) {
            for a in &addrs {
                if let Some(why) = forbidden(a.ip()) {
                    return Err(if literal.is_some() {
                        format!("is a {why} address, which webhooks may not reach")
                    } else {
                        format!("host {host} resolves to a {why} address ({}), which webhooks may not reach", a.ip())
                    });
                }
            }
        }
        Ok(Destination { host, addrs })
    }
}

fn normalize_host(h: &str) -> String {
    let h = h.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    // Address literals compare in canonical form (`::FFFF:7f00:1` is `::ffff:127.0.0.1`).
    h.parse::<IpAddr>().map(|ip| ip.to_string()).unwrap_or(h)
}

/// Why an address is not a public unicast one, or None when it is.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // Forms that carry an IPv4 address are judged by it: mapped (::ffff:a.b.c.d),
            // compatible (::a.b.c.d, deprecated but routed by some stacks), NAT64.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback() {
                return forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() || o[0] == 0 {
        "unspecified"
    } else if ip.is_link_local() {
        // 169.254.169.254 is the cloud's instance metadata service.
        "link-local"
    } else if ip.is_private() {
        "private"
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        "shared (carrier-grade NAT)"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || o[0] >= 240 {
        "reserved"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "IETF protocol assignment"
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        "benchmarking"
    } else if ip.is_documentation() {
        "documentation"
    } else {
        return None;
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "site-local"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "private (unique local)"
    } else if ip.is_multicast() {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[0] == 0x2002 {
        // 6to4 embeds an IPv4 address a relay would reach.
        return forbidden_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn every_internal_form_is_refused() {
        let p = EgressPolicy::default();
        let rt = rt();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://127.1/x",
            "http://2130706433/x",
            "http://0x7f000001/x",
            "http://0177.0.0.1/x",
            "http://0.0.0.0/x",
            "http://[::1]:2379/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://203.0.113.7/",
            "http://localhost:9/",
            "http://LOCALHOST./",
        ] {
            let err = rt.block_on(p.check(url)).expect_err(url);
            assert!(err.contains("may not reach"), "{url}: {err}");
        }
        assert!(rt.block_on(p.check("http://no-such-host.invalid/")).unwrap_err().contains("does not resolve"));
    }

    #[test]
    fn public_addresses_pass_and_named_exceptions_are_honoured() {
        let rt = rt();
        let p = EgressPolicy::default();
        let d = rt.block_on(p.check("https://8.8.8.8/hook")).unwrap();
        assert_eq!(d.addrs, vec!["8.8.8.8:443".parse().unwrap()]);
        let d = rt.block_on(p.check("http://[2606:4700::1111]:8443/")).unwrap();
        assert_eq!(d.host, "2606:4700::1111");

        let allow = EgressPolicy::new(&["127.0.0.1".into(), "LocalHost".into(), "[::1]".into()]);
        let d = rt.block_on(allow.check("http://127.0.0.1:9/h")).unwrap();
        assert_eq!(d.addrs, vec!["127.0.0.1:9".parse().unwrap()]);
        assert!(rt.block_on(allow.check("http://localhost:9/h")).is_ok());
        assert!(rt.block_on(allow.check("http://[::1]:9/h")).is_ok());
        // An exception names a host, not every form of its address.
        assert!(rt.block_on(allow.check("http://127.0.0.2:9/h")).is_err());
        assert!(rt.block_on(allow.check("http://2130706433:9/h")).is_ok(), "the same address, canonicalized");
    }
}

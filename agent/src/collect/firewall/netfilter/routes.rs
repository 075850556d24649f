//! The host's routes as `ip -4 -j route show table all` (and `-6`) print them: which
//! addresses are the host's own (`type local`), and through which device a
//! forwarded packet leaves (longest prefix of the main table). The
//! evaluator needs both after a DNAT: a rewritten destination that is not
//! local is forwarded, and forward chains match on `oifname`. Pure.

use serde_json::Value;

use super::values;
use crate::collect::ParseError;
use crate::collect::firewall::intervals::{IntervalSet, V4_MAX, V6_MAX};

/// One route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    lo: u128,
    hi: u128,
    len: u32,
    metric: u64,
    dev: String,
}

/// Routes and local addresses of both families.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// Whether any routes were read: without them lookups cannot be told.
    pub known: bool,
    v4: Vec<Route>,
    v6: Vec<Route>,
    local_v4: Vec<(u128, u128)>,
    local_v6: Vec<(u128, u128)>,
    /// The host's own single addresses with their device: (IPv6, address, device).
    addrs: Vec<(bool, u128, String)>,
}

impl Routes {
    /// Adds what `ip -4|-6 -j route show table all` printed (entries of the
    /// other family are skipped).
    pub fn read(&mut self, text: &str, v6: bool) -> Result<(), ParseError> {
        let printed = |what: String| ParseError::new(what).in_command("ip -j route");
        let doc: Value =
            serde_json::from_str(text).map_err(|e| printed(format!("output is malformed: {e}")))?;
        let items = doc.as_array().ok_or_else(|| printed("output is not a JSON array".into()))?;
        self.known = true;
        let bits = if v6 { 128 } else { 32 };
        for r in items {
            let dst = r.get("dst").and_then(Value::as_str).unwrap_or("");
            let (addr, len) = match dst {
                "default" => (if v6 { "::" } else { "0.0.0.0" }, 0),
                d => match d.split_once('/') {
                    Some((a, l)) => (a, l.parse().unwrap_or(bits)),
                    None => (d, bits),
                },
            };
            // Without `-4` iproute2 lists both families; keep this one's.
            if addr.contains(':') != v6 {
                continue;
            }
            let Some((lo, hi)) = values::prefix(addr, len) else { continue };
            let table = r.get("table").and_then(Value::as_str).unwrap_or("main");
            match r.get("type").and_then(Value::as_str).unwrap_or("unicast") {
                "local" => {
                    let dev = r.get("dev").and_then(Value::as_str).unwrap_or("");
                    if lo == hi && !dev.is_empty() {
                        self.addrs.push((v6, lo, dev.to_string()));
                    }
                    if v6 { self.local_v6.push((lo, hi)) } else { self.local_v4.push((lo, hi)) }
                }
                "unicast" if table == "main" => {
                    let dev = r.get("dev").and_then(Value::as_str).unwrap_or("").to_string();
                    let metric = r.get("metric").and_then(Value::as_u64).unwrap_or(0);
                    let route = Route { lo, hi, len, metric, dev };
                    if v6 { self.v6.push(route) } else { self.v4.push(route) }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The device of the route the kernel picks for `addr`: the most
    /// specific prefix, then the lowest metric.
    pub fn device(&self, v6: bool, addr: u128) -> Option<String> {
        let routes = if v6 { &self.v6 } else { &self.v4 };
        routes
            .iter()
            .filter(|r| r.lo <= addr && addr <= r.hi && !r.dev.is_empty())
            .min_by_key(|r| (std::cmp::Reverse(r.len), r.metric))
            .map(|r| r.dev.clone())
    }

    /// Every device a route leaves through.
    pub fn devices(&self) -> Vec<String> {
        let mut d: Vec<String> =
            self.v4.iter().chain(&self.v6).map(|r| r.dev.clone()).filter(|d| !d.is_empty()).collect();
        d.sort();
        d.dedup();
        d
    }

    /// The addresses whose chosen route leaves through `dev` (what a
    /// reverse path check on `dev` accepts).
    pub fn reached_via(&self, v6: bool, dev: &str) -> IntervalSet {
        let (routes, max) = if v6 { (&self.v6, V6_MAX) } else { (&self.v4, V4_MAX) };
        let mut out = IntervalSet::empty(max);
        for r in routes.iter().filter(|r| r.dev == dev) {
            let mine = IntervalSet::from_ranges(max, [(r.lo, r.hi)]);
            // Lost to a more specific prefix, or to the same prefix with a lower metric.
            let beaten = routes
                .iter()
                .filter(|o| o.len > r.len || (o.len == r.len && o.metric < r.metric && o.dev != dev));
            let lost = IntervalSet::from_ranges(max, beaten.map(|o| (o.lo, o.hi)));
            out = out.union(&mine.minus(&lost));
        }
        out
    }

    /// The address a `redirect` of a packet arriving on `dev` rewrites to,
    /// when it can be told: the device's first address (IPv4: its primary
    /// one; IPv6: its first of the widest scope, since the kernel keeps them
    /// sorted by scope), known here only when it has one such address.
    pub fn redirect_addr(&self, v6: bool, dev: &str) -> Option<u128> {
        let link_local = |a: u128| v6 && a >> 118 == 0x3fa; // fe80::/10
        let mine: Vec<u128> =
            self.addrs.iter().filter(|(f, _, d)| *f == v6 && d == dev).map(|(_, a, _)| *a).collect();
        let wide: Vec<u128> = mine.iter().copied().filter(|a| !link_local(*a)).collect();
        match (wide.as_slice(), mine.as_slice()) {
            ([one], _) => Some(*one),
            ([], [one]) => Some(*one),
            _ => None,
        }
    }

    /// Whether `addr` is one of the host's own.
    pub fn is_local(&self, v6: bool, addr: u128) -> bool {
        let local = if v6 { &self.local_v6 } else { &self.local_v4 };
        local.iter().any(|(lo, hi)| *lo <= addr && addr <= *hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_local_addresses_are_read() {
        let text = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
            {"dst":"172.17.0.0/16","dev":"docker0","protocol":"kernel","scope":"link","prefsrc":"172.17.0.1","flags":[]},
            {"type":"local","dst":"192.0.2.10","table":"local","dev":"eth0","flags":[]},
            {"type":"local","dst":"127.0.0.0/8","table":"local","dev":"lo","flags":[]},
            {"type":"broadcast","dst":"172.17.255.255","table":"local","dev":"docker0","flags":[]}]"#;
        let mut r = Routes::default();
        r.read(text, false).unwrap();
        assert_eq!(r.device(false, 0xac11_0002).as_deref(), Some("docker0"));
        assert_eq!(r.device(false, 0x0808_0808).as_deref(), Some("eth0"));
        assert!(r.is_local(false, 0xc000_020a));
        assert!(r.reached_via(false, "docker0").contains(0xac11_0002));
        assert!(!r.reached_via(false, "eth0").contains(0xac11_0002));
        assert!(r.reached_via(false, "eth0").contains(0x0808_0808));
        assert!(!r.is_local(false, 0xac11_0002));
        assert_eq!(r.redirect_addr(false, "eth0"), Some(0xc000_020a));
        assert_eq!(r.redirect_addr(false, "docker0"), None, "no address of its own listed");
        assert!(r.read("{}", false).is_err());
        // An IPv6 entry in an IPv4 listing is not read as a huge IPv4 range.
        r.read(r#"[{"type":"local","dst":"::1","table":"local","dev":"lo"}]"#, false).unwrap();
        assert!(!r.is_local(false, 0xac11_0002));
    }
}

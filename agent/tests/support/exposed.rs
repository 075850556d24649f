//! The agent's `exposed` facts read back, to hold them against what the
//! kernel did with each probe of the network lab.
//!
//! An exposure covers a probe when family, protocol, destination port,
//! source address and interface all fit; its `also` qualifiers (source
//! ports, destinations, forwarding) narrow it further, so only exposures
//! without them are held to "every probe they cover arrives".

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// One entry of the `exposed` fact.
#[derive(Debug)]
pub struct Exposed {
    pub v6: bool,
    pub proto: String,
    /// Inclusive port ranges; empty for "any".
    ports: Vec<(u16, u16)>,
    /// `None`: any source; otherwise the prefixes, `except` true when they
    /// are the sources left out.
    from: Option<(bool, Vec<IpNet>)>,
    /// `None`: any interface; otherwise names and `prefix*` classes.
    via: Option<Vec<String>>,
    pub certain: bool,
    pub unqualified: bool,
    pub text: String,
}

fn ranges(text: &str) -> Result<Vec<(u16, u16)>, String> {
    if text == "any" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let port = |s: &str| s.trim().parse::<u16>().map_err(|e| format!("port {s:?}: {e}"));
            Ok((port(a)?, port(b)?))
        })
        .collect()
}

fn prefixes(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',').map(|p| p.trim().parse::<IpNet>().map_err(|e| format!("prefix {p:?}: {e}"))).collect()
}

impl Exposed {
    fn parse(e: &Value) -> Result<Exposed, String> {
        let text = |k: &str| e[k].as_str().map(str::to_string).ok_or_else(|| format!("no {k} in {e}"));
        let from = text("from")?;
        let from = if from == "any" {
            None
        } else if let Some(rest) = from.strip_prefix("any except ") {
            Some((true, prefixes(rest)?))
        } else {
            Some((false, prefixes(&from)?))
        };
        let via = text("via")?;
        Ok(Exposed {
            v6: text("family")? == "ipv6",
            proto: text("proto")?,
            ports: ranges(&text("ports")?)?,
            from,
            via: (via != "any").then(|| via.split(',').map(str::to_string).collect()),
            certain: e["certain"] != false,
            unqualified: text("also")?.is_empty(),
            text: format!("{}: {} from {} via {via}", text("family")?, text("service")?, text("from")?),
        })
    }

    /// Whether this exposure covers a packet with these fields.
    pub fn covers(&self, proto: &str, src: IpAddr, dport: u16, iface: &str) -> bool {
        let source = match &self.from {
            None => true,
            Some((except, nets)) => nets.iter().any(|n| n.contains(&src)) != *except,
        };
        let via = match &self.via {
            None => true,
            Some(names) => names.iter().any(|n| match n.strip_suffix('*') {
                Some(prefix) => iface.starts_with(prefix),
                None => n == iface || n == "other",
            }),
        };
        self.v6 == src.is_ipv6()
            && (self.proto == "any" || self.proto == proto)
            && (self.ports.is_empty() || self.ports.iter().any(|&(a, b)| (a..=b).contains(&dport)))
            && source
            && via
    }
}

/// Every entry of a finding's `exposed` fact.
pub fn read(finding: &Value) -> Result<Vec<Exposed>, String> {
    let list =
        finding["facts"]["exposed"].as_array().ok_or_else(|| format!("no exposed fact in {finding}"))?;
    list.iter().map(Exposed::parse).collect()
}

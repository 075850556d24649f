//! The macOS application firewall (`socketfilterfw`), read as what it lets
//! in: a socket filter in the kernel that admits an inbound connection only
//! for a program it allows, whatever the port.
//!
//! Read with `/usr/libexec/ApplicationFirewall/socketfilterfw`:
//! `--getglobalstate` (`Firewall is enabled. (State = 1)`; state 2 blocks
//! all incoming connections), `--getblockall` and `--getstealthmode` (an
//! older `Block all ENABLED!` / `Stealth mode enabled` and a newer
//! `Firewall has block all state set to enabled.` / `Firewall stealth mode
//! is on` wording), `--getallowsigned` (`Automatically allow built-in
//! signed software ENABLED.` and `Automatically allow downloaded signed
//! software DISABLED.`) and `--listapps` (`ALF: total number of apps = 2`,
//! then per app `1 :  /Applications/Foo.app` and `( Allow incoming
//! connections )` or `( Block incoming connections )` on the next line).
//!
//! When the firewall is on and not blocking all, each allowed app is an
//! exposure of every port limited to that program; allowed signed software
//! is a possible exposure limited to signed programs (only those that
//! listen). Blocking all admits nothing through it (Apple still lets the
//! basic services DHCP, Bonjour and IPsec answer, which are specific).

use super::exposure::{Exposure, Family};
use crate::collect::{Context, ParseError};
use crate::privacy::Personal;

pub const SOCKETFILTERFW: &str = "/usr/libexec/ApplicationFirewall/socketfilterfw";

/// The application firewall's global state: 0 off, 1 on, 2 block all.
pub fn parse_global_state(text: &str) -> Option<u8> {
    if let Some(rest) = text.split("State = ").nth(1) {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<u8>() {
            return Some(n);
        }
    }
    // Some builds print the sentence only.
    let lower = text.to_ascii_lowercase();
    if lower.contains("firewall is disabled") {
        Some(0)
    } else if lower.contains("firewall is blocking all") {
        Some(2)
    } else if lower.contains("firewall is enabled") {
        Some(1)
    } else {
        None
    }
}

/// An on/off answer in either the old (`... ENABLED!`, `... enabled`) or
/// new (`... set to enabled.`, `... is on`) wording.
pub fn parse_on_off(text: &str) -> Option<bool> {
    let lower = text.trim().to_ascii_lowercase();
    let words: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    if words.iter().any(|w| matches!(*w, "disabled" | "off")) {
        Some(false)
    } else if words.iter().any(|w| matches!(*w, "enabled" | "on")) {
        Some(true)
    } else {
        None
    }
}

/// `--getallowsigned`: whether built-in and downloaded signed software are
/// allowed automatically (a line naming neither counts for both).
pub fn parse_allow_signed(text: &str) -> (Option<bool>, Option<bool>) {
    let (mut built_in, mut downloaded) = (None, None);
    for line in text.lines().map(str::to_ascii_lowercase).filter(|l| l.contains("signed")) {
        let value = parse_on_off(&line);
        match (line.contains("built-in"), line.contains("downloaded")) {
            (true, _) => built_in = value,
            (_, true) => downloaded = value,
            _ => (built_in, downloaded) = (value, value),
        }
    }
    (built_in, downloaded)
}

/// One entry of `--listapps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub path: String,
    pub allowed: bool,
}

/// Where the mode of an entry starts (`( Allow incoming connections )`),
/// if the text holds one, and whether it allows.
fn mode(text: &str) -> Option<(usize, bool)> {
    let lower = text.to_ascii_lowercase();
    let (at, allowed) = match (lower.find("allow incoming"), lower.find("block incoming")) {
        (Some(a), _) => (a, true),
        (None, Some(b)) => (b, false),
        (None, None) => return None,
    };
    Some((lower[..at].rfind('(').unwrap_or(at), allowed))
}

/// `1 :  /Applications/Foo.app` → the path (and a mode on the same line).
fn entry(line: &str) -> Option<(String, Option<bool>)> {
    let (n, rest) = line.trim().split_once(':')?;
    if n.trim().is_empty() || !n.trim().chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match mode(rest) {
        Some((at, allowed)) => Some((rest[..at].trim().to_string(), Some(allowed))),
        None => Some((rest.trim().to_string(), None)),
    }
}

/// Parses `--listapps`. An entry without a mode counts as allowed (it can
/// only widen what is let in); a count that disagrees with the entries is
/// an error, the output is then not what this parser knows.
pub fn parse_listapps(text: &str) -> Result<Vec<App>, ParseError> {
    const LISTAPPS: &str = "socketfilterfw --listapps";
    let mut total = None;
    let mut apps: Vec<(String, Option<bool>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.to_ascii_lowercase().contains("total number of apps") {
            let n = line.rsplit('=').next().map(str::trim).and_then(|n| n.parse::<usize>().ok());
            let unreadable =
                || ParseError::new(format!("unreadable count in {:?}", line.trim())).at_line(i + 1);
            total = Some(n.ok_or_else(unreadable)?);
        } else if let Some(e) = entry(line) {
            apps.push(e);
        } else if let (Some((_, allowed)), Some(last)) = (mode(line), apps.last_mut())
            && last.1.is_none()
        {
            last.1 = Some(allowed);
        }
    }
    match total {
        None => return Err(ParseError::new("printed no count of apps").in_command(LISTAPPS)),
        Some(n) if n != apps.len() => {
            let why = format!("counts {n} apps but lists {}", apps.len());
            return Err(ParseError::new(why).in_command(LISTAPPS));
        }
        Some(_) => {}
    }
    Ok(apps.into_iter().map(|(path, allowed)| App { path, allowed: allowed.unwrap_or(true) }).collect())
}

/// A path as it may enter a record: the user name in `/Users/NAME/...`
/// handled as the deployment's privacy settings say.
pub fn recordable_path(path: &str, ctx: &Context) -> String {
    let Some(rest) = path.strip_prefix("/Users/") else { return path.to_string() };
    let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() || name == "Shared" {
        return path.to_string();
    }
    let shown = ctx.personal(Personal::UserName, name).unwrap_or_else(|| "<omitted>".to_string());
    if tail.is_empty() { format!("/Users/{shown}") } else { format!("/Users/{shown}/{tail}") }
}

/// What was read of the application firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alf {
    pub state: Option<u8>,
    pub block_all: Option<bool>,
    pub stealth: Option<bool>,
    pub signed_built_in: Option<bool>,
    pub signed_downloaded: Option<bool>,
    /// The `--listapps` entries, or why they could not be read.
    pub apps: Result<Vec<App>, String>,
}

impl Alf {
    /// On (state 1 or 2).
    pub fn on(&self) -> bool {
        matches!(self.state, Some(1 | 2))
    }

    /// Blocking all incoming connections (state 2 or block-all set).
    pub fn blocks_all(&self) -> bool {
        self.state == Some(2) || self.block_all == Some(true)
    }

    /// The allowed apps' paths, when the list was read.
    pub fn allowed_apps(&self) -> Option<Vec<String>> {
        self.apps.as_ref().ok().map(|a| a.iter().filter(|a| a.allowed).map(|a| a.path.clone()).collect())
    }

    /// What it lets in while on and not blocking all: each allowed app,
    /// and signed software when allowed automatically (possible: only
    /// what such software listens on), all limited to programs.
    pub fn allowance(&self) -> Vec<Exposure> {
        let program = |program: &str, because: String, certain: bool| {
            let mut e = Exposure::everything(Family::Any, because);
            e.program = Some(program.to_string());
            e.certain = certain;
            e
        };
        let mut out: Vec<Exposure> = self
            .allowed_apps()
            .unwrap_or_default()
            .iter()
            .map(|p| program(p, format!("the application firewall allows {p}"), true))
            .collect();
        let signed = [
            (self.signed_built_in, "built-in signed software"),
            (self.signed_downloaded, "downloaded signed software"),
        ];
        for (allowed, what) in signed {
            // Unread counts as allowed: it can only widen what is let in.
            if allowed != Some(false) {
                out.push(program(
                    what,
                    format!("the application firewall automatically allows {what}"),
                    false,
                ));
            }
        }
        out
    }
}

//! The Linux backends of the `disk_encryption` check.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::collect::{Context, Finding, ParseError};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// Filesystem types that are not backed by a block device of this host.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "tmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "bpf",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "ramfs",
    "rpc_pipefs",
    "nsfs",
    "squashfs",
    "fuse.portal",
    "fuse.gvfsd-fuse",
    "overlay",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "9p",
    "virtiofs",
    "fuse.lxcfs",
    "zfs",
];
/// Mount points that hold boot files, not data.
const EXEMPT: &[&str] = &["/boot", "/boot/efi", "/efi"];

/// One node of the lsblk tree with its ancestry.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub kname: String,
    pub kind: String,
    pub fstype: Option<String>,
    pub removable: bool,
    pub mountpoints: Vec<String>,
    /// From this device up to the disk, knames.
    pub chain: Vec<String>,
    /// Whether this device or one below it is a dm-crypt mapping.
    pub encrypted: bool,
}

/// Parses `lsblk -J` output (MOUNTPOINTS array or older MOUNTPOINT string)
/// into a flat list; devices with several parents appear once per path.
pub fn parse_lsblk(text: &str) -> Result<Vec<Device>, ParseError> {
    let printed = |what: String| ParseError::new(what).in_command("lsblk");
    let doc: Value = serde_json::from_str(text).map_err(|e| printed(format!("JSON is malformed: {e}")))?;
    let roots = doc
        .get("blockdevices")
        .and_then(Value::as_array)
        .ok_or_else(|| printed("JSON has no \"blockdevices\"".into()))?;
    let mut out = Vec::new();
    fn walk(node: &Value, parents: &[String], parent_encrypted: bool, out: &mut Vec<Device>) {
        let s = |k: &str| node.get(k).and_then(Value::as_str).map(str::to_string);
        let kname = s("kname").or_else(|| s("name")).unwrap_or_default();
        let kind = s("type").unwrap_or_default();
        let mut mountpoints: Vec<String> = match node.get("mountpoints") {
            Some(Value::Array(a)) => a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        if let Some(m) = s("mountpoint") {
            mountpoints.push(m);
        }
        let removable = match node.get("rm") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(v)) => v == "1",
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            _ => false,
        };
        let encrypted = parent_encrypted || kind == "crypt";
        let mut chain = vec![kname.clone()];
        chain.extend(parents.iter().cloned());
        out.push(Device {
            kname,
            kind,
            fstype: s("fstype"),
            removable,
            mountpoints,
            chain: chain.clone(),
            encrypted,
        });
        if let Some(children) = node.get("children").and_then(Value::as_array) {
            for c in children {
                walk(c, &chain, encrypted, out);
            }
        }
    }
    for r in roots {
        walk(r, &[], false, &mut out);
    }
    Ok(out)
}

/// `(source, mountpoint, fstype)` of each line of `/proc/mounts`.
pub fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (src, mnt, fs) = (f.next()?, f.next()?, f.next()?);
            // /proc/mounts escapes spaces as \040.
            Some((src.to_string(), mnt.replace("\\040", " "), fs.to_string()))
        })
        .collect()
}

/// `(filename, type)` of each swap area in `/proc/swaps`.
pub fn parse_swaps(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone)]
pub struct Observed {
    /// `lsblk -J` output, or why there is none (a run that fails is no `HostError`).
    pub lsblk: Result<String, String>,
    pub mounts: Result<String, HostError>,
    pub swaps: Option<String>,
    /// `/sys/block/<kname>/dm/uuid` for device-mapper devices.
    pub dm_uuids: BTreeMap<String, String>,
    /// `cryptsetup luksDump` of each device holding a LUKS header (kname →
    /// output, or why it could not be read).
    pub luks_dumps: BTreeMap<String, Result<String, String>>,
}

/// What a LUKS header says about how a volume is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksHeader {
    pub version: u32,
    /// `aes-xts-plain64` style: algorithm, mode and IV.
    pub cipher: String,
    pub key_bits: Option<u32>,
    /// Key derivation of the active key slots (`argon2id`, `pbkdf2`).
    pub pbkdf: Vec<String>,
    pub keyslots: usize,
}

impl LuksHeader {
    /// Why this encryption does not protect the data, if it does not:
    /// no cipher, ECB (identical blocks leak), or CBC with a plain IV
    /// (watermarking attacks).
    pub fn weakness(&self) -> Option<String> {
        let c = self.cipher.to_ascii_lowercase();
        if c.contains("null") {
            Some(format!("cipher {} does not encrypt", self.cipher))
        } else if c.contains("ecb") {
            Some(format!("cipher {} (ECB) reveals patterns", self.cipher))
        } else if c.contains("cbc-plain") {
            Some(format!("cipher {} (CBC with a plain IV) allows watermarking", self.cipher))
        } else {
            None
        }
    }
}

/// Parses `cryptsetup luksDump` output, LUKS1 or LUKS2.
pub fn parse_luks_dump(text: &str) -> Result<LuksHeader, ParseError> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let version = field("Version")
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or("no LUKS header information (Version missing)")?;
    let first_bits = |v: String| v.split_whitespace().next().and_then(|n| n.parse::<u32>().ok());
    if version == 1 {
        let name = field("Cipher name").ok_or("LUKS1 header without a cipher name")?;
        let mode = field("Cipher mode").unwrap_or_default();
        let keyslots = text.lines().filter(|l| l.starts_with("Key Slot") && l.contains("ENABLED")).count();
        return Ok(LuksHeader {
            version,
            cipher: if mode.is_empty() { name } else { format!("{name}-{mode}") },
            key_bits: field("MK bits").and_then(first_bits),
            pbkdf: if keyslots > 0 { vec!["pbkdf2".into()] } else { Vec::new() },
            keyslots,
        });
    }
    // LUKS2: the data segment's cipher; key size and PBKDF per key slot.
    let cipher = field("cipher").ok_or("LUKS2 header without a data segment cipher")?;
    let mut pbkdf: Vec<String> =
        text.lines().filter_map(|l| l.trim().strip_prefix("PBKDF:").map(|v| v.trim().to_string())).collect();
    pbkdf.dedup();
    let keyslots = text.lines().filter(|l| l.trim_end().ends_with(": luks2")).count();
    Ok(LuksHeader { version, cipher, key_bits: field("Key").and_then(first_bits), pbkdf, keyslots })
}

/// The verdict on what was observed:
/// - the device tree and mount table must be readable and the root
///   filesystem on a visible device (`unknown` otherwise);
/// - every mounted filesystem on a fixed device and every swap is judged
///   encrypted or not ([`Volumes`]); LUKS headers are judged for weak
///   ciphers and key derivation;
/// - `fail` naming what is not encrypted or weakly, `unknown` when a volume's
///   device was not found or none was, `pass` otherwise.
pub fn evaluate(o: &Observed) -> Finding {
    let lsblk = match &o.lsblk {
        Ok(t) => t,
        Err(e) => return Finding::unknown("lsblk", format!("the block-device tree could not be read: {e}")),
    };
    let mounts = match &o.mounts {
        Ok(t) => t,
        Err(e) => return Finding::unknown("lsblk", format!("the mount table could not be read: {e}")),
    };
    let mut raw = format!("{lsblk}\n{mounts}");
    if let Some(s) = &o.swaps {
        raw.push('\n');
        raw.push_str(s);
    }
    let devices = match parse_lsblk(lsblk) {
        Ok(d) => d,
        Err(e) => return Finding::unknown("lsblk", e.to_string()).with_raw(raw),
    };
    let mounts = parse_mounts(mounts);
    let Some((_, _, root_fs)) = mounts.iter().rev().find(|(_, m, _)| m == "/") else {
        return Finding::unknown("lsblk", "the root filesystem is not in the mount table").with_raw(raw);
    };
    if PSEUDO.contains(&root_fs.as_str()) {
        return Finding::unknown(
            "lsblk",
            format!(
                "the root filesystem is {root_fs} (a container or network root); the device backing it is not visible from here"
            ),
        )
        .with_raw(raw)
        .fact("root_fstype", root_fs.clone());
    }
    // The last mount on a path is the visible one.
    let visible: BTreeMap<String, (String, String)> =
        mounts.iter().map(|(src, mnt, fs)| (mnt.clone(), (src.clone(), fs.clone()))).collect();
    let mut v = Volumes::default_for(o, &devices);
    v.filesystems(&visible);
    v.swaps(&visible);
    let (headers, weak) = luks_headers(o);
    v.verdict(headers, &weak, raw)
}

/// The volumes judged so far.
struct Volumes<'a> {
    o: &'a Observed,
    devices: &'a [Device],
    /// Every volume judged, as a fact.
    checked: Vec<Value>,
    /// Devices not encrypted, each named once with its mount points.
    unencrypted: Vec<String>,
    /// Mounts and swaps whose device was not found.
    undetermined: Vec<String>,
    /// Mounts not judged, with why.
    skipped: Vec<Value>,
}

impl<'a> Volumes<'a> {
    fn default_for(o: &'a Observed, devices: &'a [Device]) -> Self {
        Volumes {
            o,
            devices,
            checked: Vec::new(),
            unencrypted: Vec::new(),
            undetermined: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Whether `d` or a device below it is a dm-crypt mapping.
    fn is_crypt(&self, d: &Device) -> bool {
        d.encrypted || d.chain.iter().any(|k| self.o.dm_uuids.get(k).is_some_and(|u| u.starts_with("CRYPT-")))
    }

    /// Each visible filesystem on a fixed device, boot files and removable
    /// media aside.
    fn filesystems(&mut self, visible: &BTreeMap<String, (String, String)>) {
        for (mnt, (src, fs)) in visible {
            if PSEUDO.contains(&fs.as_str()) || !src.starts_with("/dev/") {
                continue;
            }
            if EXEMPT.contains(&mnt.as_str()) {
                self.skipped.push(json!({"mountpoint": mnt, "why": "boot files, no data"}));
                continue;
            }
            let Some(dev) = self.devices.iter().find(|d| d.mountpoints.iter().any(|m| m == mnt)) else {
                self.undetermined.push(mnt.clone());
                continue;
            };
            let removable = |k: &String| self.devices.iter().any(|d| &d.kname == k && d.removable);
            if dev.removable || dev.chain.iter().any(removable) {
                self.skipped.push(json!({"mountpoint": mnt, "why": "removable medium"}));
                continue;
            }
            let enc = self.is_crypt(dev);
            self.checked
                .push(json!({"kind": "filesystem", "mountpoint": mnt, "fstype": fs, "device": dev.kname,
                                     "chain": dev.chain, "encrypted": enc}));
            if !enc {
                self.name_unencrypted(dev, mnt);
            }
        }
    }

    /// Names an unencrypted device once: bind mounts repeat a device.
    fn name_unencrypted(&mut self, dev: &Device, mnt: &str) {
        let chain = dev.chain.join(" on ");
        match self.unencrypted.iter_mut().find(|u| u.starts_with(&format!("{chain} ("))) {
            Some(u) => {
                u.pop();
                u.push_str(&format!(", {mnt})"));
            }
            None => self.unencrypted.push(format!("{chain} ({mnt})")),
        }
    }

    /// Each swap: a partition by its device, a file by the filesystem
    /// holding it; compressed RAM is not stored on disk.
    fn swaps(&mut self, visible: &BTreeMap<String, (String, String)>) {
        for (file, kind) in self.o.swaps.as_deref().map(parse_swaps).unwrap_or_default() {
            let name = file.rsplit('/').next().unwrap_or(&file).to_string();
            if name.starts_with("zram") {
                self.checked.push(json!({"kind": "swap", "device": name, "encrypted": null, "note": "compressed RAM, not stored on disk"}));
                continue;
            }
            let dev = if kind == "file" {
                // A swap file is as safe as the filesystem holding it.
                visible
                    .keys()
                    .filter(|m| file.starts_with(m.as_str()))
                    .max_by_key(|m| m.len())
                    .and_then(|m| self.devices.iter().find(|d| d.mountpoints.iter().any(|x| x == m)))
            } else {
                self.devices.iter().find(|d| d.kname == name || format!("/dev/{}", d.kname) == file)
            };
            match dev {
                Some(d) => {
                    let enc = self.is_crypt(d);
                    self.checked.push(json!({"kind": "swap", "swap": file, "device": d.kname, "chain": d.chain, "encrypted": enc}));
                    if !enc {
                        self.unencrypted.push(format!("swap {file} ({})", d.chain.join(" on ")));
                    }
                }
                None => self.undetermined.push(format!("swap {file}")),
            }
        }
    }

    /// The finding, with every volume and header as facts.
    fn verdict(self, headers: Vec<Value>, weak: &[String], raw: String) -> Finding {
        let base = |status| {
            Finding::new(status, "lsblk")
                .fact("luks_headers", headers.clone())
                .fact("volumes", self.checked.clone())
                .fact("exempt", self.skipped.clone())
                .fact("undetermined", self.undetermined.clone())
                .with_raw(raw.clone())
        };
        if !self.unencrypted.is_empty() || !weak.is_empty() {
            let mut why = Vec::new();
            if !self.unencrypted.is_empty() {
                why.push(format!("not encrypted: {}", self.unencrypted.join(", ")));
            }
            if !weak.is_empty() {
                why.push(format!("weak encryption: {}", weak.join("; ")));
            }
            return base(CheckStatus::Fail).with_reason(why.join("; "));
        }
        if !self.undetermined.is_empty() {
            return base(CheckStatus::Unknown)
                .with_reason(format!("no block device found for {}", self.undetermined.join(", ")));
        }
        if self.checked.is_empty() {
            return base(CheckStatus::Unknown).with_reason("no fixed filesystem found to assess");
        }
        base(CheckStatus::Pass).with_reason("root, fixed data filesystems and swap are on dm-crypt")
    }
}

/// Each LUKS header as a fact, and the weaknesses found in them.
fn luks_headers(o: &Observed) -> (Vec<Value>, Vec<String>) {
    let mut headers = Vec::new();
    let mut weak = Vec::new();
    for (dev, dump) in &o.luks_dumps {
        match dump
            .as_deref()
            .map_err(Clone::clone)
            .and_then(|t| parse_luks_dump(t).map_err(|e| e.to_string()))
        {
            Ok(h) => {
                if let Some(w) = h.weakness() {
                    weak.push(format!("{dev}: {w}"));
                }
                headers.push(json!({"device": dev, "luks_version": h.version, "cipher": h.cipher,
                                    "key_bits": h.key_bits, "pbkdf": h.pbkdf, "keyslots": h.keyslots}));
            }
            Err(e) => headers.push(json!({"device": dev, "unreadable": e})),
        }
    }
    (headers, weak)
}

/// Reads the device tree, mounts, swaps and device-mapper uuids.
pub fn observe(host: &dyn Host) -> Observed {
    let cols = "NAME,KNAME,TYPE,FSTYPE,MOUNTPOINTS,RM,PKNAME";
    let lsblk = match host.run("lsblk", &["-J", "-b", "-o", cols]) {
        Ok(out) if out.success() => Ok(out.stdout),
        // util-linux before 2.37 has no MOUNTPOINTS column.
        Ok(_) => {
            match host.run("lsblk", &["-J", "-b", "-o", "NAME,KNAME,TYPE,FSTYPE,MOUNTPOINT,RM,PKNAME"]) {
                Ok(out) if out.success() => Ok(out.stdout),
                Ok(out) => Err(format!("lsblk exited with {:?}: {}", out.code, out.stderr.trim())),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    let mut dm_uuids = BTreeMap::new();
    for name in host.read_dir("/sys/block").unwrap_or_default() {
        if name.starts_with("dm-")
            && let Ok(uuid) = host.read_text(&format!("/sys/block/{name}/dm/uuid"))
        {
            dm_uuids.insert(name, uuid.trim().to_string());
        }
    }
    // The header sits on the device below each dm-crypt mapping.
    let mut luks_dumps = BTreeMap::new();
    if let Ok(Ok(devices)) = lsblk.as_deref().map(parse_lsblk) {
        for d in devices.iter().filter(|d| d.kind == "crypt") {
            let Some(parent) = d.chain.get(1) else { continue };
            if luks_dumps.contains_key(parent) {
                continue;
            }
            let dump = match host.run("cryptsetup", &["luksDump", &format!("/dev/{parent}")]) {
                Ok(out) if out.success() => Ok(out.stdout),
                Ok(out) => {
                    Err(format!("cryptsetup luksDump exited with {:?}: {}", out.code, out.stderr.trim()))
                }
                Err(e) => Err(e.to_string()),
            };
            luks_dumps.insert(parent.clone(), dump);
        }
    }
    Observed {
        lsblk,
        mounts: host.read_text("/proc/mounts"),
        swaps: host.read_text("/proc/swaps").ok(),
        dm_uuids,
        luks_dumps,
    }
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    evaluate(&observe(host))
}

//! How much of a bundle the verifier agrees to read. A bundle comes from
//! whoever sent it, and a tar.gz of a few MB can expand to many GB
//! (`evidence.csv` as 1 GiB of zeros is a 1 MB entry), so every byte the
//! decompressor produces is counted against limits before anything holds
//! it:
//!
//! - the bundle's expanded size ([`Limits::max_total`], per pass);
//! - its expansion ratio, bundle-wide and, for an entry whose size the
//!   manifest does not declare (every entry of the first pass, which meets
//!   the manifest last), per entry ([`Limits::max_ratio`], beyond
//!   [`RATIO_SLACK`] so small files never trip it);
//! - each entry's size, from its tar header before its body is read: the
//!   size the manifest declares for it once the manifest is known, else a
//!   cap for its kind ([`kind_cap`]);
//! - the tar headers between bodies ([`MAX_HEADER_BYTES`]): GNU long names
//!   and pax extensions are read whole by the tar reader itself.
//!
//! A limit that trips is a [`BundleError`] naming the entry and the limit;
//! nothing is read past it.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use custos_proto::evidence::statement::MAX_PAYLOAD_BYTES;

use super::read::BundleError;
use super::report::excerpt;
use crate::bundle::BundlePath;

/// Default for [`Limits::max_total`]: measured, 50,000 records of 1,000
/// hosts expand to 253 MB, about 5 kB a record (the record 1.4 kB, its
/// proof 0.6–1 kB, tar headers and padding 1.3 kB, and each host's share of
/// the CSV, the OSCAL document and the manifest). A million-record export
/// is about 5 GB; 64 GiB leaves more than ten times that.
pub const MAX_TOTAL_BYTES: u64 = 64 << 30;
/// Default for [`Limits::max_ratio`]: real bundles expand about 10 times,
/// their most compressible files (the CSV, the OSCAL document) 15–20 times
/// on their own, held there by the digests and UUIDs every row carries;
/// deflate's ceiling, which a bomb of zeros reaches, is about 1030.
pub const MAX_RATIO: u64 = 100;
/// Default for [`Limits::max_entry`]: the largest file the manifest does not
/// (yet) declare: the CSV, the OSCAL document or the manifest. Measured,
/// 1,000 hosts with 50 records each make a 32 MB OSCAL document, a 22 MB
/// CSV and a 17 MB manifest, so this holds some 30,000 hosts (raise it
/// with `CUSTOS_VERIFY_MAX_ENTRY` for more).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;
/// Expanded bytes allowed beyond the ratio, so that a small file (or the
/// start of the stream) that compresses well is never mistaken for a bomb.
pub const RATIO_SLACK: u64 = 1 << 20;
/// Tar headers (with GNU long names and pax extensions) between two bodies.
pub const MAX_HEADER_BYTES: u64 = 64 << 10;
/// A record: a DSSE envelope of a payload of at most `MAX_PAYLOAD_BYTES`
/// (base64 is 4/3 of it, plus the signature and key id).
pub const MAX_RECORD_BYTES: u64 = 2 * MAX_PAYLOAD_BYTES as u64;
/// Proofs (at most 64 hashes), key bindings, the checkpoint and the log key
/// are a few hundred bytes to a few kB.
pub const MAX_SMALL_BYTES: u64 = 64 << 10;

/// Environment variables that override the defaults for `custos-verify`
/// ([`Limits::from_env`]): bytes, bytes, and a plain ratio.
pub const ENV_MAX_TOTAL: &str = "CUSTOS_VERIFY_MAX_TOTAL";
pub const ENV_MAX_ENTRY: &str = "CUSTOS_VERIFY_MAX_ENTRY";
pub const ENV_MAX_RATIO: &str = "CUSTOS_VERIFY_MAX_RATIO";

/// The limits a verification reads a bundle under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Expanded bytes of the whole archive (tar headers included).
    pub max_total: u64,
    /// Expanded bytes per compressed byte, beyond [`RATIO_SLACK`].
    pub max_ratio: u64,
    /// Largest CSV, OSCAL document, manifest or unknown file whose size the
    /// manifest does not declare.
    pub max_entry: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_total: MAX_TOTAL_BYTES, max_ratio: MAX_RATIO, max_entry: MAX_ENTRY_BYTES }
    }
}

impl Limits {
    /// The defaults, each overridden by its environment variable when set
    /// (for an auditor holding a bundle larger than the defaults allow).
    pub fn from_env() -> Result<Limits, BundleError> {
        let var = |name: &'static str, default: u64| match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(BundleError::Limit { var: name, value: excerpt(&v).to_string() }),
            },
        };
        let d = Limits::default();
        Ok(Limits {
            max_total: var(ENV_MAX_TOTAL, d.max_total)?,
            max_ratio: var(ENV_MAX_RATIO, d.max_ratio)?,
            max_entry: var(ENV_MAX_ENTRY, d.max_entry)?,
        })
    }
}

/// The most an entry may hold, and where that figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max: u64,
    /// The manifest declares this size: the entry's ratio is not watched.
    pub declared: bool,
    /// What the cap is, for the error: "the size manifest.json declares", ...
    pub what: &'static str,
}

impl Cap {
    pub fn declared(size: u64) -> Cap {
        Cap { max: size, declared: true, what: "bytes manifest.json declares for it" }
    }
}

/// The cap of an entry whose size the manifest does not declare, by kind.
pub fn kind_cap(name: &str, limits: &Limits) -> Cap {
    let (max, what) = match BundlePath::parse(name) {
        BundlePath::Record { .. } => (MAX_RECORD_BYTES, "bytes accepted for a record"),
        BundlePath::RecordProof { .. }
        | BundlePath::KeyProof { .. }
        | BundlePath::KeyBinding { .. }
        | BundlePath::Checkpoint
        | BundlePath::LogKey => (MAX_SMALL_BYTES, "bytes accepted for a proof, key or checkpoint"),
        BundlePath::Manifest
        | BundlePath::EvidenceCsv
        | BundlePath::AssessmentResults
        | BundlePath::Unknown => (limits.max_entry, "bytes accepted for an entry (CUSTOS_VERIFY_MAX_ENTRY)"),
    };
    Cap { max, declared: false, what }
}

/// Which limit stopped the reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    Total,
    BundleRatio,
    EntryRatio,
    Headers,
}

/// The counters one reading of an archive shares between the layers that
/// see compressed bytes ([`Counting`]), expanded bytes ([`Guard`]) and
/// entries (the archive loop and [`Body`]).
pub(crate) struct Meter {
    limits: Limits,
    compressed: Cell<u64>,
    expanded: Cell<u64>,
    /// Compressed and expanded counts where the current body began, when
    /// its own ratio is watched.
    entry_start: Cell<Option<(u64, u64)>>,
    in_body: Cell<bool>,
    /// Expanded bytes since the last body ended: headers and long names.
    between: Cell<u64>,
    tripped: Cell<Option<Trip>>,
}

impl Meter {
    pub fn new(limits: Limits) -> Rc<Meter> {
        Rc::new(Meter {
            limits,
            compressed: Cell::new(0),
            expanded: Cell::new(0),
            entry_start: Cell::new(None),
            in_body: Cell::new(false),
            between: Cell::new(0),
            tripped: Cell::new(None),
        })
    }

    pub fn expanded(&self) -> u64 {
        self.expanded.get()
    }

    /// A body starts; its own ratio is watched unless its size is declared.
    pub fn start_body(&self, watch_ratio: bool) {
        self.in_body.set(true);
        let here = (self.compressed.get(), self.expanded.get());
        self.entry_start.set(watch_ratio.then_some(here));
    }

    pub fn end_body(&self) {
        self.in_body.set(false);
        self.entry_start.set(None);
        self.between.set(0);
    }

    /// The first limit `n` more expanded bytes break, if any.
    fn check(&self, n: u64) -> Option<Trip> {
        let l = &self.limits;
        let (compressed, expanded) = (self.compressed.get(), self.expanded.get() + n);
        self.expanded.set(expanded);
        let allowed = |c: u64| l.max_ratio.saturating_mul(c).saturating_add(RATIO_SLACK);
        if !self.in_body.get() {
            self.between.set(self.between.get() + n);
        }
        if expanded > l.max_total {
            Some(Trip::Total)
        } else if expanded > allowed(compressed) {
            Some(Trip::BundleRatio)
        } else if let Some((c0, e0)) = self.entry_start.get()
            && expanded - e0 > allowed(compressed - c0)
        {
            Some(Trip::EntryRatio)
        } else if self.between.get() > MAX_HEADER_BYTES {
            Some(Trip::Headers)
        } else {
            None
        }
    }

    /// Whether a limit stopped the reading: the error to give instead of
    /// whatever the layer above made of the failed read.
    pub fn tripped(&self, path: &Path, entry: &str) -> Option<BundleError> {
        let (path, entry, l) = (path.to_path_buf(), excerpt(entry).to_string(), &self.limits);
        Some(match self.tripped.get()? {
            Trip::Total => BundleError::Expanded { path, entry, max: l.max_total },
            Trip::BundleRatio => BundleError::BundleRatio { path, entry, ratio: l.max_ratio },
            Trip::EntryRatio => BundleError::Ratio { path, entry, ratio: l.max_ratio },
            Trip::Headers => BundleError::Headers { path, entry, max: MAX_HEADER_BYTES },
        })
    }

    /// An I/O error met while reading `entry`, as the bundle error it is.
    pub fn error(&self, path: &Path, entry: &str, e: impl std::fmt::Display) -> BundleError {
        self.tripped(path, entry).unwrap_or_else(|| BundleError::Archive {
            path: path.to_path_buf(),
            reason: format!("reading {}: {}", excerpt(entry), excerpt(&e.to_string())),
        })
    }
}

/// The compressed file, counted as the decompressor pulls it.
pub(crate) struct Counting<R> {
    pub inner: R,
    pub meter: Rc<Meter>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.set(self.meter.compressed.get() + n as u64);
        Ok(n)
    }
}

/// The decompressed stream, stopped at the first limit it breaks.
pub(crate) struct Guard<R> {
    pub inner: R,
    pub meter: Rc<Meter>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.tripped.get().is_some() {
            return Err(io::Error::other("bundle limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        if let Some(trip) = self.meter.check(n as u64) {
            self.meter.tripped.set(Some(trip));
            return Err(io::Error::other("bundle limit exceeded"));
        }
        Ok(n)
    }
}

/// Where a read happens: the bundle, the entry and the reading's counters,
/// so a parser streaming an entry can tell a limit from bad content.
#[derive(Clone)]
pub struct Site {
    meter: Rc<Meter>,
    path: PathBuf,
    name: String,
}

impl Site {
    pub(crate) fn new(meter: Rc<Meter>, path: &Path, name: &str) -> Site {
        Site { meter, path: path.to_path_buf(), name: name.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limit that stopped the reading, if one did.
    pub fn tripped(&self) -> Option<BundleError> {
        self.meter.tripped(&self.path, &self.name)
    }

    /// The error a failed read of this entry is.
    pub fn error(&self, e: impl std::fmt::Display) -> BundleError {
        self.meter.error(&self.path, &self.name, e)
    }
}

/// The most memory reserved for an entry before its bytes arrive: its size
/// comes from the tar header, which the archive's author wrote.
pub const INITIAL_CAPACITY: u64 = 64 * 1024;

/// The body of one entry, at most its cap (its tar header, checked against
/// the cap before the body is touched, says how long it is; `take` keeps to
/// the cap whatever the tar reader does). Reading it whole, streaming it
/// and leaving it all go through here, so every error names the entry.
pub struct Body<'a> {
    inner: io::Take<&'a mut dyn Read>,
    site: Site,
    size: u64,
    read: u64,
}

impl<'a> Body<'a> {
    pub(crate) fn new(inner: &'a mut dyn Read, site: Site, size: u64) -> Body<'a> {
        Body { inner: inner.take(size.saturating_add(1)), site, size, read: 0 }
    }

    pub fn name(&self) -> &str {
        &self.site.name
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Bytes read so far.
    pub fn consumed(&self) -> u64 {
        self.read
    }

    /// The whole body in memory (the caller chose to, knowing its cap).
    pub fn bytes(&mut self) -> Result<Vec<u8>, BundleError> {
        let mut bytes = Vec::with_capacity(self.size.min(INITIAL_CAPACITY) as usize);
        self.read_to_end(&mut bytes).map_err(|e| self.site.error(e))?;
        Ok(bytes)
    }

    /// Reads what the caller left and checks the body is as long as its
    /// header says.
    pub(crate) fn finish(mut self) -> Result<(), BundleError> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| self.site.error(e))?;
        if self.read != self.size {
            let reason =
                format!("{} is truncated ({} of {} bytes)", excerpt(&self.site.name), self.read, self.size);
            return Err(BundleError::Archive { path: self.site.path, reason });
        }
        Ok(())
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.size {
            // The tar reader gave more than the header said: never trust it.
            return Err(io::Error::other(format!("more than the {} bytes its header declares", self.size)));
        }
        Ok(n)
    }
}

/// A reader that hashes what passes through it (SHA-256, as the manifest
/// lists files), for the entries parsed as they stream.
pub struct Hashing<R> {
    pub inner: R,
    pub hasher: sha2::Sha256,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing { inner, hasher: <sha2::Sha256 as sha2::Digest>::new() }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

/// Streams what is left through the hasher; returns the hex digest of all
/// that passed.
pub fn digest_rest<R: Read>(mut hashing: Hashing<R>) -> io::Result<String> {
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(hex::encode(sha2::Digest::finalize(hashing.hasher)))
}

/// `BufRead` over a body for parsers that read byte by byte (serde_json).
pub fn buffered<R: Read>(r: R) -> io::BufReader<R> {
    io::BufReader::with_capacity(64 * 1024, r)
}

/// Streams `body` through a hasher into `parse`, then hashes what `parse`
/// left: the entry's SHA-256 and what `parse` made of it, without the
/// entry ever being in memory whole.
pub fn stream_hashed<T>(
    body: &mut Body<'_>,
    parse: impl FnOnce(&mut dyn Read, &Site) -> Result<T, BundleError>,
) -> Result<(String, T), BundleError> {
    let site = body.site().clone();
    let mut hashing = Hashing::new(body);
    let parsed = parse(&mut hashing, &site)?;
    let digest = digest_rest(hashing).map_err(|e| site.error(e))?;
    Ok((digest, parsed))
}

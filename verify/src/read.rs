//! Reads a bundle's tar.gz entry by entry, one file in memory at a time, so
//! a bundle of a million records is verified without holding it whole.
//! Only regular files (and directories, skipped) are accepted; links,
//! devices, absolute or `..` paths are refused with the entry's name, and
//! every byte is read under the [`limits`](super::limits): an entry larger
//! than its cap is refused from its header, before its body is touched, and
//! a decompression bomb stops the reading within a few MB.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use flate2::bufread::MultiGzDecoder;

use super::limits::{Body, Cap, Counting, Guard, Limits, Meter, RATIO_SLACK, Site};
use super::report::excerpt;

/// Why a bundle could not be read at all (as opposed to a file in it
/// failing a check, which is a [`super::report::Failure`]). Entry names are
/// the sender's, so they are quoted as excerpts.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable tar.gz bundle: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error("{path}: entry {entry:?} is {kind}, a bundle holds regular files only")]
    EntryType { path: PathBuf, entry: String, kind: String },
    #[error("{path}: entry name {entry:?} is not a relative UTF-8 path inside the bundle")]
    EntryName { path: PathBuf, entry: String },
    #[error("{path}: entry {entry} is {size} bytes, more than the {max} {what}")]
    TooLarge { path: PathBuf, entry: String, size: u64, max: u64, what: &'static str },
    #[error(
        "{path}: the bundle expands to more than {max} bytes (reached in entry {entry}); set CUSTOS_VERIFY_MAX_TOTAL to verify a larger bundle"
    )]
    Expanded { path: PathBuf, entry: String, max: u64 },
    #[error(
        "{path}: entry {entry} expands to more than {ratio} times its compressed size (beyond the first {RATIO_SLACK} bytes): a decompression bomb, not read further"
    )]
    Ratio { path: PathBuf, entry: String, ratio: u64 },
    #[error(
        "{path}: the bundle expands to more than {ratio} times its compressed size (beyond the first {RATIO_SLACK} bytes), reached in entry {entry}: a decompression bomb, not read further"
    )]
    BundleRatio { path: PathBuf, entry: String, ratio: u64 },
    #[error("{path}: the tar headers after entry {entry} are more than {max} bytes")]
    Headers { path: PathBuf, entry: String, max: u64 },
    #[error("{path}: entry {entry}: the row on line {line} is longer than {max} bytes; not read further")]
    RowTooLong { path: PathBuf, entry: String, line: u64, max: u64 },
    #[error("{var}={value:?}: not a positive whole number")]
    Limit { var: &'static str, value: String },
    #[error("{path}: {entry} changed between two reads of the bundle")]
    Changed { path: PathBuf, entry: String },
    #[error("{path} is not a Custos export bundle: it has no manifest.json")]
    NoManifest { path: PathBuf },
    #[error("{path}: manifest.json: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("pinned log key {path}: {reason}")]
    PinnedKey { path: PathBuf, reason: String },
    /// Reading was stopped because checking had already failed; never the
    /// error a caller sees.
    #[error("reading stopped")]
    Stopped,
    #[error("cannot start a thread to read the bundle: {0}")]
    Thread(String),
}

fn archive_err(path: &Path, e: impl std::fmt::Display) -> BundleError {
    BundleError::Archive { path: path.to_path_buf(), reason: excerpt(&e.to_string()).to_string() }
}

/// A safe entry name: relative, no `..`, no empty or `.` components
/// (a leading `./` is dropped).
fn entry_name(raw: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(raw).ok()?;
    let name = name.strip_prefix("./").unwrap_or(name);
    if name.is_empty() || name.starts_with('/') || name.contains('\\') {
        return None;
    }
    let trimmed = name.trim_end_matches('/');
    if trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return None;
    }
    Some(name.to_string())
}

/// Compressed bytes pulled from the file at a time: small, so the
/// compressed count the ratio is checked against stays close to what the
/// decompressor has used.
const COMPRESSED_BUFFER: usize = 32 * 1024;

/// Calls `each(body)` for every regular file of the bundle at `path`, in
/// archive order. `cap(name)` is the most the entry may hold; a larger one
/// is refused from its header. Whatever of the body `each` leaves unread is
/// read (and checked against the header) after it.
pub fn each_entry(
    path: &Path,
    limits: &Limits,
    mut cap: impl FnMut(&str) -> Cap,
    mut each: impl FnMut(&mut Body<'_>) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let file = File::open(path).map_err(|source| BundleError::Open { path: path.to_path_buf(), source })?;
    let meter = Meter::new(*limits);
    let compressed = Counting { inner: file, meter: meter.clone() };
    let gz = MultiGzDecoder::new(BufReader::with_capacity(COMPRESSED_BUFFER, compressed));
    let mut archive = tar::Archive::new(Guard { inner: gz, meter: meter.clone() });
    let entries = archive.entries().map_err(|e| archive_err(path, e))?;
    // The entry before the next header, to name where a limit tripped.
    let mut last = String::from("(none: the first header)");
    let mut seen_any = false;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| meter.tripped(path, &last).unwrap_or_else(|| archive_err(path, e)))?;
        seen_any = true;
        let raw = entry.path_bytes().into_owned();
        let shown = || excerpt(&String::from_utf8_lossy(&raw)).to_string();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            let kind = format!("{kind:?}").to_lowercase();
            return Err(BundleError::EntryType { path: path.to_path_buf(), entry: shown(), kind });
        }
        let name = entry_name(&raw)
            .ok_or_else(|| BundleError::EntryName { path: path.to_path_buf(), entry: shown() })?;
        // The size the tar reader will deliver (a pax header may override the
        // header's own field).
        let size = entry.size();
        let c = cap(&name);
        let too_large = |max, what| {
            let entry = excerpt(&name).to_string();
            Err(BundleError::TooLarge { path: path.to_path_buf(), entry, size, max, what })
        };
        if size > c.max {
            return too_large(c.max, c.what);
        }
        if meter.expanded().saturating_add(size) > limits.max_total {
            let entry = excerpt(&name).to_string();
            return Err(BundleError::Expanded { path: path.to_path_buf(), entry, max: limits.max_total });
        }
        meter.start_body(!c.declared);
        let mut body = Body::new(&mut entry, Site::new(meter.clone(), path, &name), size);
        each(&mut body)?;
        body.finish()?;
        meter.end_body();
        last = name;
    }
    if !seen_any {
        return Err(archive_err(path, "the archive is empty"));
    }
    Ok(())
}

/// Entries handed from the reader to a worker at a time: a record is a few
/// kB and checked in tens of microseconds, so handing them over one by one
/// spent a quarter of the time waking threads.
const BATCH_ENTRIES: usize = 64;
/// ... or fewer, once the batch holds this many bytes.
const BATCH_BYTES: u64 = 1 << 20;

/// A run of consecutive entries: the index of its first, then each name and
/// what the reader made of it.
type Batch<I> = (u64, Vec<(String, I)>);

/// [`each_entry`] with the costly part spread over the machine's cores:
/// one thread reads and decompresses, `read(body)` runs on it and turns each
/// entry into an item (its bytes, or what a parser streaming it made of it),
/// `work(name, item)` runs on every core, and `merge(name, result)` runs on
/// the caller's thread in archive order, so what it builds never depends on
/// scheduling. Entries travel in batches of consecutive ones. The first
/// error (from `merge` or from reading) stops the reading and is returned;
/// entries read before a read error are merged first, as one by one.
pub fn each_entry_parallel<I: Send, T: Send>(
    path: &Path,
    limits: &Limits,
    cap: impl FnMut(&str) -> Cap + Send,
    mut read: impl FnMut(&mut Body<'_>) -> Result<I, BundleError> + Send,
    work: impl Fn(&str, I) -> T + Sync,
    mut merge: impl FnMut(String, T) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Bounded queues: the reader stays at most this many batches ahead.
    let depth = threads * 4;
    std::thread::scope(|s| {
        let (jobs_tx, jobs_rx) = sync_channel::<Batch<I>>(depth);
        let (done_tx, done_rx) = sync_channel::<Batch<T>>(depth);
        let reader = std::thread::Builder::new().name("bundle-read".into()).spawn_scoped(s, move || {
            let mut batch: Batch<I> = (0, Vec::with_capacity(BATCH_ENTRIES));
            let mut bytes_in_batch = 0u64;
            let mut n = 0u64;
            let read = each_entry(path, limits, cap, |body| {
                let item = read(body)?;
                bytes_in_batch += body.consumed();
                batch.1.push((body.name().to_string(), item));
                n += 1;
                if batch.1.len() >= BATCH_ENTRIES || bytes_in_batch >= BATCH_BYTES {
                    let full = std::mem::replace(&mut batch, (n, Vec::with_capacity(BATCH_ENTRIES)));
                    bytes_in_batch = 0;
                    // Every worker gone: the merge stopped on an error.
                    jobs_tx.send(full).map_err(|_| BundleError::Stopped)?;
                }
                Ok(())
            });
            if !batch.1.is_empty() && !matches!(read, Err(BundleError::Stopped)) {
                // The last entries, also those read before a read error.
                let _ = jobs_tx.send(batch);
            }
            read
        });
        let reader = reader.map_err(|e| BundleError::Thread(e.to_string()))?;
        // Only the workers hold the queue, so when they are gone the
        // reader's next send fails instead of blocking.
        let jobs_rx: Arc<Mutex<Receiver<Batch<I>>>> = Arc::new(Mutex::new(jobs_rx));
        for _ in 0..threads {
            let (jobs_rx, done_tx, work) = (Arc::clone(&jobs_rx), done_tx.clone(), &work);
            let worker = std::thread::Builder::new().name("bundle-check".into()).spawn_scoped(s, move || {
                loop {
                    let job = jobs_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((first, entries)) = job else { break };
                    let out = entries
                        .into_iter()
                        .map(|(name, item)| {
                            let result = work(&name, item);
                            (name, result)
                        })
                        .collect();
                    if done_tx.send((first, out)).is_err() {
                        break;
                    }
                }
            });
            worker.map_err(|e| BundleError::Thread(e.to_string()))?;
        }
        drop((jobs_rx, done_tx));
        let merged = merge_in_order(done_rx, &mut merge);
        let read = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        merged?;
        read
    })
}

/// Merges the workers' batches in archive order; stops at the first error.
/// Dropping the queue stops the workers at their next send and the reader
/// at its next entry.
fn merge_in_order<T>(
    done_rx: Receiver<Batch<T>>,
    merge: &mut impl FnMut(String, T) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let mut pending: BTreeMap<u64, Vec<(String, T)>> = BTreeMap::new();
    let mut next = 0u64;
    for (first, out) in done_rx.iter() {
        pending.insert(first, out);
        while let Some(batch) = pending.remove(&next) {
            next += batch.len() as u64;
            for (name, out) in batch {
                merge(name, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{BundleError, each_entry, each_entry_parallel, entry_name};
    use crate::limits::{Cap, INITIAL_CAPACITY, Limits, MAX_ENTRY_BYTES, MAX_HEADER_BYTES};
    use std::io::Write as _;
    use std::path::{Path, PathBuf};

    fn cap(max: u64) -> impl FnMut(&str) -> Cap {
        move |_| Cap { max, declared: false, what: "bytes accepted here" }
    }

    /// A tar.gz of `n` files `f/<i>` holding `i` as text.
    fn archive(dir: &Path, n: usize) -> PathBuf {
        let path = dir.join("a.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
        let mut tar = tar::Builder::new(gz);
        for i in 0..n {
            let data = i.to_string();
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("f/{i}"), data.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    /// A tar.gz of one file whose header claims `claimed` bytes and which
    /// holds `data`, the archive cut off right after it.
    fn hostile(dir: &Path, claimed: u64, data: &[u8]) -> PathBuf {
        let mut h = tar::Header::new_gnu();
        h.set_path("records/a/1.dsse.json").unwrap();
        h.set_size(claimed);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(data);
        let path = dir.join("hostile.tar.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap();
        path
    }

    /// A tar.gz holding `name` as `size` zero bytes, compressed as it is
    /// written (the test never holds the expanded bytes).
    fn zeros(dir: &Path, name: &str, size: u64) -> PathBuf {
        let path = dir.join("zeros.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
        let mut tar = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        tar.append_data(&mut h, name, std::io::repeat(0).take(size)).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    use std::io::Read as _;

    #[test]
    fn a_hostile_header_size_reserves_no_memory_and_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        // Memory follows the bytes, not the header's claim; a claim under the
        // cap with nothing behind it is truncated, named.
        let path = hostile(dir.path(), MAX_ENTRY_BYTES, b"{}");
        let err = each_entry(&path, &Limits::default(), cap(MAX_ENTRY_BYTES), |body| {
            let bytes = body.bytes()?;
            assert!(bytes.capacity() as u64 <= INITIAL_CAPACITY, "reserved {} bytes", bytes.capacity());
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, BundleError::Archive { .. }), "{err}");
        assert!(
            err.to_string().contains("records/a/1.dsse.json is truncated (2 of 1073741824 bytes)"),
            "{err}"
        );
        // A claim over the cap: refused before reading, with the cap.
        let path = hostile(dir.path(), 1 << 40, b"{}");
        let err =
            each_entry(&path, &Limits::default(), cap(MAX_ENTRY_BYTES), |_| panic!("read")).unwrap_err();
        assert!(
            matches!(&err, BundleError::TooLarge { entry, size, max, .. }
                if entry == "records/a/1.dsse.json" && *size == 1 << 40 && *max == MAX_ENTRY_BYTES),
            "{err}"
        );
        assert!(
            err.to_string().contains("is 1099511627776 bytes, more than the 1073741824 bytes accepted here"),
            "{err}"
        );
    }

    #[test]
    fn a_decompression_bomb_stops_within_a_few_mb() {
        let dir = tempfile::tempdir().unwrap();
        let path = zeros(dir.path(), "evidence.csv", 256 << 20);
        let mut read = 0u64;
        let err = each_entry(&path, &Limits::default(), cap(MAX_ENTRY_BYTES), |body| {
            let mut buf = vec![0; 64 * 1024];
            loop {
                match body.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => read += n as u64,
                    Err(e) => return Err(body.site().error(e)),
                }
            }
        })
        .unwrap_err();
        assert!(
            matches!(&err, BundleError::Ratio { entry, ratio: 100, .. } if entry == "evidence.csv"),
            "{err}"
        );
        assert!(read < 4 << 20, "read {read} bytes of the bomb");
        // Declared (its ratio not watched), the bundle's ratio still holds.
        let declared = |_: &str| Cap::declared(256 << 20);
        let err = each_entry(&path, &Limits::default(), declared, |_| Ok(())).unwrap_err();
        assert!(matches!(err, BundleError::BundleRatio { ratio: 100, .. }), "{err}");
        // The total, from the header before any byte of the body.
        let small = Limits { max_total: 1 << 20, ..Limits::default() };
        let err = each_entry(&path, &small, cap(MAX_ENTRY_BYTES), |_| panic!("read")).unwrap_err();
        assert!(matches!(&err, BundleError::Expanded { max, .. } if *max == 1 << 20), "{err}");
    }

    #[test]
    fn long_names_are_bounded_too() {
        // A GNU long name is read whole by the tar reader, before the entry.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
        let mut tar = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        let name = "a/".repeat(MAX_HEADER_BYTES as usize) + "b";
        tar.append_data(&mut h, &name, &b"{}"[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let err = each_entry(&path, &Limits::default(), cap(MAX_ENTRY_BYTES), |_| Ok(())).unwrap_err();
        assert!(matches!(err, BundleError::Headers { .. }), "{err}");
    }

    #[test]
    fn entry_names_stay_inside_the_bundle() {
        assert_eq!(entry_name(b"./records/a/1.dsse.json").as_deref(), Some("records/a/1.dsse.json"));
        for bad in [&b"/etc/passwd"[..], b"../x", b"records/../../x", b"a//b", b"", b"\xff"] {
            assert_eq!(entry_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parallel_reading_merges_in_archive_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = archive(dir.path(), 3000);
        let mut serial = Vec::new();
        each_entry(&path, &Limits::default(), cap(64), |body| {
            serial.push(body.name().to_string());
            Ok(())
        })
        .unwrap();
        let mut merged = Vec::new();
        each_entry_parallel(
            &path,
            &Limits::default(),
            cap(64),
            // Every other file unread: its item is None.
            |body| {
                let wanted = body.name().ends_with(['0', '2', '4', '6', '8']);
                Ok(if wanted { Some(body.bytes()?) } else { None })
            },
            |name, bytes| {
                // Uneven work, so results arrive out of order.
                if name.ends_with("00") {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                bytes.map(|b| String::from_utf8(b).unwrap())
            },
            |name, text| {
                merged.push((name, text));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(merged.len(), 3000);
        for (i, ((name, text), serial_name)) in merged.iter().zip(&serial).enumerate() {
            assert_eq!(name, serial_name);
            assert_eq!(name, &format!("f/{i}"));
            assert_eq!(text.as_deref(), (i % 2 == 0).then(|| i.to_string()).as_deref(), "{name}");
        }
    }

    #[test]
    fn parallel_reading_stops_at_the_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = archive(dir.path(), 20_000);
        // A failing merge stops the reading (no hang on the full queues) and
        // its error, not the reader's, comes back.
        let mut merged = 0;
        let err = each_entry_parallel(
            &path,
            &Limits::default(),
            cap(64),
            |body| body.bytes(),
            |name, _| name.to_string(),
            |name, _| {
                merged += 1;
                if name == "f/10" {
                    return Err(BundleError::Changed { path: PathBuf::from("x"), entry: name });
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert!(matches!(&err, BundleError::Changed { entry, .. } if entry == "f/10"), "{err}");
        assert_eq!(merged, 11, "nothing merged after the error");
        // A truncated archive is the reader's error.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err =
            each_entry_parallel(&path, &Limits::default(), cap(64), |_| Ok(()), |_, _| (), |_, _| Ok(()))
                .unwrap_err();
        assert!(matches!(err, BundleError::Archive { .. }), "{err}");
    }
}

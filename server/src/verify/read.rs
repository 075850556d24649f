//! Reads a bundle's tar.gz entry by entry, one file in memory at a time, so
//! a bundle of a million records is verified without holding it whole.
//! Only regular files (and directories, skipped) are accepted; links,
//! devices, absolute or `..` paths and oversized entries are refused with
//! the entry's name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use flate2::read::MultiGzDecoder;

/// Largest single file read from a bundle (the CSV of a large fleet is the
/// biggest; a record is at most a few hundred kB).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// The most memory reserved for an entry before its bytes arrive: its size
/// comes from the tar header, which the archive's author wrote.
const INITIAL_CAPACITY: u64 = 64 * 1024;

/// Why a bundle could not be read at all (as opposed to a file in it
/// failing a check, which is a [`super::report::Failure`]).
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
    #[error("{path}: entry {entry} is {size} bytes, more than the {max} accepted")]
    TooLarge { path: PathBuf, entry: String, size: u64, max: u64 },
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
    BundleError::Archive { path: path.to_path_buf(), reason: e.to_string() }
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

/// Calls `each(name, bytes)` for every regular file of the bundle at
/// `path`, in archive order. `wanted(name)` decides whether the bytes are
/// read (otherwise `each` gets `None` and the entry is skipped, undecoded).
pub fn each_entry(
    path: &Path,
    mut wanted: impl FnMut(&str) -> bool,
    mut each: impl FnMut(&str, Option<Vec<u8>>) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let file = File::open(path).map_err(|source| BundleError::Open { path: path.to_path_buf(), source })?;
    let mut archive = tar::Archive::new(MultiGzDecoder::new(BufReader::new(file)));
    let entries = archive.entries().map_err(|e| archive_err(path, e))?;
    let mut seen_any = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(path, e))?;
        seen_any = true;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            let kind = format!("{kind:?}").to_lowercase();
            return Err(BundleError::EntryType { path: path.to_path_buf(), entry: shown, kind });
        }
        let name = entry_name(&raw)
            .ok_or_else(|| BundleError::EntryName { path: path.to_path_buf(), entry: shown })?;
        let size = entry.header().size().map_err(|e| archive_err(path, e))?;
        if size > MAX_ENTRY_BYTES {
            return Err(BundleError::TooLarge {
                path: path.to_path_buf(),
                entry: name,
                size,
                max: MAX_ENTRY_BYTES,
            });
        }
        if !wanted(&name) {
            each(&name, None)?;
            continue;
        }
        let bytes =
            read_body(&mut entry, size).map_err(|e| archive_err(path, format!("reading {name}: {e}")))?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            let size = bytes.len() as u64;
            return Err(BundleError::TooLarge {
                path: path.to_path_buf(),
                entry: name,
                size,
                max: MAX_ENTRY_BYTES,
            });
        }
        if bytes.len() as u64 != size {
            return Err(archive_err(path, format!("{name} is truncated ({} of {size} bytes)", bytes.len())));
        }
        each(&name, Some(bytes))?;
    }
    if !seen_any {
        return Err(archive_err(path, "the archive is empty"));
    }
    Ok(())
}

/// Reads an entry's body, which its header says is `size` bytes: memory
/// grows as bytes arrive (at most [`INITIAL_CAPACITY`] reserved up front,
/// whatever the header claims) and reading stops just past
/// [`MAX_ENTRY_BYTES`]. The caller compares the length with `size`.
fn read_body(body: impl Read, size: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size.min(INITIAL_CAPACITY) as usize);
    body.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Entries handed from the reader to a worker at a time: a record is a few
/// kB and checked in tens of microseconds, so handing them over one by one
/// spent a quarter of the time waking threads.
const BATCH_ENTRIES: usize = 64;
/// ... or fewer, once the batch holds this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// A run of consecutive entries: the index of its first, then each name and body.
type Batch = (u64, Vec<(String, Option<Vec<u8>>)>);

/// [`each_entry`] with the costly part spread over the machine's cores:
/// one thread reads and decompresses, `work(name, bytes)` runs on every
/// core, and `merge(name, result)` runs on the caller's thread in archive
/// order, so what it builds never depends on scheduling. Entries travel in
/// batches of consecutive ones. The first error (from `merge` or from
/// reading) stops the reading and is returned; entries read before a read
/// error are merged first, as one by one.
pub fn each_entry_parallel<T: Send>(
    path: &Path,
    wanted: impl FnMut(&str) -> bool + Send,
    work: impl Fn(&str, Option<Vec<u8>>) -> T + Sync,
    mut merge: impl FnMut(String, T) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Bounded queues: the reader stays at most this many batches ahead.
    let depth = threads * 4;
    std::thread::scope(|s| {
        let (jobs_tx, jobs_rx) = sync_channel::<Batch>(depth);
        let (done_tx, done_rx) = sync_channel::<(u64, Vec<(String, T)>)>(depth);
        let reader = std::thread::Builder::new().name("bundle-read".into()).spawn_scoped(s, move || {
            let mut batch: Batch = (0, Vec::with_capacity(BATCH_ENTRIES));
            let mut bytes_in_batch = 0usize;
            let mut n = 0u64;
            let read = each_entry(path, wanted, |name, bytes| {
                bytes_in_batch += bytes.as_ref().map_or(0, Vec::len);
                batch.1.push((name.to_string(), bytes));
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
        let jobs_rx: Arc<Mutex<Receiver<Batch>>> = Arc::new(Mutex::new(jobs_rx));
        for _ in 0..threads {
            let (jobs_rx, done_tx, work) = (Arc::clone(&jobs_rx), done_tx.clone(), &work);
            let worker = std::thread::Builder::new().name("bundle-check".into()).spawn_scoped(s, move || {
                loop {
                    let job = jobs_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((first, entries)) = job else { break };
                    let out = entries
                        .into_iter()
                        .map(|(name, bytes)| {
                            let result = work(&name, bytes);
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
        let mut pending: BTreeMap<u64, Vec<(String, T)>> = BTreeMap::new();
        let mut next = 0u64;
        let mut merged = Ok(());
        'results: for (first, out) in done_rx.iter() {
            pending.insert(first, out);
            while let Some(batch) = pending.remove(&next) {
                next += batch.len() as u64;
                for (name, out) in batch {
                    merged = merge(name, out);
                    if merged.is_err() {
                        break 'results;
                    }
                }
            }
        }
        // Workers stop at their next send, the reader at its next entry.
        drop(done_rx);
        let read = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        merged?;
        read
    })
}

#[cfg(test)]
mod tests {
    use super::{
        BundleError, INITIAL_CAPACITY, MAX_ENTRY_BYTES, each_entry, each_entry_parallel, entry_name,
        read_body,
    };
    use std::path::{Path, PathBuf};

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
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap();
        path
    }

    #[test]
    fn a_hostile_header_size_reserves_no_memory_and_is_refused_by_name() {
        // Memory follows the bytes, not the header's claim.
        let body = read_body(&b"{}"[..], MAX_ENTRY_BYTES).unwrap();
        assert_eq!(body, b"{}");
        assert!(body.capacity() as u64 <= INITIAL_CAPACITY, "reserved {} bytes", body.capacity());
        // A claim under the limit with nothing behind it: truncated, named.
        let dir = tempfile::tempdir().unwrap();
        let path = hostile(dir.path(), MAX_ENTRY_BYTES, b"{}");
        let err = each_entry(&path, |_| true, |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, BundleError::Archive { .. }), "{err}");
        assert!(err.to_string().contains("records/a/1.dsse.json"), "{err}");
        // A claim over the limit: refused before reading, with the limit.
        let path = hostile(dir.path(), 1 << 40, b"{}");
        let err = each_entry(&path, |_| true, |_, _| Ok(())).unwrap_err();
        assert!(
            matches!(&err, BundleError::TooLarge { entry, size, max, .. }
                if entry == "records/a/1.dsse.json" && *size == 1 << 40 && *max == MAX_ENTRY_BYTES),
            "{err}"
        );
        assert!(
            err.to_string().contains("is 1099511627776 bytes, more than the 1073741824 accepted"),
            "{err}"
        );
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
        each_entry(
            &path,
            |_| true,
            |name, bytes| {
                serial.push((name.to_string(), bytes));
                Ok(())
            },
        )
        .unwrap();
        let mut merged = Vec::new();
        each_entry_parallel(
            &path,
            // Every other file unread: `work` gets None for those.
            |name| name.ends_with(['0', '2', '4', '6', '8']),
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
        for (i, ((name, text), (serial_name, _))) in merged.iter().zip(&serial).enumerate() {
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
            |_| true,
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
        let err = each_entry_parallel(&path, |_| true, |_, _| (), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, BundleError::Archive { .. }), "{err}");
    }
}

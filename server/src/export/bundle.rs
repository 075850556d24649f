//! Writes a bundle: a gzip-compressed tar whose every file's SHA-256 goes
//! into the manifest, which is written last. The tar is written to a
//! temporary file next to the target and renamed over it only once it is
//! complete, so a failed export never leaves a half bundle under the name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::ExportError;
use custos_verify::bundle::{FileEntry, MANIFEST, Manifest};

pub struct BundleWriter {
    tar: tar::Builder<GzEncoder<BufWriter<File>>>,
    files: Vec<FileEntry>,
    temp: PathBuf,
    out: PathBuf,
    mtime: u64,
}

impl BundleWriter {
    /// Starts a bundle that will be `out`; `mtime` (Unix seconds) is every entry's time.
    pub fn create(out: &Path, mtime: i64) -> Result<BundleWriter, ExportError> {
        let name = out
            .file_name()
            .ok_or_else(|| ExportError::Invalid(format!("{}: not a file name", out.display())))?;
        let mut temp_name = name.to_os_string();
        temp_name.push(".partial");
        let temp = out.with_file_name(temp_name);
        let file = File::create(&temp).map_err(|source| ExportError::Write { path: temp.clone(), source })?;
        // Level 1: compression dominates an export's time; the JSON still
        // shrinks about threefold.
        let gz = GzEncoder::new(BufWriter::new(file), Compression::fast());
        Ok(BundleWriter {
            tar: tar::Builder::new(gz),
            files: Vec::new(),
            temp,
            out: out.to_path_buf(),
            mtime: mtime.max(0) as u64,
        })
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
        move |source| ExportError::Write { path: self.temp.clone(), source }
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), ExportError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        let result = self.tar.append_data(&mut header, path, data);
        result.map_err(self.io())
    }

    /// Adds a file and notes its digest for the manifest.
    pub fn add(&mut self, path: &str, data: &[u8]) -> Result<(), ExportError> {
        self.append(path, data)?;
        self.files.push(FileEntry {
            path: path.to_string(),
            sha256: hex::encode(Sha256::digest(data)),
            size: data.len() as u64,
        });
        Ok(())
    }

    /// Writes the manifest (with the files added so far), completes the
    /// archive and moves it into place. Returns the manifest as written and
    /// the bundle's size in bytes.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<(Manifest, u64), ExportError> {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.files = std::mem::take(&mut self.files);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ExportError::Invalid(format!("manifest: {e}")))?;
        self.append(MANIFEST, &json)?;
        let temp = self.temp.clone();
        let io = |source| ExportError::Write { path: temp.clone(), source };
        let gz = self.tar.into_inner().map_err(io)?;
        let mut buf = gz.finish().map_err(io)?;
        buf.flush().map_err(io)?;
        let file = buf.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        std::fs::rename(&self.temp, &self.out)
            .map_err(|source| ExportError::Write { path: self.out.clone(), source })?;
        Ok((manifest, size))
    }

    /// Removes the partial file after a failure.
    pub fn abandon(self) {
        let temp = self.temp.clone();
        drop(self.tar);
        let _ = std::fs::remove_file(temp);
    }
}

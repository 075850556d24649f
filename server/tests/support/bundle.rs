//! Reading, editing and rewriting export bundles in tests: what a forger
//! with the archive in hand can do.

use std::io::{Read as _, Write as _};
use std::path::Path;

use custos_verify::bundle::{self as format, Manifest};
use sha2::{Digest, Sha256};

/// A bundle's files, in archive order.
pub fn read_bundle(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut gz = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut gz).unwrap();
    let mut archive = tar::Archive::new(gz.as_slice());
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        out.push((name, bytes));
    }
    out
}

pub fn write_bundle(path: &Path, files: &[(String, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

pub fn manifest_of(files: &[(String, Vec<u8>)]) -> Manifest {
    serde_json::from_slice(&files.iter().find(|(n, _)| n == format::MANIFEST).unwrap().1).unwrap()
}

pub fn get<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not in bundle")).1
}

/// Rewrites the manifest's file list to match `files`: what a forger who
/// also edits the manifest would do.
pub fn reseal(files: &mut [(String, Vec<u8>)]) {
    let mut m = manifest_of(files);
    m.files = files
        .iter()
        .filter(|(n, _)| n != format::MANIFEST)
        .map(|(n, b)| format::FileEntry {
            path: n.clone(),
            sha256: hex::encode(Sha256::digest(b)),
            size: b.len() as u64,
        })
        .collect();
    m.files.sort_by(|a, b| a.path.cmp(&b.path));
    let json = serde_json::to_vec_pretty(&m).unwrap();
    files.iter_mut().find(|(n, _)| n == format::MANIFEST).unwrap().1 = json;
}

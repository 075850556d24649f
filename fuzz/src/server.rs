//! Fuzz targets for what the server reads from files: export bundles (the
//! offline verifier) and OSCAL catalogs and mapping collections.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A gzip member holding `data` in stored (uncompressed) deflate blocks, so
/// that the fuzzer's mutations of a tar reach the bundle reader intact.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn verifier_key(seed: &[u8; 32]) -> custos_verify::tlog::VerifierKey {
    custos_verify::tlog::VerifierKey::new(LOG_ORIGIN, SigningKey::from_bytes(seed).verifying_key())
        .unwrap_or_else(|e| panic!("fuzz log key: {e}"))
}

/// `custos_verify::verify_bundle` (`custos-verify`) on a bundle file: the
/// input's first byte chooses whether the rest is a tar (wrapped in gzip
/// here, byte 0 even) or the whole file (odd). Asserts: the report is the
/// same on every run (the reading is spread over threads); without a
/// pinned key, or pinned to a key that signed nothing, it is never
/// VERIFIED; whether the bundle reads at all and whether it is consistent
/// do not depend on which (same) key is trusted.
pub fn bundle_verify(data: &[u8]) {
    use custos_verify::{Outcome, TrustedKey, verify_bundle};
    let Some((&mode, rest)) = data.split_first() else { return };
    let file = if mode % 2 == 0 { gzip_stored(rest) } else { rest.to_vec() };
    // One file per call: `cargo test` replays inputs on several threads.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("custos-fuzz-bundle-{}-{n}.tar.gz", std::process::id()));
    if let Err(e) = std::fs::write(&path, &file) {
        panic!("{}: {e}", path.display());
    }
    let pinned = verifier_key(&LOG_KEY);
    let first = verify_bundle(&path, Some(&pinned));
    let second = verify_bundle(&path, Some(&pinned));
    assert_eq!(format!("{first:?}"), format!("{second:?}"), "two runs on one bundle disagree");
    let own = verify_bundle(&path, None);
    assert_eq!(first.is_ok(), own.is_ok(), "readable with one key, not with the other: {first:?} {own:?}");
    if let Ok(r) = &own {
        assert_ne!(r.outcome(), Outcome::Verified, "VERIFIED without a pinned key");
        if let (Ok(p), TrustedKey::Bundle(k)) = (&first, &r.trusted)
            && *k == pinned.to_string()
        {
            assert_eq!(p.consistent(), r.consistent(), "the same key pinned and the bundle's disagree");
        }
    }
    if first.as_ref().is_ok_and(|r| r.outcome() == Outcome::Verified) {
        let stranger = verify_bundle(&path, Some(&verifier_key(&STRANGER_KEY)));
        assert!(
            stranger.as_ref().is_ok_and(|r| r.outcome() != Outcome::Verified),
            "VERIFIED against a key that signed nothing: {stranger:?}"
        );
    }
    let _ = std::fs::remove_file(&path);
}

// ---- server: OSCAL catalogs and mapping collections ----------------------------

/// A small catalog of our own, imported as `own:1`: the target of the
/// mapping collections read.
const OWN_CATALOG: &str = r#"{"catalog": {"uuid": "7d5c9b1e-2f7a-4a55-9d0e-3c1f0b6a8e21",
  "metadata": {"title": "Fuzz catalog", "version": "1", "oscal-version": "1.1.2"},
  "groups": [{"id": "ep", "title": "Endpoints", "controls": [
    {"id": "ep-net-1", "title": "Host firewall", "controls": [{"id": "ep-net-1.1", "title": "Default deny"}]},
    {"id": "ep-data-1", "title": "Disk encryption"}]}],
  "controls": [{"id": "gov-1", "title": "Policy"}]}}"#;

/// A mapping collection from ISO/IEC 27001:2022 onto the catalog read.
const MAPPING: &str = r#"{"mapping-collection": {"uuid": "c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f",
  "metadata": {"title": "ISO to fuzz", "version": "1", "oscal-version": "1.2.2"},
  "mappings": [{"source-resource": {"href": "iso.json"}, "target-resource": {"href": "fuzz.json"},
    "maps": [{"relationship": "subset-of", "sources": [{"id-ref": "8.20"}, {"id-ref": "5.15"}],
              "targets": [{"id-ref": "ep-net-1"}, {"id-ref": "AC-1"}, {"id-ref": "gov-1"}]},
             {"relationship": "equivalent-to", "sources": [{"id-ref": "A.8.24"}],
              "targets": [{"id-ref": "ep-data-1"}]}]}]}}"#;

struct OscalBase {
    builtin: custos_server::compliance::catalog::Catalog,
    own: custos_server::compliance::oscal::OscalCatalog,
    with_own: custos_server::compliance::catalog::Catalog,
    mapping: custos_server::compliance::oscal::OscalMappingCollection,
}

fn oscal_base() -> &'static OscalBase {
    use custos_server::compliance::catalog::Catalog;
    use custos_server::compliance::oscal::{parse_catalog, parse_mapping_collection};
    static BASE: OnceLock<OscalBase> = OnceLock::new();
    BASE.get_or_init(|| {
        let builtin = Catalog::builtin().unwrap_or_else(|e| panic!("built-in catalog: {e}"));
        let own =
            parse_catalog(Path::new("own.json"), OWN_CATALOG.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let with_own = builtin.clone().with_oscal("own:1", "Own", &own).unwrap_or_else(|e| panic!("{e}"));
        let mapping = parse_mapping_collection(Path::new("m.json"), MAPPING.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        OscalBase { builtin, own, with_own, mapping }
    })
}

/// Applies `mapping` from ISO/IEC 27001:2022 to `target` as
/// `custos-server catalog map` does. Asserts: the rows derived are ones
/// the catalog accepts, each for a target control it has; the targets
/// reported dangling are ones the OSCAL catalog lacks.
fn apply_mapping(
    catalog: &custos_server::compliance::catalog::Catalog,
    mapping: &custos_server::compliance::oscal::OscalMapping,
    target: &str,
    target_oscal: &custos_server::compliance::oscal::OscalCatalog,
    label: &str,
) {
    let derived =
        custos_server::compliance::mapping_import::derive(catalog, mapping, "iso27001:2022", target, label);
    for row in &derived.rows {
        assert!(row.control.starts_with(&format!("{target}/")), "row outside the target: {row:?}");
        assert!(catalog.control(&row.control).is_some(), "row for an unknown control: {row:?}");
    }
    let dangling = custos_server::compliance::oscal::dangling_targets(mapping, target_oscal);
    for d in &derived.dangling {
        assert!(dangling.contains(d), "{d} reported dangling, but the catalog has it");
    }
    if let Err(e) = catalog.clone().with_mappings(derived.rows.clone(), label) {
        panic!("derived rows refused: {e}: {:?}", derived.rows);
    }
}

/// `oscal::parse_catalog` and `oscal::parse_mapping_collection` (what
/// `custos-server catalog import` / `catalog map` read), then
/// `Catalog::with_oscal` and `mapping_import::derive` as the import does.
/// Asserts: re-formatting the JSON changes neither result; an accepted
/// catalog has unique token ids and a supported version, and loads into the
/// built-in catalog with every control found under the framework; mappings
/// onto it (or from a collection read onto our own catalog) derive rows the
/// catalog accepts.
pub fn oscal_import(data: &[u8]) {
    use custos_server::compliance::oscal::{OscalError, parse_catalog, parse_mapping_collection};
    let file = Path::new("fuzz.json");
    let catalog = parse_catalog(file, data);
    let collection = parse_mapping_collection(file, data);
    // A key twice in one object is refused here, while re-printing keeps the last.
    fn duplicate(e: Option<&OscalError>) -> bool {
        let Some(OscalError::Json { message, .. }) = e else { return false };
        message.starts_with("duplicate field")
    }
    let text = std::str::from_utf8(data)
        .ok()
        .filter(|_| !duplicate(catalog.as_ref().err()) && !duplicate(collection.as_ref().err()));
    if let Some(pretty) = text.and_then(reformatted) {
        assert_same(&parse_catalog(file, pretty.as_bytes()), &catalog, "formatting changed the catalog");
        let again = parse_mapping_collection(file, pretty.as_bytes());
        assert_same(&again, &collection, "formatting changed the collection");
    }
    let base = oscal_base();
    if let Ok(c) = &catalog {
        let mut seen = std::collections::HashSet::new();
        for x in &c.controls {
            assert!(seen.insert(&x.id), "control {} twice", x.id);
            assert!(!x.id.is_empty() && !x.id.contains(['/', ' ']), "control id {:?}", x.id);
        }
        assert!(
            ["1.0.", "1.1.", "1.2."].iter().any(|p| c.oscal_version.starts_with(p)),
            "{}",
            c.oscal_version
        );
        let loaded = base
            .builtin
            .clone()
            .with_oscal("fuzz:1", &c.title, c)
            .unwrap_or_else(|e| panic!("a catalog that parses does not load: {e}"));
        for x in &c.controls {
            assert!(loaded.control(&format!("fuzz:1/{}", x.id)).is_some(), "{} not loaded", x.id);
        }
        for m in &base.mapping.mappings {
            apply_mapping(&loaded, m, "fuzz:1", c, "ISO to fuzz 1");
        }
    }
    if let Ok(m) = &collection {
        let label = format!("{} {}", m.title, m.version).split_whitespace().collect::<Vec<_>>().join(" ");
        for mapping in &m.mappings {
            apply_mapping(&base.with_own, mapping, "own:1", &base.own, &label);
        }
    }
}

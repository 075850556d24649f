//! Reading OSCAL JSON: catalogs of OSCAL 1.0.x to 1.2.x (groups and nested
//! controls) and mapping collections of OSCAL 1.2.x (control-to-control
//! relationships between two catalogs; the model came with 1.2.0), as
//! published for BSI Grundschutz++ and used by organisations for their own
//! catalogs. Only what the control catalog needs is read (ids,
//! titles, classes, properties, nesting, relationships); everything else in
//! these extensible documents is ignored.
//!
//! Pure: bytes in, data or an error naming the file and the place out.
//! Invariant: a document that is not what it claims (wrong root, unsupported
//! OSCAL version, duplicate or malformed control ids, unknown relationship)
//! is refused whole; nothing half-read is returned.

mod unique_keys;

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::compliance::catalog::Relationship;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OscalError {
    #[error("{file}: not OSCAL JSON: {message}")]
    Json { file: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// One control (or nested control enhancement) of a catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct OscalControl {
    pub id: String,
    pub title: String,
    pub class: Option<String>,
    /// The enclosing control's id for a nested control.
    pub parent: Option<String>,
    /// Ids of the enclosing groups, outermost first.
    pub groups: Vec<String>,
    /// `name = value` properties (e.g. BSI `sec_level`, `alt-identifier`).
    pub props: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OscalCatalog {
    pub uuid: String,
    pub title: String,
    pub version: String,
    pub oscal_version: String,
    pub controls: Vec<OscalControl>,
}

/// One `maps` entry: sources relate to targets.
#[derive(Debug, Clone, PartialEq)]
pub struct OscalMap {
    pub relationship: Relationship,
    pub sources: Vec<String>,
    pub targets: Vec<String>,
}

/// One mapping between a source and a target catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct OscalMapping {
    pub source: String,
    pub target: String,
    pub maps: Vec<OscalMap>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OscalMappingCollection {
    pub uuid: String,
    pub title: String,
    pub version: String,
    pub oscal_version: String,
    pub mappings: Vec<OscalMapping>,
}

// ---- the slice of the OSCAL JSON model that is read -----------------------

#[derive(Deserialize)]
struct Metadata {
    title: String,
    #[serde(default)]
    version: String,
    #[serde(rename = "oscal-version")]
    oscal_version: String,
}

#[derive(Deserialize)]
struct Prop {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct Control {
    id: String,
    title: String,
    class: Option<String>,
    #[serde(default)]
    props: Vec<Prop>,
    #[serde(default)]
    controls: Vec<Control>,
}

#[derive(Deserialize)]
struct Group {
    id: Option<String>,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    controls: Vec<Control>,
}

#[derive(Deserialize)]
struct CatalogBody {
    uuid: String,
    metadata: Metadata,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    controls: Vec<Control>,
}

#[derive(Deserialize)]
struct CatalogDoc {
    catalog: CatalogBody,
}

#[derive(Deserialize)]
struct Resource {
    href: String,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "id-ref")]
    id_ref: String,
}

#[derive(Deserialize)]
struct Map {
    relationship: String,
    #[serde(default)]
    sources: Vec<Item>,
    #[serde(default)]
    targets: Vec<Item>,
}

#[derive(Deserialize)]
struct Mapping {
    #[serde(rename = "source-resource")]
    source: Resource,
    #[serde(rename = "target-resource")]
    target: Resource,
    #[serde(default)]
    maps: Vec<Map>,
}

#[derive(Deserialize)]
struct MappingBody {
    uuid: String,
    metadata: Metadata,
    #[serde(default)]
    mappings: Vec<Mapping>,
}

#[derive(Deserialize)]
struct MappingDoc {
    #[serde(rename = "mapping-collection")]
    collection: MappingBody,
}

// ---------------------------------------------------------------------------

fn name_of(file: &Path) -> String {
    file.display().to_string()
}

/// The OSCAL releases read: 1.0.x to 1.2.x. What a catalog reader uses
/// (ids, titles, classes, control props, nesting of groups and controls) has
/// the same shape in all three; what they changed (1.1: `group` on props,
/// `resource-fragment` on links, metadata `actions`; 1.2: the mapping model)
/// is either ignored or read only where it exists.
const SUPPORTED: &str = "OSCAL 1.0.x to 1.2.x";

/// `MAJOR.MINOR.PATCH` of a release; `None` for anything else (pre-releases
/// such as 1.0.0-rc2 had other shapes).
fn release(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().ok()).flatten()
    });
    let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some((major, minor, patch))
}

/// The document's `oscal-version` is one this reader is made for; mapping
/// collections exist from OSCAL 1.2.0 on.
fn check_version(file: &Path, v: &str, mapping: bool) -> Result<(), OscalError> {
    let invalid = |message: String| Err(OscalError::Invalid { file: name_of(file), message });
    match release(v) {
        None => invalid(format!(
            "OSCAL version {v:?} is not a release version (MAJOR.MINOR.PATCH); supported: {SUPPORTED}"
        )),
        Some((1, 0..=1, _)) if mapping => invalid(format!(
            "OSCAL version {v:?} has no mapping-collection model (it came with OSCAL 1.2.0); supported for mapping collections: OSCAL 1.2.x"
        )),
        Some((1, 0..=2, _)) => Ok(()),
        Some(_) => invalid(format!("OSCAL version {v:?} is not supported; supported: {SUPPORTED}")),
    }
}

/// An OSCAL token: a letter or `_` first, then letters, digits, `_ - .`.
fn is_token(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_alphabetic() || f == '_')
        && c.all(|x| x.is_alphanumeric() || matches!(x, '_' | '-' | '.'))
}

/// Reads `bytes` as a `T`, refusing a key repeated in any object first
/// ([`unique_keys`]).
fn parse<T: serde::de::DeserializeOwned>(file: &Path, bytes: &[u8]) -> Result<T, OscalError> {
    let json = |e: serde_json::Error| OscalError::Json { file: name_of(file), message: e.to_string() };
    unique_keys::check(bytes).map_err(json)?;
    serde_json::from_slice(bytes).map_err(json)
}

/// Reads an OSCAL catalog; `file` names it in errors.
pub fn parse_catalog(file: &Path, bytes: &[u8]) -> Result<OscalCatalog, OscalError> {
    let doc: CatalogDoc = parse(file, bytes)?;
    let body = doc.catalog;
    check_version(file, &body.metadata.oscal_version, false)?;
    let mut controls = Vec::new();
    fn walk_controls(cs: Vec<Control>, parent: Option<&str>, groups: &[String], out: &mut Vec<OscalControl>) {
        for c in cs {
            let id = c.id.clone();
            out.push(OscalControl {
                id: c.id,
                title: c.title.trim().to_string(),
                class: c.class,
                parent: parent.map(str::to_string),
                groups: groups.to_vec(),
                props: c.props.into_iter().map(|p| (p.name, p.value)).collect(),
            });
            walk_controls(c.controls, Some(&id), groups, out);
        }
    }
    fn walk_groups(gs: Vec<Group>, path: &[String], out: &mut Vec<OscalControl>) {
        for g in gs {
            let mut p = path.to_vec();
            p.extend(g.id);
            walk_controls(g.controls, None, &p, out);
            walk_groups(g.groups, &p, out);
        }
    }
    walk_controls(body.controls, None, &[], &mut controls);
    walk_groups(body.groups, &[], &mut controls);
    let invalid = |message: String| OscalError::Invalid { file: name_of(file), message };
    if controls.is_empty() {
        return Err(invalid("the catalog holds no controls".into()));
    }
    let mut seen = HashSet::new();
    for c in &controls {
        if !is_token(&c.id) {
            return Err(invalid(format!("control id {:?} is not an OSCAL token", c.id)));
        }
        if !seen.insert(c.id.as_str()) {
            return Err(invalid(format!("control id {:?} appears twice", c.id)));
        }
    }
    Ok(OscalCatalog {
        uuid: body.uuid,
        title: body.metadata.title,
        version: body.metadata.version,
        oscal_version: body.metadata.oscal_version,
        controls,
    })
}

/// OSCAL relationship names onto the four the mappings use.
pub fn relationship(name: &str) -> Option<Relationship> {
    Some(match name {
        "equivalent-to" | "equal-to" => Relationship::Equal,
        "subset-of" => Relationship::Subset,
        "superset-of" => Relationship::Superset,
        "intersects-with" => Relationship::Intersect,
        _ => return None,
    })
}

/// Reads an OSCAL mapping collection.
pub fn parse_mapping_collection(file: &Path, bytes: &[u8]) -> Result<OscalMappingCollection, OscalError> {
    let doc: MappingDoc = parse(file, bytes)?;
    let body = doc.collection;
    check_version(file, &body.metadata.oscal_version, true)?;
    let mut mappings = Vec::new();
    for m in body.mappings {
        let mut maps = Vec::new();
        for x in m.maps {
            // "no-relationship" says explicitly that nothing maps: nothing to keep.
            if x.relationship == "no-relationship" {
                continue;
            }
            let Some(rel) = relationship(&x.relationship) else {
                return Err(OscalError::Invalid {
                    file: name_of(file),
                    message: format!("unknown relationship {:?}", x.relationship),
                });
            };
            maps.push(OscalMap {
                relationship: rel,
                sources: x.sources.into_iter().map(|i| i.id_ref).collect(),
                targets: x.targets.into_iter().map(|i| i.id_ref).collect(),
            });
        }
        mappings.push(OscalMapping { source: m.source.href, target: m.target.href, maps });
    }
    Ok(OscalMappingCollection {
        uuid: body.uuid,
        title: body.metadata.title,
        version: body.metadata.version,
        oscal_version: body.metadata.oscal_version,
        mappings,
    })
}

/// Target ids of `mapping` that `catalog` does not define (a mapping made
/// against another version of the catalog), sorted and without repeats. An
/// import reports them instead of guessing.
pub fn dangling_targets(mapping: &OscalMapping, catalog: &OscalCatalog) -> Vec<String> {
    let ids: HashSet<&str> = catalog.controls.iter().map(|c| c.id.as_str()).collect();
    let mut out: Vec<String> = mapping
        .maps
        .iter()
        .flat_map(|m| m.targets.iter())
        .filter(|t| !ids.contains(t.as_str()))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small catalog of the project's own: a group with a control and an
    /// enhancement, and a control at the top level.
    const OWN: &str = r#"{"catalog": {
        "uuid": "7d5c9b1e-2f7a-4a55-9d0e-3c1f0b6a8e21",
        "metadata": {"title": "Custos test catalog", "version": "1", "oscal-version": "1.1.2",
                     "last-modified": "2026-11-23T00:00:00Z"},
        "groups": [{"id": "ep", "title": "Endpoints", "controls": [
            {"id": "ep-1", "title": "Host firewall", "class": "requirement",
             "props": [{"name": "level", "value": "basis"}],
             "controls": [{"id": "ep-1.1", "title": "Inbound default deny"}]}]}],
        "controls": [{"id": "gov-1", "title": " Policy "}]
    }}"#;

    #[test]
    fn a_small_catalog_with_nesting() {
        let c = parse_catalog(Path::new("own.json"), OWN.as_bytes()).unwrap();
        assert_eq!((c.title.as_str(), c.oscal_version.as_str()), ("Custos test catalog", "1.1.2"));
        let ids: Vec<&str> = c.controls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["gov-1", "ep-1", "ep-1.1"]);
        assert_eq!(c.controls[0].title, "Policy");
        assert_eq!(c.controls[2].parent.as_deref(), Some("ep-1"));
        assert_eq!(c.controls[2].groups, ["ep"]);
        assert_eq!(c.controls[1].props, [("level".to_string(), "basis".to_string())]);
    }

    #[test]
    fn malformed_catalogs_are_refused_with_the_reason() {
        let f = Path::new("bad.json");
        let e = parse_catalog(f, b"{\"catalog\": {").unwrap_err().to_string();
        assert!(e.starts_with("bad.json: not OSCAL JSON"), "{e}");
        let e = parse_catalog(f, OWN.replace("gov-1", "ep-1").as_bytes()).unwrap_err().to_string();
        assert!(e.contains("\"ep-1\" appears twice"), "{e}");
        let e = parse_catalog(f, OWN.replace("gov-1", "1 gov").as_bytes()).unwrap_err().to_string();
        assert!(e.contains("not an OSCAL token"), "{e}");
        let e = parse_mapping_collection(f, OWN.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("mapping-collection"), "{e}");
    }

    #[test]
    fn relationships_map_onto_the_four_kinds() {
        let doc = r#"{"mapping-collection": {"uuid": "u", "metadata": {"title": "t", "oscal-version": "1.2.0"},
          "mappings": [{"source-resource": {"type": "catalog", "href": "a.json"},
                        "target-resource": {"type": "catalog", "href": "b.json"},
                        "maps": [{"uuid": "m1", "relationship": "subset-of",
                                  "sources": [{"type": "control", "id-ref": "5.1"}],
                                  "targets": [{"type": "control", "id-ref": "GC.1"}, {"type": "control", "id-ref": "GC.2"}]},
                                 {"uuid": "m2", "relationship": "no-relationship", "sources": [], "targets": []}]}]}}"#;
        let m = parse_mapping_collection(Path::new("m.json"), doc.as_bytes()).unwrap();
        assert_eq!(m.mappings[0].maps.len(), 1);
        assert_eq!(m.mappings[0].maps[0].relationship, Relationship::Subset);
        assert_eq!(m.mappings[0].maps[0].targets, ["GC.1", "GC.2"]);
        let bad = doc.replace("subset-of", "kind-of");
        let e = parse_mapping_collection(Path::new("m.json"), bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("unknown relationship \"kind-of\""), "{e}");
    }

    const V1_0: &str = include_str!("../../tests/oscal/catalog-1.0.4.json");
    const V1_2: &str = include_str!("../../tests/oscal/catalog-1.2.2.json");
    const MAPPING_1_2: &str = include_str!("../../tests/oscal/mapping-1.2.2.json");

    fn summary(c: &OscalCatalog) -> Vec<(&str, &str, Option<&str>, Vec<&str>)> {
        c.controls
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.title.as_str(),
                    c.parent.as_deref(),
                    c.groups.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn an_oscal_1_0_catalog_reads_with_its_nesting() {
        // 1.0 shapes: props without `group`, `select` parameters, citations
        // in back-matter, a group without an id, parts with props and parts.
        let c = parse_catalog(Path::new("catalog-1.0.4.json"), V1_0.as_bytes()).unwrap();
        assert_eq!((c.oscal_version.as_str(), c.version.as_str()), ("1.0.4", "2021.1"));
        assert_eq!(
            summary(&c),
            [
                ("gov-1", "Endpoint baseline is reviewed yearly", None, vec![]),
                ("ep-net-1", "Host firewall", None, vec!["ep", "ep-net"]),
                ("ep-net-1.1", "Inbound default deny on IPv6", Some("ep-net-1"), vec!["ep", "ep-net"]),
                // The id-less group adds nothing to the path.
                ("ep-data-1", "Full-disk encryption", None, vec!["ep"]),
            ]
        );
        let fw = &c.controls[1];
        assert_eq!(fw.class.as_deref(), Some("baseline"));
        // The control's own props; the statement part's `priority` is not one of them.
        assert_eq!(
            fw.props,
            [("label".to_string(), "EP-NET-1".to_string()), ("level".to_string(), "basic".to_string())]
        );
    }

    #[test]
    fn an_oscal_1_2_catalog_reads_with_its_nesting() {
        // 1.1+ shapes: props with `group`, `ns` and `remarks`, links with
        // `resource-fragment`, metadata `actions`; three levels of controls.
        let c = parse_catalog(Path::new("catalog-1.2.2.json"), V1_2.as_bytes()).unwrap();
        assert_eq!((c.oscal_version.as_str(), c.title.as_str()), ("1.2.2", "Custos endpoint baseline"));
        assert_eq!(
            summary(&c),
            [
                ("ep-1", "Endpoint inventory is complete", None, vec!["ep"]),
                ("ep-net-1", "Host firewall", None, vec!["ep", "ep-net"]),
                ("ep-net-1.1", "Inbound default deny on IPv6", Some("ep-net-1"), vec!["ep", "ep-net"]),
                (
                    "ep-net-1.1.1",
                    "Router advertisements are filtered",
                    Some("ep-net-1.1"),
                    vec!["ep", "ep-net"]
                ),
            ]
        );
        assert_eq!(
            c.controls[1].props,
            [("label".to_string(), "EP-NET-1".to_string()), ("level".to_string(), "basic".to_string())]
        );
        assert_eq!(c.controls[2].class.as_deref(), Some("enhancement"));
    }

    #[test]
    fn a_release_outside_1_0_to_1_2_is_refused_naming_the_version() {
        let f = Path::new("future.json");
        for v in ["1.0.0", "1.1.3", "1.2.0"] {
            let doc = V1_2.replace("\"oscal-version\": \"1.2.2\"", &format!("\"oscal-version\": \"{v}\""));
            assert_eq!(parse_catalog(f, doc.as_bytes()).unwrap().oscal_version, v);
        }
        for (v, why) in [
            ("0.9.0", "is not supported"),
            ("2.0.0", "is not supported"),
            ("1.3.0", "is not supported"),
            ("1.0.0-rc2", "not a release version"),
            ("1.1", "not a release version"),
            ("1.1.x", "not a release version"),
            ("", "not a release version"),
        ] {
            let doc = V1_2.replace("\"oscal-version\": \"1.2.2\"", &format!("\"oscal-version\": \"{v}\""));
            assert_ne!(doc, V1_2);
            let e = parse_catalog(f, doc.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("future.json: "), "{e}");
            assert!(e.contains(&format!("OSCAL version {v:?}")) && e.contains(why), "{e}");
            assert!(e.contains("supported: OSCAL 1.0.x to 1.2.x"), "{e}");
        }
        // Mapping collections came with 1.2.0.
        let m = parse_mapping_collection(f, MAPPING_1_2.as_bytes()).unwrap();
        assert_eq!(m.oscal_version, "1.2.2");
        for v in ["1.1.2", "1.0.4"] {
            let old = MAPPING_1_2.replace("\"1.2.2\"", &format!("\"{v}\""));
            let e = parse_mapping_collection(f, old.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("no mapping-collection model"), "{e}");
        }
        let e = parse_mapping_collection(f, MAPPING_1_2.replace("\"1.2.2\"", "\"2.0.0\"").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"2.0.0\" is not supported"), "{e}");
    }

    #[test]
    fn our_mapping_collection_reads_without_its_no_relationship_map() {
        let m = parse_mapping_collection(Path::new("m.json"), MAPPING_1_2.as_bytes()).unwrap();
        assert_eq!(m.mappings.len(), 1);
        let x = &m.mappings[0];
        assert_eq!(x.target, "custos-endpoint-baseline.json");
        let maps: Vec<(Relationship, &[String], &[String])> =
            x.maps.iter().map(|m| (m.relationship, m.sources.as_slice(), m.targets.as_slice())).collect();
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].0, Relationship::Subset);
        assert_eq!(
            (maps[0].1, maps[0].2),
            (&["8.20".to_string()][..], &["ep-net-1".to_string(), "ep-net-9".to_string()][..])
        );
        assert_eq!(maps[1].0, Relationship::Equal);
        let cat = parse_catalog(Path::new("c.json"), V1_0.as_bytes()).unwrap();
        assert_eq!(dangling_targets(x, &cat), ["ep-net-9"]);
    }
}

//! Catalogs and mapping collections imported into the data dir: the
//! index of what was imported (`catalogs/index.toml`), the import commands,
//! and loading the catalog the server runs with from them.

use std::path::Path;

use crate::compliance::catalog::Catalog;
use crate::compliance::mapping_import::Derived;
use crate::datadir::DataDir;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io { path: path.to_path_buf(), source }
}

/// The files the catalog is loaded from and reloaded when they change.
pub fn catalog_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let data = DataDir(dir.to_path_buf());
    vec![data.mappings(), data.catalogs().join("index.toml")]
}

/// One imported catalog as listed in `catalogs/index.toml`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ImportedCatalog {
    pub framework: String,
    pub name: String,
    /// File name inside `catalogs/`, the OSCAL document as imported.
    pub file: String,
    pub controls: usize,
}

/// One imported mapping (of an OSCAL mapping collection) as listed in
/// `catalogs/index.toml`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ImportedMapping {
    /// Framework the map's sources belong to, e.g. iso27001:2022.
    pub source: String,
    /// Framework the map's targets belong to (an imported catalog).
    pub target: String,
    /// The mapping's `target-resource` href inside the collection.
    pub target_href: String,
    /// Title and version of the collection.
    pub label: String,
    /// File name inside `catalogs/`, the collection as imported.
    pub file: String,
    /// Check → target rows it gives, targets it leaves without a catalog control.
    pub rows: usize,
    pub dangling: Vec<String>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CatalogIndex {
    #[serde(default)]
    catalog: Vec<ImportedCatalog>,
    #[serde(default)]
    mapping: Vec<ImportedMapping>,
}

/// Writes `catalogs/index.toml` whole or not at all (a temp file renamed
/// over it): a torn index would keep the server from loading its catalog.
fn write_index(dir: &Path, index: &CatalogIndex) -> Result<(), ImportError> {
    let folder = DataDir(dir.to_path_buf()).catalogs();
    let text = toml::to_string(index).map_err(|e| ImportError::Invalid(e.to_string()))?;
    let index_path = folder.join("index.toml");
    let temp = folder.join(".index.toml.new");
    std::fs::write(&temp, text).map_err(io_err(&temp))?;
    std::fs::rename(&temp, &index_path).map_err(io_err(&index_path))
}

/// Applies one stored mapping to `catalog`.
fn apply_mapping(
    catalog: Catalog,
    folder: &Path,
    m: &ImportedMapping,
) -> Result<(Catalog, Derived), ImportError> {
    let path = folder.join(&m.file);
    let bytes = std::fs::read(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    let collection = crate::compliance::oscal::parse_mapping_collection(&path, &bytes)
        .map_err(|e| ImportError::Invalid(e.to_string()))?;
    apply_collection(catalog, &path, &collection, m)
}

/// Applies the mapping of `collection` (read from `path`) that `m` names.
fn apply_collection(
    catalog: Catalog,
    path: &Path,
    collection: &crate::compliance::oscal::OscalMappingCollection,
    m: &ImportedMapping,
) -> Result<(Catalog, Derived), ImportError> {
    let Some(mapping) = collection.mappings.iter().find(|x| href_matches(&x.target, &m.target_href)) else {
        return Err(ImportError::Invalid(format!(
            "{}: no mapping with target {:?} (there are: {})",
            path.display(),
            m.target_href,
            collection.mappings.iter().map(|x| x.target.as_str()).collect::<Vec<_>>().join(", ")
        )));
    };
    let derived =
        crate::compliance::mapping_import::derive(&catalog, mapping, &m.source, &m.target, &m.label);
    let catalog = catalog
        .with_mappings(derived.rows.clone(), &m.label)
        .map_err(|e| ImportError::Invalid(format!("{}: {e}", path.display())))?;
    Ok((catalog, derived))
}

/// A mapping's target href matches when equal or when its file name is.
fn href_matches(href: &str, wanted: &str) -> bool {
    href == wanted || href.rsplit('/').next() == Some(wanted)
}

fn catalog_index(dir: &Path) -> Result<CatalogIndex, ImportError> {
    let path = DataDir(dir.to_path_buf()).catalogs().join("index.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| ImportError::Invalid(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CatalogIndex::default()),
        Err(source) => Err(ImportError::Io { path, source }),
    }
}

/// The built-in catalog with the data dir's `mappings.toml` if there is one
/// (else the built-in mappings), plus every OSCAL catalog and mapping
/// imported into `dir`.
pub fn load_catalog(dir: &Path) -> Result<Catalog, ImportError> {
    let path = DataDir(dir.to_path_buf()).mappings();
    let own =
        crate::datadir::reload::read_optional(&path).map_err(|e| ImportError::Invalid(e.to_string()))?;
    let mut catalog = match own {
        Some(text) => {
            Catalog::with_mapping_file(&path, &text).map_err(|e| ImportError::Invalid(e.to_string()))?
        }
        None => Catalog::builtin().map_err(|e| ImportError::Invalid(format!("built-in catalog: {e}")))?,
    };
    let folder = DataDir(dir.to_path_buf()).catalogs();
    for entry in catalog_index(dir)?.catalog {
        let path = folder.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
        let oscal = crate::compliance::oscal::parse_catalog(&path, &bytes)
            .map_err(|e| ImportError::Invalid(e.to_string()))?;
        catalog = catalog
            .with_oscal(&entry.framework, &entry.name, &oscal)
            .map_err(|e| ImportError::Invalid(format!("{}: {e}", path.display())))?;
    }
    for m in catalog_index(dir)?.mapping {
        catalog = apply_mapping(catalog, &folder, &m)?.0;
    }
    Ok(catalog)
}

/// Validates one mapping of an OSCAL mapping collection against the loaded
/// frameworks and keeps it in `dir`; the server applies it at its next
/// start: the checks that support a source control then support the
/// target controls too. Targets the target catalog lacks are reported and
/// skipped. A file that does not parse, an unknown framework, a collection
/// without the named mapping, one that gives no check a target, or a
/// mapping imported already changes nothing.
pub fn import_mapping(
    dir: &Path,
    file: &Path,
    source: &str,
    target: &str,
    target_href: &str,
) -> Result<ImportedMapping, ImportError> {
    let catalog = load_catalog(dir)?;
    for fw in [source, target] {
        if !catalog.frameworks().iter().any(|f| f == fw) {
            return Err(ImportError::Invalid(format!(
                "framework {fw:?} is not loaded (import its catalog first); loaded: {}",
                catalog.frameworks().join(", ")
            )));
        }
    }
    let bytes = std::fs::read(file).map_err(|source| ImportError::Io { path: file.to_path_buf(), source })?;
    let collection = crate::compliance::oscal::parse_mapping_collection(file, &bytes)
        .map_err(|e| ImportError::Invalid(e.to_string()))?;
    let stored = format!(
        "mapping-{}-{}.json",
        &collection.uuid.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>(),
        target.replace(':', "@")
    );
    let mut index = catalog_index(dir)?;
    if index.mapping.iter().any(|m| m.file == stored) {
        return Err(ImportError::Invalid(format!(
            "{}: this collection's mapping to {target} is imported already (catalogs/{stored})",
            file.display()
        )));
    }
    // The label ends up in every result's mapping version and in each row's
    // rationale, both one line.
    let label = format!("{} {}", collection.title, collection.version)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut entry = ImportedMapping {
        source: source.to_string(),
        target: target.to_string(),
        target_href: target_href.to_string(),
        label,
        file: stored,
        rows: 0,
        dangling: Vec::new(),
    };
    // Checked in memory first: nothing is written for a mapping that would not apply.
    let (_, derived) = apply_collection(catalog, file, &collection, &entry)?;
    if derived.rows.is_empty() {
        return Err(ImportError::Invalid(format!(
            "{}: the mapping gives no check any target control (unknown source ids: {})",
            file.display(),
            derived.unknown_sources.join(", ")
        )));
    }
    entry.rows = derived.rows.len();
    entry.dangling = derived.dangling;
    let folder = DataDir(dir.to_path_buf()).catalogs();
    std::fs::create_dir_all(&folder).map_err(|source| ImportError::Io { path: folder.clone(), source })?;
    let path = folder.join(&entry.file);
    std::fs::write(&path, &bytes).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    index.mapping.push(entry.clone());
    write_index(dir, &index)?;
    Ok(entry)
}

/// Validates an OSCAL catalog and keeps it in `dir` as framework
/// `framework`; the running server reads it at its next start. A file that
/// does not parse, or a framework id already taken, changes nothing.
pub fn import_catalog(dir: &Path, file: &Path, framework: &str) -> Result<ImportedCatalog, ImportError> {
    let bytes = std::fs::read(file).map_err(|source| ImportError::Io { path: file.to_path_buf(), source })?;
    let oscal = crate::compliance::oscal::parse_catalog(file, &bytes)
        .map_err(|e| ImportError::Invalid(e.to_string()))?;
    // The whole catalog must still load with it: same checks as at start.
    let name = oscal.title.clone();
    load_catalog(dir)?
        .with_oscal(framework, &name, &oscal)
        .map_err(|e| ImportError::Invalid(format!("{framework}: {e}")))?;
    let folder = DataDir(dir.to_path_buf()).catalogs();
    std::fs::create_dir_all(&folder).map_err(|source| ImportError::Io { path: folder.clone(), source })?;
    let stored = format!("{}.json", framework.replace(':', "@"));
    let path = folder.join(&stored);
    std::fs::write(&path, &bytes).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    let entry = ImportedCatalog {
        framework: framework.to_string(),
        name,
        file: stored,
        controls: oscal.controls.len(),
    };
    let mut index = catalog_index(dir)?;
    index.catalog.push(entry.clone());
    write_index(dir, &index)?;
    Ok(entry)
}

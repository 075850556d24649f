//! The control catalog and the check → control mappings, loaded from the
//! data files `server/data/catalog.toml` and `server/data/mappings.toml`
//! (embedded at build time) and validated.
//!
//! Invariants: every control id is edition-qualified (`framework/edition`
//! prefix of a known framework), unique, and every mapping resolves to a
//! catalog control and a declared check, once, with a relationship and a
//! one-line rationale that are kept and served. Mapping is data, not code.
//!
//! Frameworks organised in modules (BSI IT-Grundschutz: `SYS.2.1` holds
//! `SYS.2.1.A1` ...) list each module as a `[[module]]` entry and file every
//! requirement under one; a requirement's id extends its module's. Modules
//! are catalog entries, not controls: checks map to requirements, and only
//! requirements are evaluated.
//!
//! ISO/IEC 27001:2013 Annex A is kept as a framework of its own so that
//! auditors who still speak 2013 numbers get an answer: its controls carry
//! no check mappings; each is answered through its 2022 successors, the 2022
//! controls that name it in `predecessors` (ISO/IEC 27002:2022 Annex B).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::risk::{Impact, Likelihood};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CatalogError {
    #[error("catalog data is not valid TOML: {0}")]
    Toml(String),
    #[error("control id {0:?} is not qualified with a known framework (e.g. iso27001:2022/A.8.24)")]
    Unqualified(String),
    #[error("control id {0:?} appears twice")]
    Duplicate(String),
    #[error("catalog entry {0:?} has no title")]
    EmptyTitle(String),
    #[error("framework id {0:?} is not name:edition (lowercase name, e.g. bsi-gspp-kernel:2026-07-29)")]
    FrameworkId(String),
    #[error("framework {0:?} exists already")]
    FrameworkTaken(String),
    #[error("control {control:?} names module {module:?}, which is not a module of the catalog")]
    UnknownModule { control: String, module: String },
    #[error("control {control:?} is filed under module {module:?}; its id must extend the module's id")]
    ModuleMismatch { control: String, module: String },
    #[error("control {0:?} belongs to a framework organised in modules but names no module")]
    Unfiled(String),
    #[error("mapping of check {check:?} names unknown control {control:?}")]
    UnknownControl { check: String, control: String },
    #[error("mapping of check {check:?} names module {module:?}; map the check to the module's requirements")]
    MappedModule { check: String, module: String },
    #[error("mapping names undeclared check {0:?}")]
    UnknownCheck(String),
    #[error(
        "mapping {check:?} → {control:?} has relationship {found:?}; expected equal, subset, superset or intersect"
    )]
    Relationship { check: String, control: String, found: String },
    #[error("mapping {check:?} → {control:?}: the rationale {why}")]
    Rationale { check: String, control: String, why: &'static str },
    #[error("mapping {check:?} → {control:?} appears twice")]
    DuplicateMapping { check: String, control: String },
    #[error("the mapping set's version must not be empty (every evaluation names it)")]
    EmptyVersion,
    #[error(
        "check {check:?} names protection goal {goal:?}; expected confidentiality, integrity or availability"
    )]
    Goal { check: String, goal: String },
    #[error("predecessor id {0:?} must be qualified with iso27001:2013/")]
    Predecessor(String),
    #[error("control {control:?} names predecessor {predecessor:?}, which is not a control of iso27001:2013")]
    UnknownPredecessor { control: String, predecessor: String },
    #[error(
        "control {control:?} names predecessor {predecessor:?}; only controls of a later ISO/IEC 27001 edition have 2013 predecessors"
    )]
    NotLaterEdition { control: String, predecessor: String },
}

/// The ISO/IEC 27001 edition that predecessor ids name.
pub const ISO_2013: &str = "iso27001:2013";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
}

/// A module of a framework organised in modules (a BSI Baustein such as
/// `bsi-grundschutz:2023/NET.3.2` "Firewall"): the requirements naming it
/// are its children. Not evaluated itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub id: String,
    pub title: String,
}

impl Module {
    pub fn framework(&self) -> &str {
        framework_of(&self.id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub group: Option<String>,
    /// The module (catalog entry) this requirement belongs to.
    #[serde(default)]
    pub module: Option<String>,
    /// BSI requirement level: B (Basis), S (Standard), H (erhöht).
    #[serde(default)]
    pub level: Option<String>,
    /// Ids of the controls in the earlier edition (`iso27001:2013/...`) this
    /// control replaces, per the published correspondence.
    #[serde(default)]
    pub predecessors: Vec<String>,
}

impl Control {
    /// The framework part of the id (`iso27001:2022`).
    pub fn framework(&self) -> &str {
        framework_of(&self.id)
    }
}

fn framework_of(id: &str) -> &str {
    id.split_once('/').map_or("", |(f, _)| f)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckInfo {
    pub id: String,
    pub title: String,
    /// What a failure of the check means, used as the risk title.
    pub deviation: String,
    /// BSI 200-3 elementary threats a failure of this check exposes.
    pub threats: Vec<String>,
    pub likelihood: Likelihood,
    pub impact: Impact,
    /// Protection goals a failure threatens (confidentiality, integrity, availability).
    pub goals: Vec<String>,
}

/// What the check measures compared with what the control asks for, read
/// as "the check is a ___ of the control".
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    Equal,
    Subset,
    Superset,
    Intersect,
}

impl Relationship {
    pub fn parse(name: &str) -> Option<Relationship> {
        Some(match name {
            "equal" => Relationship::Equal,
            "subset" => Relationship::Subset,
            "superset" => Relationship::Superset,
            "intersect" => Relationship::Intersect,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Equal => "equal",
            Relationship::Subset => "subset",
            Relationship::Superset => "superset",
            Relationship::Intersect => "intersect",
        }
    }

    /// A passing check shows the whole control met (equal, superset); a
    /// subset or intersect shows only the part the check measures.
    pub fn covers_fully(self) -> bool {
        matches!(self, Relationship::Equal | Relationship::Superset)
    }
}

/// How much of a requirement its mapped checks measure. Evaluation does not
/// use it (a requirement is satisfied when its checks pass); it tells the
/// reader what "satisfied" rests on.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Some check is equal to or a superset of the requirement.
    Full,
    /// Every check measures only part of it (subset or intersect).
    Partial,
}

/// Where a mapping row comes from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A row of the mapping set (`mappings.toml`).
    MappingSet,
    /// A 2013 control answered through its successors (ISO/IEC 27002:2022 Annex B).
    Crosswalk,
    /// Derived from an imported OSCAL mapping collection.
    Imported,
}

/// One check → requirement row as the catalog holds and serves it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckMapping {
    pub check: String,
    pub requirement: String,
    pub relationship: Relationship,
    pub rationale: String,
    pub origin: Origin,
}

/// A mapping row as written (in `mappings.toml`, or derived from an
/// imported collection) before it is validated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub check: String,
    pub control: String,
    pub relationship: String,
    pub rationale: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    framework: Vec<Framework>,
    #[serde(default)]
    module: Vec<Module>,
    control: Vec<Control>,
}

/// `mappings.toml` with the places of the values, so that errors name the
/// line of the offending value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    /// The mapping set's version, named by every evaluation it produces.
    version: Spanned<String>,
    check: Vec<Spanned<CheckInfo>>,
    #[serde(default)]
    mapping: Vec<MappingRow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingRow {
    check: Spanned<String>,
    control: Spanned<String>,
    relationship: Spanned<String>,
    rationale: Spanned<String>,
}

/// The field of a mapping row an error is about.
#[derive(Debug, Clone, Copy)]
enum RowField {
    Check,
    Control,
    Relationship,
    Rationale,
}

/// An error with the byte range of the mapping file it is about, if known.
type Located = (CatalogError, Option<Range<usize>>);

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    mapping_version: String,
    frameworks: Vec<Framework>,
    modules: Vec<Module>,
    controls: Vec<Control>,
    checks: BTreeMap<String, CheckInfo>,
    /// Every mapping row, in the order added.
    mappings: Vec<CheckMapping>,
    by_check: BTreeMap<String, Vec<(String, Relationship)>>,
    by_control: BTreeMap<String, Vec<String>>,
    /// 2013 control id → the controls naming it as predecessor, in catalog order.
    successors: BTreeMap<String, Vec<String>>,
}

/// `name:edition`: lowercase letters, digits and `-`, a colon, then an
/// edition of letters, digits, `.` and `-`.
pub fn is_framework_id(id: &str) -> bool {
    let Some((name, edition)) = id.split_once(':') else { return false };
    !name.is_empty()
        && !edition.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && edition.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// A mapping file that did not load: the file, the line where known, why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct MappingFileError {
    pub path: std::path::PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Why a rationale is unfit, if it is: the API and the reports show it as
/// one line of its own.
fn rationale_fault(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("is empty; say why the check supports the control")
    } else if text.contains(['\n', '\r']) {
        Some("spans more than one line; keep it to one")
    } else {
        None
    }
}

const BUILTIN_CATALOG: &str = include_str!("../data/catalog.toml");
const BUILTIN_MAPPINGS: &str = include_str!("../data/mappings.toml");

impl Catalog {
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Self::from_toml(BUILTIN_CATALOG, BUILTIN_MAPPINGS)
    }

    /// The built-in catalog with an organisation's mapping file (which
    /// replaces the built-in mappings); errors name the file and the line.
    pub fn with_mapping_file(path: &std::path::Path, text: &str) -> Result<Catalog, MappingFileError> {
        Self::load(BUILTIN_CATALOG, text).map_err(|(e, span)| MappingFileError {
            path: path.to_path_buf(),
            line: span.map(|s| line_at(text, s.start)),
            message: match e {
                CatalogError::Toml(m) => m,
                other => other.to_string(),
            },
        })
    }

    pub fn from_toml(catalog: &str, mappings: &str) -> Result<Catalog, CatalogError> {
        Self::load(catalog, mappings).map_err(|(e, _)| e)
    }

    fn load(catalog: &str, mappings: &str) -> Result<Catalog, Located> {
        let c: CatalogFile =
            toml::from_str(catalog).map_err(|e| (CatalogError::Toml(e.to_string()), None))?;
        let m: MappingFile =
            toml::from_str(mappings).map_err(|e| (CatalogError::Toml(e.message().to_string()), e.span()))?;
        let mut cat = Self::validate_catalog(c).map_err(|e| (e, None))?;
        cat.add_mapping_set(m, mappings)?;
        Ok(cat)
    }

    /// The catalog file's frameworks, modules and controls, checked; no
    /// mappings yet.
    fn validate_catalog(c: CatalogFile) -> Result<Catalog, CatalogError> {
        let known: BTreeSet<&str> = c.framework.iter().map(|f| f.id.as_str()).collect();
        let qualified =
            |id: &str| id.split_once('/').is_some_and(|(fw, rest)| known.contains(fw) && !rest.is_empty());
        let mut ids = BTreeSet::new();
        for module in &c.module {
            if !qualified(&module.id) {
                return Err(CatalogError::Unqualified(module.id.clone()));
            }
            if !ids.insert(module.id.clone()) {
                return Err(CatalogError::Duplicate(module.id.clone()));
            }
            if module.title.trim().is_empty() {
                return Err(CatalogError::EmptyTitle(module.id.clone()));
            }
        }
        let modules: BTreeSet<String> = ids.clone();
        let organised: BTreeSet<&str> = c.module.iter().map(Module::framework).collect();
        for control in &c.control {
            if !qualified(&control.id) {
                return Err(CatalogError::Unqualified(control.id.clone()));
            }
            if !ids.insert(control.id.clone()) {
                return Err(CatalogError::Duplicate(control.id.clone()));
            }
            if control.title.trim().is_empty() {
                return Err(CatalogError::EmptyTitle(control.id.clone()));
            }
            match &control.module {
                Some(module) if !modules.contains(module) => {
                    return Err(CatalogError::UnknownModule {
                        control: control.id.clone(),
                        module: module.clone(),
                    });
                }
                // `SYS.2.1.A28` belongs in `SYS.2.1`: a requirement filed
                // under the wrong module is a data error, not a choice.
                Some(module) if !control.id.starts_with(&format!("{module}.")) => {
                    return Err(CatalogError::ModuleMismatch {
                        control: control.id.clone(),
                        module: module.clone(),
                    });
                }
                None if organised.contains(control.framework()) => {
                    return Err(CatalogError::Unfiled(control.id.clone()));
                }
                _ => {}
            }
            if let Some(p) = control.predecessors.iter().find(|p| !is_iso_2013(p)) {
                return Err(CatalogError::Predecessor(p.clone()));
            }
            // Only a later ISO edition replaces 2013 controls, so `successors`
            // never answers with a BSI, CIS or NIST id, nor a 2013 id itself.
            let later_iso = control.framework().starts_with("iso27001:") && control.framework() != ISO_2013;
            if !later_iso && let Some(p) = control.predecessors.first() {
                return Err(CatalogError::NotLaterEdition {
                    control: control.id.clone(),
                    predecessor: p.clone(),
                });
            }
        }
        // Predecessor ids are resolved only when the 2013 edition is loaded: a
        // catalog without it keeps them as plain references.
        let mut successors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if known.contains(ISO_2013) {
            for control in &c.control {
                for p in &control.predecessors {
                    if !ids.contains(p) || modules.contains(p) {
                        return Err(CatalogError::UnknownPredecessor {
                            control: control.id.clone(),
                            predecessor: p.clone(),
                        });
                    }
                    let list = successors.entry(p.clone()).or_default();
                    if !list.contains(&control.id) {
                        list.push(control.id.clone());
                    }
                }
            }
        }
        Ok(Catalog {
            mapping_version: String::new(),
            frameworks: c.framework,
            modules: c.module,
            controls: c.control,
            checks: BTreeMap::new(),
            mappings: Vec::new(),
            by_check: BTreeMap::new(),
            by_control: BTreeMap::new(),
            successors,
        })
    }

    /// Adds the mapping set (checks and rows) and the rows the 2013
    /// crosswalk derives from it. `text` is the file, to place errors.
    fn add_mapping_set(&mut self, m: MappingFile, text: &str) -> Result<(), Located> {
        if m.version.get_ref().trim().is_empty() {
            return Err((CatalogError::EmptyVersion, Some(m.version.span())));
        }
        self.mapping_version = m.version.into_inner();
        for c in m.check {
            let span = c.span();
            let c = c.into_inner();
            if let Some(g) = c.goals.iter().find(|g| !crate::risk::GOALS.contains(&g.as_str())) {
                // The goal's own line inside the check's table.
                let table = text.get(span.clone()).unwrap_or("");
                let place = table
                    .find(&format!("\"{g}\""))
                    .map_or(span.clone(), |o| span.start + o..span.start + o + g.len() + 2);
                return Err((CatalogError::Goal { check: c.id.clone(), goal: g.clone() }, Some(place)));
            }
            self.checks.insert(c.id.clone(), c);
        }
        for row in m.mapping {
            let span = |field| match field {
                RowField::Check => row.check.span(),
                RowField::Control => row.control.span(),
                RowField::Relationship => row.relationship.span(),
                RowField::Rationale => row.rationale.span(),
            };
            let mapping = self
                .checked_row(
                    row.check.get_ref().clone(),
                    row.control.get_ref().clone(),
                    row.relationship.get_ref(),
                    row.rationale.get_ref().clone(),
                    Origin::MappingSet,
                )
                .map_err(|(e, field)| (e, Some(span(field))))?;
            if self.maps(&mapping.check, &mapping.requirement) {
                let (check, control) = (mapping.check, mapping.requirement);
                return Err((
                    CatalogError::DuplicateMapping { check, control },
                    Some(span(RowField::Control)),
                ));
            }
            self.add_row(mapping);
        }
        self.add_crosswalk_rows();
        Ok(())
    }

    /// A 2013 control is assessed through its successors: the checks that
    /// support them support it, as an intersection (the editions regrouped
    /// the controls). No mapping row names a 2013 id directly.
    fn add_crosswalk_rows(&mut self) {
        let mut rows = Vec::new();
        for (old, new) in &self.successors {
            let mut derived: Vec<(&String, Vec<&str>)> = Vec::new();
            for n in new {
                for check in self.by_control.get(n).into_iter().flatten() {
                    match derived.iter_mut().find(|(c, _)| *c == check) {
                        Some((_, via)) => via.push(n),
                        None => derived.push((check, vec![n])),
                    }
                }
            }
            for (check, via) in derived {
                rows.push(CheckMapping {
                    check: check.clone(),
                    requirement: old.clone(),
                    relationship: Relationship::Intersect,
                    rationale: format!(
                        "assessed through {}, which replace{} it per ISO/IEC 27002:2022 Annex B",
                        via.join(" and "),
                        if via.len() == 1 { "s" } else { "" }
                    ),
                    origin: Origin::Crosswalk,
                });
            }
        }
        for row in rows {
            self.add_row(row);
        }
    }

    /// A mapping row checked against the catalog: a declared check, a
    /// requirement (not a module), a known relationship and a one-line
    /// rationale. The error says which field is at fault.
    fn checked_row(
        &self,
        check: String,
        control: String,
        relationship: &str,
        rationale: String,
        origin: Origin,
    ) -> Result<CheckMapping, (CatalogError, RowField)> {
        if !self.checks.contains_key(&check) {
            return Err((CatalogError::UnknownCheck(check), RowField::Check));
        }
        if self.module(&control).is_some() {
            return Err((CatalogError::MappedModule { check, module: control }, RowField::Control));
        }
        if self.control(&control).is_none() {
            return Err((CatalogError::UnknownControl { check, control }, RowField::Control));
        }
        let Some(relationship) = Relationship::parse(relationship) else {
            let found = relationship.to_string();
            return Err((CatalogError::Relationship { check, control, found }, RowField::Relationship));
        };
        if let Some(why) = rationale_fault(&rationale) {
            return Err((CatalogError::Rationale { check, control, why }, RowField::Rationale));
        }
        Ok(CheckMapping { check, requirement: control, relationship, rationale, origin })
    }

    /// Whether a row maps `check` to `requirement` already.
    fn maps(&self, check: &str, requirement: &str) -> bool {
        self.by_control.get(requirement).is_some_and(|c| c.iter().any(|x| x == check))
    }

    fn add_row(&mut self, row: CheckMapping) {
        self.by_control.entry(row.requirement.clone()).or_default().push(row.check.clone());
        self.by_check.entry(row.check.clone()).or_default().push((row.requirement.clone(), row.relationship));
        self.mappings.push(row);
    }

    /// Adds an imported OSCAL catalog as framework `framework` (an
    /// edition-qualified id such as `bsi-gspp-kernel:2026-07-29`); its
    /// controls become `<framework>/<OSCAL id>`. No check maps to them yet, so
    /// they show as not assessed, visible next to the built-in ones.
    pub fn with_oscal(
        mut self,
        framework: &str,
        name: &str,
        oscal: &crate::oscal::OscalCatalog,
    ) -> Result<Catalog, CatalogError> {
        if !is_framework_id(framework) {
            return Err(CatalogError::FrameworkId(framework.to_string()));
        }
        if self.frameworks.iter().any(|f| f.id == framework) {
            return Err(CatalogError::FrameworkTaken(framework.to_string()));
        }
        self.frameworks.push(Framework { id: framework.to_string(), name: name.to_string() });
        for c in &oscal.controls {
            self.controls.push(Control {
                id: format!("{framework}/{}", c.id),
                title: c.title.clone(),
                group: c.groups.first().cloned(),
                module: None,
                level: None,
                predecessors: Vec::new(),
            });
        }
        Ok(self)
    }

    /// Adds check → control rows derived from an imported mapping
    /// collection (see [`crate::mapping_import`]); `label` names the
    /// collection in the mapping version results carry. A pair the catalog
    /// maps already keeps its row.
    pub fn with_mappings(mut self, rows: Vec<Mapping>, label: &str) -> Result<Catalog, CatalogError> {
        for map in rows {
            let mapping = self
                .checked_row(map.check, map.control, &map.relationship, map.rationale, Origin::Imported)
                .map_err(|(e, _)| e)?;
            if !self.maps(&mapping.check, &mapping.requirement) {
                self.add_row(mapping);
            }
        }
        self.mapping_version = format!("{} + {label}", self.mapping_version);
        Ok(self)
    }

    /// The version of the check → control mapping set in use.
    pub fn mapping_version(&self) -> &str {
        &self.mapping_version
    }

    pub fn frameworks(&self) -> Vec<String> {
        self.frameworks.iter().map(|f| f.id.clone()).collect()
    }

    /// The requirements and controls that are evaluated (modules are not).
    pub fn controls(&self) -> &[Control] {
        &self.controls
    }

    /// The modules of frameworks organised in modules, in catalog order.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    pub fn module(&self, id: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.id == id)
    }

    /// The requirements filed under module `id`, in catalog order.
    pub fn requirements_of(&self, id: &str) -> Vec<&Control> {
        self.controls.iter().filter(|c| c.module.as_deref() == Some(id)).collect()
    }

    /// Every check → requirement row with its relationship, rationale and
    /// origin, in the order added.
    pub fn mappings(&self) -> &[CheckMapping] {
        &self.mappings
    }

    /// How much of `requirement` its checks measure; `None` when no check
    /// maps to it.
    pub fn coverage(&self, requirement: &str) -> Option<Coverage> {
        let checks = self.by_control.get(requirement)?;
        let full = checks.iter().any(|check| {
            self.controls_for_check(check).iter().any(|(r, rel)| r == requirement && rel.covers_fully())
        });
        Some(if full { Coverage::Full } else { Coverage::Partial })
    }

    /// Controls a check supports, with the relationship.
    pub fn controls_for_check(&self, check: &str) -> &[(String, Relationship)] {
        self.by_check.get(check).map_or(&[], Vec::as_slice)
    }

    /// Checks that provide evidence for a control.
    pub fn checks_for_control(&self, control: &str) -> &[String] {
        self.by_control.get(control).map_or(&[], Vec::as_slice)
    }

    pub fn check(&self, id: &str) -> Option<&CheckInfo> {
        self.checks.get(id)
    }

    /// The declared checks, by id.
    pub fn checks(&self) -> impl Iterator<Item = &CheckInfo> {
        self.checks.values()
    }

    /// Whether `prefix` is a control id or the start of one
    /// (`iso27001:2022/` for a framework, `iso27001:2022/A.8` for a theme).
    pub fn knows_prefix(&self, prefix: &str) -> bool {
        self.controls.iter().any(|c| c.id.starts_with(prefix))
    }

    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }

    /// The controls that replace the 2013 control `id_2013` (qualified, e.g.
    /// `iso27001:2013/A.12.6.1` → `iso27001:2022/A.8.8`). Empty when the id is
    /// not a 2013 control of this catalog, or the 2013 edition is not loaded.
    pub fn successors(&self, id_2013: &str) -> Vec<&str> {
        self.successors.get(id_2013).map_or_else(Vec::new, |s| s.iter().map(String::as_str).collect())
    }

    /// Every 2013 control, in catalog order, with the controls that replace
    /// it: the whole 2013 → 2022 crosswalk.
    pub fn crosswalk(&self) -> Vec<(String, Vec<String>)> {
        self.controls
            .iter()
            .filter(|c| c.framework() == ISO_2013)
            .map(|c| (c.id.clone(), self.successors.get(&c.id).cloned().unwrap_or_default()))
            .collect()
    }
}

fn is_iso_2013(id: &str) -> bool {
    id.split_once('/').is_some_and(|(fw, rest)| fw == ISO_2013 && !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_all_annex_a_controls_and_resolving_mappings() {
        let cat = Catalog::builtin().unwrap();
        let iso: Vec<&Control> = cat.controls().iter().filter(|c| c.framework() == "iso27001:2022").collect();
        assert_eq!(iso.len(), 93);
        for (theme, n) in [("A.5.", 37), ("A.6.", 8), ("A.7.", 14), ("A.8.", 34)] {
            let count =
                iso.iter().filter(|c| c.id.split('/').nth(1).is_some_and(|i| i.starts_with(theme))).count();
            assert_eq!(count, n, "{theme}");
        }
        assert_eq!(cat.control("iso27001:2022/A.8.24").unwrap().title, "Use of cryptography");
        assert_eq!(
            cat.control("iso27001:2022/A.8.24").unwrap().predecessors,
            vec!["iso27001:2013/A.10.1.1", "iso27001:2013/A.10.1.2"]
        );
        for check in ["firewall", "disk_encryption", "os_patches", "antivirus"] {
            let fws: BTreeSet<&str> = cat
                .controls_for_check(check)
                .iter()
                .map(|(c, _)| c.split('/').next().unwrap_or(""))
                .collect();
            assert_eq!(fws.len(), 5, "{check} maps to every framework (2013 through the crosswalk): {fws:?}");
            assert!(!cat.check(check).unwrap().threats.is_empty());
        }
        for check in cat.checks.keys() {
            assert!(
                cat.controls_for_check(check).iter().any(|(c, _)| c.starts_with("iso27001:2022/")),
                "{check} supports no ISO/IEC 27001:2022 control"
            );
        }
        assert_eq!(
            cat.checks_for_control("iso27001:2022/A.8.1"),
            ["firewall", "disk_encryption", "screen_lock"]
        );
        assert!(cat.checks_for_control("iso27001:2022/A.6.3").is_empty());
    }

    const CAT: &str = r#"
[[framework]]
id = "iso27001:2022"
name = "ISO"
[[control]]
id = "iso27001:2022/A.8.20"
title = "Networks security"
"#;
    const CHECK: &str = r#"
version = "test-1"
[[check]]
id = "firewall"
title = "fw"
deviation = "fw off"
threats = []
likelihood = "mittel"
impact = "begrenzt"
goals = ["integrity"]
"#;

    fn mapping(check: &str, control: &str, rel: &str) -> String {
        format!(
            "{CHECK}\n[[mapping]]\ncheck = \"{check}\"\ncontrol = \"{control}\"\nrelationship = \"{rel}\"\nrationale = \"r\"\n"
        )
    }

    #[test]
    fn bad_data_is_refused_naming_the_offending_id() {
        assert!(Catalog::from_toml(CAT, &mapping("firewall", "iso27001:2022/A.8.20", "subset")).is_ok());
        assert_eq!(
            Catalog::from_toml(CAT, &mapping("firewall", "iso27001:2022/A.9.9", "subset")).unwrap_err(),
            CatalogError::UnknownControl { check: "firewall".into(), control: "iso27001:2022/A.9.9".into() }
        );
        assert_eq!(
            Catalog::from_toml(CAT, &mapping("dns", "iso27001:2022/A.8.20", "subset")).unwrap_err(),
            CatalogError::UnknownCheck("dns".into())
        );
        assert!(matches!(
            Catalog::from_toml(CAT, &mapping("firewall", "iso27001:2022/A.8.20", "related")).unwrap_err(),
            CatalogError::Relationship { .. }
        ));
        let unqualified = CAT.replace("iso27001:2022/A.8.20", "A.8.20");
        assert_eq!(
            Catalog::from_toml(&unqualified, CHECK).unwrap_err(),
            CatalogError::Unqualified("A.8.20".into())
        );
        let other_edition = CAT.replace("iso27001:2022/A.8.20", "iso27001:2013/A.13.1.1");
        assert_eq!(
            Catalog::from_toml(&other_edition, CHECK).unwrap_err(),
            CatalogError::Unqualified("iso27001:2013/A.13.1.1".into())
        );
        let dup = format!("{CAT}\n[[control]]\nid = \"iso27001:2022/A.8.20\"\ntitle = \"again\"\n");
        assert_eq!(
            Catalog::from_toml(&dup, CHECK).unwrap_err(),
            CatalogError::Duplicate("iso27001:2022/A.8.20".into())
        );
        assert!(matches!(Catalog::from_toml("not toml [", CHECK), Err(CatalogError::Toml(_))));
        assert_eq!(
            Catalog::from_toml(CAT, &CHECK.replace("\"integrity\"", "\"secrecy\"")).unwrap_err(),
            CatalogError::Goal { check: "firewall".into(), goal: "secrecy".into() }
        );
    }

    /// A 2022 control replacing two 2013 controls, a 2013 control nothing
    /// replaces yet, and the 2013 edition declared.
    const CAT_2013: &str = r#"
[[framework]]
id = "iso27001:2022"
name = "ISO 2022"
[[framework]]
id = "iso27001:2013"
name = "ISO 2013"
[[framework]]
id = "bsi-grundschutz:2023"
name = "BSI"
[[control]]
id = "iso27001:2022/A.8.24"
title = "Use of cryptography"
predecessors = ["iso27001:2013/A.10.1.1", "iso27001:2013/A.10.1.2"]
[[control]]
id = "iso27001:2022/A.5.1"
title = "Policies for information security"
predecessors = ["iso27001:2013/A.10.1.1"]
[[control]]
id = "iso27001:2013/A.10.1.1"
title = "Policy on the use of cryptographic controls"
[[control]]
id = "iso27001:2013/A.10.1.2"
title = "Key management"
[[control]]
id = "iso27001:2013/A.12.6.1"
title = "Management of technical vulnerabilities"
[[control]]
id = "bsi-grundschutz:2023/CON.1.A1"
title = "Auswahl geeigneter kryptografischer Verfahren"
"#;

    #[test]
    fn predecessors_resolve_to_successors_both_ways() {
        let cat = Catalog::from_toml(CAT_2013, CHECK).unwrap();
        assert_eq!(cat.successors("iso27001:2013/A.10.1.1"), ["iso27001:2022/A.8.24", "iso27001:2022/A.5.1"]);
        assert_eq!(cat.successors("iso27001:2013/A.10.1.2"), ["iso27001:2022/A.8.24"]);
        // Known but not (yet) replaced, unknown, unqualified and 2022 ids have none.
        assert!(cat.successors("iso27001:2013/A.12.6.1").is_empty());
        assert!(cat.successors("iso27001:2013/A.99.1.1").is_empty());
        assert!(cat.successors("A.10.1.1").is_empty());
        assert!(cat.successors("iso27001:2022/A.8.24").is_empty());
        assert_eq!(
            cat.crosswalk(),
            vec![
                (
                    "iso27001:2013/A.10.1.1".to_string(),
                    vec!["iso27001:2022/A.8.24".to_string(), "iso27001:2022/A.5.1".to_string()]
                ),
                ("iso27001:2013/A.10.1.2".to_string(), vec!["iso27001:2022/A.8.24".to_string()]),
                ("iso27001:2013/A.12.6.1".to_string(), vec![]),
            ]
        );
        // A repeated predecessor does not list its successor twice.
        let twice = CAT_2013.replace(
            r#"["iso27001:2013/A.10.1.1", "iso27001:2013/A.10.1.2"]"#,
            r#"["iso27001:2013/A.10.1.2", "iso27001:2013/A.10.1.2"]"#,
        );
        let cat = Catalog::from_toml(&twice, CHECK).unwrap();
        assert_eq!(cat.successors("iso27001:2013/A.10.1.2"), ["iso27001:2022/A.8.24"]);
    }

    #[test]
    fn bad_predecessors_are_refused_naming_control_and_predecessor() {
        let unknown = CAT_2013.replace(r#""iso27001:2013/A.10.1.2"]"#, r#""iso27001:2013/A.10.1.9"]"#);
        let err = Catalog::from_toml(&unknown, CHECK).unwrap_err();
        assert_eq!(
            err,
            CatalogError::UnknownPredecessor {
                control: "iso27001:2022/A.8.24".into(),
                predecessor: "iso27001:2013/A.10.1.9".into()
            }
        );
        assert!(err.to_string().contains("\"iso27001:2013/A.10.1.9\""), "{err}");
        // A 2022 id named as predecessor is not a 2013 control.
        let wrong_edition = CAT_2013.replace(r#"["iso27001:2013/A.10.1.1"]"#, r#"["iso27001:2022/A.8.24"]"#);
        assert_eq!(
            Catalog::from_toml(&wrong_edition, CHECK).unwrap_err(),
            CatalogError::Predecessor("iso27001:2022/A.8.24".into())
        );
        for bad in ["A.10.1.1", "iso27001:2013/", "iso27001:2013"] {
            let text = CAT_2013.replace(r#"["iso27001:2013/A.10.1.1"]"#, &format!("[{bad:?}]"));
            assert_eq!(Catalog::from_toml(&text, CHECK).unwrap_err(), CatalogError::Predecessor(bad.into()));
        }
        // Only a later ISO edition replaces 2013 controls.
        for (control, title) in [
            ("iso27001:2013/A.12.6.1", "Management of technical vulnerabilities"),
            ("bsi-grundschutz:2023/CON.1.A1", "Auswahl geeigneter kryptografischer Verfahren"),
        ] {
            let text = CAT_2013.replace(
                &format!("title = {title:?}\n"),
                &format!("title = {title:?}\npredecessors = [\"iso27001:2013/A.10.1.2\"]\n"),
            );
            assert_eq!(
                Catalog::from_toml(&text, CHECK).unwrap_err(),
                CatalogError::NotLaterEdition {
                    control: control.into(),
                    predecessor: "iso27001:2013/A.10.1.2".into()
                }
            );
        }
    }

    #[test]
    fn without_the_2013_edition_predecessors_stay_unresolved_references() {
        let cat = format!("{CAT}predecessors = [\"iso27001:2013/A.13.1.1\"]\n");
        let cat = Catalog::from_toml(&cat, CHECK).unwrap();
        assert_eq!(cat.control("iso27001:2022/A.8.20").unwrap().predecessors, ["iso27001:2013/A.13.1.1"]);
        assert!(cat.successors("iso27001:2013/A.13.1.1").is_empty());
        assert!(cat.crosswalk().is_empty());
    }

    /// The 1-based line of the first occurrence of `needle` in `text`.
    fn line_of(text: &str, needle: &str) -> Option<usize> {
        text.find(needle).map(|at| line_at(text, at))
    }

    #[test]
    fn a_bad_mapping_file_names_file_and_line() {
        let path = std::path::Path::new("mappings.toml");
        assert!(Catalog::with_mapping_file(path, BUILTIN_MAPPINGS).is_ok());
        let bad = BUILTIN_MAPPINGS.replacen(
            "control = \"iso27001:2022/A.8.20\"",
            "control = \"iso27001:2022/A.8.99\"",
            1,
        );
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert_eq!(e.line, line_of(&bad, "A.8.99"));
        assert!(e.to_string().starts_with("mappings.toml:") && e.to_string().contains("A.8.99"), "{e}");
        let bad = BUILTIN_MAPPINGS.replacen("relationship = \"subset\"", "relationship = \"related\"", 1);
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert_eq!(e.line, line_of(&bad, "\"related\""));
        let bad = format!("{BUILTIN_MAPPINGS}\n[[mapping]]\ncheck = \"firewall\"\ncolour = 1\n");
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert!(e.line.is_some_and(|l| l > 100), "{e}");
        assert!(e.message.contains("colour"), "{e}");
        // A goal is placed on its own line inside its check's table, not at
        // the first place the word occurs.
        let bad = BUILTIN_MAPPINGS.replacen(
            "goals = [\"confidentiality\", \"integrity\", \"availability\"]",
            "goals = [\"confidentiality\", \"secrecy\", \"availability\"]",
            1,
        );
        assert_ne!(bad, BUILTIN_MAPPINGS);
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert_eq!(e.line, line_of(&bad, "\"secrecy\""), "{e}");
    }

    #[test]
    fn an_empty_version_is_placed_on_the_version_line() {
        let path = std::path::Path::new("mappings.toml");
        // The built-in file mentions "version" in a comment above the key.
        let comment = BUILTIN_MAPPINGS.find("version").unwrap();
        let key = BUILTIN_MAPPINGS.find("\nversion = ").unwrap() + 1;
        assert!(comment < key, "the comment precedes the key, which is what made the line wrong");
        for empty in ["\"\"", "\"   \""] {
            let bad = BUILTIN_MAPPINGS.replacen(
                "version = \"custos-mappings-2026.11.2\"",
                &format!("version = {empty}"),
                1,
            );
            assert_ne!(bad, BUILTIN_MAPPINGS, "the built-in version line changed; update this test");
            let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
            assert_eq!(e.line, Some(line_at(&bad, key)), "{e}");
            assert!(bad.lines().nth(e.line.unwrap() - 1).unwrap().starts_with("version = "), "{e}");
            assert!(e.message.contains("version must not be empty"), "{e}");
            assert_eq!(Catalog::from_toml(BUILTIN_CATALOG, &bad).unwrap_err(), CatalogError::EmptyVersion);
        }
    }

    #[test]
    fn a_rationale_must_be_one_nonempty_line_and_is_placed_by_line() {
        let path = std::path::Path::new("mappings.toml");
        let first = "rationale = \"A host packet filter that drops unsolicited inbound traffic is one technical part of securing networks and the systems on them.\"";
        assert!(BUILTIN_MAPPINGS.contains(first));
        for (replacement, why) in [
            ("rationale = \"\"", "is empty"),
            ("rationale = \"  \"", "is empty"),
            ("rationale = \"first line\\nsecond line\"", "more than one line"),
            ("rationale = \"\"\"\nfirst line\nsecond line\"\"\"", "more than one line"),
        ] {
            let bad = BUILTIN_MAPPINGS.replacen(first, replacement, 1);
            let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
            assert_eq!(e.line, line_of(&bad, replacement), "{replacement}: {e}");
            assert!(e.message.contains(why) && e.message.contains("iso27001:2022/A.8.20"), "{e}");
            assert!(matches!(
                Catalog::from_toml(BUILTIN_CATALOG, &bad).unwrap_err(),
                CatalogError::Rationale { ref check, ref control, .. }
                    if check == "firewall" && control == "iso27001:2022/A.8.20"
            ));
        }
        // Derived rows are held to the same rule.
        let cat = Catalog::builtin().unwrap();
        let row = |rationale: &str| Mapping {
            check: "firewall".into(),
            control: "iso27001:2022/A.5.10".into(),
            relationship: "intersect".into(),
            rationale: rationale.into(),
        };
        assert!(matches!(
            cat.clone().with_mappings(vec![row("two\nlines")], "x").unwrap_err(),
            CatalogError::Rationale { .. }
        ));
        assert!(matches!(
            cat.clone()
                .with_mappings(vec![Mapping { relationship: "related".into(), ..row("r") }], "x")
                .unwrap_err(),
            CatalogError::Relationship { .. }
        ));
        let added = cat.with_mappings(vec![row("via a collection")], "test collection 1").unwrap();
        let m = added.mappings().last().unwrap();
        assert_eq!(
            (m.requirement.as_str(), m.relationship, m.rationale.as_str(), m.origin),
            ("iso27001:2022/A.5.10", Relationship::Intersect, "via a collection", Origin::Imported)
        );
        assert!(added.mapping_version().ends_with(" + test collection 1"));
    }

    #[test]
    fn a_pair_mapped_twice_is_refused() {
        let twice = format!(
            "{}\n[[mapping]]\ncheck = \"firewall\"\ncontrol = \"iso27001:2022/A.8.20\"\nrelationship = \"equal\"\nrationale = \"again\"\n",
            mapping("firewall", "iso27001:2022/A.8.20", "subset")
        );
        assert_eq!(
            Catalog::from_toml(CAT, &twice).unwrap_err(),
            CatalogError::DuplicateMapping {
                check: "firewall".into(),
                control: "iso27001:2022/A.8.20".into()
            }
        );
        let path = std::path::Path::new("m.toml");
        let e = Catalog::from_toml(BUILTIN_CATALOG, &twice).map(|_| ()).unwrap_err();
        assert!(matches!(e, CatalogError::DuplicateMapping { .. }), "{e}");
        let builtin_twice = format!(
            "{BUILTIN_MAPPINGS}\n[[mapping]]\ncheck = \"firewall\"\ncontrol = \"iso27001:2022/A.8.20\"\nrelationship = \"equal\"\nrationale = \"again\"\n"
        );
        let e = Catalog::with_mapping_file(path, &builtin_twice).unwrap_err();
        assert_eq!(e.line, Some(builtin_twice.lines().count() - 2), "{e}");
    }

    #[test]
    fn every_mapping_keeps_its_relationship_and_rationale() {
        let cat = Catalog::builtin().unwrap();
        let own: Vec<&CheckMapping> =
            cat.mappings().iter().filter(|m| m.origin == Origin::MappingSet).collect();
        assert_eq!(own.len(), BUILTIN_MAPPINGS.matches("[[mapping]]").count());
        let fw = own
            .iter()
            .find(|m| m.check == "firewall" && m.requirement == "bsi-grundschutz:2023/SYS.2.1.A31")
            .unwrap();
        assert_eq!(fw.relationship, Relationship::Equal);
        assert_eq!(
            fw.rationale,
            "Asks for a local packet filter on clients that limits incoming connections."
        );
        for m in cat.mappings() {
            assert!(rationale_fault(&m.rationale).is_none(), "{m:?}");
            assert!(cat.control(&m.requirement).is_some(), "{m:?}");
            assert!(cat.controls_for_check(&m.check).contains(&(m.requirement.clone(), m.relationship)));
        }
        // Rows and the per-check and per-control indexes agree exactly.
        let rows: usize = cat.checks.keys().map(|c| cat.controls_for_check(c).len()).sum();
        assert_eq!(rows, cat.mappings().len());
        // 2013 controls are answered through the crosswalk, saying through which 2022 control.
        let old = cat
            .mappings()
            .iter()
            .find(|m| m.check == "os_patches" && m.requirement == "iso27001:2013/A.12.6.1")
            .unwrap();
        assert_eq!((old.origin, old.relationship), (Origin::Crosswalk, Relationship::Intersect));
        assert!(old.rationale.contains("iso27001:2022/A.8.8"), "{}", old.rationale);
    }

    #[test]
    fn coverage_is_full_only_through_an_equal_or_superset_mapping() {
        let cat = Catalog::builtin().unwrap();
        // firewall is equal to SYS.2.1.A31; only a subset of SYS.3.1.A3.
        assert_eq!(cat.coverage("bsi-grundschutz:2023/SYS.2.1.A31"), Some(Coverage::Full));
        assert_eq!(cat.coverage("bsi-grundschutz:2023/SYS.3.1.A3"), Some(Coverage::Partial));
        // disk_encryption is a superset of SYS.2.3.A19 (disk or file encryption).
        assert_eq!(cat.coverage("bsi-grundschutz:2023/SYS.2.3.A19"), Some(Coverage::Full));
        // A.8.1: firewall (intersect), disk_encryption and screen_lock (subset).
        assert_eq!(cat.coverage("iso27001:2022/A.8.1"), Some(Coverage::Partial));
        assert_eq!(cat.coverage("iso27001:2013/A.12.6.1"), Some(Coverage::Partial));
        assert_eq!(cat.coverage("iso27001:2022/A.6.3"), None);
        assert_eq!(cat.coverage("bsi-grundschutz:2023/NET.3.2"), None);
    }

    #[test]
    fn bsi_requirements_are_children_of_their_modules() {
        let cat = Catalog::builtin().unwrap();
        let bsi: Vec<&Module> =
            cat.modules().iter().filter(|m| m.framework() == "bsi-grundschutz:2023").collect();
        assert_eq!(bsi.len(), 13);
        assert_eq!(cat.module("bsi-grundschutz:2023/NET.3.2").map(|m| m.title.as_str()), Some("Firewall"));
        // Modules are entries, not evaluated controls.
        assert!(cat.control("bsi-grundschutz:2023/NET.3.2").is_none());
        assert!(cat.requirements_of("bsi-grundschutz:2023/NET.3.2").is_empty());
        let sys21: Vec<&str> =
            cat.requirements_of("bsi-grundschutz:2023/SYS.2.1").iter().map(|c| c.id.as_str()).collect();
        assert_eq!(sys21.len(), 9, "{sys21:?}");
        assert!(sys21.contains(&"bsi-grundschutz:2023/SYS.2.1.A31"));
        for c in cat.controls().iter().filter(|c| c.framework() == "bsi-grundschutz:2023") {
            let m = c.module.as_deref().unwrap_or_else(|| panic!("{} names no module", c.id));
            assert!(c.id.starts_with(&format!("{m}.A")), "{} under {m}", c.id);
        }
        let filed: usize = bsi.iter().map(|m| cat.requirements_of(&m.id).len()).sum();
        assert_eq!(filed, cat.controls().iter().filter(|c| c.framework() == "bsi-grundschutz:2023").count());
        // A check maps to requirements, never to a module.
        let to_module = BUILTIN_MAPPINGS.replacen(
            "control = \"bsi-grundschutz:2023/SYS.2.1.A31\"",
            "control = \"bsi-grundschutz:2023/SYS.2.1\"",
            1,
        );
        let e = Catalog::with_mapping_file(std::path::Path::new("m.toml"), &to_module).unwrap_err();
        assert!(e.message.contains("names module") && e.message.contains("SYS.2.1\""), "{e}");
        assert_eq!(e.line, line_of(&to_module, "\"bsi-grundschutz:2023/SYS.2.1\""));
    }

    #[test]
    fn module_data_errors_are_refused_by_name() {
        let modules = r#"
[[framework]]
id = "bsi-grundschutz:2023"
name = "BSI"
[[module]]
id = "bsi-grundschutz:2023/SYS.2.1"
title = "Allgemeiner Client"
[[module]]
id = "bsi-grundschutz:2023/NET.3.2"
title = "Firewall"
[[control]]
id = "bsi-grundschutz:2023/SYS.2.1.A31"
title = "Einrichtung lokaler Paketfilter"
module = "bsi-grundschutz:2023/SYS.2.1"
"#;
        let checks = CHECK;
        let ok = Catalog::from_toml(modules, checks).unwrap();
        assert_eq!(ok.requirements_of("bsi-grundschutz:2023/SYS.2.1").len(), 1);
        let cases: [(String, CatalogError); 6] = [
            (
                modules.replace(
                    "module = \"bsi-grundschutz:2023/SYS.2.1\"",
                    "module = \"bsi-grundschutz:2023/SYS.9\"",
                ),
                CatalogError::UnknownModule {
                    control: "bsi-grundschutz:2023/SYS.2.1.A31".into(),
                    module: "bsi-grundschutz:2023/SYS.9".into(),
                },
            ),
            (
                modules.replace(
                    "module = \"bsi-grundschutz:2023/SYS.2.1\"",
                    "module = \"bsi-grundschutz:2023/NET.3.2\"",
                ),
                CatalogError::ModuleMismatch {
                    control: "bsi-grundschutz:2023/SYS.2.1.A31".into(),
                    module: "bsi-grundschutz:2023/NET.3.2".into(),
                },
            ),
            (
                modules.replace("module = \"bsi-grundschutz:2023/SYS.2.1\"\n", ""),
                CatalogError::Unfiled("bsi-grundschutz:2023/SYS.2.1.A31".into()),
            ),
            (
                modules.replace(
                    "id = \"bsi-grundschutz:2023/NET.3.2\"",
                    "id = \"bsi-grundschutz:2023/SYS.2.1\"",
                ),
                CatalogError::Duplicate("bsi-grundschutz:2023/SYS.2.1".into()),
            ),
            (
                modules.replace("id = \"bsi-grundschutz:2023/NET.3.2\"", "id = \"NET.3.2\""),
                CatalogError::Unqualified("NET.3.2".into()),
            ),
            (
                modules.replace("title = \"Firewall\"", "title = \" \""),
                CatalogError::EmptyTitle("bsi-grundschutz:2023/NET.3.2".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_ne!(text, modules);
            assert_eq!(Catalog::from_toml(&text, checks).unwrap_err(), expected);
        }
        // A module's id prefix alone does not make a requirement its child:
        // SYS.2.10.A1 is not in SYS.2.1.
        let sibling = modules.replace("SYS.2.1.A31", "SYS.2.10.A1");
        assert!(matches!(
            Catalog::from_toml(&sibling, checks).unwrap_err(),
            CatalogError::ModuleMismatch { .. }
        ));
    }

    #[test]
    fn builtin_2013_and_2022_ids_of_the_same_number_are_different_controls() {
        let cat = Catalog::builtin().unwrap();
        let old = cat.control("iso27001:2013/A.8.1.1").unwrap();
        let new = cat.control("iso27001:2022/A.8.1").unwrap();
        assert_eq!((old.title.as_str(), old.framework()), ("Inventory of assets", ISO_2013));
        assert_eq!((new.title.as_str(), new.framework()), ("User endpoint devices", "iso27001:2022"));
        assert!(cat.control("iso27001:2013/A.8.1").is_none(), "2013 A.8.1 is an objective, not a control");
        assert_eq!(cat.successors("iso27001:2013/A.8.1.1"), ["iso27001:2022/A.5.9"]);
        // 2013 controls are assessed through their successors' checks.
        let succ = cat.successors("iso27001:2013/A.12.6.1");
        let mut via: Vec<&String> = succ.iter().flat_map(|s| cat.checks_for_control(s)).collect();
        via.sort();
        via.dedup();
        let mut direct: Vec<&String> = cat.checks_for_control("iso27001:2013/A.12.6.1").iter().collect();
        direct.sort();
        assert_eq!(direct, via);
        assert!(direct.iter().any(|c| *c == "os_patches"));
        assert!(
            cat.controls_for_check("os_patches")
                .contains(&("iso27001:2013/A.12.6.1".to_string(), Relationship::Intersect))
        );
    }
}

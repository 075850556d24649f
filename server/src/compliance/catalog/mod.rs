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
//!
//! One file per concept: `entries.rs` (frameworks, modules, controls and
//! the catalog file's rules), `mapping.rs` (checks and check → requirement
//! rows), `crosswalk.rs` (2013 predecessors and the rows derived from
//! them), `load.rs` (the data files, with places for errors), `lookup.rs`
//! (what callers ask of a loaded catalog), `error.rs` (why data is refused),
//! `rating.rs` (a check's inherent rating and the goals it threatens).

mod crosswalk;
mod entries;
mod error;
mod load;
mod lookup;
mod mapping;
pub(crate) mod rating;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;

pub use crosswalk::ISO_2013;
pub use entries::{Control, Framework, Module, is_framework_id};
pub use error::{CatalogError, MappingFileError};
pub use mapping::{CheckInfo, CheckMapping, Coverage, Mapping, Origin, Relationship};
pub use rating::{GOALS, Impact, Likelihood};

/// The validated catalog. Its fields are private to this module and its
/// files: only they add rows, and they keep `by_check` and `by_control` in
/// step with `mappings`.
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

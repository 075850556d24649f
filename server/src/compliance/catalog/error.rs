//! Why catalog data is refused: one error per rule the catalog and mapping
//! files must keep, each naming the offending id; and a mapping file's
//! refusal with its file and line.

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
    #[error("check {0:?} is not one the agent runs (custos_proto::checks::CHECK_IDS)")]
    NotAgentCheck(String),
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

/// A mapping file that did not load: the file, the line where known, why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct MappingFileError {
    pub path: std::path::PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

//! What evidence means for compliance: the control catalog and the check →
//! control mappings, OSCAL catalogs and mappings read from outside, the
//! policy's rules over signed facts, exceptions, and the evaluation that
//! turns each host's evidence into a standing per requirement.
//!
//! Invariants: pure. Nothing here reads a file, the clock or the store;
//! loaders hand it text (`datadir`), the store hands it rows (`keeper`), and
//! the time is a parameter. It imports no other domain of the server, so
//! its answers depend on its inputs only and are tested on data alone.

pub mod catalog;
pub mod evaluate;
pub mod exception;
pub mod mapping_import;
pub mod oscal;
pub mod policy;

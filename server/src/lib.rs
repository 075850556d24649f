//! `custos-server`: enrolls agents, verifies and stores their signed evidence,
//! maps it onto ISMS controls, keeps the risk register and serves the API.

pub mod api;
pub mod app;
pub mod compliance;
pub mod config;
pub mod datadir;
pub mod export;
pub mod identity;
pub mod intake;
pub mod keeper;
pub mod register;
pub mod shutdown;
pub mod store;
pub mod webhook;

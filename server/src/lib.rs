//! `custos-server`: enrolls agents, verifies and stores their signed evidence,
//! maps it onto ISMS controls, keeps the risk register and serves the API.

pub mod app;
pub mod ca;
pub mod catalog;
pub mod catalog_imports;
pub mod config;
pub mod datadir;
pub mod decided;
pub mod evaluate;
pub mod evaluation_inputs;
pub mod exception;
pub mod export;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod keeper;
pub mod mapping_import;
pub mod oscal;
pub mod policy;
pub mod registry;
pub mod reload;
pub mod risk;
pub mod risk_admin;
pub mod secrets;
pub mod security;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod views;
pub mod webhook;

//! `custos-server`: enrolls agents, verifies and stores their signed evidence,
//! maps it onto ISMS controls, keeps the risk register and serves the API.

pub mod ca;
pub mod catalog;
pub mod evaluate;
pub mod risk;
pub mod secrets;
pub mod store;

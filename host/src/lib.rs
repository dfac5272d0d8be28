//! Sluice: a progressive-delivery controller for Kubernetes whose every rollout
//! decision is made by a sandboxed WebAssembly strategy module.

pub mod admission;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod crds;
pub mod demo;
pub mod fetch;
pub mod gateway;
pub mod http;
pub mod kruise;
pub mod local;
pub mod modules;
pub mod policy;
pub mod providers;
pub mod rollout;
pub mod scenario;
pub mod strategy;
pub mod traffic;
pub mod workload;

//! The simulator's tests use the shared test kit.
#![allow(unused_imports)]

pub use sluice_testkit::{Kubectl, client, http_get_with as get, sim, until};

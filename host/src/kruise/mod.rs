//! The OpenKruise Rollout API: types, the CRD, and the checks its webhook makes.

pub mod hash;
pub mod v1alpha1;
pub mod validate;

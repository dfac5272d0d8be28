//! Rollout mechanics the host owns: the Kruise spec as written, and how a step's
//! state moves as pods and traffic converge.

pub mod spec;
pub mod stepper;

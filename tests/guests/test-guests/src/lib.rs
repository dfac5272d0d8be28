//! The strategy modules the tests load, built by this crate's build script.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

//! What tests and policy authors use beside `chatstore-host`: fault
//! injection and the conformance runner.

#![deny(missing_docs)]

pub mod conformance;
pub mod faults;

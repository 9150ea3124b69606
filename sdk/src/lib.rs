//! The Sluice plugin SDK.
//!
//! For now it carries the record codec shared by the host and plugins; the transform
//! authoring API arrives with the plugin contract.

pub mod codec;

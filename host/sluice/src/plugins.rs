//! The example plugins, compiled to components at build time and embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/example_plugins.rs"));

/// Every embedded example plugin by name.
pub fn examples() -> [(&'static str, &'static [u8]); 4] {
    [
        ("mask", MASK),
        ("filter", FILTER),
        ("enrich", ENRICH),
        ("route", ROUTE),
    ]
}

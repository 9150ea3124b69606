//! The example plugins, compiled to components at build time and embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/example_plugins.rs"));

/// Every embedded example plugin by name (`plugins/<name>`).
pub fn examples() -> [(&'static str, &'static [u8]); 11] {
    [
        ("mask", MASK),
        ("filter", FILTER),
        ("enrich", ENRICH),
        ("route", ROUTE),
        ("window-count", WINDOW_COUNT),
        ("dedupe", DEDUPE),
        ("sessionize", SESSIONIZE),
        ("encrypt", ENCRYPT),
        ("decrypt", DECRYPT),
        ("nexmark", NEXMARK_QUERIES),
        ("nexmark-stateless", NEXMARK_STATELESS),
    ]
}

/// The embedded example plugin `name`.
pub fn example(name: &str) -> Option<&'static [u8]> {
    examples()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| b)
}

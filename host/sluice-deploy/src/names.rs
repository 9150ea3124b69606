//! Naming rules: deployment, plugin and connector names, topic names, and the default
//! dead-letter topics. One copy of each rule for every layer that names things.

/// Whether `name` may name a deployment (transform or connector) or a plugin: 1–100 of
/// `[a-zA-Z0-9._-]`, not `.` or `..` (names become directory names).
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a topic name is refused (Kafka's rules: 1–249 of `[a-zA-Z0-9._-]`, not `.`/`..`).
pub fn topic_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 249 {
        Some("must be at most 249 characters")
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may contain only ASCII letters, digits, '.', '_' and '-'")
    } else {
        None
    }
}

/// Whether `name` may name a topic.
pub fn valid_topic_name(name: &str) -> bool {
    topic_name_error(name).is_none()
}

/// The default dead-letter topic of a transform reading `input`.
pub fn transform_dead_letter_topic(input: &str) -> String {
    format!("{input}.dlq")
}

/// The default dead-letter topic of a sink reading `topic`.
pub fn sink_dead_letter_topic(topic: &str) -> String {
    format!("{topic}.sink.dlq")
}

/// The changelog topic of a stateful transform's state.
pub fn state_topic(transform: &str) -> String {
    format!("{transform}.state")
}

/// The topic the server merges a two-input transform's inputs into (what its tasks read).
pub fn merged_inputs_topic(transform: &str) -> String {
    format!("{transform}.inputs")
}

/// The control topics of the workers of `group`: deployment specs (components and
/// configs), and what each worker runs.
pub fn control_topics(group: &str) -> (String, String) {
    (
        format!("{group}.sluice.config"),
        format!("{group}.sluice.status"),
    )
}

/// Whether `topic` is a worker group's control topic.
pub fn is_control_topic(topic: &str) -> bool {
    topic.ends_with(".sluice.config") || topic.ends_with(".sluice.status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("mask-events_v2.1"));
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(101)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_topic_name(&"t".repeat(249)));
        assert_eq!(
            topic_name_error(&"t".repeat(250)),
            Some("must be at most 249 characters")
        );
        assert!(topic_name_error("a:b").is_some());
        assert_eq!(transform_dead_letter_topic("in"), "in.dlq");
        assert_eq!(sink_dead_letter_topic("in"), "in.sink.dlq");
        assert_eq!(state_topic("wc"), "wc.state");
    }
}

//! Dead letters: a record that a transform or a sink could not handle, kept with the reason
//! and its origin. One format for everything that dead-letters: the original key, value,
//! headers and timestamp, plus `sluice-*` headers; the dead-letter partition is the source
//! partition modulo the topic's partitions.

use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{NewRecord, StoredRecord};
use crate::{Log, LogError, Topic, TopicConfig};

/// Why the record was dead-lettered.
pub const ERROR_HEADER: &str = "sluice-error";
/// Where it came from.
pub const SOURCE_TOPIC_HEADER: &str = "sluice-source-topic";
pub const SOURCE_PARTITION_HEADER: &str = "sluice-source-partition";
pub const SOURCE_OFFSET_HEADER: &str = "sluice-source-offset";

/// The dead-letter topic `name`, created with the source's partition count if missing.
pub fn topic(log: &Log, name: &str, source: &Topic) -> Result<Arc<Topic>, LogError> {
    match log.topic(name) {
        Ok(t) => Ok(t),
        Err(_) => log.create_topic(
            name,
            TopicConfig {
                partitions: source.partitions.len() as u32,
                ..TopicConfig::default()
            },
        ),
    }
}

/// The dead-letter partition for records of source partition `partition`.
pub fn partition_for(partition: u32, dead_letters: &Topic) -> u32 {
    partition % dead_letters.partitions.len().max(1) as u32
}

/// The dead letter of `original`, read at `source_topic`/`source_partition`: its key, value,
/// headers and timestamp, then the reason, the origin and `extra` headers (who
/// dead-lettered it) in that order.
pub fn record(
    original: StoredRecord,
    reason: &str,
    source_topic: &str,
    source_partition: u32,
    extra: &[(&str, String)],
) -> NewRecord {
    let mut headers = original.headers;
    headers.reserve(4 + extra.len());
    for (k, v) in [
        (ERROR_HEADER, reason.to_string()),
        (SOURCE_TOPIC_HEADER, source_topic.to_string()),
        (SOURCE_PARTITION_HEADER, source_partition.to_string()),
        (SOURCE_OFFSET_HEADER, original.offset.to_string()),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, v.clone())))
    {
        headers.push((k.to_string(), Some(Bytes::from(v))));
    }
    NewRecord {
        key: original.key,
        value: original.value,
        headers,
        timestamp: Some(original.timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_original_and_says_why_and_where() {
        let original = StoredRecord {
            offset: 41,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
        };
        let r = record(
            original,
            "bad",
            "in",
            2,
            &[("sluice-plugin", "mask".into())],
        );
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(r.timestamp, Some(1_700_000_000_000));
        let h: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            h,
            [
                ("h", &b"1"[..]),
                ("sluice-error", b"bad"),
                ("sluice-source-topic", b"in"),
                ("sluice-source-partition", b"2"),
                ("sluice-source-offset", b"41"),
                ("sluice-plugin", b"mask"),
            ]
        );
    }
}

//! A partition directory after a crash: whatever bytes the segment file holds, opening
//! recovers (keeping whole batches, cutting the rest) without panicking, and everything
//! it then serves reads back.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice_log::{Partition, TopicConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let part_dir = dir.path().join("0");
    if std::fs::create_dir_all(&part_dir).is_err()
        || std::fs::write(
            part_dir.join(sluice_log::segment::file_name(0, "log")),
            data,
        )
        .is_err()
    {
        return;
    }
    let space = Arc::new(sluice_log::space::Space::new(dir.path()));
    let Ok(p) = Partition::open("t", 0, part_dir, TopicConfig::default(), space) else {
        return;
    };
    let end = p.high_watermark();
    let mut next = p.start_offset();
    while next < end {
        match p.read_records(next, 1000) {
            Ok((recs, n, _)) if n > next => {
                assert!(
                    recs.iter()
                        .all(|r| u64::try_from(r.offset).is_ok_and(|o| o < end))
                );
                next = n;
            }
            _ => break,
        }
    }
});

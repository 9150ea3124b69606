//! What a plugin hands the host: output entries (emits, passes, rejects with their
//! records), state operations and state scan pages. Reading them never panics, and every
//! emitted record is checked as the host checks it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sdk::codec::{Reader, RecordView};
use sluice_sdk::entries::{Entries, Entry};

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    for e in Entries::new(rest, u32::from(count)) {
        match e {
            Ok(Entry::Emit { record, .. }) => {
                if let Ok(v) = RecordView::read(&mut Reader::new(record.0)) {
                    for h in v.headers() {
                        let _ = std::str::from_utf8(h.key);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for op in sluice_sdk::state::read_ops(rest) {
        if op.is_err() {
            break;
        }
    }
    for entry in sluice_sdk::state::read_entries(rest) {
        if entry.is_err() {
            break;
        }
    }
});

//! A Kafka request frame as the listener reads it (after the length): decoding never
//! panics or hangs; a Produce's record batches go through the checks the broker runs
//! before appending.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_kafka::conn::{Decoded, decode_frame};

fuzz_target!(
    init: {
        // The listener catches a panic of the Kafka codec (it costs that connection only):
        // silence the hook so such a caught panic is not counted as a crash; one that
        // escapes still aborts the run.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
    if let Ok(Decoded::Frame(f)) = decode_frame(bytes::Bytes::copy_from_slice(data))
        && let kafka_protocol::messages::RequestKind::Produce(p) = f.request
    {
        for t in &p.topic_data {
            for pd in &t.partition_data {
                if let Some(records) = &pd.records {
                    let _ = sluice_kafka::data::validate_records(records);
                    let _ = sluice_kafka::data::keyless_records(records);
                }
            }
        }
    }
});

//! Record batches (v2) as producers send them and the log stores them: splitting,
//! validation (CRC, lengths) and decoding never panic, and what validates decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_log::batch;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let _ = batch::validate(data);
    if let Ok(parts) = batch::split(bytes) {
        for (h, b) in parts {
            let _ = h.is_control();
            let _ = batch::decode(&b);
        }
    }
});

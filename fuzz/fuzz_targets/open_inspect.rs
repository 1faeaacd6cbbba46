//! Any byte string given to `inspect` / `TdfReader::open` must produce a result or an error,
//! never a panic, an abort or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dive_ztdf::inspect(std::io::Cursor::new(data));
    if let Ok(mut r) = dive_ztdf::TdfReader::open(std::io::Cursor::new(data)) {
        let _ = r.check_payload_structure();
        let _ = r.label();
    }
});

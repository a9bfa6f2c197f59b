//! The /proc/mdstat parser must never panic, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Valid UTF-8 as is; anything else through a lossy conversion, so that
    // arbitrary bytes still reach the parser. `let _ =` keeps this target
    // compiling whether `parse` returns `()` (stub) or an `Mdstat`.
    match std::str::from_utf8(data) {
        Ok(s) => {
            #[allow(clippy::let_unit_value)]
            let _ = mdguard::md::mdstat::parse(s);
        }
        Err(_) => {
            let s = String::from_utf8_lossy(data);
            #[allow(clippy::let_unit_value)]
            let _ = mdguard::md::mdstat::parse(&s);
        }
    }
});

//! Fuzz the policy checker: any bytes that are UTF-8 go through the whole
//! parse + validate path (no file-system checks). It must never panic, and every
//! diagnostic position must lie inside the input.
//! Its CI twin is `crates/policy/tests/proptests.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(d) = plexgate_policy::parse_str(text, "fuzz.toml", std::path::Path::new(".")) {
        let lines = text.split('\n').count();
        for diag in d.iter() {
            if let Some(p) = diag.position {
                assert!(p.line >= 1 && p.line <= lines);
            }
        }
        let _ = d.to_string();
    }
});

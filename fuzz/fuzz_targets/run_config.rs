//! Run-config parsing (TOML bytes to a validated RunConfig and its schedule) on arbitrary bytes:
//! every input gives a value or an input error, never a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lrlab_fuzz_check::run_config(data);
});

#[path = "../src/checks.rs"]
mod lrlab_fuzz_check;

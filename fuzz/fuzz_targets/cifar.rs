//! The CIFAR reader on arbitrary bytes: every input gives a value or
//! an input error, never a panic, an abort or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lrlab_fuzz_check::cifar(data);
});

#[path = "../src/checks.rs"]
mod lrlab_fuzz_check;

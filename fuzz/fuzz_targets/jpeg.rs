//! The JPEG decoder (ImageNet files) on arbitrary bytes, then the training and evaluation
//! crops of what it decodes: every input gives an image or an error message, never a panic,
//! an abort or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lrlab_fuzz_check::jpeg(data);
});

#[path = "../src/checks.rs"]
mod lrlab_fuzz_check;

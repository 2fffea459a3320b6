//! The font the figures are drawn with: DejaVu Sans, embedded in the binary so that PNG
//! figures need no system font (licence in `assets/fonts/LICENSE-DejaVu.txt`).

use plotters::style::{register_font, FontStyle};
use std::sync::Once;

/// The family name figures use; SVG viewers fall back to their own sans-serif font.
pub const FAMILY: &str = "sans-serif";

static FONT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fonts/DejaVuSans.ttf"
));
static REGISTER: Once = Once::new();

/// Register the embedded font as [`FAMILY`] with plotters (once per process; plotters keeps a
/// process-wide font table, so this is the one global it needs).
pub fn ensure() {
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font compiled in, so this cannot fail at run time
        // unless the asset is replaced by something else; the unit test checks it.
        if register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            eprintln!("warning: the embedded font could not be loaded; figure text may be missing");
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_font_parses() {
        assert!(super::register_font(super::FAMILY, super::FontStyle::Normal, super::FONT).is_ok());
    }
}

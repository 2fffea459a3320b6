//! A split held in memory as one `u8` array of CHW images plus labels (IDX, CIFAR).

use super::augment;
use super::{Augment, Source};
use rand_chacha::ChaCha8Rng;

/// `N` images of shape `(C, H, W)` stored back to back in CHW order, with their labels.
#[derive(Clone, Debug)]
pub struct ArraySource {
    pixels: Vec<u8>,
    labels: Vec<u16>,
    shape: (usize, usize, usize),
}

impl ArraySource {
    /// Wrap `pixels` (`labels.len() * C*H*W` bytes) and `labels` (class indices).
    /// Panics when the lengths disagree: the format readers check files before this.
    pub fn new(pixels: Vec<u8>, labels: Vec<u16>, shape: (usize, usize, usize)) -> Self {
        let (c, h, w) = shape;
        assert_eq!(pixels.len(), labels.len() * c * h * w, "pixels vs labels");
        ArraySource {
            pixels,
            labels,
            shape,
        }
    }

    /// The CHW bytes of example `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let (c, h, w) = self.shape;
        let n = c * h * w;
        &self.pixels[index * n..(index + 1) * n]
    }

    /// All labels, in example order.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }
}

impl Source for ArraySource {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn label(&self, index: usize) -> i64 {
        self.labels[index] as i64
    }

    fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    /// Copies the image; `Flip` and `CropFlip` use pad 4 with zeros (the loader applies the
    /// configured pad itself); `RandomResizedCrop` needs full-size images and is refused.
    fn fetch(
        &self,
        index: usize,
        augment: Augment,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> anyhow::Result<bool> {
        out.copy_from_slice(self.image(index));
        augment::apply_stored(augment, rng, out, self.shape, "an in-memory array")
    }
}

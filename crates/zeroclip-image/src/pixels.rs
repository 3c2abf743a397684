//! A decoded image kept in the Pillow mode its file gives it, because Pillow's resize and RGB
//! conversion both depend on the mode.
//!
//! Palette (`P`) and bilevel (`1`) images are stored already expanded (palette looked up, `1` as
//! 0/255): Pillow resizes them with NEAREST, which only copies pixels, so looking the palette up
//! before or after the resize gives the same RGB values.

/// How the image's samples are laid out, and so how Pillow converts them to RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One 8-bit channel (Pillow `L`, or `1` expanded to 0/255).
    L,
    /// Gray and alpha (Pillow `LA`).
    La,
    /// Pillow `RGB` (also `P` without alpha, expanded).
    Rgb,
    /// Pillow `RGBA`.
    Rgba,
    /// Pillow `CMYK` (not inverted: 0 is no ink).
    Cmyk,
    /// One 16-bit channel (Pillow `I;16`).
    I16,
}

impl Layout {
    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            Layout::L | Layout::I16 => 1,
            Layout::La => 2,
            Layout::Rgb => 3,
            Layout::Rgba | Layout::Cmyk => 4,
        }
    }

    /// Whether Pillow resizes this mode premultiplied by alpha (`LA`→`La`, `RGBA`→`RGBa`).
    pub fn has_alpha(self) -> bool {
        matches!(self, Layout::La | Layout::Rgba)
    }
}

/// Sample storage: 8-bit for every layout but [`Layout::I16`].
#[derive(Clone, Debug)]
pub enum Samples {
    /// Interleaved 8-bit samples, row-major.
    U8(Vec<u8>),
    /// 16-bit samples, row-major.
    U16(Vec<u16>),
}

/// A decoded image in its Pillow mode.
#[derive(Clone, Debug)]
pub struct Pixels {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channel layout.
    pub layout: Layout,
    /// Pillow resizes `P` and `1` images with NEAREST whatever filter is asked for.
    pub nearest: bool,
    /// The samples; `U16` exactly when `layout` is `I16`.
    pub samples: Samples,
}

impl Pixels {
    /// An 8-bit image; `data` must hold `width * height * layout.channels()` samples.
    pub fn new_u8(
        width: usize,
        height: usize,
        layout: Layout,
        nearest: bool,
        data: Vec<u8>,
    ) -> Self {
        debug_assert_eq!(data.len(), width * height * layout.channels());
        Pixels {
            width,
            height,
            layout,
            nearest,
            samples: Samples::U8(data),
        }
    }

    /// A 16-bit gray (`I;16`) image.
    pub fn new_i16(width: usize, height: usize, data: Vec<u16>) -> Self {
        debug_assert_eq!(data.len(), width * height);
        Pixels {
            width,
            height,
            layout: Layout::I16,
            nearest: false,
            samples: Samples::U16(data),
        }
    }
}

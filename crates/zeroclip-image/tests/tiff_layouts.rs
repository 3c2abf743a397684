//! TIFF layouts Pillow cannot write, built here by hand: a planar (one plane per channel) file
//! must give the same pixels as the interleaved file of the same image, or be refused.

use zeroclip_image::{Error, Preprocess};

/// An uncompressed TIFF of `w`×`h` 8-bit samples, `samples` per pixel, `photometric` as given;
/// planar (`PlanarConfiguration` 2, one strip per plane) or interleaved (one strip).
fn tiff(w: u32, h: u32, samples: u16, photometric: u16, planar: bool, px: &[u8]) -> Vec<u8> {
    let plane = (w * h) as usize;
    let strips: Vec<Vec<u8>> = if planar {
        (0..samples as usize)
            .map(|c| {
                px.iter()
                    .skip(c)
                    .step_by(samples as usize)
                    .copied()
                    .collect()
            })
            .collect()
    } else {
        vec![px.to_vec()]
    };
    let n_tags = 10u16;
    let ifd_len = 2 + 12 * n_tags as usize + 4;
    let arrays_at = 8 + ifd_len;
    // BitsPerSample, StripOffsets, StripByteCounts as arrays after the IFD.
    let bps_at = arrays_at;
    let offsets_at = bps_at + 2 * samples as usize;
    let counts_at = offsets_at + 4 * strips.len();
    let data_at = counts_at + 4 * strips.len();
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&n_tags.to_le_bytes());
    let mut entry = |tag: u16, kind: u16, count: u32, value: u32| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    };
    let one_strip = strips.len() == 1;
    entry(256, 4, 1, w);
    entry(257, 4, 1, h);
    entry(258, 3, u32::from(samples), bps_at as u32);
    entry(259, 3, 1, 1);
    entry(262, 3, 1, u32::from(photometric));
    let first = if one_strip {
        data_at as u32
    } else {
        offsets_at as u32
    };
    entry(273, 4, strips.len() as u32, first);
    entry(277, 3, 1, u32::from(samples));
    entry(278, 4, 1, h);
    let count = if one_strip {
        strips[0].len() as u32
    } else {
        counts_at as u32
    };
    entry(279, 4, strips.len() as u32, count);
    entry(284, 3, 1, if planar { 2 } else { 1 });
    t.extend_from_slice(&[0; 4]);
    for _ in 0..samples {
        t.extend_from_slice(&8u16.to_le_bytes());
    }
    let mut at = data_at;
    for s in &strips {
        t.extend_from_slice(&(at as u32).to_le_bytes());
        at += s.len();
    }
    for s in &strips {
        t.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    assert_eq!(t.len(), data_at);
    for s in &strips {
        t.extend_from_slice(s);
    }
    assert_eq!(t.len(), data_at + plane * samples as usize);
    t
}

/// Whether the planar file of `samples`-channel `photometric` pixels decodes like the
/// interleaved one (true), or is refused as unsupported (false).
fn planar_matches(samples: u16, photometric: u16) -> bool {
    let (w, h) = (37u32, 23u32);
    let px: Vec<u8> = (0..w * h * u32::from(samples))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let pre = Preprocess::openai(16);
    let chunky = pre
        .crop_rgb8(&tiff(w, h, samples, photometric, false, &px), "chunky.tiff")
        .expect("interleaved TIFF");
    match pre.crop_rgb8(&tiff(w, h, samples, photometric, true, &px), "planar.tiff") {
        Ok(planar) => {
            assert_eq!(planar.data, chunky.data);
            true
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Unsupported { .. }) && e.to_string().contains("planar.tiff"),
                "{e:?}"
            );
            false
        }
    }
}

#[test]
fn planar_rgb_equals_interleaved() {
    assert!(planar_matches(3, 2));
}

#[test]
fn planar_cmyk_equals_interleaved_or_is_refused() {
    planar_matches(4, 5);
}

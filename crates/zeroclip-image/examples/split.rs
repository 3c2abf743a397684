fn main() {
    for p in std::env::args().skip(1) {
        let b = std::fs::read(&p).unwrap();
        let t = std::time::Instant::now();
        let d = mozjpeg::Decompress::new_mem(&b).unwrap();
        let mut s = d.rgb().unwrap();
        let v: Vec<u8> = s.read_scanlines().unwrap();
        let t1 = t.elapsed();
        let opts = zune_jpeg::zune_core::options::DecoderOptions::default()
            .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::RGB);
        let t = std::time::Instant::now();
        let mut dec = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(&b), opts);
        let z = dec.decode().unwrap();
        let t2 = t.elapsed();
        let diff = v.iter().zip(&z).filter(|(a, b)| a != b).count();
        let maxd = v.iter().zip(&z).map(|(a, b)| a.abs_diff(*b)).max();
        println!("{p}: moz {t1:?} zune {t2:?} len {} {} differ {diff} max {maxd:?}", v.len(), z.len());
    }
}

use std::time::Instant;
fn main() {
    let s = Instant::now();
    let t = zeroclip_tokenizer::Tokenizer::new();
    eprintln!("new {:?}", s.elapsed());
    let s = Instant::now();
    t.encode("a");
    eprintln!("first encode (tables) {:?}", s.elapsed());
    let s = Instant::now();
    t.encode("é");
    eprintln!("non-ascii encode {:?}", s.elapsed());
}

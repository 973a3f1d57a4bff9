//! A small mutator for the bounded runs (no coverage feedback): a seed input changed by one to
//! eight edits (bit flips, random or boundary bytes, inserted, deleted, repeated or spliced
//! runs, truncation), or now and then plain random bytes. Deterministic for a seed.

/// xorshift64*: fast, good enough to pick edits, reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn word(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.word() % n as u64) as usize
    }
}

const INTERESTING: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, b'\n', b'"', b'[', b'='];

/// The next input to try.
pub fn next(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(16) == 0 {
        let n = rng.below(512);
        return (0..n).map(|_| rng.word() as u8).collect();
    }
    let mut d = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(8) {
        edit(rng, &mut d, corpus);
    }
    d
}

fn edit(rng: &mut Rng, d: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    if d.is_empty() {
        d.push(rng.word() as u8);
        return;
    }
    let at = rng.below(d.len());
    match rng.below(9) {
        0 => d[at] ^= 1 << rng.below(8),
        1 => d[at] = rng.word() as u8,
        2 => d[at] = INTERESTING[rng.below(INTERESTING.len())],
        3 => d.insert(at, rng.word() as u8),
        4 => {
            let n = rng.below(d.len() - at).max(1);
            d.drain(at..at + n);
        }
        5 => {
            let n = rng.below((d.len() - at).min(64)).max(1);
            let run = d[at..at + n].to_vec();
            let to = rng.below(d.len() + 1);
            d.splice(to..to, run);
        }
        6 => {
            let other = &corpus[rng.below(corpus.len())];
            if !other.is_empty() {
                let from = rng.below(other.len());
                let n = rng.below(other.len() - from).max(1);
                d.splice(at..at, other[from..from + n].iter().copied());
            }
        }
        7 => d.truncate(at),
        _ => {
            // A big-endian 16-bit length or count field set to a boundary value.
            let v: u16 = [0, 1, 0x7fff, 0xffff, d.len() as u16][rng.below(5)];
            if at + 2 <= d.len() {
                d[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
    d.truncate(1 << 16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let corpus = vec![b"hello world".to_vec(), Vec::new()];
        let a: Vec<Vec<u8>> = {
            let mut r = Rng::new(42);
            (0..100).map(|_| next(&mut r, &corpus)).collect()
        };
        let mut r = Rng::new(42);
        let b: Vec<Vec<u8>> = (0..100).map(|_| next(&mut r, &corpus)).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|x| x != &corpus[0] && !x.is_empty()));
    }
}

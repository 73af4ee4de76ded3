//! Raw DEFLATE (RFC 1951, no zlib or gzip wrapper) for block chunk frames and index sections:
//! compressed through `flate2`'s pure-Rust backend (miniz_oxide), inflated by `zlib-rs`, a pure-Rust
//! port of zlib-ng's inflate. Queries inflate every frame they read, and miniz_oxide's inflate was
//! 27-35% of the CPU of the PromQL benchmark's slowest rows (BENCHMARKS.md, "PromQL latency, session
//! 10"); the compressed format is the same stream either way.

use flate2::{Compress, Compression, FlushCompress, Status};
use zlib_rs::{Inflate, InflateFlush};

/// The LZ77 window of the streams written (`flate2`'s default): 2^15 bytes.
const WINDOW_BITS: u8 = 15;

/// Compression level for block chunk frames: 1 (fastest) … 9 (smallest). Level 3 keeps a block cut
/// of 1M series' chunks to about a second of CPU while giving most of level 6's ratio.
pub(crate) const CHUNK_LEVEL: u32 = 3;
/// Compression level for index sections: small next to the chunks, so the smallest setting.
pub(crate) const INDEX_LEVEL: u32 = 6;

/// Appends the raw DEFLATE stream of `input` at `level` (0–9) to `out`.
pub(crate) fn compress_into(input: &[u8], level: u32, out: &mut Vec<u8>) {
    let mut compressor = Compress::new(Compression::new(level.min(9)), false);
    out.reserve(input.len() / 2 + 64);
    loop {
        let consumed = compressor.total_in() as usize;
        let status = compressor.compress_vec(&input[consumed.min(input.len())..], out, FlushCompress::Finish);
        match status {
            Ok(Status::StreamEnd) => return,
            // Out of room (or no progress possible without room): grow and continue.
            Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(1024)),
            // `compress_vec` fails only on a corrupt compressor state, which cannot happen here; stop
            // rather than loop.
            Err(_) => return,
        }
    }
}

/// Inflates the raw DEFLATE stream `input`, which must decode to exactly `expected_bytes` bytes
/// (a longer or shorter result, trailing input or a malformed stream is an error describing which).
pub(crate) fn decompress_exact(input: &[u8], expected_bytes: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0; expected_bytes];
    decompress_exact_into(input, &mut out)?;
    Ok(out)
}

/// As [`decompress_exact`], into `out`, whose length is the expected number of bytes.
pub(crate) fn decompress_exact_into(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    let expected_bytes = out.len();
    let mut decompressor = Inflate::new(false, WINDOW_BITS);
    let status = decompressor
        .decompress(input, out, InflateFlush::Finish)
        .map_err(|error| format!("bad deflate stream: {error:?}"))?;
    if status != zlib_rs::Status::StreamEnd {
        return Err(format!("deflate stream does not end within {expected_bytes} bytes"));
    }
    if decompressor.total_out() as usize != expected_bytes {
        return Err(format!("deflate stream holds {} bytes, expected {expected_bytes}", decompressor.total_out()));
    }
    if decompressor.total_in() as usize != input.len() {
        return Err("bytes after the end of the deflate stream".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn round_trips(input in proptest::collection::vec(0u8..4, 0..5000), level in 0u32..10) {
            let mut compressed = Vec::new();
            compress_into(&input, level, &mut compressed);
            proptest::prop_assert_eq!(decompress_exact(&compressed, input.len()).unwrap(), input.clone());
            if !input.is_empty() {
                proptest::prop_assert!(decompress_exact(&compressed, input.len() - 1).is_err());
            }
            proptest::prop_assert!(decompress_exact(&compressed, input.len() + 1).is_err());
        }

        #[test]
        fn noise_never_panics(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), expected in 0usize..2000) {
            let _ = decompress_exact(&input, expected);
        }
    }

    #[test]
    fn large_incompressible_input_round_trips() {
        let input: Vec<u8> = (0u32..200_000).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut compressed = Vec::new();
        compress_into(&input, CHUNK_LEVEL, &mut compressed);
        assert_eq!(decompress_exact(&compressed, input.len()).unwrap(), input);
        let mut truncated = compressed.clone();
        truncated.truncate(compressed.len() / 2);
        assert!(decompress_exact(&truncated, input.len()).is_err());
    }
}

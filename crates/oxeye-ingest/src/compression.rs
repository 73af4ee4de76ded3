//! Undoing `Content-Encoding`: snappy block format (remote_write) and gzip (OTLP, optional), each with a cap
//! on the decoded size so a small body cannot inflate into a huge allocation.

use crate::IngestError;
use std::borrow::Cow;
use std::io::Read;

/// The default cap on a decoded request body: 64 MiB, the OTLP specification's suggestion.
pub const DEFAULT_MAX_DECODED_BYTES: usize = 64 << 20;

/// Decompresses a snappy **block** (`snap::raw`, not the framed format), as remote_write senders send it.
///
/// The decoded length is read from the block's header first, so an oversized body is refused before any
/// allocation.
///
/// # Errors
/// [`IngestError::TooLarge`] when the decoded length exceeds `max_decoded_bytes`; [`IngestError::Snappy`]
/// for a corrupt or truncated block (the message names what the decoder found, with positions).
pub fn decode_snappy(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<u8>, IngestError> {
    let mut decoded = Vec::new();
    let written = decode_snappy_reusing(body, max_decoded_bytes, &mut decoded)?.len();
    decoded.truncate(written);
    Ok(decoded)
}

/// As [`decode_snappy`], into a caller-kept `buffer` that is reused across requests: the buffer only
/// grows (new bytes are zeroed once, when it grows) and is never cleared, so a warm buffer costs neither
/// an allocation nor a zeroing pass per request. Returns the decoded bytes, a prefix of `buffer`.
///
/// # Errors
/// As [`decode_snappy`]; `buffer` keeps its allocation either way.
pub fn decode_snappy_reusing<'b>(
    body: &[u8],
    max_decoded_bytes: usize,
    buffer: &'b mut Vec<u8>,
) -> Result<&'b [u8], IngestError> {
    let decoded_len = snap::raw::decompress_len(body).map_err(snappy_error)?;
    if decoded_len > max_decoded_bytes {
        return Err(IngestError::TooLarge { limit_bytes: max_decoded_bytes });
    }
    if buffer.len() < decoded_len {
        buffer.resize(decoded_len, 0);
    }
    let output = &mut buffer[..decoded_len];
    let written = snap::raw::Decoder::new().decompress(body, output).map_err(snappy_error)?;
    Ok(&buffer[..written])
}

fn snappy_error(error: snap::Error) -> IngestError {
    let message = error.to_string();
    let reason = message.strip_prefix("snappy: ").unwrap_or(&message).to_string();
    IngestError::Snappy { reason }
}

/// Decompresses a gzip body (one or more members), stopping as soon as the output passes
/// `max_decoded_bytes`.
///
/// # Errors
/// [`IngestError::TooLarge`] past the cap; [`IngestError::Gzip`] for a corrupt or truncated stream.
pub fn decode_gzip(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<u8>, IngestError> {
    let decoder = flate2::read::MultiGzDecoder::new(body);
    let mut limited = decoder.take(max_decoded_bytes as u64 + 1);
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(max_decoded_bytes));
    limited.read_to_end(&mut decoded).map_err(|error| IngestError::Gzip { reason: error.to_string() })?;
    if decoded.len() > max_decoded_bytes {
        return Err(IngestError::TooLarge { limit_bytes: max_decoded_bytes });
    }
    Ok(decoded)
}

/// Undoes an HTTP `Content-Encoding` (`None`, empty or `identity`: the body itself; `gzip`/`x-gzip`;
/// `snappy`), enforcing `max_decoded_bytes` on the result in every case.
///
/// # Errors
/// [`IngestError::UnsupportedEncoding`] for other encodings (HTTP 415), [`IngestError::TooLarge`],
/// [`IngestError::Gzip`], [`IngestError::Snappy`].
pub fn decode_content_encoding<'a>(
    content_encoding: Option<&str>,
    body: &'a [u8],
    max_decoded_bytes: usize,
) -> Result<Cow<'a, [u8]>, IngestError> {
    let encoding = content_encoding.map(str::trim).unwrap_or("");
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        if body.len() > max_decoded_bytes {
            return Err(IngestError::TooLarge { limit_bytes: max_decoded_bytes });
        }
        return Ok(Cow::Borrowed(body));
    }
    if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        return decode_gzip(body, max_decoded_bytes).map(Cow::Owned);
    }
    if encoding.eq_ignore_ascii_case("snappy") {
        return decode_snappy(body, max_decoded_bytes).map(Cow::Owned);
    }
    Err(IngestError::UnsupportedEncoding { encoding: encoding.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_model::storage::ErrorKind;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("write to vec");
        encoder.finish().expect("finish gzip")
    }

    #[test]
    fn snappy_round_trip() {
        let body = snap::raw::Encoder::new().compress_vec(b"hello hello hello").expect("compress");
        assert_eq!(decode_snappy(&body, 1024).expect("decodes"), b"hello hello hello");
    }

    #[test]
    fn snappy_into_a_reused_buffer_returns_only_this_body() {
        let mut buffer = Vec::new();
        let long = snap::raw::Encoder::new().compress_vec(&[b'x'; 5000]).expect("compress");
        assert_eq!(decode_snappy_reusing(&long, 1 << 20, &mut buffer).expect("decodes"), &[b'x'; 5000][..]);
        // A shorter body after a longer one: the stale tail of the buffer is not part of the result.
        let short = snap::raw::Encoder::new().compress_vec(b"hello hello hello").expect("compress");
        assert_eq!(decode_snappy_reusing(&short, 1 << 20, &mut buffer).expect("decodes"), b"hello hello hello");
        assert_eq!(buffer.len(), 5000, "the buffer keeps its size");
        let error = decode_snappy_reusing(&[0x05, 0x00, 0xff], 1024, &mut buffer).expect_err("corrupt");
        assert!(error.to_string().starts_with("snappy: corrupt input"), "{error}");
        let error = decode_snappy_reusing(&long, 100, &mut buffer).expect_err("too large");
        assert_eq!(error, IngestError::TooLarge { limit_bytes: 100 });
    }

    #[test]
    fn snappy_corrupt_input_is_named() {
        let error = decode_snappy(&[0x05, 0x00, 0xff], 1024).expect_err("corrupt");
        assert!(error.to_string().starts_with("snappy: corrupt input"), "{error}");
        assert_eq!(error.kind(), ErrorKind::BadData);
        let error = decode_snappy(&[], 1024).expect_err("empty");
        assert_eq!(error.to_string(), "snappy: corrupt input (empty)");
    }

    #[test]
    fn snappy_over_cap_is_too_large_before_decoding() {
        let body = snap::raw::Encoder::new().compress_vec(&[7u8; 4096]).expect("compress");
        let error = decode_snappy(&body, 100).expect_err("too large");
        assert_eq!(error, IngestError::TooLarge { limit_bytes: 100 });
        assert_eq!(error.kind(), ErrorKind::Limit);
    }

    #[test]
    fn gzip_round_trip_and_cap() {
        let body = gzip(&[b'a'; 10_000]);
        assert_eq!(decode_gzip(&body, 10_000).expect("decodes").len(), 10_000);
        assert_eq!(decode_gzip(&body, 9_999).expect_err("too large"), IngestError::TooLarge { limit_bytes: 9_999 });
        let truncated = &body[..body.len() - 4];
        assert!(matches!(decode_gzip(truncated, 100_000), Err(IngestError::Gzip { .. })));
        assert!(matches!(decode_gzip(b"not gzip at all", 100), Err(IngestError::Gzip { .. })));
    }

    #[test]
    fn content_encoding_dispatch() {
        assert_eq!(decode_content_encoding(None, b"raw", 10).expect("identity").as_ref(), b"raw");
        assert_eq!(decode_content_encoding(Some("identity"), b"raw", 2), Err(IngestError::TooLarge { limit_bytes: 2 }));
        assert_eq!(decode_content_encoding(Some("GZIP"), &gzip(b"xyz"), 10).expect("gzip").as_ref(), b"xyz");
        let error = decode_content_encoding(Some("br"), b"", 10).expect_err("unsupported");
        assert_eq!(error.to_string(), "unsupported content encoding \"br\"");
    }
}

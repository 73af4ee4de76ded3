//! Where a chunk file's bytes go: per part of the chunk data (timestamps, line lengths, structured metadata,
//! field columns, lines) after zstd, the bloom filters, and the index and headers; then what other zstd
//! parameters would store and how fast they decompress.
//!
//! ```text
//! cargo run --release -p oxeye-logstore --example chunk_breakdown -- <dir>/chunks/00000000.chunks
//! ```
//!
//! A section's share of a frame ("zstd") is estimated as the level-1 frame of the data up to and including it
//! minus the frame of the data before it, the lines' as the stored frame minus the frame before them, so the
//! parts add up to the stored data; "alone" is the section compressed as a frame of its own. Then: the
//! timestamp deltas and line lengths stored as byte planes instead of varints, and the distinct tokens per
//! line the bloom filter holds, by kind (short ones of digits and `- . : T Z`, other short ones, long ones,
//! long hexadecimal ones) with the minimizers of the long ones.
//!
//! `VARIANTS="level=2;split=2;split=1,wlog=20"` adds rows recompressing every chunk's data: zstd parameters
//! (`level`, `wlog`, `hlog`, `clog`, `slog`, `mml` minimum match, `tlen` target length, `strat` 1 fast to 9
//! btultra2, `ldm`, `lit` literal compression 1 on 2 off, `bsize` target block size), and `split=1` (a zstd
//! block ends before the lines), `split=2` (after the header and every section), `lsplit=N` (and every N
//! bytes of lines). Decompression is timed in wall time, the least of 5 passes over all chunks.

use std::path::Path;
use std::time::Instant;

use oxeye_logstore::chunk_file::ChunkFile;

fn uvarint(bytes: &[u8], offset: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    while let Some(byte) = bytes.get(*offset) {
        *offset += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    value
}

fn zstd_len(bytes: &[u8]) -> usize {
    zstd::bulk::compress(bytes, 1).map_or(0, |frame| frame.len())
}

fn cctx(
    parameters: &[zstd::zstd_safe::CParameter],
) -> Result<zstd::zstd_safe::CCtx<'static>, Box<dyn std::error::Error>> {
    let mut context = zstd::zstd_safe::CCtx::try_create().ok_or("cctx")?;
    context.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(1)).map_err(|c| format!("{c}"))?;
    for parameter in parameters {
        context.set_parameter(*parameter).map_err(|c| format!("{c}"))?;
    }
    Ok(context)
}

fn compress_split(
    context: &mut zstd::zstd_safe::CCtx<'static>,
    plain: &[u8],
    cuts: &[usize],
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use zstd::zstd_safe::{InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};
    context.set_pledged_src_size(Some(plain.len() as u64)).map_err(|c| format!("{c}"))?;
    let mut out: Vec<u8> = Vec::with_capacity(zstd::zstd_safe::compress_bound(plain.len()) + 64);
    let mut start = 0;
    for (index, end) in cuts.iter().copied().chain([plain.len()]).enumerate() {
        let last = index == cuts.len();
        let mut input = InBuffer::around(&plain[start..end]);
        loop {
            let written = out.len();
            let mut output = OutBuffer::around_pos(&mut out, written);
            let directive = if last { ZSTD_EndDirective::ZSTD_e_end } else { ZSTD_EndDirective::ZSTD_e_flush };
            let remaining = context.compress_stream2(&mut output, &mut input, directive).map_err(|c| format!("{c}"))?;
            if remaining == 0 && input.pos() == input.src.len() {
                break;
            }
        }
        start = end;
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: chunk_breakdown <chunk file>")?;
    let file = ChunkFile::open(Path::new(&path), 0)?;
    let mut entries = 0u64;
    let mut line_bytes = 0u64;
    let mut bloom = 0usize;
    let mut data = 0usize;
    // header fields, timestamps, lengths, metadata, field columns, lines: raw bytes and zstd share.
    let names = ["header", "timestamps", "line lengths", "metadata", "field columns", "lines"];
    let mut raw = [0usize; 6];
    let mut packed = [0usize; 6];
    let mut alone = [0usize; 6];
    let mut decoded: Vec<Vec<u8>> = Vec::new();
    let mut section_ends: Vec<Vec<usize>> = Vec::new();
    for (_, meta) in &file.chunks {
        entries += u64::from(meta.entries);
        line_bytes += meta.line_bytes;
        bloom += meta.bloom_len as usize;
        let frame = file.read_data(meta)?;
        data += frame.len();
        let plain = zstd::bulk::decompress(&frame, 1 << 30)?;
        let mut offset = 0;
        let _count = uvarint(&plain, &mut offset);
        let _unit = uvarint(&plain, &mut offset);
        let lengths: Vec<usize> = (0..4).map(|_| uvarint(&plain, &mut offset) as usize).collect();
        let mut ends = vec![offset];
        for length in &lengths {
            ends.push(ends.last().copied().unwrap_or(0) + length);
        }
        ends.push(plain.len());
        let mut before = 0;
        let mut start = 0;
        for (part, end) in ends.iter().enumerate() {
            raw[part] += end - start;
            alone[part] += zstd_len(&plain[start..*end]);
            let upto = if part + 1 == ends.len() { frame.len() } else { zstd_len(&plain[..*end]) };
            packed[part] += upto - before;
            before = upto;
            start = *end;
        }
        decoded.push(plain);
        section_ends.push(ends);
    }
    let per_line = |bytes: usize| bytes as f64 / entries as f64;
    // Bloom filter false positives: absent needles of three shapes, each looked up in every chunk's filter.
    {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let shapes: [(&str, Vec<String>); 3] = [
            ("trace id (32 hex)", (0..1000).map(|_| format!("{:016x}{:016x}", next(), next())).collect()),
            ("span id (16 hex)", (0..1000).map(|_| format!("{:016x}", next())).collect()),
            ("one short word", (0..1000).map(|_| format!(r#""user_id": "u{}""#, next() % 1_000_000)).collect()),
        ];
        let filters: Vec<Vec<u8>> =
            file.chunks.iter().map(|(_, meta)| file.read_bloom(meta)).collect::<Result<_, _>>()?;
        for (shape, needles) in &shapes {
            let mut passed = 0usize;
            for needle in needles {
                let Some(keys) = oxeye_logstore::bloom::needle_keys(needle) else { continue };
                passed += filters.iter().filter(|filter| oxeye_logstore::bloom::may_contain_all(filter, &keys)).count();
            }
            println!(
                "bloom false positives, {shape}: {:.3}% of {} lookups",
                100.0 * passed as f64 / (needles.len() * filters.len()) as f64,
                needles.len() * filters.len()
            );
        }
    }
    // Other encodings of the timestamp and line length sections, each compressed alone.
    {
        let mut planes_ts = 0usize;
        let mut entropy_ts_bits = 0f64;
        let mut elias_ts_bits = 0f64;
        let mut planes_len = 0usize;
        let mut distinct_tokens: [usize; 4] = [0; 4];
        let mut minimizers = 0usize;
        for (plain, ends) in decoded.iter().zip(&section_ends) {
            let mut offset = ends[0];
            let mut deltas = Vec::new();
            while offset < ends[1] {
                let raw = uvarint(plain, &mut offset);
                deltas.push(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
            {
                let mut counts: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
                for delta in deltas.iter().skip(1) {
                    *counts.entry(*delta).or_default() += 1;
                }
                let total = deltas.len().saturating_sub(1).max(1) as f64;
                let bits: f64 = counts.values().map(|count| *count as f64 * -(*count as f64 / total).log2()).sum();
                entropy_ts_bits += bits;
                let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
                for delta in deltas.iter().skip(1) {
                    *counts.entry(64 - (*delta as u64).leading_zeros()).or_default() += 1;
                }
                let classes: f64 = counts.values().map(|count| *count as f64 * -(*count as f64 / total).log2()).sum();
                let raw_bits: f64 = deltas
                    .iter()
                    .skip(1)
                    .map(|delta| (64 - (*delta as u64).leading_zeros()).saturating_sub(1) as f64)
                    .sum();
                elias_ts_bits += classes + raw_bits;
            }
            let mut planes = Vec::new();
            for byte in 0..3 {
                planes.extend(deltas.iter().skip(1).map(|delta| (delta >> (8 * byte)) as u8));
            }
            planes_ts += zstd_len(&planes) + 8;
            let mut offset = ends[1];
            let mut lengths = Vec::new();
            while offset < ends[2] {
                lengths.push(uvarint(plain, &mut offset));
            }
            let mut planes = Vec::new();
            for byte in 0..2 {
                planes.extend(lengths.iter().map(|length| (length >> (8 * byte)) as u8));
            }
            planes_len += zstd_len(&planes);
            // Distinct tokens by class: 0 short digits-and-punctuation, 1 short other, 2 long, 3 long hex.
            let lines = &plain[ends[4]..];
            let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
            let mut start = None;
            for (position, byte) in lines.iter().enumerate().chain([(lines.len(), &b' ')]) {
                let token = oxeye_logstore::bloom::is_token_byte(*byte) && position < lines.len();
                match (token, start) {
                    (true, None) => start = Some(position),
                    (false, Some(from)) => {
                        let text = &lines[from..position];
                        if seen.insert(text) {
                            let class = if text.len() < 16 {
                                if text.iter().all(|b| b.is_ascii_digit() || b"-.:TZ".contains(b)) { 0 } else { 1 }
                            } else if text.iter().all(|b| b.is_ascii_hexdigit()) {
                                3
                            } else {
                                2
                            };
                            distinct_tokens[class] += 1;
                            if text.len() >= 16 {
                                oxeye_logstore::bloom::for_each_minimizer(text, |_| minimizers += 1);
                            }
                        }
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        println!(
            "timestamp deltas: order-0 entropy {:.3} B/line, bit length entropy-coded + raw bits {:.3} B/line",
            entropy_ts_bits / 8.0 / entries as f64,
            elias_ts_bits / 8.0 / entries as f64
        );
        println!(
            "timestamps as 3 byte planes {:.3} B/line; line lengths as 2 byte planes {:.3} B/line",
            per_line(planes_ts),
            per_line(planes_len)
        );
        println!(
            "distinct tokens per line (per chunk): short digits {:.3}, short other {:.3}, long {:.3}, long hex {:.3}; minimizers of long {:.3}",
            per_line(distinct_tokens[0]),
            per_line(distinct_tokens[1]),
            per_line(distinct_tokens[2]),
            per_line(distinct_tokens[3]),
            per_line(minimizers)
        );
    }
    let other = file.size_bytes as usize - bloom - data;
    println!(
        "{} chunks, {entries} entries, {:.1} line bytes/entry; file {} bytes = {:.3} B/line",
        file.chunks.len(),
        line_bytes as f64 / entries as f64,
        file.size_bytes,
        per_line(file.size_bytes as usize)
    );
    println!("{:<16} {:>10} {:>10} {:>12}", "part", "raw B/line", "zstd B/line", "alone B/line");
    for part in 0..6 {
        println!(
            "{:<16} {:>10.3} {:>10.3} {:>12.3}",
            names[part],
            per_line(raw[part]),
            per_line(packed[part]),
            per_line(alone[part])
        );
    }
    println!("{:<16} {:>10} {:>10.3}", "chunk data", "", per_line(data));
    println!("{:<16} {:>10} {:>10.3}", "bloom filters", "", per_line(bloom));
    println!("{:<16} {:>10} {:>10.3}", "index+headers", "", per_line(other));

    // zstd parameter variants: stored bytes and decompression CPU over every chunk (least of 5 passes).
    use zstd::zstd_safe::{CParameter, Strategy};
    let variant = std::env::var("VARIANTS").unwrap_or_default();
    let mut variants: Vec<(String, Vec<CParameter>)> = vec![("level 1".into(), vec![])];
    for spec in variant.split(';').filter(|spec| !spec.is_empty()) {
        let mut parameters = Vec::new();
        for setting in spec.split(',') {
            let (name, value) = setting.split_once('=').ok_or("VARIANTS: name=value,...;...")?;
            if name == "split" || name == "lsplit" {
                continue;
            }
            let signed: i32 = value.parse()?;
            let value = signed.max(0) as u32;
            parameters.push(match name {
                "level" => CParameter::CompressionLevel(signed),
                "wlog" => CParameter::WindowLog(value),
                "hlog" => CParameter::HashLog(value),
                "clog" => CParameter::ChainLog(value),
                "slog" => CParameter::SearchLog(value),
                "mml" => CParameter::MinMatch(value),
                "tlen" => CParameter::TargetLength(value),
                "strat" => CParameter::Strategy(match value {
                    1 => Strategy::ZSTD_fast,
                    2 => Strategy::ZSTD_dfast,
                    3 => Strategy::ZSTD_greedy,
                    4 => Strategy::ZSTD_lazy,
                    5 => Strategy::ZSTD_lazy2,
                    6 => Strategy::ZSTD_btlazy2,
                    7 => Strategy::ZSTD_btopt,
                    8 => Strategy::ZSTD_btultra,
                    _ => Strategy::ZSTD_btultra2,
                }),
                "ldm" => CParameter::EnableLongDistanceMatching(value != 0),
                "lit" => CParameter::LiteralCompressionMode(match value {
                    1 => zstd::zstd_safe::ParamSwitch::Enable,
                    2 => zstd::zstd_safe::ParamSwitch::Disable,
                    _ => zstd::zstd_safe::ParamSwitch::Auto,
                }),
                "bsize" => CParameter::TargetCBlockSize(value),
                _ => return Err(format!("unknown parameter {name}").into()),
            });
        }
        variants.push((spec.to_string(), parameters));
    }
    let mut decompressor = zstd::bulk::Decompressor::new()?;
    let mut out = Vec::with_capacity(8 << 20);
    for (name, parameters) in &variants {
        let mut compressor = zstd::bulk::Compressor::new(1)?;
        for parameter in parameters {
            compressor.set_parameter(*parameter)?;
        }
        let mut frames = Vec::new();
        let compress_started = Instant::now();
        // split=1: a block ends before the lines; split=2: after every section.
        let split =
            name.split(',').find_map(|setting| setting.strip_prefix("split=")).map_or(0, |v| v.parse().unwrap_or(0));
        for (plain, ends) in decoded.iter().zip(&section_ends) {
            if split == 0 {
                frames.push(compressor.compress(plain)?);
                continue;
            }
            let mut cuts: Vec<usize> = match split {
                1 => vec![ends[ends.len() - 2]],
                _ => ends[..ends.len() - 1].to_vec(),
            };
            if let Some(step) = name.split(',').find_map(|setting| setting.strip_prefix("lsplit=")) {
                let step: usize = step.parse()?;
                let mut at = cuts.last().copied().unwrap_or(0) + step;
                while at < plain.len() {
                    cuts.push(at);
                    at += step;
                }
            }
            frames.push(compress_split(&mut cctx(parameters)?, plain, &cuts)?);
        }
        let compress_seconds = compress_started.elapsed().as_secs_f64();
        let stored: usize = frames.iter().map(Vec::len).sum();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            for (frame, plain) in frames.iter().zip(&decoded) {
                out.clear();
                out.reserve(plain.len());
                decompressor.decompress_to_buffer(frame, &mut out)?;
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        let plain_bytes: usize = decoded.iter().map(Vec::len).sum();
        println!(
            "{name:<40} data {:.3} B/line (delta {:+.3}), compress {:.0} MB/s wall, decompress {:.0} MB/s wall (best of 5)",
            per_line(stored),
            per_line(stored) - per_line(data),
            plain_bytes as f64 / 1e6 / compress_seconds.max(0.001),
            plain_bytes as f64 / 1e6 / best
        );
    }
    Ok(())
}

//! A small, valid PNG: an 8-bit RGB "map overlay" (sea, islands, grid, markers) with the title,
//! originator and marking in `tEXt` chunks. The image data is a zlib stream of stored deflate
//! blocks: valid for every decoder, and far cheaper to produce than compressing.

use crate::content::Ctx;
use crate::rng::Rng;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
const SIZES: &[(u32, u32)] = &[(64, 48), (80, 60), (96, 64)];

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Latin-1 text for a `tEXt` chunk (accents outside Latin-1 folded, the rest `?`).
fn latin1(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) if b >= 0x20 => out.push(b),
            Ok(_) => out.push(b' '),
            Err(_) => {
                let folded = dive_core::normalize::fold_char(c);
                let before = out.len();
                out.extend(
                    folded
                        .chars()
                        .filter_map(|f| u8::try_from(u32::from(f)).ok()),
                );
                if out.len() == before {
                    out.push(b'?');
                }
            }
        }
    }
    out
}

fn text_chunk(out: &mut Vec<u8>, keyword: &str, text: &str) {
    let mut data = keyword.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(&latin1(text));
    chunk(out, b"tEXt", &data);
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the largest block for which the sums cannot overflow u32 (zlib's NMAX).
    for block in data.chunks(5552) {
        for &x in block {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// zlib (RFC 1950) wrapping stored deflate blocks (RFC 1951 3.2.4).
pub(crate) fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16 + data.len() / 65_535 * 5);
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(65_535).peekable();
    if data.is_empty() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

pub(crate) fn image(ctx: &Ctx<'_>, rng: &mut Rng) -> Vec<u8> {
    let (w, h) = *rng.pick(SIZES);
    let islands: Vec<(i64, i64, i64)> = (0..rng.range(2, 5))
        .map(|_| {
            (
                rng.below(w as usize) as i64,
                rng.below(h as usize) as i64,
                rng.range(6, 18) as i64,
            )
        })
        .collect();
    let markers: Vec<(u32, u32)> = (0..rng.range(2, 6))
        .map(|_| {
            (
                rng.range(2, w as usize - 3) as u32,
                rng.range(2, h as usize - 3) as u32,
            )
        })
        .collect();
    let row_len = 1 + 3 * w as usize;
    let mut raw = vec![0u8; row_len * h as usize];
    // Painted in layers (sea, island spans, grid, markers) rather than testing every shape at
    // every pixel. Byte 0 of each row is the filter type: 0, none.
    for y in 0..h {
        let row = &mut raw[y as usize * row_len + 1..(y as usize + 1) * row_len];
        let g = 60 + (y * 100 / h) as u8;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[20, g, 150 + (x as u32 * 60 / w) as u8]);
        }
        for &(cx, cy, r) in &islands {
            let dy = i64::from(y) - cy;
            if dy * dy >= r * r {
                continue;
            }
            // Widest dx with dx² + dy² < r².
            let mut dx = 0;
            while (dx + 1) * (dx + 1) + dy * dy < r * r {
                dx += 1;
            }
            let x0 = (cx - dx).max(0) as u32;
            let x1 = (cx + dx).min(i64::from(w) - 1);
            if x1 < 0 {
                continue;
            }
            for x in x0..=x1 as u32 {
                let at = 3 * x as usize;
                row[at..at + 3].copy_from_slice(&[96 + ((x * 7 + y * 3) % 40) as u8, 140, 70]);
            }
        }
        for x in 0..w {
            if x % 16 == 0 || y % 16 == 0 {
                let at = 3 * x as usize;
                for c in &mut row[at..at + 3] {
                    *c /= 2;
                }
            }
        }
    }
    for &(mx, my) in &markers {
        for y in my - 1..=my + 1 {
            for x in mx - 1..=mx + 1 {
                let at = y as usize * row_len + 1 + 3 * x as usize;
                raw[at..at + 3].copy_from_slice(&[220, 30, 30]);
            }
        }
    }
    let idat = zlib_stored(&raw);
    let mut out = Vec::with_capacity(idat.len() + 512);
    out.extend_from_slice(&SIGNATURE);
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    text_chunk(&mut out, "Title", ctx.title);
    text_chunk(&mut out, "Author", ctx.originator);
    text_chunk(&mut out, "Description", ctx.description);
    text_chunk(&mut out, "Comment", ctx.marking);
    text_chunk(
        &mut out,
        "Creation Time",
        &crate::content::rfc3339(ctx.created),
    );
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_reference() {
        // RFC 1950's example value for "Wikipedia".
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
    }

    #[test]
    fn zlib_stored_splits_large_input() {
        let data = vec![7u8; 70_000];
        let z = zlib_stored(&data);
        assert_eq!(z.len(), 2 + 5 + 65_535 + 5 + (70_000 - 65_535) + 4);
        assert_eq!(z[2], 0, "first block not final");
        assert_eq!(z[2 + 5 + 65_535], 1, "last block final");
    }
}

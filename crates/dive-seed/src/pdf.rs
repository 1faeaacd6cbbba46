//! A small, valid one-page PDF 1.4: standard Helvetica fonts (WinAnsiEncoding), a text content
//! stream with the marking as header and footer, an Info dictionary, and an exact cross-reference
//! table (every offset points at its object; `startxref` at `xref`).

use std::fmt::Write as _;

use crate::content::{Ctx, wrap};

const PAGE_W: u32 = 595; // A4 in points
const PAGE_H: u32 = 842;
const MARGIN: u32 = 50;
const MAX_BODY_LINES: usize = 48;

/// Append `s` as the body of a PDF literal string: WinAnsi bytes, non-ASCII as octal escapes so
/// the file stays 7-bit; characters outside Latin-1 lose their accents (`Ś` → `S`) or become `?`.
fn pdf_string(s: &str, out: &mut String) {
    let byte = |b: u8, out: &mut String| match b {
        b'(' | b')' | b'\\' => {
            out.push('\\');
            out.push(b as char);
        }
        0x20..=0x7e => out.push(b as char),
        0xa0..=0xff => {
            let _ = write!(out, "\\{b:03o}");
        }
        _ => out.push(' '),
    };
    for c in s.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => byte(b, out),
            Err(_) => {
                let folded = dive_core::normalize::fold_char(c);
                let mut any = false;
                for f in folded.chars() {
                    if let Ok(b) = u8::try_from(u32::from(f)) {
                        byte(b, out);
                        any = true;
                    }
                }
                if !any {
                    out.push('?');
                }
            }
        }
    }
}

fn text_block(font: &str, size: u32, x: u32, y: u32, leading: u32, lines: &[String]) -> String {
    let mut s = String::with_capacity(64 + lines.iter().map(|l| l.len() + 8).sum::<usize>());
    let _ = writeln!(s, "BT /{font} {size} Tf {x} {y} Td {leading} TL");
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            s.push_str("T* ");
        }
        s.push('(');
        pdf_string(l, &mut s);
        s.push_str(") Tj\n");
    }
    s.push_str("ET\n");
    s
}

/// PDF date `D:YYYYMMDDHHmmSSZ`.
fn pdf_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "D:{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub(crate) fn document(ctx: &Ctx<'_>, body: &[String]) -> Vec<u8> {
    let banner = wrap(ctx.marking, 110);
    let banner_top = PAGE_H - 22;
    let mut content = text_block("F2", 8, MARGIN, banner_top, 10, &banner);
    let title = wrap(ctx.title, 70);
    let title_y = banner_top - 10 * banner.len() as u32 - 22;
    content.push_str(&text_block("F2", 13, MARGIN, title_y, 16, &title));
    let meta = vec![
        format!("Originator: {}", ctx.originator),
        format!("Date: {}", crate::content::rfc3339(ctx.created)),
        format!("Original marking: {}", ctx.original),
        format!("Reference: {}", ctx.id),
    ];
    let meta_y = title_y - 16 * title.len() as u32 - 8;
    content.push_str(&text_block("F1", 9, MARGIN, meta_y, 12, &meta));
    let body_y = meta_y - 12 * meta.len() as u32 - 14;
    let n = body.len().min(MAX_BODY_LINES);
    content.push_str(&text_block("F1", 10, MARGIN, body_y, 13, &body[..n]));
    content.push_str(&text_block(
        "F2",
        8,
        MARGIN,
        18 + 10 * (banner.len() as u32 - 1),
        10,
        &banner,
    ));

    let mut info = String::from("<< /Title (");
    pdf_string(ctx.title, &mut info);
    info.push_str(") /Author (");
    pdf_string(ctx.originator, &mut info);
    info.push_str(") /Subject (");
    pdf_string(ctx.marking, &mut info);
    let _ = write!(
        info,
        ") /Producer (DIVE seed) /CreationDate ({}) >>",
        pdf_date(ctx.created)
    );

    let objects: [String; 7] = [
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] \
/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>"
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
            .into(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
        info,
    ];
    // The binary comment line marks the file as binary for transfer tools (PDF 32000 7.5.2).
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref_at = out.len();
    let mut xref = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for off in offsets {
        let _ = writeln!(xref, "{off:010} 00000 n ");
    }
    let _ = write!(
        xref,
        "trailer\n<< /Size {} /Root 1 0 R /Info 7 0 R >>\nstartxref\n{xref_at}\n%%EOF\n",
        objects.len() + 1
    );
    out.extend_from_slice(xref.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_and_7_bit() {
        let mut s = String::new();
        pdf_string("SECRET DÉFENSE (a\\b) ŚCIŚLE – x", &mut s);
        assert_eq!(s, "SECRET D\\311FENSE \\(a\\\\b\\) SCISLE ? x");
        assert!(s.is_ascii());
    }
}

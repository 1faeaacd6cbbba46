//! Generated document contents: plain text, Markdown, JSON, CSV, HTML, PDF and PNG, each carrying
//! the document's marking the way real classified material does (banner lines, a `marking` field,
//! PDF header/footer, a PNG text chunk).

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::rng::Rng;
use crate::vocab;
use crate::{pdf, png};

/// The type of a generated document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContentKind {
    Text,
    Markdown,
    Json,
    Csv,
    Html,
    Pdf,
    Png,
}

impl ContentKind {
    pub const ALL: [ContentKind; 7] = [
        ContentKind::Text,
        ContentKind::Markdown,
        ContentKind::Json,
        ContentKind::Csv,
        ContentKind::Html,
        ContentKind::Pdf,
        ContentKind::Png,
    ];

    /// Relative frequency in a corpus (percent).
    pub(crate) const WEIGHTS: [u32; 7] = [20, 18, 15, 15, 14, 12, 6];

    pub fn mime_type(self) -> &'static str {
        match self {
            ContentKind::Text => "text/plain",
            ContentKind::Markdown => "text/markdown",
            ContentKind::Json => "application/json",
            ContentKind::Csv => "text/csv",
            ContentKind::Html => "text/html",
            ContentKind::Pdf => "application/pdf",
            ContentKind::Png => "image/png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ContentKind::Text => "txt",
            ContentKind::Markdown => "md",
            ContentKind::Json => "json",
            ContentKind::Csv => "csv",
            ContentKind::Html => "html",
            ContentKind::Pdf => "pdf",
            ContentKind::Png => "png",
        }
    }

    /// Kinds of document of this content type, for titles.
    pub(crate) fn document_kinds(self) -> &'static [&'static str] {
        match self {
            ContentKind::Text => &[
                "Memorandum",
                "Situation Report",
                "Intelligence Summary",
                "Trip Report",
                "Liaison Note",
            ],
            ContentKind::Markdown => &[
                "Briefing Notes",
                "Planning Guidance",
                "Lessons Learned",
                "Meeting Minutes",
            ],
            ContentKind::Json => &[
                "Track Data Export",
                "Sensor Feed Snapshot",
                "Order of Battle Extract",
            ],
            ContentKind::Csv => &[
                "Logistics Status",
                "Maintenance Log",
                "Readiness Report",
                "Movement Table",
            ],
            ContentKind::Html => &["Daily Brief", "Bulletin", "Watch Officer Log"],
            ContentKind::Pdf => &[
                "Directive",
                "Assessment",
                "Concept of Operations",
                "Threat Assessment",
            ],
            ContentKind::Png => &["Imagery", "Map Overlay", "Network Diagram"],
        }
    }
}

/// What the content is about (all chosen by the generator before the content is written).
pub(crate) struct Ctx<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    /// The display marking (`SECRET//FVEY//REL TO …`).
    pub marking: &'a str,
    /// The national marking and its nation, e.g. `GEHEIM (DEU)`.
    pub original: &'a str,
    /// The originating unit, e.g. `FRA Joint Staff J2 (Intelligence)`.
    pub originator: &'a str,
    pub created: OffsetDateTime,
    pub operation: &'a str,
    pub topic: &'a str,
    pub region: &'a str,
    /// Nations that may appear in the text (the releasability list).
    pub nations: &'a [&'a str],
}

pub(crate) fn generate(kind: ContentKind, ctx: &Ctx<'_>, rng: &mut Rng) -> Vec<u8> {
    match kind {
        ContentKind::Text => text(ctx, rng).into_bytes(),
        ContentKind::Markdown => markdown(ctx, rng).into_bytes(),
        ContentKind::Json => json(ctx, rng),
        ContentKind::Csv => csv(ctx, rng).into_bytes(),
        ContentKind::Html => html(ctx, rng).into_bytes(),
        ContentKind::Pdf => {
            let lines = wrap(&paragraphs(ctx, rng, 3, 6).join(" "), 92);
            pdf::document(ctx, &lines)
        }
        ContentKind::Png => png::image(ctx, rng),
    }
}

/// `t` moved by `seconds`, or `t` itself where that would leave the representable range (a spec's
/// `now` is caller input: an absurd one must not panic).
pub(crate) fn shift(t: OffsetDateTime, seconds: i64) -> OffsetDateTime {
    t.checked_add(time::Duration::seconds(seconds)).unwrap_or(t)
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    // Dates here are within a year of `now`, always formattable.
    t.format(&Rfc3339).unwrap_or_default()
}

/// `YYYY-MM-DD`, written without an intermediate string.
fn date(t: OffsetDateTime) -> time::Date {
    t.date()
}

/// ASCII-lower-case display of a vocabulary word, without an intermediate string.
struct Lower<'a>(&'a str);

impl std::fmt::Display for Lower<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            f.write_char(c.to_ascii_lowercase())?;
        }
        Ok(())
    }
}

/// One sentence of report prose.
fn sentence(ctx: &Ctx<'_>, rng: &mut Rng, out: &mut String) {
    let nation = *rng.pick(ctx.nations);
    let unit = rng.pick(vocab::UNITS).1;
    let later = shift(ctx.created, rng.range(1, 14) as i64 * 86_400);
    // `write!` to a String cannot fail.
    let _ = match rng.below(9) {
        0 => write!(
            out,
            "{nation} {unit} reported {} in the {} at {:02}{:02}Z on {}.",
            rng.word(vocab::ACTIVITIES),
            rng.word(vocab::REGIONS),
            rng.below(24),
            rng.below(60),
            date(ctx.created),
        ),
        1 => {
            let n = rng.range(2, 12);
            write!(
                out,
                "Assets assigned to {} include {n} units of type {}, {} of them {}.",
                ctx.operation,
                rng.word(vocab::ASSETS),
                rng.range(1, n),
                Lower(rng.word(vocab::STATUSES)),
            )
        }
        2 => write!(
            out,
            "Assessment: {} is {} linked to {} activity in the {}.",
            rng.word(vocab::ACTIVITIES),
            rng.pick(&["likely", "unlikely", "possibly", "almost certainly"]),
            Lower(ctx.topic),
            ctx.region,
        ),
        3 => write!(out, "Recommendation: {}.", rng.word(vocab::RECOMMENDATIONS)),
        4 => write!(
            out,
            "A {} from {nation} remains {} near grid {}{} {:05} {:05}.",
            rng.word(vocab::ASSETS),
            Lower(rng.word(vocab::STATUSES)),
            rng.range(30, 38),
            (b'S' + rng.below(8) as u8) as char,
            rng.below(100_000),
            rng.below(100_000),
        ),
        5 => write!(
            out,
            "Reporting confidence is {}; {} independent sources corroborate the observation.",
            rng.pick(&["low", "moderate", "high"]),
            rng.range(1, 5),
        ),
        6 => write!(
            out,
            "The {} cell will provide an update on {} by {}.",
            ctx.region,
            Lower(ctx.topic),
            date(later),
        ),
        7 => write!(
            out,
            "Fuel state across the task group is {} percent, sufficient for {} days of operations.",
            rng.range(35, 98),
            rng.range(2, 21),
        ),
        _ => write!(
            out,
            "Liaison officers from {} and {} met on {} to coordinate {}.",
            nation,
            rng.pick(ctx.nations),
            date(later),
            Lower(ctx.topic),
        ),
    };
}

fn paragraph(ctx: &Ctx<'_>, rng: &mut Rng) -> String {
    let mut p = String::with_capacity(512);
    for i in 0..rng.range(2, 5) {
        if i > 0 {
            p.push(' ');
        }
        sentence(ctx, rng, &mut p);
    }
    p
}

fn paragraphs(ctx: &Ctx<'_>, rng: &mut Rng, min: usize, max: usize) -> Vec<String> {
    (0..rng.range(min, max))
        .map(|_| paragraph(ctx, rng))
        .collect()
}

/// Greedy word wrap (for the PDF, which has no layout engine).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in text.split_whitespace() {
        let n = word.chars().count();
        if len > 0 && len + 1 + n > width {
            lines.push(std::mem::take(&mut line));
            len = 0;
        }
        if len > 0 {
            line.push(' ');
            len += 1;
        }
        line.push_str(word);
        len += n;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn text(ctx: &Ctx<'_>, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "{m}\n\n{t}\n\nFROM:       {o}\nDATE:       {d}\nREFERENCE:  {id}\nORIGINAL:   {orig}\nSUBJECT:    {topic}, {region}\n\n",
        m = ctx.marking,
        t = ctx.title,
        o = ctx.originator,
        d = rfc3339(ctx.created),
        id = ctx.id,
        orig = ctx.original,
        topic = ctx.topic,
        region = ctx.region,
    );
    for (i, p) in paragraphs(ctx, rng, 3, 9).iter().enumerate() {
        let _ = writeln!(s, "{}. {p}\n", i + 1);
    }
    let _ = writeln!(s, "{}", ctx.marking);
    s
}

fn markdown(ctx: &Ctx<'_>, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "**{m}**\n\n# {t}\n\n| | |\n|---|---|\n| Originator | {o} |\n| Date | {d} |\n| Original marking | {orig} |\n| Operation | {op} |\n\n{desc}\n\n## Summary\n\n{p}\n\n## Key points\n\n",
        m = ctx.marking,
        t = ctx.title,
        o = ctx.originator,
        d = rfc3339(ctx.created),
        orig = ctx.original,
        op = ctx.operation,
        desc = ctx.description,
        p = paragraph(ctx, rng),
    );
    for _ in 0..rng.range(3, 7) {
        s.push_str("- ");
        sentence(ctx, rng, &mut s);
        s.push('\n');
    }
    s.push_str("\n## Asset status\n\n| Asset | Nation | Status | Readiness |\n|---|---|---|---|\n");
    for _ in 0..rng.range(3, 10) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} % |",
            rng.word(vocab::ASSETS),
            rng.pick(ctx.nations),
            rng.word(vocab::STATUSES),
            rng.range(40, 100)
        );
    }
    let _ = write!(s, "\n## Discussion\n\n");
    for p in paragraphs(ctx, rng, 1, 4) {
        s.push_str(&p);
        s.push_str("\n\n");
    }
    let _ = writeln!(s, "**{}**", ctx.marking);
    s
}

/// A JSON string literal (RFC 8259 escaping).
fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A track-data report, pretty-printed (written directly: building a `serde_json::Value` for
/// every track cost more than the rest of the document).
fn json(ctx: &Ctx<'_>, rng: &mut Rng) -> Vec<u8> {
    let mut s = String::with_capacity(6144);
    s.push_str("{\n");
    let summary = paragraph(ctx, rng);
    let created = rfc3339(ctx.created);
    for (k, v) in [
        ("marking", ctx.marking),
        ("originalMarking", ctx.original),
        ("reportId", ctx.id),
        ("title", ctx.title),
        ("originator", ctx.originator),
        ("created", &created),
        ("operation", ctx.operation),
        ("region", ctx.region),
        ("summary", &summary),
    ] {
        let _ = write!(s, "  \"{k}\": ");
        json_str(v, &mut s);
        s.push_str(",\n");
    }
    s.push_str("  \"tracks\": [");
    for i in 0..rng.range(6, 30) {
        let seen = shift(ctx.created, -(rng.range(1, 600) as i64) * 60);
        let lat = rng.range(0, 1_400_000) as i64 - 700_000;
        let lon = rng.range(0, 3_600_000) as i64 - 1_800_000;
        s.push_str(if i == 0 { "\n" } else { ",\n" });
        let _ = write!(
            s,
            "    {{\n      \"trackId\": \"T{:04}\",\n      \"type\": ",
            i + 1
        );
        json_str(rng.word(vocab::ASSETS), &mut s);
        s.push_str(",\n      \"nation\": ");
        let nation = *rng.pick(ctx.nations);
        json_str(nation, &mut s);
        let _ = write!(
            s,
            ",\n      \"lat\": {}{}.{:04},\n      \"lon\": {}{}.{:04},\n      \"courseDeg\": {},\n      \"speedKts\": {},\n      \"status\": \"{}\",\n      \"firstSeen\": \"{}\"\n    }}",
            if lat < 0 { "-" } else { "" },
            lat.abs() / 10_000,
            lat.abs() % 10_000,
            if lon < 0 { "-" } else { "" },
            lon.abs() / 10_000,
            lon.abs() % 10_000,
            rng.below(360),
            rng.below(35),
            rng.word(vocab::STATUSES),
            rfc3339(seen),
        );
    }
    s.push_str("\n  ]\n}\n");
    s.into_bytes()
}

/// RFC 4180 field: quoted when it contains a comma, quote or line break.
fn csv_field(s: &str, out: &mut String) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn csv(ctx: &Ctx<'_>, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(4096);
    s.push_str("date,time_utc,nation,unit,asset,location,status,quantity,fuel_percent,remarks\r\n");
    for _ in 0..rng.range(12, 50) {
        let day = shift(ctx.created, -(rng.below(30) as i64) * 86_400);
        let _ = write!(
            s,
            "{},{:02}:{:02},{},",
            date(day),
            rng.below(24),
            rng.below(60),
            rng.pick(ctx.nations)
        );
        csv_field(rng.pick(vocab::UNITS).1, &mut s);
        s.push(',');
        csv_field(rng.word(vocab::ASSETS), &mut s);
        s.push(',');
        csv_field(rng.word(vocab::REGIONS), &mut s);
        let _ = write!(
            s,
            ",{},{},{},",
            rng.word(vocab::STATUSES),
            rng.range(1, 40),
            rng.range(10, 100)
        );
        csv_field(rng.word(vocab::RECOMMENDATIONS), &mut s);
        s.push_str("\r\n");
    }
    s
}

pub(crate) fn html_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn html(ctx: &Ctx<'_>, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(6144);
    let esc = |v: &str| {
        let mut o = String::with_capacity(v.len() + 8);
        html_escape(v, &mut o);
        o
    };
    let banner = esc(ctx.marking);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n\
<style>.banner{{background:#c8102e;color:#fff;text-align:center;font-weight:bold;padding:4px}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:2px 6px}}</style>\n</head>\n<body>\n\
<div class=\"banner\">{banner}</div>\n<h1>{t}</h1>\n<p><em>{desc}</em></p>\n\
<dl><dt>Originator</dt><dd>{o}</dd><dt>Date</dt><dd>{d}</dd><dt>Original marking</dt><dd>{orig}</dd></dl>\n",
        t = esc(ctx.title),
        desc = esc(ctx.description),
        o = esc(ctx.originator),
        d = rfc3339(ctx.created),
        orig = esc(ctx.original),
    );
    for p in paragraphs(ctx, rng, 2, 6) {
        let _ = writeln!(s, "<p>{}</p>", esc(&p));
    }
    s.push_str("<table>\n<tr><th>Asset</th><th>Nation</th><th>Status</th></tr>\n");
    for _ in 0..rng.range(3, 10) {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            rng.word(vocab::ASSETS),
            rng.pick(ctx.nations),
            rng.word(vocab::STATUSES)
        );
    }
    let _ = write!(
        s,
        "</table>\n<div class=\"banner\">{banner}</div>\n</body>\n</html>\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut s = String::new();
        csv_field("a,b \"c\"", &mut s);
        s.push('|');
        csv_field("plain", &mut s);
        assert_eq!(s, "\"a,b \"\"c\"\"\"|plain");
    }

    #[test]
    fn json_strings_escape_like_serde() {
        let mut s = String::new();
        json_str("a\"b\\c\nd\u{1}é", &mut s);
        assert_eq!(
            serde_json::from_str::<String>(&s).ok().as_deref(),
            Some("a\"b\\c\nd\u{1}é")
        );
        assert_eq!(
            s,
            serde_json::to_string("a\"b\\c\nd\u{1}é").unwrap_or_default()
        );
    }

    #[test]
    fn wrap_respects_width() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, vec!["aaa bbb", "ccc ddd"]);
        assert!(wrap("", 5).is_empty());
    }
}

//! Label normalisation: national markings vary in case, accents and separators in practice
//! ("Très Secret Défense", "TRES-SECRET_DEFENSE"), so lookups compare a folded key.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Characters that separate words in a marking and carry no meaning for matching.
pub const SEPARATORS: &[char] = &[' ', '\t', '-', '_', ':', '.', '/', '\'', '\u{a0}'];

/// Fold a label to its matching key: upper case, accents removed, separators removed.
///
/// `"Très Secret-Défense"` and `"TRES_SECRET_DEFENSE"` both become `"TRESSECRETDEFENSE"`.
pub fn label_key(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    if label.is_ascii() {
        // Most markings are ASCII: no case mapping tables or decomposition needed.
        out.extend(
            label
                .bytes()
                .filter(|b| !SEPARATORS.contains(&char::from(*b)) && !b.is_ascii_whitespace())
                .map(|b| char::from(b.to_ascii_uppercase())),
        );
        return out;
    }
    for c in label.to_uppercase().chars() {
        push_folded(c, &mut out);
    }
    out
}

/// The folded form of one upper-case character (empty for separators and combining marks).
pub fn fold_char(c: char) -> String {
    let mut out = String::new();
    push_folded(c, &mut out);
    out
}

fn push_folded(c: char, out: &mut String) {
    if SEPARATORS.contains(&c) || c.is_whitespace() {
        return;
    }
    // Letters that Unicode does not decompose into base + accent.
    let special = match c {
        'Ł' => Some("L"),
        'Ø' => Some("O"),
        'Æ' => Some("AE"),
        'Œ' => Some("OE"),
        'Đ' | 'Ð' => Some("D"),
        'Þ' => Some("TH"),
        'ı' => Some("I"),
        _ => None,
    };
    if let Some(s) = special {
        out.push_str(s);
        return;
    }
    for d in std::iter::once(c).nfd() {
        if !is_combining_mark(d) {
            out.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_and_separators() {
        assert_eq!(label_key("Très Secret-Défense"), "TRESSECRETDEFENSE");
        assert_eq!(label_key("TRES_SECRET_DEFENSE"), "TRESSECRETDEFENSE");
        assert_eq!(
            label_key("vs-nur für den Dienstgebrauch"),
            "VSNURFURDENDIENSTGEBRAUCH"
        );
        assert_eq!(label_key("UŻYTEK SŁUŻBOWY"), "UZYTEKSLUZBOWY");
        assert_eq!(label_key("OFFICIAL: SENSITIVE"), "OFFICIALSENSITIVE");
        assert_eq!(label_key("vs-NfD\t"), "VSNFD");
        // Decomposed input (e + combining acute) folds like the composed form.
        assert_eq!(label_key("DE\u{301}FENSE"), "DEFENSE");
    }
}

//! Compose durations (Go `time.ParseDuration` syntax): a sequence of decimal numbers, each with a
//! unit, e.g. `1m30s`, `500ms`, `1.5h`, `10us`. Units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
//! A bare `0` is accepted; negative durations are not.

use std::time::Duration;

/// Parse a duration; the error explains what is wrong (the caller adds file and key).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total: u128 = 0; // nanoseconds
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(format!("expected a number at \"{rest}\""));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "missing unit after \"{num}\" (use ns, us, ms, s, m or h, e.g. \"{num}s\")"
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit \"{other}\" (use ns, us, ms, s, m or h)"
                ));
            }
        };
        total = total
            .checked_add(scaled(num, unit_ns)?)
            .ok_or_else(|| "duration too large".to_string())?;
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| "duration too large".to_string())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `num` (decimal, maybe with a fraction) times `unit_ns`, in nanoseconds (fractions truncated).
fn scaled(num: &str, unit_ns: u128) -> Result<u128, String> {
    let too_large = || "duration too large".to_string();
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large())?
    };
    let mut ns = int.checked_mul(unit_ns).ok_or_else(too_large)?;
    let mut scale = unit_ns;
    for d in frac.chars().take(18) {
        scale /= 10;
        ns += u128::from(d.to_digit(10).unwrap_or(0)) * scale;
    }
    Ok(ns)
}

/// Render a duration the way compose writes it (`1m30s`, `500ms`, `0s`), for output.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let total_ms = d.as_millis();
    if d.as_secs() == 0 {
        return if d.subsec_nanos().is_multiple_of(1_000_000) {
            format!("{total_ms}ms")
        } else {
            format!("{}us", d.as_micros())
        };
    }
    let h = d.as_secs() / 3600;
    let m = (d.as_secs() % 3600) / 60;
    let s = d.as_secs() % 60;
    let ms = d.subsec_millis();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || ms > 0 {
        if ms > 0 {
            let frac = format!("{:03}", ms);
            out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
        } else {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("10µs").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration("1.5s").unwrap(), ms(1500));
        assert_eq!(parse_duration(".5m").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("1h2m3s4ms").unwrap(),
            Duration::from_secs(3723) + ms(4)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn invalid_durations() {
        for bad in [
            "",
            "10",
            "abc",
            "5 s",
            "1d",
            "-1s",
            "1..5s",
            "s",
            "1s2",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("30").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }
}

//! Durations as operators write them: `240s`, `1h30m`, `2h`, `500ms`.

use std::time::Duration;

pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("is empty; expected a duration like \"240s\" or \"1h30m\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "{s:?} is not a duration; expected e.g. \"240s\", \"1h30m\""
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            "" => return Err(format!("{s:?} lacks a unit (ms, s, m, h or d)")),
            u => {
                return Err(format!(
                    "{s:?} has unknown unit {u:?} (use ms, s, m, h or d)"
                ));
            }
        };
        total += d;
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it back (`1h30m`, `240s`).
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("240s"), Ok(Duration::from_secs(240)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert!(parse("10").expect_err("must fail").contains("unit"));
        assert!(parse("5x").expect_err("must fail").contains("unknown unit"));
        assert!(parse("h").is_err());
    }
}

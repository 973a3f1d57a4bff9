//! Port expressions: `443`, `22,80,443`, `80,443,3000-3005`.

use std::fmt;

/// A non-empty set of port ranges, each `lo..=hi`, as written (order kept, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet(pub Vec<(u16, u16)>);

impl PortSet {
    pub fn parse(s: &str) -> Result<PortSet, String> {
        if s.trim().is_empty() {
            return Err("is empty; expected ports like \"443\" or \"80,443,3000-3005\"".into());
        }
        let mut out = Vec::new();
        // Every bad item is told, not only the first.
        let mut bad = Vec::new();
        for item in s.split(',') {
            let item = item.trim();
            if item.is_empty() {
                bad.push(format!("{s:?} has an empty item between commas"));
                continue;
            }
            let range = match item.split_once('-') {
                Some((a, b)) => port(a.trim(), s).and_then(|lo| Ok((lo, port(b.trim(), s)?))),
                None => port(item, s).map(|p| (p, p)),
            };
            match range {
                Ok((lo, hi)) if lo > hi => {
                    bad.push(format!("range {item} is descending; write {hi}-{lo}"))
                }
                Ok(r) => out.push(r),
                Err(e) => bad.push(e),
            }
        }
        if !bad.is_empty() {
            return Err(bad.join("; "));
        }
        Ok(PortSet(out))
    }

    pub fn contains(&self, p: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= p && p <= hi)
    }

    /// True if any port of `self` is in `other`.
    pub fn intersects(&self, other: &PortSet) -> bool {
        self.0
            .iter()
            .any(|&(a, b)| other.0.iter().any(|&(c, d)| a <= d && c <= b))
    }

    /// True if every port of `self` is in `other`.
    pub fn is_subset_of(&self, other: &PortSet) -> bool {
        self.0
            .iter()
            .all(|&(a, b)| (a..=b).all(|p| other.contains(p)))
    }

    pub fn is_full(&self) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= 1 && hi == 65535)
    }
}

fn port(p: &str, whole: &str) -> Result<u16, String> {
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!("port {n} is out of range 1-65535")),
        Err(_) => Err(format!("{p:?} in {whole:?} is not a port number")),
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?
            } else {
                write!(f, "{lo}-{hi}")?
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(PortSet::parse("443"), Ok(PortSet(vec![(443, 443)])));
        assert_eq!(PortSet::parse("22,80,443").map(|p| p.0.len()), Ok(3));
        let p = PortSet::parse("80,443,3000-3005").expect("valid");
        assert!(p.contains(3003) && !p.contains(3006));
        assert_eq!(p.to_string(), "80,443,3000-3005");
    }

    #[test]
    fn rejects_bad_forms_with_reasons() {
        assert!(
            PortSet::parse("80-22")
                .expect_err("must fail")
                .contains("descending")
        );
        assert!(
            PortSet::parse("0")
                .expect_err("must fail")
                .contains("out of range")
        );
        assert!(
            PortSet::parse("65536")
                .expect_err("must fail")
                .contains("out of range")
        );
        assert!(
            PortSet::parse("22,,80")
                .expect_err("must fail")
                .contains("empty item")
        );
        assert!(PortSet::parse("").expect_err("must fail").contains("empty"));
        assert!(
            PortSet::parse("http")
                .expect_err("must fail")
                .contains("not a port")
        );
    }

    #[test]
    fn set_relations() {
        let a = PortSet::parse("80,443").expect("valid");
        let b = PortSet::parse("1-1024").expect("valid");
        assert!(a.is_subset_of(&b) && a.intersects(&b) && !b.is_subset_of(&a));
        assert!(PortSet::parse("1-65535").expect("valid").is_full());
    }
}

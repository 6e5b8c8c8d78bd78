//! Byte sizes as people write them in the policy file: "1G", "512M", "64K", "2T", or plain
//! bytes. The suffixes are binary units (K = 1024 bytes), as `ls -h` and `du -h` mean them.

use thiserror::Error;

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "cannot read {input:?} as a size: {why} (write it like 1G, 512M, 64K or a number of bytes)"
)]
pub struct SizeError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

const UNITS: [(char, u32); 4] = [('K', 10), ('M', 20), ('G', 30), ('T', 40)];

/// Reads "1G", "512M", "64K", "2T" (binary units, either case) or a plain number of bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = |why| SizeError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    let (digits, shift) = match s.chars().last() {
        None => return Err(err("it is empty")),
        Some(c) if c.is_ascii_digit() => (s, 0),
        Some(c) => {
            let upper = c.to_ascii_uppercase();
            let Some((_, shift)) = UNITS.iter().find(|(u, _)| *u == upper) else {
                return Err(err("unknown unit (use K, M, G or T)"));
            };
            (s[..s.len() - c.len_utf8()].trim_end(), *shift)
        }
    };
    if digits.is_empty() {
        return Err(err("a unit without a number"));
    }
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(err("not a whole number"));
    }
    let n: u64 = digits.parse().map_err(|_| err("it is too large"))?;
    n.checked_mul(1u64 << shift).ok_or(err("it is too large"))
}

/// Writes a size the way people read it: "1G", "1536M", "700" (the largest unit that divides
/// it exactly, so reading it back gives the same number).
pub fn format_size(bytes: u64) -> String {
    UNITS
        .iter()
        .rev()
        .find(|(_, shift)| bytes != 0 && bytes % (1u64 << shift) == 0)
        .map(|(unit, shift)| format!("{}{unit}", bytes >> shift))
        .unwrap_or_else(|| bytes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_binary_units_and_plain_bytes() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("64 K").unwrap(), 64 << 10);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("1P").is_err());
        assert!(parse_size("1GiB").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn writes_what_it_reads() {
        for n in [0, 700, 1 << 10, 1536 << 20, 1 << 30, 3 << 40, (1 << 30) + 1] {
            assert_eq!(
                parse_size(&format_size(n)).unwrap(),
                n,
                "{}",
                format_size(n)
            );
        }
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1536 << 20), "1536M");
    }
}

//! `Range` requests as RFC 9110 section 14 reads them, for stored files: one
//! satisfiable byte range gets 206 with that part; a range that cannot be
//! satisfied gets 416; a unit other than `bytes`, a malformed header, several
//! ranges (this server sends no multipart answers) or an `If-Range` that no
//! longer matches get the whole file with 200, as the RFC lets a server do.

/// What to send for a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Full,
    /// Bytes `start..=end`.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Reads a `Range` header value against a file of `len` bytes.
pub fn answer(range: Option<&str>, len: u64) -> Answer {
    let Some(spec) = range.and_then(|r| {
        let (unit, set) = r.split_once('=')?;
        unit.trim().eq_ignore_ascii_case("bytes").then_some(set)
    }) else {
        return Answer::Full;
    };
    if spec.contains(',') {
        return Answer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Answer::Full };
    let (first, last) = (first.trim(), last.trim());
    let number =
        |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    match (first.is_empty(), last.is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => Answer::Unsatisfiable,
            Some(n) if len > 0 => Answer::Partial { start: len.saturating_sub(n), end: len - 1 },
            Some(_) => Answer::Unsatisfiable,
            None => Answer::Full,
        },
        // `bytes=N-` or `bytes=N-M`.
        (false, _) => {
            let Some(start) = number(first) else { return Answer::Full };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match number(last) {
                    Some(end) if end >= start => end,
                    _ => return Answer::Full,
                }
            };
            if start >= len { Answer::Unsatisfiable } else { Answer::Partial { start, end: end.min(len - 1) } }
        }
        (true, true) => Answer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_range_is_a_part() {
        assert_eq!(answer(Some("bytes=0-99"), 1000), Answer::Partial { start: 0, end: 99 });
        assert_eq!(answer(Some("bytes=900-"), 1000), Answer::Partial { start: 900, end: 999 });
        assert_eq!(answer(Some("bytes=-100"), 1000), Answer::Partial { start: 900, end: 999 });
        assert_eq!(answer(Some("bytes=990-5000"), 1000), Answer::Partial { start: 990, end: 999 });
        assert_eq!(answer(Some("BYTES = 1-1"), 1000), Answer::Partial { start: 1, end: 1 });
    }

    #[test]
    fn a_range_past_the_end_cannot_be_satisfied() {
        assert_eq!(answer(Some("bytes=1000-"), 1000), Answer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 1000), Answer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-"), 0), Answer::Unsatisfiable);
    }

    #[test]
    fn unknown_units_several_ranges_and_nonsense_get_the_whole_file() {
        assert_eq!(answer(None, 10), Answer::Full);
        assert_eq!(answer(Some("items=0-5"), 10), Answer::Full);
        assert_eq!(answer(Some("bytes=0-1,4-5"), 10), Answer::Full);
        assert_eq!(answer(Some("bytes=5-2"), 10), Answer::Full);
        assert_eq!(answer(Some("bytes=x-2"), 10), Answer::Full);
        assert_eq!(answer(Some("bytes"), 10), Answer::Full);
        assert_eq!(answer(Some("bytes=-"), 10), Answer::Full);
    }
}

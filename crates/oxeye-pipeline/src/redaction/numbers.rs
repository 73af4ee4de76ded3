//! Card numbers (Luhn) and SSNs in free text, found by one pass over the bytes without regexes.
//!
//! A *run* is a sequence of digit *groups* joined by single spaces or dashes (`4111 1111-1111 1111`), with a
//! boundary on both sides: the byte before the run and after each group is not an ASCII letter or digit, and not
//! a `.` that makes the digits part of a decimal number. Within a run, every window of consecutive groups holding
//! 13–19 digits, starting with 2–6 and passing the Luhn check, is a card number; every three consecutive groups
//! of 3, 2 and 4 digits joined by dashes are an SSN. Testing windows (not just whole runs) keeps a card found when
//! other numbers sit beside it (`qty 2 4111 1111 1111 1111`).

use super::stats::Rule;

/// Fewest digits a run needs before it is examined (an SSN has 9).
const MIN_INTERESTING_DIGITS: usize = 9;
const MIN_CARD_DIGITS: usize = 13;
const MAX_CARD_DIGITS: usize = 19;

/// One digit group of a run: byte range and the separator byte before it (0 for the first).
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    separator_before: u8,
}

/// Calls `found(start, end, rule)` for every card number and SSN in `bytes` (byte offsets, end exclusive).
pub(crate) fn find_numbers(bytes: &[u8], cards: bool, ssns: bool, found: &mut impl FnMut(usize, usize, Rule)) {
    if !cards && !ssns {
        return;
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let Some(offset) = bytes[position..].iter().position(u8::is_ascii_digit) else {
            return;
        };
        let run_start = position + offset;
        if blocked_on_left(bytes, run_start) {
            position = skip_digits(bytes, run_start);
            continue;
        }
        // First pass: the run's extent and digit count, without storing groups.
        let (run_end, digit_count, next_position) = measure_run(bytes, run_start);
        if digit_count >= MIN_INTERESTING_DIGITS {
            groups.clear();
            collect_groups(bytes, run_start, run_end, &mut groups);
            if cards {
                find_cards_in_run(bytes, &groups, found);
            }
            if ssns {
                find_ssns_in_run(bytes, &groups, found);
            }
        }
        position = next_position.max(run_start + 1);
    }
}

fn skip_digits(bytes: &[u8], from: usize) -> usize {
    let mut position = from;
    while bytes.get(position).is_some_and(u8::is_ascii_digit) {
        position += 1;
    }
    position
}

fn blocked_on_left(bytes: &[u8], start: usize) -> bool {
    if start == 0 {
        return false;
    }
    let before = bytes[start - 1];
    before.is_ascii_alphanumeric() || (before == b'.' && start >= 2 && bytes[start - 2].is_ascii_digit())
}

fn blocked_on_right(bytes: &[u8], end: usize) -> bool {
    match bytes.get(end) {
        Some(after) if after.is_ascii_alphanumeric() => true,
        Some(b'.') => bytes.get(end + 1).is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

/// Returns (end of the last good group, digits in the good groups, where scanning resumes).
fn measure_run(bytes: &[u8], run_start: usize) -> (usize, usize, usize) {
    let mut run_end = run_start;
    let mut digit_count = 0;
    let mut group_start = run_start;
    loop {
        let group_end = skip_digits(bytes, group_start);
        if blocked_on_right(bytes, group_end) {
            // This group belongs to a word or a decimal: the run ends before it, and scanning skips its digits.
            let resume = if run_end == run_start { group_end } else { run_end };
            return (run_end, digit_count, resume);
        }
        run_end = group_end;
        digit_count += group_end - group_start;
        let joins_next = matches!(bytes.get(group_end), Some(b' ' | b'-'))
            && bytes.get(group_end + 1).is_some_and(u8::is_ascii_digit);
        if !joins_next {
            return (run_end, digit_count, run_end);
        }
        group_start = group_end + 1;
    }
}

fn collect_groups(bytes: &[u8], run_start: usize, run_end: usize, groups: &mut Vec<Group>) {
    let mut group_start = run_start;
    let mut separator_before = 0;
    while group_start < run_end {
        let group_end = skip_digits(bytes, group_start);
        groups.push(Group { start: group_start, end: group_end, separator_before });
        separator_before = bytes.get(group_end).copied().unwrap_or(0);
        group_start = group_end + 1;
    }
}

fn find_cards_in_run(bytes: &[u8], groups: &[Group], found: &mut impl FnMut(usize, usize, Rule)) {
    for first in 0..groups.len() {
        let first_digit = bytes[groups[first].start];
        if !(b'2'..=b'6').contains(&first_digit) {
            continue;
        }
        let mut digits = 0;
        for last in first..groups.len() {
            digits += groups[last].end - groups[last].start;
            if digits > MAX_CARD_DIGITS {
                break;
            }
            if digits >= MIN_CARD_DIGITS && luhn_valid_groups(bytes, &groups[first..=last]) {
                found(groups[first].start, groups[last].end, Rule::CardNumber);
            }
        }
    }
}

fn find_ssns_in_run(bytes: &[u8], groups: &[Group], found: &mut impl FnMut(usize, usize, Rule)) {
    for window in groups.windows(3) {
        let [area, group, serial] = window else { continue };
        let is_ssn = area.end - area.start == 3
            && group.end - group.start == 2
            && serial.end - serial.start == 4
            && group.separator_before == b'-'
            && serial.separator_before == b'-';
        if is_ssn && bytes.get(area.start).is_some() {
            found(area.start, serial.end, Rule::Ssn);
        }
    }
}

fn luhn_valid_groups(bytes: &[u8], groups: &[Group]) -> bool {
    let digits = groups.iter().rev().flat_map(|group| bytes[group.start..group.end].iter().rev());
    luhn_valid_reversed(digits.copied())
}

/// The Luhn check over ASCII digits given from the rightmost one.
fn luhn_valid_reversed(digits_from_right: impl Iterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (index, digit) in digits_from_right.enumerate() {
        let value = u32::from(digit - b'0');
        sum += if index % 2 == 1 {
            let doubled = value * 2;
            if doubled > 9 { doubled - 9 } else { doubled }
        } else {
            value
        };
    }
    sum.is_multiple_of(10)
}

/// Whether `digits` (ASCII digits only) passes the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    digits.bytes().all(|byte| byte.is_ascii_digit()) && luhn_valid_reversed(digits.bytes().rev())
}

/// Whether an integer value is a card number by the same rule as free text (13–19 digits, first 2–6, Luhn).
pub(crate) fn is_card_number_integer(value: i64) -> bool {
    if value < 1_000_000_000_000 {
        return false;
    }
    let text = value.to_string();
    is_card_number_digits(&text)
}

/// Whether a plain digit string is a card number (13–19 digits, first 2–6, Luhn).
pub(crate) fn is_card_number_digits(digits: &str) -> bool {
    (MIN_CARD_DIGITS..=MAX_CARD_DIGITS).contains(&digits.len())
        && digits.as_bytes().first().is_some_and(|first| (b'2'..=b'6').contains(first))
        && luhn_valid(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> Vec<(String, Rule)> {
        let mut out = Vec::new();
        find_numbers(text.as_bytes(), true, true, &mut |start, end, rule| {
            out.push((text[start..end].to_string(), rule))
        });
        out
    }

    #[test]
    fn luhn_accepts_test_cards_and_rejects_changed_digits() {
        for card in ["4111111111111111", "5555555555554444", "4000000000000002", "378282246310005", "6011111111111117"]
        {
            assert!(luhn_valid(card), "{card}");
        }
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("5555555555554445"));
        assert!(!luhn_valid("41111111x1111111"));
    }

    #[test]
    fn cards_with_and_without_separators() {
        assert_eq!(spans("card 4111111111111111 ok"), vec![("4111111111111111".to_string(), Rule::CardNumber)]);
        assert_eq!(spans("4111 1111 1111 1111"), vec![("4111 1111 1111 1111".to_string(), Rule::CardNumber)]);
        assert_eq!(spans("amex 3782-822463-10005."), vec![("3782-822463-10005".to_string(), Rule::CardNumber)]);
    }

    #[test]
    fn card_beside_other_numbers_is_still_found() {
        let found = spans("qty 2 4111 1111 1111 1111 7");
        assert!(found.iter().any(|(text, _)| text == "4111 1111 1111 1111"), "{found:?}");
    }

    #[test]
    fn numbers_inside_words_hex_and_decimals_are_not_cards() {
        assert!(spans("id a4111111111111111").is_empty());
        assert!(spans("4111111111111111abc").is_empty());
        assert!(spans("0.4111111111111111").is_empty());
        assert!(spans("4111111111111111.5").is_empty());
        assert!(spans("0e29288e33afccfe72edc78604c70815 a48efe66-8af3-41d8-8568-4a22848a03e6").is_empty());
    }

    #[test]
    fn timestamps_are_not_cards() {
        // 13-digit millisecond and 19-digit nanosecond Unix timestamps start with 1.
        assert!(spans("ts=1795417334101 ns=1795417334101210880").is_empty());
        assert!(spans("2026-11-23T07:02:14.099679Z").is_empty());
    }

    #[test]
    fn ssn_pattern() {
        assert_eq!(spans("ssn 078-05-1120."), vec![("078-05-1120".to_string(), Rule::Ssn)]);
        assert!(spans("078 05 1120").is_empty());
        assert!(spans("2026-11-23").is_empty());
        assert!(spans("x078-05-1120").is_empty());
    }

    #[test]
    fn integer_cards() {
        assert!(is_card_number_integer(4_111_111_111_111_111));
        assert!(!is_card_number_integer(4_111_111_111_111_112));
        assert!(!is_card_number_integer(1_795_417_334_101));
        assert!(!is_card_number_integer(-4_111_111_111_111_111));
    }
}

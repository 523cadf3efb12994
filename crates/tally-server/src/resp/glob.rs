//! Redis's glob patterns, as `KEYS` and `SCAN ... MATCH` use them.
//!
//! A pattern matches bytes, case-sensitively: `*` any run of bytes, `?` one byte, `[abc]` one of
//! a set, `[^abc]` one byte not in it, `[a-z]` a range (either way round), and `\x` the byte `x`.
//! A `[` without its `]` matches up to the end of the pattern, as in Redis. The tests of
//! `KEYS` compare these rules with a real Redis server.

/// Returns true when `text` matches `pattern`. It takes at most about `pattern.len() *
/// text.len()` steps: after a mismatch it retries only from the last `*`, one byte further,
/// which is enough because every other element matches exactly one byte.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pattern_at, mut text_at) = (0, 0);
    // Where the pattern goes on after the last `*`, and the text position that star is tried at.
    let mut last_star: Option<(usize, usize)> = None;
    while text_at < text.len() {
        let rest = &pattern[pattern_at..];
        if rest.first() == Some(&b'*') {
            pattern_at += 1;
            last_star = Some((pattern_at, text_at));
            continue;
        }
        if let Some(after) = match_one(rest, text[text_at]) {
            pattern_at = pattern.len() - after.len();
            text_at += 1;
            continue;
        }
        let Some((star_pattern_at, star_text_at)) = last_star else {
            return false;
        };
        // Let the star take one more byte.
        pattern_at = star_pattern_at;
        text_at = star_text_at + 1;
        last_star = Some((star_pattern_at, text_at));
    }
    pattern[pattern_at..].iter().all(|&byte| byte == b'*')
}

/// Matches the first element of `pattern`, which is not `*`, against `byte`. Returns the rest
/// of the pattern on a match.
fn match_one(pattern: &[u8], byte: u8) -> Option<&[u8]> {
    match pattern {
        [b'?', rest @ ..] => Some(rest),
        [b'[', rest @ ..] => {
            let (matched, rest) = match_class(rest, byte);
            matched.then_some(rest)
        }
        [b'\\', escaped, rest @ ..] => (*escaped == byte).then_some(rest),
        [literal, rest @ ..] => (*literal == byte).then_some(rest),
        [] => None,
    }
}

/// Matches a class whose `[` is already consumed. Returns whether `byte` is in the class, and
/// the pattern after its `]`.
fn match_class(mut pattern: &[u8], byte: u8) -> (bool, &[u8]) {
    let negated = pattern.first() == Some(&b'^');
    if negated {
        pattern = &pattern[1..];
    }
    let mut found = false;
    loop {
        match pattern {
            [] => break,
            [b']', rest @ ..] => {
                pattern = rest;
                break;
            }
            [b'\\', escaped, rest @ ..] => {
                found |= *escaped == byte;
                pattern = rest;
            }
            // As in Redis, the byte after `-` ends the range even when it is `]`.
            [low, b'-', high, rest @ ..] => {
                let (low, high) = if low <= high {
                    (*low, *high)
                } else {
                    (*high, *low)
                };
                found |= (low..=high).contains(&byte);
                pattern = rest;
            }
            [member, rest @ ..] => {
                found |= *member == byte;
                pattern = rest;
            }
        }
    }
    (found != negated, pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, text: &str) -> bool {
        matches(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(check("*", ""));
        assert!(check("*", "anything"));
        assert!(check("user:*", "user:42"));
        assert!(check("user:*", "user:"));
        assert!(!check("user:*", "users:42"));
        assert!(check("*:views", "user:42:views"));
        assert!(check("u*r*s", "user:42:views"));
        assert!(!check("u*r*s", "user:42:view"));
        assert!(check("**a**", "cat"));
        assert!(check("h?llo", "hello"));
        assert!(!check("h?llo", "hllo"));
        assert!(!check("", "a"));
        assert!(check("", ""));
    }

    #[test]
    fn classes() {
        assert!(check("h[ae]llo", "hallo"));
        assert!(!check("h[ae]llo", "hillo"));
        assert!(check("h[^e]llo", "hallo"));
        assert!(!check("h[^e]llo", "hello"));
        assert!(check("h[a-b]llo", "hbllo"));
        assert!(
            check("h[b-a]llo", "hallo"),
            "a reversed range still matches"
        );
        assert!(!check("h[a-b]llo", "hcllo"));
        assert!(check("x[a-]", "x]"), "`a-]` is the range from `]` to `a`");
        assert!(!check("x[a-]", "x-"));
        assert!(
            check("x[-a]", "x-"),
            "a dash first in the class is a member"
        );
        assert!(check("x[\\]]", "x]"));
        assert!(check("x[abc", "xb"), "an unclosed class ends the pattern");
        assert!(!check("x[abc", "xd"));
    }

    #[test]
    fn escapes_and_literals() {
        assert!(check("a\\*b", "a*b"));
        assert!(!check("a\\*b", "axb"));
        assert!(check("a\\?", "a?"));
        assert!(check("user.*", "user.1"));
        assert!(!check("user.*", "userX1"), "a dot is a literal");
        assert!(!check("User:*", "user:1"), "matching is case-sensitive");
        assert!(matches(b"\xff*", b"\xff\x00"));
    }

    /// Many stars against a long name that almost matches. Trying every way to split the name
    /// among the stars would not finish.
    #[test]
    fn many_stars_against_a_long_name() {
        let pattern = format!("{}b", "*a".repeat(100));
        let text = "a".repeat(256);
        assert!(!check(&pattern, &text));
        assert!(check(&pattern, &format!("{text}b")));
        assert!(!check(&pattern, &format!("{}b", "a".repeat(99))));
    }
}

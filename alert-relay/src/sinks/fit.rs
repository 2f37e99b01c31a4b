//! Cutting text to a vendor's documented limits with a visible marker: on character
//! boundaries, never inside an escape the vendor's format needs, measured the way the vendor
//! measures (bytes of the JSON string for ntfy, characters for Slack and PagerDuty).

/// `text` in at most `limit` bytes: cut on a character boundary, ending in `…(N more)` where N
/// counts the characters left out.
pub fn bytes(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    cut(text, limit, |s| s.len())
}

/// `text` in at most `limit` characters, marked as [`bytes()`] does.
pub fn chars(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    cut(text, limit, |s| s.chars().count())
}

/// The longest prefix whose `measure` with the marker fits in `limit`. The marker names the
/// characters left out, and that number's length depends on where the cut falls: searching
/// the cut point keeps the result within `limit` whatever the digits.
fn cut(text: &str, limit: usize, measure: impl Fn(&str) -> usize) -> String {
    let total = text.chars().count();
    let marked = |kept: usize| {
        let head: String = text.chars().take(kept).collect();
        format!("{head}…({} more)", total - kept)
    };
    // Fewest characters first: the shortest candidate that does not fit bounds the search.
    let (mut lo, mut hi) = (0, total);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if measure(&marked(mid)) <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let out = marked(lo);
    if measure(&out) <= limit {
        out
    } else {
        // Not even the marker fits: the plain prefix.
        text.chars()
            .take_while({
                let mut used = 0;
                move |c| {
                    used += measure(c.encode_utf8(&mut [0; 4]));
                    used <= limit
                }
            })
            .collect()
    }
}

/// The length of `text` as a JSON string's contents (what serde_json writes between quotes).
pub fn json_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// `text` cut so that its JSON string contents take at most `limit` bytes.
pub fn json_bytes(text: &str, limit: usize) -> String {
    if json_len(text) <= limit {
        return text.to_owned();
    }
    cut(text, limit, json_len)
}

/// `url` if it fits in `limit` bytes: a cut URL is a broken link, so a longer one is dropped.
pub fn url(url: Option<&str>, limit: usize) -> Option<&str> {
    url.filter(|u| u.len() <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(bytes("hello", 5), "hello");
        assert_eq!(chars("héllo", 5), "héllo");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_count_of_what_is_missing() {
        let text = "é".repeat(3000);
        let out = bytes(&text, 4096);
        assert!(out.len() <= 4096, "{}", out.len());
        assert!(out.ends_with(" more)"), "{}", &out[out.len() - 20..]);
        let kept = out.split('…').next().expect("head").chars().count();
        assert_eq!(out, format!("{}…({} more)", "é".repeat(kept), 3000 - kept));
        let out = chars(&"x".repeat(200), 150);
        assert_eq!(out.chars().count(), 150);
        assert!(out.ends_with("…(60 more)"), "{out}");
    }

    #[test]
    fn json_escapes_count_against_the_limit() {
        let text = "\"\\\u{1}".repeat(1000);
        assert_eq!(json_len(&text), 10 * 1000);
        let out = json_bytes(&text, 4096);
        assert!(json_len(&out) <= 4096);
        let encoded = serde_json::to_string(&out).expect("json");
        assert!(encoded.len() <= 4096 + 2, "{}", encoded.len());
    }

    #[test]
    fn every_cut_fits_whatever_the_limit() {
        let text = "ab\"c✓\n".repeat(50);
        for limit in 0..300 {
            assert!(bytes(&text, limit).len() <= limit, "bytes {limit}");
            assert!(
                chars(&text, limit).chars().count() <= limit,
                "chars {limit}"
            );
            assert!(json_len(&json_bytes(&text, limit)) <= limit, "json {limit}");
        }
    }

    #[test]
    fn an_overlong_url_is_dropped_not_cut() {
        let long = format!("https://x/{}", "a".repeat(3000));
        assert_eq!(url(Some(&long), 3000), None);
        assert_eq!(url(Some("https://x/y"), 3000), Some("https://x/y"));
    }
}

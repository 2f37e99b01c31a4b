//! Finds the line of a path such as `policies[1].steps[0].notify[2]` in block-style YAML, so
//! that validation errors (found after serde, which keeps no positions) can name a line.

/// 1-based line of `path` in `text`, or of the deepest part of it that exists.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines = virtual_lines(text);
    let (mut start, mut end) = (0, lines.len());
    let mut found = None;
    for segment in segments(path) {
        let Some(child_indent) = lines.get(start..end)?.first().map(|l| l.indent) else {
            break;
        };
        let at_level = |i: &usize| lines[*i].indent == child_indent;
        let hit = match segment {
            Segment::Key(key) => (start..end).filter(at_level).find(|&i| {
                let t = lines[i].text;
                !lines[i].item
                    && (t.strip_prefix(key).is_some_and(|r| r.starts_with(':'))
                        || t.strip_prefix(&format!("\"{key}\""))
                            .is_some_and(|r| r.starts_with(':')))
            }),
            Segment::Index(n) => (start..end)
                .filter(at_level)
                .filter(|&i| lines[i].item)
                .nth(n),
        };
        let Some(i) = hit else { break };
        found = Some(lines[i].line);
        let own = lines[i].indent;
        let is_item = lines[i].item;
        start = i + 1;
        // A key's block may be a list at the key's own indentation (`key:\n- a`).
        end = (i + 1..lines.len())
            .find(|&j| {
                let l = &lines[j];
                !(l.indent > own || (!is_item && l.indent == own && l.item))
            })
            .unwrap_or(lines.len());
    }
    found
}

struct Line<'a> {
    line: usize,
    indent: usize,
    /// A `- ` list-item marker (its content, if any, follows as a deeper virtual line).
    item: bool,
    text: &'a str,
}

/// Meaningful lines, with `- key: v` split into an item marker and `key: v` two columns deeper.
fn virtual_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let content = raw.split(" #").next().unwrap_or(raw).trim_end();
        let mut rest = content.trim_start();
        if rest.is_empty() || rest.starts_with('#') || rest == "---" {
            continue;
        }
        let mut indent = content.len() - rest.len();
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            out.push(Line {
                line: n + 1,
                indent,
                item: true,
                text: rest,
            });
            let trimmed = after.trim_start();
            indent += 2 + (after.len() - trimmed.len());
            rest = trimmed;
            if rest.is_empty() {
                break;
            }
        }
        if !rest.is_empty() {
            out.push(Line {
                line: n + 1,
                indent,
                item: false,
                text: rest,
            });
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        for index in rest.split('[') {
            if let Ok(n) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
server:
  public_url: http://x
targets:
  ntfy:
    primary:
      topic: a
policies:
  - name: critical
    matchers: ['severity=\"critical\"']
    steps:
      - after: 0m
        notify: [ntfy.primary]
      - after: 15m
        notify:
          - ntfy.primary
          - ntfy.nope
  - name: warnings
    steps:
      - after: 5m
";

    #[test]
    fn finds_keys_items_and_nested_lists() {
        assert_eq!(line_of(YAML, "server.public_url"), Some(2));
        assert_eq!(line_of(YAML, "targets.ntfy.primary.topic"), Some(6));
        assert_eq!(line_of(YAML, "policies[0].name"), Some(8));
        assert_eq!(line_of(YAML, "policies[0].matchers[0]"), Some(9));
        assert_eq!(line_of(YAML, "policies[0].steps[1].after"), Some(13));
        assert_eq!(line_of(YAML, "policies[0].steps[1].notify[1]"), Some(16));
        assert_eq!(line_of(YAML, "policies[1].steps[0].after"), Some(19));
        assert_eq!(line_of(YAML, "policies[1].name"), Some(17));
    }

    #[test]
    fn a_missing_part_gives_the_deepest_existing_line() {
        assert_eq!(line_of(YAML, "policies[1].repeat.every"), Some(17));
        assert_eq!(line_of(YAML, "nothing"), None);
    }
}

//! `${VAR}` and `${VAR:-default}` expansion; `$$` is a literal `$`.

/// Expands `text`, or names the first variable that is unset and has no default.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(more) = after.strip_prefix('$') {
            out.push('$');
            rest = more;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = body.find('}') else {
            return Err(format!("`${{` without a closing `}}` in `{text}`"));
        };
        let expr = &body[..close];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{expr}}}` is not a variable name (letters, digits, _)"
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (set it, or write ${{{name}:-default}})"
                ))
            }
        }
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_values_defaults_and_dollars() {
        assert_eq!(
            expand("Bearer ${TOKEN}", &env).as_deref(),
            Ok("Bearer s3cret")
        );
        assert_eq!(
            expand("${NTFY_URL:-https://ntfy.sh}", &env).as_deref(),
            Ok("https://ntfy.sh")
        );
        assert_eq!(
            expand("${EMPTY:-fallback}", &env).as_deref(),
            Ok("fallback")
        );
        assert_eq!(expand("${MISSING:-}", &env).as_deref(), Ok(""));
        assert_eq!(
            expand("cost: $$5 and $x", &env).as_deref(),
            Ok("cost: $5 and $x")
        );
    }

    #[test]
    fn unset_variables_and_bad_syntax_are_named() {
        let error = expand("${NOPE}", &env).expect_err("unset");
        assert!(error.contains("NOPE is not set"), "{error}");
        assert!(expand("${TOKEN", &env).is_err());
        assert!(expand("${A B}", &env).is_err());
    }
}

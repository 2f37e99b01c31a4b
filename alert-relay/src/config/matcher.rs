//! Alertmanager-style label matchers: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

use regex::Regex;

use crate::domain::Labels;

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    op: Op,
    text: String,
}

#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    Regex(Regex),
    NotRegex(Regex),
}

impl Matcher {
    /// Parses one matcher; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "write it like severity=\"critical\", team!=\"db\" or alertname=~\"Gateway.*\"";
        let op_at = text
            .find(['=', '!'])
            .ok_or_else(|| format!("`{text}` has no operator: {hint}"))?;
        let name = text[..op_at].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{text}` has no valid label name: {hint}"));
        }
        let rest = &text[op_at..];
        let (op, value) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
            .ok_or_else(|| format!("`{text}` has an unknown operator: {hint}"))?;
        let value = unquote(value).ok_or_else(|| format!("`{text}`: quote the value: {hint}"))?;
        let regex = |v: &str| {
            Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("`{text}`: invalid regex: {e}"))
        };
        let op = match op {
            "=" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            "=~" => Op::Regex(regex(&value)?),
            _ => Op::NotRegex(regex(&value)?),
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            text: text.to_owned(),
        })
    }

    /// A missing label matches as the empty string (as in Alertmanager).
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match &self.op {
            Op::Equal(v) => value == v,
            Op::NotEqual(v) => value != v,
            Op::Regex(re) => re.is_match(value),
            Op::NotRegex(re) => !re.is_match(value),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value a `name="value"` matcher requires (`None` for the other operators).
    pub fn required_value(&self) -> Option<&str> {
        match &self.op {
            Op::Equal(value) => Some(value),
            _ => None,
        }
    }
}

fn unquote(value: &str) -> Option<String> {
    if value.starts_with('"') {
        return crate::domain::unquote_matcher_value(value);
    }
    // Unquoted values are accepted when they are plain words.
    (!value.is_empty() && !value.contains(['"', ' '])).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn each_operator_matches_as_alertmanager_does() {
        let l = labels(&[("severity", "critical"), ("alertname", "GatewayDown")]);
        assert!(Matcher::parse(r#"severity="critical""#)
            .expect("ok")
            .matches(&l));
        assert!(!Matcher::parse(r#"severity!="critical""#)
            .expect("ok")
            .matches(&l));
        assert!(Matcher::parse(r#"alertname=~"Gateway.*""#)
            .expect("ok")
            .matches(&l));
        assert!(
            !Matcher::parse(r#"alertname=~"Gate""#)
                .expect("ok")
                .matches(&l),
            "anchored"
        );
        assert!(Matcher::parse(r#"team!~"db|infra""#)
            .expect("ok")
            .matches(&l));
        assert!(
            Matcher::parse(r#"team="""#).expect("ok").matches(&l),
            "missing = empty"
        );
        assert!(Matcher::parse("severity=critical")
            .expect("plain word")
            .matches(&l));
    }

    #[test]
    fn bad_matchers_explain_themselves() {
        for bad in [
            "severity",
            "=\"x\"",
            "sev-erity=\"x\"",
            "a=~\"(\"",
            "a=\"x y",
        ] {
            let error = Matcher::parse(bad).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }
}

//! The runbook pages as a phone gets them: one column that never scrolls sideways, whatever
//! the words, and the pages' security headers.

use std::path::Path;

use alert_relay::server;

use crate::helpers::*;

/// The declarations that `css` gives `selector` (in any rule whose selector list names it),
/// comments and spaces removed: `["overflow-wrap:anywhere", …]`.
fn declarations(css: &str, selector: &str) -> Vec<String> {
    let mut text = String::new();
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        text.push_str(&rest[..start]);
        rest = rest[start..]
            .split_once("*/")
            .map_or("", |(_, after)| after);
    }
    text.push_str(rest);
    text.split('}')
        .filter_map(|rule| rule.split_once('{'))
        .filter(|(selectors, _)| selectors.split(',').any(|s| s.trim() == selector))
        .flat_map(|(_, body)| body.split(';'))
        .map(|d| d.split_whitespace().collect::<String>())
        .filter(|d| !d.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runbook_page_with_a_long_one_word_heading_fits_a_phone() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let options = server::Options {
        runbooks: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks")),
    };
    let relay = TestRelay::start_self_linked_with(&policy, &dir.path().join("data"), options).await;

    let page_url = format!("{}/runbooks/GatewayHighErrorRate", relay.url);
    let page = reqwest::get(&page_url).await.expect("runbook");
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .split(';')
            .next(),
        Some("default-src 'self'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let html = page.text().await.expect("html");
    assert!(html.contains("<h1>GatewayHighErrorRate"), "{html}");
    assert!(
        html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#),
        "{html}"
    );
    assert!(
        !html.contains("<style") && !html.contains("style="),
        "{html}"
    );
    let href = html
        .split(r#"<link rel="stylesheet" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a stylesheet link");
    let css_url = url::Url::parse(&page_url)
        .expect("page url")
        .join(href)
        .expect("stylesheet url");
    let css = reqwest::get(css_url).await.expect("stylesheet");
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let css = css.text().await.expect("css");

    for heading in ["h1", "h2", "h3", "p", "li", "a", "code"] {
        assert!(
            declarations(&css, heading).contains(&"overflow-wrap:anywhere".to_owned()),
            "{heading} must break a long word: {:?}",
            declarations(&css, heading)
        );
    }
    for (selector, rule) in [
        ("pre", "overflow-x:auto"),
        ("pre", "max-width:100%"),
        ("img", "max-width:100%"),
        ("table", "overflow-x:auto"),
        ("table", "max-width:100%"),
    ] {
        assert!(
            declarations(&css, selector).contains(&rule.to_owned()),
            "{selector} needs {rule}: {:?}",
            declarations(&css, selector)
        );
    }
}

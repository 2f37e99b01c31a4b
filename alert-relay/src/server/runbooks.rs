//! The runbooks (`docs/runbooks/*.md`) as pages a phone can read: `GET /runbooks` (the index)
//! and `GET /runbooks/<AlertName>`, rendered from Markdown with pulldown-cmark into the
//! pages' layout (`pages/runbook.html`, the shared stylesheet and security headers). Every
//! alert's `runbook_url` points here by default, so the Runbook button of a page opens. Raw
//! HTML in a runbook is shown as text, never run; a link that is not http(s), mail or a path
//! (`javascript:`, `data:`) goes nowhere; names are letters, digits, `_` and `-` only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

use super::pages;
use crate::domain::is_runbook_name;

/// A runbook as a page: its title and the HTML pulldown-cmark made of its Markdown.
#[derive(Template)]
#[template(path = "runbook.html")]
struct RunbookView<'a> {
    title: &'a str,
    body: &'a str,
}

/// The routes, over the runbooks in `dir`.
pub fn router(dir: PathBuf) -> Router {
    let dir = Arc::new(dir);
    Router::new()
        .route(
            "/runbooks",
            // Relative: a relay published under a path prefix keeps it.
            get(|| async { axum::response::Redirect::permanent("runbooks/") }),
        )
        .route("/runbooks/", get(index))
        .route("/runbooks/{name}", get(page))
        .layer(map_response(pages::secure))
        .with_state(dir)
}

async fn index(State(dir): State<Arc<PathBuf>>) -> Response {
    serve(&dir, "README", "Runbooks").await
}

async fn page(State(dir): State<Arc<PathBuf>>, UrlPath(name): UrlPath<String>) -> Response {
    let name = name.strip_suffix(".md").unwrap_or(&name).to_owned();
    if !is_runbook_name(&name) {
        return (StatusCode::NOT_FOUND, "no such runbook\n").into_response();
    }
    serve(&dir, &name, &name).await
}

async fn serve(dir: &Path, name: &str, title: &str) -> Response {
    let file = dir.join(format!("{name}.md"));
    match tokio::fs::read_to_string(&file).await {
        Ok(markdown) => pages::html(
            StatusCode::OK,
            &RunbookView {
                title,
                body: &body(&markdown),
            },
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => (
            StatusCode::NOT_FOUND,
            format!("no runbook for {name}: add docs/runbooks/{name}.md\n"),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "cannot read a runbook");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the runbook cannot be read\n",
            )
                .into_response()
        }
    }
}

/// A whole page: the Markdown as HTML in the pages' layout.
pub fn render(title: &str, markdown: &str) -> Result<String, askama::Error> {
    RunbookView {
        title,
        body: &body(markdown),
    }
    .render()
}

/// The Markdown as HTML: links between runbooks (`Foo.md`) made to work here, raw HTML shown
/// as text, and links that would run something (`javascript:`, `data:`) made inert.
fn body(markdown: &str) -> String {
    let parser = Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    )
    .map(|event| match event {
        // Markdown may carry raw HTML; a runbook is text, so it is shown, not run.
        Event::Html(text) | Event::InlineHtml(text) => Event::Text(text),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: destination(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, parser);
    // A code block wider than a phone scrolls inside itself: keyboard users must be able to
    // scroll it too (focusable). Raw HTML was turned into text above, so every `<pre>` here
    // is a code block's.
    body.replace("<pre>", "<pre tabindex=\"0\">")
}

/// Where a link in a runbook goes: another runbook (`Foo.md`) here, a path or an http(s) or
/// mail link as written, anything else (`javascript:`, `data:`, `file:`) nowhere (`#`).
fn destination(dest_url: CowStr<'_>) -> CowStr<'_> {
    let local = !dest_url.contains("://") && dest_url.ends_with(".md");
    if local {
        let file = dest_url.rsplit('/').next().unwrap_or(&dest_url);
        let file = file.trim_end_matches(".md");
        // Relative to /runbooks/<name>: the index is "./".
        return if file == "README" {
            "./".into()
        } else {
            file.to_owned().into()
        };
    }
    match url::Url::parse(&dest_url) {
        Err(url::ParseError::RelativeUrlWithoutBase) => dest_url,
        Ok(url) if matches!(url.scheme(), "http" | "https" | "mailto") => dest_url,
        _ => "#".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_a_page_with_working_links_and_inert_html() {
        let page = render(
            "GatewayDown",
            "# Gateway down\n\nSee [the index](README.md) and [latency](GatewayHighLatencyP99.md).\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        )
        .expect("page");
        assert!(page.contains("<h1>Gateway down</h1>"), "{page}");
        assert!(page.contains(r#"<a href="./">the index</a>"#), "{page}");
        assert!(
            page.contains(r#"<a href="GatewayHighLatencyP99">latency</a>"#),
            "{page}"
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(page.contains("<table>"), "{page}");
        assert!(page.contains("width=device-width"), "readable on a phone");
    }

    #[test]
    fn every_shipped_runbook_renders() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("docs/runbooks") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let name = path.file_stem().and_then(|s| s.to_str()).expect("name");
            assert!(
                render(name, &text).expect("page").contains("<h1>"),
                "{name}"
            );
            count += 1;
        }
        assert!(count > 10);
    }

    #[test]
    fn a_runbook_page_fits_a_phone_with_the_shared_stylesheet_and_no_inline_style() {
        let page =
            render("GatewayHighErrorRate", "# GatewayHighErrorRate\n\ntext\n").expect("page");
        assert!(
            page.contains(
                r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
            ),
            "{page}"
        );
        assert!(
            page.contains(r#"<link rel="stylesheet" href="../assets/relay.css">"#),
            "{page}"
        );
        assert!(
            !page.contains("<style") && !page.contains("style="),
            "{page}"
        );
        assert!(page.contains("<title>GatewayHighErrorRate — runbook</title>"));
    }

    #[test]
    fn a_runbook_link_that_would_run_something_goes_nowhere() {
        let page = render(
            "x",
            "[a](javascript:alert(1)) [b](data:text/html,x) [c](https://example.com/x) \
             [d](../operations.md#alerts) [e](mailto:oncall@example.com) [f](#steps)",
        )
        .expect("page");
        assert!(
            !page.contains("javascript:") && !page.contains("data:"),
            "{page}"
        );
        assert!(page.contains(r##"<a href="#">a</a>"##), "{page}");
        for kept in [
            "https://example.com/x",
            "../operations.md#alerts",
            "mailto:oncall@example.com",
            "#steps",
        ] {
            assert!(
                page.contains(&format!(r#"href="{kept}""#)),
                "{kept}: {page}"
            );
        }
    }
}

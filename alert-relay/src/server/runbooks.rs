//! The runbooks (`docs/runbooks/*.md`) as pages a phone can read: `GET /runbooks` (the index)
//! and `GET /runbooks/<AlertName>`, rendered from Markdown with pulldown-cmark. Every alert's
//! `runbook_url` points here by default, so the Runbook button of a page opens. Raw HTML in
//! a runbook is shown as text, never run; names are letters, digits, `_` and `-` only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pulldown_cmark::{html, Event, Options, Parser, Tag};

/// The routes, over the runbooks in `dir`.
pub fn router(dir: PathBuf) -> Router {
    let dir = Arc::new(dir);
    Router::new()
        .route(
            "/runbooks",
            get(|| async { axum::response::Redirect::permanent("/runbooks/") }),
        )
        .route("/runbooks/", get(index))
        .route("/runbooks/{name}", get(page))
        .with_state(dir)
}

async fn index(State(dir): State<Arc<PathBuf>>) -> Response {
    serve(&dir, "README", "Runbooks").await
}

async fn page(State(dir): State<Arc<PathBuf>>, UrlPath(name): UrlPath<String>) -> Response {
    let name = name.strip_suffix(".md").unwrap_or(&name).to_owned();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return (StatusCode::NOT_FOUND, "no such runbook\n").into_response();
    }
    serve(&dir, &name, &name).await
}

async fn serve(dir: &Path, name: &str, title: &str) -> Response {
    let file = dir.join(format!("{name}.md"));
    match tokio::fs::read_to_string(&file).await {
        Ok(markdown) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render(title, &markdown),
        )
            .into_response(),
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

/// A whole page: the Markdown as HTML, links between runbooks (`Foo.md`) made to work here.
pub fn render(title: &str, markdown: &str) -> String {
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
        }) => {
            let local = !dest_url.contains("://") && dest_url.ends_with(".md");
            let dest_url = if local {
                let file = dest_url.rsplit('/').next().unwrap_or(&dest_url);
                let file = file.trim_end_matches(".md");
                // Relative to /runbooks/<name>: the index is "./".
                if file == "README" {
                    "./".into()
                } else {
                    file.to_owned().into()
                }
            } else {
                dest_url
            };
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, parser);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — runbook</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:1rem auto;padding:0 1rem;line-height:1.5}}\
         pre,code{{background:#f4f4f4;overflow-x:auto}}pre{{padding:.5rem}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.2rem .4rem}}</style></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_a_page_with_working_links_and_inert_html() {
        let page = render(
            "GatewayDown",
            "# Gateway down\n\nSee [the index](README.md) and [latency](GatewayHighLatencyP99.md).\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
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
            assert!(render(name, &text).contains("<h1>"), "{name}");
            count += 1;
        }
        assert!(count > 10);
    }
}

//! The status page at `/`: static HTML, CSS and a little JavaScript embedded in the binary. The
//! server fills in the members table, so the basics read without JavaScript; the script then
//! refreshes everything from the JSON endpoints and draws the ring.
//!
//! This module must not know more of the cluster than a [`ClusterStatus`] says.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::api::Api;
use super::cluster::status_for_page;
use dynamo_client::tls::PeerIdentity;
use dynamo_protocol::ClusterStatus;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");
/// Where the server-rendered summary goes in `index.html`.
const MARKER: &str = "<!-- SERVER:SUMMARY -->";

pub(super) async fn index(
    State(api): State<Arc<Api>>,
    Extension(who): Extension<PeerIdentity>,
) -> Response {
    let summary = match status_for_page(&api, &who).await {
        Some(status) => summary(&status),
        None => "<p>The node did not answer its status request.</p>".to_owned(),
    };
    Html(INDEX.replacen(MARKER, &summary, 1)).into_response()
}

pub(super) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(super) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// Text made safe to place in HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The members table the page shows before (or without) its script.
fn summary(status: &ClusterStatus) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<h2>Node {} &middot; ring version {}</h2>\n<table class=\"members\">\n<thead><tr><th>member</th><th>zone</th><th>status</th><th>up</th><th>partitions</th><th>ownership %</th><th>pending hints</th></tr></thead>\n<tbody>\n",
        escape(&status.node),
        status.ring_version
    );
    for member in &status.members {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            escape(&member.id),
            escape(&member.zone),
            escape(&member.status),
            if member.up { "up" } else { "down" },
            if member.up { "up" } else { "down" },
            member.partitions,
            member.ownership_percent,
            member.pending_hints
        );
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_escapes_what_it_shows_and_the_page_has_its_marker() {
        assert!(INDEX.contains(MARKER));
        assert_eq!(escape("<n1 & \"x\">"), "&lt;n1 &amp; &quot;x&quot;&gt;");
    }
}

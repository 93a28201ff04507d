//! The stylesheet and the live-update script, compiled into the binary so the pages
//! work without a CDN or a network. Their URLs carry a hash of their contents, so
//! they can be cached for a year and a new build is fetched at once.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/live.js");

/// FNV-1a, at compile time: a content version, not a security measure.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

static STYLE_HREF: LazyLock<String> =
    LazyLock::new(|| format!("{}?v={:016x}", super::STYLE, fnv1a(STYLE.as_bytes())));
static SCRIPT_HREF: LazyLock<String> =
    LazyLock::new(|| format!("{}?v={:016x}", super::SCRIPT, fnv1a(SCRIPT.as_bytes())));

pub fn style_href() -> &'static str {
    &STYLE_HREF
}

pub fn script_href() -> &'static str {
    &SCRIPT_HREF
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

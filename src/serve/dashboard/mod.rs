//! The dashboard at `/`: one server-rendered page (`page.html`, with `style.css` and
//! `app.js` embedded in the binary: no build step, no CDN, it works offline) whose
//! panels are rendered here from the fleet view and fetched again, as HTML, whenever
//! the event stream says something changed. Buttons send the page's CSRF token.

mod panels;

pub use panels::panels;

/// The page's style.
pub const CSS: &str = include_str!("style.css");
/// The page's script.
pub const JS: &str = include_str!("app.js");
const PAGE: &str = include_str!("page.html");
const LOGIN: &str = include_str!("login.html");

/// Escapes text for HTML (content and attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The whole page, its panels rendered in, with the CSRF token its buttons send.
pub fn page(panels_html: &str, csrf: &str) -> String {
    PAGE.replace("{{csrf}}", &esc(csrf))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{panels}}", panels_html)
}

/// The login page (an admin token is set); `error` after a wrong token.
pub fn login(error: bool) -> String {
    let msg = if error {
        "<p class=\"bad\">That token is not this server's admin token.</p>"
    } else {
        ""
    };
    LOGIN.replace("{{error}}", msg)
}

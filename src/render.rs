//! Human rendering of a transcript (temporary stand-in; helper A's version replaces it).

/// Renders stream-json lines for people.
pub struct Renderer;

impl Renderer {
    /// A renderer.
    pub fn new(_color: bool) -> Self {
        Renderer
    }
    /// Display lines for one raw line.
    pub fn line(&mut self, raw: &[u8]) -> Vec<String> {
        vec![format!("[{} bytes]", raw.len())]
    }
    /// Display lines at the end.
    pub fn finish(&mut self) -> Vec<String> {
        Vec::new()
    }
}

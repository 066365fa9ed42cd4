//! The JSON schemas of everything the window receives from the console (its state, events,
//! history search and detail, devices, exports). `ui/src/generated/console.json` is this
//! document and `ui/src/generated/console.ts` is made from it (`npm --prefix ui run types`), so
//! the front end's types are the Rust types, never a copy kept by hand.

use utoipa::OpenApi;

/// The console's types as an OpenAPI document (components only).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign console types",
        description = "What the console's commands return and its events carry"
    ),
    components(schemas(
        crate::console::ConsoleState,
        crate::console::Phase,
        crate::console::Places,
        crate::console::KeyView,
        crate::console::NewKey,
        crate::events::ConsoleEvent,
        crate::events::Connection,
        crate::events::HistoryStatus,
        crate::history::ExportFormat,
        crate::history::ExportDone,
        crate::devices::Candidate,
        countersign_mirror::SearchQuery,
        countersign_mirror::Sort,
        countersign_mirror::RequestSummary,
        countersign_mirror::Page,
        countersign_mirror::Facets,
        countersign_mirror::RequestDetail,
        countersign_mirror::DecisionDetail,
        countersign_mirror::EventEntry,
        countersign_mirror::RaisedAlarm,
        countersign_mirror::Progress,
    ))
)]
pub struct ConsoleTypes;

/// The document, as it is saved for the front end.
pub fn document() -> String {
    let doc = ConsoleTypes::openapi();
    let value = serde_json::to_value(&doc).unwrap_or_default();
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ui/src/generated/console.json` is the console's types as they are (rewrite it with
    /// `COUNTERSIGN_UPDATE_VECTORS=1`, then `npm --prefix ui run types`).
    #[test]
    fn generated_console_types_are_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ui/src/generated/console.json");
        let text = document();
        assert!(text.contains("\"ConsoleState\""), "{text}");
        if std::env::var_os("COUNTERSIGN_UPDATE_VECTORS").is_some() {
            std::fs::write(&path, &text).expect("write");
        }
        let saved = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            saved == text,
            "{} is out of date: run COUNTERSIGN_UPDATE_VECTORS=1 cargo test -p countersign-console --lib generated_console_types, then npm --prefix ui run types",
            path.display()
        );
    }
}

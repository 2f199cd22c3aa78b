//! The web dashboard: one page and its script and styles, compiled into the binary so the
//! service needs no other server and no internet at run time. The page calls the API
//! (with the key the user gives it, when keys are set).

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLES: &str = include_str!("../assets/app.css");

/// `/`, `/assets/app.js` and `/assets/app.css`; open (they hold no data).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let asset = |content_type: &'static str, body: &'static str| {
        get(move || async move {
            (
                [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
                body,
            )
                .into_response()
        })
    };
    Router::new()
        .route("/", asset("text/html; charset=utf-8", INDEX))
        .route(
            "/assets/app.js",
            asset("text/javascript; charset=utf-8", SCRIPT),
        )
        .route("/assets/app.css", asset("text/css; charset=utf-8", STYLES))
}

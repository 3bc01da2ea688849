//! The landing page: what nachtwacht is, for anyone, signed in or not.

use axum::response::Html;

use crate::web::access::MaybeSigned;
use crate::web::i18n::Lang;
use crate::web::page::frame;

pub async fn landing(lang: Lang, MaybeSigned(session): MaybeSigned) -> Html<String> {
    frame(
        lang,
        session.as_ref(),
        lang.t("running"),
        &format!(
            "<p>{}</p><p>{}</p>",
            lang.t("app.tagline"),
            lang.t("landing.research")
        ),
    )
}

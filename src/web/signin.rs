//! The sign-in page, and the workflow step it keeps when a session expired while an officer was
//! typing (used by the access layer, which answers that post, and by the login handler).

use axum::response::Html;
use serde::Deserialize;

use crate::registry::accounts;
use crate::web::i18n::Lang;
use crate::web::page::{csrf_field, esc, frame};

/// A workflow step whose session expired while the officer typed it: kept through the sign-in
/// form (hidden fields) and offered again, filled in, once signed in. Only the transition form
/// is resumable, and it is never posted on the user's behalf: they see it and press save.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resume {
    #[serde(default)]
    pub resume_path: String,
    #[serde(default)]
    pub resume_to: String,
    #[serde(default)]
    pub resume_comment: String,
}

impl Resume {
    /// A transition post (`/alerts/{id}/transition`) and its fields, if that is what `path` is.
    pub fn of_post(path: &str, fields: &std::collections::HashMap<String, String>) -> Option<Self> {
        let resume = Resume {
            resume_path: path.to_string(),
            resume_to: fields.get("to").cloned().unwrap_or_default(),
            resume_comment: fields.get("comment").cloned().unwrap_or_default(),
        };
        resume.alert_id().map(|_| resume)
    }

    /// The alert the kept step is for; `None` for anything but a transition path.
    pub fn alert_id(&self) -> Option<i64> {
        self.resume_path
            .strip_prefix("/alerts/")?
            .strip_suffix("/transition")?
            .parse()
            .ok()
    }

    fn hidden_fields(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"resume_path\" value=\"{}\">\
             <input type=\"hidden\" name=\"resume_to\" value=\"{}\">\
             <input type=\"hidden\" name=\"resume_comment\" value=\"{}\">",
            esc(&self.resume_path),
            esc(&self.resume_to),
            esc(&self.resume_comment)
        )
    }
}

/// The page after signing in again with a kept step: the transition form, filled in.
pub fn resume_page(
    lang: Lang,
    session: &accounts::Session,
    resume: &Resume,
    id: i64,
) -> Html<String> {
    frame(
        lang,
        Some(session),
        lang.t("session.resume"),
        &format!(
            "<p class=\"once\">{}</p><form method=\"post\" action=\"/alerts/{id}/transition\">{}\
             <input type=\"hidden\" name=\"to\" value=\"{}\">\
             <p><label>{}<br><textarea name=\"comment\" id=\"comment\" rows=\"3\" cols=\"60\" required>{}</textarea></label></p>\
             <p><button id=\"save\">{}</button> <a href=\"/alerts/{id}\">{}</a></p></form>",
            lang.t("session.kept"),
            csrf_field(session),
            esc(&resume.resume_to),
            lang.t("comment"),
            esc(&resume.resume_comment),
            lang.t("save"),
            lang.t("back"),
        ),
    )
}

/// The sign-in page; `resume` carries a step typed before the session expired.
pub fn login_page(lang: Lang, message: Option<&str>) -> Html<String> {
    login_page_keeping(lang, message, None)
}

pub fn login_page_keeping(
    lang: Lang,
    message: Option<&str>,
    resume: Option<&Resume>,
) -> Html<String> {
    let msg = message
        .map(|m| format!("<p class=\"error\">{}</p>", esc(m)))
        .unwrap_or_default();
    let kept = resume.map(Resume::hidden_fields).unwrap_or_default();
    frame(
        lang,
        None,
        lang.t("login"),
        &format!(
            "{msg}<form method=\"post\" action=\"/login\">{kept}\
             <p><label>{u}<br><input name=\"username\" autocomplete=\"username\" required></label></p>\
             <p><label>{p}<br><input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
             <p><label>{c}<br><input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" required></label></p>\
             <p><button id=\"login\">{l}</button></p></form>",
            u = lang.t("username"),
            p = lang.t("password"),
            c = lang.t("totp"),
            l = lang.t("login"),
        ),
    )
}

//! The HTML pages, one module per audience: the landing page, sign-in, the officer's caseload, persons and alerts, the
//! administrator's registry forms, the auditor's log views and the management figures.

pub mod admin;
pub mod auditor;
pub mod home;
pub mod login;
pub mod management;
pub mod notifications;
pub mod officer;
pub mod person;
pub mod report;

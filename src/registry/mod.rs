//! The registry: the people and things the server knows. Staff accounts (roles, passwords, MFA,
//! sessions), officers' caseloads, and the persons under supervision with their devices and base
//! stations (enrolment, pairing, revocation). Stands on [`crate::base`] and [`crate::trust`].

pub mod accounts;
pub mod caseload;
pub mod enroll;
pub mod overview;
pub mod review;
pub mod screening;

//! Why a request of a person (officer, administrator, auditor, manager) was refused: a closed set,
//! so that every refusal a page can show has its sentence in both of the UI's languages
//! (`web::page::refusal`). The English text here is for the CLI and logs.
//!
//! Library modules return these inside their own error type (`Error::Refused`); a message
//! that is not one of these cannot reach a page.

use crate::base::time::date_of;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    // Casework: the officer's workflow, filters and periods.
    #[error("a comment is required for every step")]
    CommentRequired,
    #[error("the comment is longer than 4,000 characters")]
    CommentTooLong,
    #[error("an alert that is {from} cannot become {to}")]
    StepNotAllowed { from: &'static str, to: String },
    #[error("unknown sort {0:?}")]
    UnknownSort(String),
    #[error("the period ends before it starts")]
    PeriodBackwards,
    #[error("a period of at most {max_days} days")]
    PeriodTooLong { max_days: u32 },

    // Form fields.
    #[error("not a date (YYYY-MM-DD): {0:?}")]
    NotADate(String),
    #[error("not a month (YYYY-MM): {0:?}")]
    NotAMonth(String),
    #[error("{field}: not a number: {value:?}")]
    NotANumber { field: &'static str, value: String },
    #[error("{field}: {value:?} is not one of the choices")]
    UnknownChoice { field: &'static str, value: String },

    // Accounts.
    #[error("a username is 1–64 letters, digits, '.', '-' or '_'")]
    UsernameInvalid,
    #[error("username {0:?} is taken")]
    UsernameTaken(String),
    #[error("no account {0:?}")]
    NoAccount(String),
    #[error("{0:?} is not an active officer")]
    NotAnActiveOfficer(String),
    #[error("the new password needs at least {min} characters")]
    PasswordTooShort { min: usize },
    #[error("the new password must differ from the current one")]
    PasswordUnchanged,
    #[error("you cannot disable your own account")]
    CannotDisableSelf,
    #[error("you cannot change your own role")]
    CannotChangeOwnRole,
    #[error("reset your own account from another administrator's")]
    CannotResetSelf,
    #[error("{0:?} is not an active manager")]
    NotAnActiveManager(String),
    #[error("{0:?} is not an e-mail address")]
    NotAnEmail(String),
    #[error("only officers are told of new alerts; managers receive escalations")]
    NotifyOfficersOnly,

    // Staff screening and access reviews.
    #[error("the expiry must be after the screening date")]
    ScreeningExpiresFirst,
    #[error("the screening date lies in the future")]
    ScreeningInFuture,
    #[error("the period must end after it starts, and not after today")]
    ReviewPeriodInvalid,
    #[error("findings are required (write \"no findings\" when there are none)")]
    FindingsRequired,
    #[error("nobody reviews their own accesses")]
    CannotReviewSelf,

    // Persons, supervisions, devices, stations, caseloads.
    #[error("no person with reference {0:?}")]
    NoPerson(String),
    #[error("case reference {0:?} is already enrolled")]
    ReferenceTaken(String),
    #[error("the data of {0:?} is being erased under the retention policy; enrol the person anew")]
    PersonBeingErased(String),
    #[error("the supervision of {0:?} has not ended; close it first")]
    SupervisionNotEnded(String),
    #[error("the supervision {reference:?} already ended on {}", date_of(*at_ms))]
    SupervisionEnded { reference: String, at_ms: i64 },
    #[error("the supervision {reference:?} started on {}; it cannot end before that", date_of(*started_ms))]
    SupervisionEndsBeforeStart { reference: String, started_ms: i64 },
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    #[error("implausible birth year {0}")]
    ImplausibleBirthYear(i32),
    #[error("device {0:?} has no current assignment")]
    DeviceNotAssigned(String),
    #[error("device {serial:?} was assigned on {}; its assignment cannot end before that", date_of(*from_ms))]
    AssignmentEndsBeforeStart { serial: String, from_ms: i64 },
    #[error("unknown device {0:?}: assign it to a person first")]
    UnknownDevice(String),
    #[error("station name {0:?} must be letters, digits, '-' or '_'")]
    StationNameInvalid(String),
    #[error("station {0:?} is already enrolled")]
    StationEnrolled(String),
    #[error("no active station named {0:?}")]
    NoActiveStation(String),
    #[error("no station named {0:?}")]
    NoStation(String),
    #[error("caseload assignment {0} does not exist or is not current")]
    AssignmentNotCurrent(i64),
    #[error("a hold needs a reason")]
    HoldReasonRequired,
    #[error("releasing a hold needs a reason")]
    ReleaseReasonRequired,

    // Research projects and tokens.
    #[error("the budget must be ≥ 0 and the per-query maximum > 0")]
    ProjectBudgetInvalid,
    #[error("δ must be in (0, 0.001]: it is the probability that the ε guarantee fails")]
    DeltaInvalid,
    #[error("no research project {0:?}")]
    NoProject(String),
    #[error("research project {0:?} exists")]
    ProjectExists(String),
    #[error("no active researcher account {0:?}")]
    NoActiveResearcher(String),
    #[error("a token id is 12 hex digits, as `research tokens` lists them")]
    TokenIdInvalid,
    #[error("{0} active tokens have this id")]
    TokenIdAmbiguous(usize),

    // Management figures (differential privacy).
    #[error("{0} has not ended yet: its figures are released from the first day after it")]
    MonthNotEnded(String),
    #[error("no management project: an administrator creates it with its budget")]
    NoManagementProject,
    #[error("privacy budget exhausted: ε = {needed:.4} asked, {remaining:.4} left")]
    BudgetExhausted { needed: f64, remaining: f64 },
    #[error("the privacy budget per person is exhausted: ε = {needed:.4} asked, {remaining:.4} left this year")]
    PersonBudgetExhausted { needed: f64, remaining: f64 },
    #[error("no research data yet: the pipelines have not produced daily indicators")]
    NoData,
}

impl Refusal {
    /// A refusal that is about the state of things rather than the request (409, not 400).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Refusal::BudgetExhausted { .. }
                | Refusal::PersonBudgetExhausted { .. }
                | Refusal::NoData
        )
    }

    /// One of each variant, for the tests that check every refusal is said in both languages.
    #[doc(hidden)]
    pub fn examples() -> Vec<Refusal> {
        use Refusal::*;
        let s = || "x-1".to_string();
        vec![
            CommentRequired,
            CommentTooLong,
            StepNotAllowed {
                from: "new",
                to: "resolved".into(),
            },
            UnknownSort(s()),
            PeriodBackwards,
            PeriodTooLong { max_days: 56 },
            NotADate(s()),
            NotAMonth(s()),
            NotANumber {
                field: "epsilon",
                value: s(),
            },
            UnknownChoice {
                field: "role",
                value: s(),
            },
            UsernameInvalid,
            UsernameTaken(s()),
            NoAccount(s()),
            NotAnActiveOfficer(s()),
            PasswordTooShort { min: 12 },
            PasswordUnchanged,
            CannotDisableSelf,
            CannotChangeOwnRole,
            CannotResetSelf,
            NotAnActiveManager(s()),
            NotAnEmail(s()),
            NotifyOfficersOnly,
            ScreeningExpiresFirst,
            ScreeningInFuture,
            ReviewPeriodInvalid,
            FindingsRequired,
            CannotReviewSelf,
            NoPerson(s()),
            ReferenceTaken(s()),
            PersonBeingErased(s()),
            SupervisionNotEnded(s()),
            SupervisionEnded {
                reference: s(),
                at_ms: 0,
            },
            SupervisionEndsBeforeStart {
                reference: s(),
                started_ms: 0,
            },
            UnknownRegion(s()),
            ImplausibleBirthYear(1800),
            DeviceNotAssigned(s()),
            AssignmentEndsBeforeStart {
                serial: s(),
                from_ms: 0,
            },
            UnknownDevice(s()),
            StationNameInvalid(s()),
            StationEnrolled(s()),
            NoActiveStation(s()),
            NoStation(s()),
            AssignmentNotCurrent(7),
            HoldReasonRequired,
            ReleaseReasonRequired,
            ProjectBudgetInvalid,
            DeltaInvalid,
            NoProject(s()),
            ProjectExists(s()),
            NoActiveResearcher(s()),
            TokenIdInvalid,
            TokenIdAmbiguous(0),
            MonthNotEnded("2026-12".into()),
            NoManagementProject,
            BudgetExhausted {
                needed: 1.0,
                remaining: 0.5,
            },
            PersonBudgetExhausted {
                needed: 1.0,
                remaining: 0.5,
            },
            NoData,
        ]
    }
}

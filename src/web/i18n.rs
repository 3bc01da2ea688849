//! The UI's two languages: Dutch (default) and English. Chosen with `?lang=en|nl`, remembered in
//! the `nw_lang` cookie. Every UI string is a key of [`TEXTS`]; a missing key shows the key itself,
//! and a unit test checks that every key used by the pages is translated.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Nl,
    En,
}

impl Lang {
    /// The language of a request: `?lang=`, else the `nw_lang` cookie, else Dutch.
    pub fn of(parts: &axum::http::request::Parts) -> Self {
        Self::requested(parts)
            .or_else(|| super::cookies::cookie(parts, "nw_lang").and_then(Self::parse))
            .unwrap_or(Lang::Nl)
    }

    /// A language asked for in the query string (`?lang=nl|en`), to be remembered.
    pub fn requested(parts: &axum::http::request::Parts) -> Option<Self> {
        parts
            .uri
            .query()?
            .split('&')
            .find_map(|kv| kv.strip_prefix("lang="))
            .and_then(Self::parse)
    }

    fn parse(code: &str) -> Option<Self> {
        match code {
            "nl" => Some(Lang::Nl),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }

    pub fn t(self, key: &'static str) -> &'static str {
        TEXTS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, nl, en)| if self == Lang::En { *en } else { *nl })
            .unwrap_or(key)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Lang>()
            .copied()
            .unwrap_or_else(|| Lang::of(parts)))
    }
}

/// key, Dutch, English.
pub const TEXTS: &[(&str, &str, &str)] = &[
    ("app.tagline", "Telemetrie van wearables voor de justitieketen.", "Wearable telemetry for the justice chain."),
    ("running", "nachtwacht draait", "nachtwacht is running"),
    ("landing.research", "Onderzoekers: gebruik de API onder /api/v1/research met het token van uw project.", "Researchers: use the API under /api/v1/research with your project token."),
    ("login", "Inloggen", "Sign in"),
    ("logout", "Uitloggen", "Sign out"),
    ("username", "Gebruikersnaam", "Username"),
    ("password", "Wachtwoord", "Password"),
    ("totp", "Code uit de authenticator-app", "Code from the authenticator app"),
    ("login.failed", "Onbekende gebruiker, verkeerd wachtwoord of verkeerde code.", "Unknown user, wrong password or wrong code."),
    ("login.locked", "Account tijdelijk geblokkeerd na te veel mislukte pogingen. Probeer het later opnieuw.", "Account locked after too many failed attempts. Try again later."),
    ("login.throttled", "Te veel mislukte pogingen vanaf dit adres. Wacht enkele minuten.", "Too many failed attempts from this address. Wait a few minutes."),
    ("forbidden", "U heeft geen toegang tot deze pagina.", "You do not have access to this page."),
    ("csrf", "Formulier verlopen of ongeldig; laad de pagina opnieuw.", "Form expired or invalid; reload the page."),
    ("not_found", "Niet gevonden, of niet in uw caseload.", "Not found, or not on your caseload."),
    ("account", "Mijn account", "My account"),
    ("password.change", "Wachtwoord wijzigen", "Change password"),
    ("password.must_change", "Kies eerst een eigen wachtwoord: het huidige is door een beheerder uitgegeven.", "First choose your own password: the current one was issued by an administrator."),
    ("password.current", "Huidig wachtwoord", "Current password"),
    ("password.new", "Nieuw wachtwoord (minstens 12 tekens)", "New password (at least 12 characters)"),
    ("password.repeat", "Herhaal het nieuwe wachtwoord", "Repeat the new password"),
    ("password.mismatch", "De nieuwe wachtwoorden zijn niet gelijk.", "The new passwords differ."),
    ("password.wrong", "Het huidige wachtwoord klopt niet.", "The current password is wrong."),
    ("role", "Rol", "Role"),
    ("alerts", "Meldingen", "Alerts"),
    ("alert", "Melding", "Alert"),
    ("stations", "Basisstations", "Base stations"),
    ("admin", "Beheer", "Administration"),
    ("audit", "Auditlog", "Audit log"),
    ("status", "Status", "Status"),
    ("kind", "Soort", "Type"),
    ("person", "Persoon", "Person"),
    ("programme", "Programma", "Programme"),
    ("from", "Van", "From"),
    ("to", "Tot en met", "To"),
    ("filter", "Filteren", "Filter"),
    ("start", "Begin", "Start"),
    ("end", "Einde", "End"),
    ("severity", "Ernst", "Severity"),
    ("severity.high", "hoog", "high"),
    ("severity.medium", "middel", "medium"),
    ("severity.warning", "waarschuwing", "warning"),
    ("severity.review", "ter beoordeling", "for review"),
    ("severity.low", "laag", "low"),
    ("peak_tac", "Piek-TAC (g/dL)", "Peak TAC (g/dL)"),
    ("no_alerts", "Geen meldingen in uw caseload met deze filters.", "No alerts on your caseload with these filters."),
    ("any", "alle", "any"),
    ("status.new", "nieuw", "new"),
    ("status.in_process", "in behandeling", "in process"),
    ("status.confirmed", "bevestigd", "confirmed"),
    ("status.not_confirmed", "niet bevestigd", "not confirmed"),
    ("status.resolved", "afgehandeld", "resolved"),
    ("evidence", "Bewijs", "Evidence"),
    ("chart.caption", "TAC rond de melding, met de drempel (rood gestreept); daaronder draagtijd (groen = gedragen) en contact met het basisstation (streepjes).", "TAC around the alert, with the threshold (red dashes); below, wear (green = worn) and base-station contact (ticks)."),
    ("chart.no_data", "Geen metingen in deze periode.", "No readings in this period."),
    ("wear", "Gedragen", "Worn"),
    ("alert.provisional", "voorlopig", "provisional"),
    ("alert.revised", "herzien", "revised"),
    ("alert.withdrawn", "ingetrokken", "withdrawn"),
    ("alert.provisional.note", "Voorlopig: de episode was bij de laatste ontvangen meting nog niet afgelopen. De melding wordt herzien zodra het verloop bekend is.", "Provisional: the episode had not ended at the last reading received. The alert is revised once its course is known."),
    ("assessment", "Beoordeling", "Assessment"),
    ("reason.drinking", "Stijging en daling passen bij drinken (binnen de grenzen, met ruimte voor meetruis)", "Rise and fall fit drinking (within the limits, allowing for measurement noise)"),
    ("reason.ambient-alcohol", "Alcohol in de omgevingslucht gemeten: mogelijk blootstelling, geen drinken", "Alcohol measured in the ambient air: possibly exposure, not drinking"),
    ("reason.rise-too-fast", "TAC steeg sneller dan drinken kan veroorzaken (ook met ruimte voor meetruis)", "TAC rose faster than drinking can produce (even allowing for measurement noise)"),
    ("reason.fall-too-fast", "TAC daalde sneller dan het lichaam alcohol afbreekt (ook met ruimte voor meetruis)", "TAC fell faster than the body eliminates alcohol (even allowing for measurement noise)"),
    ("mean_rise", "Gemiddelde stijging", "Mean rise"),
    ("mean_fall", "Gemiddelde daling", "Mean fall"),
    ("not_observed", "niet gemeten", "not observed"),
    ("revisions", "Herzieningen", "Revisions"),
    ("revision.reason", "Reden", "Reason"),
    ("revision.before", "Was", "Before"),
    ("revision.after", "Nu", "After"),
    ("revision.confirmed", "Het einde van de episode is gemeten: de melding is niet langer voorlopig", "The episode's end was measured: the alert is no longer provisional"),
    ("revision.reclassified", "Nieuwe metingen of gewijzigde regels veranderen de beoordeling", "New readings or changed rules change the assessment"),
    ("revision.changed", "Nieuwe metingen of gewijzigde regels veranderen duur, piek of bewijs", "New readings or changed rules change the extent, peak or evidence"),
    ("revision.merged", "Samengevoegd met een eerdere melding van dezelfde episode", "Merged into an earlier alert of the same episode"),
    ("revision.withdrawn", "Ingetrokken: de metingen tonen hier geen gebeurtenis meer", "Withdrawn: the readings no longer show an event here"),
    ("revision.reinstated", "Hersteld: de metingen tonen de gebeurtenis weer", "Reinstated: the readings show the event again"),
    ("contact", "Contact", "Contact"),
    ("workflow", "Afhandeling", "Workflow"),
    ("next_step", "Volgende stap", "Next step"),
    ("comment", "Toelichting (verplicht)", "Comment (required)"),
    ("save", "Opslaan", "Save"),
    ("history", "Geschiedenis", "History"),
    ("report", "Rapport niet-naleving", "Non-compliance report"),
    ("print", "Afdrukken", "Print"),
    ("criteria", "Gebruikte criteria", "Criteria used"),
    ("interpretation", "Interpretatie", "Interpretation"),
    ("bundles", "Bundels (bewijs)", "Bundles (evidence)"),
    ("generated", "Opgesteld door", "Prepared by"),
    ("last_contact", "Laatste contact", "Last contact"),
    ("last_upload", "Laatste upload", "Last upload"),
    ("spool", "Wachtrij (bundels)", "Spool (bundles)"),
    ("clock_offset", "Klokafwijking (ms)", "Clock offset (ms)"),
    ("revoked", "ingetrokken", "revoked"),
    ("no_stations", "Geen basisstations in uw caseload.", "No base stations on your caseload."),
    ("accounts", "Accounts", "Accounts"),
    ("persons", "Personen", "Persons"),
    ("devices", "Apparaten", "Devices"),
    ("caseloads", "Caseloads", "Caseloads"),
    ("research", "Onderzoeksprojecten en budgetten", "Research projects and budgets"),
    ("tokens", "Tokens", "Tokens"),
    ("create", "Aanmaken", "Create"),
    ("disable", "Blokkeren", "Disable"),
    ("reset", "Nieuw wachtwoord en TOTP", "New password and TOTP"),
    ("revoke", "Intrekken", "Revoke"),
    ("assign", "Toewijzen", "Assign"),
    ("end_now", "Nu beëindigen", "End now"),
    ("return_now", "Nu ingeleverd", "Returned now"),
    ("person.export", "Inzage (export)", "Subject access export"),
    ("person.close", "Toezicht beëindigen", "End supervision"),
    ("person.returning", "Eerder dossier (terugkeer)", "Earlier case (returning)"),
    ("supervision", "Toezicht", "Supervision"),
    ("supervision.running", "Lopend toezicht", "Running supervision"),
    ("supervision.closed", "Beëindigd toezicht", "Ended supervision"),
    ("supervision.ended_on", "beëindigd", "ended"),
    ("holds", "Juridische bewaring", "Legal holds"),
    ("hold.place", "Bewaren (rechtszaak)", "Hold (court proceedings)"),
    ("hold.release", "Bewaring opheffen", "Release hold"),
    ("hold.scope.alert", "deze melding", "this alert"),
    ("hold.scope.person", "alles van deze persoon", "everything of this person"),
    ("hold.reason", "Reden", "Reason"),
    ("hold.note", "Gegevens onder juridische bewaring worden niet gewist tot de bewaring is opgeheven.", "Data under a legal hold is not erased until the hold is released."),
    ("reference", "Referentie", "Reference"),
    ("region", "Regio", "Region"),
    ("birth_year", "Geboortejaar", "Birth year"),
    ("serial", "Serienummer", "Serial number"),
    ("officer", "Reclasseringswerker", "Probation officer"),
    ("name", "Naam", "Name"),
    ("budget", "Budget ε", "Budget ε"),
    ("delta", "δ", "δ"),
    ("spent", "Besteed ε", "Spent ε"),
    ("max_per_query", "Max. ε per vraag", "Max ε per query"),
    ("days_valid", "Geldig (dagen)", "Valid (days)"),
    ("project", "Project", "Project"),
    ("holder", "Houder", "Holder"),
    ("times_in", "Tijden in de tijdzone", "Times in the time zone"),
    ("error.400", "Ongeldig verzoek", "Bad request"),
    ("error.401", "Niet aangemeld", "Not signed in"),
    ("error.403", "Geen toegang", "Forbidden"),
    ("error.404", "Niet gevonden", "Not found"),
    ("error.409", "Niet mogelijk", "Conflict"),
    ("error.413", "Te groot", "Too large"),
    ("error.429", "Te veel verzoeken", "Too many requests"),
    ("error.500", "Interne fout", "Internal error"),
    ("error.internal", "Er ging iets mis op de server; de beheerder vindt de oorzaak in het serverlogboek.", "Something went wrong on the server; the operator finds the cause in the server log."),
    ("head", "kop van de keten", "head of the chain"),
    ("kind.alcohol", "Alcohol", "Alcohol"),
    ("kind.interferent", "Storende stof (beoordelen)", "Interferent (for review)"),
    ("kind.strap-open", "Band geopend", "Strap opened"),
    ("kind.possible-removal", "Mogelijk afgedaan", "Possible removal"),
    ("kind.obstruction", "Sensor afgeschermd", "Sensor obstructed"),
    ("kind.battery-low", "Batterij bijna leeg", "Battery low"),
    ("kind.device-fault", "Apparaatstoring", "Device fault"),
    ("kind.communication-lost", "Geen contact met basisstation", "Station contact lost"),
    ("kind.communication-critical", "Langdurig geen contact", "Station contact lost (critical)"),
    ("kind.device-disconnected", "Apparaat niet verbonden", "Device disconnected"),
    ("kind.station-spool-full", "Opslag basisstation vol", "Station storage full"),
    ("kind.clock-drift", "Klok basisstation wijkt af", "Station clock off"),
    ("export.csv", "Exporteren (CSV)", "Export (CSV)"),
    ("programme.alcohol-ban", "Alcoholverbod", "Alcohol ban"),
    ("programme.aggression-training", "Agressieregulatie", "Aggression training"),
    ("programme.tbs-leave", "Tbs-verlof", "Forensic leave"),
    ("mgmt.figure.alcohol-by-programme", "Persoonsdagen met een alcoholmelding, per programma", "Person-days with an alcohol alert, by programme"),
    ("mgmt.figure.tamper-by-programme", "Persoonsdagen met een sabotagemelding, per programma", "Person-days with a tamper alert, by programme"),
    ("mgmt.figure.communication-by-programme", "Persoonsdagen met een contactmelding, per programma", "Person-days with a communication alert, by programme"),
    ("mgmt.figure.alcohol-by-region", "Persoonsdagen met een alcoholmelding, per regio", "Person-days with an alcohol alert, by region"),
    ("mgmt.figure.tamper-by-region", "Persoonsdagen met een sabotagemelding, per regio", "Person-days with a tamper alert, by region"),
    ("mgmt.figure.communication-by-region", "Persoonsdagen met een contactmelding, per regio", "Person-days with a communication alert, by region"),
    ("mgmt.figure.other", "Figuur", "Figure"),
    ("alerts.new_since", "nieuw sinds uw vorige bezoek op", "new since your last visit at"),
    ("alert.fresh", "nieuw voor u", "new to you"),
    ("audit.what", "Wat gebeurde", "What happened"),
    ("audit.s.login", "{actor} meldde zich aan", "{actor} signed in"),
    ("audit.s.login-failed", "aanmelding als {object} mislukt of geweigerd", "sign-in as {object} failed or refused"),
    ("audit.s.logout", "{actor} meldde zich af", "{actor} signed out"),
    ("audit.s.alerts-list", "{actor} bekeek de meldingenlijst", "{actor} viewed the alert list"),
    ("audit.s.alerts-export", "{actor} exporteerde de meldingenlijst", "{actor} exported the alert list"),
    ("audit.s.alert-view", "{actor} bekeek {object}", "{actor} viewed {object}"),
    ("audit.s.alert-report", "{actor} opende het rapport van {object}", "{actor} opened the report of {object}"),
    ("audit.s.alert-dossier", "{actor} maakte een bewijsdossier van {object}", "{actor} made an evidence dossier of {object}"),
    ("audit.s.alert-transition", "{actor} nam een stap in de afhandeling van {object}", "{actor} took a workflow step on {object}"),
    ("audit.s.alert-refused", "{actor} werd de toegang tot {object} geweigerd", "{actor} was refused {object}"),
    ("audit.s.alert-sealed", "{object} werd verzegeld in het logboek", "{object} was sealed in the log"),
    ("audit.s.stations-view", "{actor} bekeek de basisstations", "{actor} viewed the base stations"),
    ("audit.s.admin-view", "{actor} opende het beheeroverzicht", "{actor} opened the administration overview"),
    ("audit.s.account-create", "{actor} maakte account {object} aan", "{actor} created account {object}"),
    ("audit.s.account-role", "{actor} gaf {object} een andere rol", "{actor} changed {object}'s role"),
    ("audit.s.account-disable", "{actor} blokkeerde {object}", "{actor} disabled {object}"),
    ("audit.s.caseload-assign", "{actor} wees {object} toe aan een reclasseringswerker", "{actor} assigned {object} to an officer"),
    ("audit.s.screening-record", "{actor} legde een screening vast voor {object}", "{actor} recorded a screening of {object}"),
    ("audit.s.screening-refused", "{actor} werd geweigerd: geen geldige screening", "{actor} was refused: no screening in force"),
    ("audit.s.review-record", "{actor} controleerde de inzagen van {object}", "{actor} reviewed the accesses of {object}"),
    ("audit.s.person-export", "{actor} exporteerde alle gegevens van {object}", "{actor} exported all data of {object}"),
    ("audit.s.hold-place", "{actor} plaatste een bewaarplicht op {object}", "{actor} placed a legal hold on {object}"),
    ("audit.s.audit-view", "{actor} las het auditlogboek", "{actor} read the audit log"),
    ("audit.s.research-release", "{actor} kreeg een DP-antwoord", "{actor} received a DP answer"),
    ("audit.s.other", "{actor}: {action} {object}", "{actor}: {action} {object}"),
    ("sort", "Sorteren", "Sort"),
    ("sort.start", "Nieuwste eerst", "Newest first"),
    ("sort.severity", "Ernst", "Severity"),
    ("sort.person", "Persoon", "Person"),
    ("sort.status", "Status (open eerst)", "Status (open first)"),
    ("alerts.found", "Meldingen", "Alerts"),
    ("page", "Pagina", "Page"),
    ("page.previous", "vorige", "previous"),
    ("page.next", "volgende", "next"),
    ("error.back", "Terug naar de startpagina", "Back to the start page"),
    ("dossier", "Bewijsdossier (downloaden)", "Evidence dossier (download)"),
    ("screening", "Screening", "Screening"),
    ("screening.expired", "verlopen op", "expired on"),
    ("screening.none", "geen screening", "no screening"),
    ("screened_on", "Datum", "Date"),
    ("expires", "Geldig tot", "Valid until"),
    ("until", "tot", "until"),
    ("record", "Vastleggen", "Record"),
    ("reviews", "Periodieke toegangscontrole", "Periodic access review"),
    ("review.last", "Laatst gecontroleerd", "Last reviewed"),
    ("review.findings", "Bevindingen", "Findings"),
    ("review.accesses_since", "Inzagen sindsdien", "Accesses since"),
    ("compliance.report", "Nalevingsrapport (BIO)", "Compliance report (BIO)"),
    ("screening.refused", "Uw screening (bijv. VOG) is niet geldig: persoonsgegevens blijven gesloten tot een beheerder een nieuwe screening vastlegt", "Your staff screening (e.g. VOG) is not in force: personal data stays closed until an administrator records a new screening"),
    ("shown_once", "Wordt maar één keer getoond: geef dit veilig door.", "Shown only once: pass it on securely."),
    ("done", "Gereed.", "Done."),
    ("back", "Terug", "Back"),
    ("created", "Aangemaakt", "Created"),
    ("state", "Toestand", "State"),
    ("active", "actief", "active"),
    ("locked", "geblokkeerd tot", "locked until"),
    ("disabled", "geblokkeerd", "disabled"),
    ("enrol_station", "Basisstation inschrijven (download de configuratie)", "Enrol base station (downloads its configuration)"),
    ("chain", "Hashketen", "Hash chain"),
    ("chain.intact", "intact", "intact"),
    (
        "person_budget",
        "Privacyverlies per persoon over alle projecten",
        "Privacy loss per person across all projects",
    ),
    ("period", "Periode", "Period"),
    ("cap", "Plafond", "Cap"),
    (
        "checkpoint",
        "Laatste ondertekende ankerpunt (noteer dit buiten nachtwacht)",
        "Latest signed checkpoint (record it outside nachtwacht)",
    ),
    ("chain.broken", "VERBROKEN", "BROKEN"),
    ("entries", "regels", "entries"),
    ("actor", "Actor", "Actor"),
    ("action", "Actie", "Action"),
    ("object", "Object", "Object"),
    ("time", "Tijd", "Time"),
    ("detail", "Details", "Detail"),
    ("export", "Exporteren", "Export"),
    ("interp.alcohol", "De transdermale alcoholconcentratie lag gedurende ten minste het vereiste aantal opeenvolgende metingen boven de drempel, met een stijging en daling die passen bij alcoholgebruik. Dit is een aanwijzing, geen bewijs van gebruik op zichzelf: beoordeel het samen met de draagtijd en het gesprek met de betrokkene.", "Transdermal alcohol concentration stayed above the threshold for at least the required number of consecutive readings, with a rise and fall consistent with drinking. This is an indication, not proof of drinking on its own: weigh it together with wear time and a conversation with the person."),
    ("management", "Managementinformatie", "Management figures"),
    ("mgmt.budget", "Privacybudget van het managementproject", "Privacy budget of the management project"),
    ("mgmt.left", "nog beschikbaar", "left"),
    ("mgmt.month", "Maand", "Month"),
    ("mgmt.release", "Cijfers vrijgeven", "Release figures"),
    ("mgmt.explain", "Per maand: persoon-dagen met een alcohol-, sabotage- of communicatiemelding, per programma en per regio. Elk cijfer is differentieel privé (privacy-eenheid: persoon); de rode streep is het 95%-interval van de ruis. Een maand wordt één keer vrijgegeven; opnieuw bekijken kost geen budget.", "Per month: person-days with an alcohol, tamper or communication alert, per programme and per region. Every figure is differentially private (privacy unit: person); the red bar is the 95 % interval of the noise. A month is released once; looking again costs no budget."),
    ("interp.other", "Zie de criteria hierboven en de tijdlijn van draagtijd en contact.", "See the criteria above and the timeline of wear and contact."),
    ("caseload.empty", "Er staat niemand op uw caseload.", "Nobody is on your caseload."),
    ("today", "Vandaag", "Today"),
    ("alerts.open", "Open meldingen", "Open alerts"),
    ("today.alert-open", "melding open", "alert open"),
    ("today.device-problem", "apparaatprobleem", "device problem"),
    ("today.silent", "geen contact", "silent"),
    ("today.ok", "in orde", "ok"),
    ("day.no-device", "geen apparaat", "no device"),
    ("day.alert", "melding", "alert"),
    ("day.silent", "geen gegevens", "no data"),
    ("day.worn", "gedragen", "worn"),
    ("device.ankle-monitor", "Enkelmonitor", "Ankle monitor"),
    ("device.wristband", "Polsband", "Wristband"),
    ("device.unknown", "Apparaat", "Device"),
    ("none", "geen", "none"),
    ("calendar", "Nalevingskalender (laatste 8 weken)", "Compliance calendar (last 8 weeks)"),
    ("weekday.mon", "ma", "Mon"),
    ("weekday.tue", "di", "Tue"),
    ("weekday.wed", "wo", "Wed"),
    ("weekday.thu", "do", "Thu"),
    ("weekday.fri", "vr", "Fri"),
    ("weekday.sat", "za", "Sat"),
    ("weekday.sun", "zo", "Sun"),
    ("week", "Week", "Week"),
    ("show", "Tonen", "Show"),
    ("period.max", "ten hoogste 56 dagen", "at most 56 days"),
    ("tac.curve", "Transdermale alcoholconcentratie", "Transdermal alcohol concentration"),
    ("wrist.daily", "Polsband: indicatoren per dag", "Wristband: daily indicators"),
    ("wrist.hr", "Gemiddelde hartslag", "Mean heart rate"),
    ("wrist.eda", "Gemiddelde huidgeleiding", "Mean skin conductance"),
    ("wrist.worn", "Gedragen", "Worn"),
    ("day", "Dag", "Day"),
    ("contacts.in_period", "Contacten van het basisstation in deze periode", "Base-station contacts in this period"),
    ("gap.not_worn", "niet gedragen", "not worn"),
    ("gap.no_contact", "geen contact", "no contact"),
    ("gap.not_uploaded", "nog niet ontvangen", "not uploaded yet"),
    ("contact.timeline", "Contact met het basisstation", "Base-station contact"),
    ("contact.last_before", "Laatste contact vóór de melding", "Last contact before the alert"),
    ("contact.first_after", "Eerste contact daarna", "First contact after"),
    ("contact.none_yet", "nog geen", "none yet"),
    ("wrist.evidence", "Polsband rond de melding (gemiddelde per minuut)", "Wristband around the alert (mean per minute)"),
    ("wrist.movement", "Beweging", "Movement"),
    ("session.expired", "Uw sessie is verlopen. Meld u opnieuw aan: uw opmerking is bewaard.", "Your session expired. Sign in again: your comment has been kept."),
    ("session.resume", "Verder waar u was", "Carry on where you were"),
    ("session.kept", "Uw opmerking is bewaard. Controleer haar en sla op.", "Your comment was kept. Check it and save."),
    ("login.first", "Meld u eerst aan.", "Sign in first."),
    ("error.no_rule", "Voor deze pagina is geen toegangsregel.", "There is no access rule for this page."),
    ("error.unknown_host", "Onbekende servernaam.", "Unknown server name."),
    ("error.cross_origin", "Formulier van een andere website geweigerd.", "A form from another website was refused."),
    ("error.form_too_large", "Het formulier is te groot.", "The form is too large."),
    ("role.administrator", "beheerder", "administrator"),
    ("role.officer", "reclasseringswerker", "probation officer"),
    ("role.manager", "manager", "manager"),
    ("role.researcher", "onderzoeker", "researcher"),
    ("role.auditor", "auditor", "auditor"),
    ("caseload", "Mijn caseload", "My caseload"),
    ("notify.title", "E-mail bij meldingen", "E-mail about alerts"),
    ("notify.explain.officer", "Kies bij welke soorten meldingen over personen in uw caseload u een e-mail wilt. Het bericht bevat geen persoonsgegevens: alleen een zin en een link naar de melding.", "Choose which kinds of alerts about persons on your caseload you want an e-mail about. The message holds no personal data: only a sentence and a link to the alert."),
    ("notify.explain.manager", "U krijgt een e-mail als een kritieke melding van een toezichthouder in uw team niet op tijd is geopend. Het bericht bevat geen persoonsgegevens.", "You get an e-mail when a critical alert of an officer in your team is not opened in time. The message holds no personal data."),
    ("notify.not_configured", "Op deze server is nog geen mailserver ingesteld: uw keuze wordt bewaard en geldt zodra dat gebeurd is.", "No mail server is configured on this server yet: your choice is kept and applies once one is."),
    ("notify.email", "E-mailadres (werk)", "E-mail address (work)"),
    ("notify.kinds", "Soorten meldingen", "Kinds of alerts"),
    ("notify.manager", "Uw teamleider (ontvangt escalaties)", "Your team manager (receives escalations)"),
    ("notify.bad_email", "Dit is geen geldig e-mailadres.", "This is not a valid e-mail address."),
    ("notify.email_needed", "Vul een e-mailadres in om meldingen te ontvangen.", "Enter an e-mail address to receive alerts."),
    ("manager.team", "Teamleider", "Team manager"),
    ("manager.none", "geen", "none"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_both_languages_are_filled() {
        let mut keys: Vec<&str> = TEXTS.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len(), "duplicate keys");
        for (k, nl, en) in TEXTS {
            assert!(!nl.is_empty() && !en.is_empty(), "{k}");
        }
    }

    #[test]
    fn every_key_the_pages_use_is_translated() {
        let sources = [
            include_str!("page.rs"),
            include_str!("pages/home.rs"),
            include_str!("pages/login.rs"),
            include_str!("pages/officer.rs"),
            include_str!("pages/admin.rs"),
            include_str!("pages/auditor.rs"),
            include_str!("access.rs"),
            include_str!("pages/management.rs"),
            include_str!("pages/person.rs"),
            include_str!("pages/notifications.rs"),
            include_str!("signin.rs"),
        ];
        for src in sources {
            for piece in src.split(".t(\"").skip(1) {
                let key = piece.split('"').next().unwrap();
                assert!(
                    TEXTS.iter().any(|(k, _, _)| *k == key),
                    "untranslated key {key:?}"
                );
            }
        }
    }
}

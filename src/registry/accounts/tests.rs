use super::*;

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::base::db::testing::open(dir.path());
    (dir, db)
}

#[test]
fn totp_matches_the_rfc_6238_test_vectors() {
    // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8 digits there; the last 6
    // digits are what a 6-digit code is.
    let secret = base32_encode(b"12345678901234567890");
    assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    for (t, eight) in [
        (59, "94287082"),
        (1111111109, "07081804"),
        (2000000000, "69279037"),
    ] {
        assert_eq!(totp_code(&secret, t * 1000).unwrap(), eight[2..]);
    }
    assert_eq!(base32_decode(&secret).unwrap(), b"12345678901234567890");
}

#[test]
fn login_needs_password_and_a_fresh_code_and_locks_after_failures() {
    let (_d, db) = db();
    let now = 1_800_000_000_000;
    let new = create(&db, "anna", Role::Officer, "test", now).unwrap();
    let code = totp_code(&new.totp_secret, now).unwrap();
    assert!(matches!(
        login(&db, "anna", "wrong", &code, "t", now),
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        login(&db, "anna", &new.password, "000000", "t", now),
        Err(Error::BadCredentials)
    ));
    let s = login(&db, "anna", &new.password, &code, "t", now).unwrap();
    assert_eq!(s.account.role, Role::Officer);
    // The same code again is a replay.
    assert!(login(&db, "anna", &new.password, &code, "t", now + 1000).is_err());
    assert!(session(&db, &s.token, now + 60_000).unwrap().is_some());
    // Idle expiry.
    assert!(session(&db, &s.token, now + 60_000 + SESSION_IDLE_MS + 1)
        .unwrap()
        .is_none());

    for i in 0..LOCKOUT_AFTER_FAILURES {
        let r = login(&db, "anna", "wrong", "000000", "t", now + 100_000 + i);
        assert!(r.is_err());
    }
    let later = now + 200_000;
    let good = totp_code(&new.totp_secret, later).unwrap();
    assert!(matches!(
        login(&db, "anna", &new.password, &good, "t", later),
        Err(Error::Locked)
    ));
    let after = later + LOCKOUT_MS + 60_000;
    let good = totp_code(&new.totp_secret, after).unwrap();
    assert!(login(&db, "anna", &new.password, &good, "t", after).is_ok());
    let actions: Vec<String> = audit::entries(&db.lock())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.iter().any(|a| a == "login.locked"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "login.refused-locked"));
}

/// Eight logins with one valid TOTP code at once open one session; fifteen wrong passwords at
/// once all count (the account locks). Before the fix the account row read before the argon2
/// check was reused in the transaction: 8 sessions, and `failed_logins` stayed at 1.
#[test]
fn parallel_logins_use_a_code_once_and_count_every_failure() {
    let (_d, db) = db();
    let now = 1_800_000_000_000;
    let new = create(&db, "pim", Role::Officer, "test", now).unwrap();
    let code = totp_code(&new.totp_secret, now).unwrap();
    let attempt = |password: String, code: String| {
        let db = db.clone();
        std::thread::spawn(move || login(&db, "pim", &password, &code, "t", now))
    };
    let logins: Vec<_> = (0..8)
        .map(|_| attempt(new.password.clone(), code.clone()))
        .collect();
    let opened = logins
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(Result::is_ok)
        .count();
    assert_eq!(opened, 1, "one code, one session");

    let other = create(&db, "quinten", Role::Officer, "test", now).unwrap();
    let wrong: Vec<_> = (0..15)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || login(&db, "quinten", "wrong", "000000", "t", now))
        })
        .collect();
    for t in wrong {
        assert!(t.join().unwrap().is_err());
    }
    let (failed, locked_until): (i64, Option<i64>) = db
        .lock()
        .query_row(
            "SELECT failed_logins, locked_until_ms FROM accounts WHERE username = 'quinten'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        locked_until.is_some(),
        "15 failures lock the account ({failed} counted)"
    );
    let good = totp_code(&other.totp_secret, now + 30_000).unwrap();
    assert!(matches!(
        login(&db, "quinten", &other.password, &good, "t", now + 30_000),
        Err(Error::Locked)
    ));
}

#[test]
fn the_issued_password_must_be_replaced_and_a_change_ends_other_sessions() {
    let (_d, db) = db();
    let now = 1_800_000_000_000;
    let new = create(&db, "cees", Role::Manager, "test", now).unwrap();
    let code = |t: i64| totp_code(&new.totp_secret, t).unwrap();
    let s1 = login(&db, "cees", &new.password, &code(now), "t", now).unwrap();
    assert!(s1.account.must_change_password);
    let s2 = login(
        &db,
        "cees",
        &new.password,
        &code(now + 30_000),
        "t",
        now + 30_000,
    )
    .unwrap();
    let too_short = change_password(&db, &s2, &new.password, "short", now + 31_000);
    assert!(matches!(too_short, Err(Error::Refused(_))));
    let wrong = change_password(&db, &s2, "not-it", "a much longer secret", now + 31_000);
    assert!(matches!(wrong, Err(Error::BadCredentials)));
    change_password(
        &db,
        &s2,
        &new.password,
        "a much longer secret",
        now + 32_000,
    )
    .unwrap();
    let s2 = session(&db, &s2.token, now + 33_000).unwrap().unwrap();
    assert!(!s2.account.must_change_password);
    assert!(
        session(&db, &s1.token, now + 33_000).unwrap().is_none(),
        "other session ended"
    );
    let later = now + 90_000;
    assert!(login(&db, "cees", &new.password, &code(later), "t", later).is_err());
    assert!(login(
        &db,
        "cees",
        "a much longer secret",
        &code(later),
        "t",
        later
    )
    .is_ok());
}

#[test]
fn sessions_end_at_the_absolute_limit_and_when_the_account_is_disabled() {
    let (_d, db) = db();
    let now = 1_800_000_000_000;
    let new = create(&db, "bert", Role::Auditor, "test", now).unwrap();
    let s = login(
        &db,
        "bert",
        &new.password,
        &totp_code(&new.totp_secret, now).unwrap(),
        "t",
        now,
    )
    .unwrap();
    // Active every 10 minutes, still ended after 8 hours.
    let mut t = now;
    while t < now + SESSION_ABSOLUTE_MS - 600_000 {
        t += 600_000;
        assert!(
            session(&db, &s.token, t).unwrap().is_some(),
            "at {}",
            t - now
        );
    }
    assert!(session(&db, &s.token, now + SESSION_ABSOLUTE_MS + 1)
        .unwrap()
        .is_none());

    let later = now + SESSION_ABSOLUTE_MS + 120_000;
    let s = login(
        &db,
        "bert",
        &new.password,
        &totp_code(&new.totp_secret, later).unwrap(),
        "t",
        later,
    )
    .unwrap();
    disable(&db, new.id, "admin", later + 1).unwrap();
    assert!(session(&db, &s.token, later + 2).unwrap().is_none());
}

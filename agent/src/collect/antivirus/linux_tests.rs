//! Tests of the Linux `antivirus` backend (`linux.rs`), kept apart for its size.

use super::*;

/// 2026-11-23 09:00 UTC.
const NOW: i64 = 1_795_424_400;

const SAV_ON: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<status xmlns=\"http://www.sophos.com/EE/EESavStatus\">\n  <csc:CompRes xmlns:csc=\"com.sophos\\msys\\csc\" Res=\"Same\" RevID=\"ab12\" policyType=\"2\"/>\n  <upToDateState>1</upToDateState>\n  <on-access>true</on-access>\n</status>\n";

fn alc(last_sync: &str, result: u32) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<status xmlns=\"com.sophos\\mansys\\status\" type=\"sau\">\n  <autoUpdate xmlns=\"http://www.sophos.com/xml/mansys/AutoUpdateStatus.xsd\" version=\"1.2.7\">\n    <lastSyncTime>{last_sync}</lastSyncTime>\n    <lastResult>{result}</lastResult>\n  </autoUpdate>\n</status>\n"
    )
}

#[test]
fn spl_times_with_and_without_colons() {
    assert_eq!(parse_compact_time("20261123 080000"), Some(NOW - 3600));
    assert_eq!(parse_compact_time("20261123 08:00:00"), Some(NOW - 3600));
    assert_eq!(parse_compact_time("20261123"), Some(NOW - 9 * 3600));
    assert_eq!(parse_compact_time("20261323 080000"), None, "month 13");
    assert_eq!(parse_compact_time("2026-11-23"), None);
    assert_eq!(parse_compact_time(""), None);
}

#[test]
fn spl_on_access_and_update_age_decide() {
    let p = sophos_spl(None, Some(true), Ok(SAV_ON.into()), Ok(alc("20261123 063000", 0)), NOW);
    assert_eq!((p.active, p.signatures_age_hours, p.problem.as_deref()), (Some(true), Some(2), None));

    let off = SAV_ON.replace("<on-access>true", "<on-access>false");
    let p = sophos_spl(None, Some(true), Ok(off), Ok(alc("20261123 063000", 0)), NOW);
    assert_eq!((p.active, p.problem.as_deref()), (Some(false), Some("on-access scanning is off")));

    let p = sophos_spl(None, Some(true), Ok(SAV_ON.into()), Ok(alc("20261110 063000", 112)), NOW);
    let why = p.problem.unwrap();
    assert!(why.contains("314 h ago") && why.contains("failed with code 112"), "{why}");

    let never = "<status><autoUpdate><lastResult>112</lastResult></autoUpdate></status>";
    let p = sophos_spl(None, Some(true), Ok(SAV_ON.into()), Ok(never.into()), NOW);
    assert_eq!(p.problem.as_deref(), Some("no update has succeeded yet (last result code 112)"));
}

#[test]
fn spl_never_passes_on_the_service_alone() {
    let p = sophos_spl(None, Some(true), Err("no such file".into()), Err("no such file".into()), NOW);
    assert_eq!(p.active, None);
    assert!(p.problem.unwrap().contains("are not readable: no such file"));
    // Hostile or foreign content is unreadable, not "off".
    for bad in ["<on-access>true</on-access>", "<status xmlns=\"x/EESavStatus\"><on-access>maybe</on-access>"]
    {
        let p = sophos_spl(None, Some(true), Ok(bad.into()), Ok(alc("20261123 063000", 0)), NOW);
        assert_eq!(p.active, None, "{bad}");
    }
    let p = sophos_spl(None, Some(true), Ok(SAV_ON.into()), Ok(alc("yesterday", 0)), NOW);
    assert!(p.problem.unwrap().contains("unreadable"));
    let p = sophos_spl(None, Some(false), Ok(SAV_ON.into()), Ok(alc("20261123 063000", 0)), NOW);
    assert_eq!(p.active, Some(false));
    assert!(xml_element("<on-accessible>x</on-accessible>", "on-access").is_none());
}

const MODULES: &str = "EM000\t  1088 (20261120)\tUpdate module\nEM002\t 31832 (20261122)\tDetection engine\nEM023\t 26932 (20261122)\tRapid Response module\n";

#[test]
fn eset_activation_and_engine_age() {
    assert_eq!(parse_eset_modules(MODULES), Ok(("31832".to_string(), NOW - 33 * 3600)));
    assert!(parse_eset_modules("EM000\t  1088 (20261120)\tUpdate module\n").is_err());
    assert!(parse_eset_modules("EM002\t 31832 20261122\tDetection engine\n").is_err());
    let lic = "Product name: ESET Server Security for Linux\nStatus: Activated\nPublic ID: 3AB-XXX-XXX\n";
    assert_eq!(parse_eset_licence(lic), Ok(true));
    assert_eq!(parse_eset_licence("Status: Not activated\n"), Ok(false));
    assert!(parse_eset_licence("garbage").is_err());

    // Current and activated: still unknown, real-time protection is not read.
    let p = eset("ESET Server Security", Some(true), Ok(lic.into()), Ok(MODULES.into()), NOW);
    assert_eq!((p.active, p.signatures_age_hours), (None, Some(33)));
    assert!(p.problem.unwrap().contains("real-time file system protection is on is not readable"));

    let old = MODULES.replace("(20261122)\tDetection", "(20261101)\tDetection");
    let p = eset("ESET Server Security", Some(true), Ok(lic.into()), Ok(old), NOW);
    assert_eq!(p.active, Some(true));
    assert!(p.problem.unwrap().contains("detection engine 31832 is 537 h old"));

    let p = eset(
        "ESET Server Security",
        Some(true),
        Ok("Status: Not activated\n".into()),
        Ok(MODULES.into()),
        NOW,
    );
    assert!(p.problem.unwrap().contains("not activated"));
}

/// A recorded case, replayed.
fn recorded(name: &str) -> crate::recording::Recorded {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(name);
    crate::recording::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn recorded_spl_status_files_that_cannot_be_read_are_named() {
    let case = recorded("linux-antivirus-sophos-threat-data-stale");
    let (sav, alc) =
        (case.host.read_text(SPL_SAV_STATUS).unwrap(), case.host.read_text(SPL_ALC_STATUS).unwrap());
    let file = |path: &str| Some(crate::collect::Input::File(path.into()));
    let synced = xml_element(&alc, "lastSyncTime").unwrap();
    let e = parse_alc_status(&alc.replacen(synced, "yesterday", 1)).unwrap_err();
    assert_eq!(
        (e.input, e.reason.as_str()),
        (file(SPL_ALC_STATUS), "<lastSyncTime> \"yesterday\" is not a time")
    );
    // Each file read as the other is no status of that kind.
    let e = parse_alc_status(&sav).unwrap_err();
    assert_eq!(e.input, file(SPL_ALC_STATUS));
    let e = parse_sav_status(&alc).unwrap_err();
    assert_eq!(e.input, file(SPL_SAV_STATUS));
    assert_eq!(
        e.to_string(),
        format!("{SPL_SAV_STATUS}: not an SPL anti-virus status (no EESavStatus namespace)")
    );
}

#[test]
fn a_recorded_eset_module_list_that_cannot_be_read_names_its_line() {
    let case = recorded("linux-antivirus-eset-engine-outdated");
    let modules = case.host.run("/opt/eset/efs/bin/upd", &["--list-modules"]).unwrap().stdout;
    let n = modules.lines().position(|l| l.ends_with("Detection engine")).unwrap() + 1;
    let undated = modules.replacen(" (20261101)\tDetection engine", " 20261101\tDetection engine", 1);
    let e = parse_eset_modules(&undated).unwrap_err();
    assert_eq!((&e.input, e.line), (&None, Some(n)));
    assert!(e.reason.starts_with("detection engine line"), "{e}");
    let e = parse_eset_modules(&modules.replace("Detection engine", "Detection")).unwrap_err();
    assert_eq!(e.input, Some(crate::collect::Input::Command("upd --list-modules".into())));
    assert_eq!(e.to_string(), "upd --list-modules lists no Detection engine module");
}

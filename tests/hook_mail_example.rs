//! The mail hook shipped as an example (docs/examples/mdguard-hook-mail),
//! run as mdguard runs a hook: mdadm's arguments and the MDGUARD_*
//! environment (the agent's, and dom0's service's), with a stand-in sendmail
//! that keeps what it is given.

use std::path::Path;
use std::process::Command;

#[test]
fn the_mail_example_writes_one_message_for_sendmail() {
    let d = tempfile::tempdir().unwrap();
    let kept = d.path().join("mail");
    let fake = d.path().join("sendmail");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"ARGS: $*\" > {m}\ncat >> {m}\n",
            m = kept.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/mdguard-hook-mail");
    let o = Command::new(&script)
        .args(["Refused", "/dev/md0", "/dev/xvdc1"])
        .env("SENDMAIL", &fake)
        .env("MDGUARD_MAILTO", "storage-team@example.org")
        .env("MDGUARD_EVENT", "Refused")
        .env("MDGUARD_HEALTH", "degraded")
        .env("MDGUARD_REASON", "split-brain")
        .env(
            "MDGUARD_MESSAGE",
            "md0: leg xvdc1 answers but will not be re-added: split brain?",
        )
        .env("MDGUARD_TIME", "1764640000")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mail = std::fs::read_to_string(&kept).unwrap();
    let (head, body) = mail.split_once("\n\n").expect("headers, then the body");
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(lines[0], "ARGS: -t -oi", "{mail}");
    assert_eq!(lines[1], "To: storage-team@example.org");
    assert!(
        lines[2].starts_with("Subject: mdguard: Refused on ")
            && lines[2].ends_with(":/dev/md0 /dev/xvdc1 (degraded)"),
        "{mail}"
    );
    assert!(lines.contains(&"Auto-Submitted: auto-generated"));
    assert!(
        body.contains("reports Refused for /dev/md0 (leg /dev/xvdc1) at 2025-12-02 01:46:40 UTC."),
        "{mail}"
    );
    assert!(body.contains("  md0: leg xvdc1 answers but will not be re-added: split brain?"));
    assert!(body.contains("Reason: split-brain"));
    assert!(body.contains("/proc/mdstat:"));
    // without a component: no leg said
    let o = Command::new(&script)
        .args(["Stalled", "/dev/md1"])
        .env("SENDMAIL", &fake)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mail = std::fs::read_to_string(&kept).unwrap();
    assert!(mail.contains("To: root\n"), "{mail}");
    assert!(mail.contains(":/dev/md1 (unknown)\n"), "{mail}");
    assert!(!mail.contains("(leg "), "{mail}");
    // from dom0's service: EVENT GUEST [ARRAY [LEG]], told apart by MDGUARD_DOMAIN
    let o = Command::new(&script)
        .args(["Fail", "web", "md0", "xvdc"])
        .env("SENDMAIL", &fake)
        .env("MDGUARD_DOMAIN", "web")
        .env("MDGUARD_DOMID", "5")
        .env("MDGUARD_HEALTH", "degraded")
        .env("MDGUARD_TIME", "1764640000")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mail = std::fs::read_to_string(&kept).unwrap();
    assert!(
        mail.contains("Subject: mdguard: Fail on web:md0 xvdc (degraded)\n"),
        "{mail}"
    );
    assert!(
        mail.contains(" reports Fail for md0 (leg xvdc) at 2025-12-02 01:46:40 UTC."),
        "{mail}"
    );
    assert!(
        mail.contains("mdguard on guest web (domid 5) on "),
        "{mail}"
    );
    assert!(mail.contains("mdguard host status"), "{mail}");
    assert!(!mail.contains("/proc/mdstat"), "{mail}");
    // a guest's agent gone silent: no array
    let o = Command::new(&script)
        .args(["AgentSilent", "web"])
        .env("SENDMAIL", &fake)
        .env("MDGUARD_DOMAIN", "web")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mail = std::fs::read_to_string(&kept).unwrap();
    assert!(
        mail.contains("Subject: mdguard: AgentSilent on web (unknown)\n"),
        "{mail}"
    );
    // the arguments are required
    let o = Command::new(&script)
        .env("SENDMAIL", &fake)
        .output()
        .unwrap();
    assert!(!o.status.success());
}

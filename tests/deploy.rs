//! Deploying: `shop serve` in production refuses, naming the variable, every setting that
//! would take money without saying so or leak a secret; and a complete production
//! configuration starts cleanly (against a PostgreSQL cluster of the test's own, whose password
//! is not the development one, and the Stripe provider pointed at stripe-mock).

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// A complete production configuration: real-looking secrets, Stripe, SMS masked. The signing
/// key is dev/test's (any Ed25519 key does).
fn production() -> Vec<(&'static str, String)> {
    let key = common::env("SHOP_JWT_PRIVATE_KEY_FILE");
    [
        ("SHOP_ENV", "production"),
        (
            "SHOP_POSTGRES_URL",
            "postgres://shop:s3cret-for-the-deploy-test@127.0.0.1:1/postgres",
        ),
        ("SHOP_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ("SHOP_SERVICE_CLIENTS", "shop-services:0123456789abcdef0123"),
        ("SHOP_SERVICE_CLIENT_SECRET", "0123456789abcdef0123"),
        ("SHOP_MONGODB_URL", "mongodb://127.0.0.1:1"),
        ("SHOP_PAYMENT_PROVIDER", "stripe"),
        ("SHOP_STRIPE_SECRET_KEY", "sk_test_0123456789abcdef"),
        ("SHOP_STRIPE_WEBHOOK_SECRET", "whsec_0123456789abcdef0123"),
        ("SHOP_SMS_LOG", "masked"),
        ("SHOP_SMTP_URL", "smtps://shop:s3cret@mail.example.com"),
        ("SHOP_ADMIN_EMAIL", "root@shop.example"),
        ("SHOP_ADMIN_PASSWORD", "a long admin passphrase"),
        // Nothing listens there: the services start without a broker (they wait for it), and
        // no consumer of this process can join the test system's groups.
        ("SHOP_KAFKA_BROKERS", "127.0.0.1:1"),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_owned()))
    .collect()
}

/// `shop` with exactly these variables (nothing inherited from dev/test's environment).
fn shop(vars: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    command.args(args).env_clear().envs(vars.iter().cloned());
    command
}

#[tokio::test]
async fn production_refuses_each_unsafe_setting_naming_its_variable() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "SHOP_SERVICE_CLIENT_SECRET",
            Some("dev-service-secret"),
            "development secret",
        ),
        ("SHOP_SERVICE_CLIENT_SECRET", None, "required outside dev"),
        (
            "SHOP_SERVICE_CLIENTS",
            Some("shop-services:dev-service-secret"),
            "development secret",
        ),
        (
            "SHOP_STRIPE_WEBHOOK_SECRET",
            Some("whsec_dev_only_secret"),
            "development secret",
        ),
        ("SHOP_STRIPE_WEBHOOK_SECRET", None, "required outside dev"),
        (
            "SHOP_POSTGRES_URL",
            Some("postgres://shop:shop@db.internal:5432/postgres"),
            "development database password",
        ),
        ("SHOP_JWT_PRIVATE_KEY_FILE", None, "required outside dev"),
        ("SHOP_PAYMENT_PROVIDER", Some("simulated"), "takes no money"),
        ("SHOP_SMS_LOG", Some("full"), "phone numbers"),
        (
            "SHOP_ADMIN_PASSWORD",
            Some("admin-dev-password"),
            "development admin",
        ),
        ("SHOP_ADMIN_PASSWORD", Some("too-short"), "shorter than 12"),
        ("SHOP_TEST_HOOKS", Some("true"), "test hooks"),
    ];
    for (name, value, why) in cases {
        let mut vars: Vec<_> = production()
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect();
        if let Some(value) = value {
            vars.push((name, (*value).to_owned()));
        }
        let output = shop(&vars, &["serve", "all"])
            .output()
            .await
            .expect("shop runs");
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}={value:?}: {said}");
        let problems: Vec<&str> = said
            .lines()
            .filter(|line| line.starts_with("  SHOP_"))
            .collect();
        assert_eq!(problems.len(), 1, "{name}={value:?}: {said}");
        assert!(
            problems[0].starts_with(&format!("  {name}: ")) && problems[0].contains(why),
            "{name}={value:?}: {said}"
        );
    }
}

#[tokio::test]
async fn a_process_told_nothing_runs_as_production_and_refuses_to_start() {
    let output = shop(&[], &["serve", "user"])
        .output()
        .await
        .expect("shop runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    for name in [
        "SHOP_POSTGRES_URL",
        "SHOP_JWT_PRIVATE_KEY_FILE",
        "SHOP_PAYMENT_PROVIDER",
        "SHOP_STRIPE_WEBHOOK_SECRET",
    ] {
        assert!(said.contains(&format!("  {name}: ")), "{name}: {said}");
    }
    // `shop config` shows the same findings, beside what it read, and starts nothing.
    let config = shop(&[], &["config"]).output().await.expect("shop runs");
    assert_eq!(config.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&config.stdout);
    assert!(printed.contains("SHOP_ENV"), "{printed}");
    assert!(printed.contains("production"), "{printed}");
    assert!(
        String::from_utf8_lossy(&config.stderr).contains("  SHOP_PAYMENT_PROVIDER: "),
        "the same findings"
    );
}

/// Runs dev/lib.sh functions for an instance of the test's own (its own ports and folder).
fn instance(function: &str) {
    let status = std::process::Command::new("bash")
        .args(["-c", &format!("source dev/lib.sh && {function}")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SHOP_DEV_INSTANCE", "deploy-check")
        .env("SHOP_DEV_PORT_OFFSET", "20000")
        .stdout(Stdio::null())
        .status()
        .expect("bash runs");
    assert!(status.success(), "dev/lib.sh {function} failed");
}

#[tokio::test]
async fn a_complete_production_configuration_starts_cleanly() {
    // A PostgreSQL of its own whose `shop` role has a password of production's kind.
    let password = format!("deploy-{}", uuid::Uuid::new_v4().simple());
    instance(&format!(
        "rm -rf \"$DATA\" && start_postgres && psql_admin -c \"alter role shop password '{password}'\""
    ));
    let pg_port = 15432 + 20000;
    let (user_port, payment_port) = (8101 + 20000, 8105 + 20000);
    let mut vars: Vec<_> = production()
        .into_iter()
        .filter(|(n, _)| *n != "SHOP_POSTGRES_URL")
        .collect();
    vars.extend([
        (
            "SHOP_POSTGRES_URL",
            format!("postgres://shop:{password}@127.0.0.1:{pg_port}/postgres"),
        ),
        ("SHOP_STRIPE_API_BASE", common::env("SHOP_STRIPE_MOCK_URL")),
        ("SHOP_USER_PORT", user_port.to_string()),
        ("SHOP_PAYMENT_PORT", payment_port.to_string()),
        ("SHOP_USER_URL", format!("http://127.0.0.1:{user_port}")),
        ("SHOP_INSTANCE", "deploy-check".to_owned()),
    ]);
    let log = std::env::temp_dir().join(format!("shop-deploy-check-{}.log", std::process::id()));
    let mut process = shop(&vars, &["serve", "user", "payment"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("shop starts");

    let ready = async {
        for port in [user_port, payment_port] {
            let url = format!("http://127.0.0.1:{port}/ready");
            loop {
                if let Ok(response) = common::client().get(&url).send().await
                    && response.status().is_success()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let came_up = tokio::time::timeout(Duration::from_secs(60), ready).await;
    let still_running = process.try_wait().ok().flatten().is_none();
    if let Some(pid) = process.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let exited = tokio::time::timeout(Duration::from_secs(30), process.wait()).await;
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    instance("stop_postgres && rm -rf \"$DATA\"");
    assert!(came_up.is_ok() && still_running, "did not come up: {said}");
    assert!(
        said.contains("provider=\"stripe\"") || said.contains("provider=stripe"),
        "{said}"
    );
    assert!(
        exited
            .as_ref()
            .is_ok_and(|status| status.as_ref().is_ok_and(|status| status.success())),
        "a clean stop: {exited:?} {said}"
    );
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn a_stop_asked_for_while_starting_is_a_clean_stop() {
    // A "PostgreSQL" that accepts connections and never answers: the start waits on it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = silent.local_addr().expect("its address").port();
    let mut vars: Vec<_> = production()
        .into_iter()
        .filter(|(n, _)| *n != "SHOP_POSTGRES_URL")
        .collect();
    vars.push((
        "SHOP_POSTGRES_URL",
        format!("postgres://shop:s3cret-for-the-deploy-test@127.0.0.1:{port}/postgres"),
    ));
    let mut process = shop(&vars, &["serve", "user"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("shop starts");
    // Long enough for the runtime to be up; the start is still waiting on the silent socket.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        process.try_wait().ok().flatten().is_none(),
        "still starting"
    );
    let pid = process.id().expect("running").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let exited = tokio::time::timeout(Duration::from_secs(20), process.wait())
        .await
        .expect("it stops")
        .expect("an exit status");
    // Killed by the signal's default action would be no code at all.
    assert_eq!(exited.code(), Some(0), "{exited:?}");
    drop(silent);
}

use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// Settings read from exactly these variables.
fn read(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    Settings::from_lookup(&move |name| vars.get(name).cloned())
}

/// Settings as dev/up reads them: `SHOP_ENV=dev` unless the test says otherwise.
fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut vars = vars.to_vec();
    if !vars.iter().any(|(name, _)| *name == "SHOP_ENV") {
        vars.push(("SHOP_ENV", "dev"));
    }
    read(&vars)
}

fn problem_names(error: &ConfigError) -> Vec<&'static str> {
    error.problems.iter().map(|problem| problem.name).collect()
}

#[test]
fn the_defaults_are_valid_and_match_dev_up() {
    let settings = settings(&[]).unwrap();
    assert_eq!(settings.environment, Environment::Dev);
    assert_eq!(settings.user.port, 8101);
    assert_eq!(
        settings.postgres.database_url("shop_user").as_str(),
        "postgres://shop:shop@127.0.0.1:15432/shop_user"
    );
    assert_eq!(settings.user.access_token_ttl, Duration::from_secs(15 * 60));
    assert_eq!(
        settings.user.signing_key_file,
        PathBuf::from(".data/dev/keys/jwt-ed25519.pem")
    );
    assert_eq!(
        settings.user.service_clients,
        vec![(
            "shop-services".to_owned(),
            Secret::new("dev-service-secret")
        )]
    );
    assert!(settings.user.hasher_workers >= 1);
}

#[test]
fn variables_from_the_environment_override_defaults() {
    let settings = settings(&[
        ("SHOP_USER_PORT", "9000"),
        ("SHOP_ACCESS_TOKEN_TTL", "90s"),
        ("SHOP_LOG_FORMAT", "json"),
        ("SHOP_HASHER_WORKERS", "3"),
    ])
    .unwrap();
    assert_eq!(settings.user.port, 9000);
    assert_eq!(settings.user.access_token_ttl, Duration::from_secs(90));
    assert_eq!(settings.log_format, LogFormat::Json);
    assert_eq!(settings.user.hasher_workers, 3);
}

#[test]
fn every_wrong_variable_is_named_with_what_is_wrong() {
    let error = settings(&[
        ("SHOP_USER_PORT", "80800"),
        ("SHOP_ACCESS_TOKEN_TTL", "soon"),
        ("SHOP_USER_URL", "not a url"),
    ])
    .unwrap_err();

    assert_eq!(
        problem_names(&error),
        vec!["SHOP_USER_URL", "SHOP_USER_PORT", "SHOP_ACCESS_TOKEN_TTL"]
    );
    let message = error.to_string();
    assert!(
        message.contains(r#"SHOP_USER_PORT: expected a port number from 1 to 65535 (got "80800")"#),
        "{message}"
    );
    assert!(message.contains("SHOP_ACCESS_TOKEN_TTL: expected a duration"));
}

#[test]
fn a_process_told_nothing_runs_as_production() {
    let error = read(&[]).unwrap_err();
    assert!(problem_names(&error).contains(&"SHOP_JWT_PRIVATE_KEY_FILE"));
    let error = read(&[("SHOP_ENV", "stage")]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(r#"SHOP_ENV: expected production, staging or dev (got "stage")"#),
        "{error}"
    );
    assert!(
        problem_names(&error).contains(&"SHOP_PAYMENT_PROVIDER"),
        "a mistyped environment gets production's rules"
    );
}

#[test]
fn production_refuses_to_start_on_default_secrets_and_settings() {
    let error = settings(&[("SHOP_ENV", "production")]).unwrap_err();
    assert_eq!(
        problem_names(&error),
        vec![
            "SHOP_POSTGRES_URL",
            "SHOP_SERVICE_CLIENT_SECRET",
            "SHOP_JWT_PRIVATE_KEY_FILE",
            "SHOP_SERVICE_CLIENTS",
            "SHOP_MONGODB_URL",
            "SHOP_PAYMENT_PROVIDER",
            "SHOP_STRIPE_WEBHOOK_SECRET",
            "SHOP_SMS_LOG",
            "SHOP_SMTP_URL"
        ]
    );
}

/// A complete production configuration: real-looking secrets, Stripe, SMS masked.
pub(crate) const PRODUCTION: &[(&str, &str)] = &[
    ("SHOP_ENV", "production"),
    (
        "SHOP_POSTGRES_URL",
        "postgres://shop:s3cret-s3cret@db:5432/postgres",
    ),
    ("SHOP_JWT_PRIVATE_KEY_FILE", "/run/secrets/jwt.pem"),
    ("SHOP_SERVICE_CLIENTS", "order:0123456789abcdef0123"),
    ("SHOP_SERVICE_CLIENT_SECRET", "0123456789abcdef0123"),
    ("SHOP_MONGODB_URL", "mongodb://mongo:27017"),
    ("SHOP_PAYMENT_PROVIDER", "stripe"),
    ("SHOP_STRIPE_SECRET_KEY", "sk_live_0123456789abcdef"),
    ("SHOP_STRIPE_WEBHOOK_SECRET", "whsec_0123456789abcdef"),
    ("SHOP_SMS_LOG", "masked"),
    ("SHOP_SMTP_URL", "smtps://shop:s3cret@mail.example.com"),
    ("SHOP_ADMIN_EMAIL", "root@shop.example"),
    ("SHOP_ADMIN_PASSWORD", "a long admin passphrase"),
];

/// `PRODUCTION` with one variable changed (or added).
fn production_with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut vars: Vec<_> = PRODUCTION
        .iter()
        .copied()
        .filter(|(n, _)| *n != name)
        .collect();
    vars.push((name, value));
    vars
}

#[test]
fn production_starts_when_every_secret_is_given() {
    let settings = read(PRODUCTION).unwrap();
    assert_eq!(settings.environment, Environment::Production);
}

#[test]
fn production_refuses_each_development_value_naming_its_variable() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "SHOP_SERVICE_CLIENT_SECRET",
            "dev-service-secret",
            "development secret",
        ),
        (
            "SHOP_SERVICE_CLIENTS",
            "order:0123456789abcdef0123,shop-services:dev-service-secret",
            "development secret",
        ),
        (
            "SHOP_STRIPE_WEBHOOK_SECRET",
            "whsec_dev_only_secret",
            "development secret",
        ),
        (
            "SHOP_POSTGRES_URL",
            "postgres://shop:shop@db.internal:5432/postgres",
            "development database password",
        ),
        ("SHOP_PAYMENT_PROVIDER", "simulated", "takes no money"),
        ("SHOP_SMS_LOG", "full", "phone numbers"),
        (
            "SHOP_ADMIN_PASSWORD",
            "admin-dev-password",
            "development admin",
        ),
        ("SHOP_ADMIN_PASSWORD", "short-pass", "shorter than 12"),
        ("SHOP_TEST_HOOKS", "true", "test hooks"),
    ];
    for (name, value, why) in cases {
        let error = read(&production_with(name, value)).unwrap_err();
        assert_eq!(problem_names(&error), vec![*name], "{name}={value}");
        assert!(error.to_string().contains(why), "{name}={value}: {error}");
    }
    let unset = PRODUCTION
        .iter()
        .copied()
        .filter(|(n, _)| *n != "SHOP_JWT_PRIVATE_KEY_FILE");
    let error = read(&unset.collect::<Vec<_>>()).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_JWT_PRIVATE_KEY_FILE"]);
}

#[test]
fn staging_may_simulate_payments_but_nothing_else_of_dev() {
    let staging = production_with("SHOP_ENV", "staging");
    let mut simulated = staging.clone();
    simulated.retain(|(n, _)| *n != "SHOP_PAYMENT_PROVIDER");
    simulated.push(("SHOP_PAYMENT_PROVIDER", "simulated"));
    let settings = read(&simulated).unwrap();
    assert_eq!(settings.environment, Environment::Staging);
    assert_eq!(settings.payment.provider, PaymentProvider::Simulated);
    let mut dev_secret = staging;
    dev_secret.retain(|(n, _)| *n != "SHOP_STRIPE_WEBHOOK_SECRET");
    dev_secret.push(("SHOP_STRIPE_WEBHOOK_SECRET", "whsec_dev_only_secret"));
    let error = read(&dev_secret).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_STRIPE_WEBHOOK_SECRET"]);
}

#[test]
fn dev_takes_the_development_values() {
    let settings = settings(&[
        ("SHOP_ADMIN_EMAIL", "admin@shop.local"),
        ("SHOP_ADMIN_PASSWORD", "admin-dev-password"),
    ])
    .unwrap();
    assert_eq!(settings.payment.provider, PaymentProvider::Simulated);
    assert_eq!(settings.notification.sms_log, SmsLog::Full);
}

#[test]
fn an_admin_email_without_a_password_is_refused() {
    let error = settings(&[("SHOP_ADMIN_EMAIL", "root@shop.test")]).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_ADMIN_PASSWORD"]);
}

#[test]
fn service_clients_need_ids_and_long_secrets() {
    let error = settings(&[("SHOP_SERVICE_CLIENTS", "order:short")]).unwrap_err();
    assert!(error.to_string().contains("shorter than 16 characters"));
    let error = settings(&[("SHOP_SERVICE_CLIENTS", "no-colon-here")]).unwrap_err();
    assert!(error.to_string().contains("id:secret pairs"));
}

#[test]
fn the_printed_settings_never_show_a_secret() {
    let settings = settings(&[
        (
            "SHOP_POSTGRES_URL",
            "postgres://shop:hunter2hunter2@db:5432/postgres",
        ),
        ("SHOP_ADMIN_EMAIL", "root@shop.test"),
        ("SHOP_ADMIN_PASSWORD", "correct horse battery"),
        ("SHOP_SERVICE_CLIENTS", "order:0123456789abcdef0123"),
    ])
    .unwrap();
    let printed = settings.render();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(!printed.contains("correct horse"), "{printed}");
    assert!(!printed.contains("0123456789abcdef"), "{printed}");
    assert!(
        printed.contains("postgres://shop:********@db:5432/postgres"),
        "{printed}"
    );
    assert!(printed.contains("root@shop.test"));
    let debugged = format!("{settings:?}");
    assert!(!debugged.contains("correct horse"), "{debugged}");
    assert!(!debugged.contains("hunter2"), "{debugged}");
    assert!(!debugged.contains("0123456789abcdef"), "{debugged}");
}

#[test]
fn a_bad_secret_is_reported_without_echoing_it() {
    let error = settings(&[("SHOP_POSTGRES_URL", "hunter2")]).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_POSTGRES_URL"]);
    assert!(!error.to_string().contains("hunter2"));
}

#[test]
fn the_payment_provider_is_simulated_unless_stripe_is_chosen_with_its_key() {
    let default = settings(&[]).unwrap();
    assert_eq!(default.payment.provider, PaymentProvider::Simulated);
    assert_eq!(default.payment.simulated_latency, Duration::ZERO);
    assert!(default.payment.stripe_secret_key.is_none());

    let error = settings(&[("SHOP_PAYMENT_PROVIDER", "stripe")]).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_STRIPE_SECRET_KEY"]);
    let error = settings(&[("SHOP_PAYMENT_PROVIDER", "paypal")]).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_PAYMENT_PROVIDER"]);

    let stripe = settings(&[
        ("SHOP_PAYMENT_PROVIDER", "stripe"),
        ("SHOP_STRIPE_SECRET_KEY", "sk_test_123"),
        ("SHOP_PAYMENT_SIMULATED_LATENCY", "50ms"),
    ])
    .unwrap();
    assert_eq!(stripe.payment.provider, PaymentProvider::Stripe);
    assert_eq!(
        stripe
            .payment
            .stripe_secret_key
            .as_ref()
            .map(Secret::expose),
        Some("sk_test_123")
    );
    assert_eq!(stripe.payment.simulated_latency, Duration::from_millis(50));
    let shown: Vec<_> = stripe
        .entries()
        .iter()
        .filter(|entry| entry.name == "SHOP_STRIPE_SECRET_KEY")
        .map(|entry| entry.shown.clone())
        .collect();
    assert!(!shown.iter().any(|shown| shown.contains("sk_test_123")));
}

#[test]
fn notifications_go_by_smtp_and_log_unless_providers_are_chosen_with_their_keys() {
    let default = settings(&[]).unwrap();
    assert_eq!(default.notification.email, EmailProvider::Smtp);
    assert_eq!(default.notification.sms, SmsProvider::Log);
    assert_eq!(
        default.notification.smtp_url.as_str(),
        "smtp://127.0.0.1:1025"
    );

    let error = settings(&[
        ("SHOP_EMAIL_PROVIDER", "sendgrid"),
        ("SHOP_SMS_PROVIDER", "twilio"),
        ("SHOP_TWILIO_ACCOUNT_SID", "AC123"),
    ])
    .unwrap_err();
    assert_eq!(
        problem_names(&error),
        vec![
            "SHOP_SENDGRID_API_KEY",
            "SHOP_TWILIO_AUTH_TOKEN",
            "SHOP_TWILIO_FROM"
        ]
    );
    let error = settings(&[("SHOP_EMAIL_PROVIDER", "pigeon")]).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_EMAIL_PROVIDER"]);
}

#[test]
fn panicking_carts_need_the_test_hooks_and_a_percentage() {
    let error = settings(&[("SHOP_TEST_CART_PANIC_PERCENT", "1")]).unwrap_err();
    assert_eq!(problem_names(&error), vec!["SHOP_TEST_CART_PANIC_PERCENT"]);
    let error = settings(&[
        ("SHOP_TEST_HOOKS", "true"),
        ("SHOP_TEST_CART_PANIC_PERCENT", "101"),
    ])
    .unwrap_err();
    assert!(error.to_string().contains("at most 100"), "{error}");
    let chaotic = settings(&[
        ("SHOP_TEST_HOOKS", "true"),
        ("SHOP_TEST_CART_PANIC_PERCENT", "1"),
    ])
    .unwrap();
    assert_eq!(chaotic.cart.panic_percent, 1);
    assert_eq!(settings(&[]).unwrap().cart.panic_percent, 0);
}

#[test]
fn a_replica_sets_connection_string_is_taken_as_the_operator_writes_it() {
    // The MongoDB operator's connectionString.standard: several hosts, options, a password.
    let replica_set = "mongodb://shop:hunter2hunter2@shop-mongo-0.shop-mongo-svc:27017,\
                       shop-mongo-1.shop-mongo-svc:27017,[fd00::2]:27017/admin?replicaSet=shop-mongo&w=majority";
    for url in [
        replica_set,
        "mongodb://127.0.0.1:27017",
        "mongodb+srv://shop:hunter2hunter2@cluster0.example.net/?retryWrites=true",
    ] {
        let settings = settings(&[("SHOP_MONGODB_URL", url)])
            .unwrap_or_else(|error| panic!("{url} is taken: {error}"));
        assert_eq!(settings.cart.mongodb_url.as_str(), url);
        let printed = settings.render();
        let debugged = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!debugged.contains("hunter2"), "{debugged}");
    }
    let printed = settings(&[("SHOP_MONGODB_URL", replica_set)])
        .unwrap()
        .render();
    assert!(
        printed.contains("mongodb://shop:********@shop-mongo-0.shop-mongo-svc:27017,"),
        "{printed}"
    );
    for wrong in [
        "http://127.0.0.1:27017",
        "mongodb://",
        "mongodb://a:27017,,b:27017",
        "mongodb://a:port",
        "mongodb://[fd00::2",
    ] {
        let error = settings(&[("SHOP_MONGODB_URL", wrong)]).unwrap_err();
        assert_eq!(problem_names(&error), vec!["SHOP_MONGODB_URL"], "{wrong}");
    }
}

#[test]
fn a_session_timeout_the_broker_would_refuse_is_refused_at_start() {
    assert_eq!(
        settings(&[]).unwrap().kafka.session_timeout,
        Duration::from_secs(15)
    );
    for refused in ["3s", "31m"] {
        let error = settings(&[("SHOP_KAFKA_SESSION_TIMEOUT", refused)]).unwrap_err();
        assert_eq!(
            problem_names(&error),
            vec!["SHOP_KAFKA_SESSION_TIMEOUT"],
            "{refused}"
        );
    }
    let taken = settings(&[("SHOP_KAFKA_SESSION_TIMEOUT", "6s")]).unwrap();
    assert_eq!(taken.kafka.session_timeout, Duration::from_secs(6));
}

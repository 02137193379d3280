//! `shop serve`: starts each named service's supervision tree, then waits for Ctrl-C/SIGTERM or
//! for a tree to give up. Either way the HTTP servers drain first, then the trees stop.

use std::time::Duration;

use anyhow::{Context, bail};
use shop_actors::Service;
use shop_config::Settings;
use shop_web::Shutdown;

/// Every service this binary can run, in start order.
pub const SERVICES: &[&str] = &[
    "user",
    "product",
    "cart",
    "order",
    "payment",
    "notification",
];

pub async fn run(settings: &Settings, names: &[String]) -> anyhow::Result<()> {
    let names = expand(names)?;
    let shutdown = Shutdown::new();
    let mut services = Vec::new();
    for name in &names {
        let service = match name.as_str() {
            "user" => shop_user::start(settings, shutdown.clone())
                .await
                .map_err(anyhow::Error::from),
            "product" => shop_product::start(settings, shutdown.clone())
                .await
                .map_err(anyhow::Error::from),
            "cart" => shop_cart::start(settings, shutdown.clone())
                .await
                .map_err(anyhow::Error::from),
            "order" => shop_order::start(settings, shutdown.clone())
                .await
                .map_err(anyhow::Error::from),
            "payment" => shop_payment::start(settings, shutdown.clone())
                .await
                .map_err(anyhow::Error::from),
            "notification" => shop_notification::start(settings, shutdown.clone())
                .await
                .map_err(anyhow::Error::from),
            other => bail!("unknown service {other:?}"),
        }
        .with_context(|| format!("starting the {name} service"))?;
        services.push(service);
    }
    tracing::info!(services = ?names, "serving");

    let gave_up = tokio::select! {
        () = stop_signal() => None,
        stopped = first_stopped(&services) => Some(stopped),
    };

    shutdown.trigger();
    if !shutdown.drained(settings.http.shutdown_grace).await {
        tracing::warn!("some requests were still running at the end of the shutdown grace");
    }
    for service in &services {
        service.stop(Duration::from_secs(5)).await;
    }
    match gave_up {
        Some(reason) => bail!("{reason}"),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

fn expand(names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.iter().any(|name| name == "all") {
        return Ok(SERVICES.iter().map(|name| (*name).to_owned()).collect());
    }
    for name in names {
        if !SERVICES.contains(&name.as_str()) {
            bail!(
                "unknown service {name:?}; known: {}, all",
                SERVICES.join(", ")
            );
        }
    }
    Ok(names.to_vec())
}

/// Resolves with why the first of `services` stopped on its own.
async fn first_stopped(services: &[Service]) -> String {
    let waits = services.iter().map(|service| {
        Box::pin(async move {
            match service.stopped().await {
                Err(error) => error.to_string(),
                Ok(()) => format!("the {} service stopped", service.name()),
            }
        })
    });
    futures::future::select_all(waits).await.0
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

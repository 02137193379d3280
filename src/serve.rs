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
    // Listening before anything starts: a SIGTERM while the trees are still starting (an
    // orchestrator giving up on a slow pod) stops what has started instead of killing it.
    let stop = stop_signal();
    tokio::pin!(stop);
    let shutdown = Shutdown::new();
    let mut services = Vec::new();
    let stopped_while_starting = tokio::select! {
        started = start_all(settings, &names, &shutdown, &mut services) => {
            started?;
            false
        }
        () = &mut stop => true,
    };
    let gave_up = if stopped_while_starting {
        None
    } else {
        tracing::info!(services = ?names, "serving");
        tokio::select! {
            () = &mut stop => None,
            stopped = first_stopped(&services) => Some(stopped),
        }
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

/// Starts `names` in order into `services`, so that what has started can be stopped if the
/// start is abandoned part way.
async fn start_all(
    settings: &Settings,
    names: &[String],
    shutdown: &Shutdown,
    services: &mut Vec<Service>,
) -> anyhow::Result<()> {
    for name in names {
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
    Ok(())
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

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when it
/// is first polled: from then on neither signal has its default effect (an abrupt exit).
#[cfg(unix)]
fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutting down");
    }
}

#[cfg(not(unix))]
fn stop_signal() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}

//! `shop tree`: services' supervision trees from their `/admin/tree`, printed like pstree —
//! one service, or all six side by side in time (`--all`, every replica of each when asked
//! through the gateway), coloured on a terminal, refreshed in place with `--watch` (a restart
//! count that moved since the last refresh stands out).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use anyhow::{Context, bail};
use clap::Args;
use shop_actors::{ActorNode, Piece};
use shop_config::Settings;

#[derive(Args)]
pub struct TreeArgs {
    /// The service's own address (default: the user service's, SHOP_USER_URL).
    #[arg(long, conflicts_with = "all")]
    url: Option<String>,
    /// Every service's tree: user, product, cart, order, payment, notification; through the
    /// gateway (when known), every replica of each.
    #[arg(long)]
    all: bool,
    /// The gateway, which knows every replica; without it `--all` asks each service's own
    /// address (SHOP_<SERVICE>_URL), one replica each.
    #[arg(long, env = "SHOP_GATEWAY_URL")]
    gateway: Option<String>,
    /// Refresh in place every `--interval` until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// How often `--watch` refreshes, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Plain text even on a terminal.
    #[arg(long)]
    no_color: bool,
    /// An admin access token; without one, shop signs in as SHOP_ADMIN_EMAIL.
    #[arg(long, env = "SHOP_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the JSON snapshot instead.
    #[arg(long, conflicts_with_all = ["all", "watch"])]
    json: bool,
}

/// Restart counts by service and actor name, as last shown.
type Seen = HashMap<(String, String), usize>;

pub async fn run(settings: &Settings, args: TreeArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let token = match &args.token {
        Some(token) => token.clone(),
        None => crate::api::admin_token(&client, settings).await?,
    };
    // (label, address of the tree)
    let services: Vec<(String, String)> = if let (true, Some(gateway)) = (args.all, &args.gateway) {
        replica_trees(&client, gateway).await?
    } else if args.all {
        [
            ("user", &settings.auth.user_service_url),
            ("product", &settings.product.url),
            ("cart", &settings.cart.url),
            ("order", &settings.order.url),
            ("payment", &settings.payment.url),
            ("notification", &settings.notification.url),
        ]
        .into_iter()
        .map(|(name, url)| (name.to_owned(), tree_url(url.as_str())))
        .collect()
    } else {
        let url = args
            .url
            .clone()
            .unwrap_or_else(|| settings.auth.user_service_url.to_string());
        vec![(String::new(), tree_url(&url))]
    };
    if args.json {
        let tree = fetch(&client, &services[0].1, &token).await?;
        println!("{}", serde_json::to_string_pretty(&tree)?);
        return Ok(());
    }
    let color = !args.no_color && std::io::stdout().is_terminal();
    let mut seen = Seen::new();
    loop {
        let trees =
            futures::future::join_all(services.iter().map(|(_, url)| fetch(&client, url, &token)))
                .await;
        let mut screen = String::new();
        for ((service, url), tree) in services.iter().zip(trees) {
            match tree {
                Ok(tree) => {
                    if args.all {
                        screen.push_str(&format!(
                            "{}\n",
                            heading(&format!("{service}  {url}"), color)
                        ));
                    }
                    screen.push_str(&tree.render_painted(&|node, piece| {
                        paint(piece, color, seen.get(&(service.clone(), name_of(node))))
                    }));
                    remember(&mut seen, service, &tree);
                }
                Err(error) if args.all || args.watch => {
                    let line = format!("{service}  {url}: {error:#}");
                    screen.push_str(&format!("{}\n", styled(&line, bad(), color)));
                }
                Err(error) => return Err(error),
            }
            if args.all {
                screen.push('\n');
            }
        }
        if !args.watch {
            print!("{screen}");
            return Ok(());
        }
        // Home and clear, then the new picture: a refresh in place.
        print!("\x1b[H\x1b[2J{screen}");
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn tree_url(service_url: &str) -> String {
    format!("{}/admin/tree", service_url.trim_end_matches('/'))
}

/// Every replica of every service, as the gateway counts them (`GET /admin/replicas`), each
/// reached through it: `cart`, `cart-2`, ….
async fn replica_trees(
    client: &reqwest::Client,
    gateway: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let gateway = gateway.trim_end_matches('/');
    let counts: HashMap<String, usize> = client
        .get(format!("{gateway}/admin/replicas"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("asking the gateway {gateway} for its replicas"))?
        .json()
        .await
        .context("reading the replica counts")?;
    let mut trees = Vec::new();
    for service in crate::serve::SERVICES {
        for replica in 1..=counts.get(*service).copied().unwrap_or(0) {
            let label = match replica {
                1 => (*service).to_owned(),
                n => format!("{service}-{n}"),
            };
            let url = format!("{gateway}/admin/services/{service}/replicas/{replica}/tree");
            trees.push((label, url));
        }
    }
    Ok(trees)
}

async fn fetch(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<ActorNode> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("asking {url} for its tree"))?;
    if !response.status().is_success() {
        let status = response.status();
        bail!(
            "{url} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    response.json().await.context("reading the tree")
}

fn name_of(node: &ActorNode) -> String {
    node.name.clone().unwrap_or_else(|| node.id.clone())
}

fn remember(seen: &mut Seen, service: &str, node: &ActorNode) {
    seen.insert((service.to_owned(), name_of(node)), node.restarts);
    for child in &node.children {
        remember(seen, service, child);
    }
}

fn bad() -> Style {
    Style::new().fg_color(Some(AnsiColor::Red.into())).bold()
}

fn styled(text: &str, style: Style, color: bool) -> String {
    if color {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_owned()
    }
}

fn heading(text: &str, color: bool) -> String {
    styled(
        &format!("== {text}"),
        Style::new().bold().underline(),
        color,
    )
}

/// Running is green, starting or stopping yellow, stopped red; a restart count above zero is
/// yellow, and one that moved since the last refresh is red on a light background.
fn paint(piece: Piece<'_>, color: bool, before: Option<&usize>) -> String {
    let style = match piece {
        Piece::Status("running") => Style::new().fg_color(Some(AnsiColor::Green.into())),
        Piece::Status("stopped") => bad(),
        Piece::Status(_) => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Piece::Restarts(count) if before.is_some_and(|before| *before < count) => Style::new()
            .fg_color(Some(AnsiColor::Red.into()))
            .bg_color(Some(AnsiColor::BrightWhite.into()))
            .bold(),
        Piece::Restarts(0) => Style::new(),
        Piece::Restarts(_) => Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold(),
    };
    styled(&piece.plain(), style, color)
}

//! `shop tree`: a service's supervision tree from its `/admin/tree`, printed like pstree.

use anyhow::{Context, bail};
use clap::Args;
use shop_actors::ActorNode;
use shop_config::Settings;

#[derive(Args)]
pub struct TreeArgs {
    /// The service's own address (default: the user service's, SHOP_USER_URL).
    #[arg(long)]
    url: Option<String>,
    /// An admin access token; without one, shop signs in as SHOP_ADMIN_EMAIL.
    #[arg(long, env = "SHOP_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the JSON snapshot instead.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: TreeArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = args
        .url
        .unwrap_or_else(|| settings.auth.user_service_url.to_string());
    let token = match args.token {
        Some(token) => token,
        None => crate::api::admin_token(&client, settings).await?,
    };
    let response = client
        .get(format!("{}/admin/tree", url.trim_end_matches('/')))
        .bearer_auth(token)
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
    let tree: ActorNode = response.json().await.context("reading the tree")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tree)?);
    } else {
        print!("{}", tree.render_text());
    }
    Ok(())
}

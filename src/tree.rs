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
        None => admin_token(&client, settings).await?,
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

/// Signs in as the admin of the settings, for tools that need an admin token.
pub async fn admin_token(client: &reqwest::Client, settings: &Settings) -> anyhow::Result<String> {
    let Some(admin) = &settings.user.admin else {
        bail!("no admin token: pass --token, or set SHOP_ADMIN_EMAIL and SHOP_ADMIN_PASSWORD");
    };
    let login = settings
        .auth
        .user_service_url
        .join("users/login")
        .context("the user service URL")?;
    let response = client
        .post(login)
        .json(&serde_json::json!({ "email": admin.email, "password": admin.password.expose() }))
        .send()
        .await
        .context("signing in as the admin")?;
    if !response.status().is_success() {
        bail!(
            "signing in as {} failed: {}",
            admin.email,
            response.status()
        );
    }
    let body: serde_json::Value = response.json().await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("the login answer has no access_token")
}

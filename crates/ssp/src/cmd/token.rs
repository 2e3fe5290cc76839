//! `ssp token create|list|revoke`: API tokens, the secrets the CLI and scripts log in with.
//! ssp keeps only their hashes, so a token's secret is shown once, when it is made.

use anyhow::Context;
use clap::Subcommand;
use ssp_api::TokenCreate;
use ssp_core::names::Name;

use crate::output;

/// `ssp token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret (shown only this once).
    Create {
        /// A name for the token (default: token-N).
        #[arg(long)]
        name: Option<String>,
        /// Whose token it is (default: you).
        #[arg(long)]
        user: Option<Name>,
    },
    /// List tokens (names and use, never secrets).
    List {
        /// Whose tokens (default: yours).
        #[arg(long)]
        user: Option<Name>,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's name (`ssp token list`).
        name: String,
        /// Whose token it is (default: yours).
        #[arg(long)]
        user: Option<Name>,
    },
}

/// Runs `ssp token …`.
pub async fn run(command: TokenCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        TokenCommand::Create { name, user } => {
            let user = super::user_or_caller(&client, user).await?;
            let created = client
                .create_token(&user, &TokenCreate { name })
                .await
                .with_context(|| format!("creating a token for {user}"))?;
            if json {
                return output::json(&created);
            }
            // The secret alone on stdout, so `TOKEN=$(ssp token create)` works; the rest for
            // the person goes to stderr.
            eprintln!("token {} for {}: keep it secret; it is shown only now", created.name, created.user);
            println!("{}", created.token);
            Ok(())
        }
        TokenCommand::List { user } => {
            let user = super::user_or_caller(&client, user).await?;
            let mut tokens = client.tokens(&user).await.with_context(|| format!("listing the tokens of {user}"))?;
            tokens.sort_by(|a, b| a.name.cmp(&b.name));
            if json {
                return output::json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|token| {
                    vec![
                        token.name.clone(),
                        output::timestamp(Some(token.created_at)),
                        output::timestamp(token.last_used_at),
                    ]
                })
                .collect();
            output::table(&["NAME", "CREATED", "LAST USED"], &rows);
            Ok(())
        }
        TokenCommand::Revoke { name, user } => {
            let user = super::user_or_caller(&client, user).await?;
            client.delete_token(&user, &name).await.with_context(|| format!("revoking token {name} of {user}"))?;
            if !json {
                println!("token {name} of {user} revoked");
            }
            Ok(())
        }
    }
}

//! `user.resets`: mails password reset links after the request was answered. The request is
//! answered 202 before anything about the address is looked up, so a known address and an
//! unknown one take the same time to answer: the answer cannot tell which addresses have
//! accounts.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::accounts::Accounts;
use crate::error::UserError;

pub struct Resets;

/// A reset asked for this address (normalised or not).
pub struct ResetRequested(pub String);

impl Actor for Resets {
    type Msg = ResetRequested;
    type State = Arc<Accounts>;
    type Arguments = Arc<Accounts>;

    async fn pre_start(
        &self,
        _: ActorRef<ResetRequested>,
        accounts: Arc<Accounts>,
    ) -> Result<Arc<Accounts>, ActorProcessingErr> {
        Ok(accounts)
    }

    async fn handle(
        &self,
        myself: ActorRef<ResetRequested>,
        ResetRequested(email): ResetRequested,
        accounts: &mut Arc<Accounts>,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        // A failure loses this one mail, which the customer can ask for again; it must not
        // restart the actor and lose the requests queued behind it.
        if let Err(error) = accounts.send_password_reset(&email).await {
            tracing::error!(%error, "a password reset mail could not be recorded");
        }
        Ok(())
    }
}

/// Hands a reset request to the resets actor.
pub fn request(name: &str, email: String) -> Result<(), UserError> {
    let actor: ActorRef<ResetRequested> = ractor::registry::where_is(name)
        .ok_or(UserError::UpstreamUnavailable("the password reset mailer"))?
        .into();
    actor
        .send_message(ResetRequested(email))
        .map_err(|_| UserError::UpstreamUnavailable("the password reset mailer"))
}

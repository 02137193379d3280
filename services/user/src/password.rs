//! Password hashing: argon2id with OWASP's parameters, on a bounded pool of actors.
//!
//! One argon2id hash takes tens of milliseconds of a core. The pool (a ractor factory) has one
//! worker per core; each worker runs its hash on tokio's blocking threads, so a login storm queues
//! at the pool instead of stalling the async runtime that serves every other request. The queue is
//! bounded too: beyond it, requests are refused with 503 at once rather than waiting forever.

use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use ractor::factory::{
    DiscardMode, DiscardSettings, Factory, FactoryArguments, FactoryMessage, Job, Worker, WorkerId,
    queues, routing, worker_builder,
};
use ractor::rpc::CallResult;
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use shop_actors::{Child, Restart};

use crate::error::UserError;

/// OWASP's argon2id recommendation: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("OWASP's argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes on the calling thread; blocking. Use the pool ([`Hashers`]) from async code.
pub fn hash_now(password: &str) -> Result<String, UserError> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| UserError::Hashing(error.to_string()))
}

/// Checks on the calling thread; blocking. A hash that does not parse matches nothing.
pub fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

pub enum HashJob {
    Hash {
        password: String,
        reply: RpcReplyPort<Result<String, String>>,
    },
    Verify {
        password: String,
        hash: String,
        reply: RpcReplyPort<bool>,
    },
}

struct HashWorker;

impl Worker for HashWorker {
    type Key = ();
    type Message = HashJob;
    type Arguments = ();
    type State = ();

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), HashJob>>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), HashJob>>,
        Job { msg, key, .. }: Job<(), HashJob>,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HashJob::Hash { password, reply } => {
                let hashed = tokio::task::spawn_blocking(move || hash_now(&password))
                    .await
                    .map_err(|error| error.to_string())
                    .and_then(|hashed| hashed.map_err(|error| error.to_string()));
                let _ = reply.send(hashed);
            }
            HashJob::Verify {
                password,
                hash,
                reply,
            } => {
                let matches = tokio::task::spawn_blocking(move || verify_now(&password, &hash))
                    .await
                    .unwrap_or(false);
                let _ = reply.send(matches);
            }
        }
        Ok(key)
    }
}

type HashFactory = Factory<
    (),
    HashJob,
    (),
    HashWorker,
    routing::QueuerRouting<(), HashJob>,
    queues::DefaultQueue<(), HashJob>,
>;

/// The hashing pool as a child of the service's supervisor.
pub fn pool_child(name: &str, workers: usize, queue: usize) -> Child {
    Child::actor(name, "pool", Restart::Permanent, move || {
        let arguments = FactoryArguments::builder()
            .worker_builder(Box::new(worker_builder(|_wid| (HashWorker, ()))))
            .queue(Default::default())
            .router(Default::default())
            .num_initial_workers(workers)
            .discard_settings(DiscardSettings::Static {
                limit: queue,
                mode: DiscardMode::Newest,
            })
            .build();
        (HashFactory::default(), arguments)
    })
}

/// How handlers reach the pool: by name, so they find it again after a restart.
#[derive(Clone)]
pub struct Hashers {
    name: String,
    /// A job waiting longer than this is given up (the pool is overloaded).
    timeout: Duration,
}

impl Hashers {
    pub fn new(name: impl Into<String>, timeout: Duration) -> Self {
        Self {
            name: name.into(),
            timeout,
        }
    }

    fn pool(&self) -> Result<ActorRef<FactoryMessage<(), HashJob>>, UserError> {
        ractor::registry::where_is(self.name.clone())
            .map(Into::into)
            .ok_or(UserError::HashersBusy)
    }

    pub async fn hash(&self, password: &str) -> Result<String, UserError> {
        let password = password.to_owned();
        let result = self
            .pool()?
            .call_job(
                (),
                |reply| HashJob::Hash { password, reply },
                Some(self.timeout),
            )
            .await;
        match result {
            Ok(CallResult::Success(hashed)) => hashed.map_err(UserError::Hashing),
            _ => Err(UserError::HashersBusy),
        }
    }

    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, UserError> {
        let (password, hash) = (password.to_owned(), hash.to_owned());
        let result = self
            .pool()?
            .call_job(
                (),
                |reply| HashJob::Verify {
                    password,
                    hash,
                    reply,
                },
                Some(self.timeout),
            )
            .await;
        match result {
            Ok(CallResult::Success(matches)) => Ok(matches),
            _ => Err(UserError::HashersBusy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_with_owasp_parameters_and_verifies_only_its_password() {
        let hash = hash_now("correct horse battery staple").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_now("correct horse battery staple", &hash));
        assert!(!verify_now("correct horse battery stapler", &hash));
    }

    #[test]
    fn a_hash_that_does_not_parse_matches_nothing() {
        assert!(!verify_now("anything", "not a phc string"));
    }
}

//! Password hashing: argon2id with OWASP's parameters, on a bounded pool of actors.
//!
//! One argon2id hash takes tens of milliseconds of a core. The pool (a ractor factory) has one
//! worker per core; each worker runs its hash on tokio's blocking threads, so a login storm queues
//! at the pool instead of stalling the async runtime that serves every other request. The queue is
//! bounded too: beyond it, requests are refused with 503 at once rather than waiting forever.

use std::time::Duration;
use tracing::Instrument;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
const SALT_LEN: usize = 16;

fn params() -> Params {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("OWASP's argon2 parameters are valid")
}

/// One hasher's working memory, kept from hash to hash. Allocating 19 MiB afresh for every hash
/// cost about a thousand page faults each, a tenth of a login's CPU time, measured.
pub struct Hasher {
    memory: Vec<Block>,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Self {
            memory: vec![Block::default(); params().block_count()],
        }
    }

    /// A new argon2id PHC string for `password`; blocking.
    pub fn hash(&mut self, password: &str) -> Result<String, UserError> {
        let failed = |error: &dyn std::fmt::Display| UserError::Hashing(error.to_string());
        let salt_bytes: [u8; SALT_LEN] = rand::random();
        let params = params();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let memory = self.memory_for(&params);
        argon2
            .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, &mut output, memory)
            .map_err(|error| failed(&error))?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|error| failed(&error))?,
            salt: Some(Salt::new(&salt_bytes).map_err(|error| failed(&error))?),
            hash: Some(Output::new(&output).map_err(|error| failed(&error))?),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` matches the PHC string `hash` (with the parameters stored in it, so
    /// older hashes keep working); blocking. A hash that does not parse matches nothing.
    pub fn verify(&mut self, password: &str, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from).transpose() {
            Ok(version) => version.unwrap_or_default(),
            Err(_) => return false,
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let mut output = [0u8; Output::MAX_LENGTH];
        let Some(output) = output.get_mut(..expected.len()) else {
            return false;
        };
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let memory = self.memory_for(&params);
        if argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, output, memory)
            .is_err()
        {
            return false;
        }
        // Output's equality is constant-time.
        Output::new(output).is_ok_and(|computed| &computed == expected)
    }

    fn memory_for(&mut self, params: &Params) -> &mut [Block] {
        let blocks = params.block_count();
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        &mut self.memory[..blocks]
    }
}

/// Hashes on the calling thread with fresh memory; blocking. Use the pool ([`Hashers`]) from
/// async code.
pub fn hash_now(password: &str) -> Result<String, UserError> {
    Hasher::new().hash(password)
}

/// Checks on the calling thread with fresh memory; blocking.
pub fn verify_now(password: &str, hash: &str) -> bool {
    Hasher::new().verify(password, hash)
}

pub enum HashJob {
    Hash {
        password: String,
        reply: RpcReplyPort<Result<String, String>>,
        /// The trace of the request that asked.
        trace: Option<String>,
    },
    Verify {
        password: String,
        hash: String,
        reply: RpcReplyPort<bool>,
        trace: Option<String>,
    },
}

struct HashWorker;

impl Worker for HashWorker {
    type Key = ();
    type Message = HashJob;
    type Arguments = ();
    /// The worker's hasher, lent to a blocking thread for each job (`None` while it is away).
    type State = Option<Hasher>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), HashJob>>,
        _args: (),
    ) -> Result<Option<Hasher>, ActorProcessingErr> {
        Ok(Some(Hasher::new()))
    }

    async fn handle(
        &self,
        wid: WorkerId,
        factory: &ActorRef<FactoryMessage<(), HashJob>>,
        Job { msg, key, .. }: Job<(), HashJob>,
        state: &mut Option<Hasher>,
    ) -> Result<(), ActorProcessingErr> {
        let (job, trace) = match &msg {
            HashJob::Hash { trace, .. } => ("Hash", trace),
            HashJob::Verify { trace, .. } => ("Verify", trace),
        };
        // `user.hasher:<worker>`: the span is named for the pool, the worker is an attribute.
        let pool = factory.get_name().unwrap_or_default();
        let span =
            shop_telemetry::actor_span(&format!("{pool}:{wid}"), "worker", job, trace.as_deref());
        self.work(msg, state).instrument(span).await;
        Ok(key)
    }
}

impl HashWorker {
    /// One job, on a blocking thread with the worker's hasher.
    async fn work(&self, msg: HashJob, state: &mut Option<Hasher>) {
        let mut hasher = state.take().unwrap_or_default();
        match msg {
            HashJob::Hash {
                password, reply, ..
            } => {
                let done = tokio::task::spawn_blocking(move || {
                    let hashed = hasher.hash(&password).map_err(|error| error.to_string());
                    (hasher, hashed)
                })
                .await;
                match done {
                    Ok((hasher, hashed)) => {
                        *state = Some(hasher);
                        let _ = reply.send(hashed);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
            }
            HashJob::Verify {
                password,
                hash,
                reply,
                ..
            } => {
                let done = tokio::task::spawn_blocking(move || {
                    let matches = hasher.verify(&password, &hash);
                    (hasher, matches)
                })
                .await;
                if let Ok((hasher, matches)) = done {
                    *state = Some(hasher);
                    let _ = reply.send(matches);
                }
            }
        }
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
                |reply| HashJob::Hash {
                    password,
                    reply,
                    trace: shop_telemetry::current_traceparent(),
                },
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
                    trace: shop_telemetry::current_traceparent(),
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

    #[test]
    fn hashes_made_by_the_argon2_crate_itself_verify_and_ours_verify_there() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let reference = Argon2::default()
            .hash_password(b"hunter42")
            .unwrap()
            .to_string();
        let mut hasher = Hasher::new();
        assert!(hasher.verify("hunter42", &reference));
        assert!(!hasher.verify("hunter43", &reference));

        let ours = hasher.hash("hunter42").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"hunter42", &parsed)
                .is_ok()
        );
        // Hashes with other parameters (say, from before a change of policy) still verify.
        let weaker = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"hunter42")
        .unwrap()
        .to_string();
        assert!(hasher.verify("hunter42", &weaker));
    }
}

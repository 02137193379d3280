//! The `http` actor every service has: it owns the service's poem server. If the server stops on
//! its own, the actor fails and its supervisor restarts it; when the process shuts down, the server
//! drains in-flight requests first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Response, Server};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_actors::{Child, Restart};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A service's `http` child: permanent, since a service without its server is no service.
pub fn child(
    name: &str,
    service: &'static str,
    addr: SocketAddr,
    routes: RouteFactory,
    shutdown: Shutdown,
    grace: Duration,
) -> Child {
    Child::actor(name, "http", Restart::Permanent, move || {
        let args = HttpServerArgs {
            service,
            addr,
            routes: routes.clone(),
            shutdown: shutdown.clone(),
            grace,
        };
        (HttpServer, args)
    })
}

/// Builds a service's endpoint afresh for every (re)start of its server.
pub type RouteFactory = Arc<dyn Fn() -> BoxEndpoint<'static, Response> + Send + Sync>;

/// The process-wide shutdown signal, and the servers still draining.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    servers: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Servers stop accepting and finish what they are handling.
    pub fn trigger(&self) {
        self.token.cancel();
        self.servers.close();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until every server has drained, or `timeout`; returns whether all drained.
    pub async fn drained(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.servers.wait())
            .await
            .is_ok()
    }
}

pub struct HttpServer;

pub struct HttpServerArgs {
    pub service: &'static str,
    pub addr: SocketAddr,
    pub routes: RouteFactory,
    pub shutdown: Shutdown,
    pub grace: Duration,
}

pub enum HttpServerMsg {
    /// The server task ended, with why.
    Exited(String),
}

pub struct HttpServerState {
    shutdown: Shutdown,
    /// Held for its `Drop`.
    _server: ServerTask,
}

/// Aborts the server when the actor goes away, even when it is killed, so a restarted actor can
/// bind the port again.
struct ServerTask(AbortHandle);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds in `pre_start`, so a port that stays taken fails the start (and the supervisor retries
/// with backoff). A restarted server waits a moment for its predecessor, whose listener closes
/// only once its aborted task has been dropped.
async fn bind(addr: SocketAddr) -> Result<impl Acceptor, ActorProcessingErr> {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(addr).into_acceptor().await {
            Ok(acceptor) => return Ok(acceptor),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && attempts < 40 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(format!("binding {addr}: {error}").into()),
        }
    }
}

impl Actor for HttpServer {
    type Msg = HttpServerMsg;
    type State = HttpServerState;
    type Arguments = HttpServerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HttpServerMsg>,
        args: HttpServerArgs,
    ) -> Result<HttpServerState, ActorProcessingErr> {
        let acceptor = bind(args.addr).await?;
        let local = acceptor
            .local_addr()
            .into_iter()
            .next()
            .map_or_else(|| args.addr.to_string(), |addr| addr.to_string());
        tracing::info!(service = args.service, addr = %local, "listening");

        let endpoint = (args.routes)();
        let stop = args.shutdown.token.clone();
        let grace = args.grace;
        let server = args.shutdown.servers.spawn(async move {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(endpoint, stop.cancelled_owned(), Some(grace))
                .await
        });
        let abort = server.abort_handle();
        tokio::spawn(async move {
            let why = match server.await {
                Ok(Ok(())) => "it stopped".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
            // The actor may be gone already (killed, or the process is stopping).
            let _ = myself.send_message(HttpServerMsg::Exited(why));
        });
        Ok(HttpServerState {
            shutdown: args.shutdown,
            _server: ServerTask(abort),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<HttpServerMsg>,
        message: HttpServerMsg,
        state: &mut HttpServerState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match message {
            HttpServerMsg::Exited(_) if state.shutdown.is_triggered() => Ok(()),
            HttpServerMsg::Exited(why) => Err(format!("the HTTP server stopped: {why}").into()),
        }
    }
}

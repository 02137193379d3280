#!/usr/bin/env python3
"""Holds every description of the deployment to the one configuration the binary reads.

compose.yml, the rendered Kubernetes overlays (kustomize output) and dev/'s environment each set
SHOP_* variables, ports, host names and upstream lists by hand. This checks them against
config/ (through `shop config`, which knows every variable, its default, and what production
refuses) and against each other:

- every SHOP_* variable a shop container is given exists, and `shop config` accepts the whole
  environment (secrets from a Secret are replaced by valid samples: their values are not here);
- every variable production requires is set, or referenced from a Secret by key;
- each service listens where its Service, its probes and the gateway's upstream say it does,
  and each service's peers are reached where the gateway listens for them;
- the gateway is given every variable its template and nginx/upstreams.sh read, and no other,
  on an nginx recent enough for `server … resolve`, and what it renders passes `nginx -t`;
- the stores are sized for what the services ask of them (PostgreSQL connections, Kafka
  replication).

Usage: parity.py --shop BIN --compose compose.yml --dev-env FILE OVERLAY.yaml…
Exit 1 with one line per finding.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["user", "product", "cart", "order", "payment", "notification"]
# The services with a database of their own in PostgreSQL (the cart lives in MongoDB).
POSTGRES_SERVICES = ["user", "product", "order", "payment", "notification"]
# Connections of a replica besides its pool: the outbox relay's LISTEN, the one at start.
PER_REPLICA_EXTRA = 2
# Read by the tests and dev/ only, never by the binary.
DEV_ONLY = {"SHOP_MAILPIT_URL", "SHOP_STRIPE_MOCK_URL", "SHOP_GATEWAY_URL", "SHOP_DEV_REPLICAS"}
# Valid values of production's kind for the secrets whose values are not in the repository.
SAMPLE_SECRETS = {
    # Shaped as the operators write them: CloudNativePG's `uri`, the MongoDB operator's
    # `connectionString.standard` (with production's additional options).
    "SHOP_POSTGRES_URL": "postgresql://shop:sample-password-0123@shop-postgres-rw.shop:5432/shop",
    "SHOP_MONGODB_URL": "mongodb://shop:sample-password-0123@shop-mongo-0.shop-mongo-svc.shop.svc.cluster.local:27017,"
    "shop-mongo-1.shop-mongo-svc.shop.svc.cluster.local:27017/admin?replicaSet=shop-mongo&ssl=false&w=majority&journal=true",
    "SHOP_SERVICE_CLIENTS": "shop-services:0123456789abcdef0123",
    "SHOP_SERVICE_CLIENT_SECRET": "0123456789abcdef0123",
    "SHOP_STRIPE_SECRET_KEY": "sk_test_0123456789abcdef",
    "SHOP_STRIPE_WEBHOOK_SECRET": "whsec_0123456789abcdef0123",
    "SHOP_SMTP_URL": "smtps://shop:sample-password@mail.example.com",
    "SHOP_ADMIN_PASSWORD": "a long sample admin passphrase",
    "SHOP_SENDGRID_API_KEY": "SG.sample-0123456789abcdef",
    "SHOP_TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
}
# The oldest nginx whose open-source upstream `server` takes `resolve`.
NGINX_MIN = (1, 27, 3)

findings = []


def finding(where, message):
    findings.append(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# What the binary reads


class Config:
    def __init__(self, shop):
        self.shop = shop
        dev = self.run({"SHOP_ENV": "dev"})
        if dev.returncode != 0:
            sys.exit(f"`shop config` refused dev's defaults:\n{dev.stderr}")
        self.known = set(re.findall(r"^(SHOP_[A-Z0-9_]+)\s+=", dev.stdout, re.M))
        self.defaults = dict(re.findall(r"^(SHOP_[A-Z0-9_]+)\s+= (\S*)", dev.stdout, re.M))
        production = self.run({})
        # Everything production refuses when left to its default: required secrets, and
        # defaults that are unsafe there (the simulated provider, SMS logged whole).
        self.production_requires = set(re.findall(r"^\s+(SHOP_[A-Z0-9_]+): ", production.stderr, re.M))
        if not self.production_requires:
            sys.exit("`shop config` with nothing set in production found nothing missing: cannot check")

    def run(self, env):
        return subprocess.run(
            [self.shop, "config"],
            env={"PATH": os.environ["PATH"], **env},
            capture_output=True,
            text=True,
        )

    def check(self, where, env):
        """`shop config` must accept exactly this environment."""
        result = self.run(env)
        if result.returncode != 0:
            problems = [line.strip() for line in result.stderr.splitlines()[1:] if line.strip()]
            finding(where, "`shop config` refuses it: " + "; ".join(problems or [result.stderr.strip()]))

    def check_names(self, where, names, also=()):
        for name in sorted(names):
            if name.startswith("SHOP_") and name not in self.known and name not in also:
                finding(where, f"sets {name}, which shop does not read (a typo, or a setting since removed)")

    def port(self, service, env):
        return int(env.get(f"SHOP_{service.upper()}_PORT") or self.defaults[f"SHOP_{service.upper()}_PORT"])


def gateway_variables():
    """The SHOP_* variables the gateway's template and upstreams.sh read."""
    template = (ROOT / "nginx/templates/shop.conf.template").read_text()
    script = (ROOT / "nginx/upstreams.sh").read_text()
    names = set(re.findall(r"\$\{(SHOP_[A-Z0-9_]+)\}", template))
    required = set(names)
    names |= set(re.findall(r"\b(SHOP_[A-Z0-9_]*[A-Z0-9])\b", script))
    for service in SERVICES:
        names |= {f"SHOP_{service.upper()}_UPSTREAM", f"SHOP_{service.upper()}_INTERNAL_LISTEN"}
        required.add(f"SHOP_{service.upper()}_UPSTREAM")
    return names, required


def duration_seconds(value):
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value.strip())
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def nginx_version_ok(where, image):
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", tag)
    if not match:
        finding(where, f"nginx image {image} is not pinned to a version (>= 1.27.3 is needed for `resolve`)")
    elif tuple(map(int, match.groups())) < NGINX_MIN:
        finding(where, f"nginx image {image} is older than 1.27.3, which `server … resolve` needs")


def gateway_env_complete(where, env, gateway_names, gateway_required):
    for name in sorted(set(env) - gateway_names):
        if name.startswith("SHOP_"):
            finding(where, f"the gateway is given {name}, which neither its template nor upstreams.sh reads")
    for name in sorted(gateway_required - set(env)):
        finding(where, f"the gateway is not given {name}, which its configuration needs")


def nginx_accepts(where, env):
    """The gateway configuration this environment renders (the template through envsubst, as
    the nginx image does, then upstreams.sh) passes `nginx -t`. The local nginx (Debian's 1.22)
    predates `resolve` and cannot look up the deployment's host names, so those two are made
    local first; every other line is tested as written."""
    if not shutil.which("nginx") or not shutil.which("envsubst"):
        finding(where, "nginx and envsubst are needed to test the rendered gateway configuration")
        return
    env = {k: v for k, v in env.items() if isinstance(v, str)}
    env["SHOP_NGINX_SCRIPT"] = str(ROOT / "nginx/shop.js")
    env["SHOP_ADMIN_STATIC"] = str(ROOT / "web/admin")
    with tempfile.TemporaryDirectory(prefix="shop-parity-nginx-") as work:
        work = Path(work)
        (work / "conf.d").mkdir()
        template = (ROOT / "nginx/templates/shop.conf.template").read_text()
        names = " ".join(f"${{{name}}}" for name in env if name.startswith("SHOP_"))
        rendered = subprocess.run(["envsubst", names], input=template, env={"PATH": os.environ["PATH"], **env},
                                  capture_output=True, text=True, check=True).stdout
        (work / "conf.d/shop.conf").write_text(rendered)
        upstreams = subprocess.run(["sh", str(ROOT / "nginx/upstreams.sh"), str(work / "conf.d/upstreams.conf")],
                                   env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)
        if upstreams.returncode != 0:
            finding(where, f"upstreams.sh fails: {upstreams.stderr.strip()}")
            return
        text = (work / "conf.d/upstreams.conf").read_text()
        text = re.sub(r"(?m)^(\s*server )\S+?:(\d+)( resolve)?;", r"\g<1>127.0.0.1:\2;", text)
        text = re.sub(r"(?m)^resolver \S+", "resolver 127.0.0.1", text)
        (work / "conf.d/upstreams.conf").write_text(text)
        (work / "nginx.conf").write_text(f"""
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
  include /etc/nginx/mime.types;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  include {work}/conf.d/*.conf;
}}
""")
        result = subprocess.run(["nginx", "-t", "-q", "-p", str(work), "-e", str(work / "error.log"),
                                 "-c", str(work / "nginx.conf")], capture_output=True, text=True)
        if result.returncode != 0:
            finding(where, "nginx -t refuses the gateway configuration it renders: " + result.stderr.strip())


def run_upstreams(env):
    """nginx/upstreams.sh's output for this gateway environment: servers per upstream."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"shop-parity-upstreams-{os.getpid()}.conf"
    result = subprocess.run(
        ["sh", str(ROOT / "nginx/upstreams.sh"), str(out)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None, result.stderr.strip()
    text = out.read_text()
    out.unlink()
    servers = {}
    for service in SERVICES:
        block = re.search(rf"^upstream {service} \{{(.*?)^\}}", text, re.S | re.M)
        servers[service] = re.findall(r"^\s+server (\S+)", block.group(1), re.M) if block else []
    return servers, None


# ---------------------------------------------------------------------------------------------
# compose.yml


def interpolate(value, env=None):
    """Compose's interpolation: ${VAR:-default}, ${VAR}, $$."""
    env = env or {}
    if not isinstance(value, str):
        return value

    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1) or match.group(3), match.group(2)
        return env.get(name, default or "")

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", substitute, value)


def compose_env(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(interpolate(value)) for name, value in env.items()}


def check_compose(path, config, gateway_names, gateway_required):
    compose = yaml.safe_load(Path(path).read_text())
    project = compose.get("name", "shop")
    services = compose["services"]
    where = "compose.yml"
    shop = {
        name: spec
        for name, spec in services.items()
        if (spec.get("command") or [None])[0] in ("serve", "seed", "migrate")
    }
    for name in SERVICES:
        if name not in shop:
            finding(where, f"no service `{name}` running `shop serve {name}`")
    ports = {}
    for name, spec in shop.items():
        env = compose_env(spec)
        at = f"{where} {name}"
        config.check_names(at, env)
        config.check(at, env)
        if name in SERVICES:
            if spec["command"] != ["serve", name]:
                finding(at, f"runs {spec['command']}, not serve {name}")
            ports[name] = config.port(name, env)
            probe = " ".join(spec.get("healthcheck", {}).get("test", []))
            if f":{ports[name]}/ready" not in probe:
                finding(at, f"its health check does not ask /ready on its port {ports[name]}: {probe}")

    replicas = interpolate(str(shop.get("user", {}).get("deploy", {}).get("replicas", 1)))
    gateway = services.get("nginx") or {}
    genv = compose_env(gateway)
    at = f"{where} nginx"
    nginx_version_ok(at, gateway.get("image", ""))
    gateway_env_complete(at, genv, gateway_names, gateway_required)
    nginx_accepts(at, genv)
    if genv.get("SHOP_REPLICAS") != replicas:
        finding(at, f"SHOP_REPLICAS is {genv.get('SHOP_REPLICAS')} but the services run {replicas} replicas")
    for count in (1, 3):
        servers, error = run_upstreams({**genv, "SHOP_REPLICAS": str(count)})
        if error:
            finding(at, f"upstreams.sh fails with {count} replicas: {error}")
            continue
        for name in SERVICES:
            expected = [f"{project}-{name}-{n}:{ports.get(name)}" for n in range(1, count + 1)]
            if servers[name] != expected:
                finding(at, f"with {count} replicas the {name} upstream is {servers[name]}, not {expected}")
    for wrong in ("0", "two"):
        _, error = run_upstreams({**genv, "SHOP_REPLICAS": wrong})
        if not error:
            finding(at, f"upstreams.sh takes SHOP_REPLICAS={wrong} instead of refusing it")
    for name in SERVICES:
        listen = genv.get(f"SHOP_{name.upper()}_INTERNAL_LISTEN")
        for peer, spec in shop.items():
            url = compose_env(spec).get(f"SHOP_{name.upper()}_URL")
            if url and url.rstrip("/") != f"http://nginx:{listen}":
                finding(f"{where} {peer}", f"SHOP_{name.upper()}_URL is {url}, not the gateway's listener nginx:{listen}")

    # PostgreSQL: a pool per replica of each of its services, and room for migrate and seed.
    postgres = services.get("postgres", {})
    command = " ".join(map(str, postgres.get("command", [])))
    match = re.search(r"max_connections=(\d+)", command)
    max_connections = int(match.group(1)) if match else 100
    per_replica = int(config.defaults["SHOP_POSTGRES_POOL_SIZE"]) + PER_REPLICA_EXTRA
    needed = len(POSTGRES_SERVICES) * int(replicas) * per_replica + 10
    if max_connections < needed:
        finding(f"{where} postgres", f"max_connections {max_connections} < {needed} ({replicas} replicas × 5 services × {per_replica} + 10)")

    # Every named volume is where its image keeps its data: Kafka's only if log.dirs says so.
    kafka = services.get("kafka", {})
    log_dirs = compose_env(kafka).get("KAFKA_LOG_DIRS")
    mounts = [volume.split(":")[1] for volume in kafka.get("volumes", []) if isinstance(volume, str)]
    if not log_dirs or log_dirs not in mounts:
        finding(f"{where} kafka", f"KAFKA_LOG_DIRS {log_dirs} is not the mounted volume {mounts}: topics are lost on down")
    return ports


# ---------------------------------------------------------------------------------------------
# Kubernetes (one rendered overlay)


def matches(selector, labels):
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class Overlay:
    def __init__(self, path):
        self.path = path
        self.name = Path(path).stem
        self.docs = [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]
        self.by_kind = {}
        for doc in self.docs:
            self.by_kind.setdefault(doc["kind"], []).append(doc)

    def kind(self, kind):
        return self.by_kind.get(kind, [])

    def find(self, kind, name):
        return next((doc for doc in self.kind(kind) if doc["metadata"]["name"] == name), None)

    def workloads(self):
        for kind in ("Deployment", "StatefulSet", "Job", "CronJob"):
            for doc in self.kind(kind):
                spec = doc["spec"]
                if kind == "CronJob":
                    spec = spec["jobTemplate"]["spec"]
                yield doc, spec["template"]

    def container_env(self, where, container, pod):
        """The container's variables: literal values, and for each one from a Secret a marker."""
        env = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                config_map = self.find("ConfigMap", source["configMapRef"]["name"])
                if config_map is None:
                    finding(where, f"envFrom names ConfigMap {source['configMapRef']['name']}, which is not rendered")
                else:
                    env.update({k: str(v) for k, v in (config_map.get("data") or {}).items()})
            if "secretRef" in source:
                secret = self.find("Secret", source["secretRef"]["name"])
                if secret is None:
                    finding(where, f"envFrom takes every key of Secret {source['secretRef']['name']}, whose keys "
                            "cannot be checked here: name each variable with secretKeyRef")
                else:
                    keys = list((secret.get("data") or {})) + list((secret.get("stringData") or {}))
                    env.update({key: ("secret", secret["metadata"]["name"]) for key in keys})
        for item in container.get("env", []):
            name = item["name"]
            if "value" in item:
                env[name] = str(item["value"])
            elif "secretKeyRef" in item.get("valueFrom", {}):
                env[name] = ("secret", item["valueFrom"]["secretKeyRef"]["name"])
            elif "configMapKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["configMapKeyRef"]
                config_map = self.find("ConfigMap", ref["name"])
                value = (config_map or {}).get("data", {}).get(ref["key"])
                if value is None:
                    finding(where, f"{name} comes from ConfigMap {ref['name']} key {ref['key']}, which is not rendered")
                env[name] = str(value)
            elif "fieldRef" in item.get("valueFrom", {}):
                env[name] = "pod-0"
        return env

    def secret_file_mounted(self, container, pod, path):
        """Whether path lies in a volume from a Secret mounted in the container."""
        secret_volumes = {v["name"] for v in pod["spec"].get("volumes", []) if "secret" in v}
        for mount in container.get("volumeMounts", []):
            if mount["name"] in secret_volumes and path.startswith(mount["mountPath"].rstrip("/") + "/"):
                return True
        return False


def is_shop(container):
    words = list(container.get("command", [])) + list(container.get("args", []))
    image = container.get("image", "").rsplit("/", 1)[-1]
    return image.startswith("shop") and any(word in ("serve", "migrate", "seed") for word in words)


def shop_command(container):
    words = list(container.get("command", [])) + list(container.get("args", []))
    for i, word in enumerate(words):
        if word in ("serve", "migrate", "seed"):
            return words[i:]
    return []


def probe_port(probe, container):
    port = probe.get("httpGet", {}).get("port")
    if isinstance(port, str):
        return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)
    return port


def service_port_target(service, port_number, container):
    """The container port a Service port sends to (named target ports resolved)."""
    for port in service["spec"].get("ports", []):
        if port.get("port") == port_number or port_number is None:
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str):
                return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == target), None)
            return target
    return None


def check_overlay(overlay, config, gateway_names, gateway_required, compose_ports):
    where = f"k8s {overlay.name}"
    production = None
    services = {}  # service name -> (workload, pod template, container, env, port)
    for workload, pod in overlay.workloads():
        for container in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", []):
            if not is_shop(container):
                continue
            at = f"{where} {workload['kind']}/{workload['metadata']['name']}"
            env = overlay.container_env(at, container, pod)
            literal = {k: v for k, v in env.items() if isinstance(v, str)}
            from_secret = {k for k, v in env.items() if not isinstance(v, str)}
            config.check_names(at, env)
            is_production = literal.get("SHOP_ENV", "production") != "dev"
            production = is_production if production is None else production
            if is_production:
                for name in sorted(config.production_requires - set(env)):
                    finding(at, f"production requires {name}, which is neither set nor taken from a Secret")
                for name in sorted(set(SAMPLE_SECRETS) & set(literal)):
                    finding(at, f"{name} holds a value in the manifests: take it from a Secret")
            key_file = literal.get("SHOP_JWT_PRIVATE_KEY_FILE")
            command = shop_command(container)
            if key_file and command[:2] == ["serve", "user"] and not overlay.secret_file_mounted(container, pod, key_file):
                finding(at, f"SHOP_JWT_PRIVATE_KEY_FILE {key_file} is not in a mounted Secret")
            checked = dict(literal)
            for name in from_secret:
                checked[name] = SAMPLE_SECRETS.get(name, "sample-secret-value-0123456789")
            config.check(at, checked)
            if command[:1] == ["serve"] and len(command) == 2 and command[1] in SERVICES:
                services[command[1]] = (workload, pod, container, literal, config.port(command[1], literal))

    for name in SERVICES:
        if name not in services:
            finding(where, f"no workload runs `shop serve {name}`")
            continue
        workload, pod, container, env, port = services[name]
        at = f"{where} {name}"
        if compose_ports.get(name) != port:
            finding(at, f"listens on {port}, compose's {name} on {compose_ports.get(name)}")
        declared = [p["containerPort"] for p in container.get("ports", [])]
        if port not in declared:
            finding(at, f"the container declares ports {declared}, not SHOP_{name.upper()}_PORT {port}")
        for probe_name, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
            probe = container.get(probe_name)
            if not probe or probe.get("httpGet", {}).get("path") != path or probe_port(probe, container) != port:
                finding(at, f"{probe_name} is not GET {path} on port {port}")
        grace = duration_seconds(env.get("SHOP_SHUTDOWN_GRACE", config.defaults["SHOP_SHUTDOWN_GRACE"]))
        termination = pod["spec"].get("terminationGracePeriodSeconds", 30)
        pre_stop = " ".join(map(str, container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])))
        sleep = re.search(r"sleep (\d+)", pre_stop)
        needed = grace + (int(sleep.group(1)) if sleep else 0) + (container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0))
        if termination <= needed:
            finding(at, f"terminationGracePeriodSeconds {termination} leaves no time after the preStop pause and the {grace:g} s shutdown grace")
        labels = pod["metadata"].get("labels", {})
        selecting = [s for s in overlay.kind("Service") if matches(s["spec"].get("selector"), labels)]
        if not any(s["spec"].get("clusterIP") == "None" for s in selecting):
            finding(at, "no headless Service selects its pods (the gateway's upstream resolves one)")
        for service in selecting:
            if service_port_target(service, None, container) != port:
                finding(at, f"Service {service['metadata']['name']} sends to {service_port_target(service, None, container)}, not {port}")
        if not any(matches(p["spec"].get("selector", {}).get("matchLabels"), labels) for p in overlay.kind("PodDisruptionBudget")):
            finding(at, "no PodDisruptionBudget covers its pods")
        security = container.get("securityContext", {})
        pod_security = pod["spec"].get("securityContext", {})
        if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
            finding(at, "does not run as non-root")
        if not security.get("readOnlyRootFilesystem"):
            finding(at, "its root filesystem is writable")

    for hpa in overlay.kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if overlay.find(target["kind"], target["name"]) is None:
            finding(where, f"HorizontalPodAutoscaler {hpa['metadata']['name']} scales {target['kind']}/{target['name']}, which is not rendered")

    check_gateway(overlay, where, services, gateway_names, gateway_required)
    check_stores(overlay, where, services, config, production)
    if production:
        for secret in overlay.kind("Secret"):
            if secret.get("data") or secret.get("stringData"):
                finding(where, f"Secret {secret['metadata']['name']} holds values: production's come from the cluster")


def check_gateway(overlay, where, services, gateway_names, gateway_required):
    gateways = [
        (workload, pod, container)
        for workload, pod in overlay.workloads()
        for container in pod["spec"]["containers"]
        if container.get("image", "").rsplit("/", 1)[-1].startswith("nginx")
    ]
    if len(gateways) != 1:
        finding(where, f"{len(gateways)} nginx gateways rendered, not one")
        return
    workload, pod, container = gateways[0]
    at = f"{where} gateway"
    nginx_version_ok(at, container["image"])
    env = overlay.container_env(at, container, pod)
    gateway_env_complete(at, env, gateway_names, gateway_required)
    nginx_accepts(at, env)
    if not env.get("SHOP_UPSTREAM_RESOLVER"):
        finding(at, "SHOP_UPSTREAM_RESOLVER is not set: pods that come and go would not be found")
    gateway_labels = pod["metadata"].get("labels", {})
    gateway_services = [s for s in overlay.kind("Service") if matches(s["spec"].get("selector"), gateway_labels)]
    for name, (workload, service_pod, service_container, _, port) in services.items():
        upstream = env.get(f"SHOP_{name.upper()}_UPSTREAM", "")
        for server in upstream.split():
            host, _, server_port = server.rpartition(":")
            labels = host.split(".")
            service = overlay.find("Service", labels[0])
            if service is None and len(labels) > 1 and workload["kind"] == "StatefulSet":
                # <pod>.<governing Service>…: one name per replica of a StatefulSet, {n} for
                # 1…SHOP_REPLICAS (the pods must be numbered so: ordinals.start 1).
                service = overlay.find("Service", labels[1])
                spec = workload["spec"]
                start = spec.get("ordinals", {}).get("start", 0)
                pod = re.fullmatch(re.escape(workload["metadata"]["name"]) + r"-(\d+|\{n\})", labels[0])
                if spec.get("serviceName") != labels[1]:
                    finding(at, f"SHOP_{name.upper()}_UPSTREAM names {host}, but {labels[1]} does not govern StatefulSet {workload['metadata']['name']}")
                elif not pod:
                    finding(at, f"SHOP_{name.upper()}_UPSTREAM names {host}, not a pod of StatefulSet {workload['metadata']['name']}")
                elif pod.group(1) == "{n}" and (start != 1 or str(spec.get("replicas", 1)) != str(env.get("SHOP_REPLICAS", "1"))):
                    finding(at, f"SHOP_{name.upper()}_UPSTREAM's {{n}} stands for 1…{env.get('SHOP_REPLICAS', '1')}, "
                            f"but the pods are {workload['metadata']['name']}-{start}…{start + int(spec.get('replicas', 1)) - 1}")
            if service is None or service["spec"].get("clusterIP") != "None":
                finding(at, f"SHOP_{name.upper()}_UPSTREAM names {host}, not a headless Service")
            elif not matches(service["spec"].get("selector"), service_pod["metadata"].get("labels", {})):
                finding(at, f"SHOP_{name.upper()}_UPSTREAM names {host}, whose selector misses the {name} pods")
            if server_port != str(port):
                finding(at, f"SHOP_{name.upper()}_UPSTREAM port {server_port} is not the {name} port {port}")
        listen = env.get(f"SHOP_{name.upper()}_INTERNAL_LISTEN")
        for peer, (_, _, _, peer_env, _) in services.items():
            url = peer_env.get(f"SHOP_{name.upper()}_URL")
            if not url:
                continue
            match = re.fullmatch(r"http://([^:/]+):(\d+)/?", url)
            host, url_port = (match.group(1), int(match.group(2))) if match else (None, None)
            target = overlay.find("Service", (host or "").split(".")[0])
            if target is None or not matches(target["spec"].get("selector"), gateway_labels):
                finding(f"{where} {peer}", f"SHOP_{name.upper()}_URL {url} is not a Service of the gateway")
            elif listen is None or service_port_target(target, url_port, container) != int(str(listen).rsplit(":", 1)[-1]):
                finding(f"{where} {peer}", f"SHOP_{name.upper()}_URL {url} does not reach the gateway's {name} listener {listen}")
    if not gateway_services:
        finding(at, "no Service selects the gateway")


def check_stores(overlay, where, services, config, production):
    replicas = {}
    for name, (workload, *_rest) in services.items():
        most = workload["spec"].get("replicas", 1)
        for hpa in overlay.kind("HorizontalPodAutoscaler"):
            if hpa["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]:
                most = max(most, hpa["spec"]["maxReplicas"])
        replicas[name] = most
    per_replica = int(config.defaults["SHOP_POSTGRES_POOL_SIZE"]) + PER_REPLICA_EXTRA
    needed = sum(replicas.get(name, 1) * per_replica for name in POSTGRES_SERVICES) + 10
    clusters = overlay.kind("Cluster")  # CloudNativePG
    if clusters:
        for cluster in clusters:
            max_connections = int(cluster["spec"].get("postgresql", {}).get("parameters", {}).get("max_connections", 100))
            if max_connections < needed:
                finding(where, f"PostgreSQL max_connections {max_connections} < {needed} (every replica's pool at the autoscalers' maximum + 10)")
    else:
        for workload, pod in overlay.workloads():
            for container in pod["spec"]["containers"]:
                if container.get("image", "").rsplit("/", 1)[-1].startswith("postgres"):
                    words = " ".join(map(str, container.get("args", []) + container.get("command", [])))
                    match = re.search(r"max_connections=(\d+)", words)
                    max_connections = int(match.group(1)) if match else 100
                    if max_connections < needed:
                        finding(where, f"PostgreSQL max_connections {max_connections} < {needed}")
    if production:
        for kafka in overlay.kind("Kafka"):
            settings = kafka["spec"].get("kafka", {}).get("config", {})
            for key, value in (("default.replication.factor", 3), ("min.insync.replicas", 2),
                               ("offsets.topic.replication.factor", 3), ("transaction.state.log.replication.factor", 3),
                               ("transaction.state.log.min.isr", 2)):
                if int(settings.get(key, 0)) != value:
                    finding(where, f"Kafka {key} is {settings.get(key)}, not {value}")
            # Topics are created by the services themselves, with SHOP_KAFKA_REPLICATION.
            for name, (_, _, _, env, _) in services.items():
                replication = env.get("SHOP_KAFKA_REPLICATION", config.defaults["SHOP_KAFKA_REPLICATION"])
                if replication != str(settings.get("default.replication.factor")):
                    finding(where, f"the {name} service creates topics with {replication} replicas, "
                            f"the cluster's default is {settings.get('default.replication.factor')}")
        for pool in overlay.kind("KafkaNodePool"):
            if pool["spec"].get("replicas", 0) < 3:
                finding(where, f"KafkaNodePool {pool['metadata']['name']} has {pool['spec'].get('replicas')} nodes, fewer than 3")
        for mongo in overlay.kind("MongoDBCommunity"):
            if mongo["spec"].get("members", 0) < 3:
                finding(where, f"MongoDB has {mongo['spec'].get('members')} members, fewer than 3")
        for cluster in clusters:
            if cluster["spec"].get("instances", 0) < 3:
                finding(where, f"PostgreSQL has {cluster['spec'].get('instances')} instances, fewer than 3")
        for kind in ("Kafka", "MongoDBCommunity", "Cluster"):
            if not overlay.kind(kind):
                finding(where, f"production renders no {kind}")


# ---------------------------------------------------------------------------------------------
# dev/


def check_dev(path, config):
    env = dict(re.findall(r"^export (SHOP_[A-Z0-9_]+)=(\S*)", Path(path).read_text(), re.M))
    for line in re.findall(r"^export (SHOP_[A-Z0-9_]+=.*)$", Path(path).read_text(), re.M):
        for pair in line.split():
            if "=" in pair and pair.startswith("SHOP_"):
                name, value = pair.split("=", 1)
                env[name] = value
    env = {name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value) for name, value in env.items()}
    config.check_names("dev/ (shop_env)", env, also=DEV_ONLY)
    for name in DEV_ONLY:
        users = subprocess.run(["grep", "-rlw", name, "tests", "dev/lib.sh", "dev/test"], cwd=ROOT,
                               capture_output=True, text=True).stdout.split()
        if len(users) < 2:
            finding("dev/", f"{name} is written for the tests, but nothing reads it")
    config.check("dev/ (shop_env)", {k: v for k, v in env.items() if k not in DEV_ONLY})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shop", required=True)
    parser.add_argument("--compose", required=True)
    parser.add_argument("--dev-env", required=True, help="dev/'s environment (shop_env's output)")
    parser.add_argument("overlays", nargs="*", help="rendered kustomize overlays")
    args = parser.parse_args()

    config = Config(args.shop)
    gateway_names, gateway_required = gateway_variables()
    compose_ports = check_compose(args.compose, config, gateway_names, gateway_required)
    for path in args.overlays:
        check_overlay(Overlay(path), config, gateway_names, gateway_required, compose_ports)
    check_dev(args.dev_env, config)

    checked = f"compose.yml, {len(args.overlays)} overlays, dev/ against {len(config.known)} settings"
    if findings:
        print("\n".join(findings))
        print(f"parity: {len(findings)} findings ({checked})")
        return 1
    print(f"parity: {checked}: no finding")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/bin/sh
# Writes the gateway's upstreams: the part of its configuration that depends on how many replicas
# of each service run, which envsubst cannot write (it cannot repeat a line once per replica).
# dev/ runs it; the nginx image runs it from /docker-entrypoint.d after rendering the templates.
#
#   SHOP_<SERVICE>_UPSTREAM         host:port of each replica of the service, space separated;
#                                   a server with {n} in it stands for SHOP_REPLICAS servers,
#                                   n = 1, 2, … (compose: shop-cart-{n}:8103)
#   SHOP_REPLICAS                   how many servers a {n} stands for (default 1)
#   SHOP_<SERVICE>_INTERNAL_LISTEN  optional: where the other services reach this one through the
#                                   gateway, so a call about a customer reaches its replica too
#   SHOP_UPSTREAM_RESOLVER          optional: a DNS server to resolve replica names with as they
#                                   come and go (Docker's 127.0.0.11 under compose)
#   SHOP_TRUSTED_PROXIES            optional: CIDRs (comma or space separated) of the proxies in
#                                   front of the gateway. Only a request from one of them may
#                                   name its client in X-Forwarded-For; from anyone else the
#                                   header is not believed (rate limits and logs use the peer).
#
# Usage: upstreams.sh [OUTPUT]   (default /etc/nginx/conf.d/shop-upstreams.conf)
set -eu
out=${1:-/etc/nginx/conf.d/shop-upstreams.conf}
services="user product cart order payment notification"
upper() { echo "$1" | tr '[:lower:]' '[:upper:]'; }
setting() { eval "printf '%s' \"\${$1:-}\""; }

# The servers of a list, each {n} written out once per replica.
expand_servers() {
  for server in $1; do
    case $server in
      *"{n}"*)
        replicas=${SHOP_REPLICAS:-1}
        case $replicas in
          '' | *[!0-9]* | 0) echo "upstreams.sh: SHOP_REPLICAS is $replicas, not a number of replicas" >&2; exit 1 ;;
        esac
        i=1
        while [ "$i" -le "$replicas" ]; do
          printf '%s\n' "$server" | sed "s/{n}/$i/g"
          i=$((i + 1))
        done
        ;;
      *) printf '%s\n' "$server" ;;
    esac
  done
}

server_line() {
  if [ -n "${SHOP_UPSTREAM_RESOLVER:-}" ]; then
    echo "    server $1 resolve;"
  else
    echo "    server $1;"
  fi
}

# A zone (shared memory) is what lets nginx re-resolve a server's name while running.
zone_line() {
  [ -z "${SHOP_UPSTREAM_RESOLVER:-}" ] || echo "    zone $1 64k;"
}

{
  echo "# Written by nginx/upstreams.sh: do not edit."
  [ -z "${SHOP_UPSTREAM_RESOLVER:-}" ] || echo "resolver ${SHOP_UPSTREAM_RESOLVER} valid=5s ipv6=off;"
  trusted=$(printf '%s' "${SHOP_TRUSTED_PROXIES:-}" | tr ',' ' ')
  for cidr in $trusted; do
    case $cidr in
      *[!0-9a-fA-F:./]*) echo "upstreams.sh: SHOP_TRUSTED_PROXIES holds $cidr, not an address or CIDR" >&2; exit 1 ;;
    esac
    echo "set_real_ip_from $cidr;"
  done
  if [ -n "$trusted" ]; then
    echo "real_ip_header X-Forwarded-For;"
    # The client is the last address not of a trusted proxy, so a client cannot put itself
    # in front of the chain.
    echo "real_ip_recursive on;"
  fi
  replicas_json=""
  replica_map=""
  for service in $services; do
    name=$(upper "$service")
    servers=$(setting "SHOP_${name}_UPSTREAM")
    [ -n "$servers" ] || { echo "upstreams.sh: SHOP_${name}_UPSTREAM is not set" >&2; exit 1; }
    servers=$(expand_servers "$servers") || exit 1
    # Each customer sticks to one replica (their cart actor lives there); `consistent` moves
    # only the customers of a replica that comes or goes.
    echo "upstream $service {"
    echo "    hash \$shop_customer consistent;"
    zone_line "$service"
    for server in $servers; do server_line "$server"; done
    echo "    keepalive 32;"
    echo "    keepalive_requests 100000;"
    echo "}"
    # One upstream per replica, for the observer: /admin/services/<service>/replicas/<n>/…
    n=0
    for server in $servers; do
      n=$((n + 1))
      echo "upstream ${service}_$n {"
      zone_line "${service}_$n"
      server_line "$server"
      echo "    keepalive 4;"
      echo "}"
      replica_map="$replica_map    ~^/admin/services/$service/replicas/$n/ ${service}_$n;
"
    done
    replicas_json="$replicas_json${replicas_json:+,}\"$service\":$n"
    listen=$(setting "SHOP_${name}_INTERNAL_LISTEN")
    if [ -n "$listen" ]; then
      # For the other services only: the same customer hashing, nothing else in the way.
      echo "server {"
      echo "    listen $listen;"
      echo "    access_log off;"
      echo "    client_max_body_size 1m;"
      echo "    proxy_http_version 1.1;"
      echo "    proxy_set_header Connection \"\";"
      echo "    proxy_set_header Host \$host;"
      echo "    location / { proxy_pass http://$service; }"
      echo "}"
    fi
  done
  echo "map \$uri \$shop_replica_upstream {"
  echo "    default \"\";"
  printf '%s' "$replica_map"
  echo "}"
  echo "map \$shop_upstream \$shop_replicas {"
  echo "    default '{$replicas_json}';"
  echo "}"
} >"$out.tmp"
mv "$out.tmp" "$out"

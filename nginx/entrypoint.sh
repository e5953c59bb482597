#!/bin/sh
# Renders nginx.conf from the environment, then runs nginx in the foreground. Used as-is by
# the container image and by the native runner. nginx holds no password: it asks MLflow's
# auth app about every request's credentials (lab-auth.conf.template).
set -eu

: "${LAB_SERVER_NAMES:?LAB_SERVER_NAMES is not set: add it to .env (see .env.example)}"
: "${LAB_AUTH_CACHE_SECONDS:?LAB_AUTH_CACHE_SECONDS is not set: add it to .env (see .env.example)}"
: "${MLFLOW_UPSTREAM:?MLFLOW_UPSTREAM is not set (host:port of the tracking server)}"
: "${MODEL_API_UPSTREAM:?MODEL_API_UPSTREAM is not set (host:port of the model API)}"
: "${MODEL_API_GRPC_UPSTREAM:?MODEL_API_GRPC_UPSTREAM is not set (host:port of the model API's gRPC server)}"
: "${PROMETHEUS_UPSTREAM:?PROMETHEUS_UPSTREAM is not set (host:port of Prometheus, profile monitoring)}"
# Settings have their defaults in .env.example only; both runners pass every one (compose.yaml).
: "${NGINX_LISTEN:?NGINX_LISTEN is not set (address:port or port of the HTTP listener)}"
: "${NGINX_GRPC_LISTEN:?NGINX_GRPC_LISTEN is not set (address:port or port of the gRPC listener)}"
: "${NGINX_STATUS_PORT:?NGINX_STATUS_PORT is not set: add it to .env (see .env.example)}"
: "${NGINX_STATUS_LISTEN:?NGINX_STATUS_LISTEN is not set (address:port or port of the status server)}"
: "${LAB_MAX_BODY_SIZE:?LAB_MAX_BODY_SIZE is not set: add it to .env (see .env.example)}"
: "${MODEL_API_MAX_BODY_SIZE:?MODEL_API_MAX_BODY_SIZE is not set: add it to .env (see .env.example)}"
# Where nginx looks up the model API per request (Compose: Docker's DNS). Unused when the
# upstreams are IP addresses, as under the native runner.
: "${NGINX_RESOLVER:=127.0.0.1}"
: "${NGINX_RUNTIME_DIR:=/tmp/nginx}"
: "${NGINX_TEMPLATES:=$(dirname "$0")}"
# Containers log to stdout; the native runner (unprivileged nginx under a root
# supervisor, which cannot reopen /dev/stdout) to a file in the runtime directory.
: "${NGINX_ACCESS_LOG:=/dev/stdout}"
# Accounts of labs from before MLflow held them: nginx-only {SSHA} hashes, which MLflow's
# auth app cannot take over (it keeps scrypt hashes of passwords it was given).
: "${NGINX_USERS_FILE:=/var/lib/mlflow-lab/users.htpasswd}"

export NGINX_RESOLVER NGINX_LISTEN NGINX_GRPC_LISTEN NGINX_STATUS_LISTEN LAB_MAX_BODY_SIZE MODEL_API_MAX_BODY_SIZE NGINX_RUNTIME_DIR NGINX_ACCESS_LOG LAB_AUTH_CACHE_SECONDS

mkdir -p "$NGINX_RUNTIME_DIR"
umask 077

if [ -s "$NGINX_USERS_FILE" ]; then
    for name in $(cut -d: -f1 "$NGINX_USERS_FILE"); do
        echo "nginx: the account '$name' (made by an earlier lab, whose accounts were nginx's) no longer logs in: MLflow holds the accounts now and cannot take over its password; re-issue it with: make users ADD=$name" >&2
    done
    mv "$NGINX_USERS_FILE" "$NGINX_USERS_FILE.retired"
fi

render() {
    envsubst '${NGINX_RESOLVER} ${NGINX_RUNTIME_DIR} ${NGINX_ACCESS_LOG} ${NGINX_LISTEN} ${NGINX_STATUS_LISTEN} ${MLFLOW_UPSTREAM} ${PROMETHEUS_UPSTREAM} ${LAB_SERVER_NAMES} ${LAB_MAX_BODY_SIZE} ${MODEL_API_UPSTREAM} ${MODEL_API_MAX_BODY_SIZE} ${NGINX_GRPC_LISTEN} ${MODEL_API_GRPC_UPSTREAM} ${LAB_AUTH_CACHE_SECONDS}' \
        < "$NGINX_TEMPLATES/$1.template" > "$NGINX_RUNTIME_DIR/$1"
}
render lab-auth-request.conf
render lab-auth.conf
render nginx.conf

nginx -t -q -c "$NGINX_RUNTIME_DIR/nginx.conf"
exec nginx -c "$NGINX_RUNTIME_DIR/nginx.conf" -g 'daemon off;'

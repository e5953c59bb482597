#!/bin/sh
# Renders nginx.conf and the htpasswd file from the environment, then runs nginx in the
# foreground. Used as-is by the container image and by the native runner.
set -eu
. "$(dirname "$0")/htpasswd.sh"

: "${LAB_USER:?LAB_USER is not set: add it to .env (see .env.example)}"
: "${LAB_PASSWORD:?LAB_PASSWORD is not set: add it to .env (see .env.example)}"
: "${LAB_SERVER_NAMES:?LAB_SERVER_NAMES is not set: add it to .env (see .env.example)}"
: "${MLFLOW_UPSTREAM:?MLFLOW_UPSTREAM is not set (host:port of the tracking server)}"
: "${MODEL_API_UPSTREAM:?MODEL_API_UPSTREAM is not set (host:port of the model API)}"
: "${MODEL_API_GRPC_UPSTREAM:?MODEL_API_GRPC_UPSTREAM is not set (host:port of the model API's gRPC server)}"
# The rules about the password's strength live in mlflow_lab.settings; the `init` step
# applies them, and nginx starts only after it (through the tracking server's health).
# Settings have their defaults in .env.example only; both runners pass every one (compose.yaml).
: "${NGINX_LISTEN:?NGINX_LISTEN is not set (address:port or port of the HTTP listener)}"
: "${NGINX_GRPC_LISTEN:?NGINX_GRPC_LISTEN is not set (address:port or port of the gRPC listener)}"
: "${NGINX_STATUS_PORT:?NGINX_STATUS_PORT is not set: add it to .env (see .env.example)}"
: "${LAB_MAX_BODY_SIZE:?LAB_MAX_BODY_SIZE is not set: add it to .env (see .env.example)}"
: "${MODEL_API_MAX_BODY_SIZE:?MODEL_API_MAX_BODY_SIZE is not set: add it to .env (see .env.example)}"
# Where nginx looks up the model API per request (Compose: Docker's DNS). Unused when the
# upstreams are IP addresses, as under the native runner.
: "${NGINX_RESOLVER:=127.0.0.1}"
: "${NGINX_TEMPLATE:=$(dirname "$0")/nginx.conf.template}"
# Containers log to stdout; the native runner (unprivileged nginx under a root
# supervisor, which cannot reopen /dev/stdout) to a file in the runtime directory.
: "${NGINX_ACCESS_LOG:=/dev/stdout}"

export NGINX_RESOLVER NGINX_LISTEN NGINX_GRPC_LISTEN NGINX_STATUS_PORT LAB_MAX_BODY_SIZE MODEL_API_MAX_BODY_SIZE NGINX_RUNTIME_DIR NGINX_ACCESS_LOG

mkdir -p "$NGINX_RUNTIME_DIR"
umask 077

ssha_line "$LAB_USER" "$LAB_PASSWORD" > "$NGINX_RUNTIME_DIR/admin.htpasswd"
assemble_htpasswd

envsubst '${NGINX_RESOLVER} ${NGINX_RUNTIME_DIR} ${NGINX_ACCESS_LOG} ${NGINX_LISTEN} ${NGINX_STATUS_PORT} ${MLFLOW_UPSTREAM} ${LAB_SERVER_NAMES} ${LAB_MAX_BODY_SIZE} ${MODEL_API_UPSTREAM} ${MODEL_API_MAX_BODY_SIZE} ${NGINX_GRPC_LISTEN} ${MODEL_API_GRPC_UPSTREAM}' \
    < "$NGINX_TEMPLATE" > "$NGINX_RUNTIME_DIR/nginx.conf"

nginx -t -q -c "$NGINX_RUNTIME_DIR/nginx.conf"
exec nginx -c "$NGINX_RUNTIME_DIR/nginx.conf" -g 'daemon off;'

#!/bin/sh
# STAND-IN entrypoint (see the Dockerfile): `server ...` runs weed's all-in-one server on /data,
# anything else runs weed with the arguments as given.
set -eu
if [ "${1:-}" = server ]; then
    shift
    exec /usr/bin/weed -logtostderr=true server -dir=/data -volume.max=0 -master.volumeSizeLimitMB=1024 "$@"
fi
exec /usr/bin/weed "$@"

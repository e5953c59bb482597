#!/bin/sh
# The lab's extra basic-auth accounts (`lab users`), run where nginx runs (its container under
# Compose, its host user natively). The admin from .env stays as it is.
#   users.sh add NAME...      new accounts: prints "NAME PASSWORD" once for each
#   users.sh remove NAME...
#   users.sh list
# Every name is checked before anything changes: one bad name changes nothing.
set -eu
. "$(dirname "$0")/htpasswd.sh"
umask 077

fail() { echo "$1" >&2; exit 1; }
exists() { [ -f "$NGINX_USERS_FILE" ] && cut -d: -f1 "$NGINX_USERS_FILE" | grep -qxF "$1"; }

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
add)
    [ $# -gt 0 ] || fail "name at least one account to add."
    for name in "$@"; do
        printf '%s' "$name" | grep -qxE '[a-z][a-z0-9._-]{0,31}' ||
            fail "'$name' is not a valid account name: a lowercase letter, then up to 31 of a-z 0-9 . _ -; nothing was changed."
        [ "$name" != "${LAB_USER:-}" ] || fail "'$name' is the admin account from .env; nothing was changed."
        ! exists "$name" || fail "account '$name' already exists; nothing was changed."
        [ "$(printf '%s\n' "$@" | grep -cxF "$name")" = 1 ] || fail "'$name' is named twice; nothing was changed."
    done
    touch "$NGINX_USERS_FILE"
    cp "$NGINX_USERS_FILE" "$NGINX_USERS_FILE.new"
    for name in "$@"; do
        password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        ssha_line "$name" "$password" >> "$NGINX_USERS_FILE.new"
        printf '%s %s\n' "$name" "$password"
    done
    mv "$NGINX_USERS_FILE.new" "$NGINX_USERS_FILE"
    ;;
remove)
    [ $# -gt 0 ] || fail "name at least one account to remove."
    for name in "$@"; do
        exists "$name" || fail "there is no account '$name' (the admin from .env cannot be removed); nothing was changed."
    done
    cp "$NGINX_USERS_FILE" "$NGINX_USERS_FILE.new"
    for name in "$@"; do
        grep -vE "^$(printf '%s' "$name" | sed 's/\./\\./g'):" "$NGINX_USERS_FILE.new" > "$NGINX_USERS_FILE.tmp" || true
        mv "$NGINX_USERS_FILE.tmp" "$NGINX_USERS_FILE.new"
    done
    mv "$NGINX_USERS_FILE.new" "$NGINX_USERS_FILE"
    ;;
list)
    if [ -f "$NGINX_USERS_FILE" ]; then cut -d: -f1 "$NGINX_USERS_FILE"; fi
    exit 0
    ;;
*)
    fail "usage: users.sh add|remove|list [NAME...]"
    ;;
esac
assemble_htpasswd

# Shared by entrypoint.sh and users.sh (sourced): where the password files live, and the
# {SSHA} (salted SHA-1) hash nginx verifies on every request in microseconds. crypt()-based
# schemes cost milliseconds per request (SHA-512 crypt: ~3.6 ms here) and depend on the C
# library. Only coreutils are used (the official nginx image has no openssl), and only shell
# builtins see a password, so it never shows on a command line.
: "${NGINX_RUNTIME_DIR:=/tmp/nginx}"
# The accounts `lab users` adds (hashes only), kept across restarts: a volume under Compose,
# the state directory natively.
: "${NGINX_USERS_FILE:=/var/lib/mlflow-lab/users.htpasswd}"

# ssha_line NAME PASSWORD: one htpasswd line.
ssha_line() {
    salt=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    digest=$({ printf '%s%s' "$2" "$salt" | sha1sum | cut -c1-40 | tr a-f A-F | basenc --base16 -d
               printf '%s' "$salt"; } | base64 -w0)
    printf '%s:{SSHA}%s\n' "$1" "$digest"
}

# assemble_htpasswd: the file nginx reads (admin + added accounts), replaced in one step.
# nginx reads it on every request, so a change holds at once, without a reload.
assemble_htpasswd() {
    { cat "$NGINX_RUNTIME_DIR/admin.htpasswd"
      if [ -f "$NGINX_USERS_FILE" ]; then cat "$NGINX_USERS_FILE"; fi; } > "$NGINX_RUNTIME_DIR/htpasswd.new"
    mv "$NGINX_RUNTIME_DIR/htpasswd.new" "$NGINX_RUNTIME_DIR/htpasswd"
}

#!/usr/bin/env bash
# The shipped single-process deployment, checked through real nginx:
# stoa started with deploy/stoa.service's ExecStart flags, nginx with
# deploy/nginx.conf (only its ports, the data folder and the certificate
# paths substituted; a self-signed certificate for forum.example.org), then
# through nginx over HTTPS on a port other than 443: the page loads, plain
# HTTP redirects, /metrics and /api/community/stats are not public, a
# registration's cookie is Secure, a stream opens and receives the thread
# a cookie-authenticated post from the page's origin creates. Everything
# started is stopped on the way out.
#
#   scripts/nginx-check.sh        # uses $STOA_BIN, default target/debug/stoa
#
# Needs nginx (Debian's package; installed with apt when missing), openssl
# and curl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STOA_BIN=${STOA_BIN:-$ROOT/target/debug/stoa}
HOST=forum.example.org

log() { echo "nginx-check: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

command -v nginx >/dev/null || {
    log "installing nginx with apt"
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >&2
}
[ -x "$STOA_BIN" ] || fail "no stoa binary at $STOA_BIN (cargo build first)"

dir=$(mktemp -d /tmp/stoa-nginx-check.XXXXXX)
stoa_pid=""
stream_pid=""
cleanup() {
    [ -n "$stream_pid" ] && kill "$stream_pid" 2>/dev/null || true
    if [ -f "$dir/nginx/nginx.pid" ]; then
        nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf" -s stop 2>/dev/null || true
    fi
    if [ -n "$stoa_pid" ]; then
        kill "$stoa_pid" 2>/dev/null || true
        wait "$stoa_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    fail "nothing listening on 127.0.0.1:$1"
}
STOA_PORT=$(free_port)
HTTP_PORT=$(free_port)
HTTPS_PORT=$(free_port)

# stoa, as the unit starts it.
exec_start=$(sed -n 's/^ExecStart=//p' "$ROOT/deploy/stoa.service")
[ -n "$exec_start" ] || fail "no ExecStart in deploy/stoa.service"
mkdir -p "$dir/data"
exec_start=${exec_start//\/usr\/local\/bin\/stoa/$STOA_BIN}
exec_start=${exec_start//127.0.0.1:8080/127.0.0.1:$STOA_PORT}
exec_start=${exec_start//\/var\/lib\/stoa/$dir/data}
log "stoa: $exec_start"
# shellcheck disable=SC2086 # the unit's command line, split as systemd does
$exec_start >"$dir/stoa.log" 2>&1 &
stoa_pid=$!
wait_port "$STOA_PORT"

# nginx, with the shipped server blocks.
mkdir -p "$dir/nginx"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$HOST" \
    -addext "subjectAltName=DNS:$HOST" \
    -keyout "$dir/nginx/key.pem" -out "$dir/nginx/cert.pem" 2>/dev/null
awk -v stoa="127.0.0.1:$STOA_PORT" -v http="127.0.0.1:$HTTP_PORT" -v https="127.0.0.1:$HTTPS_PORT" \
    -v cert="$dir/nginx/cert.pem" -v key="$dir/nginx/key.pem" '
    /^ *listen \[::\]/ { next }
    /^ *listen 80;/ { sub(/80;/, http ";") }
    /^ *listen 443 ssl;/ { sub(/443 ssl;/, https " ssl;") }
    /^ *ssl_certificate / { sub(/ssl_certificate .*/, "ssl_certificate " cert ";") }
    /^ *ssl_certificate_key / { sub(/ssl_certificate_key .*/, "ssl_certificate_key " key ";") }
    { gsub(/127\.0\.0\.1:8080/, stoa); print }
' "$ROOT/deploy/nginx.conf" >"$dir/nginx/site.conf"
cat >"$dir/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    include $dir/nginx/site.conf;
}
CONF
nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf" -t 2>"$dir/nginx/test.log" \
    || { cat "$dir/nginx/test.log" >&2; fail "nginx -t refused deploy/nginx.conf"; }
nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf"
wait_port "$HTTPS_PORT"

SITE="https://$HOST:$HTTPS_PORT"
curl_site() {
    curl -s --cacert "$dir/nginx/cert.pem" \
        --resolve "$HOST:$HTTPS_PORT:127.0.0.1" --resolve "$HOST:$HTTP_PORT:127.0.0.1" "$@"
}
status_of() { curl_site -o /dev/null -w '%{http_code}' "$@"; }

# The page, and plain HTTP sent to HTTPS.
page=$(curl_site -f "$SITE/") || fail "GET / through nginx"
grep -q '<html' <<<"$page" || fail "GET / did not give the page"
log "ok: the page loads over HTTPS on port $HTTPS_PORT"
redirect=$(curl_site -o /dev/null -w '%{http_code} %{redirect_url}' "http://$HOST:$HTTP_PORT/t/1")
[[ $redirect == "301 https://$HOST/t/1" ]] || fail "plain HTTP answered $redirect"
log "ok: plain HTTP redirects to HTTPS"

# The operator's numbers: refused through nginx, there on the loopback port.
for path in /metrics /api/community/stats; do
    [ "$(status_of "$SITE$path")" = 404 ] || fail "$path is public through nginx"
    curl -fs -o /dev/null "http://127.0.0.1:$STOA_PORT$path" || fail "$path missing on stoa's own port"
done
log "ok: /metrics and /api/community/stats are not public"

# A registration: its cookie is Secure (the proxy said https).
headers=$(curl_site -D - -o /dev/null -c "$dir/jar" -H 'Content-Type: application/json' \
    -d '{"username":"nginxcheck","password":"password123"}' "$SITE/api/auth/register")
grep -qi '^set-cookie: stoa_session=.*; Secure' <<<"$headers" \
    || fail "the session cookie is not Secure behind HTTPS: $headers"
log "ok: the session cookie is Secure"

# A stream, then a cookie-authenticated post from the page's own origin.
curl_site -N --max-time 20 "$SITE/api/community/events" >"$dir/stream" &
stream_pid=$!
for _ in $(seq 1 100); do grep -q '"type":"connected"' "$dir/stream" && break; sleep 0.05; done
grep -q '"type":"connected"' "$dir/stream" || fail "the stream did not open: $(cat "$dir/stream")"
posted=$(curl_site -o "$dir/post" -w '%{http_code}' -b "$dir/jar" \
    -H "Origin: $SITE" -H 'Content-Type: application/json' \
    -d '{"title":"through nginx","content":"posted with the cookie"}' "$SITE/api/community/threads")
[ "$posted" = 201 ] || fail "the cookie-authenticated post answered $posted: $(cat "$dir/post")"
log "ok: a cookie-authenticated post from $SITE is accepted"
for _ in $(seq 1 100); do grep -q '"title":"through nginx"' "$dir/stream" && break; sleep 0.05; done
grep -q '^id: .*' "$dir/stream" && grep -q '"type":"new_thread".*"title":"through nginx"' "$dir/stream" \
    || fail "the stream did not carry the new thread: $(cat "$dir/stream")"
log "ok: the stream carries the post, unbuffered"
log "all checks passed"

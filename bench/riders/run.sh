#!/bin/sh
# Benchmark of the staff rider list: GET /api/v1/riders?status=client&per_page=50
# with a session cookie, against nginx serving a static file of the same
# size, both with wrk on loopback (64 connections, 10 seconds, 3 rounds).
# Each server runs on one core (SERVER_CPU) and wrk on another (CLIENT_CPU);
# nginx gets one worker process, the same CPU budget as licol's loop.
#
# Usage: bench/riders/run.sh [path/to/licol]   (default: build/licol)
# Settings (environment): RIDERS, DURATION, CONNECTIONS, THREADS, ROUNDS,
# SERVER_CPU, CLIENT_CPU.
# Needs: wrk, nginx (Debian nginx-light), /usr/bin/python3, curl.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LICOL=${1:-$ROOT/build/licol}
RIDERS=${RIDERS:-10000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
# Both servers get the same single core; wrk runs on the other one.
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PYTHON=/usr/bin/python3
TMP=$(mktemp -d /tmp/licol-bench-XXXXXX)
LICOL_PID=
NGINX_PID=

cleanup() {
    [ -n "$LICOL_PID" ] && kill "$LICOL_PID" 2>/dev/null || true
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PORT=$(free_port)
cat > "$TMP/licol.conf" <<CONF
listen_host = 127.0.0.1
listen_port = $PORT
db = $TMP/licol.db
var_dir = $TMP/var
web_dir = $ROOT/web
scripts_dir = $ROOT/scripts
plugins_dir = $ROOT/plugins
admin_email = gerant@bench.invalid
log_level = warn
max_connections = 1024
CONF

"$LICOL" migrate --config "$TMP/licol.conf" > /dev/null
"$PYTHON" "$HERE/seed.py" "$TMP/licol.db" "$RIDERS"
taskset -c "$SERVER_CPU" "$LICOL" serve --config "$TMP/licol.conf" > "$TMP/stdout.log" 2> "$TMP/stderr.log" &
LICOL_PID=$!
for _ in $(seq 100); do
    grep -q "Licol est démarré" "$TMP/stdout.log" 2>/dev/null && break
    sleep 0.1
done

PASSWORD=$(sed -n 's/.*Mot de passe à usage unique : \(\S*\).*/\1/p' "$TMP/stdout.log")

# Log in, replace the one-time password, and keep the session cookie.
COOKIE=$("$PYTHON" - "$PORT" "$PASSWORD" <<'PY'
import http.client, json, sys
port, password = int(sys.argv[1]), sys.argv[2]
def call(method, path, body, cookie=None, csrf=None):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}
    if cookie: headers["Cookie"] = cookie
    if csrf: headers["X-CSRF-Token"] = csrf
    conn.request(method, path, json.dumps(body), headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp, json.loads(data) if data else None
resp, body = call("POST", "/api/v1/session", {"email": "gerant@bench.invalid", "password": password})
cookie = resp.getheader("Set-Cookie").split(";")[0]
call("POST", "/api/v1/account/password", {"current_password": password, "new_password": "banc-d-essai-2026"},
     cookie, body["csrf_token"])
resp, body = call("POST", "/api/v1/session", {"email": "gerant@bench.invalid", "password": "banc-d-essai-2026"})
print(resp.getheader("Set-Cookie").split(";")[0])
PY
)

URL_PATH="/api/v1/riders?status=client&per_page=50"
curl -sf -H "Cookie: $COOKIE" "http://127.0.0.1:$PORT$URL_PATH" > "$TMP/response.json"
SIZE=$(wc -c < "$TMP/response.json")

NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/html" "$TMP/nginx/logs"
cp "$TMP/response.json" "$TMP/nginx/html/riders.json"
# nginx workers run as an unprivileged user: let them reach the file.
chmod 755 "$TMP" "$TMP/nginx" "$TMP/nginx/html"
chmod 644 "$TMP/nginx/html/riders.json"
cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    default_type application/json;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $TMP/nginx/html;
    }
}
CONF
taskset -c "$SERVER_CPU" /usr/sbin/nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
sleep 0.5

echo "== machine"
lscpu | head -n 15
echo "== load before the run: $(cat /proc/loadavg)"
echo "== riders: $RIDERS, response: $SIZE bytes, rounds: $ROUNDS"
# The two servers are measured in alternation, so that load from other
# programs on the machine affects both alike.
# CPU time (user + system, in clock ticks) used so far by the processes
# whose ids are given.
cpu_ticks() {
    total=0
    for pid in "$@"; do
        ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
        total=$((total + ticks))
    done
    echo "$total"
}

# Runs wrk against a URL and prints, after its report, the server's CPU
# time per request, which depends much less on other load than the rate.
measure() {
    label=$1 url=$2 pids=$3
    shift 3
    before=$(cpu_ticks $pids)
    taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" \
        | tee "$TMP/wrk.txt"
    after=$(cpu_ticks $pids)
    requests=$(awk '/requests in/ { print $1 }' "$TMP/wrk.txt")
    awk -v t=$((after - before)) -v n="$requests" -v hz="$(getconf CLK_TCK)" -v l="$label" \
        'BEGIN { printf "%s CPU per request: %.1f us (%d requests)\n", l, t / hz / n * 1e6, n }'
}

NGINX_PIDS="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
for round in $(seq "$ROUNDS"); do
    echo "== round $round licol: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -H 'Cookie: <session>' http://127.0.0.1:PORT$URL_PATH"
    measure licol "http://127.0.0.1:$PORT$URL_PATH" "$LICOL_PID" -H "Cookie: $COOKIE"
    echo "== round $round nginx: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency http://127.0.0.1:PORT/riders.json"
    measure nginx "http://127.0.0.1:$NGINX_PORT/riders.json" "$NGINX_PIDS"
done
echo "== load after the run: $(cat /proc/loadavg)"

# Uncached pages: each page number is a new cache key, so every request
# runs the list query. For comparison, the same loop on a cached page.
echo "== cached page 1, then uncached pages 1 to 100 (status=client, per_page=50, one at a time):"
"$PYTHON" - "$PORT" "$COOKIE" <<'PY'
import http.client, statistics, sys, time
port, cookie = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port)
def timed(page):
    start = time.perf_counter()
    conn.request("GET", "/api/v1/riders?status=client&per_page=50&page=%d" % page, headers={"Cookie": cookie})
    conn.getresponse().read()
    return (time.perf_counter() - start) * 1000
def report(name, times):
    times.sort()
    print("%s: median %.2f ms, 90th percentile %.2f ms, max %.2f ms"
          % (name, statistics.median(times), times[int(len(times) * 0.9)], times[-1]))
timed(1)
report("cached", [timed(1) for _ in range(100)])
report("uncached", [timed(page) for page in range(2, 102)])
PY

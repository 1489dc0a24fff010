#!/usr/bin/env bash
# Starts or stops an nginx WebDAV server on 127.0.0.1 for tests.
#   scripts/webdav-local.sh start DIR PORT   # serves DIR/www at http://127.0.0.1:PORT/
#   scripts/webdav-local.sh stop DIR
# Needs Debian's nginx-light (http_dav_module). Everything lives under DIR.
set -eu
cmd=${1:?usage: webdav-local.sh start|stop DIR [PORT]}
dir=${2:?usage: webdav-local.sh start|stop DIR [PORT]}
case "$cmd" in
stop)
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do [ -f "$dir/nginx.pid" ] || break; sleep 0.2; done
  exit 0 ;;
start) ;;
*) echo "webdav-local.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
port=${3:?usage: webdav-local.sh start DIR PORT}
command -v nginx >/dev/null || { echo "webdav-local.sh: nginx not installed" >&2; exit 3; }
mkdir -p "$dir/www" "$dir/tmp" "$dir/logs"
dir=$(cd "$dir" && pwd)
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
daemon on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 64; }
http {
  access_log $dir/logs/access.log;
  client_body_temp_path $dir/tmp;
  proxy_temp_path $dir/tmp;
  fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp;
  scgi_temp_path $dir/tmp;
  client_max_body_size 0;
  server {
    listen 127.0.0.1:$port;
    root $dir/www;
    location / {
      dav_methods PUT DELETE MKCOL COPY MOVE;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      autoindex on;
    }
  }
}
CONF
nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/logs/error.log"
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && exit 0
  sleep 0.1
done
echo "webdav-local.sh: nginx did not answer on port $port" >&2
exit 1

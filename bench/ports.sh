# Sourced by bench/run.sh and bench/query.sh.
#
# require_free_port PORT: exits the script (status 1) when something already listens on 127.0.0.1:PORT.
# A benchmark server started there would fail to bind while the load generator went on talking to the
# other process, which would then receive this run's samples or queries and spoil both runs' figures.
require_free_port() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is in use: stop what listens there or set PORT" >&2
    exit 1
  fi
}

#!/usr/bin/env bash
# Make sure the real services the tests use are up, then print the environment
# for them as `export` lines (stdout); everything else goes to stderr.
# Under CI=true a missing PostgreSQL, Redis or Chromium is an error.
set -u
ci="${CI:-false}"
missing=()
log() { echo "$*" >&2; }

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_ready && command -v pg_ctlcluster >/dev/null 2>&1; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 2>&1 || pg_ctlcluster "$version" main start >&2 2>&1 || true
  done
  for _ in $(seq 1 20); do pg_ready && break; sleep 0.5; done
fi

redis_ready() { command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
if ! redis_ready && command -v redis-server >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2 2>&1 || true
  for _ in $(seq 1 20); do redis_ready && break; sleep 0.5; done
fi

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  log "installing Debian chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/tmp/attune-chromium-install.log 2>&1 || log "chromium install failed: see /tmp/attune-chromium-install.log"
fi

mode=()
if pg_ready; then
  psql -h 127.0.0.1 -U "${PGUSER:-root}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='attune'" 2>/dev/null | grep -q 1 \
    || createdb -h 127.0.0.1 -U "${PGUSER:-root}" attune >&2 2>&1 || true
  echo "export DATABASE_URL=postgres://${PGUSER:-root}@127.0.0.1:5432/attune"
  mode+=("PostgreSQL")
else
  missing+=("PostgreSQL"); mode+=("SQLite")
fi
if redis_ready; then
  echo "export CELERY_BROKER_URL=redis://127.0.0.1:6379/15"
  echo "export REDIS_URL=redis://127.0.0.1:6379/14"
  mode+=("Redis")
else
  missing+=("Redis"); mode+=("filesystem broker")
fi
if command -v chromium >/dev/null 2>&1; then
  echo "export ATTUNE_CHROMIUM=$(command -v chromium)"
else
  missing+=("Chromium")
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$ci" = "true" ]; then
    log "CI=true and these services are missing: ${missing[*]}"
    exit 1
  fi
  log "tests run with ${mode[*]} (missing: ${missing[*]}; browser tests are skipped without Chromium)"
else
  log "tests run with ${mode[*]} and Chromium"
fi

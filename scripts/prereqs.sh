# Shared by scripts/test and scripts/demo: install and start what HostCraft needs on Debian 12.
# Sourced, not executed. Needs root. Every step is idempotent and says what it does.

HOSTCRAFT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$HOSTCRAFT_ROOT/.venv"
STATE_DIR="$HOSTCRAFT_ROOT/.hostcraft"
DEBIAN_PACKAGES=(docker.io postgresql restic busybox-static iproute2 iptables docker-registry openssh-server openssh-client psmisc debootstrap)

log() { printf '\033[1m==>\033[0m %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root_debian() {
  [[ "$(id -u)" == 0 ]] || fail "run as root: installing packages, starting dockerd and the lab need it"
  command -v apt-get >/dev/null || fail "this script supports Debian (apt-get); install ${DEBIAN_PACKAGES[*]} yourself"
}

install_packages() {
  local missing=()
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

docker_answers() { curl -sf --max-time 2 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; }

start_dockerd() {
  if docker_answers; then return 0; fi
  log "starting dockerd (log: /var/log/hostcraft-dockerd.log)"
  # No systemd here: start the engine in the background and wait for its socket.
  # setsid: its own session, so the end of the shell or job that started it does not stop it.
  setsid nohup /usr/sbin/dockerd >>/var/log/hostcraft-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker_answers && return 0; sleep 1; done
  tail -n 20 /var/log/hostcraft-dockerd.log >&2
  fail "dockerd did not answer on /var/run/docker.sock within 60 s"
}

postgres_answers() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

start_postgres() {
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h 2>/dev/null | grep -q "^$version main"; then
    log "creating PostgreSQL $version cluster"
    pg_createcluster "$version" main >/dev/null
  fi
  if ! postgres_answers; then
    log "starting PostgreSQL $version"
    pg_ctlcluster "$version" main start
    for _ in $(seq 1 30); do postgres_answers && break; sleep 1; done
    postgres_answers || fail "PostgreSQL did not answer on 127.0.0.1:5432 within 30 s"
  fi
  # A test role with a password made once per machine and shared by every checkout on it, so
  # two checkouts running their tests at once do not reset each other's password.
  local password_file=/var/lib/hostcraft/test-pg-password
  mkdir -p "$(dirname "$password_file")"
  if [[ ! -s "$password_file" ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$password_file")
  fi
  local password
  password=$(cat "$password_file")
  runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -v pw="$password" >/dev/null <<'SQL'
SELECT 'CREATE ROLE hostcraft LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hostcraft')\gexec
ALTER ROLE hostcraft WITH LOGIN CREATEDB PASSWORD :'pw';
SQL
  export HOSTCRAFT_TEST_POSTGRES_URL="postgresql+psycopg://hostcraft:${password}@127.0.0.1:5432/postgres"
}

make_venv() {
  local stamp="$VENV/.installed-$(sha256sum "$HOSTCRAFT_ROOT/pyproject.toml" | cut -c1-16)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtual environment in $VENV"
    python3 -m venv "$VENV"
  fi
  if [[ ! -e "$stamp" ]]; then
    log "installing HostCraft and its test dependencies into the virtual environment"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e "$HOSTCRAFT_ROOT[test]" >/dev/null
    touch "$stamp"
  fi
}

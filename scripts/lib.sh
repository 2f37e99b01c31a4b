# Shared helpers for the project's scripts (sourced, not run).

# Installs Debian packages whose commands are missing: ensure_pkgs cmd:pkg [cmd:pkg ...]
ensure_pkgs() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages start their services when systemd runs them; the scripts start their own.
}

section() { printf '\n==> %s\n' "$*"; }

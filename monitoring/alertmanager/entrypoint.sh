#!/bin/sh
# Starts Alertmanager on a copy of its configuration in which every URL of the form
#   http://secret-url.invalid/<name>
# is replaced by the content of the secret file <name> (e.g. ntfy_fallback_url, written by
# scripts/init-secrets), then runs Alertmanager on the copy with the same arguments.
#
# Why: Alertmanager expands no environment variables in its configuration, and 0.25 (the
# version of the bundle's offline checks and native stack) cannot read a webhook URL from a
# file (url_file came in 0.26), while an ntfy topic URL is a secret (whoever knows it reads the
# pages). After editing alertmanager.yml or a secret, restart the container.
#
# Environment (the defaults are the compose overlay's paths):
#   SECRETS_DIR            /run/secrets
#   ALERTMANAGER_RENDERED  /alertmanager/alertmanager.rendered.yml (in the data volume)
#   ALERTMANAGER_BIN       /bin/alertmanager
set -eu
secrets_dir=${SECRETS_DIR:-/run/secrets}
rendered=${ALERTMANAGER_RENDERED:-/alertmanager/alertmanager.rendered.yml}
bin=${ALERTMANAGER_BIN:-/bin/alertmanager}
prefix=http://secret-url.invalid/

config=
for arg; do
  case $arg in --config.file=*) config=${arg#--config.file=} ;; esac
done
if [ -z "$config" ]; then
  echo "entrypoint: no --config.file=FILE argument" >&2
  exit 64
fi

umask 077
cp "$config" "$rendered.tmp"
# Longest names first (reverse order), so that a name never replaces the start of a longer one.
for name in $(grep -o "${prefix}[A-Za-z0-9_]*" "$config" | sed "s|^$prefix||" | sort -ur); do
  file=$secrets_dir/$name
  if [ ! -r "$file" ]; then
    echo "entrypoint: $config needs the secret $name, but $file cannot be read (run scripts/init-secrets)" >&2
    exit 66
  fi
  value=$(tr -d ' \t\r\n' <"$file")
  case $value in
    http://?* | https://?*) ;;
    *)
      echo "entrypoint: $file must hold an http(s) URL" >&2
      exit 65
      ;;
  esac
  case $value in
    *'|'* | *'&'* | *'\'*)
      echo "entrypoint: $file: the URL may not contain |, & or \\" >&2
      exit 65
      ;;
  esac
  sed "s|$prefix$name|$value|g" "$rendered.tmp" >"$rendered.new"
  mv "$rendered.new" "$rendered.tmp"
done
mv "$rendered.tmp" "$rendered"

# The same arguments, with --config.file pointing at the copy.
for arg; do
  shift
  case $arg in
    --config.file=*) set -- "$@" "--config.file=$rendered" ;;
    *) set -- "$@" "$arg" ;;
  esac
done
exec "$bin" "$@"

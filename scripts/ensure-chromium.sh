#!/usr/bin/env bash
# Make sure the headless browser the dashboard tests drive is installed: Debian's chromium
# and chromium-driver. Installs them with apt-get when run as root; otherwise says how.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium and chromium-driver (Debian packages) for the browser tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  exit 0
fi
echo "the browser tests need Debian's chromium and chromium-driver:" \
     "sudo apt-get install chromium chromium-driver" >&2
exit 1

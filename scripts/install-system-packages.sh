#!/usr/bin/env bash
# Install the Debian packages PACS Desk needs to run and to be tested:
# WeasyPrint's Pango, DICOM peers for integration tests (dcmtk, Orthanc),
# Chromium for the browser tests, poppler for reading PDFs back, psql for CI's
# scratch database, Node.js (npm) for the browser tests' accessibility checker,
# rsyslog to send audit messages to the ATNA receiver in its tests.
set -euo pipefail
packages=(
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
  dcmtk orthanc
  chromium
  poppler-utils
  postgresql-client nodejs
  rsyslog rsyslog-gnutls  # a real syslog sender (omfwd over TLS) for the ATNA receiver's tests
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian ships npm apart from nodejs; some nodejs builds bundle it.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Orthanc's and rsyslog's packages may start system services; the tests start their own instances.
if command -v service >/dev/null 2>&1; then
  $SUDO service orthanc stop >/dev/null 2>&1 || true
  $SUDO service rsyslog stop >/dev/null 2>&1 || true
fi
echo "system packages: installed ${missing[*]}"

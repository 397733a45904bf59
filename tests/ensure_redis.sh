#!/bin/sh
# The shared rate-limit tests run a real Redis (RAG_RATE_LIMIT_STORAGE=redis://...); install Debian's
# redis-server when it is missing (CI machines start without it). Tests start and stop their own server.
set -eu
if [ -x /usr/bin/redis-server ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing Debian's redis-server for the shared rate-limit tests..."
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
/usr/bin/redis-server --version

#!/bin/sh
# setup-go123.sh: installs Go 1.23 (golang-1.23-go from bookworm-backports)
# for the PGO tests in test/pgo, when /usr/lib/go-1.23/bin/go is missing.
# `make setup-test` runs it (target setup-go123).
#
# PGO needs Go 1.21 or later; bookworm's own golang-go is 1.19. The machine's
# apt configuration is never changed: a temporary sources list (bookworm and
# bookworm-backports on the Debian mirror this machine already uses, read
# from /etc/apt/sources.list.d/debian.sources at run time) and a temporary
# lists directory are handed to apt-get with -o options, and removed after.
# Without root, or when the install fails (say, offline), it says so and
# exits 0: the PGO tests then skip with that reason.
set -eu

GO=${PGOF_GO123:-/usr/lib/go-1.23/bin/go}
SOURCES=/etc/apt/sources.list.d/debian.sources
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

[ -x "$GO" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "setup-go123: $GO is missing and we are not root; the PGO tests will be skipped" \
         "(as root, make setup-test installs golang-1.23-go from bookworm-backports)"
    exit 0
fi
uri=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' "$SOURCES" 2>/dev/null || true)
if [ -z "$uri" ]; then
    echo "setup-go123: no Debian mirror in $SOURCES; the PGO tests will be skipped"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$tmp/lists/partial"
# apt downloads as _apt: let it reach the temporary lists, as it does /var/lib/apt.
chmod 755 "$tmp" "$tmp/lists"
chown _apt "$tmp/lists/partial" 2>/dev/null || true
{
    echo "deb [signed-by=$KEYRING] $uri bookworm main"
    echo "deb [signed-by=$KEYRING] $uri bookworm-backports main"
} > "$tmp/sources.list"
set -- -o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=-" \
    -o "Dir::State::Lists=$tmp/lists"
echo "setup-go123: installing golang-1.23-go from bookworm-backports ($uri)"
if apt-get "$@" update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get "$@" install -y -qq --no-install-recommends \
        -t bookworm-backports golang-1.23-go >/dev/null && [ -x "$GO" ]; then
    "$GO" version
else
    echo "setup-go123: installing golang-1.23-go failed; the PGO tests will be skipped"
fi

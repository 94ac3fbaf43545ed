#!/usr/bin/env bash
# Mermaid's own bundle (one self-contained file from the npm package), for tests/test_graph_command.py,
# which renders `orchestrai graph --format mermaid` with it in headless Chromium. Not shipped, not
# needed to use orchestrai: only to test it. Kept in .cache/mermaid/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=12.3.0
target=.cache/mermaid/mermaid-$VERSION.min.js
[ -s "$target" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "mermaid@$VERSION" --silent >/dev/null)
tar xzf "$work/mermaid-$VERSION.tgz" -C "$work" package/dist/mermaid.min.js
mkdir -p .cache/mermaid
mv "$work/package/dist/mermaid.min.js" "$target"

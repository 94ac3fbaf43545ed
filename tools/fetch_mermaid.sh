#!/usr/bin/env bash
# Mermaid's own bundle (one self-contained file from the npm package), for tests/test_graph_command.py,
# which renders `orchestrai graph --format mermaid` with it in headless Chromium. Not shipped, not
# needed to use orchestrai: only to test it. Kept in .cache/mermaid/ (git-ignored).
# Fetched from the npm registry with Python alone (a fresh machine need not have npm), and checked
# against the tarball's SHA-256, so a changed or corrupted download fails here, not in a test.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=12.3.0
SHA256=be0684e8d20bfc874df12c0f04927a5c482f57f2200eec54cca52a4583fd4040
target=.cache/mermaid/mermaid-$VERSION.min.js
[ -s "$target" ] && exit 0
mkdir -p .cache/mermaid
python3 - "$VERSION" "$SHA256" "$target" <<'PY'
import hashlib, io, sys, tarfile, urllib.request

version, sha256, target = sys.argv[1:]
url = f"https://registry.npmjs.org/mermaid/-/mermaid-{version}.tgz"
data = urllib.request.urlopen(url, timeout=120).read()
if hashlib.sha256(data).hexdigest() != sha256:
    sys.exit(f"{url}: SHA-256 mismatch (expected {sha256})")
with tarfile.open(fileobj=io.BytesIO(data)) as archive:
    member = archive.extractfile("package/dist/mermaid.min.js")
    assert member is not None
    with open(target, "wb") as out:
        out.write(member.read())
PY

#!/usr/bin/env bash
# Renders a fer report in headless Chromium and checks the screenshot is a real, non-blank page.
# Usage: report_renders.sh FER_BINARY WORK_DIR. Exits 0 with a SKIP message when Chromium is absent.
set -euo pipefail
fer=$1 work=$2
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "SKIP: no chromium on this machine (Debian: apt-get install chromium)"
  exit 0
fi
rm -rf "$work" && mkdir -p "$work"
"$fer" train --out "$work/run" --epochs 1 --max-per-class 16 --batch 16 --threads 2 > "$work/train.log"
"$fer" report --run "$work/run" -o "$work/report.html"
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=1250,3000 --screenshot="$work/report.png" \
  "file://$work/report.html" > "$work/chromium.log" 2>&1 || { cat "$work/chromium.log"; exit 1; }
/usr/bin/python3 - "$work/report.png" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", data[16:24])
assert (w, h) == (1250, 3000), f"unexpected size {w}x{h}"
# Decompress the image and count distinct byte values in it: a blank or failed page is nearly uniform.
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
raw = zlib.decompress(idat)
distinct = len(set(raw[:: max(1, len(raw) // 200000)]))
assert distinct > 64, f"the page looks blank ({distinct} distinct byte values)"
print(f"report rendered: {w}x{h}, {distinct} distinct byte values")
PY

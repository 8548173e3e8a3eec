#!/usr/bin/env bash
# Checks that every code block the docs quote from a file is that file, character for character.
# A quoted block is written in a doc as
#     <!-- snippet: examples/docs/NAME.cpp -->
#     ```cpp
#     ...the whole file...
#     ```
# Usage: docs_snippets.sh SOURCE_DIR [--update]. Fails on a mismatch, a missing file, or no snippet
# at all; with --update it rewrites every quoted block from its file instead.
set -euo pipefail
cd "$1"
/usr/bin/env python3 - "${2:-}" <<'PY'
import pathlib, re, sys
update = sys.argv[1:] == ["--update"]
pattern = re.compile(r"^<!-- snippet: (\S+) -->\n```[a-z]*\n(.*?)^```\n", re.S | re.M)
checked, failures = 0, []
for doc in sorted(pathlib.Path("docs").rglob("*.md")):
    text = doc.read_text()
    if update:
        def fill(m):
            return f"<!-- snippet: {m.group(1)} -->\n```cpp\n{pathlib.Path(m.group(1)).read_text()}```\n"
        new = pattern.sub(fill, text)
        if new != text:
            doc.write_text(new)
            print("updated", doc)
            text = new
    for match in pattern.finditer(text):
        source, quoted = pathlib.Path(match.group(1)), match.group(2)
        checked += 1
        if not source.is_file():
            failures.append(f"{doc}: quotes {source}, which does not exist")
        elif source.read_text() != quoted:
            failures.append(f"{doc}: the block quoting {source} differs from the file")
    markers = len(re.findall(r"^<!-- snippet:", text, re.M))
    if markers != len(pattern.findall(text)):
        failures.append(f"{doc}: a snippet marker is not followed by a fenced code block")
for f in failures:
    print("FAIL:", f)
print(f"{checked} quoted snippets checked")
sys.exit(1 if failures or checked == 0 else 0)
PY

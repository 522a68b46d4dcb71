#!/usr/bin/env python3
"""Write the dpkg status of a minimal Debian: what a bare system already has.

The Essential and required packages installed here, with what they depend on (the first of
each group of alternatives that is installed). ``scripts/bundle.sh`` downloads every Debian
package set-up needs beyond it; ``scripts/check-bundle.sh`` installs from the bundle against it.

Usage: ``minimal-status.py OUT``.
"""

import re
import sys
from pathlib import Path


def field(block: str, name: str) -> str:
    """Return a field of a dpkg status block, its continuation lines joined."""
    found = re.search(rf"^{name}: (.*(?:\n .*)*)", block, re.M)
    return found.group(1).replace("\n", " ") if found else ""


def main(out: str) -> None:
    """Write the minimal system's status file to ``out``."""
    installed: dict[str, str] = {}
    provides: dict[str, str] = {}
    for block in Path("/var/lib/dpkg/status").read_text().split("\n\n"):
        if "Status: install ok installed" in block:
            installed[field(block, "Package")] = block
            for provided in field(block, "Provides").split(","):
                provides.setdefault(provided.strip().split(" ")[0], field(block, "Package"))
    base = re.compile(r"^(Priority: required|Essential: yes)", re.M)
    todo = [name for name, block in installed.items() if base.search(block)]
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        depends = field(installed[name], "Pre-Depends") + "," + field(installed[name], "Depends")
        for alternatives in depends.split(","):
            for choice in alternatives.split("|"):
                dep = choice.strip().split(" ")[0].split(":")[0]
                if dep in installed or dep in provides:
                    todo.append(dep if dep in installed else provides[dep])
                    break
    Path(out).write_text("\n\n".join(installed[n] for n in sorted(keep)) + "\n\n")


if __name__ == "__main__":
    main(sys.argv[1])

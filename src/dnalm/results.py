"""Print where the results of a workflow run are (called at the end of ``make run``)."""

from __future__ import annotations

import sys
from pathlib import Path

from dnalm.paths import STAGES


def main(root: str = ".") -> int:
    base = Path(root)
    print("dnalm results:")
    for pattern, what in STAGES:
        hits = sorted(base.glob(pattern))
        if hits:
            shown = ", ".join(str(h) for h in hits[:3]) + (" ..." if len(hits) > 3 else "")
            print(f"  {what}: {shown}")
    print("Build an HTML report with: .venv/bin/snakemake --report report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""Run one fuzz target under atheris (libFuzzer): `python fuzz/run.py TARGET [CORPUS_DIR...] [-flags]`.

The project's modules are instrumented for coverage; libFuzzer's flags pass through (-runs=N,
-max_total_time=S, -timeout=S, -rss_limit_mb=MB). A crash writes crash-* beside the working
directory with the input that caused it.
"""

from __future__ import annotations

import sys

import atheris

# PIL too: its format plugins are Python (the decoders under them are C, which atheris cannot see).
with atheris.instrument_imports(
    include=["i2v_contract", "i2v_common", "i2v_node", "i2v_coordinator", "targets", "PIL"]
):
    import targets


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(targets.TARGETS)}}} [corpus dirs] [libFuzzer flags]")
    target = targets.TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Cases of the ONNX backend suite that ortgpu does not pass, as data grouped by cause.

Patterns are anchored regexes over the case name (with its _cpu/_cuda suffix).
SKIP: cases not run at all (they cannot pass here for a reason outside ortgpu).
XFAIL: known gaps; they run, and a fix shows up as an unexpected pass (XPASS).
"""

SKIP: dict[str, list[tuple[str, str]]] = {
}

XFAIL: dict[str, list[tuple[str, str]]] = {
}


def patterns(table: dict[str, list[tuple[str, str]]]) -> list[str]:
    return [p for rows in table.values() for p, _ in rows]

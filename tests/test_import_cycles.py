"""The modules of ortgpu/, providers/, memory/ and profiling/ import each other without circles
(scripts/import_cycles.py: deferred imports inside functions count too)."""
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "import_cycles.py"


def test_no_import_circles():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "no import circles"


def test_the_check_finds_a_circle():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import import_cycles
    finally:
        sys.path.remove(str(SCRIPT.parent))
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles.circles(graph) == [["a", "b", "c"]]
    assert import_cycles.circles({"a": {"b"}, "b": set()}) == []

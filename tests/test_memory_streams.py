"""Stream-ordered reuse in the arena (issue 12, item 5): a block freed while its stream may
still use it is handed to another stream only after that stream is ordered behind the work,
on the device double's streams and events (tests/support/device_double.py)."""
import pytest

from ortgpu.memory import Arena, DeviceMemory, HostBackend
from support.device_double import FakeStream

KiB = 1024


def arena():
    return Arena(HostBackend(), extend_strategy="kSameAsRequested")


def test_a_block_freed_on_one_stream_reaches_another_only_behind_its_work():
    a, A, B = arena(), FakeStream("A"), FakeStream("B")
    x = a.allocate(4 * KiB, stream=A)
    pending = A.launch()          # a kernel on A still writes x ...
    x.release()                   # ... when its lease is dropped
    assert not B.ordered_after(A, pending)
    y = a.allocate(4 * KiB, stream=B)
    assert y.ptr == x.ptr, "the block is reused, not a new region"
    assert B.ordered_after(A, pending), "B may touch the block before A's kernel ran"
    assert A.completed == 0 and B.host_waits == 0, "ordering needs no host wait"
    B.launch()
    B.synchronize()               # running B runs A's work first
    assert A.completed >= pending


def test_same_stream_reuse_is_immediate_and_adds_no_wait():
    a, A = arena(), FakeStream("A")
    x = a.allocate(4 * KiB, stream=A)
    A.launch()
    x.release()
    y = a.allocate(4 * KiB, stream=A)
    assert y.ptr == x.ptr and A.waits == [] and A.host_waits == 0


def test_completed_work_needs_no_wait_and_no_stream_waits_on_the_host():
    a, A, B = arena(), FakeStream("A"), FakeStream("B")
    x = a.allocate(4 * KiB, stream=A)
    A.launch()
    x.release()
    A.synchronize()
    y = a.allocate(4 * KiB, stream=B)
    assert y.ptr == x.ptr and B.waits == [], "a completed event is not waited on"
    pending = B.launch()
    y.release()
    w = a.allocate(4 * KiB)       # no stream (a host consumer): waits for B on the host
    assert w.ptr == x.ptr and B.completed >= pending


def test_merged_and_split_blocks_keep_every_streams_event():
    a, A, B, C = arena(), FakeStream("A"), FakeStream("B"), FakeStream("C")
    big = a.allocate(8 * KiB, stream=A)
    big.release()
    left = a.allocate(4 * KiB, stream=A)
    right = a.allocate(4 * KiB, stream=B)
    pa, pb = A.launch(), B.launch()
    left.release()
    right.release()               # merges with the left half: one free block, two events
    assert len(a.blocks()) == 1
    part = a.allocate(2 * KiB, stream=C)   # split: the taken part and the rest both carry them
    assert C.ordered_after(A, pa) and C.ordered_after(B, pb)
    rest = a.allocate(6 * KiB, stream=A)
    assert rest.ptr == part.ptr + 2 * KiB
    assert A.ordered_after(B, pb), "the rest of a split block lost B's event"
    assert all(e.stream is not A for _, e in A.waits), "a stream never waits on itself"


def test_device_memory_runs_take_blocks_for_their_stream():
    mem, A, B = DeviceMemory(HostBackend()), FakeStream("A"), FakeStream("B")
    with mem.run(None, stream=A) as source:
        x = source.allocate(4 * KiB)
        assert x.stream is A
        pending = A.launch()
        x.release()
    with mem.run(None, stream=B) as source:
        y = source.allocate(4 * KiB)
    assert y.ptr == x.ptr and B.ordered_after(A, pending)
    assert mem.arena.allocate(KiB).stream is None, "the stream is bound for the run only"


@pytest.mark.parametrize("fail", [False, True])
def test_a_release_whose_event_cannot_be_recorded_waits_for_the_stream(fail):
    class Broken(FakeStream):
        def record(self, event=None):
            raise RuntimeError("no context")
    a = arena()
    A = Broken("A") if fail else FakeStream("A")
    x = a.allocate(KiB, stream=A)
    pending = A.launch()
    x.release()
    assert (A.completed >= pending) == fail


def test_a_release_while_the_stream_captures_records_nothing_and_waits_for_nothing():
    a, A = arena(), FakeStream("A")
    x = a.allocate(KiB, stream=A)
    A.launch()
    A.capturing = True
    A.record = None               # recording would fail the test
    x.release()
    assert A.host_waits == 0 and a.blocks()[0].free and a.blocks()[0].events == {}

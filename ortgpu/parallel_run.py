"""``execution_mode = ORT_PARALLEL``: the steps of a run whose inputs are ready run at the same
time on a small thread pool (``inter_op_num_threads`` threads), so independent branches of
the graph (the towers of an Inception block, the heads of a detector) overlap.

The order is the graph's data flow, not the plan's list: a step is submitted once every step
that writes one of its inputs has finished, and a value is released when the last step that
reads it has finished (the plan's own release points assume the list order).  Kernels are
the same functions the sequential run calls, each on its own inputs, so the results are the
same values; NumPy gives up the GIL inside its loops and BLAS, which is where branches
overlap.  Only plans whose every step runs on the CPU are run this way (a device provider's
stream is one queue: its kernels are ordered there already); profiled runs stay sequential,
so that their per-node timings mean what they say.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import queue

import numpy as np

from ortgpu.errors import Fail
from ortgpu.executor import TERMINATED, Plan, call_step, raise_node_error, store_outputs


@dataclasses.dataclass(frozen=True)
class _Flow:
    """The data flow of one plan: per step, how many steps it waits for and the steps that
    wait for it; per slot, how many steps read it; the steps that wait for none."""
    waits: tuple
    consumers: tuple
    reads: dict
    roots: tuple
    keep: frozenset


def _flow(plan: Plan) -> _Flow:
    writer = {}
    for i, st in enumerate(plan.steps):
        for s in st.outs:
            if s >= 0:
                writer[s] = i
    waits, consumers, reads = [], [[] for _ in plan.steps], {}
    for i, st in enumerate(plan.steps):
        read = [s for s in st.ins if s >= 0] + [s for _, s in st.outer_slots]
        producers = {writer[s] for s in read if s in writer}
        for p in producers:
            consumers[p].append(i)
        waits.append(len(producers))
        for s in read:
            reads[s] = reads.get(s, 0) + 1
    roots = tuple(i for i, n in enumerate(waits) if n == 0)
    keep = frozenset(plan.output_slots) | frozenset(plan.input_slots) | frozenset(
        s for s, v in enumerate(plan.template) if v is not None)
    return _Flow(tuple(waits), tuple(tuple(c) for c in consumers), reads, roots, keep)


class ParallelRunner:
    """Runs plans with up to `threads` steps at once; one per session, its pool started on the
    first run and ended with the runner."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self._pool = None
        self._flows: dict[int, tuple[Plan, _Flow | None]] = {}

    def usable(self, plan: Plan) -> bool:
        """Whether `plan` runs in parallel: more than one thread, and every step on the CPU."""
        return self.threads > 1 and self._flow_of(plan) is not None

    def _flow_of(self, plan: Plan):
        got = self._flows.get(id(plan))
        if got is None or got[0] is not plan:
            host = all(getattr(st.provider, "device", "cpu") == "cpu" for st in plan.steps)
            got = self._flows[id(plan)] = (plan, _flow(plan) if host else None)
        return got[1]

    def run(self, plan: Plan, inputs: list, stop=None) -> list:
        """`plan.run(inputs, stop=stop)` with ready steps running at the same time."""
        flow = self._flow_of(plan)
        if flow is None or self.threads <= 1:
            return plan.run(inputs, stop=stop)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="ortgpu-inter-op")
        steps, vals = plan.steps, plan.seed(inputs, None)
        waits, reads = list(flow.waits), dict(flow.reads)
        done: queue.SimpleQueue = queue.SimpleQueue()

        def task(i):
            try:
                with np.errstate(all="ignore"):  # per thread, as the sequential run's
                    res = call_step(steps[i], vals, stop)
                done.put((i, res, None))
            except BaseException as e:  # noqa: BLE001 - handed to the run's thread, raised there
                done.put((i, None, e))

        def submit(i):
            if stop is not None and stop.terminate:
                raise Fail(TERMINATED)
            self._pool.submit(task, i)
        running, failed = 0, None
        try:
            for i in flow.roots:
                submit(i)
                running += 1
            while running:
                i, res, err = done.get()
                running -= 1
                if err is not None or failed is not None:
                    failed = failed or (i, err)
                    continue
                st = steps[i]
                store_outputs(st, vals, res)
                self._release(st, vals, reads, flow.keep)
                for j in flow.consumers[i]:
                    waits[j] -= 1
                    if waits[j] == 0:
                        submit(j)
                        running += 1
        except BaseException:
            while running:  # let the steps in flight end before the error leaves the run
                done.get()
                running -= 1
            raise
        if failed is not None:
            raise_node_error(steps[failed[0]], failed[1])
        return [vals[s] for s in plan.output_slots]

    @staticmethod
    def _release(st, vals: list, reads: dict, keep: frozenset) -> None:
        """Drop the values whose last reader is `st`, and outputs of it nobody reads."""
        for s in [s for s in st.ins if s >= 0] + [s for _, s in st.outer_slots]:
            n = reads[s] = reads[s] - 1
            if n == 0 and s not in keep:
                vals[s] = None
        for s in st.outs:
            if s >= 0 and s not in reads and s not in keep:
                vals[s] = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

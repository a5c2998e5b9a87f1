"""What else ran on the machine while a measured process ran: the CPU seconds of every process
outside its process tree, sampled from /proc (through psutil) while it runs. A reference run that
shared its cores with a bystander says so, and names it."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Bystander:
    pid: int
    command: str
    cpu_s: float


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class Bystanders:
    """Samples every process each `interval_s` while the process `pid` runs; `stop()` returns the
    processes outside `pid`'s tree (and outside this process) by the CPU seconds they used
    meanwhile, the most first. A process seen only once counts from its first sample: one that
    started and ended between two samples is missed (a second's sampling keeps that small)."""

    def __init__(self, pid: int, interval_s: float = 1.0):
        self.pid, self.interval_s = pid, interval_s
        self.tree = {pid}
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[float, str]] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            self.tree |= {child.pid for child in psutil.Process(self.pid).children(recursive=True)}
        except psutil.Error:
            pass
        for process in psutil.process_iter(["pid", "name"]):
            try:
                seconds = _cpu_s(process)
                if process.pid not in self.last:
                    command = " ".join(process.cmdline()[:4]) or process.info["name"] or "?"
                else:
                    command = self.last[process.pid][1]
            except psutil.Error:
                continue
            self.first.setdefault(process.pid, seconds)
            self.last[process.pid] = (seconds, command)

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._sample()
            self.stopping.wait(self.interval_s)

    def start(self) -> Bystanders:
        self._sample()
        self.thread.start()
        return self

    def stop(self) -> list[Bystander]:
        self.stopping.set()
        self.thread.join()
        ours = os.getpid()
        found = [
            Bystander(pid, command, seconds - self.first[pid])
            for pid, (seconds, command) in self.last.items()
            if pid not in self.tree and pid != ours
        ]
        return sorted((b for b in found if b.cpu_s > 0), key=lambda b: -b.cpu_s)


def describe(bystanders: list[Bystander], wall_s: float, top: int = 3) -> str:
    """One line: the bystanders' CPU seconds against the run's wall time, the busiest named."""
    total = sum(b.cpu_s for b in bystanders)
    named = ", ".join(f"{b.command!r} (pid {b.pid}) {b.cpu_s:.1f} s" for b in bystanders[:top])
    return f"other processes used {total:.1f} CPU-s in {wall_s:.0f} s" + (f": {named}" if named else "")

"""The worker channel (infpop/measure/channel.py): every message through a JSON line and back, the
wire format the worker and tests rely on, clear failures on a line that is no message, and the
process wrapper's deadlines on a real (idle) worker. No engine is loaded."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import REPO

from infpop.measure import channel

MESSAGES = [
    channel.Load(
        engine="hf",
        hardware="cpu",
        environment=None,
        model_path="/models/tiny",
        n_gpus=1,
        dtype="float32",
        device="cpu",
        engine_args={"attn_implementation": "sdpa"},
        prompts=["def f(x):", "return 1"],
        offload="allow",
    ),
    channel.Warmup(batches=2, batch_size=4, max_new_tokens=8),
    channel.Trial(max_new_tokens=8, batch_size=2),
    channel.Trial(max_new_tokens=8, batch_size=2, call="bare", fault={"kind": "hang", "after_batches": 1}),
    channel.Exit(),
    channel.Loaded(load_seconds=1.5, engine_settings={"dtype": "float32"}, environment={"host": "h"}),
    channel.LoadFailed(status="oom", error="out of memory", engine_settings={"offloaded": True}),
    channel.LoadFailed(status="error", error="no config.json"),
    channel.SetupFailed(error="hardware 'a100' needs 1 GPU(s) but this worker sees 0"),
    channel.Warmed(seconds=0.25, error=None),
    channel.Batch(
        index=0,
        latency_s=0.01,
        new_tokens=6,
        prompt_tokens=10,
        cached_prompt_tokens=None,
        output_digests=["0123456789ab", "ba9876543210"],
        peak_memory_bytes=1024,
    ),
    channel.TrialEnd(
        status="ok", error=None, peak_memory_bytes=2048, peak_memory_kind="rss", usable=True, energy={"joules": None}
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_a_line_and_back(message):
    line = channel.encode(message)
    assert "\n" not in line
    decode = channel.decode_command if isinstance(message, channel.Command) else channel.decode_event
    assert decode(line) == message
    assert decode(line.encode()) == message  # as the supervisor reads it: bytes


def test_every_message_type_is_covered_and_tagged_as_on_the_wire():
    assert {type(m) for m in MESSAGES} == {*channel.COMMANDS.values(), *channel.EVENTS.values()}
    assert json.loads(channel.encode(channel.Trial(3, 2)))["cmd"] == "trial"
    assert json.loads(channel.encode(channel.Exit())) == {"cmd": "exit"}
    wire = json.loads(channel.encode(MESSAGES[-1]))
    assert list(wire)[0] == "event" and wire["event"] == "trial_end"


def test_a_plain_dict_on_the_wire_is_a_message():
    """What a test (or an older end) writes by hand reads as the typed message; the fault stays a
    plain dict."""
    fault = {"kind": "crash", "after_batches": 1}
    line = json.dumps({"cmd": "trial", "max_new_tokens": 3, "batch_size": 2, "call": "engine", "fault": fault})
    assert channel.decode_command(line) == channel.Trial(3, 2, fault=fault)
    assert channel.decode_command('{"cmd": "trial", "max_new_tokens": 3, "batch_size": 2}').fault is None
    end = channel.decode_event('{"event": "trial_end", "status": "oom", "error": "x", "peak_memory_bytes": 1, '
                               '"peak_memory_kind": "rss"}')  # fmt: skip
    assert end.usable is True and end.energy is None


@pytest.mark.parametrize(
    "line, decode, message",
    [
        ('{"event": "finished"}', channel.decode_event, "unknown event 'finished' on the worker channel (known: "),
        ('{"cmd": "reload"}', channel.decode_command, "unknown cmd 'reload'"),
        ('{"cmd": "exit"}', channel.decode_event, "a message without its 'event'"),
        ('{"event": "warmed", "seconds": 1}', channel.decode_event, "event 'warmed' with the wrong fields"),
        ('{"event": "warmed", "seconds": 1, "error": null, "extra": 2}', channel.decode_event, "wrong fields"),
        ("Loading checkpoint shards: 100%", channel.decode_event, "not a JSON line on the worker channel"),
    ],
)
def test_a_line_that_is_no_message_fails_clearly(line, decode, message):
    with pytest.raises(channel.ProtocolError, match=message.replace("(", r"\(")):
        decode(line)


def _environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def test_a_worker_that_does_not_answer_times_out_and_one_that_dies_is_gone():
    with channel.WorkerProcess(_environment()) as worker:
        started = time.monotonic()
        with pytest.raises(channel.WorkerTimeout):
            worker.receive(time.monotonic() + 0.3)  # an idle worker says nothing
        assert time.monotonic() - started < 5
        os.kill(worker.proc.pid, signal.SIGKILL)
        with pytest.raises(channel.WorkerGone):
            worker.receive(time.monotonic() + 30)
        assert worker.exit_description() == "the worker was killed by signal SIGKILL"


def test_a_worker_stops_on_exit_and_the_check_can_stop_the_wait():
    class Stop(Exception):
        pass

    def check():
        raise Stop()

    worker = channel.WorkerProcess(_environment(), check=check)
    with pytest.raises(Stop), worker:  # an exception inside: the worker is killed
        worker.receive(time.monotonic() + 30)
    assert worker.proc.returncode == -signal.SIGKILL
    with channel.WorkerProcess(_environment()) as worker:
        worker.send(channel.Exit())
        assert worker.proc.wait(timeout=30) == 0
        assert worker.exit_description() == "the worker exited with code 0"


def test_an_answer_of_another_kind_than_expected_fails_clearly():
    with channel.WorkerProcess(_environment()) as worker:
        # two events already read from the pipe, as they would be in one chunk
        worker.buffer = (channel.encode(channel.Warmed(1.0, None)) + "\n").encode() * 2
        assert worker.receive(time.monotonic() + 5) == channel.Warmed(1.0, None)  # nothing expected: any
        with pytest.raises(channel.ProtocolError, match="the worker answered 'warmed' where loaded or load_failed"):
            worker.receive(time.monotonic() + 5, channel.Loaded, channel.LoadFailed)

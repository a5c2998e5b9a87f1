"""Energy accounting (infpop.measure.energy). No GPU here: the accounting is tested against a fake NVML
that isolates it (counters we set, a clock we set), the CPU path and a machine without NVML for
real. What a GPU's counters really give is not tested on these machines."""

from __future__ import annotations

import math

import pytest

from infpop.measure.energy import CPU_REASON, EnergyMeter, energy_record, unavailable


class FakeNVML:
    """The few pynvml calls the meter makes, over devices whose counters (mJ) we script."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self, devices):
        # devices: NVML index -> (name, uuid, [counter readings in mJ], counter supported)
        self.devices = devices
        self.readings = {index: iter(readings) for index, (_, _, readings, _) in devices.items()}

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        if index not in self.devices:
            raise self.NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return next(i for i, d in self.devices.items() if d[1] == uuid)

    def nvmlDeviceGetIndex(self, handle):
        return handle

    def nvmlDeviceGetName(self, handle):
        return self.devices[handle][0].encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle):
        return self.devices[handle][1]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.devices[handle][3]:
            raise self.NVMLError_NotSupported("Not Supported")
        return next(self.readings[handle])


class Clock:
    def __init__(self, *times):
        self.times = iter(times)

    def __call__(self):
        return next(self.times)


def test_the_accounting_of_a_trial_over_two_gpus():
    """Isolates the accounting: two GPUs whose counters advance by 1,500 J and 500 J over a
    10 s trial that generated 4,000 tokens."""
    nvml = FakeNVML(
        {
            0: ("NVIDIA H100", "GPU-a", [1_000, 1_000, 1_501_000], True),
            1: ("NVIDIA H100", "GPU-b", [7_000, 7_000, 507_000], True),
        }
    )
    meter = EnergyMeter.open("cuda", nvml=nvml, cuda_uuids=["GPU-a", "GPU-b"])  # reads each counter once
    meter.clock = Clock(100.0, 110.0)
    meter.start()
    record = meter.stop(4000)
    assert record == {
        "joules": 2000.0,
        "average_power_w": 200.0,
        "tokens_per_joule": 2.0,
        "seconds": 10.0,
        "source": "nvml",
        "devices": [
            {"index": 0, "name": "NVIDIA H100", "uuid": "GPU-a", "joules": 1500.0},
            {"index": 1, "name": "NVIDIA H100", "uuid": "GPU-b", "joules": 500.0},
        ],
        "reason": None,
    }


def test_gpus_are_matched_to_their_counters_by_uuid_in_cudas_order():
    nvml = FakeNVML(
        {0: ("A", "GPU-x", [0, 0, 0], True), 1: ("B", "GPU-y", [0, 0, 0], True), 2: ("C", "GPU-z", [0, 0, 0], True)}
    )
    meter = EnergyMeter.open("cuda", nvml=nvml, cuda_uuids=["GPU-z", "GPU-x"])
    assert [(d.index, d.name) for d in meter.devices] == [(2, "C"), (0, "A")]
    # without torch's UUIDs: CUDA_VISIBLE_DEVICES's indices (or UUIDs), else every device
    assert [d.index for d in EnergyMeter.open("cuda", nvml=nvml, cuda_uuids=[], visible="2,GPU-y").devices] == [2, 1]
    assert [d.index for d in EnergyMeter.open("cuda", nvml=nvml, cuda_uuids=[], visible="").devices] == [0, 1, 2]


def test_no_reading_says_why():
    old_gpu = FakeNVML({0: ("Tesla P100", "GPU-p", [], False)})
    assert EnergyMeter.open("cuda", nvml=old_gpu, cuda_uuids=["GPU-p"]).stop(10) == unavailable(
        "GPU 0 (Tesla P100) has no NVML energy counter (Volta or newer has)"
    )
    # a trial shorter than the counters' update interval: no reading rather than 0 J
    still = energy_record([], [5], [5], 0.01, 10)
    assert still["joules"] is None and still["tokens_per_joule"] is None and "did not advance" in still["reason"]


def test_the_cpu_has_no_energy_counters_for_real():
    record = EnergyMeter.open("cpu").stop(100)
    assert record == {
        **dict.fromkeys(("joules", "average_power_w", "tokens_per_joule", "seconds", "source")),
        "devices": [],
        "reason": CPU_REASON,
    }
    assert record["reason"] == "no NVIDIA GPU: NVML energy counters are not available on the CPU"


def test_a_gpu_sweep_on_a_machine_without_the_nvidia_driver_says_nvml_did_not_start():
    """The real pynvml (nvidia-ml-py) on these machines, which have no NVIDIA driver."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pytest.skip("this machine has NVML (an NVIDIA driver)")
    record = EnergyMeter.open("cuda", cuda_uuids=[]).stop(100)
    assert record["joules"] is None
    assert record["reason"].startswith("NVML did not start (") and record["reason"].endswith("): no energy counters")


# ----------------------------------------------------------------------------- in the analyses


def _selected(rows):
    import pandas as pd

    from infpop.analysis.selection import AnalysisSettings, select

    columns = [
        "hardware",
        "engine",
        "model",
        "n_gpus",
        "batch_size",
        "max_new_tokens",
        "rep",
        "status",
        "throughput_tokens_per_s",
        "tokens_per_joule",
    ]
    return select(pd.DataFrame(rows, columns=columns), AnalysisSettings())


ENERGY_TRIALS = [
    # hardware, engine, model, n_gpus, batch, tokens, rep, status, throughput, tokens per joule
    ("h100", "hf", "m", 1, 1, 5, 0, "ok", 10.0, 0.05),
    ("h100", "hf", "m", 2, 1, 5, 0, "ok", 12.0, 0.03),  # hf's best GPU count: 2
    ("h100", "vllm", "m", 1, 1, 5, 0, "ok", 40.0, 0.4),  # vLLM's best: 1
    ("h100", "vllm", "m", 2, 1, 5, 0, "ok", 30.0, None),  # no reading at hf's best count
    ("h100", "hf", "m", 1, 4, 5, 0, "ok", 30.0, 0.2),
    ("h100", "hf", "m", 2, 4, 5, 0, "ok", 35.0, 0.1),
    ("cpu", "hf", "m", 1, 1, 5, 0, "ok", 5.0, None),  # the CPU: no counters
    ("cpu", "hf", "m", 1, 4, 5, 0, "ok", 9.0, None),
]


def test_table2_gives_tokens_per_joule_at_the_same_configurations():
    from infpop.analysis import rq2

    table = rq2.table2(_selected(ENERGY_TRIALS), "h100").set_index("model")
    assert table.loc["m", "hf_best_gpus"] == 2 and table.loc["m", "hf_best_tokens_per_joule"] == 0.03
    assert table.loc["m", "vllm_best_tokens_per_joule"] == 0.4
    assert math.isnan(table.loc["m", "vllm_same_gpus_tokens_per_joule"])
    assert table.loc["m", "energy_note"] == "no energy reading for vLLM same GPUs" and table.loc["m", "note"] == ""
    text = rq2.table2_markdown(table.reset_index())
    assert "| m | 0.030 | – | 0.400 |" in text
    cpu = rq2.table2(_selected(ENERGY_TRIALS), "cpu")
    assert cpu[["hf_best_tokens_per_joule", "vllm_best_tokens_per_joule"]].isna().all().all()
    assert cpu["energy_note"].tolist() == [rq2.ENERGY_NOT_MEASURED]
    assert f"Tokens per joule: {rq2.ENERGY_NOT_MEASURED}." in rq2.table2_markdown(cpu)


def test_a_tokens_per_joule_landscape_only_where_a_trial_has_energy(tmp_path):
    from infpop.analysis import rq1

    written = rq1.write_landscapes(_selected(ENERGY_TRIALS), tmp_path, formats=("png",))
    assert sorted(p.name for p in written) == [
        "cpu_hf_m.png",
        "h100_hf_m.png",
        "h100_hf_m_tokens_per_joule.png",
        "h100_vllm_m.png",
        "h100_vllm_m_tokens_per_joule.png",
    ]
    assert all(p.stat().st_size > 1000 for p in written)

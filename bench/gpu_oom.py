"""GPU check of the hf engine: a sweep on CUDA up to an out-of-memory batch size.

Builds a Llama large enough to run out of memory at a large batch (random fp16 weights made on
the GPU, the tiny model's tokenizer), then runs one real sweep through the supervisor (hardware
kind gpu, engine hf, device_map="auto") and prints each trial's status, throughput and CUDA peak
memory, with the environment the worker saw.

    python bench/gpu_oom.py --out /tmp/gpu_oom            # on a GPU machine
    python bench/gpu_oom.py --out /tmp/smoke --cpu-smoke  # the same code path, tiny, on the CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infpop.config import load_config  # noqa: E402
from infpop.data.benchmark import derive_single_line_infilling, write_jsonl_gz  # noqa: E402
from infpop.data.tiny_model import build_tiny_model, read_benchmark_texts  # noqa: E402
from infpop.logs import setup  # noqa: E402
from infpop.measure import records  # noqa: E402
from infpop.measure.grid import Sweep, trial_keys  # noqa: E402
from infpop.measure.sweep import run_sweep  # noqa: E402


def build_large_model(out: Path, texts: list[str], hidden: int, layers: int, heads: int, device: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    build_tiny_model(out, texts)  # the tokenizer (and a tiny model, replaced below)
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.float16 if device == "cuda" else torch.float32)
    model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    print(f"model: {params / 1e9:.2f} B parameters, hidden {hidden}, {layers} layers -> {out}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--batch-sizes", default="1,8,32,128,512,1028")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, to test this script")
    args = parser.parse_args()
    setup()  # the sweep's progress on stderr
    if args.cpu_smoke:
        args.hidden, args.layers, args.heads, args.limit = 128, 2, 2, 16
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = args.out / "humaneval_single_line_infilling.jsonl.gz"
    shipped = REPO / "resources" / "data" / bench.name
    if shipped.exists():
        bench.write_bytes(shipped.read_bytes())
    else:
        write_jsonl_gz(derive_single_line_infilling(), bench)
    model_dir = args.out / "large-llama"
    device = "cpu" if args.cpu_smoke else "cuda"
    build_large_model(model_dir, read_benchmark_texts(bench), args.hidden, args.layers, args.heads, device)

    hardware = {"cpu": {"kind": "cpu"}} if args.cpu_smoke else {"h100": {"kind": "gpu", "gpus_per_node": 1}}
    config = load_config(
        {
            "models": {"large-llama": {"path": str(model_dir)}},
            "engines": ["hf"],
            "hardware": hardware,
            "n_gpus": [1],
            "batch_sizes": [int(b) for b in args.batch_sizes.split(",")],
            "max_new_tokens": [5],
            "dtype": "float32" if args.cpu_smoke else "float16",
            "benchmark": {"limit": args.limit},
            "trial_timeout_s": 240,
            "load_timeout_s": 300,
            "oom_pruning": True,
        }
    )
    sweep = Sweep(next(iter(hardware)), "hf", "large-llama", 1)
    with open(args.out / "worker.log", "w") as worker_log:
        summary = run_sweep(
            config,
            sweep,
            args.out / "trials",
            bench,
            worker_stderr=worker_log,
        )

    print("\nbatch  status        tok/s   batches  peak_mem_GiB  error")
    environment, memory_kind = None, None
    for key in trial_keys(config):
        record = records.read(args.out / "trials" / key.relpath)
        environment = environment or record["environment"]
        memory_kind = memory_kind or record["peak_memory"]["kind"]
        peak = record["peak_memory"]["bytes"]
        rate = record["throughput_tokens_per_s"]
        print(
            f"{key.batch_size:>5}  {record['status']:<11} {rate or 0:>8.1f}  "
            f"{record['counts']['batches_completed']:>3}/{record['counts']['batches']:<3}  "
            f"{(peak or 0) / 2**30:>12.2f}  {(record['error'] or '').splitlines()[0][:90] if record['error'] else ''}"
        )
    print(
        f"\nmemory kind: {memory_kind}; model loads: {summary['model_loads']}; "
        f"load {summary['load_seconds']}; harness overhead {summary['harness_overhead']:.3f}"
    )
    env = {k: environment[k] for k in ("gpus", "driver", "cuda", "python", "libraries", "cpu")} if environment else {}
    print("environment:", json.dumps(env))
    print(f"total wall {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()

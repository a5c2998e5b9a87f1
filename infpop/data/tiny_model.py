"""Build a tiny, randomly initialised Llama model and its tokenizer, fully offline.

The pipeline needs *some* causal LM to drive the HF and vLLM engines on machines
without access to a model hub.  This module trains a byte-level BPE tokenizer on
the benchmark text and pairs it with a seeded, randomly initialised
``LlamaForCausalLM`` small enough (a few hundred thousand parameters by default)
to load in about a second and generate quickly on a CPU.  Its completions are
nonsense, but its shapes, tokenizer and generation behaviour are those of a real
Llama checkpoint, which is all a throughput measurement needs.

The build is deterministic: the same texts, seed and sizes give byte-identical
files, so the Snakemake rule that produces the model is reproducible.

CLI::

    python -m infpop.data.tiny_model --out resources/models/tiny-llama \
        --benchmark resources/HumanEval.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from infpop.data.model_folder import count_parameters, save_model_folder

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
#: Special tokens in id order: <s>=0, </s>=1, <pad>=2, <unk>=3.
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN)


def _train_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """Train a byte-level BPE tokenizer and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    # No prefix space: decode(encode(x)) must give back x exactly.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        # Every byte is in the vocabulary, so no text ever needs <unk>.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos_id = tok.token_to_id(BOS_TOKEN)
    # Llama convention: prepend <s> to every sequence (single or pair).
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        truncation_side="left",
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )


def _build_model(
    tokenizer,
    seed: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    max_position_embeddings: int,
):
    """A seeded random ``LlamaForCausalLM`` whose special ids match ``tokenizer``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        dtype="float32",
        architectures=["LlamaForCausalLM"],
        **ids,
    )
    # Seed a private copy of the RNG state so the caller's global RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(torch.float32).eval()
    model.generation_config = GenerationConfig(**ids)
    return model


def build_tiny_model(
    out_dir: Path,
    texts: list[str],
    seed: int = 0,
    vocab_size: int = 1024,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 256,
    max_position_embeddings: int = 2048,
) -> Path:
    """Train a tokenizer on ``texts``, build a seeded random Llama, save both to ``out_dir``.

    Saved by :func:`infpop.data.model_folder.save_model_folder` (written beside ``out_dir``,
    renamed into place; an existing ``out_dir`` is replaced).  Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("build_tiny_model needs at least one non-empty training text")

    tokenizer = _train_tokenizer(texts, vocab_size, max_position_embeddings)
    model = _build_model(
        tokenizer, seed, hidden_size, num_layers, num_heads, intermediate_size, max_position_embeddings
    )

    return save_model_folder(out_dir, model, tokenizer)


def read_benchmark_texts(path: Path) -> list[str]:
    """Training texts from a gzipped JSONL benchmark: ``prompt + canonical_solution`` per row."""
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            text = (row.get("prompt") or "") + (row.get("canonical_solution") or "")
            if text:
                texts.append(text)
    return texts


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output model folder")
    p.add_argument(
        "--benchmark", type=Path, required=True, help="gzipped JSONL with 'prompt' and 'canonical_solution' fields"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-heads", type=int, default=2)
    p.add_argument("--intermediate-size", type=int, default=256)
    p.add_argument("--max-position-embeddings", type=int, default=2048)
    args = p.parse_args(None if argv is None else list(argv))

    texts = read_benchmark_texts(args.benchmark)
    out = build_tiny_model(
        args.out,
        texts,
        seed=args.seed,
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings,
    )
    print(f"tiny model: {count_parameters(out):,} parameters, trained on {len(texts)} texts -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

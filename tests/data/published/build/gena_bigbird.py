"""Build the GENA-LM BigBird fixture: a tiny random ``BigBirdForPreTraining`` checkpoint.

Run with the throwaway transformers 4.x environment (never the project venv)::

    pip install --target /tmp/tf4-gena_bert 'transformers==4.28.1' 'numpy<2' \
        'huggingface_hub<0.20' 'tokenizers<0.14'
    PYTHONPATH=/tmp/tf4-gena_bert /work/main/.venv/bin/python \
        tests/data/published/build/gena_bigbird.py /work/shared/reference/published_checkpoints

``--compare`` instead loads the committed fixture under whatever transformers is importable and
prints max |logit difference| against the saved reference (used to check transformers 4.46,
which, unlike 4.28, draws no random blocks in eval mode).

GENA-LM BigBird (AIRI-Institute/gena-lm-bigbird-base-t2t) is transformers' own ``big_bird``
model trained as ``BigBirdForPreTraining``; its config is GENA_LM's
``data/configs/hf_bigbird_L12-H768-A12-V32k-L4096.json`` (commit 203841e), reproduced below in
its key order. Only size fields are shrunk, plus ``block_size`` so that a 1 kb sequence (about
140 tokens) is already above BigBird's block-sparse threshold of (5 + 2 x num_random_blocks) x
block_size = 88 tokens, while a 200 bp one (35 tokens) falls back to full attention.

Two 4.28 behaviours matter for the reference (both are transformers', not GENA's):
* ``BigBirdModel.forward`` switches the *model* to ``original_full`` for a short input and never
  switches back, so every sequence here runs on a freshly loaded model.
* Up to 4.29, block-sparse attention seeds numpy with the layer index and draws its "random"
  blocks in eval mode too (the same blocks as in training); 4.30+ and 5.x draw none in eval.
  The reference for the long sequences is therefore saved two ways: 4.28 eval (what GENA's
  authors ran) and 4.28 with ``attention_type="original_full"``; the build also checks that
  4.28 in train mode with all dropout at 0 is bit-identical to 4.28 eval (the random blocks
  are the training ones), which is how transformers 5 reproduces it (``--compare``: "train").
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE.parent
REPO = HERE.parents[3]
FASTA = REPO / "data" / "demo_chr20_hnf4a" / "chr20_42000001_44000000.fa.gz"
FAMILY = "gena_bigbird"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
#: AIRI-Institute/GENA_LM@203841ebfb7b9c3aa2f4d3a8b5922dd7d21acac7
#: data/configs/hf_bigbird_L12-H768-A12-V32k-L4096.json, key order kept
PUBLISHED_CONFIG = """{
    "architectures": ["BigBirdForPreTraining"], "attention_probs_dropout_prob": 0.1,
    "attention_type": "block_sparse", "block_size": 64, "num_random_blocks": 3,
    "gradient_checkpointing": false, "hidden_act": "gelu_new", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-12, "max_position_embeddings": 4096, "model_type": "big_bird",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 3,
    "position_embedding_type": "absolute", "rescale_embeddings": false,
    "transformers_version": "4.4.0.dev0", "type_vocab_size": 2, "use_bias": true,
    "use_cache": true, "vocab_size": 32000}"""
#: the only config fields changed (sizes, and block_size for short block-sparse inputs)
SIZES = {"block_size": 8, "hidden_size": 32, "intermediate_size": 64,
         "max_position_embeddings": 512, "num_attention_heads": 4, "num_hidden_layers": 2}
#: (name, 0-based offset into the slice, length); short -> full attention, others block-sparse
SEQUENCES = (("short", 100_000, 200), ("long", 1_000_000, 1000), ("long2k", 1_200_000, 2000))
SPARSE = ("long", "long2k")
SEED = 20240615


def read_slice() -> str:
    with gzip.open(FASTA, "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Seeded random weights everywhere, LayerNorms included (not 1/0)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "LayerNorm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.1 * noise)


def summary(logits: torch.Tensor, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits at ``cols`` and the full-vocabulary log-sum-exp, per position (float32)."""
    lse = torch.logsumexp(logits.double(), dim=-1).float().numpy()
    return logits[:, cols].float().numpy(), lse


def run(fixture: Path, ids: list[int], *, mode: str, masked_lm: bool = False
        ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """MLM logits and last hidden state from a freshly loaded model (see the module doc)."""
    from transformers import BigBirdForMaskedLM, BigBirdForPreTraining

    kwargs = {"attention_type": "original_full"} if mode == "full" else {}
    if mode == "train":
        kwargs.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cls = BigBirdForMaskedLM if masked_lm else BigBirdForPreTraining
    model = cls.from_pretrained(str(fixture), **kwargs)
    model.train(mode == "train")
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, return_dict=True)
    logits = out.logits if masked_lm else out.prediction_logits
    return logits[0], out.hidden_states[-1][0], model.bert.attention_type


def compare() -> None:
    """Print max |diff| of the current transformers against the saved 4.28 reference."""
    import transformers

    ref = np.load(OUT / f"{FAMILY}.reference.npz")
    cols = ref["cols"]
    print(f"transformers {transformers.__version__}")
    for name, *_ in SEQUENCES:
        ids = ref[f"{name}_input_ids"].tolist()
        for mode in ("eval", "full", "train"):
            key = {"eval": name, "full": f"{name}_full", "train": name}[mode]
            if f"{key}_logits" not in ref:
                continue
            logits, _, kind = run(OUT / FAMILY, ids, mode=mode, masked_lm=True)
            sub, lse = summary(logits, cols)
            print(f"{name} {mode} ({kind}): max|dlogit| "
                  f"{np.abs(sub - ref[f'{key}_logits']).max():.3g}, "
                  f"max|dlse| {np.abs(lse - ref[f'{key}_lse']).max():.3g}")


def build(reference: Path) -> None:
    import transformers
    from transformers import BigBirdConfig, BigBirdForPreTraining, PreTrainedTokenizerFast

    tokenizer_dir = reference / "gena_hf" if (reference / "gena_hf").is_dir() else reference
    fixture = OUT / FAMILY
    if fixture.exists():
        shutil.rmtree(fixture)
    fixture.mkdir(parents=True)
    raw = json.loads(PUBLISHED_CONFIG)
    for key, value in SIZES.items():
        if key not in raw:
            raise SystemExit(f"published config has no {key}")
        raw[key] = value
    (fixture / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, fixture / name)

    generator = torch.Generator().manual_seed(SEED)
    model = BigBirdForPreTraining(BigBirdConfig.from_pretrained(str(fixture)))
    randomize(model, generator)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=False)
        shutil.copyfile(Path(tmp) / "pytorch_model.bin", fixture / "pytorch_model.bin")

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(fixture))
    genome = read_slice()
    ids = {name: tokenizer(genome[start : start + n])["input_ids"]
           for name, start, n in SEQUENCES}
    rng = np.random.default_rng(SEED)
    used = np.unique(np.concatenate([np.asarray(v) for v in ids.values()]))
    cols = np.unique(np.concatenate([np.arange(6), used,
                                     rng.choice(raw["vocab_size"], 256, False)]))
    arrays: dict[str, np.ndarray] = {"cols": cols.astype(np.int64),
                                     "names": np.array([s[0] for s in SEQUENCES])}
    kinds = {}
    for name, start, n in SEQUENCES:
        arrays[f"{name}_input_ids"] = np.asarray(ids[name], dtype=np.int64)
        arrays[f"{name}_region"] = np.array([start, start + n], dtype=np.int64)
        logits, hidden, kinds[name] = run(fixture, ids[name], mode="eval")
        again, _, _ = run(fixture, ids[name], mode="eval")
        if not torch.equal(logits, again):
            raise SystemExit(f"{name}: 4.x eval is not deterministic")
        arrays[f"{name}_logits"], arrays[f"{name}_lse"] = summary(logits, cols)
        arrays[f"{name}_last_hidden"] = hidden.float().numpy()
        if name in SPARSE:
            train, _, kinds[f"{name}_train"] = run(fixture, ids[name], mode="train")
            # not saved: it must be bit-identical to eval (the random blocks are the training ones)
            if not torch.equal(train, logits):
                raise SystemExit(f"{name}: 4.x train mode (no dropout) differs from eval")
            logits, hidden, kinds[f"{name}_full"] = run(fixture, ids[name], mode="full")
            arrays[f"{name}_full_logits"], arrays[f"{name}_full_lse"] = summary(logits, cols)
            arrays[f"{name}_full_last_hidden"] = hidden.float().numpy()
    np.savez_compressed(OUT / f"{FAMILY}.reference.npz", **arrays)

    keys = sorted(torch.load(fixture / "pytorch_model.bin", weights_only=True))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print("state-dict keys:", ", ".join(keys))
    print("attention used:", kinds)
    for name in SPARSE:
        f = np.abs(arrays[f"{name}_logits"] - arrays[f"{name}_full_logits"]).max()
        print(f"{name}: 4.x eval == train (no dropout); eval vs original_full {f:.3g}")
    for path in sorted(fixture.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")
    print({name: len(v) for name, v in ids.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, nargs="?",
                        help="shared published_checkpoints folder (tokenizer files)")
    parser.add_argument("--compare", action="store_true",
                        help="compare the current transformers with the saved reference")
    args = parser.parse_args()
    if args.compare:
        compare()
    elif args.reference is None:
        parser.error("the reference folder is required to build")
    else:
        build(args.reference)


if __name__ == "__main__":
    main()

"""Build the DNABERT-2 fixture: a tiny random checkpoint written by the authors' own code.

Run it in a throwaway environment that has the transformers 4.x the authors' code was written
for (never in dnalm's venv; torch comes from the venv)::

    /work/main/.venv/bin/python -m pip install --no-deps --target /tmp/tf4-dnabert2 \
        transformers==4.28.1 tokenizers==0.13.3 huggingface-hub==0.16.4 einops==0.8.0
    PYTHONPATH=/tmp/tf4-dnabert2 /work/main/.venv/bin/python \
        tests/data/published/build/dnabert2.py /work/shared/reference/published_checkpoints

The argument is the shared reference folder (its ``dnabert2_hf/`` holds the files published in
the Hugging Face repository zhihan1996/DNABERT-2-117M). The authors' modelling files are
imported from a temporary copy and never written into the repository. Triton is made
unimportable, so the authors' attention runs its PyTorch fallback (their Triton kernel casts to
fp16 and is GPU-only); the script checks that it did.

Writes, next to this folder's parent:

* ``dnabert2/``: config.json (the published one, only size fields changed, text otherwise
  byte-identical), generation_config.json / tokenizer.json / tokenizer_config.json / LICENSE
  (byte-identical copies), pytorch_model.bin (``BertForMaskedLM.save_pretrained``).
* ``dnabert2.reference.npz``: per sequence the authors' tokenizer ids, MLM logits, every
  layer's hidden states, and the logits of the authors' ``BertForSequenceClassification`` on the
  same weights with a seeded pooler + classifier (whose weights are stored too); ALiBi slopes
  of the authors' code for 1..16 heads; a padded batch through the authors' unpadded path.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SEED = 20240514
#: Size fields of the published config.json and the fixture's values. 12 heads (as published)
#: exercise the authors' slope rule for a head count that is not a power of two.
SIZES = {
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 12,
    "intermediate_size": 96,
    # the initial ALiBi table; every sequence but the shortest makes the authors' code grow it
    "alibi_starting_size": 16,
}
AUTHOR_FILES = ("bert_layers.py", "bert_padding.py", "configuration_bert.py",
                "flash_attn_triton.py")
COPIED = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "LICENSE")
#: (name, 0-based start in the demo FASTA record, length, edit). Edits are documented in
#: dnabert2.md: the demo slice has no N and no soft-masked (lowercase) bases.
SEQUENCES = (
    ("s60", 100_000, 60, None),            # 14 tokens: within the initial ALiBi table
    ("s200", 250_000, 200, None),
    ("s500_n", 500_000, 500, "N@250"),     # one base replaced by N
    ("s1000", 1_000_000, 1000, None),
)
#: Logits of the 1000 bp sequence are kept at every 8th token and the last one (4096 floats
#: per position; full logits would make the fixture too large). Hidden states are kept at all.
LOGIT_STRIDE_LONG = 8
NUM_LABELS = 3


def shrink_config(text: str) -> str:
    """The published config.json with only the size values replaced (text kept otherwise)."""
    for key, value in SIZES.items():
        text, n = re.subn(rf'("{key}":\s*)\d+', rf"\g<1>{value}", text)
        if n != 1:
            raise SystemExit(f"config.json: {key} found {n} times")
    return text


def import_authors(src: Path, work: Path):
    """Import the authors' modelling files as a package from a temporary copy."""
    sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
    sys.modules["triton.language"] = None  # type: ignore[assignment]
    pkg = work / "dnabert2_authors"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in AUTHOR_FILES:
        shutil.copyfile(src / name, pkg / name)
    sys.path.insert(0, str(work))
    layers = importlib.import_module("dnabert2_authors.bert_layers")
    config_mod = importlib.import_module("dnabert2_authors.configuration_bert")
    if layers.flash_attn_qkvpacked_func is not None:
        raise SystemExit("triton was importable: the authors' code would not use PyTorch")
    return layers, config_mod


def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Seeded random weights everywhere, LayerNorms included (so a mis-mapped norm shows)."""
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith(("LayerNorm.weight", "layernorm.weight")):
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.1 * noise)


def read_demo(fasta: Path) -> str:
    with gzip.open(fasta, "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))


def edit(seq: str, rule: str | None) -> str:
    if rule is None:
        return seq
    base, pos = rule.split("@")
    i = int(pos)
    return seq[:i] + base + seq[i + 1:]


def alibi_slopes(layers, config_cls, n_heads: int) -> np.ndarray:
    """Slopes the authors' encoder builds for ``n_heads`` (read back from its ALiBi table)."""
    cfg = config_cls(hidden_size=2 * n_heads, num_attention_heads=n_heads,
                     num_hidden_layers=1, intermediate_size=4, alibi_starting_size=4,
                     vocab_size=8, layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                     hidden_act="gelu", type_vocab_size=2, max_position_embeddings=4)
    encoder = layers.BertEncoder(cfg)
    return (-encoder.alibi[0, :, 0, 1]).numpy().astype(np.float32)


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="shared published_checkpoints folder")
    parser.add_argument("--out", type=Path, default=here.parent, help="tests/data/published")
    parser.add_argument("--fasta", type=Path, default=here.parents[3] / "data"
                        / "demo_chr20_hnf4a" / "chr20_42000001_44000000.fa.gz")
    args = parser.parse_args()
    src = args.reference / "dnabert2_hf"
    out_dir = args.out / "dnabert2"

    import transformers
    from transformers import PreTrainedTokenizerFast

    print("transformers", transformers.__version__, "torch", torch.__version__)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        layers, config_mod = import_authors(src, work)
        config_text = shrink_config((src / "config.json").read_text())
        (work / "config.json").write_text(config_text)
        config = config_mod.BertConfig.from_pretrained(str(work))

        model = layers.BertForMaskedLM(config)
        randomise(model, generator)
        model.eval()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        model.save_pretrained(str(out_dir), safe_serialization=False)
        # the directory as published: the published config text, not the re-serialised one
        (out_dir / "config.json").write_text(config_text)
        for name in COPIED:
            shutil.copyfile(src / name, out_dir / name)
        stray = sorted(p.name for p in out_dir.iterdir()
                       if p.name not in (*COPIED, "config.json", "pytorch_model.bin"))
        for name in stray:
            (out_dir / name).unlink()
        print("removed from save_pretrained output:", stray)
        saved = torch.load(out_dir / "pytorch_model.bin", weights_only=True)
        print("checkpoint keys:", len(saved))
        for key in saved:
            print("  ", key, tuple(saved[key].shape))

        # reload through the authors' loader: what a user of the published repo would run
        mlm = layers.BertForMaskedLM.from_pretrained(str(out_dir), config=config).eval()
        torch.manual_seed(SEED + 1)
        clf_config = config_mod.BertConfig.from_pretrained(str(work), num_labels=NUM_LABELS)
        clf, info = layers.BertForSequenceClassification.from_pretrained(
            str(out_dir), config=clf_config, output_loading_info=True)
        print("authors' classifier loading info:", info)
        head = {k: v for k, v in clf.state_dict().items()
                if k.startswith(("bert.pooler.", "classifier."))}
        with torch.no_grad():
            for value in head.values():
                value.copy_(0.1 * torch.randn(value.shape, generator=generator))
        clf.eval()

        tok = PreTrainedTokenizerFast.from_pretrained(str(src))
        demo = read_demo(args.fasta)
        arrays: dict[str, np.ndarray] = {}
        names = []
        for name, start, length, rule in SEQUENCES:
            seq = edit(demo[start:start + length], rule)
            enc = tok(seq, return_tensors="pt")
            ids = enc["input_ids"]
            mask = enc["attention_mask"]
            with torch.no_grad():
                logits = mlm(input_ids=ids, attention_mask=mask).logits[0]
                emb = mlm.bert.embeddings(ids, torch.zeros_like(ids), None)[0]
                layers_out, _ = mlm.bert(ids, attention_mask=mask,
                                         output_all_encoded_layers=True)
                cls_logits = clf(input_ids=ids, attention_mask=mask).logits[0]
            hidden = torch.stack([emb, *layers_out])  # (layers + 1, tokens, hidden)
            n_tok = ids.shape[1]
            if length >= 1000:
                positions = np.unique(np.r_[np.arange(0, n_tok, LOGIT_STRIDE_LONG), n_tok - 1])
            else:
                positions = np.arange(n_tok)
            arrays[f"{name}.sequence"] = np.array(seq)
            arrays[f"{name}.input_ids"] = ids[0].numpy().astype(np.int64)
            arrays[f"{name}.logit_positions"] = positions.astype(np.int64)
            arrays[f"{name}.logits"] = logits.numpy()[positions].astype(np.float32)
            arrays[f"{name}.hidden_states"] = hidden.numpy().astype(np.float32)
            arrays[f"{name}.cls_logits"] = cls_logits.numpy().astype(np.float32)
            grows = n_tok > config.alibi_starting_size
            print(f"{name}: {length} bp -> {n_tok} tokens, unk {int((ids == 0).sum())}, "
                  f"ALiBi table grows: {grows}")
            names.append(name)
        arrays["names"] = np.array(names)
        for key, value in head.items():
            arrays[f"cls_head.{key}"] = value.numpy().astype(np.float32)
        arrays["cls_num_labels"] = np.array(NUM_LABELS)
        for n in range(1, 17):
            arrays[f"alibi_slopes.{n}"] = alibi_slopes(layers, config_mod.BertConfig, n)

        # a right-padded batch through the authors' unpadded attention
        batch = tok([edit(demo[s:s + n], r) for _, s, n, r in SEQUENCES[:3]], padding=True,
                    return_tensors="pt")
        with torch.no_grad():
            last, _ = mlm.bert(batch["input_ids"], attention_mask=batch["attention_mask"])
        arrays["batch.input_ids"] = batch["input_ids"].numpy().astype(np.int64)
        arrays["batch.attention_mask"] = batch["attention_mask"].numpy().astype(np.int64)
        arrays["batch.last_hidden_state"] = last.numpy().astype(np.float32)

    np.savez_compressed(args.out / "dnabert2.reference.npz", **arrays)
    for path in sorted([*out_dir.iterdir(), args.out / "dnabert2.reference.npz"]):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path.relative_to(args.out)}  {path.stat().st_size} bytes  sha256 {digest}")


if __name__ == "__main__":
    main()

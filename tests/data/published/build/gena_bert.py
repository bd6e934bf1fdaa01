"""Build the GENA-LM BERT fixture: a tiny random-weight checkpoint written by the authors' code.

Run with the throwaway transformers 4.x environment (never the project venv)::

    pip install --target /tmp/tf4-gena_bert 'transformers==4.28.1' 'numpy<2' \
        'huggingface_hub<0.20' 'tokenizers<0.14'
    PYTHONPATH=/tmp/tf4-gena_bert /work/main/.venv/bin/python \
        tests/data/published/build/gena_bert.py /work/shared/reference/published_checkpoints

It writes ``tests/data/published/gena_bert/`` (the published directory layout: config.json with
only the size fields shrunk, the tokenizer files byte-identical, ``pytorch_model.bin`` saved by
GENA's ``BertForMaskedLM.save_pretrained``) and ``tests/data/published/gena_bert.reference.npz``
(input ids, reference logits, last hidden states). The authors' ``modeling_bert.py`` is imported
from the reference folder and run here; it is not copied into the fixture.

Logits of a 32,000-token vocabulary at every position would be ~15 MB, so the reference keeps,
per sequence, the logits at a fixed set of vocabulary columns (``cols``: the special tokens, every
token id of the inputs, 256 seeded random ids) plus the log-sum-exp over the *full* vocabulary at
each position (any wrong column anywhere changes it) and the full last hidden state.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE.parent
REPO = HERE.parents[3]
FASTA = REPO / "data" / "demo_chr20_hnf4a" / "chr20_42000001_44000000.fa.gz"
FAMILY = "gena_bert"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
#: the only config fields changed from the published file (sizes)
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64}
#: (name, 0-based offset into the slice, length, position replaced by N or None)
SEQUENCES = (("s200", 100_000, 200, None), ("s500_n", 500_000, 500, 250),
             ("s1000", 1_000_000, 1000, None))
SEED = 20240614


def reference_dir(root: Path) -> Path:
    """The ``gena_hf`` folder, given it or the ``published_checkpoints`` folder above it."""
    return root / "gena_hf" if (root / "gena_hf").is_dir() else root


def read_slice() -> str:
    with gzip.open(FASTA, "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Seeded random weights everywhere, LayerNorms included (not 1/0), so that a missing or
    mis-mapped LayerNorm or bias shows in the logits."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_norm = "LayerNorm" in name or "_ln" in name
            if is_norm and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                param.copy_(0.1 * noise)
            else:
                param.copy_(0.1 * noise)


def summary(logits: torch.Tensor, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits at ``cols`` and the full-vocabulary log-sum-exp, per position (float32)."""
    lse = torch.logsumexp(logits.double(), dim=-1).float().numpy()
    return logits[:, cols].float().numpy(), lse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="shared published_checkpoints folder")
    args = parser.parse_args()
    ref = reference_dir(args.reference)
    sys.path.insert(0, str(ref))
    import modeling_bert as gena  # the authors' file, run in the throwaway env only
    import transformers
    from transformers import BertConfig, PreTrainedTokenizerFast

    fixture = OUT / FAMILY
    if fixture.exists():
        shutil.rmtree(fixture)
    fixture.mkdir(parents=True)
    raw_text = (ref / "config.json").read_text()
    raw = json.loads(raw_text)
    for key, value in SIZES.items():
        if key not in raw:
            raise SystemExit(f"published config has no {key}")
        raw[key] = value
    (fixture / "config.json").write_text(json.dumps(raw, indent=2) + "\n" * raw_text.endswith("\n"))
    for name in TOKENIZER_FILES:
        shutil.copyfile(ref / name, fixture / name)

    generator = torch.Generator().manual_seed(SEED)
    config = BertConfig.from_pretrained(str(fixture))
    model = gena.BertForMaskedLM(config)
    randomize(model, generator)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=False)
        shutil.copyfile(Path(tmp) / "pytorch_model.bin", fixture / "pytorch_model.bin")

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(fixture))
    genome = read_slice()
    seqs: dict[str, str] = {}
    for name, start, length, n_at in SEQUENCES:
        seq = genome[start : start + length]
        if n_at is not None:
            seq = seq[:n_at] + "N" + seq[n_at + 1 :]
        seqs[name] = seq
    ids = {name: tokenizer(seq)["input_ids"] for name, seq in seqs.items()}
    rng = np.random.default_rng(SEED)
    special = np.arange(6)
    used = np.unique(np.concatenate([np.asarray(v) for v in ids.values()]))
    cols = np.unique(np.concatenate([special, used, rng.choice(raw["vocab_size"], 256, False)]))

    arrays: dict[str, np.ndarray] = {"cols": cols.astype(np.int64),
                                     "names": np.array([s[0] for s in SEQUENCES])}
    with torch.no_grad():
        for name, start, length, n_at in SEQUENCES:
            x = torch.tensor([ids[name]])
            out = model(input_ids=x, output_hidden_states=True, return_dict=True)
            sub, lse = summary(out.logits[0], cols)
            arrays[f"{name}_input_ids"] = np.asarray(ids[name], dtype=np.int64)
            arrays[f"{name}_logits"] = sub
            arrays[f"{name}_lse"] = lse
            arrays[f"{name}_last_hidden"] = out.hidden_states[-1][0].float().numpy()
            arrays[f"{name}_region"] = np.array([start, start + length, -1 if n_at is None
                                                 else n_at], dtype=np.int64)

        # last_layer_norm: true (gena-lm-bert-large-t2t, -base-lastln-t2t) on the same weights
        # plus a final LayerNorm; its weights travel in the npz, not in the fixture.
        lastln_config = BertConfig.from_pretrained(str(fixture), last_layer_norm=True)
        lastln = gena.BertForMaskedLM(lastln_config)
        missing, unexpected = lastln.load_state_dict(model.state_dict(), strict=False)
        if sorted(missing) != ["bert.encoder.last_layer_ln.bias",
                               "bert.encoder.last_layer_ln.weight"] or unexpected:
            raise SystemExit(f"unexpected lastln load: {missing} {unexpected}")
        ln = lastln.bert.encoder.last_layer_ln
        ln.weight.copy_(1.0 + 0.2 * torch.randn(ln.weight.shape, generator=generator))
        ln.bias.copy_(0.1 * torch.randn(ln.bias.shape, generator=generator))
        lastln.eval()
        x = torch.tensor([ids["s500_n"]])
        out = lastln(input_ids=x, output_hidden_states=True, return_dict=True)
        sub, lse = summary(out.logits[0], cols)
        arrays.update(lastln_weight=ln.weight.numpy().copy(), lastln_bias=ln.bias.numpy().copy(),
                      lastln_s500_n_logits=sub, lastln_s500_n_lse=lse,
                      lastln_s500_n_last_hidden=out.hidden_states[-1][0].numpy())

        # GENA's BertForSequenceClassification (pooler + classifier) on the same encoder
        classifier = gena.BertForSequenceClassification(
            BertConfig.from_pretrained(str(fixture), num_labels=3))
        missing, unexpected = classifier.load_state_dict(model.state_dict(), strict=False)
        new = sorted(missing)
        if new != ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias",
                   "classifier.weight"]:
            raise SystemExit(f"unexpected classifier load: {missing}")
        for key in new:
            param = classifier.get_parameter(key)
            param.copy_(0.1 * torch.randn(param.shape, generator=generator))
        classifier.eval()
        logits = classifier(input_ids=torch.tensor([ids["s1000"]])).logits
        for key in new:
            arrays["cls_" + key.replace(".", "_")] = classifier.get_parameter(key).numpy().copy()
        arrays["cls_s1000_logits"] = logits[0].numpy()

    np.savez_compressed(OUT / f"{FAMILY}.reference.npz", **arrays)
    keys = sorted(torch.load(fixture / "pytorch_model.bin", weights_only=True))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print("state-dict keys:", ", ".join(keys))
    for path in sorted(fixture.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")
    print({name: len(v) for name, v in ids.items()})


if __name__ == "__main__":
    main()

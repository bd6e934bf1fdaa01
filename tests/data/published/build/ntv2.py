"""Build the Nucleotide Transformer v2 fixture: a tiny checkpoint written by the authors' code.

Run in a throwaway environment with transformers 4.32 (the authors' ``modeling_esm.py`` imports
``find_pruneable_heads_and_indices`` from ``transformers.modeling_utils``), never in dnalm's venv::

    pip install --no-deps --target /tmp/tf4-ntv2 transformers==4.32.1 tokenizers==0.13.3 \
        huggingface-hub==0.16.4
    PYTHONPATH=/tmp/tf4-ntv2 .venv/bin/python tests/data/published/build/ntv2.py \
        /work/shared/reference/published_checkpoints tests/data/published

It writes ``<out>/ntv2/`` (published config.json with the size fields shrunk, the published
tokenizer files byte-identical, ``pytorch_model.bin`` saved by the authors' ``EsmForMaskedLM``)
and ``<out>/ntv2.reference.npz`` (token ids from the authors' ``EsmTokenizer``, the authors'
logits and last hidden state, plus a seeded sequence-classification head and its logits).
The authors' two ``.py`` files are imported from a temporary copy; none is written to ``<out>``.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SEED = 20240614
#: sizes shrunk from the published 500M config; every other key is kept as published
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64}
#: (name, 0-based start in the demo record, length, 0-based offsets set to N)
SEQUENCES = [("chr20:43000001-43000200", 1_000_000, 200, ()),
             ("chr20:43200001-43200500_N@251", 1_200_000, 500, (251,)),
             ("chr20:43500001-43501000", 1_500_000, 1000, ())]
#: logits are stored at every token of a sequence up to this many tokens, else at this many
#: evenly spaced positions (first and last included), to keep the fixture under 6 MB
MAX_LOGIT_ROWS = 100
NUM_LABELS = 3


def read_record(fasta: Path) -> str:
    """The single record of the demo FASTA, upper-case as stored (it has no N, no soft-mask)."""
    with gzip.open(fasta, "rt") as handle:
        lines = handle.read().splitlines()
    return "".join(line.strip() for line in lines if not line.startswith(">"))


def cut_sequences(record: str) -> list[tuple[str, str]]:
    out = []
    for name, start, length, n_at in SEQUENCES:
        seq = list(record[start : start + length])
        for i in n_at:
            seq[i] = "N"
        out.append((name, "".join(seq)))
    return out


def logit_positions(n_tokens: int) -> np.ndarray:
    if n_tokens <= MAX_LOGIT_ROWS:
        return np.arange(n_tokens)
    return np.unique(np.linspace(0, n_tokens - 1, MAX_LOGIT_ROWS).round().astype(np.int64))


def instadeep_kmer_ids(seq: str, vocab: dict[str, int], k: int = 6) -> list[int]:
    """NT's tokenization rule, written here from its description (split at N, k-mers from the
    left, single nucleotides for the remainder, N alone, <cls> first, no <eos>): an
    independent check of what EsmTokenizer's trie gives on the published vocab."""
    tokens = ["<cls>"]
    parts = seq.split("N")
    for i, part in enumerate(parts):
        full = len(part) // k * k
        tokens += [part[j : j + k] for j in range(0, full, k)] + list(part[full:])
        if i < len(parts) - 1:
            tokens.append("N")
    return [vocab[t] for t in tokens]


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter random, LayerNorm scales around 1 and all biases non-zero, so that a
    missing or mis-mapped weight of any kind changes the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("LayerNorm" in name or "layer_norm" in name) and \
                    name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)


def import_authors(reference: Path, tmp: Path):
    """The authors' esm_config.py / modeling_esm.py as a package in a temporary folder."""
    package = tmp / "ntv2_authors"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("esm_config.py", "modeling_esm.py"):
        shutil.copy(reference / "ntv2_hf" / name, package / name)
    sys.path.insert(0, str(tmp))
    return (importlib.import_module("ntv2_authors.esm_config"),
            importlib.import_module("ntv2_authors.modeling_esm"))


def write_config(src: Path, dst: Path) -> dict:
    """The published config.json with only SIZES changed (key order and layout kept)."""
    text = src.read_text()
    raw = json.loads(text)
    for key, value in SIZES.items():
        if key not in raw:
            raise SystemExit(f"published config has no {key}")
        raw[key] = value
    dst.write_text(json.dumps(raw, indent=2) + ("\n" if text.endswith("\n") else ""))
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="published_checkpoints folder")
    parser.add_argument("out", type=Path, help="tests/data/published")
    parser.add_argument("--fasta", type=Path, default=Path(__file__).resolve().parents[4]
                        / "data/demo_chr20_hnf4a/chr20_42000001_44000000.fa.gz")
    args = parser.parse_args()

    import transformers
    from transformers import AutoTokenizer

    src = args.reference / "ntv2_hf"
    fixture = args.out / "ntv2"
    if fixture.exists():
        shutil.rmtree(fixture)
    fixture.mkdir(parents=True)
    raw = write_config(src / "config.json", fixture / "config.json")
    for name in ("tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(src / name, fixture / name)
    shutil.copyfile(src / "special_tokens_map.fixed.json", fixture / "special_tokens_map.json")

    with tempfile.TemporaryDirectory() as tmp:
        esm_config, modeling_esm = import_authors(args.reference, Path(tmp))
        values = {k: v for k, v in raw.items() if k not in ("auto_map", "architectures")}
        config = esm_config.EsmConfig(**values)
        torch.manual_seed(SEED)
        model = modeling_esm.EsmForMaskedLM(config)
        generator = torch.Generator().manual_seed(SEED)
        randomize(model, generator)
        model.eval()
        save_dir = Path(tmp) / "saved"
        model.save_pretrained(save_dir, safe_serialization=False)
        shutil.copyfile(save_dir / "pytorch_model.bin", fixture / "pytorch_model.bin")
        state = torch.load(fixture / "pytorch_model.bin", weights_only=True)

        # classifier: the authors' EsmForSequenceClassification on the same encoder weights
        cls_config = esm_config.EsmConfig(**values, num_labels=NUM_LABELS)
        classifier = modeling_esm.EsmForSequenceClassification(cls_config)
        encoder_state = {k: v for k, v in state.items() if k.startswith("esm.")}
        missing, unexpected = classifier.load_state_dict(encoder_state, strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):
            raise SystemExit(f"classifier load: missing {missing}, unexpected {unexpected}")
        randomize(classifier.classifier, generator)
        classifier.eval()

        tokenizer = AutoTokenizer.from_pretrained(str(fixture))
        vocab = tokenizer.get_vocab()
        arrays: dict[str, np.ndarray] = {}
        names = []
        for i, (name, seq) in enumerate(cut_sequences(read_record(args.fasta))):
            ids = tokenizer(seq)["input_ids"]
            if ids != instadeep_kmer_ids(seq, vocab):
                raise SystemExit(f"{name}: EsmTokenizer ids differ from NT's k-mer rule")
            input_ids = torch.tensor([ids])
            with torch.no_grad():
                out = model(input_ids, output_hidden_states=True)
                cls_logits = classifier(input_ids).logits
            positions = logit_positions(len(ids))
            arrays[f"input_ids_{i}"] = np.asarray(ids, dtype=np.int64)
            arrays[f"positions_{i}"] = positions
            arrays[f"logits_{i}"] = out.logits[0, positions].numpy().astype(np.float32)
            arrays[f"last_hidden_state_{i}"] = out.hidden_states[-1][0].numpy()
            arrays[f"cls_logits_{i}"] = cls_logits[0].numpy()
            names.append(f"{name} len={len(seq)} tokens={len(ids)} sequence={seq}")
        for key, value in classifier.classifier.state_dict().items():
            arrays["classifier." + key] = value.numpy()
        arrays["names"] = np.asarray(names)
        arrays["transformers_version"] = np.asarray(transformers.__version__)
        np.savez_compressed(args.out / "ntv2.reference.npz", **arrays)
    print("state dict:", {k: tuple(v.shape) for k, v in state.items()})
    for name in names:
        print(name[:80])


if __name__ == "__main__":
    main()

"""Build the DNABERT (v1, 6-mer) fixture: a tiny ``BertForMaskedLM`` written by transformers 4.x.

DNABERT's own code is a fork of transformers 2.x; its ``BertForMaskedLM`` is the same
architecture as 4.x's (post-LayerNorm BERT, erf GELU, absolute positions, MLM head tied to the
word embeddings), so the weights are written by 4.32's ``BertForMaskedLM``. The published
bert-config-6 files (github jerryji1993/DNABERT, src/transformers/dnabert-config/bert-config-6)
are copied byte-identical, except config.json whose size fields are shrunk (it keeps having no
``model_type``, as published).

Input ids are made as DNABERT does (its ``seq2kmer`` then its ``DNATokenizer``): the sequence
as space-separated overlapping 6-mers, each looked up in vocab.txt as written (upper case;
DNATokenizer never lower-cases, whatever ``do_lower_case`` says), unknown k-mers (those with N)
-> ``[UNK]``, then ``[CLS] ... [SEP]``. Sequences stay under 510 k-mers: DNATokenizer splits
longer inputs into several ``[CLS] ... [SEP]`` pieces.

Run with the throwaway transformers 4.32 environment (see ntv2.py)::

    PYTHONPATH=/tmp/tf4-ntv2 .venv/bin/python tests/data/published/build/dnabert1.py \
        /work/shared/reference/published_checkpoints tests/data/published
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

SEED = 20240616
K = 6
SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
         "num_hidden_layers": 2}
SEQUENCES = [("chr20:43000001-43000200", 1_000_000, 200, ()),
             ("chr20:43200001-43200500_N@251", 1_200_000, 500, (251,)),
             ("chr20:43500001-43500514", 1_500_000, 514, ())]
#: logits stored at this many evenly spaced positions per sequence (fixture under 6 MB)
MAX_LOGIT_ROWS = 64
NUM_LABELS = 3


def read_record(fasta: Path) -> str:
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


def seq2kmer(seq: str, k: int = K) -> str:
    """DNABERT's input text: overlapping k-mers separated by spaces."""
    return " ".join(seq[i : i + k] for i in range(len(seq) - k + 1))


def dnabert_ids(kmer_text: str, vocab: dict[str, int]) -> list[int]:
    """What DNATokenizer gives for fewer than 510 k-mers: whitespace split, vocabulary lookup
    (unknown -> [UNK]), [CLS] first and [SEP] last."""
    kmers = kmer_text.split()
    if len(kmers) >= 510:
        raise SystemExit("DNATokenizer would split this input into pieces; keep it shorter")
    return [vocab["[CLS]"], *(vocab.get(t, vocab["[UNK]"]) for t in kmers), vocab["[SEP]"]]


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "LayerNorm" in name and name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="published_checkpoints folder")
    parser.add_argument("out", type=Path, help="tests/data/published")
    parser.add_argument("--fasta", type=Path, default=Path(__file__).resolve().parents[4]
                        / "data/demo_chr20_hnf4a/chr20_42000001_44000000.fa.gz")
    args = parser.parse_args()

    import transformers
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertForSequenceClassification,
        BertTokenizer,
    )

    src = args.reference / "dnabert1_github"
    fixture = args.out / "dnabert1"
    if fixture.exists():
        shutil.rmtree(fixture)
    fixture.mkdir(parents=True)
    text = (src / "config.json").read_text()
    raw = json.loads(text)
    for key, value in SIZES.items():
        raw[key] = value
    (fixture / "config.json").write_text(json.dumps(raw, indent=2)
                                         + ("\n" if text.endswith("\n") else ""))
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(src / name, fixture / name)

    config = BertConfig(**raw)
    torch.manual_seed(SEED)
    model = BertForMaskedLM(config)
    generator = torch.Generator().manual_seed(SEED)
    randomize(model, generator)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=False)
        shutil.copyfile(Path(tmp) / "pytorch_model.bin", fixture / "pytorch_model.bin")
    state = torch.load(fixture / "pytorch_model.bin", weights_only=True)

    classifier = BertForSequenceClassification(BertConfig(**raw, num_labels=NUM_LABELS))
    missing, unexpected = classifier.load_state_dict(
        {k: v for k, v in state.items() if k.startswith("bert.")}, strict=False)
    new = ("bert.pooler.", "classifier.")
    if unexpected or any(not k.startswith(new) for k in missing):
        raise SystemExit(f"classifier load: missing {missing}, unexpected {unexpected}")
    randomize(classifier.bert.pooler, generator)
    randomize(classifier.classifier, generator)
    classifier.eval()

    vocab = {line: i for i, line in enumerate((src / "vocab.txt").read_text().splitlines())}
    lower = BertTokenizer.from_pretrained(str(fixture))  # published do_lower_case: true
    cased = BertTokenizer.from_pretrained(str(fixture), do_lower_case=False)
    arrays: dict[str, np.ndarray] = {}
    names, notes = [], []
    for i, (name, seq) in enumerate(cut_sequences(read_record(args.fasta))):
        kmer_text = seq2kmer(seq)
        ids = dnabert_ids(kmer_text, vocab)
        if cased(kmer_text)["input_ids"] != ids:
            raise SystemExit(f"{name}: BertTokenizer(do_lower_case=False) differs from DNABERT")
        lowered = lower(kmer_text)["input_ids"]
        unk = sum(t == vocab["[UNK]"] for t in lowered[1:-1])
        notes.append(f"{name}: BertTokenizer with the published do_lower_case=true maps "
                     f"{unk} of {len(lowered) - 2} k-mers to [UNK]")
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
    for prefix, module in (("pooler.", classifier.bert.pooler),
                           ("classifier.", classifier.classifier)):
        for key, value in module.state_dict().items():
            arrays[prefix + key] = value.numpy()
    arrays["names"] = np.asarray(names)
    arrays["transformers_version"] = np.asarray(transformers.__version__)
    np.savez_compressed(args.out / "dnabert1.reference.npz", **arrays)
    print("state dict:", {k: tuple(v.shape) for k, v in state.items()})
    for line in names:
        print(line[:80])
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()

"""Build the Nucleotide Transformer v1 fixture: a tiny ``EsmForMaskedLM`` written by 4.x.

NT v1 (``InstaDeepAI/nucleotide-transformer-500m-human-ref`` and siblings) is transformers' own
ESM: ``model_type: esm``, ``EsmForMaskedLM``, learned absolute positions, ``EsmTokenizer``. No
copy of a v1 Hugging Face directory was available, so its files are **reconstructed** (see
published_checkpoints/SOURCES.md): vocab.txt in InstaDeep's v1 ``StandardTokenizer`` order
(``<unk> <pad> <mask> <cls>``, the 4,096 6-mers in ``product("ATCG")`` order, ``A T C G N``,
``<eos> <bos>``; the model's ``vocab_size`` is that length minus the two trailing tokens, 4105,
as InstaDeep's pretrained.py computes it), tokenizer_config.json / special_tokens_map.json as
the v2 files with ``model_max_length`` 1000, and config.json as transformers 4.32's
``save_pretrained`` writes the 500M human-ref shape, then shrunk.

Run with the throwaway transformers 4.32 environment (see ntv2.py)::

    PYTHONPATH=/tmp/tf4-ntv2 .venv/bin/python tests/data/published/build/ntv1.py \
        /work/shared/reference/published_checkpoints tests/data/published
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

SEED = 20240615
#: shrunk from the 500M human-ref shape (hidden 1280, 24 layers, 20 heads, intermediate 5120)
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64}
SEQUENCES = [("chr20:43000001-43000200", 1_000_000, 200, ()),
             ("chr20:43200001-43200500_N@251", 1_200_000, 500, (251,)),
             ("chr20:43500001-43501000", 1_500_000, 1000, ())]
MAX_LOGIT_ROWS = 100
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


def v1_vocabulary() -> list[str]:
    """InstaDeep's v1 order (nucleotide_transformer/tokenizers.py, StandardTokenizer)."""
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    return ["<unk>", "<pad>", "<mask>", "<cls>", *kmers, "A", "T", "C", "G", "N",
            "<eos>", "<bos>"]


def instadeep_kmer_ids(seq: str, vocab: dict[str, int], k: int = 6) -> list[int]:
    """NT's k-mer rule written from its description (see ntv2.py)."""
    tokens = ["<cls>"]
    parts = seq.split("N")
    for i, part in enumerate(parts):
        full = len(part) // k * k
        tokens += [part[j : j + k] for j in range(0, full, k)] + list(part[full:])
        if i < len(parts) - 1:
            tokens.append("N")
    return [vocab[t] for t in tokens]


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("LayerNorm" in name or "layer_norm" in name) and \
                    name.endswith("weight"):
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
        AutoTokenizer,
        EsmConfig,
        EsmForMaskedLM,
        EsmForSequenceClassification,
    )

    v2 = args.reference / "ntv2_hf"
    fixture = args.out / "ntv1"
    if fixture.exists():
        shutil.rmtree(fixture)
    fixture.mkdir(parents=True)
    vocabulary = v1_vocabulary()
    (fixture / "vocab.txt").write_text("\n".join(vocabulary))  # as v2's: no final newline
    tok_config = json.loads((v2 / "tokenizer_config.json").read_text())
    tok_config["model_max_length"] = 1000
    (fixture / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    shutil.copyfile(v2 / "special_tokens_map.fixed.json", fixture / "special_tokens_map.json")

    values = dict(
        vocab_size=len(vocabulary) - 2, mask_token_id=2, pad_token_id=1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        max_position_embeddings=1002, initializer_range=0.02, layer_norm_eps=1e-12,
        position_embedding_type="absolute", use_cache=False, emb_layer_norm_before=False,
        token_dropout=False, tie_word_embeddings=False, **SIZES)
    config = EsmConfig(**values, architectures=["EsmForMaskedLM"], torch_dtype="float32")
    torch.manual_seed(SEED)
    model = EsmForMaskedLM(config)
    generator = torch.Generator().manual_seed(SEED)
    randomize(model, generator)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=False)
        shutil.copyfile(Path(tmp) / "pytorch_model.bin", fixture / "pytorch_model.bin")
        shutil.copyfile(Path(tmp) / "config.json", fixture / "config.json")
    state = torch.load(fixture / "pytorch_model.bin", weights_only=True)

    cls_config = EsmConfig(**values, num_labels=NUM_LABELS)
    classifier = EsmForSequenceClassification(cls_config)
    missing, unexpected = classifier.load_state_dict(
        {k: v for k, v in state.items() if k.startswith("esm.")}, strict=False)
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
    np.savez_compressed(args.out / "ntv1.reference.npz", **arrays)
    print("state dict:", {k: tuple(v.shape) for k, v in state.items()})
    for name in names:
        print(name[:80])


if __name__ == "__main__":
    main()

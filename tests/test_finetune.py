"""Fine-tuning: LoRA correctness (frozen base, exact reload, parameter count), full fine-tuning,
metrics, the k-mer baseline, task loading errors and the GUE-folder entry point.

Models are built here from tiny configs (hidden size 32, two layers) with a character tokenizer
built here too, so nothing depends on the tokenizer or pretraining stages, and every run trains
on 40-60 bp synthetic sequences in well under a second per epoch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pysam
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForMaskedLM,
    EsmConfig,
    EsmForMaskedLM,
    ModernBertConfig,
    ModernBertForMaskedLM,
    PreTrainedTokenizerFast,
)

from dnalm.errors import DnalmError
from dnalm.finetune import (
    BASELINE_NAME,
    BaselineSettings,
    FineTuner,
    FinetuneSettings,
    LoraSettings,
    classification_metrics,
    default_target_modules,
    finetune,
    finetune_from_paths,
    finetune_settings,
    kmer_baseline,
    kmer_frequencies,
    load_classifier,
    load_finetuned,
    load_task,
    regression_metrics,
    write_summary,
)
from dnalm.finetune.encoding import SequenceEncoder
from dnalm.finetune.modeling import apply_lora
from dnalm.finetune.plan import finetune_runs, run_settings, task_input_files
from dnalm.finetune.yardsticks import (
    auroc_rows,
    chance_level,
    check_collapse,
    collapse_advice,
    intervals,
    mcc_rows,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MOTIF = "TATAAGGC"
FAST = {"epochs": 2, "batch_size": 16, "max_length": 64, "threads": 1, "gpus": 0,
        "learning_rate": 3e-3}


# --------------------------------------------------------------------------------------------
# Tiny tokenizers, models and tasks


def _save_tokenizer(tok: Tokenizer, out: Path, meta: dict) -> None:
    tok.add_special_tokens(SPECIAL)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                 cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    hf.save_pretrained(str(out))
    (out / "dnalm_tokenizer.json").write_text(json.dumps(meta))


def char_tokenizer(out: Path) -> int:
    """WordLevel over specials + A C G T N, one token per base, [CLS] $A [SEP]."""
    vocab = {t: i for i, t in enumerate([*SPECIAL, *"ACGTN"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.FixedLength(length=1)
    _save_tokenizer(tok, out, {"kind": "char", "k": None, "vocab_size": len(vocab)})
    return len(vocab)


def kmer_tokenizer(out: Path, k: int = 3) -> int:
    """DNABERT-style tokenizer reading space-separated overlapping k-mers."""
    import itertools

    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    vocab = {t: i for i, t in enumerate([*SPECIAL, *kmers])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    _save_tokenizer(tok, out, {"kind": "kmer", "k": k, "vocab_size": len(vocab),
                               "input": "kmer_text"})
    return len(vocab)


SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64}


def build_model(out: Path, arch: str) -> Path:
    """A tiny masked LM of ``arch`` saved with a char tokenizer (what the pipeline writes)."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = char_tokenizer(out)
    torch.manual_seed(0)
    if arch == "bert":
        model = BertForMaskedLM(BertConfig(vocab_size=vocab, max_position_embeddings=128,
                                           **SMALL))
    elif arch == "modernbert":
        model = ModernBertForMaskedLM(ModernBertConfig(
            vocab_size=vocab, max_position_embeddings=128, pad_token_id=0, cls_token_id=2,
            sep_token_id=3, bos_token_id=2, eos_token_id=3, **SMALL))
    else:
        model = EsmForMaskedLM(EsmConfig(vocab_size=vocab, max_position_embeddings=130,
                                         pad_token_id=0, mask_token_id=4,
                                         position_embedding_type="absolute", **SMALL))
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("bert"), "bert")


def random_seq(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def motif_rows(n: int, seed: int, length: int = 48) -> pd.DataFrame:
    """Label 1 iff the sequence carries MOTIF (planted at a random place); negatives lack it."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        seq = random_seq(rng, length)
        while MOTIF in seq:
            seq = random_seq(rng, length)
        if label:
            at = rng.randrange(0, length - len(MOTIF))
            seq = seq[:at] + MOTIF + seq[at + len(MOTIF):]
        rows.append({"sequence": seq, "label": label})
    return pd.DataFrame(rows)


def write_gue(folder: Path, sizes: dict[str, int], *, label_map: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (split, n) in enumerate(sizes.items()):
        frame = motif_rows(n, seed)
        if label_map:
            frame["label"] = frame["label"].map(label_map)
        frame.to_csv(folder / f"{split}.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def motif_task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """genomic_benchmarks-like: string labels, an id column, and no dev file."""
    folder = tmp_path_factory.mktemp("enh")
    for seed, (split, n) in enumerate({"train": 120, "test": 40}.items()):
        frame = motif_rows(n, seed + 10)
        frame.insert(0, "id", [f"{split}_{i}" for i in range(n)])
        frame["label"] = frame["label"].map({0: "negative", 1: "positive"})
        frame.to_csv(folder / f"{split}.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def lora_run(bert_dir: Path, motif_task_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Path:
    out = tmp_path_factory.mktemp("runs") / "enh" / "tiny"
    spec = {"name": "enh", "train": str(motif_task_dir / "train.csv"),
            "test": str(motif_task_dir / "test.csv")}
    finetune(spec, bert_dir, out, model_name="tiny", merge=True, **FAST)
    return out


def base_parameters(peft_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every original weight of a peft model: no LoRA matrices, no trainable head copies."""
    return {n: p.detach().clone() for n, p in peft_model.named_parameters()
            if "lora_" not in n and ".modules_to_save." not in n}


# --------------------------------------------------------------------------------------------
# LoRA correctness


def test_lora_leaves_base_weights_untouched(bert_dir: Path) -> None:
    task = load_task({"name": "m", "train": _csv_pair(bert_dir.parent / "m1")[0],
                      "test": _csv_pair(bert_dir.parent / "m1")[1]})
    tuner = FineTuner(task, bert_dir, FinetuneSettings(**FAST))
    before = base_parameters(tuner.model)
    lora_b_before = {n: p.detach().clone() for n, p in tuner.model.named_parameters()
                     if "lora_B" in n}
    tuner.fit()
    after = base_parameters(tuner.model)
    assert before.keys() == after.keys() and len(before) > 20
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed == []
    # ... while training did move the adapters (B starts at zero)
    assert any(not torch.equal(lora_b_before[n], p) for n, p in tuner.model.named_parameters()
               if "lora_B" in n)


def _csv_pair(folder: Path) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    motif_rows(64, 1).to_csv(folder / "train.csv", index=False)
    motif_rows(32, 2).to_csv(folder / "test.csv", index=False)
    return str(folder / "train.csv"), str(folder / "test.csv")


def test_full_finetuning_changes_base_weights(bert_dir: Path) -> None:
    train, test = _csv_pair(bert_dir.parent / "m2")
    task = load_task({"name": "m", "train": train, "test": test})
    tuner = FineTuner(task, bert_dir, FinetuneSettings(method="full", **FAST))
    before = {n: p.detach().clone() for n, p in tuner.model.named_parameters()}
    assert tuner.trainable_parameters == tuner.total_parameters
    tuner.fit()
    encoder_changed = [n for n, p in tuner.model.named_parameters()
                       if n.startswith("bert.encoder") and not torch.equal(before[n], p)]
    assert len(encoder_changed) > 10


#: Linear layers LoRA must adapt by default, per architecture, written out independently of
#: dnalm.finetune.modeling; and the modules trained in full (newly initialised head).
EXPECTED = {
    "bert": (("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense"), ("bert.pooler", "classifier")),
    "modernbert": (("attn.Wqkv", "attn.Wo"), ("classifier",)),
    "esm": (("attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense"), ("classifier",)),
}


@pytest.mark.parametrize("arch", ["bert", "modernbert", "esm"])
def test_trainable_count_is_r_times_m_plus_n_plus_head(arch: str, tmp_path: Path) -> None:
    model_dir = build_model(tmp_path / arch, arch)
    r = 4
    loaded = load_classifier(model_dir, num_labels=3, problem="classification")
    suffixes, head = EXPECTED[arch]
    modules = dict(loaded.model.named_modules())
    adapted = [m for n, m in modules.items() if isinstance(m, torch.nn.Linear)
               and n.endswith(suffixes) and not n.startswith(head)]
    assert len(adapted) == len(suffixes) * 2  # two layers
    lora_params = sum(r * (m.in_features + m.out_features) for m in adapted)
    head_params = sum(p.numel() for name in head for p in modules[name].parameters())
    assert sorted(loaded.head_modules) == sorted(head)
    peft_model, targets = apply_lora(loaded, r=r, alpha=8, dropout=0.0, target_modules=None,
                                     seed=1)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == lora_params + head_params
    assert all(any(t.endswith(s) or s.endswith(t) for s in suffixes) for t in targets)


def test_default_targets_follow_the_architecture(tmp_path: Path) -> None:
    found = {}
    for arch in ("bert", "modernbert", "esm"):
        loaded = load_classifier(build_model(tmp_path / arch, arch), num_labels=2,
                                 problem="classification")
        found[arch] = default_target_modules(loaded.model, loaded.head_modules)
    assert found["modernbert"] == ["Wqkv", "attn.Wo"]
    assert found["bert"] == found["esm"] == ["query", "key", "value", "attention.output.dense"]


def test_unknown_target_module_is_a_one_line_error(bert_dir: Path) -> None:
    loaded = load_classifier(bert_dir, num_labels=2, problem="classification")
    with pytest.raises(DnalmError, match="Wqkv match no Linear layer") as info:
        apply_lora(loaded, r=2, alpha=4, dropout=0.0, target_modules=["Wqkv"], seed=1)
    assert "\n" not in str(info.value)


def test_adapter_reload_reproduces_predictions_exactly(lora_run: Path) -> None:
    for name in ("adapter_config.json", "adapter_model.safetensors", "dnalm_finetune.json",
                 "tokenizer.json"):
        assert (lora_run / "adapter" / name).is_file()
    saved = pq.read_table(lora_run / "predictions.parquet").to_pandas()
    sequences = _test_sequences(lora_run)
    probs = saved[["prob_0", "prob_1"]].to_numpy()
    reloaded = load_finetuned(lora_run).predict(sequences)
    assert np.array_equal(reloaded, probs)
    merged = load_finetuned(lora_run, which="merged").predict(sequences)
    np.testing.assert_allclose(merged, probs, atol=1e-5)


def _test_sequences(run_dir: Path) -> list[str]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return pd.read_csv(metrics["sources"]["test"])["sequence"].tolist()


# --------------------------------------------------------------------------------------------
# Outputs, metrics, problems


def test_run_directory_records_labels_params_and_metrics(lora_run: Path) -> None:
    metrics = json.loads((lora_run / "metrics.json").read_text())
    assert metrics["label_mapping"] == {"negative": 0, "positive": 1}
    assert metrics["dev_source"].startswith("carved from train")
    assert metrics["n_sequences"] == {"train": 108, "dev": 12, "test": 40}
    assert set(metrics["test"]) >= {"mcc", "f1", "accuracy", "auroc", "auprc", "loss"}
    p = metrics["parameters"]
    assert 0 < p["trainable"] < p["total"] and p["base"] + p["head"] == p["total"]
    assert metrics["lora"]["adapted_matrices"] == 8
    assert metrics["training"]["epochs_run"] >= 1
    assert metrics["training"]["seconds_per_epoch"] > 0
    assert metrics["training"]["cpu_seconds_per_epoch"] > 0
    assert metrics["resources"]["peak_rss_mb"] > 0
    saved = pq.read_table(lora_run / "predictions.parquet").to_pandas()
    assert len(saved) == 40
    assert list(saved.columns[:3]) == ["id", "label", "prediction"]
    assert saved["id"].iloc[0] == "test_0"
    np.testing.assert_allclose(saved[["prob_0", "prob_1"]].sum(axis=1), 1.0, rtol=1e-9)
    assert (lora_run / "merged" / "config.json").is_file()


def test_multiclass_and_regression_report_their_metrics(bert_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(3)
    seqs = [random_seq(rng, 40) for _ in range(90)]
    multi = pd.DataFrame({"sequence": seqs, "label": [("a", "b", "c")[i % 3] for i in range(90)]})
    gc = [(s.count("G") + s.count("C")) / len(s) for s in seqs]
    reg = pd.DataFrame({"sequence": seqs, "label": gc})
    for name, frame in (("multi", multi), ("reg", reg)):
        frame.iloc[:70].to_csv(tmp_path / f"{name}_train.csv", index=False)
        frame.iloc[70:].to_csv(tmp_path / f"{name}_test.csv", index=False)
    m = finetune({"name": "multi", "train": str(tmp_path / "multi_train.csv"),
                  "test": str(tmp_path / "multi_test.csv")}, bert_dir, tmp_path / "o1", **FAST)
    assert m["label_names"] == ["a", "b", "c"] and m["primary_metric"] == "mcc"
    assert {"mcc", "f1", "accuracy", "auroc", "auprc"} <= set(m["test"])
    assert pq.read_table(tmp_path / "o1" / "predictions.parquet").num_columns == 10
    r = finetune({"name": "reg", "problem": "regression", "train": str(tmp_path / "reg_train.csv"),
                  "test": str(tmp_path / "reg_test.csv")}, bert_dir, tmp_path / "o2",
                 method="full", **FAST)
    assert r["primary_metric"] == "spearman" and r["label_mapping"] is None
    assert {"spearman", "pearson", "mse", "r2"} <= set(r["test"])
    preds = pq.read_table(tmp_path / "o2" / "predictions.parquet").to_pandas()
    assert preds["prediction"].dtype == np.float64 and (tmp_path / "o2" / "model").is_dir()


def test_same_seed_same_predictions(bert_dir: Path, tmp_path: Path) -> None:
    train, test = _csv_pair(tmp_path / "t")
    spec = {"name": "s", "train": train, "test": test}
    options = {**FAST, "epochs": 1}
    finetune(spec, bert_dir, tmp_path / "a", **options)
    finetune(spec, bert_dir, tmp_path / "b", **options)
    a = pq.read_table(tmp_path / "a" / "predictions.parquet").to_pandas()
    b = pq.read_table(tmp_path / "b" / "predictions.parquet").to_pandas()
    pd.testing.assert_frame_equal(a, b)


def test_long_sequences_are_truncated_and_counted(bert_dir: Path, tmp_path: Path) -> None:
    rows = motif_rows(40, 5, length=80)
    rows.iloc[:30].to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[30:].to_csv(tmp_path / "test.csv", index=False)
    m = finetune({"name": "long", "train": str(tmp_path / "train.csv"),
                  "test": str(tmp_path / "test.csv")}, bert_dir, tmp_path / "o",
                 **{**FAST, "epochs": 1, "max_length": 32})
    assert m["truncated"] == {"train": 27, "dev": 3, "test": 10}
    preds = pq.read_table(tmp_path / "o" / "predictions.parquet").to_pandas()
    assert preds["truncated"].all() and (preds["n_tokens"] == 32).all()


def test_kmer_tokenizer_reads_kmer_text(tmp_path: Path) -> None:
    kmer_tokenizer(tmp_path)
    encoder = SequenceEncoder.from_dir(tmp_path, max_length=10)
    assert encoder.k == 3
    encoded = encoder.encode(["acgta", "AAAAAAAAAAAAAAAA"])
    # [CLS] ACG CGT GTA [SEP]: ids 5 + base-4 value of each 3-mer
    assert encoded.ids[0] == [2, 5 + 6, 5 + 27, 5 + 44, 3]
    assert encoded.truncated.tolist() == [False, True] and len(encoded.ids[1]) == 10


def test_metrics_on_known_predictions() -> None:
    labels = np.array([0, 0, 1, 1])
    perfect = classification_metrics(labels, np.array([[.9, .1], [.8, .2], [.3, .7], [.1, .9]]))
    assert perfect["mcc"] == perfect["f1"] == perfect["auroc"] == perfect["auprc"] == 1.0
    wrong = classification_metrics(labels, np.array([[.1, .9], [.2, .8], [.7, .3], [.9, .1]]))
    assert wrong["mcc"] == -1.0 and wrong["accuracy"] == 0.0 and wrong["auroc"] == 0.0
    three = classification_metrics(np.array([0, 1, 2]), np.eye(3))
    assert three["mcc"] == 1.0 and three["auroc"] == 1.0
    one_class = classification_metrics(np.array([1, 1]), np.array([[.4, .6], [.3, .7]]))
    assert one_class["auroc"] is None
    reg = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 40.0]))
    assert reg["spearman"] == pytest.approx(1.0) and 0.9 < reg["pearson"] < 1.0
    assert regression_metrics(np.array([1.0, 2.0]), np.array([5.0, 5.0]))["spearman"] is None


# --------------------------------------------------------------------------------------------
# k-mer baseline and summary


def test_kmer_frequencies_count_valid_windows() -> None:
    freqs = kmer_frequencies(["ACGTN", "AC", "AAAA"], 2)
    # ACGTN: AC CG GT (GN skipped) → 1/3 each; AC: one window; AAAA: AA three times
    assert freqs.shape == (3, 16)
    assert freqs[0, 1] == freqs[0, 6] == freqs[0, 11] == pytest.approx(1 / 3)
    assert freqs[1, 1] == 1.0 and freqs[2, 0] == 1.0


def test_kmer_baseline_beats_chance_on_a_motif_task(tmp_path: Path) -> None:
    folder = write_gue(tmp_path / "gue", {"train": 300, "dev": 60, "test": 100})
    m = kmer_baseline({"name": "motif", "train": str(folder / "train.csv"),
                       "dev": str(folder / "dev.csv"), "test": str(folder / "test.csv")},
                      tmp_path / "kmer", settings=BaselineSettings(k=(3, 4), C=(0.1, 1.0)))
    assert m["test"]["mcc"] > 0.5 and m["test"]["auroc"] > 0.85
    assert m["baseline"]["k"] in (3, 4) and len(m["baseline"]["grid"]) == 4
    assert (tmp_path / "kmer" / "predictions.parquet").is_file()


def test_summary_table_shows_models_beside_the_baseline(lora_run: Path, motif_task_dir: Path,
                                                        tmp_path: Path) -> None:
    spec = {"name": "enh", "train": str(motif_task_dir / "train.csv"),
            "test": str(motif_task_dir / "test.csv")}
    kmer_dir = lora_run.parent / "kmer_baseline"
    kmer_baseline(spec, kmer_dir)
    runs = write_summary([lora_run, kmer_dir], tmp_path / "s.parquet", tmp_path / "s.md")
    assert sorted(runs["model"]) == ["kmer_baseline", "tiny"]
    assert runs.loc[runs["model"] == "kmer_baseline", "delta_vs_baseline"].iloc[0] == 0
    text = (tmp_path / "s.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert header == ("| model | method | parameters | trainable | enh | average | tasks "
                      "| collapsed |")
    assert "| kmer_baseline | kmer_baseline |" in text and "| tiny | lora |" in text
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 2


# --------------------------------------------------------------------------------------------
# Task loading


def test_gue_folder_through_finetune_from_paths(bert_dir: Path, tmp_path: Path) -> None:
    folder = write_gue(tmp_path / "gue", {"train": 64, "dev": 16, "test": 24})
    m = finetune_from_paths(folder, bert_dir, tmp_path / "out" / "tiny",
                            baseline_dir=tmp_path / "out" / "kmer_baseline", **FAST)
    assert m["dev_source"] == "file" and m["n_sequences"] == {"train": 64, "dev": 16,
                                                              "test": 24}
    assert m["label_mapping"] == {"0": 0, "1": 1}
    assert m["baseline"]["test"]["n"] == 24
    assert (tmp_path / "out" / "kmer_baseline" / "metrics.json").is_file()


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_bed_task_cuts_sequences_and_reverse_complements(tmp_path: Path) -> None:
    genome = tmp_path / "g.fa"
    genome.write_text(">20\nAAAACCCCGGGGTTTT\n")
    pysam.faidx(str(genome))
    bed = _write(tmp_path / "train.bed",
                 "chr20\t0\t4\tA\t0\t+\nchr20\t4\t8\tC\t0\t-\nchr20\t8\t12\tA\t0\t+\n"
                 "chr20\t12\t16\tC\t0\t+\n")
    task = load_task({"name": "b", "format": "bed", "train": bed, "dev": bed, "test": bed,
                      "genome": "hg"}, genome_fasta=genome)
    assert task.train["sequence"].tolist() == ["AAAA", "GGGG", "GGGG", "TTTT"]
    assert task.label_names == ["A", "C"] and task.train["id"].iloc[1] == "chr20:4-8"


def test_fasta_per_class_task_is_split_with_the_seed(tmp_path: Path) -> None:
    rng = random.Random(0)
    files = {}
    for label in ("pos", "neg"):
        records = "".join(f">{label}{i}\n{random_seq(rng, 30)}\n" for i in range(20))
        files[label] = _write(tmp_path / f"{label}.fa", records)
    spec = {"name": "f", "format": "fasta", "fasta": files}
    task = load_task(spec, seed=7)
    assert task.sizes() == {"train": 32, "dev": 4, "test": 4}
    assert load_task(spec, seed=7).test["id"].tolist() == task.test["id"].tolist()
    assert task_input_files(spec) == [files["pos"], files["neg"]]


def _errors(tmp_path: Path) -> list[tuple[dict, str]]:
    ok = _write(tmp_path / "ok.csv", "sequence,label\nACGT,0\nACGA,1\nACGG,0\nACGC,1\n")
    genome = tmp_path / "g.fa"
    genome.write_text(">chr1\nACGTACGTACGT\n")
    pysam.faidx(str(genome))
    return [
        ({"train": _write(tmp_path / "nocol.csv", "seq,label\nACGT,0\n"), "test": ok},
         "missing column(s) sequence"),
        ({"train": ok, "test": _write(tmp_path / "empty.csv", "sequence,label\n")},
         "the test split is empty"),
        ({"train": ok, "test": _write(tmp_path / "unseen.csv", "sequence,label\nACGT,7\n")},
         "test label(s) '7' never occur in the train split"),
        ({"train": _write(tmp_path / "one.csv", "sequence,label\nACGT,0\nACGA,0\nAC,0\n"),
          "test": ok}, "only one class"),
        ({"train": ok, "test": ok, "label_colum": "x"}, "unknown key(s) label_colum"),
        ({"train": ok, "test": ok, "format": "vcf"}, "format 'vcf' is not one of"),
        ({"train": ok, "test": ok, "problem": "regression",
          "dev": _write(tmp_path / "txt.csv", "sequence,label\nACGT,high\n")},
         "label 'high' is not a number"),
        ({"train": ok, "test": str(tmp_path / "absent.csv")}, "file not found"),
        ({"train": _write(tmp_path / "noseq.csv", "sequence,label\nACGT,0\n,1\n"), "test": ok},
         "row 2 (id train_1) has no sequence"),
        ({"format": "bed", "genome": "g", "train": _write(
            tmp_path / "b.bed", "chrX\t0\t4\t1\n"), "test": ok},
         "contig 'chrX' is not in genome"),
        ({"format": "bed", "genome": "g", "train": _write(
            tmp_path / "c.bed", "chr1\t5\t40\t1\n"), "test": ok},
         "interval 5-40 is outside chr1"),
    ]


def test_task_errors_are_one_line(tmp_path: Path) -> None:
    cases = _errors(tmp_path)
    for spec, message in cases:
        with pytest.raises(DnalmError) as info:
            load_task({"name": "bad", **spec}, genome_fasta=tmp_path / "g.fa")
        text = str(info.value)
        assert message in text, (message, text)
        assert "\n" not in text


def test_run_entries_name_model_method_and_learning_rate() -> None:
    runs = finetune_runs({"models": [{"name": "demo", "learning_rate": 0.005},
                                     {"name": "demo_full", "model": "demo", "method": "full"},
                                     "nt"]})
    assert runs == {"demo": {"model": "demo", "method": None, "learning_rate": 0.005},
                    "demo_full": {"model": "demo", "method": "full", "learning_rate": None},
                    "nt": {"model": "nt", "method": None, "learning_rate": None}}
    section = {"method": "lora", "epochs": 3, "learning_rate": 0.001, "tasks": {}}
    assert run_settings(section, runs["demo_full"]) == {
        "method": "full", "epochs": 3, "learning_rate": 0.001}
    # a run's own learning rate reaches its training settings (the demo's LoRA run needs a
    # larger one than the full run beside it)
    assert finetune_settings(run_settings(section, runs["demo"])).lr == 0.005
    for entries, message in (([BASELINE_NAME], "reserved"), (["a", {"name": "a"}], "twice"),
                             ([{"name": "a", "method": "qlora"}], "method 'qlora'"),
                             ([{"name": "a", "learning_rate": "5e-3"}], "learning_rate"),
                             ([{"name": "a", "learning_rate": 0}], "learning_rate"),
                             (["a/b"], "no slash"), ([{"name": "a", "path": "/x"}], "path")):
        with pytest.raises(DnalmError, match=message):
            finetune_runs({"models": entries})


def test_settings_reject_out_of_range_values() -> None:
    with pytest.raises(DnalmError, match="method 'qlora'"):
        FinetuneSettings(method="qlora")
    with pytest.raises(DnalmError, match=r"lora\.r"):
        FinetuneSettings(lora=LoraSettings(r=0))
    assert FinetuneSettings(method="full").lr < FinetuneSettings().lr


# --------------------------------------------------------------------------------------------
# Yardsticks: chance, intervals, collapsed runs (dnalm.finetune.yardsticks)


def gc_rows(n: int, seed: int, length: int = 48) -> pd.DataFrame:
    """Label 1: 65 % GC, label 0: 35 % GC; learnable within two epochs by a random encoder."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gc = 0.65 if i % 2 else 0.35
        seq = "".join(rng.choice("GC") if rng.random() < gc else rng.choice("AT")
                      for _ in range(length))
        rows.append({"sequence": seq, "label": i % 2})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def gc_spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("gc")
    gc_rows(120, 1).to_csv(folder / "train.csv", index=False)
    gc_rows(40, 2).to_csv(folder / "test.csv", index=False)
    return {"name": "gc", "train": str(folder / "train.csv"), "test": str(folder / "test.csv")}


@pytest.fixture(scope="module")
def modernbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("modernbert"), "modernbert")


def test_lora_run_learns_beyond_chance_with_its_head_trained_and_saved(
        modernbert_dir: Path, gc_spec: dict, tmp_path: Path) -> None:
    """The demo's architecture under LoRA: a learnable task is learned (interval above chance),
    the classifier is trained, saved in the adapter and reloaded (a frozen or unsaved head would
    leave predictions at chance or change them on reload)."""
    from safetensors.torch import load_file

    task = load_task(gc_spec)
    tuner = FineTuner(task, modernbert_dir, FinetuneSettings(**FAST))
    head = {n: p.detach().clone() for n, p in tuner.model.named_parameters()
            if ".modules_to_save." in n}
    assert head and all(p.requires_grad for n, p in tuner.model.named_parameters()
                        if ".modules_to_save." in n)
    tuner.fit()
    assert all(not torch.equal(head[n], p) for n, p in tuner.model.named_parameters()
               if n in head)
    out = tmp_path / "run"
    m = finetune(gc_spec, modernbert_dir, out, **FAST)
    assert m["collapsed"] is False and m["collapse_reason"] is None
    assert m["intervals"]["mcc"][0] > 0 and m["intervals"]["auroc"][0] > 0.5
    assert m["intervals"]["auroc"][0] <= m["test"]["auroc"] <= m["intervals"]["auroc"][1]
    assert m["chance"] == {"predictor": "majority class", "class": 0, "label": "0",
                           "accuracy": 0.5, "mcc": 0.0, "auroc": 0.5, "auprc": 0.5}
    dev = m["dev"]
    assert dev["best_loss"] < dev["initial_loss"] and dev["prior_loss"] == pytest.approx(
        np.log(2), abs=0.01)
    saved = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any("classifier" in k for k in saved)
    probs = pq.read_table(out / "predictions.parquet").to_pandas()[["prob_0", "prob_1"]]
    reloaded = load_finetuned(out).predict(pd.read_csv(gc_spec["test"])["sequence"].tolist())
    assert np.array_equal(reloaded, probs.to_numpy())


def test_a_collapsed_run_is_flagged_in_metrics_log_and_summary(
        modernbert_dir: Path, gc_spec: dict, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    kmer_dir = tmp_path / "gc" / BASELINE_NAME
    kmer = kmer_baseline(gc_spec, kmer_dir, settings=BaselineSettings(k=(1, 2), C=(1.0,)))
    assert kmer["collapsed"] is False and kmer["intervals"]["auroc"][0] > 0.5
    healthy = tmp_path / "gc" / "ok"
    finetune(gc_spec, modernbert_dir, healthy, model_name="ok", **FAST)
    stuck = tmp_path / "gc" / "stuck"
    with caplog.at_level("WARNING", logger="dnalm.finetune"):
        m = finetune(gc_spec, modernbert_dir, stuck, model_name="stuck",
                     **{**FAST, "learning_rate": 1e-9, "epochs": 1})
    assert m["collapsed"] is True and "dev loss never fell" in m["collapse_reason"]
    assert json.loads((stuck / "metrics.json").read_text())["collapsed"] is True
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
                and r.name == "dnalm.finetune.train"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "gc/stuck collapsed, not a result" in warnings[0]
    assert "finetune.learning_rate (now 1e-09)" in warnings[0] and "epochs" in warnings[0]

    runs = write_summary([kmer_dir, healthy, stuck], tmp_path / "s.parquet", tmp_path / "s.md")
    table = pq.read_table(tmp_path / "s.parquet").to_pandas().set_index("model")
    assert table["collapsed"].to_dict() == {BASELINE_NAME: False, "ok": False, "stuck": True}
    assert "dev loss never fell" in table.loc["stuck", "collapse_reason"]
    assert table.loc["ok", "auroc_low"] <= table.loc["ok", "auroc"] <= table.loc["ok",
                                                                                "auroc_high"]
    assert (table["chance_accuracy"] == 0.5).all() and (table["chance_auroc"] == 0.5).all()
    text = (tmp_path / "s.md").read_text()
    stuck_row = next(line for line in text.splitlines() if line.startswith("| stuck | lora |"))
    assert stuck_row.endswith("| collapsed | – | 0/1 | gc |")
    ok_row = next(line for line in text.splitlines() if line.startswith("| ok | lora |"))
    assert "collapsed" not in ok_row and ok_row.endswith("| 1/1 | – |")
    assert "**1 collapsed run(s)**" in text and "## Yardsticks" in text
    assert "| gc | 40 | 0 | 0.500 | 0.000 | 0.500 |" in text
    assert len(runs) == 3


def test_collapse_check_reads_predictions_and_the_dev_loss() -> None:
    labels = np.array([0, 1] * 50)
    one_class = np.tile([0.6, 0.4], (100, 1))
    one_class[0] = [0.4, 0.6]  # 99 % one class
    c = check_collapse("classification", one_class, labels, label_names=["neg", "pos"])
    assert c["collapsed"] and c["reason"] == "99.0% of test predictions are one class (neg)"
    mixed = np.where(labels[:, None] == 1, [0.3, 0.7], [0.7, 0.3])
    assert not check_collapse("classification", mixed, labels)["collapsed"]
    # 97 of 100 one class: collapsed when the MCC interval reaches 0 (the demo's full run),
    # not when it lies above 0 (a good classifier of a rare class)
    rare = np.tile([0.9, 0.1], (100, 1))
    rare[:3] = [0.1, 0.9]
    assert check_collapse("classification", rare, labels, mcc_interval=[-0.17, 0.0])["collapsed"]
    assert not check_collapse("classification", rare, np.r_[[1, 1, 1], np.zeros(97, int)],
                              mcc_interval=[0.6, 1.0])["collapsed"]
    flat = check_collapse("classification", mixed, labels, initial_dev_loss=0.69,
                          best_dev_loss=0.69, trained=True)
    assert flat["collapsed"] and "never fell below its initial 0.6900" in flat["reason"]
    assert check_collapse("classification", mixed, labels, initial_dev_loss=0.69,
                          best_dev_loss=None, trained=True)["reason"] == (
        "the dev loss was never finite")
    assert not check_collapse("classification", mixed, labels, initial_dev_loss=0.69,
                              best_dev_loss=0.5, trained=True)["collapsed"]
    y = np.linspace(0, 1, 50)
    assert check_collapse("regression", 0.5 + 1e-5 * y, y)["collapsed"]
    assert not check_collapse("regression", y + 0.1, y)["collapsed"]
    under = collapse_advice([{"train_loss": 0.69}, {"train_loss": 0.68}], method="lora",
                            learning_rate=5e-4, epochs=5)
    assert "raise finetune.learning_rate (now 0.0005) or finetune.epochs (now 5)" in under
    assert "method: full" in under
    over = collapse_advice([{"train_loss": 0.69}, {"train_loss": 0.1}], method="full",
                           learning_rate=1e-3, epochs=5)
    assert "features do not separate the classes" in over


def test_intervals_are_scikit_learn_metrics_over_seeded_resamples() -> None:
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    from dnalm.evaluate import resample_weights

    rng = np.random.default_rng(0)
    for k in (2, 3):
        y = rng.integers(0, k, 60)
        probs = rng.dirichlet(np.ones(k), 60)
        probs[np.arange(60), y] += 0.3
        for w in next(resample_weights(60, 4, seed=1)):
            idx = np.repeat(np.arange(60), w)
            auroc = (roc_auc_score(y[idx], probs[idx, 1]) if k == 2 else
                     roc_auc_score(y[idx], probs[idx] / probs[idx].sum(1, keepdims=True),
                                   multi_class="ovr"))
            assert auroc_rows(probs, y, w)[0] == pytest.approx(auroc)
            assert mcc_rows(probs, y, w)[0] == pytest.approx(
                matthews_corrcoef(y[idx], probs[idx].argmax(1)))
        first = intervals("classification", y, probs, seed=3, n_bootstrap=200)
        assert first == intervals("classification", y, probs, seed=3, n_bootstrap=200)
        assert first["auroc"][0] < first["auroc"][1] and first["mcc"][0] < first["mcc"][1]
    assert intervals("classification", np.zeros(5, int), np.tile([0.5, 0.5], (5, 1)),
                     seed=1)["auroc"] is None
    reg = intervals("regression", np.arange(30.0), np.arange(30.0) ** 2, seed=1)
    assert reg["spearman"] == [pytest.approx(1.0), pytest.approx(1.0)]
    chance = chance_level("regression", np.array([1.0, 3.0]), np.array([1.0, 3.0]))
    assert chance["value"] == 2.0 and chance["mse"] == 1.0 and chance["r2"] == 0.0

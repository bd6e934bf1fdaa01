"""MLM masking: BERT proportions, DNABERT spans, determinism and resumable generator state."""

from __future__ import annotations

import pytest
import torch

from dnalm.errors import ConfigError
from dnalm.train.collator import IGNORE_INDEX, MaskingConfig, MlmMasker

PAD, CLS, SEP, MASK = 0, 2, 3, 4
SPECIALS = (0, 1, 2, 3, 4)
CONTENT = list(range(5, 69))  # 64 ordinary tokens


def _masker(span: int = 1, seed: int = 0) -> MlmMasker:
    return MlmMasker(
        MaskingConfig(span=span),
        mask_id=MASK,
        special_ids=SPECIALS,
        content_ids=CONTENT,
        seed=seed,
    )


def _batch(rows: int = 256, length: int = 512, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 69, (rows, length), generator=gen)
    ids[:, 0] = CLS
    ids[:, length // 5] = SEP  # a packed document boundary
    ids[:, -1] = SEP
    mask = torch.ones_like(ids)
    ids[: rows // 2, -length // 10 :] = PAD  # half the rows padded
    mask[: rows // 2, -length // 10 :] = 0
    return ids, mask


def test_bert_proportions_and_specials_are_never_masked() -> None:
    ids, mask = _batch()
    masked, labels = _masker()(ids, mask)
    selected = labels != IGNORE_INDEX
    eligible = (ids >= 5) & mask.bool()
    assert not (selected & ~eligible).any()  # no special or pad token is a target
    assert torch.equal(labels[selected], ids[selected])
    assert selected.sum() / eligible.sum() == pytest.approx(0.15, abs=0.005)
    n = selected.sum().item()
    to_mask = (masked == MASK) & selected
    changed = (masked != ids) & selected & ~to_mask
    assert to_mask.sum().item() / n == pytest.approx(0.8, abs=0.01)
    # random replacements may draw the original token (1 in 64), hence the slightly lower rate
    assert changed.sum().item() / n == pytest.approx(0.1 * 63 / 64, abs=0.01)
    assert torch.equal(masked[~selected], ids[~selected])
    assert masked[changed].min() >= 5  # replacements are ordinary tokens, never specials


def test_span_masking_hides_contiguous_runs_of_k_tokens() -> None:
    ids, mask = _batch()
    _, labels = _masker(span=6)(ids, mask)
    selected = labels != IGNORE_INDEX
    eligible = (ids >= 5) & mask.bool()
    assert not (selected & ~eligible).any()
    assert selected.sum() / eligible.sum() == pytest.approx(0.15, abs=0.01)
    # every run of targets is at least 6 long unless it touches an ineligible token
    short_runs = 0
    for row, ok in zip(selected.tolist(), eligible.tolist(), strict=True):
        start = None
        for i, value in enumerate([*row, False]):
            if value and start is None:
                start = i
            elif not value and start is not None:
                clipped = (start > 0 and not ok[start - 1]) or (i < len(row) and not ok[i])
                if i - start < 6 and not clipped:
                    short_runs += 1
                start = None
    assert short_runs == 0


def test_masking_is_deterministic_and_resumes_from_its_state() -> None:
    ids, mask = _batch(rows=8, length=64)
    first, second = _masker(seed=5), _masker(seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first(ids, mask), second(ids, mask), strict=True))
    state = first.state_dict()
    expected = first(ids, mask)
    resumed = _masker(seed=99)
    resumed.load_state_dict(state)
    got = resumed(ids, mask)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert not torch.equal(_masker(seed=6)(ids, mask)[1], second(ids, mask)[1])


def test_a_batch_always_has_a_target() -> None:
    ids = torch.tensor([[CLS, 7, SEP, PAD]])
    masker = MlmMasker(MaskingConfig(mlm_probability=1e-9), mask_id=MASK, special_ids=SPECIALS,
                       content_ids=CONTENT, seed=0)
    _, labels = masker(ids, torch.tensor([[1, 1, 1, 0]]))
    assert labels.tolist() == [[IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mlm_probability": 0.0}, "mlm_probability"),
        ({"mask_replace_prob": 0.9, "random_replace_prob": 0.2}, "must not exceed 1"),
        ({"span": 0}, "span must be >= 1"),
    ],
)
def test_invalid_masking_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MaskingConfig(**kwargs)

"""Dynamic masked-language-model masking with an explicit, checkpointable random generator.

Masking is redrawn for every batch (RoBERTa's dynamic masking), so repeated epochs see different
targets. It runs on CPU tensors with its own ``torch.Generator`` instead of the global RNG: the
masks are then identical on every device type, do not depend on what else consumed random
numbers, and the generator state is saved in each segment checkpoint so a resumed run masks
exactly as an uninterrupted one would.

Two modes:

- token masking (BERT): each eligible token is selected with probability ``mlm_probability``;
- span masking (DNABERT, overlapping k-mers): spans of ``span`` consecutive tokens are selected.
  With overlapping k-mers every base is spelled by ``k`` neighbouring tokens, so a lone masked
  token is recovered by copying its neighbours; a span of ``k`` tokens hides at least one base
  entirely. Span starts are drawn with probability ``q = 1 - (1 - p) ** (1 / span)``, which makes
  the expected fraction of selected tokens ``p`` again (spans may overlap).

Selected tokens become [MASK] (``mask_replace_prob``), a random ordinary token
(``random_replace_prob``) or stay unchanged (the rest): 80/10/10 by default. Special tokens
([CLS], [SEP], [PAD]...) and padding are never selected. Labels are the original ids at selected
positions and -100 elsewhere, the convention of every Hugging Face masked-LM loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dnalm.errors import ConfigError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskingConfig:
    """Masking proportions; the defaults are BERT's 15 % with 80/10/10 replacement."""

    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    span: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.mask_replace_prob < 0 or self.random_replace_prob < 0:
            raise ConfigError("mask_replace_prob and random_replace_prob must be >= 0")
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise ConfigError("mask_replace_prob + random_replace_prob must not exceed 1")
        if self.span < 1:
            raise ConfigError(f"masking span must be >= 1, got {self.span}")

    @property
    def start_probability(self) -> float:
        """Per-token probability of starting a span, so that ~mlm_probability is covered."""
        if self.span == 1:
            return self.mlm_probability
        return 1.0 - (1.0 - self.mlm_probability) ** (1.0 / self.span)


class MlmMasker:
    """Callable that masks a batch of token ids; deterministic given its seed and state."""

    def __init__(
        self,
        config: MaskingConfig,
        *,
        mask_id: int,
        special_ids: Sequence[int],
        content_ids: Sequence[int],
        seed: int,
    ) -> None:
        if not content_ids:
            raise ConfigError("the tokenizer has no ordinary tokens to draw replacements from")
        self.config = config
        self.mask_id = int(mask_id)
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.content_ids = torch.tensor(list(content_ids), dtype=torch.long)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(masked_input_ids, labels)`` for a ``(batch, length)`` CPU LongTensor.

        The input is not modified. At least one token is selected whenever any is eligible, so
        the loss of a batch is never an average over zero targets (NaN).
        """
        ids = input_ids.to(torch.long)
        eligible = ~torch.isin(ids, self.special_ids)
        if attention_mask is not None:
            eligible &= attention_mask.to(torch.bool)
        selected = self._select(eligible)
        if not selected.any() and eligible.any():
            first = int(torch.nonzero(eligible.flatten())[0])
            selected.view(-1)[first] = True
        labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))

        draw = torch.rand(ids.shape, generator=self.generator)
        to_mask = selected & (draw < self.config.mask_replace_prob)
        to_random = (
            selected
            & (draw >= self.config.mask_replace_prob)
            & (draw < self.config.mask_replace_prob + self.config.random_replace_prob)
        )
        choice = torch.randint(
            len(self.content_ids), ids.shape, generator=self.generator, dtype=torch.long
        )
        masked = ids.clone()
        masked[to_mask] = self.mask_id
        masked[to_random] = self.content_ids[choice[to_random]]
        return masked, labels

    def _select(self, eligible: torch.Tensor) -> torch.Tensor:
        """Positions to predict: single tokens, or spans of ``span`` tokens grown from starts."""
        draw = torch.rand(eligible.shape, generator=self.generator)
        starts = (draw < self.config.start_probability) & eligible
        span = self.config.span
        if span == 1:
            return starts
        # covered[i] = any(starts[i - span + 1 .. i]), via a running count of starts.
        count = torch.cumsum(starts.to(torch.int32), dim=1)
        shifted = torch.nn.functional.pad(count, (span, 0))[:, : count.shape[1]]
        return ((count - shifted) > 0) & eligible

    def state_dict(self) -> dict[str, Any]:
        """Generator state (a uint8 tensor), saved in segment checkpoints."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the random stream of a saved masker."""
        self.generator.set_state(state["generator"])

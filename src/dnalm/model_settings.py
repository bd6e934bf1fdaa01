"""Model settings that the workflow reads without torch: preset names and sizes, recurrent memory.

Snakemake reads the pretraining and fine-tuning settings while it parses the workflow (once per
run and again inside every job), and importing torch there would cost seconds each time. The
model code takes its names, defaults and segment arithmetic from here, so each has one owner:

* :data:`PRESET_NAMES` and :data:`SIZES`: the keys of :data:`dnalm.models.presets.PRESETS` and of
  every preset's sizes (the schema's ``preset``/``size`` enums repeat them; a test checks all
  three agree);
* :class:`RMTSettings`: the ``finetune.rmt`` block, whose defaults are also those of
  :class:`dnalm.models.rmt.RMTConfig` and ``RMTForSequenceClassification.from_encoder``;
* :func:`segment_length_for` and :func:`input_length`: how many content tokens a recurrent-memory
  segment holds in an encoder window, and how long a whole input of ``n`` segments is (the one
  formula behind ``RMTConfig.input_length`` and ``PretrainConfig.row_length``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dnalm.errors import ConfigError

#: Model presets (:mod:`dnalm.models.presets`), in the order they are documented.
PRESET_NAMES = ("dnabert", "dnabert2", "nt", "gena")
#: Model sizes every preset defines.
SIZES = ("tiny", "small", "base")

#: Tokens of a recurrent-memory segment besides content and memory: [CLS], the [SEP] after the
#: memory slots, and the final [SEP].
SPECIAL_PER_SEGMENT = 3
#: What the classifier head of an RMT reads: the last segment's [CLS] or the mean memory output.
POOLINGS = ("cls", "memory")


def segment_length_for(window: int, num_mem_tokens: int) -> int:
    """Content tokens per segment when a segment fills a ``window``-token encoder input: the
    window less the memory slots and the :data:`SPECIAL_PER_SEGMENT` special tokens."""
    return int(window) - int(num_mem_tokens) - SPECIAL_PER_SEGMENT


def input_length(segment_length: int, n_segments: int) -> int:
    """Tokens of one whole recurrent-memory input: ``n_segments`` segments of content plus the
    input's own [CLS] and [SEP] (which the segmentation strips and re-adds per segment)."""
    return int(segment_length) * int(n_segments) + 2


@dataclass(frozen=True)
class RMTSettings:
    """The ``finetune.rmt`` block: wrap the encoder in a Recurrent Memory Transformer.

    With ``enabled`` a sequence longer than the model's window is cut into segments of
    ``segment_length`` content tokens (None: the longest that fits the encoder with the memory)
    carrying ``num_mem_tokens`` memory tokens, up to ``max_n_segments`` segments, and classified
    whole instead of truncated (see :mod:`dnalm.models.rmt`). ``bptt_depth`` -1 back-propagates
    through every segment. ``max_length`` is then ignored: the input budget is
    ``segment_length * max_n_segments`` tokens.
    """

    enabled: bool = False
    num_mem_tokens: int = 10
    segment_length: int | None = None
    max_n_segments: int = 6
    bptt_depth: int = -1
    pooling: str = "memory"

    def __post_init__(self) -> None:
        checks = {"rmt.num_mem_tokens": self.num_mem_tokens >= 0,
                  "rmt.segment_length": self.segment_length is None or self.segment_length >= 1,
                  "rmt.max_n_segments": self.max_n_segments >= 1,
                  "rmt.bptt_depth": self.bptt_depth == -1 or self.bptt_depth >= 1,
                  "rmt.pooling": self.pooling in POOLINGS}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"finetune setting(s) out of range: {', '.join(bad)}")

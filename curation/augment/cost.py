"""Token counts and dollars: the dry-run estimate before a job and the budget guard during it.

Tokens are estimated without a tokenizer (tiktoken is not a dependency, and providers' tokenizers
differ anyway): one token per CJK character, one per 4 other characters, plus 4 per message for
the chat format's framing. On English prose this lands within ~15% of cl100k; on Chinese it
over-counts a little for newer tokenizers, which errs on the safe side for a budget. The actual
numbers come from each reply's `usage` and replace the estimate as the job runs.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from ..lang import CJK_CLASS

TOKENIZER = "approx: 1 token per CJK char, 1 per 4 other chars, +4 per message"

_CJK = re.compile(f"[{CJK_CLASS}\u3000-\u303f\uff00-\uffef]")  # CJK plus CJK punctuation and full-width forms


def count_tokens(text: str | None) -> int:
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def count_message_tokens(messages: Iterable[dict[str, Any]]) -> int:
    return sum(4 + count_tokens(str(m.get("content") or "")) for m in messages) + 3


@dataclass
class Estimate:
    """What a job will send and roughly cost, before anything is sent."""

    requests: int = 0             # requests the job needs in all
    cached: int = 0               # of those, already answered (in the cache): not sent again
    to_send: int = 0
    input_tokens: int = 0         # estimated prompt tokens of the requests to send
    output_tokens: int = 0        # expected completion tokens of the requests to send
    output_tokens_max: int = 0    # the max_tokens ceiling of the requests to send
    usd: float = 0.0              # expected cost: input + expected output at the provider's prices
    usd_max: float = 0.0          # cost if every reply ran to max_tokens
    priced: bool = True           # False: the provider has no prices, dollars are 0
    skipped: int = 0              # selected samples the operation does not apply to
    gate_requests: int = 0        # with reject_below: judge requests for the new samples (included above)
    tokenizer: str = TOKENIZER

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Budget:
    """`max_cost` in USD, kept BEFORE it is passed: each request reserves its worst-case cost
    (estimated prompt x margin + max_tokens of output) before it is sent, and the reservation is
    swapped for the actual cost when the reply's usage arrives. A request whose reservation would
    take spent + reserved past the limit is not sent, and the job stops."""

    PROMPT_MARGIN = 1.25  # the prompt estimate is approximate; reserve a bit more

    def __init__(self, limit_usd: float | None):
        self.limit = limit_usd
        self.spent = 0.0
        self.reserved = 0.0

    def try_reserve(self, amount: float) -> bool:
        if self.limit is None:
            self.reserved += amount
            return True
        if self.spent + self.reserved + amount > self.limit + 1e-12:
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += actual

"""Turn prompts (text or token ids) into one left-padded batch.

Shapes: B batch, T tokens of the longest prompt.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from leanlm.errors import InvalidArgumentError

Prompt = str | Sequence[int]


@dataclass
class PromptBatch:
    input_ids: torch.Tensor  # [B, T], left-padded
    attention_mask: torch.Tensor  # [B, T], 0 on padding

    @property
    def lengths(self) -> list[int]:
        return self.attention_mask.sum(dim=1).tolist()

    @property
    def has_padding(self) -> bool:
        return bool((self.attention_mask == 0).any())

    def position_ids(self) -> torch.Tensor:
        """Return the position of each token counted from its row's first real token; 0 on padding."""
        positions = self.attention_mask.long().cumsum(dim=-1) - 1  # [B, T]
        return positions.masked_fill(self.attention_mask == 0, 0)


def apply_chat_template(tokenizer: PreTrainedTokenizerBase, prompt: str, system: str | None = None) -> str:
    """Wrap a user message in the tokenizer's chat template, ending where the assistant starts."""
    if tokenizer.chat_template is None:
        name = tokenizer.name_or_path or type(tokenizer).__name__
        raise InvalidArgumentError(f"the tokenizer {name!r} has no chat template; pass raw text (no chat mode)")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    *,
    chat: bool = False,
    system: str | None = None,
) -> PromptBatch:
    """Tokenise text prompts (or take token ids as given) and left-pad them into one batch.

    A single string is one prompt. A flat list of ints is rejected because it is ambiguous: wrap one
    prompt's token ids in a list.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if any(isinstance(prompt, int) for prompt in prompts):
        raise InvalidArgumentError("prompts must be a list of prompts; wrap one prompt's token ids in a list")
    if len(prompts) == 0:
        raise InvalidArgumentError("no prompts given; pass at least one prompt")
    rows = [_encode_one(tokenizer, prompt, index, chat=chat, system=system) for index, prompt in enumerate(prompts)]

    width = max(len(row) for row in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, T]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, T]
    for b, row in enumerate(rows):
        input_ids[b, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[b, width - len(row) :] = 1
    return PromptBatch(input_ids=input_ids, attention_mask=attention_mask)


def _encode_one(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, index: int, *, chat: bool, system: str | None
) -> list[int]:
    if not isinstance(prompt, str):
        ids = [int(t) for t in prompt]
        if not ids:
            raise InvalidArgumentError(f"prompt {index} has no tokens; pass non-empty prompts")
        return ids

    if not prompt.strip():
        raise InvalidArgumentError(f"the prompt is empty (prompt {index}); pass some text to continue or answer")
    if chat:
        # The template already contains the special tokens the model expects.
        return tokenizer(apply_chat_template(tokenizer, prompt, system), add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]

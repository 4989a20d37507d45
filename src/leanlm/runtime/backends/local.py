"""A chat backend that runs a loaded model in this process through leanlm's generation loop."""

import logging
from collections.abc import Sequence

from jinja2.exceptions import TemplateError

from leanlm.errors import InvalidArgumentError
from leanlm.models.loader import LoadedModel
from leanlm.runtime.backends.base import ChatBackend, ChatReply, ChatRequest, check_requests
from leanlm.runtime.generate import generate
from leanlm.runtime.sampling import SamplingConfig

logger = logging.getLogger(__name__)

# `generate` finish reasons mapped to the OpenAI chat API's words.
_FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}


class LocalBackend(ChatBackend):
    """Chat generation with a `LoadedModel` and its tokenizer's chat template, up to `batch_size` rows per batch.

    Requests with different `max_new_tokens` or `temperature` never share a batch. The backend groups
    requests by those two settings (in order of first appearance) and splits each group into batches, so
    every request runs with exactly its own settings and no row generates past its own limit. The price is
    more, smaller batches when settings vary. Replies come back in request order.

    `seed` seeds each sampled `generate` call. Greedy requests (temperature 0) ignore it.
    """

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 8, seed: int | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        if loaded.tokenizer.chat_template is None:
            raise InvalidArgumentError(
                f"the tokenizer of {loaded.name!r} has no chat template, so it cannot serve chat requests; "
                "use an instruction-tuned model"
            )
        self.loaded = loaded
        self.batch_size = batch_size
        self.seed = seed

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        requests = check_requests(requests)
        replies: list[ChatReply | None] = [None] * len(requests)

        for (max_new_tokens, temperature), indexes in _group_by_settings(requests).items():
            config = SamplingConfig(
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=self.seed if temperature > 0 else None,
            )
            for start in range(0, len(indexes), self.batch_size):
                batch = indexes[start : start + self.batch_size]
                for index, reply in zip(batch, self._generate_batch(requests, batch, config)):
                    replies[index] = reply
        return replies

    def _generate_batch(
        self, requests: list[ChatRequest], batch: list[int], config: SamplingConfig
    ) -> list[ChatReply]:
        prompts = [self._encode(requests[index], index) for index in batch]
        logger.debug(
            "generating %d chat replies with %s (max_new_tokens=%d, temperature=%g)",
            len(batch), self.loaded.name, config.max_new_tokens, config.temperature,
        )
        generation = generate(self.loaded.model, self.loaded.tokenizer, prompts, config)
        return [
            ChatReply(
                text=generation.texts[row],
                input_tokens=int(generation.prompt_lengths[row]),
                output_tokens=len(generation.tokens[row]),
                finish_reason=_FINISH_REASONS[generation.finish_reasons[row]],
            )
            for row in range(len(batch))
        ]

    def _encode(self, request: ChatRequest, index: int) -> list[int]:
        """Return the token ids of the request's messages in the chat template, ending where the assistant starts."""
        tokenizer = self.loaded.tokenizer
        try:
            text = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        except TemplateError as err:
            raise InvalidArgumentError(
                f"the chat template of {self.loaded.name!r} rejected request {index}: {err}; "
                "check the roles and order of its messages"
            ) from err

        # The template already contains the special tokens the model expects.
        return tokenizer(text, add_special_tokens=False)["input_ids"]


def _group_by_settings(requests: list[ChatRequest]) -> dict[tuple[int, float], list[int]]:
    """Map each (max_new_tokens, temperature) pair to the indexes of its requests, in request order."""
    groups: dict[tuple[int, float], list[int]] = {}
    for index, request in enumerate(requests):
        key = (request.max_new_tokens, float(request.temperature))
        groups.setdefault(key, []).append(index)
    return groups

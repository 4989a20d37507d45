"""Per-row text of a generation: incremental detokenisation for streaming, and stop strings."""

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

REPLACEMENT_CHAR = "\ufffd"  # what a tokenizer decodes half of a multi-byte character to


@dataclass
class RowText:
    """The tokens and text generated so far for one batch row."""

    tokenizer: PreTrainedTokenizerBase
    stop_strings: tuple[str, ...] = ()
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # decoded text, cut before the first stop string once one appears
    emitted: int = 0  # characters already handed to the stream callback
    stopped: bool = False

    def append(self, token: int) -> str:
        """Add a token; return the new text safe to stream (nothing past a stop string or half a character)."""
        self.tokens.append(token)
        # NOTE: decoding every token of the row at each step costs O(n^2) over a generation; negligible next to
        # the forward pass for hundreds of tokens, not measured for generations of many thousands.
        self.text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)

        for stop in self.stop_strings:
            at = self.text.find(stop)
            if at != -1:
                self.text = self.text[:at]
                self.stopped = True
        return self._take_ready()

    def flush(self) -> str:
        """Return whatever text was held back, at the end of generation."""
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta

    def _take_ready(self) -> str:
        ready = len(self.text)
        if not self.stopped:
            # Hold back a trailing half character, then any tail of the rest that could start a stop string.
            if self.text.endswith(REPLACEMENT_CHAR):
                ready -= 1
            ready -= self._stop_prefix_length(self.text[:ready])
        ready = max(ready, self.emitted)
        delta = self.text[self.emitted : ready]
        self.emitted = ready
        return delta

    def _stop_prefix_length(self, text: str) -> int:
        longest = 0
        for stop in self.stop_strings:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    longest = max(longest, n)
                    break
        return longest

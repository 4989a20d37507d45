"""A tiny random-weight Llama and an in-memory byte-level BPE tokenizer for the generation loop tests."""

from collections.abc import Iterator

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TRAINING_TEXT = [
    "The river bends twice before it reaches the old mill, where the water slows and turns green.",
    "Every morning the baker lights the oven at five and sets the first loaves to rise by six.",
    "A small lighthouse stands on the rocks; its lamp turns once every twelve seconds all night.",
    "Children walk to school along the canal, counting the boats tied up under the bridges.",
    "In winter the hills go quiet, and the only sound is wind moving through the dry grass.",
    "The library opens at nine. Readers take the same chairs by the windows, day after day.",
    "She wrote the numbers 1, 2, 3 and 42 on the board, then asked who could add them up.",
    "Trains leave the station every quarter hour, heading north to the coast and south to the city.",
]

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]
VOCAB_SIZE = 400
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def build_tokenizer(chat_template: str | None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `TRAINING_TEXT` and wrap it with `<s>` prepended and left padding."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    bos_id = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos_id)])

    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
        chat_template=chat_template,
    )


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run the tiny model on one thread, because its matrices are too small to gain from more.

    With the default two threads on a shared 2-core machine, spinning OpenMP threads made one test take
    6 s instead of 0.2 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer(CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def plain_tokenizer() -> PreTrainedTokenizerFast:
    """The same tokenizer without a chat template."""
    return build_tokenizer(None)


@pytest.fixture(scope="session")
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    return build_llama(tokenizer)


def build_llama(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """Build a two-layer random-weight Llama whose BOS, EOS and padding ids match `tokenizer`."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    llama = LlamaForCausalLM(config).eval()
    llama.generation_config.eos_token_id = tokenizer.eos_token_id
    llama.generation_config.pad_token_id = tokenizer.pad_token_id
    llama.generation_config.bos_token_id = tokenizer.bos_token_id
    return llama


@pytest.fixture(scope="session")
def absolute_position_model(tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """A tiny random GPT-2, whose learned absolute position embeddings make every position id count.

    Rotary embeddings (Llama) depend only on the distance between positions, so a position error that
    shifts a whole row goes unnoticed there. The output head is untied from the input embeddings because
    a tied random GPT-2 repeats its last input token whatever the positions.
    """
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=256,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(config).eval()
    gpt2.generation_config.eos_token_id = tokenizer.eos_token_id
    gpt2.generation_config.pad_token_id = tokenizer.pad_token_id
    return gpt2


def cut_after_eos(tokens: list[int], eos_id: int) -> list[int]:
    """Return `tokens` up to and including the first `eos_id`, because transformers pads finished rows."""
    if eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1]
    return tokens


@pytest.fixture(scope="session")
def reference_tokens(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast):
    """Return a function running transformers' greedy `model.generate` on text or token-id prompts.

    The function runs the Llama fixture unless given another model, and returns each row's new tokens up to
    and including the first EOS of that model's generation config at the time of the call.
    """

    def run(prompts: list, max_new_tokens: int, reference_model=None) -> list[list[int]]:
        reference_model = reference_model or model
        if all(isinstance(prompt, str) for prompt in prompts):
            inputs = tokenizer(prompts, return_tensors="pt", padding=True)
        else:
            inputs = tokenizer.pad({"input_ids": [list(prompt) for prompt in prompts]}, return_tensors="pt")
        with torch.no_grad():
            output = reference_model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        eos_id = reference_model.generation_config.eos_token_id
        return [cut_after_eos(row, eos_id) for row in new_tokens]

    return run

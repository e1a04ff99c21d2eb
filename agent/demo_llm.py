"""A tiny Qwen2-architecture chat model for tests and the offline embedded demo.

The weights are random, so its text is gibberish, but everything around it is real: a
byte-level BPE tokenizer trained offline on a small zh/en/ja corpus, a ChatML chat template
honouring `enable_thinking`, a `generation_config.json` capping the reply length, all written
with `save_pretrained` and loadable by `AutoModelForCausalLM` / `AutoTokenizer` (and vLLM).
torch and transformers are imported inside the builder only.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# ChatML, as Qwen uses it. With enable_thinking=false an empty think block is pre-filled, as Qwen3 does.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful roleplay partner.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)

_CORPUS_LINES = [
    "你好，旅行者！今天想去哪里呢？", "我是纳西妲，须弥的小吉祥草王。", "知识就像种子，会在心里发芽。",
    "今天天气真好，我们一起去散步吧。", "别担心，我会一直陪着你的。", "这个问题很有意思，让我想一想。",
    "Hello, traveler! Welcome to the tavern.", "Would you like something warm to drink?",
    "The road north is dangerous after dark.", "I have heard rumours of a dragon in the hills.",
    "Sit down, rest your feet, and tell me your story.", "That will be three silver coins, friend.",
    "こんにちは、旅人さん。", "今日はいい天気ですね。", "一緒に散歩しましょう！", "知識は種のようなものです。",
    "ありがとう、また会いましょう。", "夢の中で会えるかな？",
    "（微笑着）嗯，我明白了。", "*smiles* Of course.", "[emotion:happy] 太好了！", "「早上好。」她轻声说道。",
    "1, 2, 3... 3.14, 10:30, 100%!", "Qwen, GPT-SoVITS, vLLM; OK?",
]


def demo_corpus() -> list[str]:
    """The built-in training text (repeated with small variations so BPE learns merges)."""
    lines = []
    for k in range(12):
        for i, line in enumerate(_CORPUS_LINES):
            lines.append(line if (i + k) % 3 else line + " " + _CORPUS_LINES[(i * 7 + k) % len(_CORPUS_LINES)])
    return lines


def build_tiny_chat_model(folder: str | Path, seed: int = 0, vocab_size: int = 1000, hidden_size: int = 64,
                          num_layers: int = 2, max_new_tokens: int = 64) -> Path:
    """Write a tiny random Qwen2 chat model (about 100k parameters) into `folder`; returns it.

    Deterministic: the same arguments write the same weights and tokenizer.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(demo_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE)
    fast.model_max_length = 2048
    fast.save_pretrained(folder)

    eos_id = fast.convert_tokens_to_ids("<|im_end|>")
    pad_id = fast.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=eos_id,
                         bos_token_id=pad_id, pad_token_id=pad_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # make <|im_end|> likely enough that replies end on their own now and then
        model.lm_head.weight[eos_id].mul_(4.0)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=pad_id,
                                               max_new_tokens=max_new_tokens, do_sample=True, temperature=0.8,
                                               top_p=0.95)
    model.save_pretrained(folder)
    return folder

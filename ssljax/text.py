"""Text: tokenizers (HF `tokenizers`: byte-level BPE, CLIP's and GPT-2's kind, where every string encodes; word-level
for word2vec), the synthetic captions of the digits, and the embedded text corpus.

The embedded corpus is real English prose that ships with every Python: the language reference's topic texts
(`pydoc_data.topics`, what `help("with")` prints), 79 topics and 465k characters.

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

PAD, EOS, MASK, UNK = "<pad>", "<eos>", "<mask>", "<unk>"  # Ids 0, 1, 2, 3 in the tokenizers trained here.
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


PYTHON_DOCS_BPE = "python_docs_bpe.json"  # BPE of the embedded corpus (BERT, GPT), vocabulary 2048.
PYTHON_DOCS_WORDS = "python_docs_words.json"  # Its words seen 5 times or more (word2vec); the rest UNK.
PYTHON_DOCS_TEST_FRACTION = 0.1  # The held-out tail of every topic's text.


def train_tokenizer(texts, vocab_size: int, kind: str = "bpe", lowercase: bool = True, mask: bool = False):
  """A `tokenizers.Tokenizer` trained on `texts` (deterministic: the same texts give the same file), with PAD = 0
  and EOS = 1 (then MASK = 2 with `mask`) and every encoding ending in EOS.

  kind "bpe": byte-level BPE (no unknown token). "words": word-level (words and punctuation marks split as
  BERT's pre-tokenizer does; at most the `vocab_size` most frequent, each seen at least 5 times as word2vec's
  `min_count`; the others UNK): word2vec's vocabulary."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

  specials = [PAD, EOS, *([MASK] if mask else [])]
  normalize = [normalizers.NFC(), *([normalizers.Lowercase()] if lowercase else [])]
  if kind == "words":
    specials.append(UNK)
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()  # Joins words with spaces.
    trainer = trainers.WordLevelTrainer(
      vocab_size=vocab_size, min_frequency=5, special_tokens=specials, show_progress=False
    )
  else:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
      vocab_size=vocab_size,
      special_tokens=specials,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
    )
  tokenizer.normalizer = normalizers.Sequence(normalize)
  tokenizer.train_from_iterator(texts, trainer)
  tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
  return tokenizer


def python_docs(split: str) -> list[tuple[str, str]]:
  """[(topic, text)] of the Python language reference's topics (`pydoc_data.topics`), sorted by topic: "train" is
  each topic's text up to the last whitespace before 90% of it, "test" the rest (a contiguous tail, so no held-out
  passage continues a training one, and every topic has both)."""
  from pydoc_data.topics import topics

  if split not in ("train", "test"):
    raise ValueError(f"python_docs has splits 'train' and 'test', not {split!r}")
  parts = []
  for topic, body in sorted(topics.items()):
    cut = int(len(body) * (1 - PYTHON_DOCS_TEST_FRACTION))
    cut = max(body.rfind(" ", 0, cut), body.rfind("\n", 0, cut), 1)
    parts.append((topic, body[:cut] if split == "train" else body[cut:]))
  return parts


def special_ids(tokenizer) -> list[int]:
  """The ids of the tokenizer's special tokens (PAD, EOS, MASK, UNK: no word; never masked or sampled)."""
  return sorted(tokenizer.get_added_tokens_decoder())


def mask_id(tokenizer) -> int:
  found = tokenizer.token_to_id(MASK)
  if found is None:
    raise ValueError(f"the tokenizer has no {MASK} token (masked language modelling needs one)")
  return found


def pack(texts, length: int, tokenizer) -> tuple[np.ndarray, np.ndarray]:
  """Packed fixed-length sequences: each text's ids (ending in EOS) cut into rows of `length`, the last row of each
  text padded with PAD = 0. Returns (int32 [rows, length], int32 [rows]: which text each row comes from)."""
  rows, owners = [], []
  for owner, encoding in enumerate(tokenizer.encode_batch(list(texts))):
    ids = np.asarray(encoding.ids, np.int32)
    for start in range(0, len(ids), length):
      row = np.zeros(length, np.int32)
      chunk = ids[start : start + length]
      row[: len(chunk)] = chunk
      rows.append(row)
      owners.append(owner)
  return np.stack(rows), np.asarray(owners, np.int32)


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


# Words whose nearest neighbours the word_vectors evaluator shows (common in the Python reference).
PROBE_WORDS = ("function", "class", "string", "list", "integer", "true", "error", "method", "loop", "file")
# Analogies a : b :: c : d for the word_vectors evaluator, hand-written for the Python reference's vocabulary
# (those with a word outside the vocabulary are left out and counted).
ANALOGIES = (
  ("function", "functions", "method", "methods"),
  ("class", "classes", "object", "objects"),
  ("list", "lists", "tuple", "tuples"),
  ("key", "keys", "value", "values"),
  ("argument", "arguments", "statement", "statements"),
  ("module", "modules", "type", "types"),
  ("string", "strings", "number", "numbers"),
  ("name", "names", "attribute", "attributes"),
  ("true", "false", "and", "or"),
  ("first", "last", "start", "end"),
  ("get", "set", "getattr", "setattr"),
  ("integer", "int", "string", "str"),
  ("integer", "int", "boolean", "bool"),
  ("int", "float", "integer", "floating"),
  ("read", "write", "input", "output"),
  ("positional", "keyword", "position", "name"),
)


def token_id(tokenizer, word: str) -> int | None:
  """The id of `word` when it is one token of `tokenizer` (a word-level entry, or a byte-level BPE token with or
  without its leading space), else None."""
  for form in (word, " " + word):
    ids = tokenizer.encode(form, add_special_tokens=False).ids
    if len(ids) == 1:
      return ids[0]
  return None


EMBEDDED_TOKENIZERS = {
  DIGITS_TOKENIZER: lambda: train_tokenizer(digits_corpus(), vocab_size=512),
  PYTHON_DOCS_BPE: lambda: train_tokenizer(
    [body for _, body in python_docs("train")], 2048, lowercase=False, mask=True
  ),
  PYTHON_DOCS_WORDS: lambda: train_tokenizer([body for _, body in python_docs("train")], 4096, kind="words", mask=True),
}


def to_json(tokenizer) -> str:
  return json.dumps(json.loads(tokenizer.to_str()), indent=1, sort_keys=True) + "\n"


def tfds_texts(name: str, feature: str, data_dir=None, split: str = "train", max_documents: int = 0):
  """The strings of `feature` in a prepared tfds dataset's split, in order (the first `max_documents`)."""
  import tensorflow_datasets as tfds

  from ssljax import data

  documents = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  count = min(len(documents), max_documents) if max_documents else len(documents)
  for index in range(count):
    yield " ".join(data.feature_texts(documents[index], feature.split("/")))


def main(argv=None):
  """Without flags: writes the embedded tokenizers (offline, deterministic; tests check the committed files equal
  fresh ones). With --tfds NAME: trains one on a prepared tfds text dataset (BPE with MASK, cased) and writes it to
  --output, for `config.text.tokenizer`."""
  import argparse

  parser = argparse.ArgumentParser(prog="python -m ssljax.text", description=main.__doc__)
  parser.add_argument("--tfds", help="a prepared tfds dataset to train on")
  parser.add_argument("--feature", default="text", help="its text feature")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--vocab_size", type=int, default=32000)
  parser.add_argument("--max_documents", type=int, default=0, help="train on the first N documents (0: all)")
  parser.add_argument("--output", help="where to write the tokenizer JSON")
  args = parser.parse_args(argv)
  if args.tfds:
    if not args.output:
      parser.error("--output: where to write the tokenizer")
    texts = tfds_texts(args.tfds, args.feature, args.data_dir, max_documents=args.max_documents)
    tokenizer = train_tokenizer(texts, args.vocab_size, lowercase=False, mask=True)
    with open(args.output, "w") as f:
      f.write(to_json(tokenizer))
    print(f"wrote {args.output}: {tokenizer.get_vocab_size()} tokens")
    return
  for name, train in EMBEDDED_TOKENIZERS.items():
    tokenizer = train()
    path = _asset(name)
    path.write_text(to_json(tokenizer))
    print(f"wrote {path}: {tokenizer.get_vocab_size()} tokens")


if __name__ == "__main__":
  main()

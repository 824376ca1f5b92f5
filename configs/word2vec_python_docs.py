r"""word2vec (skip-gram, negative sampling) on the embedded text corpus (the Python reference's topics; see
gpt_python_docs.py), over its words: a word-level vocabulary of the words seen at least 5 times (1282, trained
offline: `python -m ssljax.text`). Minutes on a 2-core CPU.

  python -m ssljax.train --config configs/word2vec_python_docs.py --workdir /tmp/ssljax/word2vec_python_docs
  python -m ssljax.train --config configs/word2vec_python_docs.py:runlocal --workdir /tmp/ssljax/word2vec_smoke

word2vec.c's defaults for skip-gram: 100 dimensions, window 5 (reduced at random per centre word), 5 noise words
from unigram^0.75, subsampling t = 1e-3. word2vec.c runs SGD on one pair at a time with a learning rate falling
linearly from 0.025; here a step averages the loss over every pair of 32 rows (about 20,000 pairs) and Adam
replaces its SGD.

Evaluation: nearest neighbours and analogies of the word vectors (WORKDIR/word_neighbours.txt), a t-SNE of the 300
most frequent words (WORKDIR/word_vectors_tsne.png), and the topic probe on the rows' mean word vectors.

Expected (2-core CPU, 1 min 33 s with evaluation, measured 2026-12-05): neighbours such as class -> subclass,
derived, instance, inherits, base and true -> false; 2 of 16 analogies (0 for random vectors); topic probe
(linear) 0.386 vs 0.345 for bag-of-words and 0.276 for random vectors (benchmarks/RESULTS.md).
"""

from configs import gpt_python_docs
from ssljax import text


def get_config(arg: str = ""):
  config = gpt_python_docs.get_config()
  config.method = "word2vec"
  config.text = dict(tokenizer=text.PYTHON_DOCS_WORDS, context_length=config.text.context_length)
  config.word2vec = dict(dim=100, window=5, negatives=5, subsample=1e-3, noise_power=0.75)
  config.optimizer.update(base_lr=1e-2, weight_decay=0.0, b2=0.999, warmup_steps=0)
  del config.evals["perplexity"]
  del config.evals["samples"]
  config = gpt_python_docs.with_args(config, arg)
  if "runlocal" in arg.split(","):
    config.word2vec.dim = 16
  return config

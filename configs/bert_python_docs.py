r"""BERT-style masked language modelling on the embedded text corpus (the Python reference's topics; see
gpt_python_docs.py for the data and the evaluation). Minutes on a 2-core CPU.

  python -m ssljax.train --config configs/bert_python_docs.py --workdir /tmp/ssljax/bert_python_docs
  python -m ssljax.train --config configs/bert_python_docs.py:runlocal --workdir /tmp/ssljax/bert_python_docs_smoke

The same transformer as GPT's, bidirectional, with BERT's head and init; 15% of the tokens selected, of those 80%
MASK / 10% a random word / 10% unchanged, loss on the selected ones only. AdamW (0.9, 0.999), weight decay 0.01
(BERT's), warmup then cosine, 100 epochs (2909 steps): a row gives BERT 15% of GPT's predictions, and at 30 epochs
it had barely left the unigram plateau (masked perplexity 462 vs 593). Perplexity is on masked positions (masks
drawn as in training with a fixed seed).

Expected (2-core CPU, 22 min with evaluation, measured 2026-12-05): masked-token perplexity 301 vs 593 for the
unigram model on the same positions; topic probe (linear) 0.506 vs 0.402 for bag-of-tokens and 0.421 for the
random transformer (benchmarks/RESULTS.md).
"""

from configs import gpt_python_docs


def get_config(arg: str = ""):
  config = gpt_python_docs.get_config()
  config.method = "bert"
  config.text.causal = False
  config.bert = dict(mask_rate=0.15, mask_token_rate=0.8, random_token_rate=0.1)
  config.optimizer.update(b2=0.999, weight_decay=0.01)
  config.epochs = 100
  del config.evals["samples"]  # Not a causal model.
  return gpt_python_docs.with_args(config, arg)

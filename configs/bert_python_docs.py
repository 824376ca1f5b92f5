r"""BERT-style masked language modelling on the embedded text corpus (the Python reference's topics; see
gpt_python_docs.py for the data and the evaluation). Minutes on a 2-core CPU.

  python -m ssljax.train --config configs/bert_python_docs.py --workdir /tmp/ssljax/bert_python_docs
  python -m ssljax.train --config configs/bert_python_docs.py:runlocal --workdir /tmp/ssljax/bert_python_docs_smoke

The same transformer as GPT's, bidirectional, with BERT's head and init; 15% of the tokens selected, of those 80%
MASK / 10% a random word / 10% unchanged, loss on the selected ones only. AdamW (0.9, 0.999), weight decay 0.01
(BERT's), warmup then cosine. Perplexity is on masked positions (masks drawn as in training with a fixed seed).

Expected: see benchmarks/RESULTS.md (text methods table).
"""

from configs import gpt_python_docs


def get_config(arg: str = ""):
  config = gpt_python_docs.get_config()
  config.method = "bert"
  config.text.causal = False
  config.bert = dict(mask_rate=0.15, mask_token_rate=0.8, random_token_rate=0.1)
  config.optimizer.update(b2=0.999, weight_decay=0.01)
  del config.evals["samples"]  # Not a causal model.
  return gpt_python_docs.with_args(config, arg)

r"""BERT-base's transformer (Devlin et al. 2019: 12 blocks, width 768, 12 heads, BERT's init and MLM head) trained by
masked language modelling (15%; 80 / 10 / 10) on a tfds text corpus by name, with BERT's optimizer: Adam (0.9,
0.999), weight decay 0.01, lr 1e-4, 10k warmup steps, batch 256 rows of 512 tokens.

  python -m ssljax.prepare lm1b   # once, offline afterwards
  python -m ssljax.text --tfds lm1b --vocab_size 32000 --max_documents 2000000 --output lm1b_bpe32k.json
  python -m ssljax.train --config configs/bert_base_lm1b.py --config.text.tokenizer=lm1b_bpe32k.json \
    --workdir gs://BUCKET/bert_base_lm1b

Differences from BERT: rows of 512 tokens throughout (BERT trained 90% of its steps at 128), a byte-level BPE of
32k (BERT: WordPiece, 30,522), no next-sentence prediction (as RoBERTa), dynamic masking (as RoBERTa), pre-norm
blocks, no dropout, and a cosine schedule where BERT decays linearly.

Expected: held-out masked-token perplexity far below the unigram model's; not measured here.
"""

from configs import gpt2_small_lm1b, gpt_python_docs


def get_config(arg: str = ""):
  config = gpt2_small_lm1b.get_config()
  config.method = "bert"
  config.text.update(context_length=512, causal=False)
  del config.evals["samples"]  # Not a causal model.
  config.bert = dict(mask_rate=0.15, mask_token_rate=0.8, random_token_rate=0.1)
  config.batch_size = 256
  config.total_steps = 1_000_000
  config.optimizer.update(base_lr=1e-4, b2=0.999, weight_decay=0.01, warmup_steps=10_000, end_lr_ratio=0.0)
  return gpt_python_docs.with_args(config, arg)

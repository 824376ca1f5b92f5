r"""GPT-2 small's transformer (Radford et al. 2019: 12 blocks, width 768, 12 heads, context 1024, GPT-2's init, tied
output layer) trained by next-token prediction on a tfds text corpus by name, with GPT-3 small's optimizer
(Brown et al. 2020, table 2.1: AdamW (0.9, 0.95), weight decay 0.1, lr 6e-4, 0.5M-token batches, warmup, cosine
to 10%).

  python -m ssljax.prepare lm1b   # once, offline afterwards
  python -m ssljax.text --tfds lm1b --vocab_size 32000 --max_documents 2000000 --output lm1b_bpe32k.json
  python -m ssljax.train --config configs/gpt2_small_lm1b.py --config.text.tokenizer=lm1b_bpe32k.json \
    --workdir gs://BUCKET/gpt2_small_lm1b

The tokenizer is a byte-level BPE of 32k trained on the corpus (the default, the embedded corpus's 2048-token BPE,
only makes the config build) (GPT-2's own has 50,257 tokens; any HF `tokenizers`
JSON works). lm1b's sentences are shuffled, so a 1024-token row spans unrelated sentences (each ends in EOS);
`--config.dataset.name=wikipedia/20230601.en` gives long documents. Differences from GPT-2: pre-norm blocks with
LayerNorm eps 1e-6 and exact GELU (ours), no dropout.

Expected: held-out perplexity far below the unigram model's (`perplexity` evaluator); not measured here.
"""

from configs import gpt_python_docs
from ssljax import text


def get_config(arg: str = ""):
  config = gpt_python_docs.get_config()
  config.dataset.update(name="lm1b", text_feature="text", max_documents=0)
  # The embedded corpus's BPE only makes the config build: pass the corpus's own (see the docstring).
  config.text = dict(tokenizer=text.PYTHON_DOCS_BPE, context_length=1024, width=768, depth=12, num_heads=12)
  config.dtype = "bfloat16"
  config.batch_size = 512  # x 1024 tokens: GPT-3 small's 0.5M tokens per step.
  config.total_steps = 100_000
  config.optimizer.update(base_lr=6e-4, warmup_steps=2000, end_lr_ratio=0.1)
  config.log_every = 100
  config.checkpoint_every = 2000
  config.eval_batch_size = 256
  config.eval_baselines = ()  # lm1b has no labels: no probe, no baselines to compare features with.
  config.evals = dict(
    perplexity=dict(type="perplexity", max_examples=20_000, seed=0, every_steps=10_000),
    words=dict(config.evals.words, plot_words=500),
    samples=dict(config.evals.samples, samples_per_prompt=4, every_steps=10_000),
  )
  return gpt_python_docs.with_args(config, arg)

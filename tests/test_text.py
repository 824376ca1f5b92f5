"""Self-supervision on text (GPT, BERT, word2vec): the embedded corpus and its packing, BERT's masking statistics,
the losses against NumPy, the causal mask by gradients, word2vec's pairs, noise and subsampling, and the text
evaluators. The methods' 8 == 1 device, NaN and resume tests are in test_methods.py."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssljax
from configs import bert_python_docs, gpt_python_docs, word2vec_python_docs
from ssljax import baselines, config_checks, data, experiment, losses, text
from ssljax.config import ConfigError
from ssljax.evaluators import perplexity, word_vectors
from ssljax.methods import bert, language, word2vec
from ssljax.models.language import LanguageModel, TextTransformer, sample


def test_python_docs_split_is_each_topics_tail_and_classes_are_the_large_topics():
  train, test = text.python_docs("train"), text.python_docs("test")
  from pydoc_data.topics import topics

  assert [t for t, _ in train] == [t for t, _ in test] == sorted(topics)
  for (topic, head), (_, tail) in zip(train, test, strict=True):
    assert head + tail == topics[topic] and head and tail
    assert 0.85 * len(topics[topic]) <= len(head) <= 0.9 * len(topics[topic]) + 1
  config = gpt_python_docs.get_config()
  source = data.load_source(config.dataset, "train", config.text)
  test_source = data.load_source(config.dataset, "test", config.text)
  assert source.tokens.shape == (931, 128) and test_source.tokens.shape == (164, 128)
  counts = np.bincount(source.labels, minlength=source.num_classes)
  assert source.class_names[-1] == "other" and len(source.class_names) == source.num_classes == 26
  assert counts[:-1].min() >= data.MIN_TOPIC_ROWS and "specialnames" in source.class_names
  assert set(np.unique(test_source.labels)) <= set(range(source.num_classes))
  batch = source.get(np.arange(3))
  assert batch["text"].dtype == np.int32 and batch["text"].shape == (3, 128)


def test_pack_cuts_each_text_into_rows_ending_in_eos_and_padded_with_zero():
  tokenizer = text.load_tokenizer(text.PYTHON_DOCS_BPE)
  texts = ["The with statement", "x " * 11]
  ids = [tokenizer.encode(t).ids for t in texts]
  assert ids[0][-1] == text.eos_id(tokenizer) == 1 and len(ids[1]) > 8
  rows, owners = text.pack(texts, 8, tokenizer)
  expected = [ids[0] + [0] * (8 - len(ids[0]))]
  second = ids[1] + [0] * (-len(ids[1]) % 8)
  expected += [second[i : i + 8] for i in range(0, len(second), 8)]
  np.testing.assert_array_equal(rows, expected)
  np.testing.assert_array_equal(owners, [0] + [1] * (len(expected) - 1))


def test_bert_masking_selects_15_percent_of_words_then_80_10_10():
  vocab, specials, mask_id = 2048, (0, 1, 2), 2
  tokens = jax.random.randint(jax.random.key(0), (256, 512), 3, vocab)
  tokens = tokens.at[:, -40:].set(0).at[:, 100].set(1)  # PAD tails and an EOS: never selected.
  corrupt = jax.jit(lambda key, t: bert.mask_tokens(key, t, special_ids=specials, vocab_size=vocab, mask_id=mask_id))
  corrupted, selected = map(np.asarray, corrupt(jax.random.key(1), tokens))
  tokens = np.asarray(tokens)
  words = ~np.isin(tokens, specials)
  assert not selected[~words].any() and (corrupted[~words] == tokens[~words]).all()
  assert (corrupted[~selected] == tokens[~selected]).all()
  n = selected.sum()
  assert abs(n / words.sum() - 0.15) < 0.003  # 0.15 +- 6 binomial sigmas.
  masked = corrupted[selected] == mask_id
  kept = corrupted[selected] == tokens[selected]
  replaced = ~masked & ~kept
  assert abs(masked.mean() - 0.8) < 0.01 and abs(kept.mean() - 0.1) < 0.008 and abs(replaced.mean() - 0.1) < 0.008
  assert not np.isin(corrupted[selected][replaced], specials).any()  # Random words are words.


def test_token_cross_entropy_equals_numpy_and_ignores_unweighted_positions():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  targets = rng.integers(0, 7, (3, 5))
  weights = rng.random((3, 5)) < 0.4
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.sum(np.take_along_axis(log_probs, targets[..., None], -1)[..., 0] * weights) / weights.sum()
  value, grad = jax.jit(jax.value_and_grad(losses.token_cross_entropy))(logits, targets, weights)
  np.testing.assert_allclose(value, expected, rtol=1e-6)
  assert np.all(np.asarray(grad)[~weights] == 0) and np.all(np.abs(np.asarray(grad)[weights]).sum(-1) > 0)
  softmax = np.exp(log_probs)
  onehot = np.eye(7)[targets]
  np.testing.assert_allclose(grad, (softmax - onehot) * weights[..., None] / weights.sum(), atol=1e-7)


def _pos_embed_jacobian(causal: bool):
  """d (the hidden features at position t along a fixed direction) / d (position embedding row s), as a [T, S]
  matrix of gradient norms."""
  model = TextTransformer(50, 6, 16, 2, 2, causal=causal, init_scheme="gpt2", pool="mean")
  tokens = jnp.asarray([[5, 9, 7, 3, 11, 4]])
  params = nn.meta.unbox(model.init(jax.random.key(0), tokens))["params"]
  direction = jax.random.normal(jax.random.key(1), (16,))

  def hidden(pos_embed, t):
    variables = {"params": {**params, "pos_embed": pos_embed}}
    # A random direction: the plain sum of a LayerNorm's outputs is 0 whatever its input.
    return jnp.dot(model.apply(variables, tokens, train=False, method="sequence")[0, t], direction)

  rows = [jax.grad(hidden)(params["pos_embed"], t) for t in range(6)]
  return np.stack([np.linalg.norm(np.asarray(r), axis=1) for r in rows])


def test_causal_transformer_position_t_has_no_gradient_from_later_positions():
  causal = _pos_embed_jacobian(True)
  assert np.all(causal[np.triu_indices(6, 1)] == 0) and np.all(causal[np.tril_indices(6)] > 0)
  assert np.all(_pos_embed_jacobian(False) > 0)  # BERT's: every position reads every other.


def test_gpt_predicts_each_next_token_and_never_pad():
  tokens = jnp.asarray([[5, 6, 7, 1, 0, 0], [8, 9, 1, 10, 11, 1]])
  targets, weights = language.next_tokens(tokens)
  np.testing.assert_array_equal(targets, [[6, 7, 1, 0, 0, 0], [9, 1, 10, 11, 1, 0]])
  np.testing.assert_array_equal(weights, [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])


def test_language_model_heads_and_init_follow_gpt2_and_bert():
  tokens = jnp.ones((2, 8), jnp.int32)
  inputs = {"tokens": tokens, "targets": tokens, "weights": tokens}
  for head, scheme in (("tied", "gpt2"), ("mlm", "bert")):
    encoder = TextTransformer(4096, 8, 256, 8, 4, causal=head == "tied", init_scheme=scheme, pool="mean")
    params = LanguageModel(encoder, head).init(jax.random.key(0), inputs)["params"]
    params = jax.tree.map(lambda x: getattr(x, "value", x), params, is_leaf=lambda x: hasattr(x, "value"))
    assert ("output_bias" in params) == (head == "mlm")
    block = params["encoder"]["transformer"]["blocks_0"]
    residual = 0.02 / np.sqrt(16) if scheme == "gpt2" else 0.02
    np.testing.assert_allclose(np.std(params["encoder"]["token_embed"]["embedding"]), 0.02, rtol=0.02)
    np.testing.assert_allclose(np.std(block["fc1"]["kernel"]), 0.02, rtol=0.02)
    np.testing.assert_allclose(np.std(block["fc2"]["kernel"]), residual, rtol=0.02)
    np.testing.assert_allclose(np.std(block["attn"]["proj"]["kernel"]), residual, rtol=0.05)


def test_skipgram_loss_equals_numpy_with_its_gradient():
  rng = np.random.default_rng(0)
  positive, negative = rng.normal(size=(4, 6)), rng.normal(size=(4, 6, 3))
  pair_w, neg_w = (rng.random((4, 6)) < 0.7).astype(np.float32), (rng.random((4, 6, 3)) < 0.9).astype(np.float32)

  def log_sigmoid(x):
    return -np.log1p(np.exp(-x))

  per_pair = -(log_sigmoid(positive) + np.sum(log_sigmoid(-negative) * neg_w, -1))
  expected = np.sum(per_pair * pair_w) / pair_w.sum()
  loss = jax.jit(jax.value_and_grad(losses.skipgram_negative_sampling_loss, argnums=(0, 1)))
  value, (grad_pos, grad_neg) = loss(positive.astype(np.float32), negative.astype(np.float32), pair_w, neg_w)
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  sigmoid = 1 / (1 + np.exp(-positive))
  np.testing.assert_allclose(grad_pos, -(1 - sigmoid) * pair_w / pair_w.sum(), atol=1e-6)
  np.testing.assert_allclose(
    grad_neg, (1 / (1 + np.exp(-negative))) * neg_w * pair_w[..., None] / pair_w.sum(), atol=1e-6
  )


def test_word2vec_keep_probability_and_noise_follow_word2vec_c():
  counts = np.array([50, 7, 0, 1000, 10, 0, 30])  # Ids 0 and 1 special, 2 and 5 unseen.
  keep = word2vec.keep_probabilities(counts, (0, 1), 1e-2)
  f = counts[3] / 1040
  np.testing.assert_allclose(keep[3], (np.sqrt(f / 1e-2) + 1) * 1e-2 / f, rtol=1e-6)
  np.testing.assert_array_equal(keep[[0, 1, 2, 5]], 0)
  assert keep[3] < keep[6] <= keep[4] == 1.0
  cdf = word2vec.noise_cdf(counts, (0, 1), 0.75)
  weights = np.array([0, 0, 0, 1000**0.75, 10**0.75, 0, 30**0.75])
  np.testing.assert_allclose(np.diff(cdf, prepend=0), weights / weights.sum(), rtol=1e-5, atol=1e-7)
  noise = word2vec.skipgram_pairs(
    jax.random.key(0),
    jnp.full((64, 32), 3),
    keep=jnp.ones(7),
    cdf=jnp.asarray(cdf),
    special_ids=(0, 1),
    window=2,
    negatives=8,
  )["negatives"]
  frequencies = np.bincount(np.asarray(noise).ravel(), minlength=7) / noise.size
  np.testing.assert_allclose(frequencies, weights / weights.sum(), atol=0.01)


def test_word2vec_pairs_skip_removed_words_and_stay_in_each_centres_window():
  """Words removed (special tokens here) close up before the windows are formed, as word2vec.c drops them from the
  sentence; every pair lies within its centre's window and every adjacent pair of kept words is taken."""
  row = np.array([7, 8, 1, 9, 0, 10, 11, 0])  # EOS (1) and PAD (0) are removed: words 7 8 9 10 11.
  pairs = jax.jit(
    lambda key: word2vec.skipgram_pairs(
      key, jnp.asarray(row)[None], keep=jnp.ones(12), cdf=jnp.linspace(0.1, 1, 12), special_ids=(0, 1),
      window=2, negatives=1,
    )
  )(jax.random.key(3))  # fmt: skip
  centres, contexts, weights = (np.asarray(pairs[k][0]) for k in ("centres", "contexts", "pair_weights"))
  taken = {(int(c), int(o)) for c, o, w in zip(centres, contexts, weights, strict=True) if w}
  words = [7, 8, 9, 10, 11]
  allowed = {(a, b) for i, a in enumerate(words) for j, b in enumerate(words) if 0 < abs(i - j) <= 2}
  adjacent = {(a, b) for i, a in enumerate(words) for j, b in enumerate(words) if abs(i - j) == 1}
  assert adjacent <= taken <= allowed
  assert weights.sum() == len(taken)  # Each pair once.


def test_bag_of_tokens_and_unigram_baselines_on_hand_made_rows():
  config = gpt_python_docs.get_config()
  featurize = baselines.bag_of_tokens(config)
  features = np.asarray(featurize(jnp.asarray([[5, 5, 7, 1, 0, 0], [9, 2, 0, 0, 0, 0]])))
  assert features.shape == (2, 2048)
  assert features[0, 5] == pytest.approx(2 / 3) and features[0, 7] == pytest.approx(1 / 3)
  assert features[1, 9] == 1.0 and features[:, :3].sum() == 0  # PAD, EOS and MASK are no words.
  log_p = perplexity.unigram_log_probs(np.array([100, 3, 1, 0]))
  np.testing.assert_allclose(np.exp(log_p), [1 / 8, 4 / 8, 2 / 8, 1 / 8], rtol=1e-6)


def test_analogies_by_3cosadd_on_hand_made_vectors():
  vectors = word_vectors.unit_rows(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [0.2, 0.9, 0.1]]))
  assert word_vectors.analogy_accuracy(vectors, [(0, 1, 2, 3)], specials=set()) == 1.0
  assert word_vectors.analogy_accuracy(vectors, [(0, 1, 2, 4)], specials=set()) == 0.0
  assert word_vectors.nearest(vectors, vectors[1], {1}, 2) == [4, 0]


@pytest.mark.parametrize(
  ("change", "message"),
  [
    (lambda c: c.update(method="simclr"), "config.method: 'simclr' trains on images, but config.dataset is a text"),
    (lambda c: c.dataset.update(max_documents=-1), "config.dataset.max_documents"),
    (lambda c: c.text.__delitem__("width"), "config.text.width: missing"),
    (lambda c: c.update(eval_baselines=("raw_pixels",)), "config.eval_baselines"),
    (lambda c: c.evals.update(z=dict(type="zero_shot")), "config.evals.z: zero_shot evaluates images"),
    (lambda c: c.dataset.update(worker_processes=2), "config.dataset.worker_processes: text is read from its token"),
  ],
)
def test_text_config_errors_name_the_key(change, message):
  config = gpt_python_docs.get_config("runlocal")
  change(config)
  with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
    config_checks.validate(config)


def test_config_errors_for_the_methods_sections():
  config = bert_python_docs.get_config("runlocal")
  config.text.causal = True
  with pytest.raises(ConfigError, match=r"config\.text\.causal: True, but method 'bert' is causal=False"):
    experiment.train_and_evaluate(config, "/tmp/never-written")
  config = word2vec_python_docs.get_config("runlocal")
  config.word2vec.window = 0
  with pytest.raises(ConfigError, match=r"config\.word2vec\.window: 0 must be at least 1"):
    experiment.train_and_evaluate(config, "/tmp/never-written")
  config = gpt_python_docs.get_config("runlocal")
  config.evals = {"p": dict(type="perplexity")}
  config.method, config.word2vec = "word2vec", dict(dim=8, window=2, negatives=2, subsample=0.0, noise_power=0.75)
  with pytest.raises(ConfigError, match=r"config\.evals\.p: perplexity needs a language model"):
    config_checks.validate(config)


@pytest.mark.parametrize(
  "name", ["gpt", *(pytest.param(m, marks=pytest.mark.slow) for m in ("bert", "word2vec"))]
)  # GPT's run goes through every text evaluator; BERT and word2vec run the same path (slow, for CI's budget).
def test_end_to_end_text_run_beats_its_baselines_where_it_should(name, tmp_path):
  """The smoke config through `python -m ssljax.train`'s path: training, perplexity against the unigram model, the
  topic probe, and the word-vector report and picture."""
  module = {"gpt": gpt_python_docs, "bert": bert_python_docs, "word2vec": word2vec_python_docs}[name]
  config = module.get_config("runlocal")
  config.total_steps = 40
  config.optimizer.warmup_steps = 5
  config.evals.linear.steps = 50
  results = experiment.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  losses_logged = [row["loss"] for row in rows if "loss" in row]
  assert losses_logged[-1] < losses_logged[0]
  if name != "word2vec":
    vocab = 2048
    assert results["perplexity/ssl/test"] < vocab and 50 < results["perplexity/unigram/test"] < vocab
  if name == "gpt":
    assert 0 < results["samples/ssl/distinct_tokens"] <= 1
    assert (tmp_path / "samples.txt").read_text().count(" -> ") == 6  # 3 prompts x 2 samples.
  assert 0 < results["linear_fast/ssl/all"] <= 1 and 0 < results["linear_fast/bag_of_tokens/all"] <= 1
  encoder, variables, preprocess = ssljax.load_encoder(str(tmp_path))  # The trained encoder outside ssljax.
  features = np.asarray(encoder.apply(variables, preprocess(["def f(): pass", "class C: pass"]), train=False))
  assert features.shape[0] == 2 and np.isfinite(features).all() and not np.allclose(features[0], features[1])
  report = (tmp_path / "word_neighbours.txt").read_text()
  assert "function:" in report and "[random_init]" in report
  assert (tmp_path / "word_vectors_tsne.png").stat().st_size > 1000


def test_a_tfds_text_dataset_is_tokenised_once_packed_across_documents_and_cached(tmp_path):
  """The tests' tfds text dataset (`tests/tiny_tfds.py`), prepared as ArrayRecord: its documents, each ending in
  EOS, joined and cut into full rows, written once to a token file that later loads read."""
  from ssljax import prepare
  from tests import tiny_tfds

  prepare.prepare(tiny_tfds.TEXT_NAME, str(tmp_path))
  config = gpt_python_docs.get_config("runlocal")
  config.dataset.update(name=tiny_tfds.TEXT_NAME, data_dir=str(tmp_path), text_feature="text")
  source = data.load_source(config.dataset, "train", config.text)
  tokenizer = text.load_tokenizer(config.text.tokenizer)
  import tensorflow_datasets as tfds

  stored = tfds.data_source(tiny_tfds.TEXT_NAME, split="train", data_dir=str(tmp_path))
  documents = [stored[i]["text"].decode() for i in range(len(stored))]  # In the order tfds stored them.
  assert sorted(documents) == sorted(
    f"document {i} says: the number {text.DIGIT_NAMES[i % 10]} and some words" for i in range(64)
  )
  stream = np.concatenate([tokenizer.encode(d).ids for d in documents])
  length = config.text.context_length
  np.testing.assert_array_equal(
    source.get(np.arange(len(source)))["text"], stream[: len(stream) // length * length].reshape(-1, length)
  )
  assert source.num_classes == 0 and (source.labels == -1).all()
  (cache,) = (tmp_path / "ssljax_tokens").iterdir()
  assert cache.name.startswith(f"{tiny_tfds.TEXT_NAME}-train-L{length}-")
  cache.write_bytes(cache.read_bytes())  # Rewritten, not re-tokenised: a second load reads this file.
  again = data.load_source(config.dataset, "train", config.text)
  assert isinstance(again.tokens, np.memmap)
  np.testing.assert_array_equal(again.tokens, source.tokens)
  config.dataset.max_documents = 8
  few = data.load_source(config.dataset, "train", config.text)
  assert len(few) < len(source) and len(list((tmp_path / "ssljax_tokens").iterdir())) == 2


def test_sampling_draws_from_the_tempered_softmax_and_greedy_decoding_is_its_argmax():
  logits = jnp.log(jnp.asarray([0.5, 0.3, 0.15, 0.05]))
  predict = lambda tokens: jnp.broadcast_to(logits, (*tokens.shape, 4))  # noqa: E731
  prompt = jnp.zeros((20_000, 3), jnp.int32).at[:, 0].set(3)
  rows = np.asarray(jax.jit(lambda k: sample(predict, prompt, 1, k, temperature=0.5))(jax.random.key(0)))
  assert (rows[:, 0] == 3).all()  # The prompt is kept.
  tempered = np.asarray([0.5, 0.3, 0.15, 0.05]) ** 2
  frequencies = np.bincount(rows[:, 1:].ravel(), minlength=4) / rows[:, 1:].size
  np.testing.assert_allclose(frequencies, tempered / tempered.sum(), atol=0.01)
  model = LanguageModel(TextTransformer(40, 8, 16, 2, 2, causal=True, init_scheme="gpt2", pool="mean"))
  tokens = jnp.asarray([[5, 7, 9, 0, 0, 0, 0, 0]])
  variables = model.init(jax.random.key(0), {"tokens": tokens, "targets": tokens, "weights": tokens})
  apply = jax.jit(lambda t: model.apply(variables, t, method="predict"))
  greedy = sample(apply, tokens, 3, jax.random.key(1), temperature=0.0)
  expected = np.array(tokens)
  for t in range(3, 8):  # One token at a time, each the argmax after the tokens before it.
    expected[0, t] = int(np.argmax(apply(jnp.asarray(expected))[0, t - 1]))
  np.testing.assert_array_equal(greedy, expected)


def test_bert_method_predicts_the_original_tokens_at_the_selected_positions_only():
  from ssljax.methods import BuildInfo, build_method

  method = build_method(bert_python_docs.get_config("runlocal"), BuildInfo(0))
  config = gpt_python_docs.get_config("runlocal")
  tokens = jnp.asarray(data.load_source(config.dataset, "train", config.text).get(np.arange(64))["text"])
  inputs = jax.jit(method.make_inputs)({"text": tokens}, jax.random.key(0))
  np.testing.assert_array_equal(inputs["targets"], tokens)
  selected = np.asarray(inputs["weights"])
  assert 0.1 < selected.sum() / (np.asarray(tokens) > 2).sum() < 0.2
  assert (np.asarray(inputs["tokens"])[~selected] == np.asarray(tokens)[~selected]).all()
  logits = jax.random.normal(jax.random.key(1), (*tokens.shape, 2048))

  def loss(logits):
    return method.loss({"logits": logits, "targets": inputs["targets"], "weights": inputs["weights"]}, {}, 0)[0]

  grad = np.abs(np.asarray(jax.grad(loss)(logits))).sum(-1)
  assert (grad[~selected] == 0).all() and (grad[selected] > 0).all()

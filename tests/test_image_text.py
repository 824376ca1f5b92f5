"""The pieces of CLIP and SigLIP around their losses: the tokenizer, the captioned data, the text tower's causal
mask, the learnable scalars, zero-shot classification and retrieval recall."""

import copy
import importlib.resources
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import clip_digits, siglip_digits
from ssljax import data, experiment, prepare, text, train_step
from ssljax.config import ConfigError
from ssljax.evaluators import zero_shot
from ssljax.methods import clip
from ssljax.models import vit
from ssljax.models.two_tower import TextTransformer
from tests import tiny_tfds


@pytest.mark.parametrize("name", sorted(text.EMBEDDED_TOKENIZERS))
def test_committed_tokenizers_are_what_training_them_again_gives(name):
  """Trained offline (`python -m ssljax.text`) and deterministic: the files in ssljax/assets are reproducible."""
  committed = (importlib.resources.files("ssljax") / "assets" / name).read_text()
  assert json.loads(committed) == json.loads(text.EMBEDDED_TOKENIZERS[name]().to_str())


def test_tokenize_ends_in_eos_pads_with_zero_and_keeps_eos_when_cut():
  tokenizer = text.load_tokenizer()
  eos = tokenizer.token_to_id(text.EOS)
  assert (tokenizer.token_to_id(text.PAD), eos) == (0, 1)
  ids = tokenizer.encode("a photo of the number seven.").ids
  assert ids[-1] == eos and 0 not in ids
  rows = text.tokenize(["a photo of the number seven.", "A PHOTO of the number seven."], 16)
  np.testing.assert_array_equal(rows[0], ids + [0] * (16 - len(ids)))
  np.testing.assert_array_equal(rows[1], rows[0])  # Lower-cased.
  short = text.tokenize(["a photo of the number seven."], 4)[0]
  np.testing.assert_array_equal(short, ids[:3] + [eos])
  assert tokenizer.decode(ids[:-1]) == "a photo of the number seven."


def _captioned(split="train"):
  config = clip_digits.get_config("runlocal")
  return config, data.load_source(config.dataset, split, config.text)


def test_captions_are_the_label_through_a_template_drawn_per_step_and_example():
  config, source = _captioned()
  indices = np.arange(40)
  batch = source.get_for_step(indices, step=3)
  captions = {
    tuple(text.tokenize([t.format(text.DIGIT_NAMES[label])], 16)[0]): (label, t)
    for label in range(10)
    for t in text.CAPTION_TEMPLATES
  }
  drawn = [captions[tuple(row)] for row in batch["text"]]  # Every row is one of the label's captions.
  assert [label for label, _ in drawn] == list(batch["label"])
  assert len({t for _, t in drawn}) > 3  # Templates vary over examples...
  np.testing.assert_array_equal(source.get_for_step(indices, step=3)["text"], batch["text"])  # ...deterministically,
  assert not np.array_equal(source.get_for_step(indices, step=4)["text"], batch["text"])  # and change per step.
  np.testing.assert_array_equal(source.get_for_step(indices[7:9], step=3)["text"], batch["text"][7:9])  # Any slice.
  test = data.load_source(config.dataset, "test", config.text)
  template = text.CAPTION_TEMPLATES[5 % len(text.CAPTION_TEMPLATES)]
  label = test.get(np.array([5]))["label"][0]
  np.testing.assert_array_equal(
    test.get(np.array([5]))["text"][0], text.tokenize([template.format(text.DIGIT_NAMES[label])], 16)[0]
  )


def test_captions_without_a_text_section_or_class_names_are_one_line_errors():
  config = clip_digits.get_config("runlocal")
  with pytest.raises(ConfigError, match="config.text"):
    data.load_source(config.dataset, "train", None)
  config.dataset.captions = "web"
  with pytest.raises(ConfigError, match="config.dataset.captions"):
    data.load_source(config.dataset, "train", config.text)


@pytest.mark.parametrize("causal", [True, False])
def test_text_transformer_is_causal_by_gradients(causal):
  """With the causal mask, output position t does not depend on inputs after t (and does on t and before)."""
  transformer = vit.Transformer(depth=2, num_heads=2, causal=causal)
  x = jax.random.normal(jax.random.key(0), (1, 6, 8))
  params = transformer.init(jax.random.key(1), x, train=False)

  @jax.jit
  def influences(inputs):  # [t, s]: how much output t moves with input s.
    jacobian = jax.jacrev(lambda v: transformer.apply(params, v, train=False)[0])(inputs)  # [6, 8, 1, 6, 8]
    return jnp.abs(jacobian[:, :, 0]).sum(axis=(1, 3))

  table = np.asarray(influences(x))
  for t in range(6):
    influence = table[t]
    assert np.all(influence[: t + 1] > 0)
    if causal:
      np.testing.assert_array_equal(influence[t + 1 :], 0.0)
    else:
      assert np.all(influence > 0)


def test_text_features_are_read_at_eos_and_ignore_the_padding_after_it():
  model = TextTransformer(vocab_size=40, context_length=8, width=16, depth=1, num_heads=2, causal=True)
  tokens = jnp.array([[5, 6, 1, 0, 0, 0, 0, 0], [5, 6, 1, 9, 9, 9, 9, 9]])  # Same text; junk after EOS.
  params = model.init(jax.random.key(0), tokens)
  apply = jax.jit(lambda t: model.apply(params, t, train=False))
  features = apply(tokens)
  np.testing.assert_allclose(features[0], features[1], rtol=1e-5, atol=1e-6)
  other = apply(jnp.array([[5, 7, 1, 0, 0, 0, 0, 0], [5, 6, 1, 0, 0, 0, 0, 0]]))
  assert not np.allclose(other[0], features[0])


def test_learnable_scalars_start_at_the_papers_values():
  """CLIP: logit scale log(1 / 0.07); SigLIP: t' = log 10, b = -10."""
  for module, expected in (
    (clip_digits, {"logit_scale": np.log(1 / 0.07)}),
    (siglip_digits, {"t_prime": np.log(10.0), "bias": -10.0}),
  ):
    config = module.get_config("runlocal,train_only")
    source = data.load_source(config.dataset, "train", config.text)
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:1])
    trainer = train_step.build_trainer(config, mesh, len(source), source.num_classes)
    params = trainer.make_state(0).params["model"]
    for name, value in expected.items():
      np.testing.assert_allclose(params[name], value, rtol=1e-6)


def test_clip_clamps_the_logit_scale_at_log_100_after_every_update():
  params = {"model": {"logit_scale": jnp.float32(5.0), "w": jnp.float32(5.0)}}
  clamped, _ = clip.clamp_logit_scale(params, {}, 0, None, maximum=100.0)
  np.testing.assert_allclose(clamped["model"]["logit_scale"], np.log(100.0), rtol=1e-6)
  assert float(clamped["model"]["w"]) == 5.0
  low, _ = clip.clamp_logit_scale({"logit_scale": jnp.float32(-1.0)}, {}, 0, None, maximum=100.0)
  assert float(low["logit_scale"]) == 0.0


def test_recall_at_k_by_hand():
  """Query 0's relevant item ranks 1st, query 1's 2nd, query 2's 3rd: recall@1 1/3, @2 2/3, @3 1."""
  similarity = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.9, 0.8, 0.7]])
  recalls = zero_shot.recall_at_k(similarity, np.eye(3, dtype=bool), (1, 2, 3))
  np.testing.assert_allclose([recalls[1], recalls[2], recalls[3]], [1 / 3, 2 / 3, 1.0])
  # Identical captions count alike: query 1 whose caption equals item 0's hits at rank 1.
  relevant = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], bool)
  assert zero_shot.recall_at_k(similarity, relevant, (1,))[1] == pytest.approx(2 / 3)


def test_class_embeddings_average_the_normalised_prompts_and_renormalise():
  table = {3: [1.0, 0.0], 4: [0.0, 1.0], 5: [0.6, 0.8]}  # A "text tower" from the first token id to a unit row.

  def embed_text(tokens):
    return np.array([table[int(row[0]) % 3 + 3] for row in tokens])

  class FakeTokenizer:
    def token_to_id(self, token):
      return 1

    def encode_batch(self, texts):
      return [type("E", (), {"ids": [len(t), 1]}) for t in texts]

  classes = zero_shot.class_embeddings(embed_text, ("a", "bb"), ("{}", "x{}"), 4, FakeTokenizer())
  # Class "a": prompts "a" (len 1 -> row 4) and "xa" (len 2 -> row 5); class "bb": "bb" (5) and "xbb" (3).
  expected = np.array([[0.6, 1.8], [1.6, 0.8]])
  np.testing.assert_allclose(classes, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_captions(tmp_path_factory):
  """The tests' tfds image-text dataset (`tests/tiny_tfds.py`), prepared as ArrayRecord; a captioned config on it."""
  data_dir = tmp_path_factory.mktemp("tfds")
  prepare.prepare(tiny_tfds.CAPTIONS_NAME, str(data_dir))
  config = clip_digits.get_config("runlocal")
  config.dataset.update(
    name=tiny_tfds.CAPTIONS_NAME,
    data_dir=str(data_dir),
    image_size=tiny_tfds.SIDE,
    captions="feature",
    caption_feature="captions/text",
  )
  config.text.context_length = 32  # The whole caption (the byte-level BPE of the digits splits its digits).
  return config


def test_a_tfds_dataset_with_a_caption_feature_gives_one_of_its_captions_per_example(tiny_captions):
  """Read by name: each example's "text" is one of its own captions, drawn per (step, example); no labels, so no
  classes for zero-shot."""
  config = tiny_captions
  source = data.load_source(config.dataset, "train", config.text)
  assert source.num_classes == 0 and source.class_names is None
  indices = np.arange(12)
  raw, batch = source.source.get(indices), source.get_for_step(indices, step=2)
  assert batch["image"].shape == (12, tiny_tfds.SIDE, tiny_tfds.SIDE, 1) and "captions" not in batch
  drawn = []
  for row, captions in zip(batch["text"], raw["captions"], strict=True):
    matches = [c for c in captions if np.array_equal(row, text.tokenize([c], 32)[0])]
    assert len(matches) == 1
    drawn.append(captions.index(matches[0]))
  assert len(set(drawn)) > 1  # Different captions for different examples.
  np.testing.assert_array_equal(source.get_for_step(indices, step=2)["text"], batch["text"])
  bad = copy.deepcopy(config)  # The fixture is shared.
  bad.dataset.caption_feature = "no_such/text"
  with pytest.raises(ConfigError, match="config.dataset.caption_feature"):
    data.load_source(bad.dataset, "train", bad.text)


def test_clip_trains_on_unlabelled_image_text_pairs_and_reports_retrieval(tiny_captions, tmp_path):
  """The whole run on the tfds pairs: no labels, so no online probe and no label-reading evaluators; retrieval
  recall on the test pairs."""
  config = clip_digits.get_config("runlocal")
  config.dataset, config.text = tiny_captions.dataset, tiny_captions.text
  config.batch_size, config.total_steps = 16, 4
  config.eval_batch_size = 24
  config.eval_baselines = ()
  config.evals = {"zero_shot": config.evals.zero_shot}
  results = experiment.train_and_evaluate(config, str(tmp_path))
  assert "zero_shot/ssl/accuracy" not in results
  recalls = [results[f"retrieval/{d}/recall@{k}"] for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
  assert all(0.0 <= r <= 1.0 for r in recalls) and recalls[2] >= recalls[1] >= recalls[0]


def test_text_tower_starts_from_clips_initialisation():
  """openai/CLIP's `initialize_parameters` for width 64 and 4 layers: qkv std 64^-0.5 = 0.125, attention output and
  MLP output 0.125 x 8^-0.5 = 0.0442, MLP input 128^-0.5 = 0.0884; token embedding 0.02, positions 0.01."""
  model = TextTransformer(vocab_size=512, context_length=16, width=64, depth=4, num_heads=4)
  params = nn.meta.unbox(model.init(jax.random.key(0), jnp.ones((1, 16), jnp.int32)))["params"]
  block = params["transformer"]["blocks_2"]
  expected = {
    "qkv": (block["attn"]["qkv"]["kernel"], 0.125),
    "proj": (block["attn"]["proj"]["kernel"], 0.125 / np.sqrt(8)),
    "fc1": (block["fc1"]["kernel"], 128**-0.5),
    "fc2": (block["fc2"]["kernel"], 0.125 / np.sqrt(8)),
    "tokens": (params["token_embed"]["embedding"], 0.02),
    "positions": (params["pos_embed"], 0.01),
  }
  for name, (value, std) in expected.items():
    value = np.asarray(value)
    assert abs(value.mean()) < 0.1 * std and abs(value.std() / std - 1) < 0.05, (name, value.std(), std)
  assert np.all(np.asarray(block["fc1"]["bias"]) == 0)

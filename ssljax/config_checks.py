"""The keys a config may hold, their types, and the combinations that cannot work: checked by `validate` before
any data is read or anything compiles, each failure one line naming the key (docs/input_validation.md)."""

import json
import types

import jax

from ssljax.config import ConfigError, require_choice

NUMBER = (int, float)
OPTIONAL_INT = (int, types.NoneType)
OPTIONAL_NUMBER = (int, float, types.NoneType)


class Optional:
  """A key that may be absent (its default then applies)."""

  def __init__(self, kind):
    self.kind = kind


class ByName:
  """A section whose keys depend on its `name` (or `type`) key: {choice: {key: type}}."""

  def __init__(self, key: str, choices: dict):
    self.key, self.choices = key, choices


class Entries:
  """A section of entries under any names, each checked against one schema (e.g. `config.evals`)."""

  def __init__(self, schema):
    self.schema = schema


AUGMENT = {
  "crop_scale": tuple,
  "crop_ratio": tuple,
  "flip_prob": NUMBER,
  "jitter_prob": NUMBER,
  "jitter_strength": NUMBER,
  "grayscale_prob": NUMBER,
  "blur_prob": NUMBER,
  "blur_sigma": tuple,
  "solarize_prob": NUMBER,
  "jitter": Optional((tuple, types.NoneType)),  # (brightness, contrast, saturation, hue) magnitudes.
  "jitter_brightness": Optional(str),  # augment.JITTER_BRIGHTNESS
  "jitter_saturation": Optional(str),  # augment.JITTER_SATURATION
  "blur_padding": Optional(str),  # augment.BLUR_PADDING
}
AUGMENT_OVERRIDES = {key: Optional(kind.kind if isinstance(kind, Optional) else kind) for key, kind in AUGMENT.items()}
PROBABILITIES = ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob")
_SCHEDULE = {
  "name": str,
  "base_lr": NUMBER,
  "lr_scaling": str,
  "weight_decay": NUMBER,
  "warmup_steps": int,
  "warmup_epochs": Optional(NUMBER),  # Instead of warmup_steps: follows --config.batch_size.
  # "cosine" (default) | "constant" | "steps" (x 0.1 at each of decay_epochs) | "linear_decay" (constant until
  # decay_start_epoch, then linearly to 0 at the end: CycleGAN's).
  "schedule": Optional(str),
  "decay_epochs": Optional(tuple),
  "decay_start_epoch": Optional(NUMBER),
  "end_lr_ratio": Optional(NUMBER),  # Where the cosine ends, as a fraction of the peak (0 unless set).
  "norm_and_bias_base_lr": Optional(NUMBER),  # Biases and norm parameters at their own base lr (Barlow Twins).
}
_DECAY = {"no_decay": Optional(tuple), "layer_decay": Optional(NUMBER), "decay_norm_and_bias": Optional(bool)}
OPTIMIZER = ByName(
  "name",
  {
    "lars": {
      **_SCHEDULE,
      **_DECAY,
      "momentum": Optional(NUMBER),
      "trust_coefficient": Optional(NUMBER),
      "lr_after_momentum": Optional(bool),  # p -= lr (m v + u) (BYOL, MoCo v3, MAE) rather than v = m v + lr u.
    },
    "sgd": {**_SCHEDULE, **_DECAY, "momentum": Optional(NUMBER), "nesterov": Optional(bool)},
    "adamw": {**_SCHEDULE, **_DECAY, "b1": Optional(NUMBER), "b2": Optional(NUMBER), "eps": Optional(NUMBER)},
  },
)
_EVERY = {"type": str, "every_steps": Optional(int)}
HEAD_INIT = (int, float, str)  # A std, or "fan_in".
# Fine-tuning sets its warmup with the evaluator's `warmup_epochs`.
_FINETUNE_OPTIMIZER = ByName(
  "name",
  {
    k: {**{n: t for n, t in v.items() if n != "warmup_epochs"}, "warmup_steps": Optional(int)}
    for k, v in OPTIMIZER.choices.items()
  },
)
_BUDGETS = {"label_budgets": Optional(tuple), "seed": Optional(int)}
# What a supervised run on top of the encoder trains with (fine-tuning, LoRA, self-training, linear evaluation).
_TRAINING = {
  "batch_size": int,
  "epochs": NUMBER,
  "max_steps": Optional(int),  # A cap on the optimizer steps (0: none), whatever the dataset's size.
  "warmup_epochs": Optional(NUMBER),
  "optimizer": _FINETUNE_OPTIMIZER,
  "augment": Optional(AUGMENT_OVERRIDES),  # Overrides of config.augment.
}
_FINETUNING = {**_EVERY, **_BUDGETS, **_TRAINING, "drop_path": Optional(NUMBER), "label_smoothing": Optional(NUMBER)}
EVALUATOR = ByName(
  "type",
  {
    "linear_probe": {**_EVERY, **_BUDGETS, "steps": Optional(int)},
    "knn": {**_EVERY, "ks": Optional(tuple), "temperature": Optional(NUMBER)},
    "fewshot": {**_EVERY, "shots": Optional(tuple), "l2_reg": Optional(NUMBER), "seeds": Optional(tuple)},
    "finetune": {**_FINETUNING, "baselines": Optional(tuple), "scratch_optimizer": Optional(_FINETUNE_OPTIMIZER)},
    "lora_finetune": {**_FINETUNING, "rank": int, "alpha": NUMBER},
    "self_training": {
      **_FINETUNING,
      "threshold": NUMBER,
      "top_fraction": Optional(NUMBER),
      "student_epochs": NUMBER,
      "crops": Optional(tuple),
      "flip": Optional(bool),
    },
    "linear_eval": {
      **_EVERY,
      **_BUDGETS,
      **_TRAINING,
      "protocol": str,
      "baselines": Optional(tuple),
      "head_norm": bool,
      "head_init_std": HEAD_INIT,
      "model": Optional({"cls_blocks": Optional(int), "patch_mean": Optional(bool)}),  # The features it reads.
    },
    "embedding_plot": {
      **_EVERY,
      "methods": Optional(tuple),
      "features": Optional(tuple),
      "max_points": Optional(int),
      "seed": Optional(int),
    },
    "zero_shot": {**_EVERY, "templates": Optional(tuple), "ks": Optional(tuple), "max_examples": Optional(int)},
    "perplexity": {**_EVERY, "max_examples": Optional(int), "seed": Optional(int)},
    "samples": {
      **_EVERY,
      "prompts": Optional(tuple),
      "temperature": Optional(NUMBER),
      "samples_per_prompt": Optional(int),
      "seed": Optional(int),
    },
    "word_vectors": {
      **_EVERY,
      "words": Optional(tuple),
      "neighbours": Optional(int),
      "plot_words": Optional(int),
      "seed": Optional(int),
    },
    "reconstruction": {
      **_EVERY,
      "num_images": Optional(int),
      "mask_ratio": Optional(OPTIONAL_NUMBER),
      "seed": Optional(int),
    },
    "inpainting": {**_EVERY, "num_images": Optional(int), "seed": Optional(int)},
    "colorization": {**_EVERY, "num_images": Optional(int)},
    "likelihood": {**_EVERY},
    "pixelcnn_samples": {
      **_EVERY,
      "num_images": Optional(int),
      "num_scored": Optional(int),
      "temperature": Optional(NUMBER),
      "seed": Optional(int),
    },
    "gan_samples": {**_EVERY, "num_images": Optional(int), "num_scored": Optional(int), "seed": Optional(int)},
    "cyclegan_translations": {
      **_EVERY,
      "num_images": Optional(int),
      "paired_test": Optional(bool),
      "keeps_class": Optional(bool),
    },
    "autoencoder_pictures": {
      **_EVERY,
      "num_images": Optional(int),
      "steps": Optional(int),
      "traversal_dims": Optional(int),
      "max_points": Optional(int),
      "num_scored": Optional(int),
      "seed": Optional(int),
    },
  },
)
SCHEMA = {
  "method": str,
  "seed": int,
  "dtype": str,
  "online_probe": Optional(bool),
  "mesh": Optional(tuple),  # ((axis name, size), ...); see ssljax.sharding.
  "dataset": {
    "name": str,
    "train_split": str,
    "test_split": str,
    "image_size": Optional(int),  # Images (required for image datasets).
    "channels": Optional(int),
    "data_dir": Optional((str, types.NoneType)),
    "skip_bad_files": Optional(bool),  # "folder": skip (and count) unreadable images instead of stopping.
    "center_crop": Optional(NUMBER),  # Images: shorter side to image_size / center_crop, centre crop (0.875: ImageNet).
    "host_crops": Optional(bool),  # The train step's views cut on the host from the full images (tfds, "folder").
    "host_resize": Optional(str),  # Their resize: "bilinear" (tf.image.resize's, no antialiasing) or "area".
    "worker_processes": Optional(int),  # > 0: training batches read in that many processes (data.load_in_order).
    # batch["text"]: "label_templates" (synthetic captions of the labels) or "feature" (a tfds dataset's own
    # `caption_feature`, e.g. "captions/text" of coco_captions); see data.CaptionedSource.
    "captions": Optional(str),
    "caption_feature": Optional(str),
    # Text datasets ("python_docs", or a tfds dataset whose `text_feature` is read): see data.load_text_source.
    "text_feature": Optional(str),
    "max_documents": Optional(int),  # Tokenise at most this many documents of a tfds text dataset (0: all).
    # A second, unpaired image domain (CycleGAN): batch["image_b"] from this dataset's matching split, read at the
    # same image_size and channels (data.UnpairedSource).
    "domain_b": Optional(
      {"name": str, "train_split": str, "test_split": str, "data_dir": Optional((str, types.NoneType))}
    ),
  },
  # The tokenizer and the text transformer: CLIP's and SigLIP's text tower, GPT's and BERT's transformer
  # (context_length: the rows of packed text); word2vec reads only the tokenizer and the row length.
  "text": Optional(
    {
      "tokenizer": str,
      "context_length": int,
      "width": Optional(int),
      "depth": Optional(int),
      "num_heads": Optional(int),
      "causal": Optional(bool),
    }
  ),
  "model": Optional(
    ByName(
      "name",
      {
        "resnet": {
          "name": str,
          "depth": int,
          "width": NUMBER,
          "small_stem": bool,
          "conv_init": Optional(str),
          "zero_init_residual": Optional(bool),  # Each block's last BatchNorm scale starts at 0 (default) or 1.
          "normalization": Optional(str),  # "batch" (default) | "layer" (CPC v2's patch encoder).
        },
        "vit": {
          "name": str,
          "variant": str,
          "width": Optional(OPTIONAL_INT),
          "depth": Optional(OPTIONAL_INT),
          "num_heads": Optional(OPTIONAL_INT),
          "patch_size": int,
          "pool": Optional(str),
          "drop_path": Optional(NUMBER),
          "learned_pos_embed": Optional(bool),
          "lora": Optional({"rank": int, "alpha": NUMBER}),
          "qkv_init": Optional(str),  # "fused" (MAE) | "separate" (moco-v3): Xavier over [D, 3D] or 3 x [D, D].
          "cls_token_std": Optional(NUMBER),
          "cls_blocks": Optional(int),  # Features: the class tokens of the last n blocks (DINO's linear evaluation).
          "patch_mean": Optional(bool),  # ... and the mean of the last block's patch tokens.
        },
      },
    )
  ),
  "simclr": Optional(
    {
      "temperature": NUMBER,
      "proj_dim": int,
      "proj_layers": int,
      "proj_hidden_dim": Optional(OPTIONAL_INT),
      "proj_init_std": Optional(OPTIONAL_NUMBER),
      "block_size": Optional(OPTIONAL_INT),
    }
  ),
  "mae": Optional(
    {"mask_ratio": NUMBER, "norm_pix": bool, "decoder_width": int, "decoder_depth": int, "decoder_heads": int}
  ),
  "supervised": Optional(
    {
      "label_smoothing": NUMBER,
      "frozen_encoder": Optional(bool),
      "head_norm": Optional(bool),
      "head_init_std": Optional(HEAD_INIT),
    }
  ),
  "augment": Optional(AUGMENT),  # Images (required for image datasets).
  # Per-view overrides of `augment` (BYOL's asymmetric views) and multi-crop (DINO): see augment.view_configs.
  "views": Optional({"view1": Optional(AUGMENT_OVERRIDES), "view2": Optional(AUGMENT_OVERRIDES)}),
  "multicrop": Optional({"num_local": int, "local_size": int, **AUGMENT_OVERRIDES}),
  "batch_size": int,
  "epochs": NUMBER,
  "total_steps": Optional(int),
  "optimizer": OPTIMIZER,
  "log_every": int,
  "checkpoint_every": int,
  "keep_checkpoints": int,
  "max_nonfinite_steps": Optional(int),
  "max_rollbacks": Optional(int),
  "eval_batch_size": int,
  "train_eval_examples": Optional(int),  # Evaluators due during training see at most this many per split.
  "eval_baselines": tuple,
  "evals": Entries(EVALUATOR),
}


TEXT_EVALUATORS = ("perplexity", "word_vectors", "samples")
FEATURE_EVALUATORS = ("linear_probe", "knn", "fewshot", "embedding_plot")  # Frozen features of any data.


def _type_name(kind) -> str:
  kinds = kind if isinstance(kind, tuple) else (kind,)
  return " or ".join("None" if k is types.NoneType else k.__name__ for k in kinds)


def _check_value(value, kind, key: str):
  if isinstance(kind, Optional):
    kind = kind.kind
  if isinstance(kind, dict | ByName | Entries):
    if not hasattr(value, "items"):
      raise ConfigError(f"{key}: expected a section (dict), got {type(value).__name__} {value!r}")
    _check_section(value, kind, key)
    return
  kinds = kind if isinstance(kind, tuple) else (kind,)
  wrong_bool = isinstance(value, bool) and bool not in kinds  # bool is an int subclass; True is no batch size.
  if wrong_bool or not isinstance(value, kinds):
    raise ConfigError(f"{key}: expected {_type_name(kind)}, got {type(value).__name__} {value!r}")


def _check_section(section, schema, key: str):
  if isinstance(schema, Entries):
    for name, value in section.items():
      _check_value(value, schema.schema, f"{key}.{name}")
    return
  if isinstance(schema, ByName):
    choice = section.get(schema.key)
    if choice is None:
      raise ConfigError(f"{key}.{schema.key}: missing")
    schema = schema.choices[require_choice(choice, schema.choices, f"{key}.{schema.key}")]
  for name, value in section.items():
    if name not in schema:
      raise ConfigError(f"{key}.{name}: unknown key (known: {', '.join(sorted(schema))})")
    _check_value(value, schema[name], f"{key}.{name}")
  for name, kind in schema.items():
    if name not in section and not isinstance(kind, Optional):
      raise ConfigError(f"{key}.{name}: missing")


def _positive(config, key: str, minimum: int = 1):
  value = config
  for part in key.split("."):
    value = value[part]
  if value < minimum:
    raise ConfigError(f"config.{key}: {value} must be at least {minimum}")


def _probability(value, key: str):
  if not 0 <= value <= 1:
    raise ConfigError(f"{key}: {value} is not a probability in [0, 1]")


def method_schemas() -> dict:
  """{method: the schema of its config section}, from the `SCHEMA` each method module may define."""
  import importlib

  from ssljax import methods

  schemas = {}
  for name in methods.registry():
    schema = getattr(importlib.import_module(f"ssljax.methods.{name}"), "SCHEMA", None)
    if schema is not None:
      schemas[name] = schema
  return schemas


def _check_augment(section, key: str):
  from ssljax import augment

  for name in PROBABILITIES:
    if name in section:
      _probability(section[name], f"{key}.{name}")
  choices = {
    "jitter_brightness": augment.JITTER_BRIGHTNESS,
    "jitter_saturation": augment.JITTER_SATURATION,
    "blur_padding": augment.BLUR_PADDING,
  }
  for name, allowed in choices.items():
    if section.get(name) is not None:
      require_choice(section[name], allowed, f"{key}.{name}")
  jitter = section.get("jitter")
  if jitter is not None and (len(jitter) != 4 or any(not isinstance(m, NUMBER) or m < 0 for m in jitter)):
    raise ConfigError(
      f"{key}.jitter: {jitter!r} must be 4 non-negative magnitudes (brightness, contrast, saturation, hue)"
    )


def _check_schedule(optimizer, key: str):
  from ssljax.optim import SCHEDULES

  require_choice(optimizer.get("schedule", "cosine"), SCHEDULES, f"{key}.schedule")
  decay_epochs = optimizer.get("decay_epochs", ())
  if any(not isinstance(e, NUMBER) or e < 0 for e in decay_epochs):
    raise ConfigError(f"{key}.decay_epochs: {decay_epochs!r} must be epochs (numbers >= 0)")
  if optimizer.get("schedule") == "steps" and not decay_epochs:
    raise ConfigError(f"{key}.decay_epochs: schedule 'steps' needs the epochs at which the lr drops x 0.1")
  decay_start = optimizer.get("decay_start_epoch")
  if (decay_start is not None) != (optimizer.get("schedule") == "linear_decay"):
    raise ConfigError(f"{key}.decay_start_epoch: set it with schedule 'linear_decay', and only then")
  if decay_start is not None and decay_start < 0:
    raise ConfigError(f"{key}.decay_start_epoch: {decay_start} must be at least 0")
  if decay_start is not None and (optimizer.get("warmup_steps") or optimizer.get("warmup_epochs")):
    raise ConfigError(f"{key}.schedule: 'linear_decay' has no warmup; set warmup_steps and warmup_epochs to 0")
  end_lr_ratio = optimizer.get("end_lr_ratio")
  if end_lr_ratio is not None and not 0 <= end_lr_ratio <= 1:
    raise ConfigError(f"{key}.end_lr_ratio: {end_lr_ratio} must be in [0, 1] (the cosine's end over its peak)")
  norm_and_bias_lr = optimizer.get("norm_and_bias_base_lr")
  if norm_and_bias_lr is not None and norm_and_bias_lr < 0:
    raise ConfigError(f"{key}.norm_and_bias_base_lr: {norm_and_bias_lr} must be at least 0")


def method_data(name: str) -> str:
  """What a method trains on: "text" for the methods whose module says `DATA = "text"`, else "images"."""
  import importlib

  return getattr(importlib.import_module(f"ssljax.methods.{name}"), "DATA", "images")


TRANSFORMER_KEYS = ("width", "depth", "num_heads")


def _check_text(config):
  """The tokenizer and the text transformer (CLIP, SigLIP, GPT, BERT; word2vec has no transformer)."""
  from ssljax import text

  section = config.text
  needs_transformer = config.method != "word2vec"
  for key in TRANSFORMER_KEYS:
    if section.get(key) is None and needs_transformer:
      raise ConfigError(f"config.text.{key}: missing (method {config.method!r} has a text transformer)")
    if section.get(key) is not None:
      _positive(config, f"text.{key}")
  if needs_transformer and section.width % section.num_heads:
    raise ConfigError(f"config.text.width: {section.width} is not divisible by num_heads {section.num_heads}")
  if section.context_length < 2:
    raise ConfigError(f"config.text.context_length: {section.context_length} leaves no room for a token and EOS")
  if not text.tokenizer_exists(section.tokenizer):
    raise ConfigError(f"config.text.tokenizer: no file {section.tokenizer!r} (in ssljax/assets or on disk)")


def _check_data(config):
  """Images or text: the dataset, the method and the sections each needs agree."""
  from ssljax import data

  text_data = data.is_text(config.dataset)
  wanted = method_data(config.method)
  if (wanted == "text") != text_data:
    kind = "a text" if text_data else "an image"
    raise ConfigError(f"config.method: {config.method!r} trains on {wanted}, but config.dataset is {kind} dataset")
  if text_data:
    if config.get("text") is None:
      raise ConfigError(f"config.text: missing (text dataset {config.dataset.name!r} needs a tokenizer)")
    if (config.dataset.get("max_documents") or 0) < 0:
      raise ConfigError(f"config.dataset.max_documents: {config.dataset.max_documents} must be at least 0 (0: all)")
    return
  for key in ("model", "augment", "dataset.image_size", "dataset.channels"):
    section, _, name = key.rpartition(".")
    if (config[section] if section else config).get(name) is None:
      raise ConfigError(f"config.{key}: missing")  # Image datasets need them.
  for key in ("image_size", "channels"):
    _positive(config, f"dataset.{key}")


def validate(config):
  """Raises ConfigError (one line naming the key) for unknown keys, wrong types and impossible combinations."""
  from ssljax import data, evaluators, methods, sharding

  method_sections = method_schemas()
  _check_section(config, {**SCHEMA, **{name: Optional(schema) for name, schema in method_sections.items()}}, "config")
  require_choice(config.method, methods.registry(), "config.method")
  _check_data(config)
  require_choice(config.dtype, ("float32", "bfloat16"), "config.dtype")
  needs_section = ("simclr", "mae", *method_sections)
  if config.method in needs_section and config.method not in config:
    raise ConfigError(f"config.{config.method}: missing (method {config.method!r} needs its section)")
  for key in ("batch_size", "eval_batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "seed"):
    _positive(config, key, minimum=0 if key == "seed" else 1)
  if not 0 < config.dataset.get("center_crop", 1.0) <= 1:
    raise ConfigError(f"config.dataset.center_crop: {config.dataset.center_crop} is not a fraction in (0, 1]")
  require_choice(config.dataset.get("host_resize", "bilinear"), data.HOST_RESIZES, "config.dataset.host_resize")
  if config.dataset.get("worker_processes", 0) < 0:
    raise ConfigError(f"config.dataset.worker_processes: {config.dataset.worker_processes} is negative (0: none)")
  if config.dataset.get("worker_processes") and data.is_text(config.dataset):
    raise ConfigError(
      "config.dataset.worker_processes: text is read from its token file in the training process (0 here); each"
      " worker would receive a copy of it"
    )
  if config.dataset.get("host_crops") and config.dataset.name in ("digits", "sample_photos", "npz"):
    raise ConfigError(
      f"config.dataset.host_crops: {config.dataset.name!r} holds no full-size images to crop (a tfds or 'folder' "
      "dataset does)"
    )
  if bool(config.dataset.get("domain_b")) != (config.method == "cyclegan"):
    raise ConfigError(
      f"config.dataset.domain_b: {config.method!r} "
      + ("translates between two domains and needs it" if config.method == "cyclegan" else "reads one domain")
    )
  if config.dataset.get("domain_b") and config.dataset.get("host_crops"):
    raise ConfigError("config.dataset.host_crops: not with a second domain (domain_b); images are read whole")
  if config.get("train_eval_examples") is not None:
    _positive(config, "train_eval_examples")
  if (config.get("total_steps") or 0) < 0:
    raise ConfigError(f"config.total_steps: {config.total_steps} must be at least 0 (0: from config.epochs)")
  if not config.get("total_steps") and config.epochs <= 0:
    raise ConfigError(f"config.epochs: {config.epochs} must be positive when config.total_steps is 0")
  ways = sharding.batch_devices(sharding.make_mesh(config.get("mesh", sharding.DEFAULT_MESH)))
  sharding.check_batch_size(config.batch_size, ways=ways)
  sharding.check_batch_size(config.eval_batch_size, "config.eval_batch_size", ways=ways)
  warmup_epochs = config.optimizer.get("warmup_epochs") or 0
  if warmup_epochs < 0:
    raise ConfigError(f"config.optimizer.warmup_epochs: {warmup_epochs} must be at least 0")
  if warmup_epochs and config.optimizer.warmup_steps:
    raise ConfigError(
      f"config.optimizer.warmup_epochs: {warmup_epochs} and warmup_steps {config.optimizer.warmup_steps} are both "
      "set; set one of them (the other 0)"
    )
  _check_schedule(config.optimizer, "config.optimizer")
  if config.get("augment") is not None:
    _check_augment(config.augment, "config.augment")
  for name, view in (config.get("views") or {}).items():
    _check_augment(view or {}, f"config.views.{name}")
  if config.get("multicrop"):
    _check_augment(config.multicrop, "config.multicrop")
    _positive(config, "multicrop.local_size")
    _positive(config, "multicrop.num_local", minimum=0)
  if config.dataset.get("captions") is not None:
    require_choice(config.dataset.captions, ("label_templates", "feature"), "config.dataset.captions")
    feature = config.dataset.get("caption_feature") or config.dataset.name == "tar"  # Tar shards: KEY.txt.
    if config.dataset.captions == "feature" and not feature:
      raise ConfigError("config.dataset.caption_feature: captions='feature' needs the tfds feature to read")
  if config.get("text") is not None:
    _check_text(config)
  if config.method == "mae" and not 0 < config.mae.mask_ratio < 1:
    raise ConfigError(f"config.mae.mask_ratio: {config.mae.mask_ratio} is not in (0, 1)")
  text_data = method_data(config.method) == "text"
  for baseline in config.eval_baselines:
    allowed = ("bag_of_tokens", "random_init") if text_data else ("raw_pixels", "random_init")
    require_choice(baseline, allowed, "config.eval_baselines")
  registered = evaluators.registry()
  for name, eval_config in config.evals.items():
    require_choice(eval_config.type, registered, f"config.evals.{name}.type")
    if eval_config.type == "reconstruction" and config.method != "mae":
      raise ConfigError(f"config.evals.{name}: the reconstruction evaluator needs method 'mae', not {config.method!r}")
    if eval_config.type == "autoencoder_pictures" and config.method != "autoencoder":
      raise ConfigError(f"config.evals.{name}: autoencoder_pictures needs method 'autoencoder', not {config.method!r}")
    if eval_config.type == "inpainting" and config.method != "context_encoder":
      raise ConfigError(f"config.evals.{name}: inpainting needs method 'context_encoder', not {config.method!r}")
    if eval_config.type == "colorization" and config.method != "colorization":
      raise ConfigError(f"config.evals.{name}: colorization needs method 'colorization', not {config.method!r}")
    if eval_config.type in ("likelihood", "pixelcnn_samples") and config.method != "pixelcnn":
      raise ConfigError(f"config.evals.{name}: {eval_config.type} needs method 'pixelcnn', not {config.method!r}")
    if eval_config.type == "pixelcnn_samples" and not eval_config.get("temperature", 1.0) > 0:
      raise ConfigError(f"config.evals.{name}.temperature: {eval_config.temperature} must be above 0")
    if eval_config.type == "gan_samples" and config.method != "gan":
      raise ConfigError(f"config.evals.{name}: gan_samples needs method 'gan', not {config.method!r}")
    if eval_config.type == "cyclegan_translations" and config.method != "cyclegan":
      raise ConfigError(f"config.evals.{name}: cyclegan_translations needs method 'cyclegan', not {config.method!r}")
    if eval_config.type == "zero_shot" and config.get("text") is None:
      raise ConfigError(
        f"config.evals.{name}: zero_shot needs a method with a text tower (config.text), not {config.method!r}"
      )
    if eval_config.type in TEXT_EVALUATORS and not text_data:
      raise ConfigError(f"config.evals.{name}: {eval_config.type} evaluates text methods, not {config.method!r}")
    if eval_config.type == "perplexity" and config.method not in ("gpt", "bert"):
      raise ConfigError(f"config.evals.{name}: perplexity needs a language model (gpt, bert), not {config.method!r}")
    if eval_config.type == "samples":
      if config.method != "gpt":
        raise ConfigError(f"config.evals.{name}: samples needs a causal language model (gpt), not {config.method!r}")
      if eval_config.get("temperature", 0.8) < 0:
        raise ConfigError(f"config.evals.{name}.temperature: {eval_config.temperature} must be at least 0")
    if text_data and eval_config.type not in (*TEXT_EVALUATORS, *FEATURE_EVALUATORS):
      raise ConfigError(
        f"config.evals.{name}: {eval_config.type} evaluates images; text methods take "
        f"{', '.join(TEXT_EVALUATORS + FEATURE_EVALUATORS)}"
      )
    if "augment" in eval_config:
      _check_augment(eval_config.augment, f"config.evals.{name}.augment")
    if "optimizer" in eval_config:
      _check_schedule(eval_config.optimizer, f"config.evals.{name}.optimizer")
    if eval_config.get("max_steps") is not None:
      _positive(config, f"evals.{name}.max_steps", minimum=0)
    if eval_config.type == "self_training":
      _probability(eval_config.threshold, f"config.evals.{name}.threshold")
      _probability(eval_config.get("top_fraction", 1.0), f"config.evals.{name}.top_fraction")
      if any(not isinstance(c, NUMBER) or not 0 < c <= 1 for c in eval_config.get("crops", (1.0,))):
        raise ConfigError(f"config.evals.{name}.crops: {eval_config.crops!r} must be fractions of the side in (0, 1]")
    pictures = (
      "autoencoder_pictures",
      "inpainting",
      "colorization",
      "pixelcnn_samples",
      "gan_samples",
      "cyclegan_translations",
    )
    if eval_config.type in pictures:
      for key, minimum in (
        ("num_images", 1),
        ("num_scored", 1),
        ("steps", 2),
        ("traversal_dims", 1),
        ("max_points", 10),
      ):
        if key in eval_config:
          _positive(config, f"evals.{name}.{key}", minimum=minimum)
    if eval_config.type == "linear_eval":
      from ssljax.evaluators.linear_eval import PROTOCOLS

      require_choice(eval_config.protocol, PROTOCOLS, f"config.evals.{name}.protocol")
      if isinstance(eval_config.head_init_std, str):
        require_choice(eval_config.head_init_std, ("fan_in",), f"config.evals.{name}.head_init_std")
      for baseline in eval_config.get("baselines", ()):
        require_choice(baseline, ("random_init",), f"config.evals.{name}.baselines")
  if jax.process_count() > 1 and config.batch_size % jax.process_count():
    raise ConfigError(f"config.batch_size: {config.batch_size} does not split over {jax.process_count()} processes")


def _flatten(tree, prefix: str = "") -> dict:
  if isinstance(tree, dict):
    return {k: v for name, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{name}.").items()}
  return {prefix[:-1]: tree}


def changed_keys(saved: dict, config) -> list[str]:
  """["model.width: 0.125 -> 0.25", ...]: how `config` differs from a config saved as JSON (`saved`)."""
  if not saved:
    return []
  old, new = _flatten(saved), _flatten(json.loads(config.to_json_best_effort()))
  return [
    f"{k}: {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}"
    for k in sorted(old.keys() | new.keys())
    if old.get(k) != new.get(k)
  ]

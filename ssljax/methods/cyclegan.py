"""CycleGAN (Zhu et al. 2017; lecture 003): unpaired translation between domain A (batch["image"]) and domain B
(batch["image_b"], `config.dataset.domain_b`) by two generators, G: A -> B and F: B -> A, and two PatchGAN
discriminators, D_A judging A images and D_B judging B images (`ssljax/models/cyclegan.py`). Two players on the
shared step, in the order of the authors' `optimize_parameters`:

1. "generators" (G and F, one Adam): least-squares adversarial losses E[(D_B(G(a)) - 1)^2] + E[(D_A(F(b)) - 1)^2]
   + cycle consistency lambda (|F(G(a)) - a|_1 + |G(F(b)) - b|_1) + identity lambda_idt lambda (|G(b) - b|_1 +
   |F(a) - a|_1), L1 as a mean over pixels (lambda = 10, lambda_idt = 0.5). Its forward leaves the images it
   generated, G(a) and F(b), in the "buffers" collection.
2. "discriminators" (D_A and D_B, one Adam): (E[(D(real) - 1)^2] + E[D(fake)^2]) / 2 for each, the fakes being the
   generators' images *before* their update (as the authors' code, which reuses the forward's images) passed
   through a history pool (Shrivastava et al. 2017; `query_history`), which is a buffer too: checkpointed,
   reverted with the rest on a non-finite step.

Images are scaled to [-1, 1]; the authors' random flips are `flip` (their resize-and-crop jitter is not done:
the data is read at `image_size`). Each player draws its own flips, so the discriminators' real images are
flipped independently of those the generators saw (the authors reuse them; the distribution is the same). The
generators and discriminators use instance normalisation: no statistics are kept, and evaluation runs the same
functions as training. Translations, cycle errors and (for labelled domains) whether a digit stays that digit:
the evaluator `cyclegan_translations`."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.methods import Method, Player
from ssljax.methods.gan import from_tanh_range, to_tanh_range
from ssljax.models.cyclegan import PatchDiscriminator, ResnetGenerator, patch_grid

SCHEMA = {
  "generator_width": int,  # ngf (paper: 64).
  "residual_blocks": int,  # The generators' residual blocks (paper: 9 at 256 px, 6 at 128).
  "discriminator_width": int,  # ndf (paper: 64).
  "discriminator_layers": int,  # The PatchGAN's stride-2 layers (paper: 3, 70 x 70 patches).
  "cycle_weight": (int, float),  # lambda (paper: 10, both directions).
  "identity_weight": (int, float),  # lambda_idt, relative to lambda (paper: 0.5; 0: no identity loss).
  "pool_size": int,  # The history of generated images each discriminator also reads (paper: 50; 0: none).
  "flip": bool,  # Random horizontal flips of both domains' images (the authors' default).
}
EVALUATORS = ("cyclegan_translations",)


def query_history(pool, count, images, key):
  """The history pool of Shrivastava et al. as CycleGAN's `ImagePool.query`, image by image in batch order: while
  the pool holds fewer than P images, store the new image and return it; then, with probability 1/2, return a
  random stored image and store the new one in its place, else return the new image.

  Args: pool [P, ...]; count: int32 scalar, images stored so far (saturates at P); images [N, ...]; a PRNG key.
  Returns: (what the discriminator reads [N, ...], the new pool, the new count)."""
  size = pool.shape[0]
  if size == 0:
    return images, pool, count

  def one(carry, image_and_key):
    pool, count = carry
    image, key = image_and_key
    swap_key, slot_key = jax.random.split(key)
    filling = count < size
    swap = ~filling & (jax.random.uniform(swap_key) > 0.5)
    slot = jnp.where(filling, count, jax.random.randint(slot_key, (), 0, size))
    stored = pool[slot]
    pool = pool.at[slot].set(jnp.where(filling | swap, image, stored))
    return (pool, count + filling.astype(count.dtype)), jnp.where(swap, stored, image)

  keys = jax.random.split(key, images.shape[0])
  (pool, count), returned = jax.lax.scan(one, (pool, count), (images, keys))
  return returned, pool, count


class Pair(nn.Module):
  """Two networks of one player under one parameter subtree: "a" and "b" (for the generators: the one that
  produces A images, F, and the one that produces B images, G; for the discriminators: the judges of A and B)."""

  a: nn.Module
  b: nn.Module


class CycleGAN(nn.Module):
  """inputs {"image": A images, "image_b": B images, [N, S, S, C] in [-1, 1]}; `player` "generators" -> what their
  loss reads (translations, cycles, identities, the discriminators' outputs on the translations), writing G(a) and
  F(b) to the buffers; "discriminators" -> the discriminators' outputs on the real images and on the history
  pool's answer to the stored G(a), F(b); None (initialisation) -> both."""

  generators: Pair  # generators.b = G: A -> B, generators.a = F: B -> A.
  discriminators: Pair  # discriminators.a = D_A, discriminators.b = D_B.
  batch_size: int  # The global batch: the buffers hold one batch of generated images.
  pool_size: int = 50
  identity: bool = True

  def _buffers(self, shape, dtype=jnp.float32):
    names = ("examples", None, None, None)

    def buffer(name, size):
      init = nn.with_logical_partitioning(lambda: jnp.zeros((size, *shape[1:]), dtype), names)
      return self.variable("buffers", name, init)

    # The generators' last images: written by their forward, read by the discriminators' in the same step (always
    # overwritten before being read; kept in the state only because the players share nothing else).
    fakes = {d: buffer(f"fake_{d}", self.batch_size) for d in "ab"}
    pool_shape = (self.pool_size, *shape[1:])
    pools = {d: self.variable("buffers", f"pool_{d}", lambda: jnp.zeros(pool_shape, dtype)) for d in "ab"}
    counts = {d: self.variable("buffers", f"pool_count_{d}", lambda: jnp.zeros((), jnp.int32)) for d in "ab"}
    return fakes, pools, counts

  @nn.compact
  def __call__(self, inputs, train: bool = True, player: str | None = None):
    del train  # Instance normalisation: the same function in training and evaluation.
    a, b = inputs["image"], inputs["image_b"]
    fakes, pools, counts = self._buffers(a.shape)
    outputs = {}
    if player in ("generators", None):
      fake_b, fake_a = self.generators.b(a), self.generators.a(b)
      outputs |= {
        "input_a": a,  # What the cycle and identity losses compare with (flipped as the generators saw them).
        "input_b": b,
        "fake_a": fake_a,
        "fake_b": fake_b,
        "cycle_a": self.generators.a(fake_b),
        "cycle_b": self.generators.b(fake_a),
        "judged_fake_a": self.discriminators.a(fake_a),
        "judged_fake_b": self.discriminators.b(fake_b),
      }
      if self.identity:
        outputs |= {"identity_a": self.generators.a(a), "identity_b": self.generators.b(b)}
      if not self.is_initializing():
        fakes["a"].value, fakes["b"].value = jax.lax.stop_gradient(fake_a), jax.lax.stop_gradient(fake_b)
    if player in ("discriminators", None):
      outputs |= {"real_a": self.discriminators.a(a), "real_b": self.discriminators.b(b)}
      if not self.is_initializing():
        # The pool's coin flips draw from the "dropout" stream: like dropout, randomness of training only.
        keys = jax.random.split(self.make_rng("dropout"))
        for domain, key in zip("ab", keys, strict=True):
          history, pools[domain].value, counts[domain].value = query_history(
            pools[domain].value, counts[domain].value, fakes[domain].value, key
          )
          judge = self.discriminators.a if domain == "a" else self.discriminators.b
          outputs[f"history_{domain}"] = judge(history)
    return outputs

  def translate(self, images, to: str):
    """Images [N, S, S, C] in [0, 1] -> their translations to domain `to` ("a" or "b"), in [0, 1]."""
    generator = self.generators.a if to == "a" else self.generators.b
    return from_tanh_range(generator(to_tanh_range(images)))


def l1(x, y):
  """The mean absolute difference over every element (PyTorch's L1Loss)."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def generators_loss(outputs, batch, step, cycle_weight: float, identity_weight: float):
  del batch, step
  a, b = outputs["input_a"], outputs["input_b"]
  adversarial = losses.gan_generator_loss(outputs["judged_fake_b"].reshape(-1), "least_squares") + (
    losses.gan_generator_loss(outputs["judged_fake_a"].reshape(-1), "least_squares")
  )
  cycle = l1(outputs["cycle_a"], a) + l1(outputs["cycle_b"], b)
  identity = l1(outputs["identity_b"], b) + l1(outputs["identity_a"], a) if identity_weight else jnp.zeros(())
  loss = adversarial + cycle_weight * cycle + identity_weight * cycle_weight * identity
  return loss, {"adversarial": adversarial, "cycle": cycle, "identity": identity}


def discriminators_loss(outputs, batch, step):
  del batch, step
  metrics, loss = {}, 0.0
  for domain in "ab":
    real, history = outputs[f"real_{domain}"].reshape(-1), outputs[f"history_{domain}"].reshape(-1)
    loss += losses.gan_discriminator_loss(real, history, "least_squares")
    metrics |= {f"real_output_{domain}": jnp.mean(real), f"fake_output_{domain}": jnp.mean(history)}
  return loss, metrics


def make_inputs(batch, key, flip: bool):
  """Both domains in [-1, 1], each image flipped left-right with probability 1/2 when `flip`."""
  images = {"image": to_tanh_range(batch["image"]), "image_b": to_tanh_range(batch["image_b"])}
  if not flip:
    return images
  keys = dict(zip(images, jax.random.split(key), strict=True))
  return {
    name: jnp.where(jax.random.bernoulli(keys[name], 0.5, (x.shape[0], 1, 1, 1)), x[:, :, ::-1], x)
    for name, x in images.items()
  }


def build(config, info) -> Method:
  del info
  settings = config.cyclegan
  minimums = {"generator_width": 1, "discriminator_width": 1, "discriminator_layers": 1, "residual_blocks": 0}
  for key, minimum in {**minimums, "pool_size": 0}.items():
    if settings[key] < minimum:
      raise ConfigError(f"config.cyclegan.{key}: {settings[key]} must be at least {minimum}")
  for key in ("cycle_weight", "identity_weight"):
    if settings[key] < 0:
      raise ConfigError(f"config.cyclegan.{key}: {settings[key]} must be at least 0")
  size = config.dataset.image_size
  if size % 4:
    raise ConfigError(f"config.dataset.image_size: {size} is not a multiple of 4 (the generators halve it twice)")
  if patch_grid(size, settings.discriminator_layers) < 1:
    raise ConfigError(
      f"config.cyclegan.discriminator_layers: {settings.discriminator_layers} stride-2 layers leave no patch of a"
      f" {size} px image (it needs image_size >= 3 * 2^layers)"
    )
  for name, evaluator in config.get("evals", {}).items():
    if evaluator.type not in EVALUATORS:
      raise ConfigError(
        f"config.evals.{name}: {evaluator.type} reads an encoder's features; CycleGAN's evaluator is"
        " cyclegan_translations"
      )
  if config.get("eval_baselines"):
    raise ConfigError("config.eval_baselines: CycleGAN has no features to compare with baselines; set it to ()")
  model = CycleGAN(
    generators=Pair(
      ResnetGenerator(settings.generator_width, settings.residual_blocks),
      ResnetGenerator(settings.generator_width, settings.residual_blocks),
    ),
    discriminators=Pair(
      PatchDiscriminator(settings.discriminator_width, settings.discriminator_layers),
      PatchDiscriminator(settings.discriminator_width, settings.discriminator_layers),
    ),
    batch_size=config.batch_size,
    pool_size=settings.pool_size,
    identity=settings.identity_weight > 0,
  )
  shape = (size, size, config.dataset.channels)
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, flip=settings.flip),
    loss=None,
    views_per_image=1,
    extra_batch={"image_b": (shape, jnp.float32)},
    players=(
      Player(
        "generators",
        "generators",
        functools.partial(
          generators_loss,
          cycle_weight=settings.cycle_weight,
          identity_weight=settings.identity_weight,
        ),
      ),
      Player("discriminators", "discriminators", discriminators_loss),
    ),
  )

r"""The PyTorch train steps a user would pick instead of ours: the anchors of `launch.accelerator_report`'s ratios.

- simclr: torchvision's ResNet-50 (channels_last, bf16 autocast, `torch.compile`) with SimCLR's projection head
  (2048 -> 2048 -> 128, BatchNorm after each linear layer, as ours), each view through the network on its own,
  NT-Xent (temperature 0.1) over the 2N views, SGD with momentum and weight decay (PyTorch has no LARS; one
  written in Python would only slow the peer). Augmentation is not part of the step: a PyTorch user runs it in the
  data loader, while our step runs flips, colour and blur on the device.
- mae: facebookresearch/mae's ViT-B/16 MAE as its models_mae.py builds it from timm's `PatchEmbed` and `Block`
  (PyTorch's fused scaled-dot-product attention): 75% of the patches masked by a per-image random permutation,
  encoder on the visible ones, an 8-block 512-wide decoder, MSE on the masked patches of per-patch normalised
  pixels; bf16 autocast, fused AdamW (lr 1.5e-4, betas 0.9 / 0.95, weight decay 0.05), `torch.compile`.

  python -m launch.torch_peers --steps 10                   # both, on the GPU; one JSON line per step
  python -m launch.torch_peers --peer mae --device cpu --tiny --no_compile

`--serve` is the report's mode: build, compile and warm up every peer, print READY, wait for a line on standard
input, then time them, so the timing runs with nothing else on the accelerator.
"""

import argparse
import functools
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent(z_a, z_b, temperature: float):
  """Mean cross-entropy of each of the 2N views against its partner, the other 2N - 2 views as negatives."""
  z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
  self_pairs = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
  logits = (z @ z.T / temperature).masked_fill(self_pairs, float("-inf"))
  n = z_a.shape[0]
  targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
  return F.cross_entropy(logits, targets)


def simclr(batch_size: int, image_size: int, device: str, tiny: bool):
  """(train step, its inputs, views per step)."""
  import torchvision

  trunk = torchvision.models.resnet18() if tiny else torchvision.models.resnet50()
  width = trunk.fc.in_features
  trunk.fc = nn.Sequential(
    nn.Linear(width, width, bias=False),
    nn.BatchNorm1d(width),
    nn.ReLU(inplace=True),
    nn.Linear(width, 128, bias=False),
    nn.BatchNorm1d(128, affine=False),
  )
  model = trunk.to(device, memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-6)
  shape = (batch_size, 3, image_size, image_size)
  views = [torch.rand(shape, device=device).contiguous(memory_format=torch.channels_last) for _ in range(2)]

  def step(model, view_a, view_b):
    with torch.autocast(device, torch.bfloat16):
      loss = nt_xent(model(view_a), model(view_b), 0.1)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

  return model, step, views, 2 * batch_size


def _masked_autoencoder(tiny: bool):
  from timm.layers import PatchEmbed
  from timm.models.vision_transformer import Block

  width, depth, heads, decoder_width, decoder_depth, decoder_heads, patch = (
    (64, 2, 2, 64, 1, 2, 16) if tiny else (768, 12, 12, 512, 8, 16, 16)
  )
  norm = functools.partial(nn.LayerNorm, eps=1e-6)

  class MaskedAutoencoder(nn.Module):
    def __init__(self, image_size: int):
      super().__init__()
      self.patch_embed = PatchEmbed(image_size, patch, 3, width)
      tokens = self.patch_embed.num_patches
      self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
      self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
      # Fixed position embeddings (the reference's sin-cos tables; their values do not change the speed).
      self.register_buffer("pos_embed", 0.02 * torch.randn(1, tokens + 1, width))
      self.register_buffer("decoder_pos_embed", 0.02 * torch.randn(1, tokens + 1, decoder_width))
      self.blocks = nn.ModuleList([Block(width, heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth)])
      self.norm = norm(width)
      self.decoder_embed = nn.Linear(width, decoder_width)
      self.decoder_blocks = nn.ModuleList(
        [Block(decoder_width, decoder_heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(decoder_depth)]
      )
      self.decoder_norm = norm(decoder_width)
      self.decoder_pred = nn.Linear(decoder_width, patch * patch * 3)

    def forward(self, images, mask_ratio: float = 0.75):
      x = self.patch_embed(images) + self.pos_embed[:, 1:]
      n, length, dim = x.shape
      keep = int(length * (1 - mask_ratio))
      shuffle = torch.rand(n, length, device=x.device).argsort(dim=1)
      restore = shuffle.argsort(dim=1)
      x = torch.gather(x, 1, shuffle[:, :keep, None].expand(-1, -1, dim))
      mask = torch.ones(n, length, device=x.device)
      mask[:, :keep] = 0
      mask = torch.gather(mask, 1, restore)
      x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1), x], dim=1)
      for block in self.blocks:
        x = block(x)
      x = self.decoder_embed(self.norm(x))
      tokens = torch.cat([x[:, 1:], self.mask_token.expand(n, length - keep, -1)], dim=1)
      tokens = torch.gather(tokens, 1, restore[:, :, None].expand(-1, -1, x.shape[2]))
      x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
      for block in self.decoder_blocks:
        x = block(x)
      prediction = self.decoder_pred(self.decoder_norm(x))[:, 1:].float()
      target = images.unfold(2, patch, patch).unfold(3, patch, patch).permute(0, 2, 3, 4, 5, 1).reshape(n, length, -1)
      target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
      loss = ((prediction - target) ** 2).mean(-1)
      return (loss * mask).sum() / mask.sum()

  return MaskedAutoencoder


def mae(batch_size: int, image_size: int, device: str, tiny: bool):
  model = _masked_autoencoder(tiny)(image_size).to(device)
  optimizer = torch.optim.AdamW(
    model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=device == "cuda"
  )
  images = torch.rand(batch_size, 3, image_size, image_size, device=device)

  def step(model, images):
    with torch.autocast(device, torch.bfloat16):
      loss = model(images)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

  return model, step, [images], batch_size


PEERS = {"simclr": simclr, "mae": mae}


def prepare(peer: str, batch_size: int, image_size: int, device: str, tiny: bool, compiled: bool, warmup: int = 3):
  """A zero-argument function that runs one train step of `peer`, compiled and warmed up; views per step."""
  model, step, inputs, views = PEERS[peer](batch_size, image_size, device, tiny)
  model.train()
  forward = torch.compile(model) if compiled else model
  run = functools.partial(step, forward, *inputs)
  for _ in range(warmup):
    run()
  _synchronize(device)
  return run, views


def _synchronize(device: str):
  if device == "cuda":
    torch.cuda.synchronize()


def time_steps(run, views: int, steps: int, device: str) -> dict:
  start = time.perf_counter()
  for _ in range(steps):
    run()
  _synchronize(device)
  seconds = (time.perf_counter() - start) / steps
  return {"step ms": seconds * 1e3, "views/s": views / seconds}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--peer", choices=sorted(PEERS), action="append")
  parser.add_argument("--simclr_batch", type=int, default=256, help="Images per step (2 views each).")
  parser.add_argument("--mae_batch", type=int, default=256)
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  parser.add_argument("--tiny", action="store_true", help="ResNet-18 and a 2-block ViT: a smoke run on a CPU.")
  parser.add_argument("--no_compile", action="store_true")
  parser.add_argument("--serve", action="store_true", help="Print READY after warm-up; time after a line on stdin.")
  args = parser.parse_args()
  batches = {"simclr": args.simclr_batch, "mae": args.mae_batch}
  info = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}
  prepared = {}
  for peer in args.peer or sorted(PEERS):
    start = time.perf_counter()
    compiled = not args.no_compile
    prepared[peer] = prepare(peer, batches[peer], args.image_size, args.device, args.tiny, compiled)
    info[f"{peer} compile+warmup s"] = time.perf_counter() - start
  if args.serve:
    print("READY", flush=True)
    sys.stdin.readline()
  for peer, (run, views) in prepared.items():
    print(json.dumps({"peer": peer, **info, **time_steps(run, views, args.steps, args.device)}), flush=True)


if __name__ == "__main__":
  main()
